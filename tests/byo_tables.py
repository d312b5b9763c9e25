"""Synthetic "bring your own" tables with known true drivers, for the BYO tests and bench/bench_byo.py.

Two generators share one set of columns (so one mapping serves both) but differ in what drives churn:

- ``usage``: adoption drives churn (active users, logins, feature breadth), close to what the packaged
  model's weights assume;
- ``friction``: support and billing friction drive churn (open tickets, days past due, failed payments),
  which the packaged weights barely look at (mid_market: support 0%, financial 5%).

In both, every signal is a noisy view of one latent account health, so every signal correlates with churn;
only the true drivers enter the churn log-odds, each through a monotone non-linear response (saturation,
thresholds), plus an unobserved shock. Signal columns have missing values and names the packaged model does
not know; one column is pure noise. Each row is an account at a month end; the outcome is churn in the
following quarter.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MAPPING: dict[str, dict[str, Any]] = {
    "Active Users %": {"dimension": "usage", "direction": 1},
    "logins_per_week": {"dimension": "usage", "direction": 1},
    "feature_breadth": {"dimension": "usage", "direction": 1},
    "page_views": {"dimension": "usage", "direction": 1},
    "csm_meetings_q": {"dimension": "engagement", "direction": 1},
    "nps": {"dimension": "relationship", "direction": 1},
    "open_tickets": {"dimension": "support", "direction": -1},
    "days_past_due": {"dimension": "financial", "direction": -1},
    "payment_ok": {"dimension": "financial", "direction": 1},
}
SEGMENT_SHARE = {"enterprise": 0.15, "mid_market": 0.35, "smb": 0.50}
SEGMENT_OFFSET = {"enterprise": -0.5, "mid_market": 0.0, "smb": 0.3}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_table(
    drivers: str = "friction",
    *,
    accounts: int = 600,
    dates: int = 4,
    seed: int = 0,
    missing: float = 0.05,
    segments: bool = True,
) -> pd.DataFrame:
    """One row per account and month end; ``churned_next_q`` is the 0/1 outcome."""
    if drivers not in ("usage", "friction"):
        raise ValueError(f"unknown drivers {drivers!r}")
    rng = np.random.default_rng([seed, 0 if drivers == "usage" else 1])
    seg_names = np.array(list(SEGMENT_SHARE))
    seg = rng.choice(seg_names, size=accounts, p=list(SEGMENT_SHARE.values()))
    account_health = rng.normal(0, 1, accounts)
    tenure0 = rng.integers(0, 900, accounts)
    month_ends = pd.date_range("2025-01-31", periods=dates, freq="ME")
    rows = []
    for t, day in enumerate(month_ends):
        z = 0.8 * account_health + 0.6 * rng.normal(0, 1, accounts)
        n = accounts
        active = 100 * _sigmoid(0.2 + 1.0 * z + rng.normal(0, 0.6, n))
        logins = np.exp(1.1 + 0.45 * z + rng.normal(0, 0.45, n))
        breadth = np.clip(35 + 12 * z + rng.normal(0, 10, n), 0, 100)
        page_views = np.round(np.exp(rng.normal(5, 1, n)))
        meetings = rng.poisson(np.exp(0.8 + 0.25 * z))
        nps = np.clip(np.round(7 + 1.3 * z + rng.normal(0, 1.6, n)), 0, 10)
        tickets = rng.poisson(np.exp(0.6 - 0.55 * z + rng.normal(0, 0.3, n)))
        late = rng.random(n) < _sigmoid(-1.6 - 1.0 * z)
        dpd = np.where(late, np.round(rng.exponential(28, n)), 0.0)
        payment_ok = (rng.random(n) > _sigmoid(-2.2 - 0.9 * z)).astype(float)
        offset = np.array([SEGMENT_OFFSET[s] for s in seg])
        if drivers == "usage":
            logit = (
                -1.7
                - 1.6 * np.tanh((active - 45) / 18)
                - 0.7 * np.log1p(logins)
                - 0.5 * np.minimum(breadth, 50) / 25
                - 0.15 * (nps - 7)
            )
        else:
            logit = (
                -2.4
                + 0.55 * np.minimum(tickets, 5)
                + 1.3 * (dpd > 30)
                + 0.02 * np.minimum(dpd, 60)
                + 1.4 * (payment_ok == 0)
                - 0.15 * (nps - 7)
            )
            # Enterprise renewals hinge on the relationship too (a per-segment driver).
            logit = logit - np.where(seg == "enterprise", 0.35 * (nps - 7), 0.0)
        logit = logit + offset + rng.normal(0, 0.5, n)
        churned = (rng.random(n) < _sigmoid(logit)).astype(int)
        frame = pd.DataFrame(
            {
                "account_id": [f"acct-{i:05d}" for i in range(n)],
                "as_of_date": day.date().isoformat(),
                "segment": seg,
                "lifecycle_stage": np.where(
                    tenure0 + 30 * t < 90,
                    "onboarding",
                    np.where(tenure0 + 30 * t < 365, "adoption", "maturity"),
                ),
                "Active Users %": np.round(active, 1),
                "logins_per_week": np.round(logins, 2),
                "feature_breadth": np.round(breadth, 1),
                "page_views": page_views,
                "csm_meetings_q": meetings.astype(float),
                "nps": nps,
                "open_tickets": tickets.astype(float),
                "days_past_due": dpd,
                "payment_ok": payment_ok,
                "churned_next_q": churned,
            }
        )
        rows.append(frame)
    table = pd.concat(rows, ignore_index=True)
    signal_cols = list(MAPPING)
    if missing > 0:
        holes = rng.random((len(table), len(signal_cols))) < missing
        for j, col in enumerate(signal_cols):
            table.loc[holes[:, j], col] = np.nan
    if not segments:
        table = table.drop(columns=["segment"])
    return table


FEATURES = list(MAPPING)
OUTCOME = "churned_next_q"
