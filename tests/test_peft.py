"""PEFT methods: linear probe and LoRA (zero-init B, frozen base, alpha/r scaling, merge)."""

import pytest
import timm
import torch
from omegaconf import OmegaConf

from caulk.errors import CaulkConfigError
from caulk.peft import LoRALinear, apply_peft, get_peft, list_pefts
from caulk.peft.lora import merge_lora


def _lora_cfg(**kw):
    base = dict(
        name="lora", rank=4, alpha=8.0, dropout=0.0, targets="qkv", lr=1e-3, weight_decay=0.0
    )
    return OmegaConf.create({**base, **kw})


def _pico(seed=0):
    torch.manual_seed(seed)
    return timm.create_model("caulk_vit_pico", num_classes=0).eval()


def test_registry_knows_linear_and_lora():
    assert {"linear", "lora"} <= set(list_pefts())
    with pytest.raises(CaulkConfigError, match="unknown peft.name='nope'"):
        get_peft("nope")


def test_linear_probe_freezes_everything_in_the_backbone():
    model = _pico()
    method = apply_peft(model, OmegaConf.create({"name": "linear"}))
    assert method.backbone_is_frozen
    assert not any(p.requires_grad for p in model.parameters())


def test_lora_wraps_targets_zero_init_and_keeps_outputs():
    model, ref = _pico(), _pico()
    x = torch.randn(3, 3, 32, 32)
    apply_peft(model, _lora_cfg(rank=4, alpha=8.0))
    wrapped = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == len(ref.blocks)  # one qkv per block
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert sum(p.numel() for n, p in model.named_parameters() if p.requires_grad) == len(
        ref.blocks
    ) * 4 * (64 + 192)
    for m in wrapped:
        assert torch.count_nonzero(m.lora_B) == 0 and torch.count_nonzero(m.lora_A) > 0
        assert m.scaling == pytest.approx(8.0 / 4)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))  # B = 0: the adapted model starts as the base model


def test_lora_update_is_scaled_low_rank_and_merges_exactly():
    layer = torch.nn.Linear(16, 12)
    lora = LoRALinear(layer, rank=2, alpha=6.0)
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(5, 16)
    expected = layer(x) + 3.0 * (x @ lora.lora_A.T @ lora.lora_B.T)
    torch.testing.assert_close(lora(x), expected)
    assert torch.linalg.matrix_rank(lora.delta_weight()) == 2
    before = lora(x).detach()
    lora.merge()
    torch.testing.assert_close(lora(x), before, rtol=1e-5, atol=1e-5)
    lora.unmerge()
    torch.testing.assert_close(lora(x), before, rtol=1e-5, atol=1e-5)


def test_merge_lora_on_a_whole_model():
    model = _pico()
    apply_peft(model, _lora_cfg(targets=["qkv", "mlp"]))
    for m in model.modules():
        if isinstance(m, LoRALinear):
            torch.nn.init.normal_(m.lora_B)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        assert merge_lora(model) == 3 * len(model.blocks)
        torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(targets="no_such_layer"), "matched no nn.Linear"),
        (dict(rank=0), "rank must be a positive integer"),
        (dict(alpha=-1.0), "alpha must be positive"),
        (dict(dropout=1.5), "dropout must be in"),
        (dict(targets="("), "bad regex"),
    ],
)
def test_bad_lora_config_is_rejected(kw, message):
    with pytest.raises(CaulkConfigError, match=message):
        apply_peft(_pico(), _lora_cfg(**kw))


def test_lora_on_a_cnn_without_linear_targets_says_so():
    model = timm.create_model("test_resnet", num_classes=0)
    with pytest.raises(CaulkConfigError, match="matched no nn.Linear"):
        apply_peft(model, _lora_cfg())
