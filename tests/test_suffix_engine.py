"""The batched_suffix engine: every point of a LoRA / adapter curve over a cached prefix trained
as one computation, point by point equal to the per-point light loop (the oracle: the same
points trained one at a time by the ``cached`` engine, ``cache.batch_points=false``)."""

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

from caulk.adaptive_value import cost_model
from caulk.train import train_curve

SMALL = ["data.batch_size=16", "trainer.max_steps=12", "trainer.val_check_interval=4"]
SMALL += ["cache.disk=false", "trainer.log_every_n_steps=3"]
LORA = ["peft=lora", "peft.last_k_blocks=1", "peft.lr=0.01"]
#: n=33 with batches of 16 ends each epoch on a batch of one (the head's running statistics)
CURVE = ["curve.n=[10,33]", "curve.seeds=[0,1]"]


def _logged_losses(record) -> pd.Series:
    """The train/loss logged every ``log_every_n_steps`` (not the epoch-end means)."""
    csv = pd.read_csv(Path(record["output_dir"]) / "csv" / "metrics.csv")
    steps = csv.dropna(subset=["train/loss"])
    if "train/error" in steps:
        steps = steps[steps["train/error"].isna()]
    return steps.set_index("step")["train/loss"]


def _assert_same_points(batched: list, single: list, atol: float = 1e-4, loss_rel=1e-4) -> None:
    for a, b in zip(batched, single, strict=True):
        assert (a["n"], a["seed"]) == (b["n"], b["seed"])
        for key in ("global_steps", "epochs", "n_test", "n_train_seen", "train_samples_per_epoch"):
            assert a[key] == b[key], key
        for key in ("test_error", "val_error"):
            assert a[key] == pytest.approx(b[key], abs=1.5 / a["n_test"]), key
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-4)
        la, lb = _logged_losses(a), _logged_losses(b)
        assert list(la.index) == list(lb.index) and len(la) >= 3
        assert la.to_numpy() == pytest.approx(lb.to_numpy(), rel=loss_rel)
        wa, wb = load_file(a["adapter_file"]), load_file(b["adapter_file"])
        assert sorted(wa) == sorted(wb)
        for k in wa:
            diff = (wa[k].float() - wb[k].float()).abs().max()
            assert diff <= atol, (k, float(diff))


SGD = ["optimizer._target_=torch.optim.SGD"]


@pytest.mark.parametrize(
    "peft, atol",
    [
        # AdamW divides by the root of tiny second moments: float noise of 1e-7 in a gradient
        # moves a weight by up to 1e-4 in 12 steps; SGD shows the engines' exact agreement
        (LORA, 1e-4),
        ([*LORA, *SGD], 5e-6),
        (["peft=adapter", "peft.last_k_blocks=2", "peft.lr=0.01", *SGD], 5e-5),
        # the head BatchNorm's running mean: 5.1e-6 apart on an Intel Xeon (summation order)
        (["peft=partial", "peft.blocks=1", *SGD], 2e-5),
    ],
    ids=["lora", "lora_sgd", "adapter_sgd", "partial_sgd"],
)
def test_a_batched_suffix_curve_equals_one_light_loop_per_point(fast_cfg, tmp_path, peft, atol):
    args = [*SMALL, *peft, *CURVE, "tune=none"]
    batched = train_curve(fast_cfg(*args, out=tmp_path / "batched"))
    single = train_curve(fast_cfg(*args, "cache.batch_points=false", out=tmp_path / "single"))
    assert {r["train_loop"] for r in batched} == {"batched_suffix"}
    assert {r["train_loop"] for r in single} == {"cached"}
    assert all(r["status"] == "ok" for r in batched)
    _assert_same_points(batched, single, atol)


def test_a_tuned_lora_curve_trains_every_candidate_together_and_picks_the_same_lr(
    fast_cfg, tmp_path
):
    grid = ["tune=grid", "tune.grid={peft.lr:[0.001,0.03]}"]
    args = [*SMALL, *LORA, *CURVE, *grid]
    batched = train_curve(fast_cfg(*args, out=tmp_path / "b"))
    looped = train_curve(fast_cfg(*args, "cache.batch_points=false", out=tmp_path / "l"))
    assert {r["train_loop"] for r in batched} == {"batched_suffix"}
    assert {r["train_loop"] for r in looped} == {"cached"}
    for b, lo in zip(batched, looped, strict=True):
        assert b["selected"] == lo["selected"]
        got = [c["val_error"] for c in b["candidates"]]
        assert got == pytest.approx([c["val_error"] for c in lo["candidates"]], abs=1.5 / 150)
        assert b["test_error"] == pytest.approx(lo["test_error"], abs=1.5 / b["n_test"])


def test_a_diverging_candidate_leaves_the_others_intact(fast_cfg, tmp_path):
    """lr 1e37 blows one candidate up at its first steps; the other candidate of every point
    trains exactly as it would alone, and each point still selects among what trained."""
    grid = ["tune=grid", "tune.grid={peft.lr:[0.01,1e37]}"]
    args = [*SMALL, *LORA, *CURVE, *grid]
    batched = train_curve(fast_cfg(*args, out=tmp_path / "b"))
    alone = train_curve(fast_cfg(*SMALL, *LORA, *CURVE, "tune=none", out=tmp_path / "a"))
    for b, a in zip(batched, alone, strict=True):
        assert b["status"] == "ok" and b["selected"]["peft.lr"] == 0.01
        statuses = [c["status"] for c in b["candidates"]]
        assert statuses == ["ok", "diverged"], b["candidates"]
        assert b["test_error"] == pytest.approx(a["test_error"], abs=1.5 / b["n_test"])


def test_points_with_their_own_step_budgets_train_together_each_to_its_budget(fast_cfg, tmp_path):
    """budget.mode=epochs: n=10 trains 3 steps, n=33 trains 5 (batches of 16, 2 epochs, at least
    3), in one computation, each equal to its own light loop."""
    budget = ["budget.mode=epochs", "budget.epochs=2", "budget.min_steps=3", "budget.max_steps=100"]
    args = [*SMALL, *LORA, *SGD, *CURVE, *budget, "tune=none", "trainer.val_check_interval=2"]
    args += ["trainer.log_every_n_steps=1"]
    batched = train_curve(fast_cfg(*args, out=tmp_path / "batched"))
    single = train_curve(fast_cfg(*args, "cache.batch_points=false", out=tmp_path / "single"))
    assert {r["train_loop"] for r in batched} == {"batched_suffix"}
    assert (
        [r["global_steps"] for r in batched] == [r["step_budget"] for r in batched] == [3, 3, 5, 5]
    )
    _assert_same_points(batched, single, 5e-6)


def test_early_stopping_stops_each_point_at_its_own_step_and_tests_its_best_state(
    fast_cfg, tmp_path
):
    """A high constant lr overfits the small n: points stop at different steps, each with the
    best step, validation error, counts and test result of its own light loop."""
    early = ["budget.early_stop.enabled=true", "budget.early_stop.patience=2", "scheduler=none"]
    args = [*SMALL, *LORA, *SGD, *CURVE, *early, "tune=none", "peft.lr=0.5"]
    args += ["trainer.max_steps=40", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1"]
    batched = train_curve(fast_cfg(*args, out=tmp_path / "batched"))
    single = train_curve(fast_cfg(*args, "cache.batch_points=false", out=tmp_path / "single"))
    assert {r["train_loop"] for r in batched} == {"batched_suffix"}
    stops = [r["global_steps"] for r in single]
    assert len(set(stops)) > 1 and max(stops) < 40, stops  # they stop, at different steps
    assert [r["best_step"] for r in batched] == [r["best_step"] for r in single]
    # lr 0.5 for 30+ steps amplifies float noise: late losses and weights agree to ~1e-3
    _assert_same_points(batched, single, 1e-3, loss_rel=1e-2)


@pytest.mark.parametrize(
    "extra, reason",
    [
        (["peft.dropout=0.1", *CURVE], "peft.dropout > 0 (each point would draw its own masks)"),
        (["curve.n=[10]", "curve.seeds=[0]"], "one point: nothing to batch"),
    ],
)
def test_a_curve_the_batched_engine_cannot_train_says_why_in_every_record(
    fast_cfg, tmp_path, extra, reason
):
    records = train_curve(fast_cfg(*SMALL, *LORA, *extra, "tune=none", out=tmp_path / "r"))
    assert {r["train_loop"] for r in records} == {"cached"}
    assert {r["engine_reason"] for r in records} == {reason}
    saved = [json.loads((Path(r["output_dir"]) / "record.json").read_text()) for r in records]
    assert {s["engine_reason"] for s in saved} == {reason}


def test_a_batched_fit_s_seconds_go_to_its_points_by_their_step_budgets(fast_cfg, tmp_path):
    """The batched fit trains every point at once; each record's wall_time_s gets the fit's
    seconds in proportion to its step budget (13 steps at n=10, 42 at n=33), so the adaptive
    rule's cost model sees a point's cost grow with its budget, not the whole fit on the first."""
    budget = [
        "budget.mode=epochs",
        "budget.epochs=20",
        "budget.min_steps=3",
        "budget.max_steps=100",
    ]
    args = [*SMALL, *LORA, *SGD, *CURVE, *budget, "tune=none"]
    start = time.perf_counter()
    records = train_curve(fast_cfg(*args, out=tmp_path / "r"))
    elapsed = time.perf_counter() - start
    assert {r["train_loop"] for r in records} == {"batched_suffix"}
    assert [r["step_budget"] for r in records] == [13, 13, 42, 42]
    wall = [r["wall_time_s"] for r in records]
    assert min(wall[2:]) > wall[1] > 0 and sum(wall) <= elapsed
    # the first point also carries the curve's set-up and extraction: the cost fit leaves it out
    assert cost_model(records[1:]).per_example > 0
