"""Every PEFT method through ``train`` and ``python -m caulk.train``: records, checkpoints and the
adapter-only safetensors export, reloaded onto a fresh backbone."""

from __future__ import annotations

import importlib.util
from functools import partial

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import DataLoader, TensorDataset

from caulk.backbones import create_backbone
from caulk.data import build_datamodule
from caulk.errors import CaulkConfigError
from caulk.peft import load_adapter, read_adapter
from caulk.run.record import read_record
from caulk.train import train
from tests.conftest import cli_env, run_cli

ONE_THREAD = cli_env(OMP_NUM_THREADS="1")  # tiny models on a shared CPU: far faster

TEST_RESNET = ["model=resnet18", "model.arch=test_resnet", "model.tag=r160_in1k"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: one thread avoids oversubscription on a shared CPU (many times faster here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def resnet_file(tmp_path):
    """A test_resnet 'pre-trained' weights file (no zero-init BatchNorm gammas)."""
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=0, zero_init_last=False)
    path = tmp_path / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_partial_on_a_resnet_trains_records_and_exports_a_reloadable_adapter(
    fast_cfg, tmp_path, resnet_file
):
    out = tmp_path / "run"
    cfg = fast_cfg(
        *TEST_RESNET,
        "model.weights=file",
        f"model.weights_file={resnet_file}",
        "peft=partial",
        "peft.blocks=1",
        "data.n=30",
        out=out,
    )
    rec = train(cfg)
    layer4 = 192 * 96 * 9 + 96 * 96 * 9 + 192 * 96 + 3 * 2 * 96  # test_resnet's last stage
    assert rec["status"] == "ok" and rec["peft_knob"] == "blocks" and rec["peft_knob_value"] == 1
    assert rec["peft_params"] == layer4
    assert rec["trainable_params"] == layer4 + 96 * 10 + 10
    assert read_record(out / "record.json")["adapter_file"] == str(out / "adapter.safetensors")
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    bn_stats = {k for k in ckpt if k.endswith("running_mean")}
    # the tuned stage's BatchNorm statistics moved with it; frozen stages are not saved
    assert bn_stats and all(k.startswith(("backbone.layer4.", "head.")) for k in bn_stats)

    # the adapter file alone, on a fresh backbone, reproduces the recorded test error exactly
    bb = create_backbone(cfg.model)
    reloaded = load_adapter(out / "adapter.safetensors", bb.model)
    dm = build_datamodule(cfg.data, int(cfg.seed))
    dm.set_input_transform(bb.data_config)
    wrong = total = loss = 0.0
    with torch.no_grad():
        for x, y, _ in dm.test_dataloader():
            logits = reloaded(x)
            wrong += int((logits.argmax(1) != y).sum())
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            total += len(y)
    assert total == rec["n_test"]
    assert loss / total == pytest.approx(rec["test_loss"], rel=1e-6)
    assert wrong / total == pytest.approx(rec["test_error"], abs=1e-6)


@pytest.mark.parametrize("method", ["linear", "bitfit", "lora"])
def test_lightning_fit_never_moves_frozen_batchnorm_statistics(method, resnet_file):
    """No explicit train()/eval() before fit: a fresh timm model starts in train mode, and
    Lightning >= 2.2 does not call train() itself."""
    import pytorch_lightning as pl
    from omegaconf import OmegaConf

    from caulk.module import TransferModule
    from caulk.peft import apply_peft

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=0, zero_init_last=False)  # train mode
    peft_cfg = {"name": method, "rank": 2, "alpha": 2.0, "dropout": 0.0, "targets": "conv"}
    method_obj = apply_peft(model, OmegaConf.create(peft_cfg))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    module = TransferModule(model, method_obj, 10, optimizer=partial(torch.optim.AdamW, lr=0.1))
    x, y = torch.randn(8, 3, 64, 64), torch.arange(8) % 10
    loader = DataLoader(TensorDataset(x, y, torch.arange(8)), batch_size=4)
    trainer = pl.Trainer(
        max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, train_dataloaders=loader)
    frozen = set(before) - {k.removeprefix("backbone.") for k in module.trainable_state_dict()}
    assert any(k.endswith("running_var") for k in frozen)
    for k in frozen:
        assert torch.equal(before[k], model.state_dict()[k]), k


def test_vpt_on_a_resnet_fails_before_training_and_writes_nothing(fast_cfg, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(CaulkConfigError, match="peft=vpt needs a Vision Transformer") as e:
        train(fast_cfg(*TEST_RESNET, "model.weights=none", "peft=vpt", out=out))
    assert "\n" not in str(e.value)
    assert not out.exists()


BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
EVERY_METHOD = ["linear", "full", "partial", "bitfit", "lora", "adapter", "vpt", "ssf", "hf"]


@pytest.mark.slow
def test_every_method_runs_end_to_end_from_the_cli(tmp_path):
    methods = [m for m in EVERY_METHOD if m != "hf" or importlib.util.find_spec("peft")]
    sweep = tmp_path / "sweep"
    res = run_cli(
        ["-m", f"peft={','.join(methods)}", "debug=fast", "data.n=30", f"hydra.sweep.dir={sweep}"],
        env=ONE_THREAD,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    records = [read_record(p) for p in sorted(sweep.glob("*/record.json"))]
    assert sorted(r["peft"] for r in records) == sorted(methods)
    for r in records:
        assert r["status"] == "ok", r
        assert r["trainable_params"] - 650 == r["peft_params"]  # head: 64 features -> 10 classes
        assert (r["peft_params"] > 0) == (r["peft"] != "linear")
        assert r["adapter_file"].endswith("adapter.safetensors")
        tensors, meta = read_adapter(r["adapter_file"])
        assert meta["peft"]["name"] == r["peft"]
        assert (
            sum(t.numel() for k, t in tensors.items() if not k.endswith(BUFFERS))
            == (r["trainable_params"])
        )
        torch.load(f"{r['output_dir']}/checkpoints/last.ckpt", weights_only=True)


@pytest.mark.slow
def test_full_from_scratch_baseline_from_the_cli(tmp_path):
    out = tmp_path / "job"
    res = run_cli(
        ["peft=full", "model.weights=none", "debug=fast", f"hydra.run.dir={out}"], env=ONE_THREAD
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rec = read_record(out / "record.json")
    assert rec["weights"] == "none" and rec["trainable_params"] == rec["total_params"]
    assert "peft        full: 214,218 trainable / 214,218 total params (100.00%)" in res.stdout
