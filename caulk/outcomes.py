"""Per-example test outcomes in a record: which test rows a point got right, compactly.

A record's ``test_correct`` is ``"<rows>:<base64 of the packed bits>"`` (row i's bit is 1 when
the point predicted it right, rows in the test split's order, which every engine evaluates in),
about 80 characters for 450 rows. ``test_set`` names the test split by a digest of its labels
in that order, so the analysis knows which points share their test rows: it resamples those
rows (a bootstrap of the test set, the same resample for every curve on that test set) to put
the test set's own sampling error into the intervals, paired between curves that share it.
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np


def encode_outcomes(correct) -> str:
    """``"<rows>:<base64>"`` of a boolean vector (1 = predicted right)."""
    bits = np.asarray(correct, bool).ravel()
    return f"{len(bits)}:{base64.b64encode(np.packbits(bits).tobytes()).decode('ascii')}"


def decode_outcomes(text: str) -> np.ndarray:
    """The boolean vector of :func:`encode_outcomes`' string; ValueError for a malformed one."""
    rows, _, payload = str(text).partition(":")
    if not rows.isdigit() or not payload:
        raise ValueError(f"test_correct must look like '<rows>:<base64>', got {text[:40]!r}")
    packed = np.frombuffer(base64.b64decode(payload, validate=True), np.uint8)
    bits = np.unpackbits(packed)[: int(rows)].astype(bool)
    if len(bits) != int(rows):
        raise ValueError(f"test_correct holds {len(bits)} rows, its header says {rows}")
    return bits


def split_digest(labels) -> str:
    """A short name of a test split: the SHA-1 of its labels in order (12 hex digits)."""
    data = np.ascontiguousarray(np.asarray(labels, np.int64)).tobytes()
    return hashlib.sha1(data).hexdigest()[:12]
