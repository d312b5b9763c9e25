"""Python objects for the output's dict and list columns, built in bulk.

A million accounts mean millions of small dicts (attribution lists; the archive's dimension-score and
contribution dicts, which ``breakdown_dicts`` builds from the output's flat columns). Their
cost is allocation: CPython object creation and the fresh memory it touches, not arithmetic. So the
builders here avoid a Python call per row (comprehensions over columns instead) and share one float
object per distinct stored value (values are rounded to 0.1 in a narrow range) instead of allocating
one per cell: fewer objects, and fewer fresh memory pages to fault in.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import Any

import numpy as np

_MAX_SHARED = 1 << 20  # distinct tenths a shared-float table may span (0..100 needs 1,001)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Building millions of small dicts triggers the cyclic GC over and over; none of them form cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def tenths_floats(tenths: np.ndarray) -> list[Any]:
    """``(tenths / 10 + 0.0).tolist()`` with None for NaN, where equal values share one float object.

    ``tenths`` holds integer-valued floats: values rounded to 0.1 times ten, as rounding computes them
    before its final division (``floor(x * 10 + 0.5)`` half-up, ``rint(x * 10)`` for ``np.round``).
    Stored values span about a thousand tenths, so a million cells gather their objects from a small
    table instead of allocating 32 bytes each; each entry is computed exactly like the value it stands
    for, so the result is bit for bit the plain one. ``+ 0.0`` turns -0.0 into 0.0.
    """
    missing = np.isnan(tenths)
    if missing.all():
        return [None] * tenths.size
    lo, hi = np.nanmin(tenths), np.nanmax(tenths)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo >= _MAX_SHARED:
        out = (tenths / 10.0 + 0.0).tolist()
        for i in np.flatnonzero(missing).tolist():  # JSON has no NaN
            out[i] = None
        return out
    objects = np.array([*(np.arange(lo, hi + 1.0) / 10.0 + 0.0).tolist(), None], dtype=object)
    index = np.subtract(tenths, lo)  # exact: integers well within float precision
    index[missing] = objects.size - 1
    return objects[index.astype(np.intp)].tolist()


def tenths_columns(tenths: np.ndarray) -> list[list[Any]]:
    """``[tenths_floats(tenths[:, j]) for j in range(tenths.shape[1])]`` for an (n, c) array, in one pass.

    One shared-float table for the whole matrix and one gather of its transpose (whose ``tolist``
    yields the c column lists): a per-column call repeats the min/max scans, the table and the gather
    setup c times. Values are bit for bit ``tenths_floats``' (each table entry is computed exactly like
    the value it stands for, whichever table holds it).
    """
    n, c = tenths.shape
    missing = np.isnan(tenths)
    if n == 0 or c == 0 or missing.all():
        return [[None] * n for _ in range(c)]
    lo, hi = np.nanmin(tenths), np.nanmax(tenths)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo >= _MAX_SHARED:
        return [tenths_floats(tenths[:, j]) for j in range(c)]
    objects = np.array([*(np.arange(lo, hi + 1.0) / 10.0 + 0.0).tolist(), None], dtype=object)
    index = np.subtract(tenths.T, lo)  # (c, n); exact: integers well within float precision
    index[missing.T] = objects.size - 1
    return objects[index.astype(np.intp)].tolist()


def records(keys: tuple[str, ...], columns: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """``[{keys[0]: columns[0][i], ...} for each row i]``, with ``map`` so no Python frame runs per row.

    Plain code on purpose: an ``eval``-generated dict display was ~2-3x faster on 300k rows x 6 keys,
    but this runs only where the archive's dict columns are built (not in ``score_accounts``, which
    bench/bench_scoring.py times), where it costs about a second per million rows."""
    if len(keys) != len(columns):
        raise ValueError(f"{len(keys)} keys for {len(columns)} columns")
    return list(map(dict, map(zip, repeat(keys), zip(*columns, strict=True))))


def object_array(items: list[Any]) -> np.ndarray:
    """1-D object array holding ``items`` as they are (numpy would read equal-length lists as 2-D)."""
    return np.fromiter(items, dtype=object, count=len(items))
