"""The quarterly recalibration's training set: point-in-time signal snapshots joined to renewal outcomes.

Per renewal and per lead (30, 60, 90 days by default), the account's stored signals build dated at or before
the lead date (the newest within the lookup tolerance): what the daily DAG knew that day, nothing later.
``as_of_date <= lead_date`` is checked on every row. The rows become a ``ByoTable`` so the recalibration's
learning (``healthscore.evaluation.recalibrate``) and its time-and-account holdout apply unchanged: train on
earlier lead dates of some accounts, test on later ones of the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from healthscore.config import ModelConfig
from healthscore.evaluation.byo import DEFAULT_SEGMENT, SEGMENTS, ByoTable, MappedSignal
from healthscore.signals.carry import CONTRACT_COLUMNS

OUTCOME_COLUMN = "churned"
WEAK_CORRELATION = 0.3  # the field's rule: |r| below this with retention is a weak signal
LEAD_COLUMNS = ("outcome_date", "horizon_days", "lead_date", "outcome", OUTCOME_COLUMN)  # outcome_date: the renewal


@dataclass(frozen=True)
class Window:
    """Renewals resolved in the ``months`` months up to ``until`` (inclusive)."""

    first: date
    last: date

    @classmethod
    def months_until(cls, until: date, months: int) -> Window:
        if months < 1:
            raise ValueError(f"months must be at least 1, got {months}")
        return cls(until - timedelta(days=round(months * 365.25 / 12)) + timedelta(days=1), until)


def lead_rows(outcomes: pd.DataFrame, snapshots: pd.DataFrame, horizons: Sequence[int], tolerance_days: int,
              positive_outcomes: Sequence[str]) -> pd.DataFrame:
    """One row per (renewal, horizon) with a snapshot: the snapshot's columns plus ``LEAD_COLUMNS``.

    ``outcomes``: account_id, renewal_date, outcome; ``snapshots``: the scoring input frame of many dates
    (``account_id``, ``as_of_date``, segment, ..., signals). A renewal without a snapshot in
    [lead - tolerance, lead] is left out at that horizon.
    """
    if outcomes.empty or snapshots.empty:
        return pd.DataFrame(columns=[*snapshots.columns, *LEAD_COLUMNS])
    right = snapshots.copy()
    right["_as_of_ts"] = pd.to_datetime(right["as_of_date"]).astype("datetime64[ns]")
    right = right.sort_values("_as_of_ts")
    parts = []
    for h in horizons:
        left = outcomes[["account_id", "renewal_date", "outcome"]].rename(columns={"renewal_date": "outcome_date"})
        left["horizon_days"] = int(h)
        left["lead_date"] = (pd.to_datetime(left["outcome_date"]) - pd.Timedelta(days=int(h))).astype("datetime64[ns]")
        merged = pd.merge_asof(left.sort_values("lead_date"), right, left_on="lead_date", right_on="_as_of_ts",
                               by="account_id", direction="backward", tolerance=pd.Timedelta(days=tolerance_days))
        parts.append(merged[merged["_as_of_ts"].notna()])
    out = pd.concat(parts, ignore_index=True)
    leak = out["_as_of_ts"] > out["lead_date"]
    if leak.any():  # merge_asof backward never does this; the guard keeps it so
        raise AssertionError(f"{int(leak.sum())} training rows dated after their lead date")
    out[OUTCOME_COLUMN] = out["outcome"].isin(list(positive_outcomes)).astype(np.int8)
    out["lead_date"] = out["lead_date"].dt.date
    out["as_of_date"] = pd.to_datetime(out["as_of_date"]).dt.date
    out = out.drop(columns=["_as_of_ts"]).sort_values(["as_of_date", "account_id", "horizon_days"])
    return out.reset_index(drop=True)


def model_signals(model: ModelConfig, rows: pd.DataFrame) -> list[MappedSignal]:
    """The model's signals that the rows hold values for, with their dimension and direction."""
    out = []
    for dim_name, dim in model.dimensions.items():
        for sid, spec in dim.signals.items():
            if sid not in rows.columns:
                continue
            values = pd.to_numeric(rows[sid], errors="coerce").to_numpy(dtype=float)
            present = values[np.isfinite(values)]
            if present.size == 0:
                continue
            direction = 1 if str(getattr(spec.direction, "value", spec.direction)) == "higher_is_better" else -1
            out.append(MappedSignal(sid, sid, dim_name, direction, bool(np.isin(present, (0.0, 1.0)).all())))
    return out


def training_table(rows: pd.DataFrame, model: ModelConfig,
                   source: str = "warehouse") -> tuple[ByoTable, pd.DataFrame]:
    """The lead rows as a ByoTable over the model's signals (one row per account and as-of date), and the
    lead rows it kept, in the same order (what the backtest scores with the daily code).

    An account's renewal seen at two horizons gives two rows with different as-of dates; should two leads
    land on one snapshot (a gap in the history), the longer lead is kept.
    """
    signals = model_signals(model, rows)
    kept = rows.sort_values("horizon_days", ascending=False).drop_duplicates(["account_id", "as_of_date"])
    kept = kept.sort_values(["as_of_date", "account_id"]).reset_index(drop=True)
    frame = pd.DataFrame({
        "account_id": kept["account_id"].astype(str).to_numpy(dtype=object),
        "as_of_date": pd.to_datetime(kept["as_of_date"]).to_numpy(dtype="datetime64[ns]"),
        "segment": kept["segment"].where(kept["segment"].isin(SEGMENTS), DEFAULT_SEGMENT).to_numpy(dtype=object),
    })
    has_stage = "lifecycle_stage" in kept.columns and kept["lifecycle_stage"].notna().all()
    if has_stage:
        frame["lifecycle_stage"] = kept["lifecycle_stage"].to_numpy(dtype=object)
    for sig in signals:
        frame[sig.column] = pd.to_numeric(kept[sig.column], errors="coerce").to_numpy(dtype=float)
    frame[OUTCOME_COLUMN] = kept[OUTCOME_COLUMN].to_numpy(dtype=np.int8)
    for extra in ("horizon_days", "outcome_date", "lead_date"):
        frame[extra] = kept[extra].to_numpy()
    table = ByoTable(frame=frame, signals=tuple(signals), outcome=OUTCOME_COLUMN, source=source, has_segment=True,
                     has_stage=has_stage, notes=[])
    return table, kept


def scoring_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Lead rows back in the daily scoring input shape (contract columns, statuses, confidences, signals)."""
    drop = [c for c in (*LEAD_COLUMNS,) if c in rows.columns]
    frame = rows.drop(columns=drop)
    for column in CONTRACT_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    return frame


def correlations(table: ByoTable, rows: np.ndarray | None = None) -> list[dict[str, object]]:
    """Per signal, Pearson r of its healthy-direction value with retention (1 - churned) over ``rows``
    (all when None; missing values left out); ``weak`` when |r| < 0.3 or it cannot be computed."""
    frame = table.frame if rows is None else table.frame.iloc[rows]
    retained = 1.0 - frame[table.outcome].to_numpy(dtype=float)
    out = []
    for sig in table.signals:
        values = sig.direction * frame[sig.column].to_numpy(dtype=float)
        ok = np.isfinite(values)
        r = None
        if ok.sum() >= 3 and np.std(values[ok]) > 0 and np.std(retained[ok]) > 0:
            r = float(np.corrcoef(values[ok], retained[ok])[0, 1])
        out.append({"signal": sig.signal_id, "dimension": sig.dimension, "n": int(ok.sum()), "r": r,
                    "weak": r is None or abs(r) < WEAK_CORRELATION})
    return out
