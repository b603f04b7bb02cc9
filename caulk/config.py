"""The typed schema of the config keys caulk checks, and ``check_config`` that applies it.

Each checked section of the composed config (the run's top level, ``curve``, ``cache``,
``trainer``, ``budget``, ``budget.early_stop``, ``peft``, ``tune``, ``data``, ``model``, ``source_task``) has
a dataclass below. Types are checked by OmegaConf's structured configs
(``OmegaConf.merge(OmegaConf.structured(Schema), ...)``), made strict: no string is read as a number or bool (``compile=yes`` is an error, not true). Ranges
and choices are each field's ``rule`` in its metadata. Only the modelled keys are checked: every
other key of a section stays free (configs carry many keys the schema does not know), and a
modelled key absent from a section is not required. A bad value is one ``CaulkConfigError`` line
naming the full key: ``peft.lr must be a positive number, got -1``.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, ValidationError

from caulk.errors import CaulkConfigError


def is_int(value: Any) -> bool:
    """An integer (Python or NumPy), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number (int or float, Python or NumPy), and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def spec(kind: str, rule: Callable[[Any], bool] | None = None, fails: str | None = None) -> Any:
    """A schema field: ``kind`` names the valid values in messages ("a positive integer");
    ``rule`` is the range or choice check on a well-typed value; ``fails``, when given, is the
    message's wording for a well-typed value out of range (default: ``kind``)."""
    return field(default=MISSING, metadata={"kind": kind, "rule": rule, "fails": fails})


def at_least(low: float) -> Callable[[Any], bool]:
    """A rule: a finite number >= ``low``."""
    return lambda v: math.isfinite(v) and v >= low


def positive(v: float) -> bool:
    """A rule: a finite number > 0 (nan and inf fail)."""
    return math.isfinite(v) and v > 0


def one_of(*choices: str) -> Callable[[Any], bool]:
    """A rule: one of ``choices``."""
    return lambda v: v in choices


def each(rule: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A rule on a list: not empty, every item passes ``rule``."""
    return lambda v: len(v) > 0 and all(rule(x) for x in v)


#: ``peft.solver`` of a linear probe: the fixed-step recipe, or a converged solver over a λ grid
SOLVERS = ("lbfgs", "ridge")
LINEAR_SOLVERS = ("sgd", *SOLVERS)
#: ``peft.lambda_path`` of the lbfgs solver: λ one after another, warm-started, or all at once
LAMBDA_PATHS = ("warm", "parallel", "auto")

BOOL = "true or false"
INT = "an integer"
POSITIVE_INT = "a positive integer"


@dataclass
class RunSchema:
    """The top level of a run: ``seed``, ``compile``, ``scheduler``."""

    seed: int = spec(INT)
    compile: bool = spec(BOOL)
    scheduler: str = spec("cosine or none", one_of("cosine", "none"))


def _sizes_or_auto(value: Any) -> bool:
    if isinstance(value, str):
        return value == "auto"
    return isinstance(value, list) and len(value) > 0 and all(is_int(v) and v >= 1 for v in value)


def _errors(value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    return len(values) > 0 and all(is_number(v) and 0 < v < 1 for v in values)


#: the rules ``curve.n=auto`` chooses its next points by (``caulk.adaptive``)
ADAPTIVE_RULES = ("value", "n_star", "bracket")


@dataclass
class CurveSchema:
    """``curve``: the grid of n (and seeds) one process runs; null = the single point.

    A single int for ``curve.seeds`` is read as a one-seed list (``check_config`` rewrites it)."""

    n: Any = spec("a non-empty list of sizes, e.g. [10,20,40], or auto", _sizes_or_auto)
    seeds: list[int] | None = spec("a non-empty list of integer seeds, e.g. [0,1,2]", each(is_int))
    # read with n=auto only (caulk.adaptive)
    target_error: Any = spec("an error in (0, 1) or a non-empty list of them", _errors)
    n_range: list[int] | None = spec(
        "[lo, hi]: two sizes, lo >= 1 and hi > lo", lambda v: len(v) == 2 and 1 <= v[0] < v[1]
    )
    precision: float | None = spec("a number > 1 (n*_hi / n*_lo)", lambda v: v > 1)
    max_points: int | None = spec(POSITIVE_INT, at_least(1))
    max_seconds: float | None = spec("a positive number of seconds", positive)
    rule: str = spec(" or ".join(ADAPTIVE_RULES), one_of(*ADAPTIVE_RULES))
    baseline: list[str] | None = spec(
        'a list of overrides, e.g. ["model.weights=none"]', lambda v: len(v) > 0
    )


@dataclass
class CacheSchema:
    """``cache``: the frozen-prefix feature cache and its training loop."""

    features: bool = spec(BOOL)
    disk: bool = spec(BOOL)
    batch_points: bool = spec(BOOL)
    loop: str = spec("cached or lightning", one_of("cached", "lightning", "fast"))  # fast: old name


@dataclass
class TrainerSchema:
    """``trainer``: the step budget and the intervals caulk's loops read."""

    max_steps: int = spec("a positive step budget (an integer >= 1)", at_least(1))
    val_check_interval: float | None = spec(
        "a positive integer (steps) or a fraction of an epoch in (0, 1]",
        lambda v: positive(v) and (is_int(v) or v <= 1),
    )
    log_every_n_steps: int = spec(POSITIVE_INT, at_least(1))
    accelerator: str = spec(
        "one of auto, cpu, gpu, cuda (what caulk's loops run on)",
        one_of("auto", "cpu", "gpu", "cuda"),
    )
    devices: Any = spec(
        "auto, -1, a positive integer or a non-empty list of device ids",
        lambda v: v in ("auto", -1) or (is_int(v) and v >= 1) or (isinstance(v, list) and v != []),
    )


@dataclass
class BudgetSchema:
    """``budget``: the step budget of gradient-trained points (``caulk.budget``)."""

    mode: str = spec("fixed or epochs", one_of("fixed", "epochs"))
    epochs: float = spec("a positive number of epochs", positive)
    min_steps: int = spec("a positive step count (an integer >= 1)", at_least(1))
    max_steps: int = spec("a positive step count (an integer >= 1)", at_least(1))


@dataclass
class EarlyStopSchema:
    """``budget.early_stop``: early stopping on validation, the best state restored."""

    enabled: bool = spec(BOOL)
    patience: int = spec("an integer >= 1 (validation checks)", at_least(1))


@dataclass
class PeftSchema:
    """``peft``: the keys every method shares (method-specific keys are checked by the method)."""

    lr: float = spec("a positive number", positive)
    weight_decay: float = spec("a number >= 0", at_least(0))
    # a linear probe's solver (caulk.engines.solvers)
    solver: str = spec(" or ".join(LINEAR_SOLVERS), one_of(*LINEAR_SOLVERS))
    lambdas: list[float] = spec("a non-empty list of positive numbers (the λ grid)", each(positive))
    tol: float = spec("a positive number", positive)
    max_iter: int = spec(POSITIVE_INT, at_least(1))
    lambda_path: str = spec(" or ".join(LAMBDA_PATHS), one_of(*LAMBDA_PATHS))


@dataclass
class TuneSchema:
    """``tune``: per-point hyper-parameter selection (``caulk.tune``)."""

    policy: str = spec("none or grid", one_of("none", "grid"))
    validation: str = spec("holdout or within_n", one_of("holdout", "within_n"))
    folds: int = spec("an integer >= 2 (k-fold inside the n examples)", at_least(2))
    fraction: float | None = spec(
        "a fraction in (0, 1) or null", lambda v: 0 < v < 1, fails="in (0, 1)"
    )


@dataclass
class DataSchema:
    """``data``: the keys every dataset shares (dataset-specific ones are checked when loaded)."""

    n: int | None = spec("a positive integer or null", at_least(1), fails="positive")
    batch_size: int = spec(POSITIVE_INT, at_least(1))
    test_fraction: float | None = spec("in (0, 1)", lambda v: 0 < v < 1)
    val_size: int = spec("an integer >= 0", at_least(0))
    split_seed: int = spec(INT)
    stratify: bool = spec(BOOL)
    shots: int | None = spec("a positive integer or null", at_least(1))


@dataclass
class ModelSchema:
    """``model``: the seeds of a random or zoo backbone and the zoo's source size."""

    init_seed: int = spec(INT)
    source_m: int | None = spec("an integer >= 0 (the source size)", at_least(0))
    source_seed: int = spec(INT)


@dataclass
class SourceTaskSchema:
    """``source_task``: the zoo's pre-training recipe (glyphs or an ImageFolder)."""

    num_classes: int = spec("an integer >= 2", at_least(2))
    max_strokes: int = spec(POSITIVE_INT, at_least(1))
    task_seed: int = spec(INT)
    val_size: int = spec(POSITIVE_INT, at_least(1))
    steps: int = spec(POSITIVE_INT, at_least(1))
    batch_size: int = spec(POSITIVE_INT, at_least(1))
    lr: float = spec("a positive number", positive)
    weight_decay: float = spec("a number >= 0", at_least(0))
    warmup_steps: int = spec("an integer >= 0", at_least(0))
    label_smoothing: float = spec("in [0, 1)", lambda v: 0 <= v < 1)
    num_workers: int = spec("an integer >= 0", at_least(0))


@dataclass
class WandbSchema:
    """``logger.wandb``: whether and how a run logs to W&B."""

    enabled: bool = spec(BOOL)
    mode: str = spec(
        "one of auto, online, offline, disabled", one_of("auto", "online", "offline", "disabled")
    )


#: section name -> its schema; "" is the top level
SCHEMAS: dict[str, type] = {
    "": RunSchema,
    "curve": CurveSchema,
    "cache": CacheSchema,
    "trainer": TrainerSchema,
    "budget": BudgetSchema,
    "budget.early_stop": EarlyStopSchema,
    "peft": PeftSchema,
    "tune": TuneSchema,
    "data": DataSchema,
    "model": ModelSchema,
    "source_task": SourceTaskSchema,
    "logger.wandb": WandbSchema,
}


def _coerced(raw: Any, typed: Any) -> bool:
    """Whether OmegaConf changed a value's kind to fit the schema ('5' -> 5, 'yes' -> True)."""
    if isinstance(raw, (list, tuple, ListConfig)) and isinstance(typed, (list, ListConfig)):
        return any(_coerced(r, t) for r, t in zip(raw, typed, strict=True))
    return isinstance(raw, str) != isinstance(typed, str) or (
        isinstance(typed, bool) and not isinstance(raw, bool)
    )


def _error(name: str, value: Any, text: str) -> CaulkConfigError:
    return CaulkConfigError(f"{name} must be {text}, got {value!r}")


def check_section(section: str, node: Any, required: tuple[str, ...] = ()) -> None:
    """Check the modelled keys present in ``node`` (the config section ``section``, e.g.
    ``"peft"``) against its schema in ``SCHEMAS``; raise a one-line CaulkConfigError.

    A key in ``required`` that ``node`` lacks is checked as null (an error unless it may be null).
    The section's types are checked in one merge; only when it fails is each key merged alone,
    to name the bad one.
    """
    if node is None:
        return
    schema, prefix = SCHEMAS[section], f"{section}." if section else ""
    present = [f for f in fields(schema) if f.name in node or f.name in required]
    values = {f.name: _plain(node.get(f.name)) for f in present}
    try:
        typed = OmegaConf.merge(_structured(schema), values)
    except ValidationError:
        typed = None
    for f in present:
        _check_value(prefix + f.name, values[f.name], f, schema, typed)


def _check_value(name: str, value: Any, f: Field, schema: type, typed_section: Any = None) -> None:
    """Check one value: its type (OmegaConf, no coercion from strings), then its rule.
    ``typed_section``: the whole section already merged into the schema, when that succeeded."""
    if typed_section is not None:
        typed = typed_section[f.name]
    else:
        try:
            typed = OmegaConf.merge(_structured(schema), {f.name: value})[f.name]
        except ValidationError:
            raise _error(name, value, f.metadata["kind"]) from None
    if value is None:
        return
    if _coerced(value, typed):
        raise _error(name, value, f.metadata["kind"])
    rule = f.metadata["rule"]
    if rule is not None and not rule(value):
        raise _error(name, value, f.metadata["fails"] or f.metadata["kind"])


@functools.cache
def _structured(schema: type) -> DictConfig:
    """The schema as an OmegaConf structured config (built once; merges copy it)."""
    return OmegaConf.structured(schema)


def _plain(value: Any) -> Any:
    """A config value as plain Python (lists resolved), for checks and messages."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_config(cfg: DictConfig) -> None:
    """Validate the composed run config ``cfg`` against the schema before anything is built.

    Raises a one-line CaulkConfigError naming the full key. A single int ``curve.seeds`` is
    rewritten in place as a one-seed list; ``data.n`` beside ``curve.n`` is an error (a curve
    sets each point's n; every shipped data config leaves ``data.n`` null, so a value there is
    the user's). Sections absent from ``cfg`` (``caulk.pretrain`` has no ``data``) are skipped.
    """
    curve = cfg.get("curve")
    if curve is not None and is_int(curve.get("seeds")):
        curve.seeds = [curve.seeds]
    for section in SCHEMAS:
        check_section(section, cfg if section == "" else OmegaConf.select(cfg, section))
    _check_data_n_beside_curve(cfg)
    _check_adaptive_curve(cfg)
    _check_optimizer(cfg)
    _check_budget(cfg)


def _check_optimizer(cfg: DictConfig) -> None:
    """The optimizer's ``_target_`` must name something importable (before any work)."""
    target = (cfg.get("optimizer") or {}).get("_target_")
    if target is None:
        return
    try:
        get_object(str(target))
    except Exception:
        raise CaulkConfigError(
            f"optimizer._target_={target!r} cannot be imported (e.g. torch.optim.AdamW)"
        ) from None


def check_accelerator_available(cfg: DictConfig) -> None:
    """A GPU asked for must exist: the light loops would otherwise run on the CPU silently."""
    accelerator = str((cfg.get("trainer") or {}).get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise CaulkConfigError(
            f"trainer.accelerator={accelerator} but no CUDA device is available "
            f"(use trainer.accelerator=auto or cpu)"
        )


#: the keys of ``curve`` that only ``curve.n=auto`` reads (``precision`` has a default)
ADAPTIVE_KEYS = ("target_error", "n_range", "max_points", "max_seconds", "baseline")


_ABSENT_KEY = object()


def check_baseline_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """One-line errors for ``curve.baseline``: every item ``key=value`` with a key the config
    has that is no config group, and the list changes something."""
    if not overrides:
        raise CaulkConfigError(
            "curve.baseline is empty: list the overrides that make the baseline curve, e.g. "
            "curve.baseline='[\"model.weights=none\"]'"
        )
    for item in overrides:
        key, sep, value = str(item).partition("=")
        found = OmegaConf.select(cfg, key, default=_ABSENT_KEY) if sep and key else _ABSENT_KEY
        if found is _ABSENT_KEY:
            raise CaulkConfigError(
                f"curve.baseline item {item!r} is not key=value with a key of the config "
                "(e.g. model.weights=none)"
            )
        if OmegaConf.is_config(found):
            raise CaulkConfigError(
                f"curve.baseline item {item!r} names a config group; only plain keys can differ "
                f"from the job (e.g. {key}.<field>=...)"
            )
        if key.startswith("curve.") or key.startswith("paths."):
            raise CaulkConfigError(
                f"curve.baseline item {item!r}: the baseline shares the job's curve and paths"
            )
    changed = OmegaConf.merge(cfg, OmegaConf.from_dotlist([str(o) for o in overrides]))
    keys = [str(o).partition("=")[0] for o in overrides]
    if all(OmegaConf.select(changed, k) == OmegaConf.select(cfg, k) for k in keys):
        raise CaulkConfigError(
            f"curve.baseline={[str(o) for o in overrides]} changes nothing: the baseline would "
            "be this curve"
        )


def _check_adaptive_curve(cfg: DictConfig) -> None:
    """``curve.n=auto`` needs a target; the adaptive keys need ``curve.n=auto``."""
    curve = cfg.get("curve") or {}
    if curve.get("n") != "auto":
        given = [k for k in ADAPTIVE_KEYS if curve.get(k) is not None]
        if given:
            raise CaulkConfigError(
                f"curve.{given[0]} is set but curve.n is not auto: it is read only when caulk "
                "chooses the n (curve.n=auto)"
            )
    elif curve.get("target_error") is None:
        raise CaulkConfigError(
            "curve.n=auto needs curve.target_error: the error E whose n*(E) the run pins down, "
            "e.g. curve.target_error=0.1"
        )
    elif curve.get("baseline") is not None:
        check_baseline_overrides(cfg, list(curve.baseline))


def _check_data_n_beside_curve(cfg: DictConfig) -> None:
    """``data.n`` set beside ``curve.n`` is an error: the curve would silently replace it."""
    curve, data = cfg.get("curve") or {}, cfg.get("data") or {}
    if curve.get("n") is not None and data.get("n") is not None:
        raise CaulkConfigError(
            f"data.n={data['n']} is set beside curve.n={_plain(curve['n'])}: a curve sets each "
            f"point's n; drop data.n (or curve.n to run the single point)"
        )


def _check_budget(cfg: DictConfig) -> None:
    """``budget.min_steps`` above ``budget.max_steps``, or early stopping without validation data,
    is an error (each value alone is checked by the schema)."""
    budget = cfg.get("budget") or {}
    low, high = budget.get("min_steps"), budget.get("max_steps")
    if low is not None and high is not None and low > high:
        raise CaulkConfigError(f"budget.min_steps={low} must be <= budget.max_steps={high}")
    early = budget.get("early_stop") or {}
    val_size = (cfg.get("data") or {}).get("val_size")
    if early.get("enabled") and val_size == 0:
        raise CaulkConfigError(
            "budget.early_stop.enabled=true needs validation data: data.val_size must be > 0"
        )
