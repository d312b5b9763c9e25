"""Scoring internals that trade Python loops for bulk work: each must equal the plain computation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from healthscore.scoring.history import top_attribution
from healthscore.scoring.inputs import category_codes, positions_in, string_column
from healthscore.scoring.pyobjects import records, tenths_columns, tenths_floats

DIMS = ("usage", "engagement", "relationship", "support", "value", "financial")


def _plain_floats(values: np.ndarray) -> list[Any]:
    return [None if np.isnan(v) else v for v in values.tolist()]


@pytest.mark.parametrize(
    "tenths",
    [
        np.array([0.0, 1000.0, 745.0, np.nan, 745.0, 1.0]),
        np.array([-0.0, -3.0, 3.0, 0.0]),  # -0.0 becomes 0.0
        np.array([np.nan, np.nan]),
        np.array([], dtype=float),
        np.array([np.inf, 5.0, np.nan]),  # not tabulable: plain conversion
        np.array([-1e12, 1e12, 7.0]),  # range too wide for a table
    ],
)
def test_tenths_floats_equals_the_plain_conversion(tenths: np.ndarray) -> None:
    got = tenths_floats(tenths)
    want = _plain_floats(tenths / 10.0 + 0.0)
    assert repr(got) == repr(want)  # repr: bit-exact values, sign of zero, None placement


def test_tenths_floats_shares_one_object_per_value() -> None:
    tenths = np.floor(np.random.default_rng(0).uniform(0, 100, 10_000) * 10.0 + 0.5)
    got = tenths_floats(tenths)
    assert len({id(v) for v in got}) == len(set(got)) <= 1001


def test_records_pairs_keys_with_columns_row_by_row() -> None:
    cols = ([1.0, None], [2.0, 3.0])
    assert records(("a", "b_2"), cols) == [{"a": 1.0, "b_2": 2.0}, {"a": None, "b_2": 3.0}]
    assert records(("a b", "C"), cols) == [{"a b": 1.0, "C": 2.0}, {"a b": None, "C": 3.0}]
    assert records(("a",), ([],)) == []
    with pytest.raises(ValueError, match="2 keys for 1 columns"):
        records(("a", "b"), ([1.0],))
    with pytest.raises(ValueError):  # columns of unequal length
        records(("a", "b"), ([1.0], [2.0, 3.0]))


def _factorized_positions(keys: pd.Series, values: pd.Series) -> np.ndarray:
    codes, _ = pd.factorize(pd.concat([keys.astype(object), values.astype(object)], ignore_index=True))
    pos = codes[len(keys) :].astype(np.intp)
    pos[pos >= len(keys)] = -1
    return pos


@pytest.mark.parametrize("dtype", ["str", object, "string"])
def test_positions_in_arrow_and_generic_paths_agree(dtype: Any) -> None:
    keys = pd.Series(["a", "b", "c"], dtype=dtype)
    chunks = [pd.Series(["c", None, "zz"], dtype=dtype), pd.Series(["a", "a", "b"], dtype=dtype)]
    values = pd.concat(chunks, ignore_index=True)  # two Arrow chunks for "str"
    got = positions_in(keys, values)
    assert got.dtype == np.intp
    assert got.tolist() == _factorized_positions(keys, values).tolist() == [2, -1, -1, 0, 0, 1]


@pytest.mark.parametrize("dtype", ["str", object, "string"])
def test_category_codes_flags_unknown_values_but_not_nulls(dtype: Any) -> None:
    values = pd.Series(["maturity", None, "bogus", "onboarding"], dtype=dtype)
    codes, unknown = category_codes(values, ["onboarding", "adoption", "maturity"], missing=9)
    assert codes.tolist() == [2, 9, 9, 0]
    assert unknown.tolist() == [False, False, True, False]


def test_string_column_equals_pandas_str_conversion() -> None:
    values = np.array([None, "insufficient data: 40%", None, "segment missing"], dtype=object)
    pd.testing.assert_series_equal(string_column(values), pd.Series(values, dtype="str"), check_exact=True)


def _attribution_per_row(deltas: np.ndarray, valid: np.ndarray, top: int) -> list[Any]:
    """The straightforward per-row definition: top |delta| (rounded to 0.1), zeros dropped, stable."""
    out: list[Any] = []
    for row, ok in zip(deltas, valid, strict=True):
        if not ok:
            out.append(None)
            continue
        rounded = np.round(row, 1) + 0.0
        order = np.argsort(-np.abs(rounded), kind="stable")[:top]
        out.append([{"dimension": DIMS[j], "delta": float(rounded[j])} for j in order if rounded[j] != 0.0])
    return out


def test_top_attribution_matches_the_per_row_definition() -> None:
    rng = np.random.default_rng(3)
    deltas = rng.normal(0, 4, (2_000, len(DIMS)))
    deltas[rng.random(deltas.shape) < 0.4] = 0.0  # many zero deltas: lists of 0..3 entries
    deltas[rng.random(deltas.shape) < 0.1] = -0.04  # rounds to -0.0
    deltas[:50] = np.round(deltas[:50])  # ties in |delta|
    valid = rng.random(len(deltas)) < 0.9
    got = top_attribution(deltas, valid, DIMS, 3)
    want = _attribution_per_row(deltas, valid, 3)
    assert repr(got.tolist()) == repr(want)
    assert {len(x) for x in got if x is not None} == {0, 1, 2, 3}
    assert {type(e["delta"]) for x in got if x for e in x} == {float}


@pytest.mark.parametrize(
    "tenths",
    [
        np.array([[0.0, 1000.0, np.nan], [745.0, -0.0, 3.0], [np.nan, np.nan, 1.0]]),
        np.full((3, 2), np.nan),
        np.empty((0, 4)),
        np.empty((5, 0)),
        np.array([[np.inf, 5.0], [np.nan, 1.0]]),  # not tabulable: per-column conversion
        np.array([[-1e12, 7.0], [1e12, 8.0]]),  # range too wide for a table
    ],
)
def test_tenths_columns_equals_tenths_floats_per_column(tenths: np.ndarray) -> None:
    got = tenths_columns(tenths)
    want = [tenths_floats(tenths[:, j]) for j in range(tenths.shape[1])]
    assert repr(got) == repr(want)
    assert all(type(col) is list for col in got)


@pytest.mark.parametrize(
    "scale",
    [
        pytest.param(4.0, id="shared-table"),
        pytest.param(1e12, id="too-wide-for-a-table"),
    ],
)
def test_top_attribution_with_wide_or_infinite_deltas_matches_the_definition(scale: float) -> None:
    rng = np.random.default_rng(8)
    deltas = rng.normal(0, scale, (500, len(DIMS)))
    deltas[rng.random(deltas.shape) < 0.3] = 0.0
    deltas[7, 2] = np.inf  # non-finite: no table either
    deltas[9, 4] = -np.inf
    valid = rng.random(len(deltas)) < 0.9
    valid[[7, 9]] = True
    got = top_attribution(deltas, valid, DIMS, 3)
    assert repr(got.tolist()) == repr(_attribution_per_row(deltas, valid, 3))


def test_top_attribution_shares_equal_entries_but_never_lists() -> None:
    deltas = np.array([[2.0, -1.0, 0.0, 0.0, 0.0, 0.5]] * 3 + [[2.04, 0.0, 0.0, 0.0, 0.0, 0.0]])
    got = top_attribution(deltas, np.ones(4, dtype=bool), DIMS, 3)
    assert got[0] == [
        {"dimension": "usage", "delta": 2.0},
        {"dimension": "engagement", "delta": -1.0},
        {"dimension": "financial", "delta": 0.5},
    ]
    assert len({id(row) for row in got}) == 4  # one list per row: appending to one leaves the rest
    assert got[0][0] is got[1][0] is got[2][0] is got[3][0]  # 2.04 rounds to the same entry as 2.0
    assert got[0][1] is got[1][1] and got[0][2] is got[2][2]


def test_top_attribution_keeps_arbitrary_kept_patterns() -> None:
    """NaN deltas (never produced by the engine) sort last yet are kept, after dropped zeros: the
    grouping must not assume the kept entries are a prefix. NaN reads as None, as it always has."""
    deltas = np.array([[3.0, 0.0, np.nan, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    got = top_attribution(deltas, np.ones(2, dtype=bool), DIMS, len(DIMS))  # picks: 3, 0, 0, 0, 0, NaN
    assert got.tolist() == [
        [{"dimension": "usage", "delta": 3.0}, {"dimension": "relationship", "delta": None}],
        [],
    ]
