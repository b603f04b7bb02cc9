"""Step budgets that grow with n (``budget.mode=epochs``) and early stopping on validation with the
best state restored (``budget.early_stop``): arithmetic, the steps really taken, the light loop
and Lightning agreeing, and one-line errors for bad values."""

import csv
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from caulk.budget import epochs_budget, step_budget
from caulk.engines.strategy import budget_unsupported
from caulk.errors import CaulkConfigError
from caulk.train import train, train_curve
from tests.conftest import compose_cfg

SMALL = ["data.batch_size=16", "trainer.val_check_interval=2", "cache.disk=false"]
#: a linear probe that overfits 10 examples at a constant, high learning rate: its validation
#: error is lowest at step 34 of 40 (checked every 2 steps)
PLANTED = [*SMALL, "data.n=10", "peft.lr=0.5", "scheduler=none", "trainer.max_steps=40"]
EARLY = ["budget.early_stop.enabled=true"]


@pytest.mark.parametrize(
    "epochs, n, batch, low, high, steps",
    [
        (20, 40, 64, 100, 2000, 100),  # ceil(12.5) = 13, raised to the floor
        (20, 1047, 64, 100, 2000, 328),  # ceil(327.19)
        (50, 640, 64, 100, 2000, 500),  # exact
        (50, 1047, 64, 100, 2000, 818),  # ceil(817.97)
        (50, 5000, 64, 100, 2000, 2000),  # ceil(3906.25), cut to the cap
        (0.1, 30, 1, 1, 10, 3),  # a tenth of 30 is 3, not ceil(3.0000000000000004) = 4
        (2, 20, 16, 3, 100, 3),  # ceil(2.5)
    ],
)
def test_the_budget_is_clamped_epochs_over_batches(epochs, n, batch, low, high, steps):
    assert epochs_budget(epochs, n, batch, low, high) == steps


def test_the_budget_reads_the_config():
    cfg = compose_cfg(["data.batch_size=64", "budget.mode=fixed"])
    assert step_budget(cfg, 1047) is None  # fixed: trainer.max_steps
    cfg = compose_cfg(["data.batch_size=64", "budget.epochs=20", "budget.min_steps=100"])
    assert [step_budget(cfg, n) for n in (40, 160, 640, 1047)] == [100, 100, 200, 328]


def test_per_point_budgets_rule_out_the_batched_heads():
    cfg = compose_cfg(["trainer.max_steps=300"])
    assert budget_unsupported(cfg, [None, None]) is None
    assert budget_unsupported(cfg, [100, 328]) == "budget differs per point"
    assert "differs from trainer.max_steps" in budget_unsupported(cfg, [100, 100])
    assert budget_unsupported(cfg, [300, 300]) is None
    cfg = compose_cfg([*EARLY])
    assert "early stopping" in budget_unsupported(cfg, [None])


def test_each_point_trains_its_own_budget(fast_cfg, tmp_path):
    """n=20 and n=100 with batches of 16 and 2 epochs: 3 and 13 steps (cached, light loop),
    and the same through the Trainer; fixed budgets leave no step_budget in the record."""
    budget = ["budget.mode=epochs", "budget.epochs=2", "budget.min_steps=3", "budget.max_steps=100"]
    args = [*SMALL, "curve.n=[20,100]", *budget]
    fast = train_curve(fast_cfg(*args, out=tmp_path / "fast"))
    pl = train_curve(fast_cfg(*args, "cache.loop=lightning", out=tmp_path / "pl"))
    assert {r["train_loop"] for r in fast} == {"cached"}  # not batched_heads: budgets differ
    for a, b, steps in zip(fast, pl, (3, 13), strict=True):
        for r in (a, b):
            assert r["step_budget"] == r["global_steps"] == steps
            assert r["config"]["trainer"]["max_steps"] == steps
        assert a["test_error"] == b["test_error"]
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-6)
    fixed = train(fast_cfg(*SMALL, "data.n=20", out=tmp_path / "fixed"))
    assert "step_budget" not in fixed and "best_step" not in fixed
    assert fixed["global_steps"] == 6


def _val_errors(record) -> list[tuple[int, float]]:
    """(optimizer steps taken, val/error) of every validation check in the point's CSV log."""
    with open(Path(record["output_dir"]) / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return [(int(r["step"]) + 1, float(r["val/error"])) for r in rows if r.get("val/error")]


def _adapter_tensors(record):
    from safetensors.torch import load_file

    return load_file(record["adapter_file"])


def test_early_stopping_restores_and_tests_the_best_state(fast_cfg, tmp_path):
    """Planted: the validation error rises after its minimum, so the best step comes before the
    last one, and the tested state is that of a run stopped there (constant learning rate)."""
    best = train(fast_cfg(*PLANTED, *EARLY, "budget.early_stop.patience=100", out=tmp_path / "a"))
    checks = _val_errors(best)
    low = min(e for _, e in checks)
    assert best["best_step"] == next(s for s, e in checks if e == low)  # ties: the earlier
    assert best["best_step"] < best["global_steps"] == 40 and checks[-1][1] > low
    assert best["val_error"] == pytest.approx(low)
    short = train(fast_cfg(*PLANTED, f"trainer.max_steps={best['best_step']}", out=tmp_path / "b"))
    assert best["test_error"] == short["test_error"]
    assert best["test_loss"] == pytest.approx(short["test_loss"], rel=1e-6)
    a, b = _adapter_tensors(best), _adapter_tensors(short)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5), k  # lr 0.5: noise grows
    stopped = train(fast_cfg(*PLANTED, *EARLY, "budget.early_stop.patience=2", out=tmp_path / "c"))
    checks = _val_errors(stopped)  # stops at the second check without a better error
    assert stopped["global_steps"] == checks[-1][0] == stopped["best_step"] + 2 * 2
    assert stopped["global_steps"] < 40


@pytest.mark.parametrize(
    "case", [["peft=linear"], ["peft=lora", "peft.last_k_blocks=1", "peft.lr=0.05"]]
)
def test_the_light_loop_and_lightning_stop_at_the_same_best_step(fast_cfg, tmp_path, case):
    args = [*PLANTED, *case, *EARLY, "budget.early_stop.patience=3"]
    fast = train(fast_cfg(*args, out=tmp_path / "fast"))
    pl = train(fast_cfg(*args, "cache.loop=lightning", out=tmp_path / "pl"))
    assert (fast["train_loop"], pl["train_loop"]) == ("cached", "lightning")
    assert fast["features_cached"] and pl["features_cached"]
    for key in ("best_step", "global_steps", "epochs", "test_error", "n_train_seen"):
        assert fast[key] == pl[key], key
    assert fast["best_step"] < fast["global_steps"]  # linear: 34 < 40; LoRA: stopped, 6 < 12
    assert fast["val_error"] == pytest.approx(pl["val_error"], abs=1e-6)
    assert fast["test_loss"] == pytest.approx(pl["test_loss"], rel=1e-6)
    a, b = _adapter_tensors(fast), _adapter_tensors(pl)
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


@pytest.mark.parametrize(
    "override, message",
    [
        ("budget.mode=steps", "budget.mode must be fixed or epochs, got 'steps'"),
        ("budget.epochs=0", "budget.epochs must be a positive number of epochs, got 0"),
        ("budget.epochs=-2.5", "budget.epochs must be a positive number of epochs, got -2.5"),
        ("budget.min_steps=0", r"budget.min_steps must be a positive step count .*, got 0"),
        ("budget.max_steps=ten", r"budget.max_steps must be a positive step count .*, got 'ten'"),
        ("budget.min_steps=500", "budget.min_steps=500 must be <= budget.max_steps=200"),
        ("budget.early_stop.patience=0", r"budget.early_stop.patience must be an integer >= 1"),
        ("budget.early_stop.enabled=maybe", "budget.early_stop.enabled must be true or false"),
        ("data.val_size=0", "budget.early_stop.enabled=true needs validation data"),
    ],
)
def test_bad_budgets_fail_in_one_line_before_any_work(fast_cfg, tmp_path, override, message):
    args = ["budget.mode=epochs", "budget.min_steps=100", "budget.max_steps=200", *EARLY, override]
    with pytest.raises(CaulkConfigError, match=message) as info:
        train(fast_cfg(*args, out=tmp_path / "run"))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_the_shipped_budget_grows_with_n_from_todays_floor():
    """The default chosen by measurement (README, Step budgets): 100 epochs, never fewer than the
    300 steps of the old fixed recipe, at most 4000; early stopping stays opt-in."""
    budget = OmegaConf.to_container(compose_cfg([]).budget)
    assert budget["mode"] == "epochs" and budget["early_stop"]["enabled"] is False
    cfg = compose_cfg(["data.batch_size=64"])
    assert [step_budget(cfg, n) for n in (10, 192, 640, 1047, 5000)] == [300, 300, 1000, 1636, 4000]
