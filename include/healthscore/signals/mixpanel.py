"""Mixpanel signals: usage (from daily company aggregates; licensed seats from HubSpot), NPS, and the
in-app surveys' share of csat_3m. Pure functions of frames.

Product windows are whole event days ending on the batch's last event day. A "covered" day is an event
day some batch landed (``usage.attrs["covered_days"]``); an account without a row on a covered day had no
activity that day.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

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


@dataclass
class UsageTotals:
    """Company-day usage rows reduced per account to what the usage signals and the survey share of csat_3m
    need: active-user sums of the 30-day, 28-day and previous 30-day windows, logins of the 28 days, the peak
    and the tracked features used in the 30 days, and the surveys' (sum, count) rows of the 90 days.

    Why: the pipeline feeds the window day by day (``update``) instead of holding a whole window of rows
    (at 100k accounts, 90 days are ~7M company-days). Exact whatever the chunks: integer sums, maxima and
    feature flags do not depend on the order rows arrive in; the survey sums are floats, so their rows are
    kept (three numbers each, in arrival order) and summed at the end as one grouped sum, as before.
    """

    index: pd.Index
    covered_days: list[date]
    pit: PointInTime
    tracked: list[str]
    rows: int = 0
    recent_users: np.ndarray = field(init=False)
    recent_peak: np.ndarray = field(init=False)
    recent_features: np.ndarray = field(init=False)
    login_users: np.ndarray = field(init=False)
    logins: np.ndarray = field(init=False)
    previous_users: np.ndarray = field(init=False)
    _surveys: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if not self.index.is_unique:
            raise ValueError("usage totals need unique account ids")
        n = len(self.index)
        self.recent_users, self.login_users, self.logins, self.previous_users = (
            np.zeros(n, dtype=np.int64) for _ in range(4))
        self.recent_peak = np.full(n, np.nan)  # NaN: no row in the window (0 in the signal)
        self.recent_features = np.zeros((n, len(self.tracked)), dtype=bool)

    @classmethod
    def of(cls, usage: pd.DataFrame, index: pd.Index, pit: PointInTime,
           feature_events: Sequence[str]) -> UsageTotals:
        """The totals of one frame of rows (``attrs["covered_days"]``: the covered days)."""
        totals = cls(index, list(usage.attrs.get("covered_days", [])), pit, list(dict.fromkeys(feature_events)))
        return totals.update(usage)

    def window(self, days: int, offset: int = 0) -> tuple[date, date]:
        """First and last event day of a window of ``days`` ending ``offset`` days before the last event day."""
        hi = self.pit.last_event_day - timedelta(days=offset)
        return hi - timedelta(days=days - 1), hi

    def covered(self, days: int, offset: int = 0) -> int:
        """Covered days in that window."""
        lo, hi = self.window(days, offset)
        covered = pd.Index(self.covered_days)
        return int(((covered >= lo) & (covered <= hi)).sum())

    def update(self, usage: pd.DataFrame) -> UsageTotals:
        """Add company-day rows (columns company_id, event_date, active_users, logins, feature_counts,
        csat_sum, csat_responses); rows of accounts outside ``index`` are ignored. Returns self."""
        rows = usage[usage["company_id"].isin(self.index)]
        if rows.empty:
            return self
        self.rows += len(rows)
        pos = self.index.get_indexer(rows["company_id"])
        day = rows["event_date"]
        users = rows["active_users"].to_numpy(dtype=np.int64)

        def within(days: int, offset: int = 0) -> np.ndarray:
            lo, hi = self.window(days, offset)
            return ((day >= lo) & (day <= hi)).to_numpy(dtype=bool)

        recent = within(USAGE_WINDOW_DAYS)
        np.add.at(self.recent_users, pos[recent], users[recent])
        np.fmax.at(self.recent_peak, pos[recent], users[recent].astype(float))
        if self.tracked and recent.any():
            np.logical_or.at(self.recent_features, pos[recent], _features_used(rows[recent], self.tracked))
        login = within(LOGIN_WINDOW_DAYS)
        np.add.at(self.login_users, pos[login], users[login])
        np.add.at(self.logins, pos[login], rows["logins"].to_numpy(dtype=np.int64)[login])
        previous = within(USAGE_WINDOW_DAYS, USAGE_WINDOW_DAYS)
        np.add.at(self.previous_users, pos[previous], users[previous])
        survey = (day >= self.pit.last_event_day - timedelta(days=QUARTER_DAYS - 1)).to_numpy(dtype=bool)
        if survey.any():
            self._surveys.append((pos[survey], rows["csat_sum"].to_numpy(dtype=float, na_value=np.nan)[survey],
                                  rows["csat_responses"].to_numpy(dtype=np.int64)[survey]))
        return self

    def series(self, values: np.ndarray) -> pd.Series:
        """Per-account values as a float Series on the index."""
        return pd.Series(values.astype(float), index=self.index)

    def surveys(self) -> tuple[pd.Series, pd.Series] | None:
        """Sum and count per account of the in-app CSAT answers of the last 90 event days (None: no rows)."""
        if not self.rows:
            return None
        parts = self._surveys or [(np.empty(0, dtype=np.int64), np.empty(0), np.empty(0, dtype=np.int64))]
        rows = pd.DataFrame({"company_id": self.index.to_numpy()[np.concatenate([p[0] for p in parts])],
                             "csat_sum": np.concatenate([p[1] for p in parts]),
                             "csat_responses": np.concatenate([p[2] for p in parts])})
        grouped = rows.groupby("company_id", sort=True)
        return grouped["csat_sum"].sum().astype(float), grouped["csat_responses"].sum().astype(float)


def _features_used(rows: pd.DataFrame, tracked: list[str]) -> np.ndarray:
    """Per row, which tracked features it used (count > 0): a rows x tracked boolean array."""
    counts = pd.DataFrame.from_records(
        [c if isinstance(c, Mapping) else json.loads(c or "{}") for c in rows["feature_counts"]],
        columns=tracked, index=rows.index).reindex(columns=tracked)
    return (counts.fillna(0) > 0).to_numpy(dtype=bool)


def usage_signals(usage: pd.DataFrame | UsageTotals | None, licensed_seats: pd.Series, index: pd.Index,
                  pit: PointInTime, feature_events: Sequence[str]) -> Signals:
    """active_user_pct, logins_per_user_week, feature_breadth, usage_trend_mom, contract_coverage.

    ``usage``: the window's rows, or their ``UsageTotals``. ``licensed_seats`` is aligned with ``index`` (the
    accounts frame's column).
    """
    if isinstance(usage, pd.DataFrame):
        usage = UsageTotals.of(usage, index, pit, feature_events)
    if usage is None or not usage.covered_days:
        return {n: pd.Series(np.nan, index=index) for n in USAGE_SIGNALS}
    totals = usage
    seats = pd.Series(licensed_seats.astype("Float64").to_numpy(dtype=float, na_value=np.nan), index=index)
    seats = seats.where(seats > 0)
    n_recent = totals.covered(USAGE_WINDOW_DAYS)
    enough = n_recent >= MIN_USAGE_COVERED_DAYS
    nan = pd.Series(np.nan, index=index)
    dau = totals.series(totals.recent_users) / n_recent if enough else nan
    peak = totals.series(np.nan_to_num(totals.recent_peak, nan=0.0))
    out: Signals = {
        "active_user_pct": (dau / seats * 100.0).clip(upper=100.0),
        "contract_coverage": (peak / seats * 100.0).clip(upper=100.0) if enough else nan,
    }
    n_logins = totals.covered(LOGIN_WINDOW_DAYS)
    if n_logins >= MIN_USAGE_COVERED_DAYS:
        dau28 = totals.series(totals.login_users) / n_logins
        per_week = totals.series(totals.logins) / (n_logins / 7.0)
        out["logins_per_user_week"] = (per_week / dau28.where(dau28 > 0)).fillna(0.0)
    else:
        out["logins_per_user_week"] = nan
    out["feature_breadth"] = feature_breadth(totals) if enough else nan
    n_previous = totals.covered(USAGE_WINDOW_DAYS, USAGE_WINDOW_DAYS)
    if min(n_recent, n_previous) >= MIN_TREND_COVERED_DAYS:
        before = totals.series(totals.previous_users) / n_previous
        now = totals.series(totals.recent_users) / n_recent
        trend = (now / before.where(before > 0) - 1.0) * 100.0
        out["usage_trend_mom"] = trend.mask((before == 0) & (now == 0), 0.0)
    else:
        out["usage_trend_mom"] = nan
    return out


def feature_breadth(totals: UsageTotals) -> pd.Series:
    """Distinct tracked feature events used in the 30-day window / number of tracked features x 100."""
    if not totals.tracked:
        return pd.Series(np.nan, index=totals.index)
    used = totals.recent_features.sum(axis=1)
    return pd.Series(used / len(totals.tracked) * 100.0, index=totals.index).astype(float)


def latest_nps(nps: pd.DataFrame | None, index: pd.Index) -> pd.Series:
    """The newest NPS answer per account among ``nps`` rows (company-days with an answer)."""
    if nps is None or nps.empty:
        return pd.Series(np.nan, index=index)
    latest = nps[nps["company_id"].isin(index)].sort_values(["company_id", "event_date"], kind="stable")
    return latest.groupby("company_id", sort=True)["nps_latest"].last().reindex(index).astype(float)


def survey_totals(usage: pd.DataFrame | UsageTotals | None, index: pd.Index,
                  pit: PointInTime) -> tuple[pd.Series, pd.Series] | None:
    """Sum and count per account of the in-app CSAT answers of the last 90 event days (None without usage)."""
    if usage is None:
        return None
    if isinstance(usage, pd.DataFrame):
        if usage.empty:
            return None
        usage = UsageTotals.of(usage, index, pit, ())
    return usage.surveys()
