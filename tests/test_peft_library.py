"""The PEFT library on a tiny timm ViT and tiny timm ResNet/ConvNeXt: identity at init, exactly the
intended tensors train, closed-form parameter counts, LoRA merge, adapter export/reload, errors."""

from __future__ import annotations

import sys

import pytest
import timm
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

import caulk  # noqa: F401  (registers caulk_vit_pico)
from caulk.backbones import count_params
from caulk.errors import CaulkConfigError
from caulk.module import TransferModule
from caulk.peft import apply_peft, export_adapter, load_adapter, merge_lora, read_adapter

VIT, RESNET, CONVNEXT = "caulk_vit_pico", "test_resnet", "test_convnext"
INPUT = {VIT: 32, RESNET: 64, CONVNEXT: 64}  # the CNNs are fully convolutional: 64 px is enough
NUM_CLASSES = 10
# caulk_vit_pico: width d, depth L, 16 patches of 8x8 + a class token
D, L, PATCH = 64, 4, 8
HEAD = D * NUM_CLASSES + NUM_CLASSES

METHODS = {
    "linear": dict(name="linear"),
    "full": dict(name="full"),
    "partial": dict(name="partial", blocks=1),
    "bitfit": dict(name="bitfit"),
    "lora": dict(name="lora", rank=2, alpha=4.0, dropout=0.0, targets="qkv"),
    "lora_qv": dict(name="lora", rank=2, alpha=4.0, dropout=0.0, targets="q,v"),
    "lora_conv": dict(name="lora", rank=2, alpha=4.0, dropout=0.0, targets="conv"),
    "lora_mlp": dict(name="lora", rank=2, alpha=4.0, dropout=0.1, targets="mlp"),
    "adapter": dict(name="adapter", width=4, style="serial", scale=0.1),
    "adapter_parallel": dict(name="adapter", width=4, style="parallel", scale=0.1),
    "vpt": dict(name="vpt", tokens=3, mode="shallow"),
    "vpt_deep": dict(name="vpt", tokens=3, mode="deep"),
    "ssf": dict(name="ssf"),
    "hf": dict(
        name="hf",
        peft_type="LORA",
        config=dict(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["qkv"]),
    ),
    "hf_conv": dict(
        name="hf",
        peft_type="LORA",
        config=dict(r=2, lora_alpha=4, target_modules=r"layer\d\.\d\.conv\d"),
    ),
}
CASES = (
    [
        (VIT, m)
        for m in (
            "linear",
            "full",
            "partial",
            "bitfit",
            "lora",
            "lora_qv",
            "lora_mlp",
            "adapter",
            "adapter_parallel",
            "vpt",
            "vpt_deep",
            "ssf",
            "hf",
        )
    ]
    + [
        (RESNET, m)
        for m in (
            "linear",
            "full",
            "partial",
            "bitfit",
            "lora_conv",
            "adapter",
            "adapter_parallel",
            "ssf",
            "hf_conv",
        )
    ]
    + [
        (CONVNEXT, m)
        for m in ("partial", "bitfit", "lora_mlp", "adapter", "adapter_parallel", "ssf")
    ]
)
IDENTITY_AT_INIT = {
    "lora",
    "lora_qv",
    "lora_conv",
    "lora_mlp",
    "adapter",
    "adapter_parallel",
    "ssf",
    "hf",
    "hf_conv",
}
NEEDS_HF = {"hf", "hf_conv"}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: one thread avoids oversubscription on a shared CPU (about 50x faster here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ids(cases):
    return [f"{arch}-{m}" for arch, m in cases]


def _backbone(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    # a pre-trained ResNet has no all-zero BatchNorm gammas; timm's zero_init_last would make
    # every residual branch dead for methods that keep the gammas frozen
    kwargs = {"zero_init_last": False} if arch == RESNET else {}
    return timm.create_model(arch, num_classes=0, **kwargs).eval()


def _x(arch: str, n: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, INPUT[arch], INPUT[arch], generator=g)


def _cfg(method: str, **kw):
    return OmegaConf.create({**METHODS[method], **kw})


def _skip_without_hf(method: str) -> None:
    if method in NEEDS_HF:
        pytest.importorskip("peft", reason="HF peft is the optional extra caulk[hf]")


def _module(arch: str, method: str, seed: int = 0) -> TransferModule:
    bb = _backbone(arch, seed)
    return TransferModule(bb, apply_peft(bb, _cfg(method)), NUM_CLASSES, head_norm=False)


def _train_steps(module: TransferModule, arch: str, steps: int = 3) -> None:
    module.train()
    opt = torch.optim.Adam(module.trainable_parameters(), lr=1e-2)
    x, y = _x(arch, 4), torch.tensor([0, 1, 2, 3])
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(module(x), y).backward()
        opt.step()


IDENTITY_CASES = [c for c in CASES if c[1] in IDENTITY_AT_INIT]


@pytest.mark.parametrize(("arch", "method"), IDENTITY_CASES, ids=_ids(IDENTITY_CASES))
def test_identity_methods_start_as_the_frozen_backbone(arch, method):
    _skip_without_hf(method)
    ref, model = _backbone(arch), _backbone(arch)
    apply_peft(model, _cfg(method))
    x = _x(arch)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


@pytest.mark.parametrize(("arch", "method"), CASES, ids=_ids(CASES))
def test_steps_move_every_trainable_tensor_and_no_frozen_one(arch, method):
    _skip_without_hf(method)
    module = _module(arch, method)
    before = {k: v.detach().clone() for k, v in module.state_dict().items()}
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("head.")} == {"head.1.weight", "head.1.bias"}
    may_move = set(module.trainable_state_dict())  # + BatchNorm statistics of tuned blocks
    _train_steps(module, arch)
    after = module.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        if k in trainable:
            assert not torch.equal(v, after[k]), f"trainable {k} did not change"
        elif k not in may_move:
            assert torch.equal(v, after[k]), f"frozen {k} changed"
    frozen_bn_stats = [k for k in before if k.endswith("running_mean") and k not in may_move]
    if method not in ("full",) and arch == RESNET:
        assert frozen_bn_stats  # the frozen BatchNorms kept their statistics (checked above)


def test_bn_statistics_update_only_inside_tuned_blocks():
    module = _module(RESNET, "partial")  # blocks=1: the last stage (layer4)
    before = {k: v.clone() for k, v in module.state_dict().items() if "running_mean" in k}
    _train_steps(module, RESNET)
    after = module.state_dict()
    moved = {k for k, v in before.items() if not torch.equal(v, after[k])}
    assert moved and all(k.startswith("backbone.layer4.") for k in moved)


def _conv_lora(r):  # test_resnet's block convs: (in, out, kernel)
    convs = [(32, 32, 3), (32, 32, 3), (32, 48, 3), (48, 48, 3), (48, 48, 1), (48, 48, 3),
             (48, 192, 1), (192, 96, 3), (96, 96, 3)]  # fmt: skip
    return sum(r * (cin * k * k + cout) for cin, cout, k in convs)


RESNET_BLOCKS = [(32, 32), (32, 48), (48, 192), (192, 96)]  # (in, out) channels per residual block
RESNET_BN = 16 + 16 + 32 + 2 * 32 + 3 * 48 + 2 * 48 + 2 * 192 + 3 * 96  # BatchNorm channels
RESNET_CONV_OUT = 16 + 16 + 32 + 2 * 32 + 3 * 48 + 2 * 48 + 2 * 192 + 3 * 96
RESNET_LAYER4 = 192 * 96 * 9 + 96 * 96 * 9 + 192 * 96 + 3 * 2 * 96
CONVNEXT_BLOCKS = [24, 32, 32, 48, 48, 48, 48, 64, 64]  # channels per block (MLP ratio 4)


@pytest.mark.parametrize(
    ("arch", "method", "overrides", "expected"),
    [
        (VIT, "linear", {}, 0),
        (
            VIT,
            "full",
            {},
            3 * PATCH * PATCH * D + D + D + 17 * D + L * (12 * D * D + 13 * D) + 2 * D,
        ),
        (VIT, "partial", {"blocks": 1}, 1 * (12 * D * D + 13 * D) + 2 * D),
        (VIT, "partial", {"blocks": 3}, 3 * (12 * D * D + 13 * D) + 2 * D),
        (VIT, "bitfit", {}, L * 11 * D + 2 * D),  # qkv 3d, proj, fc1 4d, fc2, 2 norms; patch, norm
        (VIT, "lora", {"rank": 4}, L * 4 * (D + 3 * D)),
        (VIT, "lora_qv", {"rank": 4}, L * 2 * 2 * D * 4),  # the paper's L*2*2*d*r
        (VIT, "lora_qv", {"rank": 4, "targets": "q"}, L * 2 * D * 4),
        (VIT, "lora", {"rank": 2, "targets": ["qkv", "mlp"]}, L * 2 * (4 * D + 5 * D + 5 * D)),
        (VIT, "adapter", {"width": 8}, L * 2 * (2 * D * 8 + 8 + D)),
        (VIT, "adapter_parallel", {"width": 8}, L * (2 * D * 8 + 8 + D)),
        (VIT, "vpt", {"tokens": 5}, 5 * D),
        (VIT, "vpt_deep", {"tokens": 5}, L * 5 * D),
        (VIT, "ssf", {}, 2 * (L * 11 * D + 2 * D)),  # scale+shift after every layer with a bias
        (RESNET, "full", {}, None),
        (RESNET, "partial", {"blocks": 1}, RESNET_LAYER4),
        (RESNET, "bitfit", {}, RESNET_BN),  # convs have no bias: the BN shifts
        (RESNET, "lora_conv", {"rank": 3}, _conv_lora(3)),
        (RESNET, "adapter", {"width": 4}, sum(2 * c * 4 + 4 + c for _, c in RESNET_BLOCKS)),
        (
            RESNET,
            "adapter_parallel",
            {"width": 4},
            sum(i * 4 + 4 + 4 * o + o for i, o in RESNET_BLOCKS),
        ),
        (RESNET, "ssf", {}, 2 * (RESNET_CONV_OUT + RESNET_BN)),
        (CONVNEXT, "lora_mlp", {"rank": 2}, sum(2 * 10 * c for c in CONVNEXT_BLOCKS)),
        (CONVNEXT, "adapter", {"width": 4}, sum(2 * c * 4 + 4 + c for c in CONVNEXT_BLOCKS)),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(f"{k}={x}" for k, x in v.items()),
)
def test_trainable_count_is_the_closed_form(arch, method, overrides, expected):
    bb = _backbone(arch)
    if expected is None:  # full: every parameter of the architecture
        expected = sum(p.numel() for p in _backbone(arch).parameters())
    method_obj = apply_peft(bb, _cfg(method, **overrides))
    assert method_obj.trainable_params == expected
    module = TransferModule(bb, method_obj, NUM_CLASSES, head_norm=False)
    assert (
        count_params(module, trainable_only=True)
        == expected + bb.num_features * NUM_CLASSES + NUM_CLASSES
    )


def test_hf_lora_count_and_layers_to_transform_on_root_level_blocks():
    pytest.importorskip("peft", reason="HF peft is the optional extra caulk[hf]")
    bb = _backbone(VIT)
    cfg = _cfg("hf")
    cfg.config.layers_to_transform = [2, 3]  # HF alone matches nothing under timm's root `blocks`
    method = apply_peft(bb, cfg)
    assert method.trainable_params == 2 * 2 * (D + 3 * D)
    assert {n.split(".attn")[0] for n, p in bb.named_parameters() if p.requires_grad} == {
        "blocks.2",
        "blocks.3",
    }
    assert method.knob == "config.r" and method.knob_value() == 2


def _randomize_lora(model):
    g = torch.Generator().manual_seed(7)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            p.data = torch.randn(p.shape, generator=g) * 0.1


LORA_CASES = [
    (VIT, "lora"),
    (VIT, "lora_qv"),
    (VIT, "lora_mlp"),
    (RESNET, "lora_conv"),
    (CONVNEXT, "lora_mlp"),
]


@pytest.mark.parametrize(("arch", "method"), LORA_CASES, ids=_ids(LORA_CASES))
def test_lora_merged_and_unmerged_agree(arch, method):
    model = _backbone(arch)
    apply_peft(model, _cfg(method, dropout=0.0))
    _randomize_lora(model)
    x = _x(arch)
    with torch.no_grad():
        unmerged = model(x)
        assert merge_lora(model) > 0
        torch.testing.assert_close(model(x), unmerged, rtol=1e-4, atol=1e-5)
        assert not torch.equal(unmerged, _backbone(arch)(x))  # the deltas mattered


def test_caulk_lora_on_fused_qkv_equals_hf_peft_lora():
    peft = pytest.importorskip("peft", reason="HF peft is the optional extra caulk[hf]")
    ours, theirs = _backbone(VIT), _backbone(VIT)
    apply_peft(ours, _cfg("lora", rank=4, alpha=8.0))
    _randomize_lora(ours)
    peft.inject_adapter_in_model(
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["qkv"], lora_dropout=0.0), theirs
    )
    with torch.no_grad():
        for i, blk in enumerate(theirs.blocks):
            mine = ours.blocks[i].attn.qkv
            blk.attn.qkv.lora_A["default"].weight.copy_(mine.lora_A)
            blk.attn.qkv.lora_B["default"].weight.copy_(mine.lora_B)
        x = _x(VIT)
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("arch", "method"), CASES, ids=_ids(CASES))
def test_adapter_export_reloads_onto_a_fresh_backbone_with_identical_logits(arch, method, tmp_path):
    _skip_without_hf(method)
    module = _module(arch, method)
    _train_steps(module, arch, steps=2)
    module.eval()
    path = export_adapter(module, tmp_path / "adapter.safetensors")
    tensors, meta = read_adapter(path)
    assert set(tensors) == set(module.trainable_state_dict())
    assert meta["peft"]["name"] == METHODS[method]["name"] and meta["arch"] == arch
    assert not list(tmp_path.glob(".adapter*"))  # atomic: no temp file left
    fresh = load_adapter(path, _backbone(arch))
    x = _x(arch, seed=5)
    with torch.no_grad():
        assert torch.equal(fresh(x), module(x))
        assert not torch.equal(TransferModule(_backbone(arch), fresh.method, 10)(x), module(x))


def test_adapter_reload_rejects_another_architecture(tmp_path):
    module = _module(VIT, "lora")
    path = export_adapter(module, tmp_path / "a.safetensors")
    with pytest.raises(CaulkConfigError, match="trained on caulk_vit_pico, not test_resnet"):
        load_adapter(path, _backbone(RESNET))


def test_train_mode_reaches_exactly_the_trained_modules():
    module = _module(RESNET, "bitfit")
    module.train()
    bns = [m for m in module.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)  # biases train, statistics stay frozen
    module = _module(VIT, "lora_mlp")  # dropout 0.1 inside each LoRA layer
    module.train()
    drops = [m for n, m in module.backbone.named_modules() if n.endswith("fc1.dropout")]
    assert drops and all(m.training for m in drops)
    assert not module.backbone.blocks[0].attn.training
    module.eval()
    assert not any(m.training for m in drops)


@pytest.mark.parametrize(
    ("arch", "method", "overrides", "message"),
    [
        (RESNET, "vpt", {}, "peft=vpt needs a Vision Transformer"),
        (CONVNEXT, "vpt_deep", {}, "ConvNeXt with no token sequence"),
        (RESNET, "lora_qv", {}, "q/k/v need a fused attn.qkv"),
        (RESNET, "lora", {}, "matched no nn.Linear or nn.Conv2d"),
        (CONVNEXT, "lora", {"targets": r".*conv_dw"}, "depthwise Conv2d"),
        (VIT, "lora", {"targets": ["qkv", "v"]}, "qkv and q/k/v both"),
        (VIT, "partial", {"blocks": 5}, "peft.blocks=5 but caulk_vit_pico has only 4 blocks"),
        (VIT, "partial", {"blocks": 0}, "peft.blocks must be an integer >= 1"),
        (VIT, "adapter", {"width": 0}, "peft.width must be an integer >= 1"),
        (VIT, "adapter", {"style": "sideways"}, "peft.style must be one of serial, parallel"),
        (VIT, "vpt", {"mode": "middle"}, "peft.mode must be one of shallow, deep"),
        (VIT, "vpt", {"tokens": -1}, "peft.tokens must be an integer >= 1"),
    ],
)
def test_methods_that_cannot_apply_fail_in_one_line(arch, method, overrides, message):
    with pytest.raises(CaulkConfigError, match=message) as e:
        apply_peft(_backbone(arch), _cfg(method, **overrides))
    assert "\n" not in str(e.value)


def test_hf_without_the_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # what Python does when peft is not installed
    with pytest.raises(CaulkConfigError, match=r"pip install 'caulk\[hf\]'"):
        apply_peft(_backbone(VIT), _cfg("hf"))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (dict(peft_type="NOPE", config={}), "unknown peft.peft_type='NOPE'"),
        (dict(peft_type="LORA", config={"not_a_field": 1}), "bad peft.config"),
        (dict(peft_type="LORA", config={"target_modules": ["nothing_here"]}), "could not inject"),
    ],
)
def test_hf_bad_config_is_one_line(config, message):
    pytest.importorskip("peft", reason="HF peft is the optional extra caulk[hf]")
    with pytest.raises(CaulkConfigError, match=message) as e:
        apply_peft(_backbone(VIT), OmegaConf.create({"name": "hf", **config}))
    assert "\n" not in str(e.value)


def test_the_peft_and_dataset_registries_both_refuse_a_taken_name():
    import caulk.data.digits  # noqa: F401  (registers digits)
    import caulk.peft  # noqa: F401  (registers lora)
    from caulk.data import register_dataset
    from caulk.peft.base import PeftMethod, register_peft

    with pytest.raises(ValueError, match="peft 'lora' is registered twice"):
        register_peft("lora")(type("OtherLora", (PeftMethod,), {}))
    with pytest.raises(ValueError, match="dataset 'digits' is registered twice"):
        register_dataset("digits")(lambda cfg: None)
