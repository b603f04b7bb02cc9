"""DDP on CPU (gloo, 2 processes): n stays exact and test metrics count every example once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from caulk.backbones import create_backbone
from caulk.data import build_datamodule
from caulk.peft.export import load_adapter
from tests.conftest import FIXED_RECIPE, compose_cfg, run_cli

pytestmark = [pytest.mark.ddp, pytest.mark.slow]

DDP = [
    *FIXED_RECIPE,
    "trainer=ddp",
    "trainer.devices=2",
    "trainer.accelerator=cpu",
    "trainer.precision=32-true",
    "debug=fast",
]


def _single_process_test_error(record: dict) -> tuple[float, int]:
    """Evaluate the saved adapter on the whole test split in this one process."""
    cfg = compose_cfg([f"data.n={record['n']}", f"seed={record['seed']}"])
    backbone = create_backbone(cfg.model)
    module = load_adapter(record["adapter_file"], backbone.model).eval()
    dm = build_datamodule(cfg.data, record["seed"])
    dm.set_input_transform(backbone.data_config)
    wrong = total = 0
    with torch.no_grad():
        for x, y, _ in dm.test_dataloader():
            wrong += int((module(x).argmax(-1) != y).sum())
            total += len(y)
    acc = torch.tensor(total - wrong).float() / torch.tensor(total).float()
    return float(1.0 - acc), total


@pytest.mark.parametrize("n", [33])  # odd n on 2 ranks: padding would train on 34
def test_ddp_run_keeps_n_exact_and_its_test_error_is_a_single_process_evaluation(tmp_path, n):
    out = tmp_path / "run"
    proc = run_cli([*DDP, f"data.n={n}", f"hydra.run.dir={out}"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "ok"
    assert record["config"]["trainer"]["strategy"] == "ddp"
    assert record["n_train_seen"] == n  # union over both ranks, no example repeated or dropped
    assert record["train_samples_per_epoch"] == n
    error, n_test = _single_process_test_error(record)
    assert record["n_test"] == n_test  # every test example counted once
    assert record["test_error"] == error
    assert list(out.rglob("record.json")) == [out / "record.json"]  # rank 1 writes nothing


def test_ddp_in_a_multirun_does_not_relaunch_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "-m",
            *DDP,
            "data.n=21,30",
            f"hydra.sweep.dir={sweep}",
            "hydra.callbacks.analyze.enabled=false",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]  # children joined their job: no nested sweep, no extra job dirs
    for job, n in (("0", 21), ("1", 30)):
        record = json.loads((sweep / job / "record.json").read_text())
        assert record["status"] == "ok"
        assert (record["n"], record["n_train_seen"]) == (n, n)
        assert Path(record["output_dir"]) == (sweep / job).resolve()
    assert proc.stdout.count("caulk run summary") == 2
