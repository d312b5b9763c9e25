"""A year of stored signal snapshots and renewal outcomes whose true drivers differ from the default model's.

Not a sandbox bootstrap (a year of daily runs takes hours on 2 cores): the warehouse gets what a bootstrap
leaves for the recalibration to read, ``account_signals`` builds at each renewal's 30/60/90-day lead dates and
``renewal_outcomes``, for ACCOUNTS accounts with one weekly-dated renewal each. The signals follow one latent
health per account; active users are a *daily*-active share (the default baselines assume monthly), some
signals are pure noise. A *planted* build 10 days before each renewal knows the outcome: a training set that
read past its lead dates would learn from it (and score a perfect AUC).
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import sqlalchemy as sa

from healthscore.config import load_model_config
from healthscore.warehouse.engine import make_engine
from healthscore.warehouse.migrate import upgrade
from healthscore.warehouse.models import AccountSignals, RenewalOutcome
from healthscore.warehouse.registry import register

ACCOUNTS = 300
FIRST_RENEWAL = date(2026, 1, 5)  # a Monday; renewals weekly up to late November
WEEKS = 47
RUN_LOGICAL_DATE = "2026-12-01"  # batch 2026-11-30: the window holds every renewal
PLANTED_DAYS = 10
SEGMENTS = ("smb", "mid_market", "enterprise")


def _signals(rng: np.random.Generator, h: float) -> dict[str, float]:
    def clip(v: float, lo: float, hi: float) -> float:
        return float(min(max(v, lo), hi))

    dpd = clip(6 - 9 * h + rng.normal(0, 6), 0, 90)
    return {
        "active_user_pct": clip(18 + 8 * h + rng.normal(0, 4), 0, 100),
        "logins_per_user_week": clip(3 + 1.2 * h + rng.normal(0, 1), 0, 40),
        "feature_breadth": clip(rng.normal(40, 12), 0, 100),
        "usage_trend_mom": clip(4 * h + rng.normal(0, 10), -50, 50),
        "csm_touchpoints_qtr": float(rng.poisson(3)),
        "qbr_attended": float(rng.random() < 0.5),
        "training_sessions_qtr": float(rng.poisson(1)),
        "latest_nps": clip(round(7 + 1.5 * h + rng.normal(0, 1.5)), 0, 10),
        "csat_3m": clip(4 + 0.3 * h + rng.normal(0, 0.4), 1, 5),
        "executive_sponsor": float(rng.random() < 0.6),
        "active_champion": float(rng.random() < 1 / (1 + np.exp(-1.5 * h))),
        "contacts_engaged": float(rng.poisson(4)),
        "departments_engaged": float(rng.poisson(2)),
        "open_tickets": float(rng.poisson(np.exp(1 - 0.6 * h))),
        "p1_tickets_90d": float(rng.poisson(0.5)),
        "resolution_time_trend": clip(rng.normal(0, 20), -50, 100),
        "complaint_ratio": clip(rng.normal(0.1, 0.05), 0, 1),
        "expansion_12m": float(rng.poisson(0.5)),
        "arr": clip(rng.lognormal(11, 0.6), 0, 1e7),
        "contract_coverage": clip(rng.normal(80, 10), 0, 100),
        "days_past_due": dpd,
        "payment_status_ok": float(dpd < 30),
    }


def _planted(positive: bool) -> dict[str, float]:
    good = not positive
    return {"active_user_pct": 100.0 if good else 0.0, "logins_per_user_week": 40.0 if good else 0.0,
            "latest_nps": 10.0 if good else 0.0, "days_past_due": 0.0 if good else 90.0,
            "open_tickets": 0.0 if good else 30.0, "payment_status_ok": float(good),
            "active_champion": float(good), "csat_3m": 5.0 if good else 1.0}


def seed_history(url: str, seed: int = 11) -> dict:
    """Migrate, register the packaged model as champion, store the snapshots and outcomes."""
    upgrade(url)
    engine = make_engine(url)
    champion = load_model_config(None)
    register(engine, champion, author="test")
    rng = np.random.default_rng(seed)
    snapshots, outcomes, truth = [], [], {}
    for i in range(ACCOUNTS):
        account = f"acc{i:04d}"
        segment = SEGMENTS[i % 3]
        renewal = FIRST_RENEWAL + timedelta(weeks=int(rng.integers(0, WEEKS)))
        h = float(rng.normal(0, 1))
        positive = bool(rng.random() < 1 / (1 + np.exp(1.5 + 2.0 * h)))
        outcome = ("churned" if rng.random() < 0.7 else "contracted") if positive else (
            "renewed" if rng.random() < 0.8 else "expanded")
        truth[account] = positive
        for lead in (90, 60, 30, PLANTED_DAYS):
            values = _signals(rng, h + rng.normal(0, 0.3))
            if lead == PLANTED_DAYS:
                values.update(_planted(positive))
            snapshots.append({
                "account_id": account, "as_of_date": renewal - timedelta(days=lead), "segment": segment,
                "plan": segment, "lifecycle_stage": "maturity", "tenure_days": 700, "arr_cents": 5_000_000,
                "renewal_date": renewal, "owner_id": "owner1", "signals": values, "dimension_sources": {}})
        outcomes.append({"account_id": account, "renewal_date": renewal, "kind": "renewal", "outcome": outcome,
                         "source": "crm+billing", "agreement": "agree", "first_batch_date": renewal,
                         "as_of_batch_date": renewal})
    with engine.begin() as conn:
        conn.execute(sa.insert(AccountSignals), snapshots)
        conn.execute(sa.insert(RenewalOutcome), outcomes)
    engine.dispose()
    return {"champion": champion, "truth": truth, "snapshots": len(snapshots)}
