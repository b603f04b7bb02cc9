"""The config schema (caulk/config.py): bad types and ranges are one line, exit code 2, nothing left."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from caulk.cli import check_overrides, first_job_overrides
from caulk.config import check_config, check_section
from caulk.errors import CaulkConfigError
from caulk.plan import validate_config
from caulk.run.record import read_record
from tests.conftest import CONF, compose_cfg, run_cli

BAD = [
    ("peft.lr=-1", "peft.lr must be a positive number, got -1"),
    ("peft.lr=nan", "peft.lr must be a positive number, got nan"),
    ("peft.weight_decay=-1", "peft.weight_decay must be a number >= 0, got -1"),
    ("data.batch_size=0", "data.batch_size must be a positive integer, got 0"),
    ("data.test_fraction=1.5", "data.test_fraction must be in (0, 1), got 1.5"),
    ("model.init_seed=abc", "model.init_seed must be an integer, got 'abc'"),
    ("trainer.max_steps=-5", "trainer.max_steps must be a positive step budget"),
    ("trainer.val_check_interval=0", "trainer.val_check_interval must be a positive integer"),
    ("curve.n=[20,40] data.n=40", "data.n=40 is set beside curve.n=[20, 40]"),
]


@pytest.mark.slow  # one interpreter start each (~6 s); test_schema_rejects_in_one_line is fast
@pytest.mark.parametrize(("args", "message"), BAD, ids=[a for a, _ in BAD])
def test_cli_bad_value_is_one_line_exit_2_and_leaves_nothing(tmp_path, args, message):
    out = tmp_path / "job"
    res = run_cli([*args.split(), "debug=fast", f"hydra.run.dir={out}"], timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith(f"caulk: error: {message}")
    assert [ln for ln in lines if "error" in ln.lower()] == [lines[-1]]
    assert not out.exists()  # no record, no checkpoint, not even Hydra's job dir


UNKNOWN_KEY = "bad override: Could not override 'peft.lrr'. To append to your config use "


@pytest.mark.slow  # one interpreter start each
@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_cli_unknown_key_is_one_line_exit_2_and_leaves_nothing(tmp_path, multirun):
    """Hydra reports an override of a key that does not exist over four lines (and exit 1);
    caulk's check before Hydra runs says it in one, for a single run and for a sweep's jobs."""
    out = tmp_path / "job"
    args = ["-m", "peft.lrr=0.1,0.2"] if multirun else ["peft.lrr=0.1"]
    res = run_cli([*args, f"hydra.run.dir={out}", f"hydra.sweep.dir={out}"], timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines() == [
        f"caulk: error: {UNKNOWN_KEY}+peft.lrr=0.1 (Key 'lrr' is not in struct)"
    ]
    assert not out.exists()


def test_overrides_are_checked_on_the_first_job_of_a_sweep():
    assert first_job_overrides(["-m", "peft=linear,lora", "+x.y=1,2", "~z", "curve.n=[1,2]"]) == [
        "peft=linear",
        "+x.y=1",
        "~z",
        "curve.n=[1,2]",
    ]
    with pytest.raises(CaulkConfigError, match="^bad override: Could not override 'peft.lrr'"):
        check_overrides(["-m", "peft.lrr=1,2"], "train")
    with pytest.raises(CaulkConfigError, match="no viable alternative at input '\\[0'"):
        check_overrides(["curve.seeds=[0"], "train")
    with pytest.raises(CaulkConfigError, match="Could not delete from config"):
        check_overrides(["~no_such_key"], "train")
    with pytest.raises(CaulkConfigError, match="Could not override 'curve.n'"):
        check_overrides(["curve.n=10"], "pretrain")  # pretrain.yaml has no curve
    check_overrides(["-m", "peft=linear,lora", "peft.lr=0.1,1", "+peft.extra=3"], "train")
    check_overrides(["curve.n=[10,20]", "hydra.run.dir=/x", "hydra/launcher=basic"], "train")
    assert first_job_overrides(["--config-name", "other", "peft.lrr=1"]) is None  # not ours


VALID = [
    # a single int seed is a one-seed curve
    (["curve.seeds=0", "data.n=20"], "n20_s0/record.json"),
    # the smallest budget and interval, no weight decay
    (["trainer.max_steps=1", "trainer.val_check_interval=1", "peft.weight_decay=0"], "record.json"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "record"), VALID, ids=[" ".join(a) for a, _ in VALID])
def test_cli_edge_values_still_run(tmp_path, args, record):
    out = tmp_path / "job"
    common = ["debug=fast", "logger=csv", "cache.disk=false", f"hydra.run.dir={out}"]
    res = run_cli([*args, *common], timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert read_record(out / record)["status"] == "ok"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["compile=yes"], "compile must be true or false, got 'yes'"),  # no string -> bool
        (["data.n='50'"], "data.n must be a positive integer or null, got '50'"),
        (["seed=true"], "seed must be an integer, got True"),
        (["peft.lr=inf"], "peft.lr must be a positive number, got inf"),
        (["curve.seeds=[0,x]"], "curve.seeds must be a non-empty list of integer seeds"),
        (["trainer.val_check_interval=1.5"], "trainer.val_check_interval must be a positive"),
        (["source_task.label_smoothing=1"], "source_task.label_smoothing must be in [0, 1), got 1"),
        (["trainer.max_steps=0"], "trainer.max_steps must be a positive step budget"),
        *[(args.split(), message) for args, message in BAD],  # what the CLI tests run, in-process
    ],
)
def test_schema_rejects_in_one_line(overrides, message):
    with pytest.raises(CaulkConfigError) as err:
        check_config(compose_cfg(overrides))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_schema_accepts_edge_values_and_leaves_unknown_keys_free():
    cfg = compose_cfg(
        [
            "curve.seeds=3",
            "trainer.val_check_interval=0.5",  # a fraction of an epoch (Lightning's loop)
            "data.n=null",
            "peft.lr=1",  # an int is a number
            "+peft.some_new_knob=anything",
        ]
    )
    check_config(cfg)
    assert list(cfg.curve.seeds) == [3]  # rewritten as a one-seed list
    check_section("peft", {"lr": 0.1, "not_in_the_schema": "x"})
    check_section("data", {})  # a modelled key absent is not required
    with pytest.raises(CaulkConfigError, match="source_task.steps must be a positive integer"):
        check_section("source_task", {"lr": 0.1}, required=("steps",))


GROUPS = [
    (g, p.stem)
    for g in ("data", "experiment", "model", "peft", "source_task", "trainer")
    for p in sorted((CONF / g).glob("*.yaml"))
]


@pytest.mark.parametrize(("group", "option"), GROUPS, ids=[f"{g}={o}" for g, o in GROUPS])
def test_every_shipped_config_passes_and_leaves_data_n_null(group, option):
    """``data.n`` beside ``curve.n`` is rejected as the user's: no shipped config sets data.n."""
    cfg = compose_cfg([f"{group}={option}"])
    assert cfg.data.n is None
    check_config(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["scheduler=linear"], "scheduler must be cosine or none, got 'linear'"),
        (["trainer.accelerator=tpu"], "trainer.accelerator must be one of auto, cpu, gpu, cuda"),
        (["trainer.devices=0"], "trainer.devices must be auto, -1, a positive integer"),
        (
            ["logger.wandb.mode=bogus"],
            "logger.wandb.mode must be one of auto, online, offline, disabled, got 'bogus'",
        ),
        (["optimizer._target_=torch.optim.Nope"], "optimizer._target_='torch.optim.Nope' cannot"),
        (["peft=lora", "peft.alpha=abc"], "peft.alpha must be positive, got 'abc'"),
        (["peft=lora", "peft.dropout=1.5"], "peft.dropout must be in [0, 1), got 1.5"),
    ],
)
def test_settings_that_would_run_silently_wrong_are_rejected(overrides, message):
    with pytest.raises(CaulkConfigError) as err:
        validate_config(compose_cfg(overrides))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one_is_an_error_not_a_cpu_run():
    with pytest.raises(CaulkConfigError, match="trainer.accelerator=gpu but no CUDA device"):
        validate_config(compose_cfg(["trainer=gpu"]))


def test_pretrain_defaults_to_the_documented_source_size():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="pretrain", overrides=["model=vit_nano"])
    assert cfg.model.source_m == 32000 and cfg.model.arch == "caulk_vit_nano"
