"""The console: only caulk's own lines, progress you can follow, help texts that say what to do."""

import fcntl
import io
import itertools
import logging
import math
import os
import re
import select
import shlex
import struct
import sys
import termios
import warnings

import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser

from caulk import analyze, demo, train
from caulk.cli import BUILTIN_OPTIONS, check_group_overrides, sweep_job_count
from caulk.console import quiet_console
from caulk.plan import validate_config
from caulk.progress import Progress, progress_line, progress_to
from caulk.zoo.build import build_zoo_entry
from caulk.zoo.store import entry_for
from tests.conftest import CONF, FAST, FIXED_RECIPE, run_cli
from tests.test_zoo import pretrain_cfg

CURVE = [*FAST, "cache.loop=lightning", "curve.n=[20,40]", "curve.seeds=[0]"]
PROGRESS = re.compile(
    r"\[caulk\] point (\d+)/(\d+)  vit_pico linear n=(\d+) seed=0  elapsed \S+  eta (\S+)"
)
LIGHTNING_NOISE = ("Tip", "GPU available", "TPU available", "val_dataloader", "stopped")


def _lines(res) -> list[str]:
    return [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]


# --- a quiet console ---------------------------------------------------------------------------


def test_console_of_a_curve_holds_only_caulks_own_lines(tmp_path):
    """A 2-point curve through Lightning's Trainer (which prints tips and banners per point): the
    console holds one progress line per point and the curve summary, nothing else."""
    res = run_cli([*CURVE, f"hydra.run.dir={tmp_path / 'run'}"], timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = _lines(res)
    progress = [PROGRESS.fullmatch(line) for line in lines if line.startswith("[caulk] point")]
    assert [(m[1], m[2], m[3]) for m in progress] == [("1", "2", "20"), ("2", "2", "40")]
    assert progress[0][4] == "?" and re.fullmatch(r"\d\d:\d\d", progress[1][4])  # an ETA once known
    summary = res.stdout.splitlines()
    assert summary[0].startswith("caulk curve summary: vit_pico + linear on digits")
    assert summary[1].split() == ["n", "seeds", "test", "error", "min", "max"]
    assert [row.split()[0] for row in summary[2:4]] == ["20", "40"]
    assert summary[4].startswith("  records under ")
    assert len(lines) == 2 + 5, lines  # two progress lines, the five lines of the summary
    assert not any(word in "\n".join(lines) for word in LIGHTNING_NOISE)


@pytest.mark.slow
def test_verbose_brings_lightnings_lines_back(tmp_path):
    res = run_cli(["--verbose", *CURVE, f"hydra.run.dir={tmp_path / 'run'}"], timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    text = "\n".join(_lines(res))
    assert text.count("GPU available") == 2 and "TPU available" in text and "Tip" in text
    assert "caulk curve summary" in text


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _trainer_lines() -> list[str]:
    """What a real Trainer logs at construction through Lightning's rank-zero logger."""
    handler = _Records()
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    logger.addHandler(handler)
    try:
        pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    finally:
        logger.removeHandler(handler)
    return handler.messages


def _timm_lines() -> list[str]:
    """What timm logs when it loads a weights file (its message, through its own logger)."""
    handler = _Records()
    logger = logging.getLogger("timm.models._builder")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # as under Hydra's job logging
    try:
        logger.info("Loading pretrained weights from file (/zoo/w.safetensors)")
        logger.info("Unrelated timm news")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    return handler.messages


def _warned(message: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn(message, UserWarning, stacklevel=1)
    return [str(w.message) for w in caught]


def test_quiet_console_silences_at_the_source_and_verbose_undoes_it():
    moot = "You defined a `validation_step` but have no `val_dataloader`. Skipping val loop."
    other = "a warning caulk knows nothing about"
    try:
        quiet_console(verbose=False)
        assert not any("available" in m or "Tip" in m for m in _trainer_lines())
        assert _warned(moot) == [] and _warned(other) == [other]
        assert _timm_lines() == ["Unrelated timm news"]
        quiet_console(verbose=True)
        assert any(m.startswith("GPU available: ") for m in _trainer_lines())
        assert _warned(moot) == [moot] and len(_timm_lines()) == 2
        os.environ["CAULK_VERBOSE"] = "1"
        quiet_console()  # the env var decides
        assert any(m.startswith("TPU available: ") for m in _trainer_lines())
    finally:
        os.environ.pop("CAULK_VERBOSE", None)
        quiet_console(verbose=False)  # as caulk.train's import left it


# --- progress ------------------------------------------------------------------------------------


def test_progress_line_extrapolates_the_mean_step_time():
    # step 4 of 10 starts after 30 s: 3 steps took 10 s each, 7 steps are left -> 70 s
    line = progress_line("point", 4, 10, "vit_pico linear n=64 seed=1", 30.0)
    assert line == "[caulk] point 4/10  vit_pico linear n=64 seed=1  elapsed 00:30  eta 01:10"
    assert progress_line("point", 1, 10, "x", 0.0).endswith("eta ?")
    assert (
        progress_line("job", 3, None, "model=a", 3725.0)
        == "[caulk] job 3  model=a  elapsed 1:02:05"
    )


def test_progress_on_a_file_is_one_line_per_step_and_on_a_tty_a_live_bar():
    plain = io.StringIO()
    with Progress("point", 3, stream=plain) as progress:
        for n in (10, 20, 40):
            progress.begin(f"n={n}")
            progress.end()
    assert [line.split("  ")[:2] for line in plain.getvalue().splitlines()] == [
        ["[caulk] point 1/3", "n=10"],
        ["[caulk] point 2/3", "n=20"],
        ["[caulk] point 3/3", "n=40"],
    ]
    leader, follower = os.openpty()  # a real terminal, 24 x 100
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with open(follower, "w") as tty, Progress("point", 3, stream=tty) as progress:
        for n in (10, 20, 40):
            progress.begin(f"n={n}")
            progress.end()
    shown = b""  # all it wrote: the follower is closed, so the leader reads to EIO
    while select.select([leader], [], [], 5)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: nothing left and no writer
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    shown = shown.decode()
    assert "\r" in shown and "3/3" in shown and "n=40" in shown  # one bar, redrawn in place
    assert "[caulk] point 1/3  n=10" not in shown  # not the plain lines


def test_pretraining_shows_its_steps_and_no_lightning_bar(tmp_path):
    cfg = pretrain_cfg(tmp_path / "zoo", "source_task.steps=20")
    entry = entry_for(cfg.model, cfg.source_task, cfg.paths.zoo_dir)
    out = io.StringIO()
    with progress_to(out):
        build_zoo_entry(cfg.model, cfg.source_task, entry, progress_bar=True)
    lines = out.getvalue().splitlines()
    steps = [int(re.match(r"\[caulk\] pre-training step (\d+)/20  ", line)[1]) for line in lines]
    assert steps == list(range(1, 21, 2))  # every tenth of the 20 steps
    assert all(entry.name in line for line in lines)


def test_sweep_job_count_is_the_product_of_the_sweeps():
    args = ["-m", "model=vit_pico,vit_nano", "seed=0,1,2", "data.n=range(10,40,10)", "logger=csv"]
    oracle = demo._sweep_jobs([a for a in args if a != "-m"])  # the demo's own expansion
    assert sweep_job_count(args) == len(oracle) == 2 * 3 * 3
    # the config's sweeper params count unless the command line sets the same key
    assert sweep_job_count(["peft=lora"], {"model": "a,b,c", "peft": "linear,lora"}) == 3
    assert sweep_job_count(["seed=0,1"], {"model": "a,b,c"}) == 6


@pytest.mark.slow
def test_a_multirun_prints_job_k_of_n(tmp_path):
    sweep = tmp_path / "sweep"
    fast = ["trainer.max_steps=6", "trainer.val_check_interval=3", "logger=csv"]
    args = ["-m", *fast, "data.n=20,40", f"hydra.sweep.dir={sweep}"]
    res = run_cli([*args, "hydra.callbacks.analyze.enabled=false"], timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = [line for line in _lines(res) if line.startswith("[caulk] job")]
    recipe = [*FIXED_RECIPE, *fast]  # run_cli's recipe is on the command line too
    assert [line.split("  ")[:2] for line in jobs] == [
        ["[caulk] job 1/2", " ".join([*recipe, "data.n=20"])],
        ["[caulk] job 2/2", " ".join([*recipe, "data.n=40"])],
    ]
    assert not any(word in res.stdout + res.stderr for word in LIGHTNING_NOISE)


# --- help ----------------------------------------------------------------------------------------


@pytest.fixture
def train_help(monkeypatch, capsys) -> str:
    """``python -m caulk.train --help``, run in this process (Hydra prints it and exits 0)."""
    monkeypatch.setattr(sys, "argv", ["caulk.train", "--help"])
    try:
        with pytest.raises(SystemExit) as exit_:
            train.main()
    finally:  # Hydra's run leaves its config set: later in-process runs would read it as theirs
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _listed_groups(text: str) -> dict[str, set[str]]:
    """The groups section of the help: group -> options (continuation lines included)."""
    section = text.split("== Config groups")[1].split("\n==")[0].splitlines()[1:]
    groups: dict[str, str] = {}
    for line in section:
        if line.startswith("    "):  # a continuation of the previous group's options
            groups[list(groups)[-1]] += " " + line
        elif line.strip():
            name, options = line.split(maxsplit=1)
            groups[name] = options
    no_notes = {g: re.sub(r"\([^)]*\)", "", opts) for g, opts in groups.items()}
    return {g: {o.strip() for o in opts.split(",") if o.strip()} for g, opts in no_notes.items()}


def test_help_is_caulks_and_lists_the_user_groups_only(train_help):
    assert train_help.startswith("caulk.train: ") and "powered by Hydra" not in train_help
    groups = _listed_groups(train_help)
    for group, options in groups.items():
        on_disk = {p.stem for p in (CONF / group).glob("*.yaml")}
        assert options == on_disk | set(BUILTIN_OPTIONS.get(group, ())), group
    hidden = {"data/common", "theory", "paths", "hydra", "hydra/help"}
    user_groups = {
        str(d.relative_to(CONF)) for d in CONF.rglob("*") if d.is_dir() and any(d.glob("*.yaml"))
    }
    assert set(groups) == user_groups - hidden
    assert "data/common" not in train_help and "theory" not in train_help
    for topic in ("curve.n=", "curve.seeds=", "caulk.analyze", "report.html", "--verbose"):
        assert topic in train_help, topic


def _example_jobs(text: str) -> list[list[str]]:
    """Every job of every example command in the help (a -m sweep expanded)."""
    examples = text.split("== Examples")[1].split("\n\n")[0].splitlines()[1:]
    commands = [shlex.split(line)[3:] for line in examples]
    assert len(commands) == 5 and all(
        line.split()[:3] == ["python", "-m", "caulk.train"] for line in examples
    )
    jobs = []
    for args in commands:
        overrides = [a for a in args if a != "-m"]
        sweeps = OverridesParser.create().parse_overrides(overrides)
        choices = [
            [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
            if o.is_sweep_override()
            else [o.input_line]
            for o in sweeps
        ]
        assert ("-m" in args) == (math.prod(len(c) for c in choices) > 1)
        jobs += [list(job) for job in itertools.product(*choices)]
    return jobs


def test_every_help_example_composes_as_a_valid_config(train_help):
    jobs = _example_jobs(train_help)
    assert len(jobs) == 4 + 4  # four single commands, one 2 x 2 sweep
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for job in jobs:
            check_group_overrides(job)
            validate_config(compose(config_name="train", overrides=job))


@pytest.mark.parametrize("module", [analyze, demo], ids=["analyze", "demo"])
def test_analysis_and_demo_help_is_plain_text(module, capsys):
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "`" not in text and ":func:" not in text and "::" not in text  # no reST
    examples = text.split("\nexamples:\n")[1].splitlines()
    assert examples and all(e.startswith(f"  python -m {module.__name__}") for e in examples)
