"""Preemption-safe training and idempotent sweeps, without Slurm (the Slurm versions: test_slurm)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from caulk.analysis.collect import collect_records
from caulk.data.sharding import train_batches, train_loader
from caulk.train import train, train_curve
from tests.conftest import cli_env, run_cli

RESUME = [
    "trainer.max_steps=14",
    "trainer.val_check_interval=5",  # a checkpoint every 5 steps, mid-epoch (2 batches per epoch)
    "data.n=50",
    "+callbacks.interrupt._target_=tests.helpers.InterruptAtStep",
]
RESULT_KEYS = (
    "test_error",
    "test_loss",
    "val_error",
    "n_test",
    "n_train_seen",
    "train_samples_per_epoch",
    "global_steps",
    "epochs",
)


def _same_result(a: dict, b: dict) -> None:
    assert {k: a[k] for k in RESULT_KEYS} == {k: b[k] for k in RESULT_KEYS}
    wa, wb = load_file(a["adapter_file"]), load_file(b["adapter_file"])
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.mark.parametrize("peft", ["linear", "lora"])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(
    fast_cfg, tmp_path, monkeypatch, peft
):
    whole = train(fast_cfg(*RESUME, f"peft={peft}", out=tmp_path / "whole"))
    assert whole["resumed_from"] is None

    cfg = fast_cfg(*RESUME, f"peft={peft}", out=tmp_path / "cut")
    monkeypatch.setenv("CAULK_TEST_INTERRUPT_AT", "8")
    with pytest.raises(RuntimeError, match="interrupted at step 8"):
        train(cfg)
    failed = json.loads((tmp_path / "cut" / "record.json").read_text())
    assert failed["status"] == "failed"
    assert (tmp_path / "cut" / "checkpoints" / "last.ckpt").is_file()

    monkeypatch.delenv("CAULK_TEST_INTERRUPT_AT")
    resumed = train(cfg)  # the requeued job: same config, same output dir
    assert resumed["status"] == "ok"
    assert resumed["resumed_from"].endswith("checkpoints/last.ckpt")
    _same_result(resumed, whole)


def test_a_checkpoint_from_another_config_is_not_resumed(fast_cfg, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("CAULK_TEST_INTERRUPT_AT", "8")
    with pytest.raises(RuntimeError):
        train(fast_cfg(*RESUME, out=out))
    monkeypatch.delenv("CAULK_TEST_INTERRUPT_AT")
    with pytest.warns(UserWarning, match="another config"):
        record = train(fast_cfg(*RESUME, "optimizer.weight_decay=0.123", out=out))
    assert record["status"] == "ok" and record["resumed_from"] is None


def test_one_rank_batches_match_a_shuffled_dataloader():
    data = torch.utils.data.TensorDataset(torch.arange(37))
    plain = torch.utils.data.DataLoader(
        data, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(3)
    )
    ours = train_loader(data, 8, seed=3)
    for _ in range(3):  # epochs
        assert [b[0].tolist() for b in ours] == [b[0].tolist() for b in plain]


@pytest.mark.parametrize(
    ("n", "batch", "world"), [(33, 32, 2), (65, 32, 2), (10, 4, 3), (37, 8, 4)]
)
def test_ranks_share_each_epoch_exactly_and_step_together(n, batch, world):
    perm = torch.randperm(n).tolist()
    shards = [train_batches(perm, batch, rank, world) for rank in range(world)]
    seen = [i for shard in shards for b in shard for i in b]
    assert sorted(seen) == sorted(perm)  # every example once: none repeated, none dropped
    assert len({len(s) for s in shards}) == 1  # same number of steps on every rank
    assert all(b for s in shards for b in s)  # no empty batch


def test_a_relaunched_curve_skips_ok_points_and_reruns_the_rest(fast_cfg, tmp_path):
    cfg = fast_cfg("curve.n=[20,40]", "curve.seeds=[0]", out=tmp_path / "job")
    first = train_curve(cfg)
    # a point that failed (or never ran) before the relaunch
    (tmp_path / "job" / "n40_s0" / "record.json").unlink()
    stamp = (tmp_path / "job" / "n20_s0" / "record.json").stat().st_mtime_ns
    again = train_curve(cfg)
    assert (tmp_path / "job" / "n20_s0" / "record.json").stat().st_mtime_ns == stamp  # skipped
    assert [r["test_error"] for r in again] == [r["test_error"] for r in first]
    assert all(r["status"] == "ok" for r in again)


def _records(sweep):
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/record.json"))}


@pytest.mark.slow
def test_a_relaunched_sweep_reruns_only_failed_and_missing_points(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "debug=fast",
        "data.n=20,30,40",
        "+callbacks.interrupt._target_=tests.helpers.InterruptAtStep",
        f"hydra.sweep.dir={sweep}",
        "hydra.callbacks.analyze.enabled=false",
    ]
    # job 1 (n=30) fails; the others go on and record ok
    env = cli_env(CAULK_TEST_INTERRUPT_AT="3", CAULK_TEST_INTERRUPT_N="30")
    proc = run_cli(args, env=env)
    assert proc.returncode != 0
    first = _records(sweep)
    assert {k: r["status"] for k, r in first.items()} == {"0": "ok", "1": "failed", "2": "ok"}
    assert "interrupted at step 3" in first["1"]["message"]
    (sweep / "2" / "record.json").unlink()  # a job that never wrote its record
    coll = collect_records([sweep])
    assert [f["path"] for f in coll.failed] == [str(sweep / "1" / "record.json")]
    assert coll.missing == [str(sweep / "2")]

    proc = run_cli(args)  # relaunch into the same sweep dir
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = _records(sweep)
    assert {k: r["status"] for k, r in again.items()} == {"0": "ok", "1": "ok", "2": "ok"}
    assert again["0"]["wall_time_s"] == first["0"]["wall_time_s"]  # not trained again
    assert "skipped" in proc.stdout + proc.stderr


def test_analysis_reports_the_missing_points_of_a_curve_job(tmp_path):
    from omegaconf import OmegaConf

    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create(
            {"curve": {"n": [20, 40], "seeds": [0, 1]}, "data": {"n": None}, "seed": 0}
        ),
        job / ".hydra" / "config.yaml",
    )
    for point in ("n20_s0", "n20_s1", "n40_s0"):
        (job / point).mkdir()
        (job / point / "record.json").write_text(json.dumps({"status": "ok", "n": 20}))
    coll = collect_records([tmp_path / "sweep"])
    assert coll.missing == [str(job / "n40_s1")]
