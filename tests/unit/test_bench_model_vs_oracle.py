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


def test_goal_verdicts_need_the_whole_ratio_interval_on_one_side() -> None:
    assert bench.verdict((0.96, 1.10), 0.95).startswith("MET")
    assert bench.verdict((0.70, 0.94), 0.95).startswith("MISSED")
    assert bench.verdict((0.80, 1.02), 0.95).startswith("not distinguishable")
    assert bench.verdict(None, 0.95) == "n/a"


def test_ratio_interval_covers_the_ratio_and_narrows_with_the_sample() -> None:
    rng = np.random.default_rng(3)
    widths = []
    for n in (80, 2000):
        y = (rng.random(n) < 0.3).astype(int)
        oracle = y + rng.normal(0, 0.6, n)
        model = y + rng.normal(0, 1.2, n)
        r = bench.ratio_interval(y, model, oracle, draws=300)
        point = bench.figures(y, model)["auc"] / bench.figures(y, oracle)["auc"]
        lo, hi = r["auc_ratio"]
        assert lo < point < hi and hi < 1.0 + 0.05 * (n == 80)  # the oracle is the better ranker
        assert r["recall_ratio"][0] < r["recall_ratio"][1]
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2


def test_time_cutoff_leaves_the_later_share_of_60_day_renewals_after_it() -> None:
    from datetime import date, timedelta

    import pandas as pd

    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(10)]
    rows = pd.DataFrame({"outcome_date": days * 2, "horizon_days": [60] * 10 + [30] * 10})
    cut = bench.time_cutoff(rows, later_share=0.4)
    assert cut == days[5] and sum(d > cut for d in days) == 4  # the 30-day rows do not count
