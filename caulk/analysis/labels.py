"""Human-readable curve names and orders, shared by the figures and the report (no matplotlib).

A curve is one combination of the group keys; its label names only the keys that vary across the
sweep, model first: ``vit_pico · linear · m=4000``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

#: the order in which keys appear in a label; keys not listed follow in their own order
LABEL_ORDER = ("model", "peft", "peft_knob_value", "weights", "source_m", "data")
#: keys printed as their bare value; the others as ``key=value``
BARE_KEYS = {"model", "peft", "weights", "data", "curve_role"}
SEPARATOR = " · "


def key_text(value: Any) -> str:
    """A key value as text, the same for 4000, 4000.0 and "4000"; NaN/None/"" print as "-"."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return "-"
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    if isinstance(value, bool) or pd.isna(number):
        return str(value)
    return f"{number:g}" if abs(number) >= 1e6 or number != int(number) else str(int(number))


def sort_key(value: Any) -> tuple:
    """Numbers before text, numbers by size ("-" first: e.g. a hub model's missing source m)."""
    text = key_text(value)
    number = pd.to_numeric(pd.Series([text]), errors="coerce").iloc[0]
    if text == "-":
        return (0, 0.0, "")
    return (1, float(number), "") if pd.notna(number) else (2, 0.0, text)


def sort_values(values: Iterable[Any]) -> list[Any]:
    """Distinct values (by :func:`key_text`) in reading order: numbers by size, then text."""
    unique = {key_text(v): v for v in values}
    return sorted(unique.values(), key=sort_key)


def varying_keys(table: pd.DataFrame, keys: list[str]) -> list[str]:
    """The keys whose value differs between rows of ``table``, in :data:`LABEL_ORDER`.

    When none varies (one curve), the model (or else the first key) names it.
    """
    present = [k for k in keys if k in table]
    varying = [k for k in present if table[k].map(key_text).nunique() > 1]
    if not varying:
        varying = ["model"] if "model" in present else present[:1]
    rank = {k: i for i, k in enumerate(LABEL_ORDER)}
    return sorted(varying, key=lambda k: (rank.get(k, len(rank)), present.index(k)))


def value_text(key: str, value: Any, knob: str | None = None) -> str:
    """One key of a label: ``vit_pico``, ``m=4000``, ``r=8`` (the PEFT knob by its name)."""
    text = key_text(value)
    if key in BARE_KEYS:
        return text
    if key == "source_m":
        return f"m={text}"
    if key == "peft_knob_value":
        return f"{knob or 'knob'}={text}"
    return f"{key}={text}"


def curve_label(curve: Mapping[str, Any], shown: list[str]) -> str:
    """``vit_pico · linear · m=4000``: the ``shown`` keys of ``curve`` ("-" values left out)."""
    knob = curve.get("peft_knob")
    knob = None if knob is None or key_text(knob) == "-" else str(knob)
    parts = [
        value_text(k, curve[k], knob) for k in shown if k in curve and key_text(curve[k]) != "-"
    ]
    return SEPARATOR.join(parts) or "all"


def matching_rows(table: pd.DataFrame, curve: Mapping[str, Any], keys: list[str]) -> pd.DataFrame:
    """The rows of ``table`` (e.g. answers) whose ``keys`` equal the curve's, compared as text."""
    mask = pd.Series(True, index=table.index)
    for k in keys:
        if k in table and k in curve:
            mask &= table[k].map(key_text) == key_text(curve[k])
    return table[mask]


def size_order(table: pd.DataFrame) -> list[str]:
    """Model names by parameter count (``backbone_params``), smallest first; by name without it."""
    if "model" not in table:
        return []
    sub = table.drop_duplicates("model")
    if "backbone_params" in sub:
        sub = sub.assign(_p=pd.to_numeric(sub["backbone_params"], errors="coerce"))
        sub = sub.sort_values(["_p", "model"], na_position="last")
    else:
        sub = sub.sort_values("model")
    return [key_text(m) for m in sub["model"]]


def in_curve_order(
    table: pd.DataFrame, keys: list[str], sizes: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The rows of ``table`` (one or more per curve) with models by parameter count (taken from
    ``sizes``, e.g. the fits, when ``table`` has none), then by the other ``keys`` in label
    order, their values in reading order (numbers by size)."""
    if table.empty:
        return table
    rank = {m: i for i, m in enumerate(size_order(table if sizes is None else sizes))}
    label_rank = {k: i for i, k in enumerate(LABEL_ORDER)}
    present = sorted(
        (k for k in keys if k in table), key=lambda k: label_rank.get(k, len(label_rank))
    )

    def position(i: int) -> tuple:
        return tuple(
            (rank.get(key_text(table[k].iloc[i]), len(rank)), 0.0, "")
            if k == "model"
            else sort_key(table[k].iloc[i])
            for k in present
        )

    return table.iloc[sorted(range(len(table)), key=position)]
