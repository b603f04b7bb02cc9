"""Nothing lost, nothing lied about: what a user's bad input, a signal, a diverged run or a second
process does to the output (the reliability issue's data-loss items, run as a user would)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
from safetensors.torch import save_file

import caulk.backbones  # noqa: F401  (registers caulk's timm architectures)
from caulk.cli import INTERRUPTED
from caulk.errors import CaulkConfigError, check_writable
from caulk.run.record import read_record, write_json_atomic
from caulk.train import train, train_curve
from caulk.zoo.store import entry_for, verify
from tests.conftest import REPO, cli_env, compose_cfg, run_cli

FAST = ["debug=fast", "trainer.enable_progress_bar=false"]


def _strict(path) -> dict:
    """A record parsed as strict JSON (no NaN/Infinity)."""

    def refuse(name):
        raise ValueError(f"{path}: non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_rejected_run_keeps_a_users_existing_dir_and_files(tmp_path):
    user = tmp_path / "u"
    user.mkdir()
    (user / "important.log").write_text("keep")
    res = run_cli([*FAST, "data.n=0", f"hydra.run.dir={user}"], timeout=120)
    assert res.returncode == 2 and "caulk: error: data.n must be positive" in res.stderr
    assert sorted(p.name for p in user.iterdir()) == ["important.log"]  # .hydra and train.log gone
    assert (user / "important.log").read_text() == "keep"


@pytest.mark.slow
def test_a_rejected_run_into_a_new_dir_leaves_nothing_even_its_parents(tmp_path):
    out = tmp_path / "new" / "deeper" / "run"
    res = run_cli([*FAST, "data.n=0", f"hydra.run.dir={out}"], timeout=120)
    assert res.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("hydra.run.dir=/proc/caulk-x", "hydra.run.dir is not writable: /proc/caulk-x"),
        pytest.param(
            "paths.output_dir=/proc/caulk-x",
            "paths.output_dir is not writable: /proc/caulk-x",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_an_unwritable_output_dir_is_one_line_before_any_work(tmp_path, arg, message):
    res = run_cli(
        [*FAST, arg, f"hydra.sweep.dir={tmp_path}/s"], env=cli_env(CAULK_ROOT=str(tmp_path))
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"caulk: error: {message} (No such file or directory)"
    ]
    assert list(tmp_path.iterdir()) == []  # not even the Hydra run dir


def test_check_writable_accepts_a_new_dir_below_a_writable_one_and_creates_nothing(tmp_path):
    check_writable(tmp_path / "a" / "b", "x")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="x is not writable"):
        check_writable(tmp_path / "file" / "sub", "x")


@pytest.mark.slow
def test_one_bad_job_does_not_stop_an_in_process_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli(
        ["-m", *FAST, "data.n=20,0,40", f"hydra.sweep.dir={sweep}"],
        env=cli_env(CAULK_ROOT=str(tmp_path)),
    )
    assert res.returncode == 2
    assert "caulk: error: data.n must be positive, got 0" in res.stderr
    assert (
        res.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "caulk: error: 1 job(s) of the sweep rejected for bad input, the others ran: job 1"
        )
    )
    assert read_record(sweep / "0" / "record.json")["status"] == "ok"
    assert read_record(sweep / "2" / "record.json")["status"] == "ok"
    assert not (sweep / "1").exists()
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("overrides", "loop"),
    [
        (["peft=full", "peft.lr=1e6"], "lightning"),
        (["peft=lora", "peft.lr=1e6"], "lightning"),
        (["peft.lr=1e37", "cache.batch_points=false"], "cached"),
        (["peft.lr=1e37"], "batched_heads"),
    ],
)
def test_a_diverged_point_is_recorded_as_diverged_in_strict_json(fast_cfg, overrides, loop):
    cfg = fast_cfg("data.n=20", *overrides)
    with pytest.raises(RuntimeError, match="non-finite at step"):
        train(cfg)
    record = _strict(Path(cfg.paths.output_dir) / "record.json")
    assert record["status"] == "diverged" and record["train_loop"] == loop
    assert isinstance(record["diverged_at_step"], int) and 0 <= record["diverged_at_step"] < 6
    assert "test_error" not in record and "test_loss" not in record


def test_a_finite_but_exploded_test_loss_is_recorded_as_diverged_not_ok(fast_cfg):
    """peft.lr=1e30 keeps every loss finite (test loss ~1e31): above 100 x ln K it is divergence."""
    cfg = fast_cfg("data.n=20", "peft.solver=sgd", "peft.lr=1e30")
    with pytest.raises(RuntimeError, match=r"the test loss \S+ is above 230 \(100 x ln\(K=10\)"):
        train(cfg)
    record = _strict(Path(cfg.paths.output_dir) / "record.json")
    assert record["status"] == "diverged" and "lower peft.lr" in record["message"]
    assert "test_error" not in record
    sane = train(
        fast_cfg("data.n=20", "peft.solver=sgd", "peft.lr=0.1", out=cfg.paths.output_dir + "_sane")
    )
    assert sane["status"] == "ok" and sane["test_loss"] < 230


def test_a_failure_of_the_batched_heads_still_gives_every_point_its_record(fast_cfg, tmp_path):
    cfg = fast_cfg("curve.n=[20,40]", "curve.seeds=[0,1]", "peft.lr=1e38")
    with pytest.raises(RuntimeError, match="4 of 4 curve points failed"):
        train_curve(cfg)
    records = [_strict(p) for p in sorted((tmp_path / "run").glob("n*_s*/record.json"))]
    assert len(records) == 4
    assert {r["status"] for r in records} <= {"failed", "diverged"}


def test_records_are_strict_json_whatever_the_payload(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", {"a": float("nan"), "b": [float("inf"), 1.0]})
    assert _strict(path) == {"a": None, "b": [None, 1.0]}


def _train_until_the_n20_point_trains(out: Path, ns: str) -> tuple[subprocess.Popen, list]:
    """Start ``caulk.train`` on a curve (n in ``ns``, seeds 0 and 1) and return once its n=20
    point is training (``WaitForSigterm`` holds it there); the process and its command."""
    args = [
        *FAST,
        f"curve.n={ns}",
        "curve.seeds=[0,1]",
        "cache.features=false",
        "trainer.max_steps=30",
        "+callbacks.wait._target_=tests.helpers.WaitForSigterm",
        f"hydra.run.dir={out}",
    ]
    cmd = [sys.executable, "-m", "caulk.train", *args]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=cli_env(CAULK_TEST_SIGTERM_N="20"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    marker = out / "n20_s0" / "waiting_for_sigterm"
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None:  # the n=20 point is training now
        assert time.monotonic() < deadline, "the n=20 point never started"
        time.sleep(0.2)
    return proc, cmd


@pytest.mark.slow
def test_sigterm_exits_143_and_records_the_interrupted_point(tmp_path):
    out = tmp_path / "run"
    proc, _ = _train_until_the_n20_point_trains(out, "[10,20,40,80]")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    statuses = {p.parent.name: _strict(p)["status"] for p in out.glob("n*_s*/record.json")}
    assert statuses == {"n10_s0": "ok", "n10_s1": "ok", "n20_s0": "interrupted"}


def _interrupted_cleanly(proc: subprocess.Popen) -> None:
    """Exit 130 after SIGINT, and one line on stderr for it (no traceback)."""
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == INTERRUPTED


@pytest.mark.slow
def test_sigint_while_a_point_trains_exits_130_in_one_line_and_the_relaunch_resumes(tmp_path):
    out = tmp_path / "run"
    proc, cmd = _train_until_the_n20_point_trains(out, "[10,20]")
    proc.send_signal(signal.SIGINT)  # what Ctrl+C sends
    _interrupted_cleanly(proc)
    statuses = {p.parent.name: _strict(p)["status"] for p in out.glob("n*_s*/record.json")}
    assert statuses == {"n10_s0": "ok", "n10_s1": "ok", "n20_s0": "interrupted"}
    finished = (out / "n10_s0" / "record.json").read_bytes()

    again = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    statuses = {p.parent.name: _strict(p)["status"] for p in out.glob("n*_s*/record.json")}
    assert set(statuses.values()) == {"ok"} and len(statuses) == 4
    assert (out / "n10_s0" / "record.json").read_bytes() == finished  # kept, not retrained


@pytest.mark.slow
def test_sigint_between_points_of_a_light_loop_curve_exits_130_in_one_line(tmp_path):
    """The cached light loop is no Lightning fit: Ctrl+C reaches caulk as a raw KeyboardInterrupt,
    wherever it lands (a point, a record, the next point's setup)."""
    out = tmp_path / "run"
    args = [
        *FAST,
        "curve.n=[10,20,40,80,160]",
        "curve.seeds=[0,1,2]",
        "peft.solver=sgd",
        "cache.batch_points=false",
        "trainer.max_steps=200",
        f"hydra.run.dir={out}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "caulk.train", *args],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while len(list(out.glob("n*_s*/record.json"))) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "three points never finished"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _interrupted_cleanly(proc)
    statuses = [_strict(p)["status"] for p in out.glob("n*_s*/record.json")]
    assert 3 <= len(statuses) < 15 and set(statuses) <= {"ok", "interrupted"}


@pytest.mark.slow
def test_two_processes_on_one_dir_train_each_point_once(tmp_path):
    out = tmp_path / "run"
    args = [
        "-m",
        "caulk.train",
        *FAST,
        "curve.n=[10,20]",
        "curve.seeds=[0]",
        "cache.features=false",
        "trainer.max_steps=30",
        "logger=csv",
        f"hydra.run.dir={out}",
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert sum("already have an ok record: skipped" in log for log in logs) == 1
    for point in ("n10_s0", "n20_s0"):
        header, *rows = (out / point / "csv" / "metrics.csv").read_text().splitlines()
        assert header not in rows  # one writer: the header once, the steps in order
        steps = [int(r.split(",")[header.split(",").index("step")]) for r in rows]
        assert steps == sorted(steps)
        assert _strict(out / point / "record.json")["global_steps"] == 30


def _pico_safetensors(path: Path) -> Path:
    model = timm.create_model("caulk_vit_pico", num_classes=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize(
    "damage", ["text", pytest.param("truncated", marks=pytest.mark.slow), "text_pth"]
)
def test_a_weights_file_that_is_not_weights_is_one_line(tmp_path, damage):
    if damage == "truncated":
        good = _pico_safetensors(tmp_path / "good.safetensors")
        weights = tmp_path / "w.safetensors"
        weights.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:
        weights = tmp_path / ("w.pth" if damage == "text_pth" else "w.safetensors")
        weights.write_text("these are not weights\n")
    out = tmp_path / "run"
    res = run_cli(
        [*FAST, "model.weights=file", f"model.weights_file={weights}", f"hydra.run.dir={out}"]
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert (
        res.stderr.strip()
        .splitlines()[-1]
        .startswith(f"caulk: error: model.weights_file {weights} is not a readable weights file")
    )
    assert not out.exists()


@pytest.mark.parametrize("meta", ["[1, 2]", '"name"', "null"])
def test_zoo_metadata_that_is_json_but_not_an_object_is_reported(tmp_path, meta):
    entry = entry_for(
        compose_cfg(["model.source_m=0"]).model, compose_cfg().source_task, tmp_path / "zoo"
    )
    entry.zoo_dir.mkdir(parents=True)
    entry.meta_path.write_text(meta)
    with pytest.raises(CaulkConfigError, match="is not a metadata object.*delete"):
        verify(entry)
