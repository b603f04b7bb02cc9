"""Adaptive curves (``curve.n=auto``): caulk chooses the next n until n*(E) is known.

The question is config: ``curve.target_error`` (one E or a list), ``curve.n_range`` (default: the
number of classes to the pool size), ``curve.precision`` (stop once n*_hi / n*_lo is at most this
for every target) and a budget (``curve.max_points``, ``curve.max_seconds``). A run goes in rounds:

1. **initial design**: 4 log-spaced n over the lower half of the range (in log), at every seed of
   ``curve.seeds`` (default 0, 1, 2): cheap points first, since most questions are answered
   below the pool size and a LoRA point costs more as n grows;
2. after each round the curve's averaged model (``caulk.analysis``, the same model and 95% n*
   interval every report shows) answers every target, and **the rule** (``propose``) picks the
   next round, target by target:

   - n* inside the measured range, interval too wide: the ``value`` rule (``curve.rule``, the
     default; :mod:`caulk.adaptive_value`) weighs the candidates, a new n at n*, at either end
     of its interval or at both, or more seeds at the measured n nearest n*, by the shrink of
     the interval each is expected to bring per second of cost measured on the points so far
     (a cached probe costs the same at every n, a LoRA point more as n grows). The cost-blind
     rules it was compared with in ``benchmarks/adaptive.py``: ``n_star`` measures at n* (more
     seeds where n* is measured already), ``bracket`` at both ends of the interval;
   - n* beyond the largest n measured (or only a lower bound, ``at_least``; or no answer yet):
     **pin the tail**, one step toward it: min(n*, 4 x the largest n), within the range;
   - ``unreachable`` (the curve levels off above E with 95% confidence): that target is settled;

3. it stops with a reason: ``precision`` (every target within ``curve.precision``), ``budget``
   (points or seconds spent), ``pool`` (the range's top is measured and the answer still lies
   beyond it: an extrapolation), or ``settled`` (nothing left to measure for any target).

Each round's points train as an ordinary curve (``caulk.train.train_curve``: same records, engines
and resume), so a relaunch replays the rounds from the finished records without retraining and,
the fits being seeded, reaches the same decisions. The trace goes to ``<output_dir>/adaptive.json``
(every round's points, answers, decision and why, the cost so far), written atomically.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from caulk.adaptive_ratio import (
    ANSWER_KEYS,
    CURVES,
    baseline_cfg,
    curve_spec,
    fit_ratio,
    plain,
    points_frame,
    ratio_precise,
    ratio_text,
)
from caulk.adaptive_value import FANTASY_REPLICATES, cost_model, fantasy, log_width, scenarios
from caulk.analysis.answers import sample_complexity
from caulk.analysis.averaging import CurveModel
from caulk.analysis.collect import ADAPTIVE_TRACE
from caulk.analysis.models import curve_model, curve_models
from caulk.atomic import write_json_atomic
from caulk.cluster import is_global_zero
from caulk.config import ADAPTIVE_KEYS
from caulk.data import build_datamodule
from caulk.errors import CaulkConfigError
from caulk.loggers import init_wandb_run
from caulk.run.point import finish_wandb
from caulk.run.wandb_curve import curve_run_config, curve_run_name

log = logging.getLogger("caulk.train")

DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_MAX_POINTS = 60
INITIAL_NS = 4
#: the longest step the rule takes past the largest measured n (progressive sampling's doubling,
#: twice over: the fit can say where the curve goes from a few points beyond the data)
TAIL_STEP = 4.0
#: a proposed n within this factor of a measured one counts as measured
SAME_N = 1.1
REPLICATES = 200


@dataclass(frozen=True)
class AdaptiveSpec:
    """What an adaptive curve asks (see the module doc), with the range resolved."""

    targets: tuple[float, ...]
    n_lo: int
    n_hi: int
    precision: float
    max_points: int
    max_seconds: float | None
    seeds: tuple[int, ...]
    #: where a too-wide answer inside the range is measured next: at n* (``n_star``), at its
    #: interval's ends (``bracket``), or where the interval is expected to shrink most per unit
    #: of measured cost (``value``, :mod:`caulk.adaptive_value`); compared in
    #: ``benchmarks/adaptive.py``
    rule: str = "value"
    #: overrides that make the baseline curve (``curve.baseline``): pin down n*(baseline) /
    #: n*(curve) instead (:mod:`caulk.adaptive_ratio`)
    baseline: tuple[str, ...] = ()


def is_adaptive(cfg: DictConfig) -> bool:
    """Whether the job asks caulk to choose its n (``curve.n=auto``)."""
    return str((cfg.get("curve") or {}).get("n")) == "auto"


def adaptive_spec(cfg: DictConfig, num_classes: int, pool_size: int) -> AdaptiveSpec:
    """The question of ``cfg`` (``curve.n=auto``, its keys checked by ``caulk.config``) with its
    range resolved against the data: a range outside the pool or below the classes is an error."""
    curve = cfg.curve
    targets = curve.target_error
    targets = [targets] if not OmegaConf.is_list(targets) else list(targets)
    n_range = curve.get("n_range")
    lo, hi = (num_classes, pool_size) if n_range is None else (int(n_range[0]), int(n_range[1]))
    if hi > pool_size:
        raise CaulkConfigError(
            f"curve.n_range={[lo, hi]} reaches past the pool: {cfg.data.name} has {pool_size} "
            "training examples"
        )
    if lo < num_classes:
        raise CaulkConfigError(
            f"curve.n_range={[lo, hi]} starts below the {num_classes} classes: every class needs "
            "an example"
        )
    if hi < lo * 2:
        raise CaulkConfigError(
            f"curve.n_range={[lo, hi]} is too narrow to learn a curve from: its top must be at "
            "least twice its bottom"
        )
    seeds = curve.get("seeds")
    return AdaptiveSpec(
        targets=tuple(sorted(float(t) for t in targets)),
        n_lo=lo,
        n_hi=hi,
        precision=float(curve.get("precision") or 1.3),
        max_points=int(curve.get("max_points") or DEFAULT_MAX_POINTS),
        max_seconds=curve.get("max_seconds"),
        seeds=tuple(DEFAULT_SEEDS if seeds is None else (int(s) for s in seeds)),
        rule=str(curve.get("rule") or "value"),
        baseline=tuple(str(o) for o in (curve.get("baseline") or ())),
    )


def initial_ns(spec: AdaptiveSpec) -> list[int]:
    """``INITIAL_NS`` log-spaced n from the range's bottom to its middle (in log)."""
    top = math.sqrt(spec.n_lo * spec.n_hi)
    return sorted({int(round(v)) for v in np.geomspace(spec.n_lo, top, INITIAL_NS)})


@dataclass
class Decision:
    """The rule's choice after a round: the next points, or why the run stops."""

    points: list[tuple[int, int]] = field(default_factory=list)
    why: list[str] = field(default_factory=list)
    stop: str | None = None


def _measured_near(n: float, measured: list[int]) -> int | None:
    near = min(measured, key=lambda m: abs(math.log(m / n)))
    return near if max(near / n, n / near) <= SAME_N else None


def _more_seeds(n: int, done: set[tuple[int, int]], count: int) -> list[tuple[int, int]]:
    """``count`` new seeds at ``n``: the smallest seeds not yet measured there."""
    have = {s for m, s in done if m == n}
    new, s = [], 0
    while len(new) < count:
        if s not in have:
            new.append((n, s))
        s += 1
    return new


def _target_step(answer: dict, spec: AdaptiveSpec, done: set, measured: list[int], records, model):
    """(points, why) for one target, or (None, why) when it needs nothing more."""
    target, status = answer["target"], answer["status"]
    lo, hi, n_star = answer.get("n_star_lo"), answer.get("n_star_hi"), answer.get("n_star")
    top = max(measured)
    if status == "unreachable":
        return None, f"E={target:g}: unreachable (the curve levels off above it)"
    if status == "ok" and np.isfinite(lo) and np.isfinite(hi) and hi / lo <= spec.precision:
        return None, f"E={target:g}: n* {n_star:,.0f} [{lo:,.0f}, {hi:,.0f}] within precision"
    if status == "ok" and n_star <= top * SAME_N:
        return _inside_step(answer, spec, done, measured, records, model)
    if top >= spec.n_hi:
        return None, f"E={target:g}: the answer lies beyond the range's top n={spec.n_hi}"
    reach = (
        n_star
        if status == "ok" and np.isfinite(n_star)
        else (lo if status == "at_least" else np.nan)
    )
    step = TAIL_STEP * top if not np.isfinite(reach) else min(reach, TAIL_STEP * top)
    n = int(min(max(round(step), top + 1), spec.n_hi))
    return [(n, s) for s in spec.seeds], f"E={target:g}: {status}; pin the tail at n={n}"


def _new_ns(spots: list[float], spec: AdaptiveSpec, measured: list[int]) -> list[int]:
    """``spots`` as n within the range, leaving out those measured already."""
    clipped = {int(min(max(round(x), spec.n_lo), spec.n_hi)) for x in spots if np.isfinite(x)}
    return sorted(n for n in clipped if _measured_near(n, measured) is None)


def _gap_ns(answer: dict, spec: AdaptiveSpec, measured: list[int]) -> list[int]:
    """New n halfway (in log) between neighbouring measured n whose span meets the n* interval."""
    lo, hi = answer["n_star_lo"], answer["n_star_hi"]
    if not (lo and hi and np.isfinite(lo) and np.isfinite(hi)):
        return []
    mids = [math.sqrt(a * b) for a, b in itertools.pairwise(measured) if a < hi and b > lo]
    return _new_ns(mids, spec, measured)


def _inside_step(answer: dict, spec: AdaptiveSpec, done: set, measured: list[int], records, model):
    """(points, why) for an answer inside the measured range whose interval is too wide: new n
    where the rule looks (``n_star``: at n*; ``bracket``: at the interval's ends), else more
    seeds at the measured n nearest n*; ``value``: the candidate worth most per cost."""
    target, n_star = answer["target"], answer["n_star"]
    if spec.rule == "value":
        return _value_step(answer, spec, done, measured, records, model)
    spots = [n_star] if spec.rule == "n_star" else [answer["n_star_lo"], answer["n_star_hi"]]
    new = _new_ns(spots, spec, measured)
    if new:
        where = ", ".join(map(str, new))
        return [(n, s) for n in new for s in spec.seeds], f"E={target:g}: measure at n={where}"
    near = min(measured, key=lambda m: abs(math.log(m / n_star)))
    return _more_seeds(near, done, len(spec.seeds)), (
        f"E={target:g}: n*≈{n_star:,.0f} is measured; its interval is seed noise: more seeds "
        f"at n={near}"
    )


def propose(
    answers: list[dict],
    spec: AdaptiveSpec,
    done: set[tuple[int, int]],
    records: list[dict] | None = None,
    model: CurveModel | None = None,
) -> Decision:
    """The next round's points from this round's answers (one per target); ``done``: every
    (n, seed) measured so far, ``records`` their records (the ``value`` rule refits on them),
    ``model`` the curve's model the answers came from (:func:`fit_round`; else built again).
    Stops when no target needs a point."""
    measured = sorted({n for n, _ in done})
    decision = Decision()
    beyond = False
    for answer in answers:
        points, why = _target_step(answer, spec, done, measured, records or [], model)
        decision.why.append(why)
        beyond |= "beyond the range's top" in why
        for p in points or []:
            if p not in done and p not in decision.points:
                decision.points.append(p)
    if not decision.points:
        precise = all("within precision" in w for w in decision.why)
        decision.stop = "precision" if precise else ("pool" if beyond else "settled")
    return decision


def fit_round(
    records: list[dict],
    spec: AdaptiveSpec,
    replicates: int = REPLICATES,
    targets: tuple[float, ...] | None = None,
) -> tuple[list[dict], CurveModel | str]:
    """Every target's answer (``targets``: these instead of the spec's) from the ok records so
    far, and the curve's model they come from (the analysis' averaged model, ``replicates``
    bootstrap fits), or why it has none."""
    targets = spec.targets if targets is None else targets
    frame = points_frame(records, "adaptive")
    models = curve_models(frame, ["curve"], "test_error", replicates=replicates)
    table = sample_complexity(
        frame, ["curve"], "test_error", list(targets), replicates=replicates, models=models
    )
    answers = [{k: plain(row[k]) for k in ANSWER_KEYS} for _, row in table.iterrows()]
    return answers, models.get(("adaptive",), "no ok points")


def fit_answers(
    records: list[dict],
    spec: AdaptiveSpec,
    replicates: int = REPLICATES,
    targets: tuple[float, ...] | None = None,
) -> list[dict]:
    """Every target's answer from the ok records so far (:func:`fit_round` without its model)."""
    return fit_round(records, spec, replicates, targets)[0]


def _value_step(answer: dict, spec: AdaptiveSpec, done: set, measured: list[int], records, model):
    """(points, why): the candidate (a new n at n* or at either end of its interval, both ends,
    a gap between measured n inside it, or more seeds at the measured n nearest n*) expected
    to shrink the interval most per second of measured cost (:mod:`caulk.adaptive_value`)."""
    target, n_star = answer["target"], answer["n_star"]
    spots = [n_star, answer["n_star_lo"], answer["n_star_hi"]]
    candidates = {f"n={n}": [(n, s) for s in spec.seeds] for n in _new_ns(spots, spec, measured)}
    ends = _new_ns(spots[1:], spec, measured)
    if len(ends) == 2:
        candidates[f"n={ends[0]} and n={ends[1]}"] = [(n, s) for n in ends for s in spec.seeds]
    for n in _gap_ns(answer, spec, measured):
        candidates.setdefault(f"n={n}", [(n, s) for s in spec.seeds])
    near = min(measured, key=lambda m: abs(math.log(m / n_star)))
    candidates[f"more seeds at n={near}"] = _more_seeds(near, done, len(spec.seeds))
    if not isinstance(model, CurveModel):
        model = curve_model(points_frame(records, "adaptive"), "test_error", replicates=REPLICATES)
    cost, cap = cost_model(records), TAIL_STEP * spec.n_hi

    def width(rows: list[dict]) -> float:
        return log_width(fit_answers(rows, spec, FANTASY_REPLICATES, (target,))[0], cap)

    now = width(records)
    values = {}
    for name, points in candidates.items():
        after = [width(records + fantasy(c, records, points)) for c in scenarios(model, target)]
        values[name] = (now - float(np.mean(after))) / sum(cost(n) for n, _ in points)
    best = max(values, key=values.__getitem__)
    shown = ", ".join(f"{k}: {v:.3g}" for k, v in values.items())
    return candidates[best], (
        f"E={target:g}: measure {best} (expected shrink of log(n*_hi/n*_lo) per second, "
        f"{cost.text()}: {shown})"
    )


def _round_cfg(cfg: DictConfig, points: list[tuple[int, int]]) -> DictConfig:
    """The curve config of one round's points (its ns x its seeds; a round's points are a grid)."""
    out = cfg.copy()
    with open_dict(out):
        out.curve.n = sorted({n for n, _ in points})
        out.curve.seeds = sorted({s for _, s in points})
        for key in ADAPTIVE_KEYS:
            out.curve[key] = None
    return out


def _grid_rounds(points: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """``points`` as curves that are full grids: one per distinct seed set."""
    by_seeds: dict[tuple, list[int]] = {}
    for n in sorted({n for n, _ in points}):
        seeds = tuple(sorted(s for m, s in points if m == n))
        by_seeds.setdefault(seeds, []).append(n)
    return [[(n, s) for n in ns for s in seeds] for seeds, ns in by_seeds.items()]


def _data_size(cfg: DictConfig) -> tuple[int, int]:
    """(classes, pool size) of the job's dataset."""
    data = cfg.data.copy()
    with open_dict(data):
        data.n = None
    dm = build_datamodule(data, int(cfg.get("seed", 0)))
    return dm.num_classes, dm.pool_size


def run_adaptive(cfg: DictConfig, train_curve: Callable[[DictConfig], list[dict]]) -> list[dict]:
    """Run the rounds of an adaptive curve (see the module doc), against its baseline when
    ``curve.baseline`` names one; returns every point's record (the baseline's too).
    ``train_curve``: trains one round's curve (``caulk.train.train_curve``)."""
    spec = adaptive_spec(cfg, *_data_size(cfg))
    trace = Trace(Path(cfg.paths.output_dir) / ADAPTIVE_TRACE, spec)

    def trainer(job: DictConfig) -> Callable[[list[tuple[int, int]]], list[dict]]:
        def train(points: list[tuple[int, int]]) -> list[dict]:
            return [r for grid in _grid_rounds(points) for r in train_curve(_round_cfg(job, grid))]

        return train

    if spec.baseline:
        rows = ratio_loop(
            spec, {"curve": trainer(cfg), "baseline": trainer(baseline_cfg(cfg))}, trace
        )
        records, everything = rows["curve"], rows["curve"] + rows["baseline"]
    else:
        records = everything = adaptive_loop(spec, trainer(cfg), trace)
    print(trace.summary(), flush=True)
    if is_global_zero():
        log_trace_to_wandb(_round_cfg(cfg, [(r["n"], r["seed"]) for r in records]), trace)
    return everything


def wandb_rows(trace: Trace) -> list[dict[str, Any]]:
    """One W&B history row per round: per target E its n* and interval
    (``adaptive/E<E>/n_star``, ``…/n_star_lo``, ``…/n_star_hi``; against a baseline also
    ``…/ratio``, ``…/ratio_lo``, ``…/ratio_hi``), the points and training seconds so far, all
    against ``adaptive/round``."""
    rows = []
    for r in trace.rounds:
        row = {
            "adaptive/round": r["round"],
            "adaptive/points": r["points_so_far"],
            "adaptive/train_seconds": r["train_seconds_so_far"],
        }
        for a in r["answers"] + r.get("ratios", []):
            key = f"adaptive/E{a['target']:g}".replace(".", "_")
            for field_ in ("n_star", "n_star_lo", "n_star_hi", "ratio", "ratio_lo", "ratio_hi"):
                value = a.get(field_, np.nan)
                if value is None or np.isfinite(value):
                    row[f"{key}/{field_}"] = value
        rows.append(row)
    return rows


def log_trace_to_wandb(cfg: DictConfig, trace: Trace) -> None:
    """Add the rounds (``wandb_rows``) and the final answers to the curve's W&B run (the rounds'
    run: its id follows the output dir), when W&B logs."""
    ns = sorted(set(cfg.curve.n))
    run = init_wandb_run(
        cfg.get("logger"), Path(cfg.paths.output_dir), curve_run_name(cfg),
        curve_run_config(cfg, ns, list(cfg.curve.seeds)),
    )  # fmt: skip
    if run is None:
        return
    run.define_metric("adaptive/round", summary="none")
    run.define_metric("adaptive/*", step_metric="adaptive/round", summary="none")
    for row in wandb_rows(trace):
        run.log({k: v for k, v in row.items() if v is not None})
    run.summary["adaptive"] = {"stop": trace.rounds[-1]["stop"], "answers": trace.final}
    finish_wandb(run, failed=False)


def adaptive_loop(
    spec: AdaptiveSpec,
    train: Callable[[list[tuple[int, int]]], list[dict]],
    trace: Trace | None = None,
) -> list[dict]:
    """The rounds: train the initial design, then fit, ``propose`` and train again until the
    decision stops; ``train`` trains (or finds) (n, seed) points and returns their records."""
    records: dict[tuple[int, int], dict] = {}
    points = [(n, s) for n in initial_ns(spec) for s in spec.seeds]
    while True:
        for r in train(points):
            records[(r["n"], r["seed"])] = r
        answers, model = fit_round(list(records.values()), spec)
        decision = propose(answers, spec, set(records), list(records.values()), model)
        decision.stop = decision.stop or _budget_spent(spec, records, decision.points)
        if trace is not None:
            trace.add(points, answers, decision, list(records.values()))
        log.info("[adaptive] %s", "; ".join(decision.why))
        if decision.stop:
            return list(records.values())
        points = decision.points


def ratio_loop(
    spec: AdaptiveSpec, trains: dict[str, Callable], trace: Trace | None = None
) -> dict[str, list[dict]]:
    """The rounds of a curve against its baseline (:mod:`caulk.adaptive_ratio`): both curves'
    initial designs, then per round one paired fit, each curve's own rule at the per-curve
    precision, until the ratio's interval is within ``spec.precision`` at every target.
    ``trains``: ``curve`` and ``baseline``, each trains (or finds) its (n, seed) points."""
    each = curve_spec(spec)
    records: dict[str, dict] = {name: {} for name in CURVES}
    points = {name: [(n, s) for n in initial_ns(spec) for s in spec.seeds] for name in CURVES}
    while True:
        for name in CURVES:
            for r in trains[name](points[name]):
                records[name][(r["n"], r["seed"])] = r
        rows = {name: list(records[name].values()) for name in CURVES}
        answers, ratio_rows, models = fit_ratio(rows, spec, REPLICATES)
        steps = {n: propose(answers[n], each, set(records[n]), rows[n], models[n]) for n in CURVES}
        if not any(steps[n].points for n in CURVES) and not all(
            ratio_precise(r, spec.precision) for r in ratio_rows
        ):  # each curve within its share but the ratio not yet: narrow the wider curve further
            wider = max(CURVES, key=lambda n: max(log_width(a, math.inf) for a in answers[n]))
            tight = dataclasses.replace(each, precision=1.0 + 1e-9)
            steps[wider] = propose(
                answers[wider], tight, set(records[wider]), rows[wider], models[wider]
            )
        decision = _ratio_decision(spec, ratio_rows, steps, rows)
        if trace is not None:
            trace.add(
                points["curve"], answers["curve"], decision, rows["curve"] + rows["baseline"],
                baseline_points=[list(p) for p in points["baseline"]],
                baseline_answers=answers["baseline"], ratios=ratio_rows,
                baseline_next=[list(p) for p in steps["baseline"].points],
            )  # fmt: skip
        log.info("[adaptive] %s", "; ".join(decision.why))
        if decision.stop:
            return rows
        points = {name: steps[name].points for name in CURVES}


def _ratio_decision(spec: AdaptiveSpec, ratio_rows: list, steps: dict, rows: dict) -> Decision:
    """The round's decision against a baseline: the curve's next points (the baseline's are in
    ``steps``), why, and whether to stop (``precision`` when every ratio is within it)."""
    why = [ratio_text(r) for r in ratio_rows]
    why += [f"{name}: {w}" for name in CURVES for w in steps[name].why]
    decision = Decision(points=list(steps["curve"].points), why=why)
    if all(ratio_precise(r, spec.precision) for r in ratio_rows):
        decision.stop = "precision"
    elif not any(steps[name].points for name in CURVES):
        decision.stop = "pool" if "pool" in {steps[n].stop for n in CURVES} else "settled"
    else:
        merged = {(name, k): r for name in CURVES for k, r in enumerate(rows[name])}
        following = steps["curve"].points + steps["baseline"].points
        decision.stop = _budget_spent(spec, merged, following)
    if decision.stop:
        decision.points = []
        for name in CURVES:
            steps[name].points = []
    return decision


def _budget_spent(spec: AdaptiveSpec, records: dict, next_points: list) -> str | None:
    """``budget`` when the next round would exceed ``max_points`` or the training seconds so far
    reached ``max_seconds``."""
    spent_s = sum(float(r.get("wall_time_s") or 0) for r in records.values())
    if len(records) + len(next_points) > spec.max_points:
        return "budget"
    if spec.max_seconds is not None and spent_s >= spec.max_seconds:
        return "budget"
    return None


#: why a run stopped, as its summary says it
STOPS = {
    "precision": "every target within the precision asked",
    "budget": "budget spent",
    "pool": "the range's top n is measured and the answer lies beyond it: an extrapolation",
    "settled": "nothing left to measure (unreachable or beyond the range)",
}


class Trace:
    """``adaptive.json``: the question, then per round its new points, the answers, the rule's
    decision and why, and the cost so far (points, training seconds)."""

    def __init__(self, path: Path | None, spec: AdaptiveSpec):
        self.path, self.spec, self.rounds = path, spec, []

    def add(
        self, points: list, answers: list[dict], decision: Decision, records: list, **extra: Any
    ) -> None:
        """Record one round (``extra``: against a baseline, its points, answers, next points
        and the ratios) and rewrite the file."""
        self.rounds.append(
            {
                "round": len(self.rounds) + 1,
                "points": [list(p) for p in points],
                "answers": answers,
                "next": [list(p) for p in decision.points],
                "why": decision.why,
                "stop": decision.stop,
                "points_so_far": len(records),
                "train_seconds_so_far": round(
                    sum(float(r.get("wall_time_s") or 0) for r in records), 2
                ),
                **extra,
            }
        )
        if self.path is not None:
            write_json_atomic(self.path, {"spec": asdict(self.spec), "rounds": self.rounds})

    @property
    def final(self) -> list[dict]:
        """The last round's answers (one per target)."""
        return self.rounds[-1]["answers"]

    def summary(self) -> str:
        """One line per target: ``n*(0.10) = 520 [430, 610] after 21 points (35 s of training);
        stop: ...``, saying so when the answer lies beyond the range's top (an extrapolation)."""
        last = self.rounds[-1]
        cost = f"after {last['points_so_far']} points ({last['train_seconds_so_far']:.0f} s of training)"
        lines = [f"[adaptive] {_answer_text(a, self.spec.n_hi)}" for a in last["answers"]]
        if "ratios" in last:
            lines = (
                [f"[adaptive] {ratio_text(r)}" for r in last["ratios"]]
                + [
                    f"[adaptive] baseline {_answer_text(a, self.spec.n_hi)}"
                    for a in last["baseline_answers"]
                ]
                + [f"[adaptive] curve {line.removeprefix('[adaptive] ')}" for line in lines]
            )
        return "\n".join(f"{line} {cost}; stop: {STOPS[last['stop']]}" for line in lines)


def _answer_text(a: dict, n_hi: int) -> str:
    """``n*(E) = x [lo, hi]``, with the extrapolation said; else the status and its note."""
    n_star = a["n_star"]
    if a["status"] != "ok" or n_star is None or not np.isfinite(n_star):
        return f"n*({a['target']:g}): {a['status']} ({a['note']})"
    lo, hi = (_count(a[k]) for k in ("n_star_lo", "n_star_hi"))
    text = f"n*({a['target']:g}) = {n_star:,.0f} [{lo}, {hi}]"
    if n_star > n_hi:
        text += f" (the range ends at n={n_hi}: this answer is an extrapolation)"
    return text


def _count(value: float | None) -> str:
    return (
        "?" if value is None or np.isnan(value) else ("inf" if np.isinf(value) else f"{value:,.0f}")
    )
