"""Every config group option composes, and every model config builds a real timm model."""

from pathlib import Path

import pytest
import torch

from caulk.backbones import create_backbone
from tests.conftest import CONF, compose_cfg

GROUPS = ["model", "peft", "data", "trainer", "logger", "callbacks", "debug", "experiment"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes(group, option):
    cfg = compose_cfg([f"{group}={option}"])
    assert cfg.model.arch and cfg.peft.name and cfg.data.name
    if group in ("model", "peft", "data"):
        assert cfg[group].name == option


MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
LARGE = {"vit_l"}


def _build_and_forward(name: str):
    cfg = compose_cfg([f"model={name}", "model.weights=none"])
    bb = create_backbone(cfg.model)
    c, h, w = bb.data_config["input_size"]
    with torch.no_grad():
        out = bb.model.eval()(torch.randn(1, c, h, w))
    assert out.shape == (1, bb.num_features)
    assert bb.num_features == bb.model.num_features > 0
    return cfg, bb


@pytest.mark.parametrize("name", [m for m in MODELS if m not in LARGE])
def test_every_model_config_instantiates(name):
    cfg, bb = _build_and_forward(name)
    assert bb.arch == cfg.model.arch
    if cfg.model.weights != "none" or name.startswith(("vit_", "resnet")):
        assert cfg.model.tag  # pinned full tag


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LARGE))
def test_large_model_config_instantiates(name):
    _build_and_forward(name)


def test_hub_models_pin_full_tags_with_one_recipe_per_family():
    tags = {}
    for p in (CONF / "model").glob("*.yaml"):
        cfg = compose_cfg([f"model={p.stem}"])
        if cfg.model.weights == "hub":
            tags[p.stem] = cfg.model.tag
    assert {"vit_t", "vit_s", "vit_b", "vit_l", "resnet18", "resnet50"} <= set(tags)
    assert {tags[k] for k in ("vit_t", "vit_s", "vit_b", "vit_l")} == {"augreg_in21k"}
    assert {tags[k] for k in ("resnet18", "resnet50")} == {"a1_in1k"}


def test_output_paths_come_from_hydra_runtime_dir():
    text = Path(CONF / "paths" / "default.yaml").read_text()
    assert "output_dir: ${hydra:runtime.output_dir}" in text
