"""The batched engine's lean suffix: the class token alone in the last block and the first
block's frozen qkv computed once give timm's own forward (``run_suffix``, the oracle) and its
gradients, for every PEFT method the batched_suffix engine trains. In float64, so that the
comparison is tight: in float32 the two summation orders differ by rounding (gradients up to
1% apart on random weights)."""

import pytest
import timm
import torch
from omegaconf import OmegaConf

import caulk.zoo.models  # noqa: F401  (registers caulk_vit_pico)
from caulk.cache.prefix import plan_prefix, run_prefix, run_suffix
from caulk.engines.lean_suffix import LeanSuffix
from caulk.peft import apply_peft

#: method config, whether the first block's qkv is cached (a serial adapter wraps the attention)
METHODS = {
    "lora_qkv": ({"name": "lora", "rank": 4, "alpha": 8.0, "targets": "qkv"}, True),
    "lora_qkv_2blocks": ({"name": "lora", "rank": 4, "alpha": 8.0, "targets": "qkv"}, True),
    "lora_qv_2blocks": ({"name": "lora", "rank": 4, "alpha": 4.0, "targets": ["q", "v"]}, True),
    "lora_mlp": ({"name": "lora", "rank": 4, "alpha": 4.0, "targets": "mlp"}, True),
    "adapter": ({"name": "adapter", "width": 8, "style": "serial", "scale": 0.1}, False),
    "adapter_parallel": ({"name": "adapter", "width": 8, "style": "parallel", "scale": 0.1}, True),
    "partial": ({"name": "partial", "blocks": 1}, False),
}
DEFAULTS = {"dropout": 0.0, "lr": 1e-3, "weight_decay": 0.0, "last_k_blocks": 1}


def _adapted(method: dict, last_k: int, **model_kw):
    torch.manual_seed(0)
    model = timm.create_model("caulk_vit_pico", num_classes=0, **model_kw).train()
    cfg = {**DEFAULTS, **method, "last_k_blocks": last_k}
    if method["name"] == "partial":
        cfg.pop("last_k_blocks")
    peft = apply_peft(model, OmegaConf.create(cfg))
    model.double()
    with torch.no_grad():  # away from the zero init, so that every trained tensor matters
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn_like(p))
    return model, plan_prefix(model, peft)


def _output_and_grads(model, fn) -> tuple[torch.Tensor, list[torch.Tensor]]:
    out = fn()
    trained = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out.square().sum(), trained)
    return out.detach(), grads


@pytest.mark.parametrize("name", list(METHODS))
def test_the_lean_suffix_gives_timms_outputs_and_gradients(name):
    method, cached_qkv = METHODS[name]
    model, plan = _adapted(method, last_k=2 if name.endswith("2blocks") else 1)
    with torch.no_grad():
        x = run_prefix(model, plan, torch.randn(6, 3, 32, 32, dtype=torch.float64))
    lean = LeanSuffix(model, plan)
    assert lean.class_token_only and lean.cached_qkv == cached_qkv
    assert lean.token0_lora == (name == "lora_qkv")
    qkv = lean.first_block_qkv(x)
    assert (qkv is not None) == cached_qkv
    inputs = lean.inputs(x)
    assert len(inputs) == (5 if lean.token0_lora else 2 if cached_qkv else 1)
    want, want_grads = _output_and_grads(model, lambda: run_suffix(model, plan, x))
    for run in (lambda: lean(x, qkv), lambda: lean(*inputs)):
        got, got_grads = _output_and_grads(model, run)
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
        for g, w in zip(got_grads, want_grads, strict=True):
            torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-8)


def test_the_token0_lora_inputs_of_chosen_rows_are_those_rows_inputs():
    model, plan = _adapted(METHODS["lora_qkv"][0], last_k=1)
    with torch.no_grad():
        x = run_prefix(model, plan, torch.randn(6, 3, 32, 32, dtype=torch.float64))
    lean, rows = LeanSuffix(model, plan), torch.tensor([4, 1, 1])
    with torch.no_grad():
        picked = lean(*(t[rows] for t in lean.inputs(x)))
        torch.testing.assert_close(picked, run_suffix(model, plan, x[rows]), atol=1e-10, rtol=0)


def test_average_pooling_reads_every_token_so_the_last_block_runs_in_full():
    model, plan = _adapted(METHODS["lora_qkv"][0], last_k=1, global_pool="avg")
    with torch.no_grad():
        x = run_prefix(model, plan, torch.randn(4, 3, 32, 32, dtype=torch.float64))
    lean = LeanSuffix(model, plan)
    assert not lean.class_token_only and lean.cached_qkv
    with torch.no_grad():
        got, want = lean(x, lean.first_block_qkv(x)), run_suffix(model, plan, x)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
