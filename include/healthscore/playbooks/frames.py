"""Turn score rows (today + archive) into the effective-state grid the crossing machines replay.

Kept apart from the rules so the contract of the input frames (which columns, which rows count, how an
override changes the state) lives in one place.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from healthscore.config.schema import ModelConfig, Segment

REQUIRED_SCORE_COLUMNS = ("account_id", "as_of_date", "score", "band", "model_version")
OPTIONAL_SCORE_COLUMNS: dict[str, Any] = {
    "is_shadow": False,
    "override_score": None,
    "override_band": None,
    "segment": None,
    "lifecycle_stage": None,
    "renewal_date": None,
    "arr_cents": None,
    "owner_id": None,
    "trend_30d": None,
    "dimension_scores": None,
    "attribution": None,
    "account_name": None,
}


def round_half_up(values: np.ndarray | float) -> np.ndarray | float:
    """Round like the band lookup does, so a margin is measured on the number users see."""
    return np.floor(np.asarray(values, dtype=float) + 0.5)


def is_missing(value: Any) -> bool:
    """None, NaN, NaT and pandas NA are all 'no value' in score rows."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, np.floating) and bool(np.isnan(value))


def to_date(value: Any) -> dt.date | None:
    """Dates arrive as date, datetime, Timestamp or ISO text depending on the reader."""
    if is_missing(value):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()


def _text(series: pd.Series) -> pd.Series:
    """Object column of python str with None for missing (ids may arrive as ints)."""
    missing = series.isna().to_numpy()
    out = series.astype(str).astype(object)
    out[missing] = None
    return out


def _day_column(series: pd.Series) -> pd.Series:
    out = pd.to_datetime(series, errors="coerce")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_localize(None)
    return out.dt.normalize()


def normalize_scores(
    frame: pd.DataFrame | None,
    name: str,
    *,
    since: pd.Timestamp | None = None,
    before: pd.Timestamp | None = None,
    accounts: set[str] | None = None,
) -> pd.DataFrame:
    """Copy with required columns checked, optional ones defaulted and types made comparable.

    ``since``/``before``/``accounts`` filter rows first, so a long archive costs little.
    """
    if frame is None:
        frame = pd.DataFrame(columns=list(REQUIRED_SCORE_COLUMNS))
    missing = [c for c in REQUIRED_SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing required columns: {', '.join(missing)}")
    out = frame.copy()
    out["as_of_date"] = _day_column(out["as_of_date"])
    out["account_id"] = _text(out["account_id"])
    keep = np.ones(len(out), dtype=bool)
    if since is not None:
        keep &= (out["as_of_date"] >= since).to_numpy()
    if before is not None:
        keep &= (out["as_of_date"] < before).to_numpy()
    if accounts is not None:
        keep &= out["account_id"].isin(accounts).to_numpy()
    out = out[keep].reset_index(drop=True)
    for column, default in OPTIONAL_SCORE_COLUMNS.items():
        if column not in out.columns:
            out[column] = default
    shadow = out["is_shadow"].astype(object)
    out["is_shadow"] = shadow.where(shadow.notna(), False).astype(bool)
    for column in ("score", "override_score", "arr_cents", "trend_30d"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    for column in ("band", "override_band", "segment", "lifecycle_stage", "owner_id", "model_version"):
        out[column] = _text(out[column])
    renewal = _day_column(out["renewal_date"])
    out["days_to_renewal"] = (renewal - out["as_of_date"]).dt.days.astype(float)
    dates = renewal.dt.date.astype(object)
    dates[renewal.isna().to_numpy()] = None
    out["renewal_date"] = dates
    # Effective state: an active override pins what the CSM sees, so crossings follow it.
    out["eff_score"] = out["override_score"].where(out["override_score"].notna(), out["score"])
    out["eff_band"] = out["override_band"].where(out["override_band"].notna(), out["band"])
    return out


@dataclass(frozen=True)
class Grid:
    """Dense (account x calendar day) arrays; day ``T-1`` is today; ``score`` is rounded half-up."""

    accounts: list[str]
    start: pd.Timestamp
    rank: np.ndarray
    score: np.ndarray
    raw_score: np.ndarray
    band_waived: np.ndarray
    score_waived: np.ndarray
    edges: np.ndarray
    days_to_renewal: np.ndarray

    @property
    def today(self) -> int:
        return self.rank.shape[1] - 1

    def day(self, t: int) -> dt.date:
        """Calendar date of grid column ``t``."""
        return (self.start + pd.Timedelta(days=int(t))).date()


def _edges_table(rows: pd.DataFrame, model: ModelConfig) -> np.ndarray:
    """Lower score edge of each band rank (except the worst) per row, in the account's context."""
    segments = {s.value for s in Segment}
    stages = {s.name for s in model.lifecycle.stages}
    window = model.lifecycle.renewal_window.days_before_renewal
    seg = rows["segment"].where(rows["segment"].isin(segments), None)
    stage = rows["lifecycle_stage"].where(rows["lifecycle_stage"].isin(stages), None)
    dtr = rows["days_to_renewal"]
    in_window = ((dtr >= 0) & (dtr <= window)).to_numpy()
    combo = seg.fillna("").astype(str) + "|" + stage.fillna("").astype(str) + "|" + in_window.astype(str)
    codes, uniques = pd.factorize(combo)
    plain = [float(b.min) for b in model.bands]
    table = np.empty((len(uniques), len(model.bands) - 1), dtype=float)
    for i, key in enumerate(uniques):
        s_part, st_part, w_part = str(key).split("|")
        t = model.thresholds_for(s_part or None, st_part or None, 0 if w_part == "True" else None)
        table[i] = [t.healthy_at_or_above, t.at_risk_below, *plain[2:-1]]
    return table[codes]


def build_grid(
    rows: pd.DataFrame, accounts: list[str], start: pd.Timestamp, end: pd.Timestamp, model: ModelConfig
) -> Grid:
    """Scatter one effective state per (account, day) into dense arrays for the replay."""
    n_days = int((end - start).days) + 1
    index = {a: i for i, a in enumerate(accounts)}
    rank_of = {b.name: i for i, b in enumerate(model.bands)}
    n_acc = len(accounts)
    rank = np.full((n_acc, n_days), -1, dtype=np.int64)
    score = np.full((n_acc, n_days), np.nan)
    raw_score = np.full((n_acc, n_days), np.nan)
    band_waived = np.zeros((n_acc, n_days), dtype=bool)
    score_waived = np.zeros((n_acc, n_days), dtype=bool)
    edges = np.zeros((n_acc, n_days, len(model.bands) - 1))
    dtr = np.full((n_acc, n_days), np.nan)
    if len(rows):
        ai = rows["account_id"].map(index).to_numpy(dtype=np.int64)
        di = ((rows["as_of_date"] - start).dt.days).to_numpy(dtype=np.int64)
        rank[ai, di] = rows["eff_band"].map(rank_of).fillna(-1).to_numpy(dtype=np.int64)
        raw_score[ai, di] = rows["eff_score"].to_numpy(dtype=float)
        score[ai, di] = round_half_up(raw_score[ai, di])
        band_waived[ai, di] = rows["override_band"].notna().to_numpy()
        score_waived[ai, di] = rows["override_score"].notna().to_numpy()
        edges[ai, di] = _edges_table(rows, model)
        dtr[ai, di] = rows["days_to_renewal"].to_numpy(dtype=float)
    return Grid(accounts, start, rank, score, raw_score, band_waived, score_waived, edges, dtr)
