"""The model-vs-oracle bench's own figures: the AUC interval and the 'small sample' call, on tiny arrays."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "bench_model_vs_oracle.py"
_spec = importlib.util.spec_from_file_location("bench_model_vs_oracle", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_auc_interval_is_hanley_mcneil() -> None:
    # By hand: AUC 0.8, 50 + 50: Q1 = 0.8/1.2, Q2 = 1.28/1.8, var = (0.16 + 49(Q1-.64) + 49(Q2-.64)) / 2500.
    se = np.sqrt((0.16 + 49 * (0.8 / 1.2 - 0.64) + 49 * (1.28 / 1.8 - 0.64)) / 2500)
    lo, hi = bench.auc_interval(0.8, 50, 50)
    assert (lo, hi) == pytest.approx((0.8 - 1.959964 * se, 0.8 + 1.959964 * se))
    assert bench.auc_interval(0.99, 3, 3)[1] == 1.0  # clipped to [0, 1]
    assert bench.auc_interval(None, 5, 5) is None
    assert bench.auc_interval(0.7, 0, 5) is None


def test_figures_call_a_small_sample_small_and_a_large_one_not() -> None:
    y = np.array([1, 0, 0, 1, 0, 0, 0, 0])
    risk = np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.4, np.nan, 0.5])  # the missing risk is left out
    f = bench.figures(y, risk)
    assert (f["n"], f["positives"], f["auc"], f["recall"]) == (7, 2, 1.0, 1.0)
    assert f["small"]

    rng = np.random.default_rng(0)
    y = (rng.random(6000) < 0.3).astype(int)
    f = bench.figures(y, y + rng.normal(0, 1.0, y.size))
    assert f["recall_ci"][0] < f["recall"] < f["recall_ci"][1]
    assert not f["small"]
    assert bench.figures(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3]))["small"]  # one class: undefined
