"""Backbone weights: local files load exactly; hub weights come from the local cache or fail fast."""

import os
import subprocess
import sys
import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from caulk.backbones import create_backbone
from caulk.errors import CaulkConfigError
from tests.conftest import REPO, compose_cfg


def _model_cfg(*overrides):
    return compose_cfg(list(overrides)).model


@pytest.fixture(scope="module")
def pico_state():
    torch.manual_seed(123)
    model = timm.create_model("caulk_vit_pico", num_classes=0)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_file_weights_load_exactly(tmp_path, pico_state, suffix):
    path = tmp_path / f"pico{suffix}"
    if suffix == ".safetensors":
        save_file(pico_state, str(path))
    else:
        torch.save(pico_state, path)
    bb = create_backbone(_model_cfg("model.weights=file", f"model.weights_file={path}"))
    loaded = bb.model.state_dict()
    assert loaded.keys() == pico_state.keys()
    for k, v in pico_state.items():
        assert torch.equal(loaded[k], v), k
    fresh = create_backbone(_model_cfg("model.weights=none")).model.state_dict()
    assert not torch.equal(
        fresh["blocks.0.attn.qkv.weight"], pico_state["blocks.0.attn.qkv.weight"]
    )


def test_weights_file_for_another_architecture_is_rejected(tmp_path):
    other = timm.create_model("caulk_vit_nano", num_classes=0).state_dict()
    path = tmp_path / "nano.safetensors"
    save_file({k: v.contiguous() for k, v in other.items()}, str(path))
    with pytest.raises(
        CaulkConfigError, match=r"does not fit caulk_vit_pico: \d+ tensors of another shape"
    ) as err:
        create_backbone(_model_cfg("model.weights=file", f"model.weights_file={path}"))
    assert "\n" not in str(err.value)


def test_partial_weights_file_is_rejected(tmp_path, pico_state):
    path = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in pico_state.items() if not k.startswith("blocks.3")}, str(path))
    with pytest.raises(
        CaulkConfigError,
        match=r"does not fit caulk_vit_pico: 12 backbone tensors missing \(first: blocks\.3\.",
    ):
        create_backbone(_model_cfg("model.weights=file", f"model.weights_file={path}"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.weights=file", "model.weights_file=/no/such/file.safetensors"],
            "weights file not found",
        ),
        (["model.weights=file"], "needs model.weights_file"),
        (["model.weights=cloud"], "unknown weights source"),
        (["model.arch=not_a_timm_model"], "unknown timm architecture"),
        (["model=vit_pico", "model.weights=hub"], "knows no hub weights"),
    ],
)
def test_bad_weights_config_is_one_line_error(overrides, message):
    with pytest.raises(CaulkConfigError, match=message) as err:
        create_backbone(_model_cfg(*overrides))
    assert "\n" not in str(err.value)


def test_hub_without_network_fails_fast_naming_both_remedies(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    start = time.perf_counter()
    with pytest.raises(CaulkConfigError) as err:
        create_backbone(_model_cfg("model=vit_t"))
    assert time.perf_counter() - start < 10
    msg = str(err.value)
    assert "\n" not in msg and "cannot reach" in msg
    assert "model.weights=file" in msg and "model.weights=none" in msg


def test_hub_weights_load_from_the_local_hf_cache_offline(tmp_path):
    """The real hub path: weights found in the HF cache load with no network at all."""
    torch.manual_seed(7)
    state = timm.create_model("vit_tiny_patch16_224", num_classes=0).state_dict()
    snap = tmp_path / "hub" / "models--timm--vit_tiny_patch16_224.augreg_in21k"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("0" * 40)
    (snap / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        str(snap / "snapshots" / ("0" * 40) / "model.safetensors"),
    )
    torch.save(state["blocks.0.attn.qkv.weight"], tmp_path / "expected.pt")
    code = (
        "import torch; from caulk.backbones import create_backbone; from tests.conftest import compose_cfg;"
        "bb = create_backbone(compose_cfg(['model=vit_t']).model);"
        f"exp = torch.load('{tmp_path / 'expected.pt'}');"
        "assert torch.equal(bb.model.state_dict()['blocks.0.attn.qkv.weight'], exp); print('LOADED')"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert "LOADED" in res.stdout, res.stderr[-2000:]
