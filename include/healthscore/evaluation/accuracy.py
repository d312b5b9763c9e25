"""Does the score predict churn? The monthly accuracy report, as pure functions over frames.

``healthscore.pipeline.accuracy`` reads the warehouse and writes the results; everything here is
computed from the frames it is given, so the same code backtests any archive.

Strictly point-in-time: the prediction for an outcome on day ``d`` at horizon ``h`` is the newest archived
score with ``as_of_date`` in ``[d - h - tolerance, d - h]``, never later (``predictions_at`` asserts it).
An archived score for day ``x`` was computed from the data landed for batch ``x`` only, so nothing after the
lead date can reach a prediction; the leakage test plants a signal that peeks at the outcome to prove it.

Figures come from ``healthscore.evaluation.metrics`` (checked against scikit-learn there). A group with fewer
than ``min_group_size`` outcomes is reported as too small, with its sample size and no figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from healthscore.config.schema import Evaluation, ModelConfig
from healthscore.evaluation import metrics

PSI_EPSILON = 1e-4
TARGET_METRICS = ("recall", "specificity", "accuracy", "f1")


# ---- predictions -----------------------------------------------------------------------------------------
def predictions_at(
    outcomes: pd.DataFrame, scores: pd.DataFrame, horizon_days: int, tolerance_days: int
) -> pd.DataFrame:
    """Each outcome joined to the score each model version archived ``horizon_days`` before it.

    ``outcomes``: account_id, renewal_date (date), outcome, ... ; ``scores``: account_id, as_of_date (date),
    model_version, score, band, ... . One row per (outcome, model version) with a prediction in the window;
    outcomes without one are left out (``coverage`` counts them).
    """
    if outcomes.empty or scores.empty:
        return pd.DataFrame(columns=[*outcomes.columns, "lead_date", *scores.columns])
    left = outcomes.copy()
    left["lead_date"] = (pd.to_datetime(left["renewal_date"]) - pd.Timedelta(days=horizon_days)).astype(
        "datetime64[ns]"
    )
    right = scores.copy()
    right["as_of_ts"] = pd.to_datetime(right["as_of_date"]).astype("datetime64[ns]")
    parts = []
    for version, group in right.groupby("model_version", sort=True):
        merged = pd.merge_asof(
            left.sort_values("lead_date"),
            group.drop(columns=["account_id_x"], errors="ignore").sort_values("as_of_ts"),
            left_on="lead_date",
            right_on="as_of_ts",
            by="account_id",
            direction="backward",
            tolerance=pd.Timedelta(days=tolerance_days),
        )
        merged = merged[merged["score"].notna()].copy()
        merged["model_version"] = version
        parts.append(merged)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if not out.empty:
        leak = out["as_of_ts"] > out["lead_date"]
        if leak.any():  # merge_asof backward never does this; the guard keeps it so
            raise AssertionError(f"{int(leak.sum())} predictions dated after their lead date")
        out["lead_date"] = out["lead_date"].dt.date
    return out.drop(columns=["as_of_ts"], errors="ignore").reset_index(drop=True)


def labelled(frame: pd.DataFrame, ev: Evaluation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y_true, y_pred, risk): positive class from the outcome, prediction from the band, risk from the score."""
    y = frame["outcome"].isin(list(ev.positive_outcomes)).to_numpy(dtype=np.int8)
    pred = frame["band"].isin(list(ev.at_risk_bands)).to_numpy(dtype=np.int8)
    risk = metrics.risk_from_health(frame["score"].to_numpy(dtype=float))
    return y, pred, risk


def figures(frame: pd.DataFrame, ev: Evaluation) -> dict[str, Any]:
    """Every metric for one group, or its sample size and a 'too small' flag."""
    n = len(frame)
    y, pred, risk = labelled(frame, ev)
    if n < ev.min_group_size:
        return {
            "n": n,
            "positives": int(y.sum()),
            "too_small": True,
            "note": f"fewer than {ev.min_group_size} outcomes: no figures",
        }
    out = metrics.binary_metrics(y, risk, y_pred=pred, specificity_target=ev.targets.specificity)
    decision = out.get("decision", {})
    for name in ("accuracy", "precision", "recall", "specificity", "f1"):
        out[name] = decision.get(name)
    out["too_small"] = False
    return out


def grouped(frame: pd.DataFrame, column: str, ev: Evaluation) -> dict[str, Any]:
    return {
        str(key): figures(group, ev)
        for key, group in frame.groupby(frame[column].fillna("unknown"), sort=True)
    }


# ---- the report's tables ---------------------------------------------------------------------------------
def band_ranges(model: ModelConfig) -> dict[str, str]:
    return {b.name: f"{b.min}-{b.max}" for b in model.bands}


def retention_by_band(frame: pd.DataFrame, model: ModelConfig) -> list[dict[str, Any]]:
    """Per band at the prediction: score range, retention rate (not in the positive class), sample size."""
    ev = model.evaluation
    rows = []
    for band in [b.name for b in model.bands]:
        group = frame[frame["band"] == band]
        n = len(group)
        retained = int((~group["outcome"].isin(list(ev.positive_outcomes))).sum())
        rows.append(
            {
                "band": band,
                "score_range": band_ranges(model)[band],
                "n": n,
                "retained": retained,
                "retention_rate": (retained / n) if n >= ev.min_group_size else None,
                "too_small": n < ev.min_group_size,
            }
        )
    return rows


def lead_times(outcomes: pd.DataFrame, history: pd.DataFrame, ev: Evaluation) -> dict[str, Any]:
    """Days from the first At Risk flag (within the lookback, before the outcome) to each positive outcome."""
    positives = outcomes[outcomes["outcome"].isin(list(ev.positive_outcomes))]
    days: list[int] = []
    never = 0
    rows = []
    for row in positives.itertuples(index=False):
        start = row.renewal_date - timedelta(days=ev.lead_time_lookback_days)
        h = history[
            (history["account_id"] == row.account_id)
            & (history["as_of_date"] >= start)
            & (history["as_of_date"] < row.renewal_date)
            & history["band"].isin(list(ev.at_risk_bands))
        ]
        if h.empty:
            never += 1
            rows.append(
                {
                    "account_id": row.account_id,
                    "renewal_date": row.renewal_date,
                    "outcome": row.outcome,
                    "first_flag": None,
                    "lead_days": None,
                }
            )
            continue
        first = min(h["as_of_date"])
        days.append((row.renewal_date - first).days)
        rows.append(
            {
                "account_id": row.account_id,
                "renewal_date": row.renewal_date,
                "outcome": row.outcome,
                "first_flag": first,
                "lead_days": days[-1],
            }
        )
    arr = np.asarray(days, dtype=float)
    return {
        "n": len(positives),
        "flagged": len(days),
        "never_flagged": never,
        "median_days": float(np.median(arr)) if len(arr) else None,
        "mean_days": float(arr.mean()) if len(arr) else None,
        "p25_days": float(np.percentile(arr, 25)) if len(arr) else None,
        "p75_days": float(np.percentile(arr, 75)) if len(arr) else None,
        "rows": rows,
    }


def misses(frame: pd.DataFrame, ev: Evaluation, dimensions: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """False negatives (not flagged, then positive) and false positives (flagged, then retained), with
    the dimension scores the prediction had."""
    y, pred, _ = labelled(frame, ev)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, mask in (
        ("false_negatives", (y == 1) & (pred == 0)),
        ("false_positives", (y == 0) & (pred == 1)),
    ):
        rows = []
        for row in frame[mask].sort_values(["renewal_date", "account_id"]).to_dict("records"):
            dims = row.get("dimension_scores") or {}
            rows.append(
                {
                    "account_id": row["account_id"],
                    "renewal_date": row["renewal_date"],
                    "outcome": row["outcome"],
                    "as_of_date": row["as_of_date"],
                    "score": row["score"],
                    "band": row["band"],
                    "segment": row.get("segment"),
                    "lifecycle_stage": row.get("lifecycle_stage"),
                    **{
                        f"dim_{d}": (None if dims.get(d) is None else round(float(dims[d]), 1))
                        for d in dimensions
                    },
                }
            )
        out[name] = rows
    return out


def journey_velocity(snapshot: pd.DataFrame, model: ModelConfig) -> list[dict[str, Any]]:
    """Days in the current lifecycle stage by stage and band (accounts at the period end)."""
    rows = []
    if snapshot.empty:
        return rows
    for (stage, band), group in snapshot.groupby(
        [snapshot["lifecycle_stage"].fillna("unknown"), snapshot["band"].fillna("unscored")], sort=True
    ):
        d = pd.to_numeric(group["days_in_stage"], errors="coerce").dropna()
        rows.append(
            {
                "lifecycle_stage": stage,
                "band": band,
                "n": len(group),
                "median_days_in_stage": float(d.median()) if len(d) else None,
                "mean_days_in_stage": float(d.mean()) if len(d) else None,
            }
        )
    return rows


# ---- targets and drift -----------------------------------------------------------------------------------
def check_targets(overall: Mapping[str, Any], ev: Evaluation) -> dict[str, dict[str, Any]]:
    """Per target metric: target, value, met (None when the value is undefined or the group too small)."""
    out = {}
    for name in TARGET_METRICS:
        target = getattr(ev.targets, name)
        value = None if overall.get("too_small") else overall.get(name)
        out[name] = {
            "target": target,
            "value": value,
            "met": None if value is None else bool(value >= target),
        }
    return out


def psi(expected: np.ndarray, actual: np.ndarray, edges: np.ndarray) -> float | None:
    """Population stability index of ``actual`` against ``expected`` over the bins ``edges``."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    e, a = e[np.isfinite(e)], a[np.isfinite(a)]
    if len(e) == 0 or len(a) == 0:
        return None
    pe = np.histogram(np.clip(e, edges[0], edges[-1]), edges)[0] / len(e)
    pa = np.histogram(np.clip(a, edges[0], edges[-1]), edges)[0] / len(a)
    pe, pa = np.maximum(pe, PSI_EPSILON), np.maximum(pa, PSI_EPSILON)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def score_edges(bins: int) -> np.ndarray:
    return np.linspace(0.0, 100.0, bins + 1)


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray | None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return None
    edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return None
    edges[0], edges[-1] = min(edges[0], v.min()), max(edges[-1], v.max())
    return edges


def drift(
    current: pd.DataFrame,
    previous: pd.DataFrame,
    signals_now: pd.DataFrame,
    signals_before: pd.DataFrame,
    dimensions: Sequence[str],
    accuracy_history: Sequence[float | None],
    ev: Evaluation,
) -> dict[str, Any]:
    """PSI of scores, per dimension and per signal against last month; accuracy falling month after month."""
    th = ev.drift
    out: dict[str, Any] = {"alerts": []}
    score_psi = (
        psi(previous["score"].to_numpy(float), current["score"].to_numpy(float), score_edges(th.psi_bins))
        if len(previous) and len(current)
        else None
    )
    level = (
        None
        if score_psi is None
        else (
            "alert" if score_psi >= th.score_psi_alert else "warn" if score_psi >= th.score_psi_warn else "ok"
        )
    )
    out["score_psi"] = {
        "value": score_psi,
        "level": level,
        "n_current": len(current),
        "n_previous": len(previous),
    }
    if level == "alert":
        out["alerts"].append(f"score distribution PSI {score_psi:.3f} >= {th.score_psi_alert} vs last month")
    dims = {}
    for d in dimensions:
        now = _dim_values(current, d)
        before = _dim_values(previous, d)
        value = psi(before, now, score_edges(th.psi_bins)) if len(now) and len(before) else None
        dims[d] = {
            "psi": value,
            "alert": bool(value is not None and value >= th.dimension_psi_alert),
            "mean_now": float(np.nanmean(now)) if len(now) else None,
            "mean_before": float(np.nanmean(before)) if len(before) else None,
        }
        if dims[d]["alert"]:
            out["alerts"].append(f"dimension {d} PSI {value:.3f} >= {th.dimension_psi_alert}")
    out["dimensions"] = dims
    sigs = {}
    for column in sorted(set(signals_now.columns) & set(signals_before.columns) - {"account_id"}):
        before = pd.to_numeric(signals_before[column], errors="coerce").to_numpy(float)
        now = pd.to_numeric(signals_now[column], errors="coerce").to_numpy(float)
        edges = quantile_edges(before, th.psi_bins)
        value = psi(before, now, edges) if edges is not None else None
        sigs[column] = {"psi": value, "alert": bool(value is not None and value >= th.signal_psi_alert)}
        if sigs[column]["alert"]:
            out["alerts"].append(f"signal {column} PSI {value:.3f} >= {th.signal_psi_alert}")
    out["signals"] = sigs
    out["accuracy_decline"] = declining(accuracy_history, th.accuracy_decline_months)
    if out["accuracy_decline"]["alert"]:
        out["alerts"].append(
            f"accuracy fell {out['accuracy_decline']['months']} months in a row: "
            + " -> ".join(f"{v:.3f}" for v in out["accuracy_decline"]["values"])
        )
    return out


def _dim_values(frame: pd.DataFrame, dim: str) -> np.ndarray:
    if frame.empty or "dimension_scores" not in frame:
        return np.zeros(0)
    vals = [(d or {}).get(dim) for d in frame["dimension_scores"]]
    arr = np.asarray([np.nan if v is None else float(v) for v in vals], dtype=float)
    return arr[np.isfinite(arr)]


def declining(history: Sequence[float | None], months: int) -> dict[str, Any]:
    """Consecutive month-over-month falls at the end of ``history`` (oldest first, this month last)."""
    vals = [v for v in history if v is not None]
    run = 0
    for before, after in zip(vals[::-1][1:], vals[::-1], strict=False):
        if after < before:
            run += 1
        else:
            break
    return {"months": run, "alert": run >= months, "values": vals[-(run + 1) :] if run else vals[-1:]}


def month_bounds(day: date) -> tuple[date, date]:
    """First and last day of the month containing ``day``."""
    first = day.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first, nxt - timedelta(days=1)


# ---- were the humans right? ------------------------------------------------------------------------------
OVERRIDE_COLUMNS = ("id", "account_id", "override_score", "override_band", "created_at", "expires_on", "revoked_at")


def band_of(score: float, model: ModelConfig) -> str | None:
    """The model's band for a score, rounded half-up as the bands are (an override that gives a score only is
    judged by its band)."""
    rounded = int(np.floor(score + 0.5))
    return next((b.name for b in model.bands if b.min <= rounded <= b.max), None)


def standing_overrides(preds: pd.DataFrame, overrides: pd.DataFrame) -> pd.DataFrame:
    """Each prediction with the override standing on its lead date, if any (the newest entered by then).

    An override stands on day ``d`` when it was entered on or before ``d``, expires after ``d`` (it gives way on
    its expiry date) and was not revoked on or before ``d``. Predictions without one are left out.
    """
    columns = [*preds.columns, "override_id", "override_score", "override_band"]
    if preds.empty or overrides.empty:
        return pd.DataFrame(columns=columns)
    o = overrides.rename(columns={"id": "override_id"}).copy()
    o["entered"] = _day(o["created_at"])
    o["expires"] = _day(o["expires_on"])
    o["revoked"] = _day(o["revoked_at"])
    p = preds.drop(columns=["override_id", "override_score", "override_band"], errors="ignore").copy()
    p["_lead"] = _day(p["lead_date"])
    p["_row"] = np.arange(len(p))
    joined = p.merge(o[["account_id", "override_id", "override_score", "override_band", "entered", "expires",
                        "revoked"]], on="account_id", how="inner")
    lead = joined["_lead"]
    stands = ((joined["entered"] <= lead) & (joined["expires"].isna() | (joined["expires"] > lead))
              & (joined["revoked"].isna() | (joined["revoked"] > lead)))
    joined = joined[stands].sort_values(["_row", "entered", "override_id"])
    joined = joined.drop_duplicates("_row", keep="last").sort_values("_row")
    return joined.drop(columns=["_lead", "_row", "entered", "expires", "revoked"]).reset_index(drop=True)


def _day(series: pd.Series) -> pd.Series:
    out = pd.to_datetime(series, errors="coerce", utc=True)
    return out.dt.tz_localize(None).dt.normalize()


def _share(k: int, n: int, min_n: int) -> dict[str, Any]:
    from healthscore.evaluation.effectiveness import wilson

    if n < min_n:
        return {"n": int(n), "k": int(k), "too_small": True}
    lo, hi = wilson(k, n) or (None, None)
    return {"n": int(n), "k": int(k), "rate": k / n, "ci_low": lo, "ci_high": hi, "too_small": False}


def override_accuracy(preds: pd.DataFrame, overrides: pd.DataFrame, model: ModelConfig,
                      horizon_days: int) -> dict[str, Any]:
    """Were the humans right? For the renewals whose account had an override standing at the lead date: the
    override band's prediction (at risk or not) against the computed band's, on the same renewals.

    ``preds``: one model version's predictions (``predictions_at``: outcome, band = the computed band, lead_date);
    ``overrides``: the ``score_overrides`` rows of those accounts. Shares carry their sample size and a Wilson
    interval, or "too small" under ``min_group_size``; ``disagreed`` is where the two bands predicted differently
    (where being right matters), ``verdict`` says who was right more often there, or that it is too small to say.
    """
    ev = model.evaluation
    standing = standing_overrides(preds, overrides)
    rows = []
    for r in standing.itertuples(index=False):
        band = r.override_band if isinstance(r.override_band, str) and r.override_band else (
            band_of(float(r.override_score), model) if pd.notna(r.override_score) else None)
        if band is None:
            continue
        positive = r.outcome in ev.positive_outcomes
        human, computed = band in ev.at_risk_bands, r.band in ev.at_risk_bands
        rows.append({"account_id": r.account_id, "renewal_date": r.renewal_date, "lead_date": r.lead_date,
                     "outcome": r.outcome, "computed_band": r.band, "override_band": band,
                     "override_id": int(r.override_id), "override_right": human == positive,
                     "computed_right": computed == positive, "disagree": human != computed})
    n, min_n = len(rows), ev.min_group_size
    split = [r for r in rows if r["disagree"]]
    human_k = sum(r["override_right"] for r in split)
    computed_k = sum(r["computed_right"] for r in split)
    if not split:
        verdict = "no renewal where the override and the computed band disagreed"
    elif len(split) < min_n:
        verdict = f"too small: {len(split)} renewal(s) where they disagreed (fewer than {min_n})"
    else:
        verdict = ("the overrides were right more often" if human_k > computed_k else
                   "the computed score was right more often" if computed_k > human_k else "a tie")
    return {"horizon_days": int(horizon_days), "n": n, "too_small": n < min_n,
            "override_right": _share(sum(r["override_right"] for r in rows), n, min_n),
            "computed_right": _share(sum(r["computed_right"] for r in rows), n, min_n),
            "disagreed": {"n": len(split), "override_right": _share(human_k, len(split), min_n),
                          "computed_right": _share(computed_k, len(split), min_n)},
            "verdict": verdict, "rows": rows}
