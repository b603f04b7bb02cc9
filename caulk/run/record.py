"""The record of a point: one typed schema, written atomically as JSON, read back by the analysis.

``Record`` is what a training point writes to ``<point dir>/record.json``; ``record_row`` is how
the analysis reads one back (the fields it knows are checked against ``Record``'s types).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caulk.atomic import write_json_atomic
from caulk.config import is_int, is_number

RECORD_NAME = "record.json"
#: what only an ok point has (a PointResult's fields)
_METRICS = (
    "test_error",
    "test_loss",
    "val_error",
    "n_test",
    "n_train_seen",
    "train_samples_per_epoch",
    "global_steps",
    "epochs",
    "resumed_from",
    "best_step",
    "selected",
    "candidates",
    "test_correct",
    "test_set",
)
_OPTIONAL = (
    "traceback",
    "adapter_file",
    "diverged_at_step",
    "step_budget",
    "best_step",
    "solver",
    "selected",
    "candidates",
    "tune",
    "tune_candidate",
    "test_correct",
    "test_set",
    "curve_role",
)
#: fields that are not scalar table columns
_NESTED = ("config", "traceback")


@dataclass
class Record:
    """Everything a point says about itself: what it was, how it trained, how it did."""

    # the point
    model: str
    backbone_tag: str
    weights: str
    source_m: int | None
    peft: str
    data: str
    n: int
    seed: int
    # the backbone and the method
    arch: str | None = None
    weights_file: str | None = None
    zoo_entry: str | None = None
    source_accuracy: float | None = None
    init_seed: int | None = None
    peft_knob: str | None = None
    peft_knob_value: Any = None
    peft_params: int | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    backbone_params: int | None = None
    # the data and the run
    pool_size: int | None = None
    n_val: int | None = None
    curve: bool = False
    curve_role: str | None = None  # "baseline": a point of an adaptive run's baseline curve
    features_cached: bool = False
    cache_prefix: str | None = None
    cache_source: str | None = None
    train_loop: str | None = None
    engine_reason: str | None = None  # why no faster engine trained it (None: the fastest did)
    solver: str | None = None  # a linear probe's peft.solver: sgd | lbfgs | ridge
    compiled: bool = False
    resumed_from: str | None = None
    caulk_version: str | None = None
    torch_version: str | None = None
    torch_threads: int | None = None  # caulk.threads: this process's share of the CPUs
    omp_wait_policy: str | None = None  # OMP_WAIT_POLICY as the process ran ("default": unset)
    host: str | None = None
    output_dir: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    # the outcome
    status: str = "running"
    message: str = ""
    traceback: str | None = None
    diverged_at_step: int | None = None
    test_error: float | None = None
    test_loss: float | None = None
    val_error: float | None = None
    n_test: int | None = None
    # which test rows it got right (caulk.outcomes: "<rows>:<base64>") and the test split's name
    test_correct: str | None = None
    test_set: str | None = None
    n_train_seen: int | None = None
    train_samples_per_epoch: int | None = None
    global_steps: int | None = None
    epochs: int | None = None
    step_budget: int | None = None  # budget.mode=epochs: this point's trainer.max_steps
    best_step: int | None = None  # budget.early_stop: the step of the restored, tested state
    adapter_file: str | None = None
    # solver: {"lambda", "selection": holdout|loo|fixed (+ "reason"), "lambda_at_edge": low|high|
    # None}; tune: the chosen values (and the solver's)
    selected: dict[str, Any] | None = None
    # solver: [{"lambda", "val_error" (holdout) or "loo_error" (loo, fixed: None)}], λ ascending;
    # tune: [{"values", "val_error", "status"}]
    candidates: list[dict[str, Any]] | None = None
    # tune (caulk.tune): the policy on a tuned point; on a candidate's own record, which one it is
    tune: dict[str, Any] | None = None
    tune_candidate: str | None = None  # e.g. "c2" or "c2_f0" (a fold); not a point of any curve
    wall_time_s: float | None = None

    def update(self, **fields: Any) -> None:
        """Set several fields at once (a name that is no field is an error)."""
        for name, value in fields.items():
            if name not in _FIELD_NAMES:
                raise AttributeError(f"Record has no field {name!r}")
            setattr(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON object it is written as: a point that is not ok has no metrics,
        and the traceback and adapter file appear only when there is one."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # no deep copy
        dropped = set(_METRICS) if self.status != "ok" else set()
        dropped |= {k for k in _OPTIONAL if record[k] is None}
        return {k: v for k, v in record.items() if k not in dropped}

    def write(self, point_dir: str | Path) -> Path:
        """Write ``<point_dir>/record.json`` atomically."""
        return write_json_atomic(Path(point_dir) / RECORD_NAME, self.to_dict())


_FIELD_NAMES = {f.name for f in dataclasses.fields(Record)}


class RecordShapeError(ValueError):
    """A record.json that is JSON but not a record (wrong types, not an object)."""


def _accepts(kind: Any, value: Any) -> bool:
    if kind is Any:
        return True
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return any(_accepts(k, value) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    origin = typing.get_origin(kind) or kind
    if origin is float:
        return is_number(value)
    if origin is int:
        return is_int(value)
    return isinstance(value, origin)


_FIELD_TYPES = typing.get_type_hints(Record)


def check_record(record: Any) -> dict[str, Any]:
    """``record`` if it is a JSON object whose known fields have ``Record``'s types; else raise
    RecordShapeError naming the first bad field. Fields it does not know are left alone."""
    if not isinstance(record, dict):
        raise RecordShapeError(f"a record is a JSON object, not {type(record).__name__}")
    for key, value in record.items():
        kind = _FIELD_TYPES.get(key)
        if kind is not None and not _accepts(kind, value):
            raise RecordShapeError(f"field {key!r} has the wrong type: {value!r}")
    return record


#: the ``train_loop`` values records wrote before every engine had one name
LEGACY_TRAIN_LOOPS = {
    "fast": "cached",
    "fast_batched": "batched_heads",
    "solver_lbfgs": "solver",
    "solver_ridge": "solver",
}


def record_row(record: dict[str, Any]) -> dict[str, Any]:
    """The scalar fields of a checked record, as one row of the analysis table; a tuned point's
    protocol comes along as ``tune_policy``, ``tune_validation`` and one ``selected.<key>`` column
    per chosen value (a solver's λ: ``selected.lambda``). An old ``train_loop`` value is
    read as its engine's name (``LEGACY_TRAIN_LOOPS``)."""
    row = {
        k: v
        for k, v in check_record(record).items()
        if k not in _NESTED and not isinstance(v, (dict, list))
    }
    if row.get("train_loop") in LEGACY_TRAIN_LOOPS:
        row["train_loop"] = LEGACY_TRAIN_LOOPS[row["train_loop"]]
    tune, selected = record.get("tune"), record.get("selected")
    if isinstance(tune, dict):
        row["tune_policy"], row["tune_validation"] = tune.get("policy"), tune.get("validation")
    if isinstance(selected, dict):
        row.update(
            {f"selected.{k}": v for k, v in selected.items() if not isinstance(v, (dict, list))}
        )
    if isinstance(record.get("curve_keys"), list):  # theory records name the keys of their curve
        row["curve_keys"] = ",".join(record["curve_keys"])
    return row


def read_record(path: str | Path) -> dict[str, Any]:
    """The JSON object in a record file."""
    return json.loads(Path(path).read_text())


#: what an ok point must say to be a point of a curve
_OK_ESSENTIALS = ("n",)


def _theory_own_fields(record: dict[str, Any]) -> set[str]:
    """The fields a theory record (one with ``curve_keys``) writes on its own terms: its curve's
    keys and ``curve``, the curve's label (a training record's ``curve`` is a flag)."""
    keys = record["curve_keys"]
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise RecordShapeError(f"field 'curve_keys' must be a list of names, got {keys!r}")
    return {"curve", *keys}


def check_read_record(record: Any) -> dict[str, Any]:
    """``check_record`` for a record read back, training or theory: it must also say its
    ``status``, and an ok one its ``n``. Raises RecordShapeError with the first problem."""
    if isinstance(record, dict) and "curve_keys" in record:
        own = _theory_own_fields(record)
        check_record({k: v for k, v in record.items() if k not in own})
    else:
        check_record(record)
    if "status" not in record:
        raise RecordShapeError("no 'status' field")
    missing = [k for k in _OK_ESSENTIALS if record["status"] == "ok" and record.get(k) is None]
    if missing:
        raise RecordShapeError(f"an ok record needs {', '.join(missing)}")
    return record


def read_record_row(path: str | Path) -> dict[str, Any]:
    """The checked scalar row (``record_row``) of the record file at ``path``, theory records
    included. Raises OSError, ValueError (not JSON) or RecordShapeError (not a record)."""
    record = check_read_record(read_record(path))
    if "curve_keys" not in record:
        return record_row(record)
    own = _theory_own_fields(record)
    row = record_row({k: v for k, v in record.items() if k not in own})
    scalar_own = {k for k in own if k in record and not isinstance(record[k], (dict, list))}
    return {k: row.get(k, record[k]) for k in record if k in row or k in scalar_own}


def format_summary(record: dict[str, Any]) -> str:
    """A short human-readable summary of a record."""
    frac = 100.0 * record["trainable_params"] / max(1, record["total_params"])
    knob = f" {record['peft_knob']}={record['peft_knob_value']}" if record.get("peft_knob") else ""
    val = record.get("val_error")
    lines = [
        "caulk run summary",
        f"  model       {record['model']} ({record['backbone_tag']}, weights={record['weights']})",
        f"  peft        {record['peft']}{knob}: {record['trainable_params']:,} trainable / "
        f"{record['total_params']:,} total params ({frac:.2f}%)",
        f"  data        {record['data']}: n={record['n']} (pool {record['pool_size']}, "
        f"val {record['n_val']}, test {record['n_test']}), seed {record['seed']}",
        f"  test error  {record['test_error']:.4f}  (test loss {record['test_loss']:.4f}"
        + (f", val error {val:.4f})" if val is not None else ")"),
        f"  wall time   {record['wall_time_s']:.1f} s",
        f"  record      {Path(record['output_dir']) / RECORD_NAME}",
    ]
    return "\n".join(lines)


def format_curve_summary(records: list[dict[str, Any]]) -> str:
    """A table of a curve's points: mean test error (and spread over seeds) per n."""
    first = records[0]
    lines = [
        f"caulk curve summary: {first['model']} + {first['peft']} on {first['data']} "
        f"({first['trainable_params']:,} trainable / {first['total_params']:,} params)",
        f"  {'n':>7}  {'seeds':>5}  {'test error':>10}  {'min':>7}  {'max':>7}",
    ]
    for n in sorted({r["n"] for r in records}):
        errs = [r["test_error"] for r in records if r["n"] == n]
        lines.append(
            f"  {n:7d}  {len(errs):5d}  {sum(errs) / len(errs):10.4f}  {min(errs):7.4f}  {max(errs):7.4f}"
        )
    lines.append(f"  records under {Path(first['output_dir']).parent}")
    return "\n".join(lines)
