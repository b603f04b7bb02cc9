"""Training end to end: records, frozen backbone, checkpoints, bad input, failures, the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from caulk.backbones import create_backbone, state_dict_tensors
from caulk.errors import CaulkConfigError
from caulk.run.record import read_record
from caulk.train import train
from tests.conftest import cli_env, run_cli


def _outputs(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) if path.exists() else []


def test_train_writes_a_complete_record(fast_cfg, tmp_path):
    out = tmp_path / "run"
    rec = train(fast_cfg("data.n=40", "seed=3", out=out))
    on_disk = read_record(out / "record.json")
    assert on_disk == json.loads(json.dumps(rec, default=str))
    for key in (
        "model",
        "backbone_tag",
        "weights",
        "source_m",
        "peft",
        "peft_knob",
        "trainable_params",
        "total_params",
        "data",
        "n",
        "seed",
        "test_error",
        "test_loss",
        "val_error",
        "status",
        "message",
        "wall_time_s",
        "caulk_version",
        "config",
        "n_train_seen",
        "n_test",
    ):
        assert key in on_disk, key
    assert on_disk["status"] == "ok" and on_disk["n"] == 40 and on_disk["seed"] == 3
    assert on_disk["n_train_seen"] == 40 == on_disk["train_samples_per_epoch"]
    assert on_disk["n_test"] == 450
    assert on_disk["trainable_params"] == 64 * 10 + 10  # pico width 64 -> 10 classes
    assert on_disk["total_params"] > 200_000
    assert on_disk["config"]["data"]["n"] == 40
    assert 0.0 <= on_disk["test_error"] <= 1.0
    assert not list(out.glob(".record.json*"))  # no temp file left behind


def test_backbone_tensors_and_buffers_unchanged_by_fit(fast_cfg, tmp_path):
    """A BatchNorm CNN trained with a big learning rate: frozen tensors and BN stats never move."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from caulk.data import build_datamodule
    from caulk.module import TransferModule
    from caulk.peft import apply_peft

    cfg = fast_cfg(
        "model=resnet18",
        "model.arch=test_resnet",
        "model.tag=r160_in1k",
        "model.weights=none",
        "data.n=30",
        "data.batch_size=10",
        "peft.lr=0.5",
    )
    bb = create_backbone(cfg.model)
    dm = build_datamodule(cfg.data, 0)
    dm.set_input_transform(bb.data_config)
    method = apply_peft(bb.model, cfg.peft)
    before = state_dict_tensors(bb.model)
    module = TransferModule(bb.model, method, 10, optimizer=instantiate(cfg.optimizer))
    head_before = module.head[1].weight.detach().clone()
    trainer = pl.Trainer(
        max_steps=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    module.train()  # even an explicit train() call keeps the frozen backbone in eval mode
    assert not bb.model.training and module.head.training
    trainer.fit(module, datamodule=dm)
    after = bb.model.state_dict()
    assert before.keys() == after.keys()
    bn_buffers = [
        k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    ]
    assert bn_buffers
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert not torch.equal(head_before, module.head[1].weight)  # the head did train


def test_lora_trains_only_its_deltas_and_the_head(fast_cfg, tmp_path):
    cfg = fast_cfg("peft=lora", "peft.rank=2", "peft.dropout=0.1", "data.n=50", "peft.lr=0.05")
    rec = train(cfg)
    assert rec["status"] == "ok" and rec["peft"] == "lora"
    assert rec["peft_knob"] == "rank" and rec["peft_knob_value"] == 2
    # 4 blocks x rank 2 x (64 in + 192 out) for the LoRA deltas + the 64->10 head
    assert rec["trainable_params"] == 4 * 2 * (64 + 192) + 650
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    saved = set(ckpt["state_dict"])
    assert saved and all("lora_" in k or k.startswith("head.") for k in saved)
    assert any(
        k.endswith("lora_B") and torch.count_nonzero(ckpt["state_dict"][k]) > 0 for k in saved
    )
    assert (
        isinstance(ckpt["hyper_parameters"], dict) and ckpt["hyper_parameters"]["peft"]["rank"] == 2
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.n=0"], "data.n must be positive"),
        (["data.n=-5"], "data.n must be positive"),
        (["data.n=100000"], "larger than the training pool"),
        (["data.n=7"], "smaller than the number of classes"),
        (["model.weights=file", "model.weights_file=/nope.safetensors"], "weights file not found"),
        (["model.weights=magic"], "unknown weights source"),
        (["peft.name=nope"], "unknown peft.name"),
        (["data.name=nope"], "unknown dataset"),
        (["model.arch=nope_net"], "unknown timm architecture"),
        (["peft=lora", "peft.targets=nothing_matches"], "matched no nn.Linear"),
    ],
)
def test_bad_input_fails_before_training_and_writes_nothing(fast_cfg, tmp_path, overrides, message):
    out = tmp_path / "run"
    with pytest.raises(CaulkConfigError, match=message) as err:
        train(fast_cfg(*overrides, out=out))
    assert "\n" not in str(err.value)
    assert _outputs(out) == []


def test_a_failure_during_training_leaves_a_failed_record(fast_cfg, tmp_path):
    cfg = fast_cfg("+callbacks.explode._target_=tests.helpers.ExplodingCallback")
    with pytest.raises(RuntimeError, match="boom at step 2"):
        train(cfg)
    rec = read_record(tmp_path / "run" / "record.json")
    assert rec["status"] == "failed" and "boom at step 2" in rec["message"]
    assert "test_error" not in rec


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data.n=0"], "data.n must be positive, got 0"),
        (
            ["model=no_such_model"],
            "unknown model 'no_such_model'; available: resnet18, resnet50, vit_b,",
        ),
        (
            ["-m", "peft=linear,nope"],
            "unknown peft 'nope'; available: adapter, bitfit, full, hf, linear, lora, partial, ssf, vpt",
        ),
        (["model=vit_t"], "cannot load hub weights for vit_tiny_patch16_224.augreg_in21k"),
    ],
)
def test_cli_bad_input_is_one_line_and_leaves_nothing(tmp_path, args, message):
    out = tmp_path / "job"
    res = run_cli([*args, f"hydra.run.dir={out}", f"hydra.sweep.dir={out}"], timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith(f"caulk: error: {message}")
    assert [ln for ln in res.stderr.splitlines() if "error" in ln.lower()] == [
        res.stderr.strip().splitlines()[-1]
    ]
    assert not out.exists()  # no record, no checkpoint, no W&B run, not even Hydra's job dir


def test_group_override_check_accepts_every_real_option():
    from caulk.cli import check_group_overrides

    check_group_overrides(
        [
            "model=vit_b",
            "peft=lora,linear",
            "data=digits",
            "experiment=null",
            "seed=3",
            "model.weights=none",
            "+trainer.limit_test_batches=1",
            "hydra.run.dir=x",
            "hydra/launcher=slurm,slurm_1gpu,slurm_multigpu,submitit_local,basic",
            "trainer=ddp",
        ]
    )


def test_group_override_check_rejects_an_unknown_launcher():
    from caulk.cli import check_group_overrides
    from caulk.errors import CaulkConfigError

    with pytest.raises(
        CaulkConfigError, match="unknown hydra/launcher 'slurmm'; available: basic, slurm"
    ):
        check_group_overrides(["hydra/launcher=slurmm"])


@pytest.mark.slow
def test_default_cli_run_end_to_end_with_wandb_offline(tmp_path):
    """`python -m caulk.train` with its defaults: record, summary, checkpoint, W&B files read back."""
    out = tmp_path / "default"
    res = run_cli([f"hydra.run.dir={out}"], timeout=240, recipe=())  # the shipped defaults
    assert res.returncode == 0, res.stderr[-3000:]
    rec = read_record(out / "record.json")
    assert (rec["model"], rec["peft"], rec["data"], rec["seed"]) == (
        "vit_pico",
        "linear",
        "digits",
        0,
    )
    assert rec["n"] == rec["pool_size"] == 1797 - 450 - 150
    assert rec["n_train_seen"] == rec["n"] and rec["n_test"] == 450
    assert rec["status"] == "ok" and rec["test_error"] < 0.8  # 10 classes: chance is 0.9
    assert rec["wall_time_s"] < 60
    for word in (
        "vit_pico",
        "linear",
        f"n={rec['n']}",
        "test error",
        f"{rec['test_error']:.4f}",
        "trainable",
    ):
        assert word in res.stdout
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert set(ckpt["state_dict"]) == {
        "head.0.running_mean",
        "head.0.running_var",
        "head.0.num_batches_tracked",
        "head.1.weight",
        "head.1.bias",
    }
    assert (out / "csv" / "metrics.csv").is_file()
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    summary = subprocess.run(
        [
            str(Path(sys.executable).parent / "wandb"),
            "leet",
            "inspect",
            "--summary",
            "--json",
            str(runs[0]),
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert summary.returncode == 0, summary.stderr
    data = json.loads(summary.stdout)
    text = json.dumps(data)
    assert '"n"' in text and "test/error" in text
    assert _find(data, "n") == rec["n"]
    assert abs(_find(data, "test/error") - rec["test_error"]) < 1e-6


def _find(obj, key):
    """First value stored under ``key`` anywhere in a nested JSON object."""
    if isinstance(obj, dict):
        if key in obj and not isinstance(obj[key], (dict, list)):
            return obj[key]
        for v in obj.values():
            found = _find(v, key)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for v in obj:
            found = _find(v, key)
            if found is not None:
                return found
    return None


@pytest.mark.slow
def test_user_command_vit_b_lora_runs_on_a_real_vit_b(tmp_path):
    """`python -m caulk.train model=vit_b peft=lora` (random init offline; 2 steps, 1 test batch)."""
    out = tmp_path / "vitb"
    res = run_cli(
        [
            "model=vit_b",
            "peft=lora",
            "model.weights=none",
            "data.n=10",
            "data.batch_size=5",
            "data.val_size=0",
            "trainer.max_steps=2",
            "+trainer.limit_test_batches=1",
            "logger=csv",
            f"hydra.run.dir={out}",
        ],
        timeout=400,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rec = read_record(out / "record.json")
    assert rec["backbone_tag"] == "vit_base_patch16_224.augreg_in21k"
    # 12 fused qkv layers (768 -> 2304) with rank-8 deltas, plus the 768 -> 10 head
    assert rec["trainable_params"] == 12 * 8 * (768 + 2304) + 768 * 10 + 10
    assert 85_000_000 < rec["total_params"] < 87_000_000
    assert rec["n_test"] == 5 and rec["n_train_seen"] == 10


@pytest.mark.slow
def test_multirun_sweep_writes_one_record_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli(
        ["-m", "data.n=20,40", "seed=0,1", "debug=fast", f"hydra.sweep.dir={sweep}"], timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    records = {p.parent.name: read_record(p) for p in sweep.glob("*/record.json")}
    assert sorted(records) == ["0", "1", "2", "3"]  # job dirs are the job numbers
    points = sorted((r["n"], r["seed"]) for r in records.values())
    assert points == [(20, 0), (20, 1), (40, 0), (40, 1)]
    assert all(r["status"] == "ok" and r["n_train_seen"] == r["n"] for r in records.values())


def test_a_last_batch_of_one_example_trains(fast_cfg):
    """n % batch_size == 1: the head's feature standardisation must take a batch of one."""
    rec = train(fast_cfg("data.n=21", "data.batch_size=10"))
    assert rec["status"] == "ok" and rec["n_train_seen"] == 21
