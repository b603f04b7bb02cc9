"""Feature caching: same results as the uncached path; used only where the backbone is frozen."""

from pathlib import Path

import pytest
import torch

from caulk.train import train, train_curve


def test_cached_and_uncached_linear_probe_agree(fast_cfg, tmp_path):
    cached = train(fast_cfg("data.n=50", "seed=2", out=tmp_path / "cached"))
    plain = train(fast_cfg("data.n=50", "seed=2", "cache.features=false", out=tmp_path / "plain"))
    assert cached["features_cached"] and not plain["features_cached"]
    assert cached["test_error"] == pytest.approx(
        plain["test_error"], abs=1 / 450
    )  # <= 1 test example
    assert cached["test_loss"] == pytest.approx(plain["test_loss"], rel=1e-4)
    assert (
        cached["n_train_seen"] == plain["n_train_seen"] == 50
        and cached["n_test"] == plain["n_test"] == 450
    )


def test_a_cached_curve_matches_its_single_points(fast_cfg, tmp_path):
    records = train_curve(fast_cfg("curve.n=[20,40]", "curve.seeds=[0,1]", out=tmp_path / "curve"))
    assert all(r["features_cached"] for r in records)
    single = train(fast_cfg("data.n=40", "seed=1", out=tmp_path / "single"))
    point = next(r for r in records if (r["n"], r["seed"]) == (40, 1))
    assert point["test_error"] == single["test_error"]
    assert point["test_loss"] == pytest.approx(single["test_loss"], rel=1e-6)


def test_methods_that_train_inside_the_backbone_are_not_cached(fast_cfg):
    rec = train(fast_cfg("peft=lora", "data.n=30"))
    assert rec["status"] == "ok" and not rec["features_cached"]


def test_a_non_boolean_cache_switch_is_rejected_before_any_work(fast_cfg, tmp_path):
    from caulk.errors import CaulkConfigError

    with pytest.raises(
        CaulkConfigError, match="cache.features must be true or false, got 'sometimes'"
    ):
        train(fast_cfg("cache.features=sometimes", out=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


PREFIX_CASES = {
    "linear": ["peft=linear"],
    "linear_per_point": ["peft=linear", "cache.batch_points=false"],
    "partial": ["peft=partial"],
    "lora_last1": ["peft=lora", "peft.last_k_blocks=1"],
    "adapter_last2": ["peft=adapter", "peft.last_k_blocks=2"],
}
SMALL = ["data.n=50", "seed=3", "data.batch_size=16", "trainer.max_steps=11"]
SMALL += ["trainer.val_check_interval=4", "cache.disk=false"]


def _adapter_tensors(record):
    from safetensors.torch import load_file

    return load_file(record["adapter_file"])


@pytest.mark.parametrize("case", ["linear", "linear_per_point", "partial", "lora_last1"])
def test_the_fast_loop_reproduces_the_lightning_trainer(fast_cfg, tmp_path, case):
    """Same batches, steps, validation checks, counts and weights as Trainer.fit on the cache."""
    args = [*SMALL, *PREFIX_CASES[case]]
    fast = train(fast_cfg(*args, out=tmp_path / "fast"))
    pl = train(fast_cfg(*args, "cache.loop=lightning", out=tmp_path / "pl"))
    loop = "batched_heads" if case == "linear" else "cached"
    assert (fast["train_loop"], pl["train_loop"]) == (loop, "lightning")
    for key in ("test_error", "val_error", "n_train_seen", "train_samples_per_epoch", "n_test"):
        assert fast[key] == pl[key], key
    assert (fast["global_steps"], fast["epochs"]) == (pl["global_steps"], pl["epochs"]) == (11, 2)
    assert fast["test_loss"] == pytest.approx(pl["test_loss"], rel=1e-6)
    a, b = _adapter_tensors(fast), _adapter_tensors(pl)
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    assert (tmp_path / "fast" / "csv" / "metrics.csv").exists()


@pytest.mark.parametrize("case", ["partial", "lora_last1", "adapter_last2"])
def test_a_cached_prefix_gives_the_uncached_results(fast_cfg, tmp_path, case):
    args = [*SMALL, *PREFIX_CASES[case]]
    cached = train(fast_cfg(*args, out=tmp_path / "cached"))
    plain = train(fast_cfg(*args, "cache.features=false", out=tmp_path / "plain"))
    depth = {"partial": 3, "lora_last1": 3, "adapter_last2": 2}[case]  # vit_pico: 4 blocks
    assert cached["cache_prefix"] == f"vit_blocks_{depth}" and plain["cache_prefix"] is None
    assert cached["test_error"] == pytest.approx(plain["test_error"], abs=1 / 450)
    assert cached["test_loss"] == pytest.approx(plain["test_loss"], rel=1e-4)
    assert cached["n_train_seen"] == plain["n_train_seen"] == 50
    a, b = _adapter_tensors(cached), _adapter_tensors(plain)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-4), k


@pytest.mark.parametrize(
    "peft, depth",
    [
        (["peft=linear"], None),
        (["peft=partial", "peft.blocks=2"], 2),
        (["peft=lora", "peft.last_k_blocks=1"], 3),
        (["peft=lora"], "none"),  # LoRA in every block: nothing frozen before the first one
        (["peft=adapter"], "none"),
        (["peft=vpt"], "none"),  # prompts join before the blocks
        (["peft=ssf"], "none"),
        (["peft=bitfit"], "none"),
        (["peft=full"], "none"),
    ],
)
def test_the_cached_prefix_ends_before_the_first_trained_block(peft, depth):
    from caulk.backbones import create_backbone
    from caulk.cache.prefix import plan_prefix
    from caulk.peft import apply_peft
    from tests.conftest import compose_cfg

    cfg = compose_cfg(peft)
    model = create_backbone(cfg.model).model
    plan = plan_prefix(model, apply_peft(model, cfg.peft))
    assert (plan is None) if depth == "none" else (plan.depth == depth)


def test_last_k_blocks_puts_lora_and_adapters_in_the_last_blocks_only():
    from caulk.backbones import create_backbone
    from caulk.peft import apply_peft
    from tests.conftest import compose_cfg

    for peft in (["peft=lora", "peft.targets=[qkv,mlp]"], ["peft=adapter"]):
        cfg = compose_cfg([*peft, "peft.last_k_blocks=2"])
        model = create_backbone(cfg.model).model
        apply_peft(model, cfg.peft)
        trained = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
        assert trained == {"2", "3"}, peft


@pytest.mark.parametrize(
    "override, message",
    [
        ("peft.last_k_blocks=0", "peft.last_k_blocks must be an integer >= 1, got 0"),
        ("cache.loop=turbo", "cache.loop must be cached or lightning, got 'turbo'"),
        ("cache.disk=maybe", "cache.disk must be true or false, got 'maybe'"),
        ("cache.batch_points=maybe", "cache.batch_points must be true or false, got 'maybe'"),
        ("compile=yes", "compile must be true or false, got 'yes'"),
    ],
)
def test_bad_cache_and_last_k_settings_fail_before_any_work(fast_cfg, tmp_path, override, message):
    from caulk.errors import CaulkConfigError

    with pytest.raises(CaulkConfigError, match=message):
        train(fast_cfg("peft=lora", override, out=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_too_many_last_k_blocks_is_a_config_error(fast_cfg, tmp_path):
    from caulk.errors import CaulkConfigError

    with pytest.raises(CaulkConfigError, match="peft.last_k_blocks=9 but .* has only 4 blocks"):
        train(fast_cfg("peft=lora", "peft.last_k_blocks=9", out=tmp_path / "run"))


def test_batched_heads_equal_one_fast_loop_per_point(fast_cfg, tmp_path):
    """n=33 with batches of 16 ends each epoch on a batch of one (running statistics)."""
    args = ["curve.n=[10,33]", "curve.seeds=[0,1]", *SMALL[2:]]
    batched = train_curve(fast_cfg(*args, out=tmp_path / "batched"))
    single = train_curve(fast_cfg(*args, "cache.batch_points=false", out=tmp_path / "single"))
    assert {r["train_loop"] for r in batched} == {"batched_heads"}
    assert {r["train_loop"] for r in single} == {"cached"}
    for a, b in zip(batched, single, strict=True):
        for key in ("test_error", "val_error", "n_train_seen", "train_samples_per_epoch"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), key
        for key in ("global_steps", "epochs", "n_test"):
            assert a[key] == b[key], key
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-5)
        wa, wb = _adapter_tensors(a), _adapter_tensors(b)
        assert sorted(wa) == sorted(wb)
        for k in wa:
            assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5), k
        assert (Path(a["output_dir"]) / "csv" / "metrics.csv").exists()


def _positions_loader(n: int, batch: int, seed: int = 3):
    from caulk.cache.data import IndexedBatches
    from caulk.cache.data import take_batch as _take_batch

    t = torch.arange(100, 100 + n)  # positions that are not 0..n-1
    return torch.utils.data.DataLoader(
        IndexedBatches(t, t, t),
        batch_size=batch,
        shuffle=True,
        collate_fn=_take_batch,
        generator=torch.Generator().manual_seed(seed),
    )


@pytest.mark.parametrize("n", [1, 10, 33, 64])
def test_the_batched_schedule_draws_the_dataloaders_own_batches(n):
    from caulk.engines.batched import _loader_batches, _sampler_batches

    fast, real = _positions_loader(n, 16), _positions_loader(n, 16)
    for _ in range(3):  # epochs: the generator state must carry over exactly
        drawn, iterated = _sampler_batches(fast), list(_loader_batches(real))
        assert len(drawn) == len(iterated) == -(-n // 16)
        assert all(torch.equal(a, b) for a, b in zip(drawn, iterated, strict=True))


@pytest.mark.parametrize(
    ("n", "steps", "epochs"),
    [(33, 6, 2), (33, 7, 2), (33, 8, 2), (33, 9, 3), (10, 5, 5), (64, 3, 0)],
)
def test_the_batched_schedule_counts_epochs_and_samples_as_lightning_does(n, steps, epochs):
    from functools import partial

    from caulk.engines.batched import _schedule

    idx, mask, counts = _schedule(partial(_positions_loader, n, 16), steps, 16)
    assert counts["epochs"] == epochs  # completed epochs: 3 batches of 33, 1 of 10, 4 of 64
    assert counts["n_train_seen"] == min(n, 16 * steps)
    assert counts["per_epoch"] == min(n, 16 * steps)
    assert mask.sum(1).tolist() == [min(16, n - 16 * (s % -(-n // 16))) for s in range(steps)]
    assert set(idx[mask].tolist()) <= set(range(100, 100 + n))


def test_the_batched_schedule_falls_back_to_the_dataloader_when_its_draws_differ(monkeypatch):
    """Another torch whose sampler draws differently: the schedule iterates the DataLoader."""
    from functools import partial

    import caulk.engines.batched as fastfit

    n, batch, steps = 33, 16, 8
    expected, _, _ = fastfit._schedule(partial(_positions_loader, n, batch), steps, batch)
    real = [b for _, b in zip(range(steps), _real_batches(n, batch), strict=False)]
    assert all(torch.equal(expected[s][: len(b)], b) for s, b in enumerate(real))

    def reversed_draws(loader, epochs):  # what a different sampler might do
        return torch.flip(draws(loader, epochs), [1])

    draws = fastfit._sampler_permutations
    monkeypatch.setattr(fastfit, "_sampler_permutations", reversed_draws)
    idx, mask, _ = fastfit._schedule(partial(_positions_loader, n, batch), steps, batch)
    assert torch.equal(idx[mask], expected[mask])


def test_the_patched_sampler_draws_reach_the_moved_schedule(monkeypatch):
    """The patch above lands where the schedule looks its draws up (caulk.engines.batched)."""
    from functools import partial

    import caulk.engines.batched as batched

    loader = partial(_positions_loader, 33, 16)
    before = batched._sampler_batches(loader())
    real = batched._sampler_permutations
    monkeypatch.setattr(
        batched, "_sampler_permutations", lambda ld, e: torch.flip(real(ld, e), [1])
    )
    after = batched._sampler_batches(loader())
    assert not torch.equal(torch.cat(before), torch.cat(after))
    assert torch.equal(torch.cat(before).flip(0), torch.cat(after))


def _real_batches(n: int, batch: int):
    loader = _positions_loader(n, batch)
    while True:
        for _, _, rows in loader:
            yield rows


@pytest.mark.slow
def test_a_compiled_run_gives_the_eager_results(fast_cfg, tmp_path):
    """compile=true: torch.compile'd module in Lightning's loop (the light loop stays eager)."""
    args = ["data.n=50", "trainer.max_steps=12", "trainer.val_check_interval=6"]
    compiled = train(fast_cfg(*args, "compile=true", out=tmp_path / "compiled"))
    eager = train(fast_cfg(*args, "cache.loop=lightning", out=tmp_path / "eager"))
    assert (compiled["train_loop"], compiled["compiled"]) == ("lightning", True)
    assert (eager["train_loop"], eager["compiled"]) == ("lightning", False)
    assert compiled["test_error"] == pytest.approx(eager["test_error"], abs=1 / 450)
    assert compiled["val_error"] == pytest.approx(eager["val_error"], abs=1 / 150)
    assert compiled["test_loss"] == pytest.approx(eager["test_loss"], rel=1e-4)
    a, b = _adapter_tensors(compiled), _adapter_tensors(eager)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
