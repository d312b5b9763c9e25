"""Do the playbooks work? Per playbook: fired, completed, recovery, churn against matched accounts, velocity.

Pure functions on frames (the monthly accuracy task reads them from the warehouse):

* ``events``: the champion's delivered playbook events (account_id, playbook, crossing_date, task_status,
  task_completed_at); ``scores``: its score archive (account_id, as_of_date, score, band, segment, trend_30d);
  ``outcomes``: resolved renewals (account_id, renewal_date, outcome).
* Everything is as of ``end`` (the report's last day): a completion, a score or an outcome after it is not
  used, and a figure whose window has not elapsed by ``end`` leaves the event out (it is not "not recovered").

Definitions (each figure comes with its sample size; below ``min_group_size`` the figure is withheld and the
group is flagged ``too_small``):

* fired: events delivered to the CRM; completed: their task read back as COMPLETED on or before ``end``
  (late: completed after its due time).
* recovery: of the events fired while the account was in an at-risk band (At Risk or Critical), the share
  whose account reached a band outside them (Moderate or better) within ``RECOVERY_DAYS`` after the crossing.
  Split by completed vs left open: the sandbox's CSMs complete tasks at random (a hash of the task's key), so
  on the sandbox that split is a randomised comparison and measures the play's true effect.
* churn: the first renewal resolved within ``CHURN_WINDOW_DAYS`` after the crossing, churned or contracted
  (``positive_outcomes``) against renewed or expanded. The comparison group is accounts in the same situation
  on which the play never fired (up to ``end``): matched exactly on segment, band and trend
  bucket (30-day trend below -5 falling, above +5 rising, else flat), one day per account and stratum (its
  first), the control rate re-weighted to the fired events' strata. Wilson 95% intervals on both raw rates.
* velocity: score change per 30 days from the crossing to ``VELOCITY_DAYS`` after it (the archived day nearest
  that date within ``TOLERANCE_DAYS``), overall and by completed vs left open.
* next best action: per situation (the at-risk band the account was in when the play fired x segment: the
  trigger's condition), the play whose completed tasks recovered the largest share, named only where it rests
  on at least ``min_group_size`` completed plays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

RECOVERY_DAYS = 60
VELOCITY_DAYS = 30
CHURN_WINDOW_DAYS = 180
TOLERANCE_DAYS = 3
TREND_BUCKET_POINTS = 5.0
Z95 = 1.959964


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for k successes in n trials (None for n = 0)."""
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def trend_bucket(trend: Any) -> str:
    t = pd.to_numeric(pd.Series([trend]), errors="coerce").iloc[0]
    if pd.isna(t):
        return "flat"
    return "falling" if t < -TREND_BUCKET_POINTS else "rising" if t > TREND_BUCKET_POINTS else "flat"


def _buckets(trend: pd.Series) -> pd.Series:
    t = pd.to_numeric(trend, errors="coerce")
    return pd.Series(np.where(t < -TREND_BUCKET_POINTS, "falling", np.where(t > TREND_BUCKET_POINTS, "rising",
                                                                              "flat")), index=trend.index)


def _rate(k: int, n: int, min_n: int) -> dict[str, Any]:
    """A share with its sample size and Wilson interval, or only the sample size where it is too small."""
    if n < min_n:
        return {"n": int(n), "k": int(k), "too_small": True}
    lo, hi = wilson(k, n) or (None, None)
    return {"n": int(n), "k": int(k), "rate": k / n, "ci_low": lo, "ci_high": hi, "too_small": False}


def _dates(series: pd.Series) -> pd.Series:
    """Calendar days as naive midnight timestamps (also for an empty or object column)."""
    out = pd.to_datetime(series, errors="coerce")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert(None)
    return out.dt.normalize()


def prepare(events: pd.DataFrame, scores: pd.DataFrame, end: date) -> pd.DataFrame:
    """Events fired on or before ``end`` with the account's situation on the crossing day and completion."""
    cols = ["account_id", "playbook", "crossing_date", "task_status", "task_completed_at", "due_at"]
    ev = events[[c for c in cols if c in events.columns]].copy()
    for c in cols:
        if c not in ev.columns:
            ev[c] = None
    ev["crossing_date"] = _dates(ev["crossing_date"])
    end_ts = pd.Timestamp(end)
    ev = ev[ev["crossing_date"] <= end_ts].reset_index(drop=True)
    completed_at = pd.to_datetime(ev["task_completed_at"], utc=True, errors="coerce")
    cutoff = pd.Timestamp(end + timedelta(days=1), tz="UTC")
    ev["completed"] = (ev["task_status"] == "COMPLETED") & completed_at.notna() & (completed_at < cutoff)
    due = pd.to_datetime(ev["due_at"], utc=True, errors="coerce")
    ev["late"] = ev["completed"] & due.notna() & (completed_at > due)
    sc = scores[["account_id", "as_of_date", "band", "segment", "trend_30d", "score"]].copy()
    sc["as_of_date"] = _dates(sc["as_of_date"])
    ev = ev.merge(sc.rename(columns={"as_of_date": "crossing_date"}), on=["account_id", "crossing_date"],
                  how="left")
    ev["trend_bucket"] = _buckets(ev["trend_30d"])
    return ev


def _recovery_flags(ev: pd.DataFrame, scores: pd.DataFrame, at_risk: Sequence[str], end: date) -> pd.Series:
    """Per event fired in an at-risk band whose window elapsed: did it leave the at-risk bands in time?"""
    out = pd.Series(np.nan, index=ev.index)
    eligible = ev["band"].isin(list(at_risk)) & (
        ev["crossing_date"] + pd.Timedelta(days=RECOVERY_DAYS) <= pd.Timestamp(end))
    if not eligible.any():
        return out
    sc = scores[["account_id", "as_of_date", "band"]].copy()
    sc["as_of_date"] = _dates(sc["as_of_date"])
    sc = sc[~sc["band"].isin(list(at_risk))]
    left = ev.loc[eligible, ["account_id", "crossing_date"]].reset_index()
    pairs = left.merge(sc, on="account_id", how="inner")
    lag = (pairs["as_of_date"] - pairs["crossing_date"]).dt.days
    hit = pairs[(lag > 0) & (lag <= RECOVERY_DAYS)]["index"].unique()
    out[eligible] = 0.0
    out[out.index.isin(hit)] = 1.0
    return out


def _velocity(ev: pd.DataFrame, scores: pd.DataFrame, end: date) -> pd.Series:
    """Score points per 30 days from the crossing to VELOCITY_DAYS later (NaN where not yet known)."""
    out = pd.Series(np.nan, index=ev.index)
    target = ev["crossing_date"] + pd.Timedelta(days=VELOCITY_DAYS)
    ok = ev["score"].notna() & (target <= pd.Timestamp(end))
    if not ok.any():
        return out
    sc = scores[["account_id", "as_of_date", "score"]].dropna().copy()
    sc["as_of_date"] = _dates(sc["as_of_date"])
    left = pd.DataFrame({"index": ev.index[ok], "account_id": ev.loc[ok, "account_id"].to_numpy(),
                         "target": target[ok].to_numpy(), "start": ev.loc[ok, "score"].to_numpy()})
    pairs = left.merge(sc, on="account_id", how="inner")
    pairs["gap"] = (pairs["as_of_date"] - pairs["target"]).dt.days.abs()
    pairs = pairs[pairs["gap"] <= TOLERANCE_DAYS].sort_values(["index", "gap", "as_of_date"])
    first = pairs.drop_duplicates("index")
    out[first["index"].to_numpy()] = (first["score"] - first["start"]).to_numpy() * 30.0 / VELOCITY_DAYS
    return out


def _first_outcome(units: pd.DataFrame, outcomes: pd.DataFrame, positive: Iterable[str], end: date) -> pd.Series:
    """1 churned/contracted, 0 renewed/expanded, NaN: no renewal resolved within the window by ``end``."""
    out = pd.Series(np.nan, index=units.index)
    if units.empty or outcomes.empty:
        return out
    oc = outcomes[["account_id", "renewal_date", "outcome"]].copy()
    oc["renewal_date"] = _dates(oc["renewal_date"])
    oc = oc[oc["renewal_date"] <= pd.Timestamp(end)]
    left = units[["account_id", "day"]].reset_index()
    pairs = left.merge(oc, on="account_id", how="inner")
    lag = (pairs["renewal_date"] - pairs["day"]).dt.days
    pairs = pairs[(lag > 0) & (lag <= CHURN_WINDOW_DAYS)].sort_values(["index", "renewal_date"])
    first = pairs.drop_duplicates("index")
    out[first["index"].to_numpy()] = first["outcome"].isin(list(positive)).astype(float).to_numpy()
    return out


def _controls(playbook: str, ev_all: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Days of accounts on which ``playbook`` never fired (up to the report's end): the first per stratum."""
    sc = scores[["account_id", "as_of_date", "band", "segment", "trend_30d"]].copy()
    sc["as_of_date"] = _dates(sc["as_of_date"])
    sc["trend_bucket"] = _buckets(sc["trend_30d"])
    fired = set(ev_all.loc[ev_all["playbook"] == playbook, "account_id"])
    sc = sc[~sc["account_id"].isin(fired)]
    sc = sc.sort_values(["account_id", "as_of_date"]).drop_duplicates(["account_id", "segment", "band",
                                                                       "trend_bucket"])
    return sc.rename(columns={"as_of_date": "day"})


def _churn(playbook: str, ev: pd.DataFrame, ev_all: pd.DataFrame, scores: pd.DataFrame, outcomes: pd.DataFrame,
           positive: Sequence[str], end: date, min_n: int) -> dict[str, Any]:
    strata = ["segment", "band", "trend_bucket"]
    treated = ev.rename(columns={"crossing_date": "day"})
    treated = treated.assign(y=_first_outcome(treated, outcomes, positive, end)).dropna(subset=["y", "band"])
    controls = _controls(playbook, ev_all, scores)
    controls = controls.assign(y=_first_outcome(controls, outcomes, positive, end)).dropna(subset=["y"])
    controls = controls.merge(treated[strata].drop_duplicates(), on=strata, how="inner")
    t_rate = _rate(int(treated["y"].sum()), len(treated), min_n)
    c_rate = _rate(int(controls["y"].sum()), len(controls), min_n)
    out: dict[str, Any] = {"window_days": CHURN_WINDOW_DAYS, "fired": t_rate, "comparable": c_rate,
                           "strata": int(len(treated[strata].drop_duplicates())) if len(treated) else 0}
    if t_rate["too_small"] or c_rate["too_small"]:
        out["too_small"] = True
        return out
    by_c = controls.groupby(strata)["y"].mean().rename("c")
    matched = treated.join(by_c, on=strata)
    matched = matched[matched["c"].notna()]
    out["comparable_standardised"] = float(matched["c"].mean()) if len(matched) else None
    out["matched_fired_n"] = int(len(matched))
    out["difference"] = (float(matched["y"].mean() - matched["c"].mean()) if len(matched) else None)
    out["too_small"] = False
    return out


def _mean(values: pd.Series, min_n: int) -> dict[str, Any]:
    v = values.dropna()
    if len(v) < min_n:
        return {"n": int(len(v)), "too_small": True}
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    half = Z95 * sd / math.sqrt(len(v))
    return {"n": int(len(v)), "mean": float(v.mean()), "ci_low": float(v.mean() - half),
            "ci_high": float(v.mean() + half), "too_small": False}


def playbook_effectiveness(events: pd.DataFrame, scores: pd.DataFrame, outcomes: pd.DataFrame, *, end: date,
                           at_risk_bands: Sequence[str], positive_outcomes: Sequence[str],
                           min_group_size: int) -> dict[str, Any]:
    """The plays section of the monthly report (see the module docstring for every definition)."""
    ev = prepare(events, scores, end)
    ev["recovered"] = _recovery_flags(ev, scores, at_risk_bands, end)
    ev["velocity"] = _velocity(ev, scores, end)
    min_n = int(min_group_size)
    rows = []
    for playbook, grp in ev.groupby("playbook", sort=True):
        done, open_ = grp[grp["completed"]], grp[~grp["completed"]]
        rec = grp["recovered"]
        rows.append({
            "playbook": str(playbook), "fired": int(len(grp)), "completed": int(grp["completed"].sum()),
            "completed_late": int(grp["late"].sum()),
            "recovery": {"days": RECOVERY_DAYS, "all": _rate(int(rec.sum()), int(rec.notna().sum()), min_n),
                         "completed": _rate(int(done["recovered"].sum()), int(done["recovered"].notna().sum()),
                                            min_n),
                         "left_open": _rate(int(open_["recovered"].sum()), int(open_["recovered"].notna().sum()),
                                            min_n)},
            "churn": _churn(str(playbook), grp, ev, scores, outcomes, positive_outcomes, end, min_n),
            "velocity": {"days": VELOCITY_DAYS, "all": _mean(grp["velocity"], min_n),
                         "completed": _mean(done["velocity"], min_n), "left_open": _mean(open_["velocity"], min_n)},
        })
    return {"as_of": end, "min_group_size": min_n, "playbooks": rows,
            "next_best_action": next_best_actions(ev, at_risk_bands, min_n)}


def next_best_actions(ev: pd.DataFrame, at_risk_bands: Sequence[str], min_n: int) -> list[dict[str, Any]]:
    """Per situation (band when fired x segment), the completed play with the best recovery, if the evidence
    holds (at least ``min_n`` completed plays with a known outcome, and at least one recovery: a play that
    recovered nobody is no best action); situations without one are left out."""
    known = ev[ev["completed"] & ev["recovered"].notna() & ev["band"].isin(list(at_risk_bands))]
    out = []
    for (band, segment), grp in known.groupby(["band", "segment"], sort=True):
        stats = grp.groupby("playbook")["recovered"].agg(["sum", "count"])
        stats = stats[(stats["count"] >= min_n) & (stats["sum"] > 0)]
        if stats.empty:
            continue
        stats = stats.assign(rate=stats["sum"] / stats["count"]).sort_values(["rate", "count"],
                                                                            ascending=[False, False])
        best, row = stats.index[0], stats.iloc[0]
        out.append({"band": str(band), "segment": str(segment), "playbook": str(best),
                    "recovered": int(row["sum"]), "n": int(row["count"]), "rate": float(row["rate"]),
                    "compared": int(len(stats))})
    return out


def best_action_text(entry: dict[str, Any]) -> str:
    """The evidence line a task body carries, e.g. 'Save plan recovered 42% of 31 similar accounts ...'."""
    title = str(entry["playbook"]).replace("_", " ").capitalize()
    return (f"{title} recovered {round(100 * entry['rate'])}% of {entry['n']} similar accounts "
            f"({entry['band']}, {entry['segment']}) to Moderate or better within {RECOVERY_DAYS} days "
            f"when the task was completed.")


def best_action_for(table: Sequence[dict[str, Any]], band: str | None, segment: str | None) -> str | None:
    """The evidence line for an account's situation, or None where the evidence is thin (nothing claimed)."""
    for entry in table or []:
        if entry.get("band") == band and entry.get("segment") == segment:
            return best_action_text(entry)
    return None


def with_best_actions(events: pd.DataFrame, table: Sequence[dict[str, Any]] | None) -> pd.DataFrame:
    """Events whose payload names the next best action for the account's situation (band, segment), where
    the latest report's evidence holds one; others are left as they are (nothing claimed)."""
    if events.empty or not table or "payload" not in events.columns:
        return events
    out = events.copy()
    payloads = []
    for payload in out["payload"]:
        if isinstance(payload, dict):
            text = best_action_for(table, payload.get("band"), payload.get("segment"))
            payload = {**payload, "next_best_action": text} if text else payload
        payloads.append(payload)
    out["payload"] = payloads
    return out
