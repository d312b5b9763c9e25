"""Scoring internals that trade Python loops for bulk work: each must equal the plain computation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from healthscore.scoring.history import top_attribution
from healthscore.scoring.inputs import category_codes, positions_in, string_column
from healthscore.scoring.pyobjects import records_builder, tenths_floats

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


def test_records_builder_with_and_without_identifier_keys() -> None:
    cols = ([1.0, None], [2.0, 3.0])
    assert records_builder(("a", "b_2"))(*cols) == [{"a": 1.0, "b_2": 2.0}, {"a": None, "b_2": 3.0}]
    assert records_builder(("a b", "C"))(*cols) == [{"a b": 1.0, "C": 2.0}, {"a b": None, "C": 3.0}]


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
