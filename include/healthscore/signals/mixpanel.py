"""Mixpanel signals: usage (from daily company aggregates; licensed seats from HubSpot), NPS, and the
in-app surveys' share of csat_3m. Pure functions of frames.

Product windows are whole event days ending on the batch's last event day. A "covered" day is an event
day some batch landed (``usage.attrs["covered_days"]``); an account without a row on a covered day had no
activity that day.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta

import numpy as np
import pandas as pd

from healthscore.signals.common import (
    LOGIN_WINDOW_DAYS,
    MIN_TREND_COVERED_DAYS,
    MIN_USAGE_COVERED_DAYS,
    QUARTER_DAYS,
    USAGE_WINDOW_DAYS,
    PointInTime,
    Signals,
)

USAGE_SIGNALS = ("active_user_pct", "logins_per_user_week", "feature_breadth", "usage_trend_mom", "contract_coverage")


def usage_signals(usage: pd.DataFrame | None, licensed_seats: pd.Series, index: pd.Index, pit: PointInTime,
                  feature_events: Sequence[str]) -> Signals:
    """active_user_pct, logins_per_user_week, feature_breadth, usage_trend_mom, contract_coverage.

    ``licensed_seats`` is aligned with ``index`` (the accounts frame's column).
    """
    covered = pd.Index(usage.attrs.get("covered_days", []) if usage is not None else [])
    if usage is None or covered.empty:
        return {n: pd.Series(np.nan, index=index) for n in USAGE_SIGNALS}
    last = pit.last_event_day

    def window(days: int, offset: int = 0) -> tuple[pd.DataFrame, int]:
        hi = last - timedelta(days=offset)
        lo = hi - timedelta(days=days - 1)
        rows = usage[(usage["event_date"] >= lo) & (usage["event_date"] <= hi) & usage["company_id"].isin(index)]
        return rows, int(((covered >= lo) & (covered <= hi)).sum())

    def total(rows: pd.DataFrame, column: str) -> pd.Series:
        return rows.groupby("company_id", sort=True)[column].sum().reindex(index, fill_value=0).astype(float)

    seats = pd.Series(licensed_seats.astype("Float64").to_numpy(dtype=float, na_value=np.nan), index=index)
    seats = seats.where(seats > 0)
    recent, n_recent = window(USAGE_WINDOW_DAYS)
    enough = n_recent >= MIN_USAGE_COVERED_DAYS
    nan = pd.Series(np.nan, index=index)
    dau = total(recent, "active_users") / n_recent if enough else nan
    peak = recent.groupby("company_id", sort=True)["active_users"].max().reindex(index, fill_value=0).astype(float)
    out: Signals = {
        "active_user_pct": (dau / seats * 100.0).clip(upper=100.0),
        "contract_coverage": (peak / seats * 100.0).clip(upper=100.0) if enough else nan,
    }
    logins, n_logins = window(LOGIN_WINDOW_DAYS)
    if n_logins >= MIN_USAGE_COVERED_DAYS:
        dau28 = total(logins, "active_users") / n_logins
        per_week = total(logins, "logins") / (n_logins / 7.0)
        out["logins_per_user_week"] = (per_week / dau28.where(dau28 > 0)).fillna(0.0)
    else:
        out["logins_per_user_week"] = nan
    out["feature_breadth"] = feature_breadth(recent, index, feature_events) if enough else nan
    previous, n_previous = window(USAGE_WINDOW_DAYS, USAGE_WINDOW_DAYS)
    if min(n_recent, n_previous) >= MIN_TREND_COVERED_DAYS:
        before = total(previous, "active_users") / n_previous
        now = total(recent, "active_users") / n_recent
        trend = (now / before.where(before > 0) - 1.0) * 100.0
        out["usage_trend_mom"] = trend.mask((before == 0) & (now == 0), 0.0)
    else:
        out["usage_trend_mom"] = nan
    return out


def feature_breadth(rows: pd.DataFrame, index: pd.Index, feature_events: Sequence[str]) -> pd.Series:
    """Distinct tracked feature events used in ``rows`` / number of tracked features x 100."""
    tracked = list(dict.fromkeys(feature_events))
    if not tracked:
        return pd.Series(np.nan, index=index)
    counts = pd.DataFrame.from_records(
        [c if isinstance(c, Mapping) else json.loads(c or "{}") for c in rows["feature_counts"]],
        columns=tracked, index=rows.index).reindex(columns=tracked)
    used = (counts.fillna(0) > 0).groupby(rows["company_id"].to_numpy(), sort=True).any()
    return (used.sum(axis=1) / len(tracked) * 100.0).reindex(index, fill_value=0.0).astype(float)


def latest_nps(nps: pd.DataFrame | None, index: pd.Index) -> pd.Series:
    """The newest NPS answer per account among ``nps`` rows (company-days with an answer)."""
    if nps is None or nps.empty:
        return pd.Series(np.nan, index=index)
    latest = nps[nps["company_id"].isin(index)].sort_values(["company_id", "event_date"], kind="stable")
    return latest.groupby("company_id", sort=True)["nps_latest"].last().reindex(index).astype(float)


def survey_totals(usage: pd.DataFrame | None, index: pd.Index,
                  pit: PointInTime) -> tuple[pd.Series, pd.Series] | None:
    """Sum and count per account of the in-app CSAT answers of the last 90 event days (None without usage)."""
    if usage is None or usage.empty:
        return None
    first_day = pit.last_event_day - timedelta(days=QUARTER_DAYS - 1)
    rows = usage[(usage["event_date"] >= first_day) & usage["company_id"].isin(index)]
    grouped = rows.groupby("company_id", sort=True)
    return grouped["csat_sum"].sum().astype(float), grouped["csat_responses"].sum().astype(float)
