"""Playbook decision engine: which CSM tasks today's champion scores call for. Pure, no I/O.

``decide_playbook_events(today, history, past_events, model, deferred=...)`` returns the day's events;
the lead's delivery code turns them into CRM tasks, keyed by ``idempotency_key`` so reruns are harmless.

State and crossings
    The previous state is the ARCHIVED one (``history`` rows), never a recomputation: each row's
    stored ``band``/``score`` (or override) is replayed, only the margin edges come from the config.
    Only champion rows count: rows with ``is_shadow`` true are dropped from ``today`` and ``history``
    first, and ``today`` must hold one as-of date and one (non-shadow) model version. History is read
    for a fixed window ``[D - lookback, D)`` (longer if a sustained/drop rule needs it), so passing
    more history, or re-running a past day during a backfill, yields the same events. Rows dated on or
    after ``D`` in ``history``/``past_events``/``deferred`` are ignored for the same reason. The replay
    takes the first archived band in the window as already confirmed, so an account's first day (or
    a window that opens mid-move) never fires by itself.

Effective state and overrides
    If ``override_band`` is set, it IS the band for crossings (what the CSM is told); if
    ``override_score`` is set it is the score for score rules. A human-set value is not noise, so on
    such a day margin and persistence are waived: an override into At Risk fires ``save_plan`` at once.
    When it expires, the next day compares against the archived override state like any other day.

Hysteresis (per rule: ``model.hysteresis_for(rule_id)``, global defaults + overrides)
    All comparisons use the score rounded half-up (the number shown). With margin ``m`` a band is
    entered from above only when the score is below the band's upper line minus ``m`` (At Risk for a
    plain account: < 50 - 2, i.e. 47 or less) and left upwards only at the line plus ``m`` (>= 52).
    With persistence ``N`` the move must hold on N consecutive archived observations including today
    (days with no archived score are skipped, they neither count nor break the run); 0 and 1 mean
    "today alone". See ``crossings`` for the exact machine. The same margin applies to score lines
    (``score_reached`` 80 with m=2 fires at 82 and re-arms below 78) and to drop sizes.

Triggers (detected by ``triggers.TriggerDetector``)
    band_entered B: confirmed band moved into B today from a better band (from any band for the top
        band). band_transition A->B: confirmed A yesterday, B today (a skip from Healthy to At Risk
        is not Healthy->Moderate). score_drop: rounded score is at least ``points`` below the highest
        archived score of the previous ``within_days`` days. score_reached X: score went to X or more.
        renewal_window: renewal in 0..days_before_renewal days and score below ``below_score``.
        These fire on the day the condition switches on. sustained_band B: confirmed band has been B
        for ``days`` days, today's archived band is B too, and the score is not in an alert-level
        decline (``momentum.alert_drop_points`` below its high of the last ``momentum.window_days``):
        nobody asks a sliding account for a reference. It is level-triggered, so with a cooldown it
        repeats every cooldown_days while the account stays there.

Cooldown, suppression, budget
    No event of a playbook for an account while an earlier one (from ``past_events`` or ``deferred``,
    any status except 'suppressed') is less than ``cooldown_days_for(rule)`` days old. A rule listed
    in another rule's ``suppresses`` is muted while that rule is "open" (it fired today or within its
    own cooldown), including events carried from earlier deferrals; muted events are returned in
    ``.suppressed`` (status 'suppressed') for audit, never as tasks. Then
    ``budget.apply_budget`` releases at most ``csm_daily_task_budget`` events per owner, highest
    ARR x severity first; the rest is deferred and must be passed back as ``deferred`` tomorrow.

Times
    The crossing instant is the end of the as-of day (00:00 UTC the day after), when its data is
    complete; ``due_at`` = that instant + ``sla_hours``, so the CSM gets the full SLA.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from healthscore.config.schema import ModelConfig, PlaybookRule, ScoreDrop, SustainedBand
from healthscore.playbooks.budget import apply_budget, escalate, overdue_levels, priority_score, rank_order
from healthscore.playbooks.frames import build_grid, is_missing, normalize_scores, to_date
from healthscore.playbooks.text import daily_digest, task_body, task_subject
from healthscore.playbooks.triggers import TriggerDetector

__all__ = [
    "EVENT_COLUMNS",
    "PlaybookDecision",
    "daily_digest",
    "decide_playbook_events",
    "idempotency_key",
    "task_body",
    "task_subject",
]

TOP_DIMENSION_DELTAS = 3
EVENT_COLUMNS: tuple[str, ...] = (
    "account_id",
    "playbook",
    "crossing_date",
    "model_version",
    "severity",
    "owner_id",
    "idempotency_key",
    "priority_score",
    "due_at",
    "status",
    "payload",
)
_NOT_COUNTED_FOR_COOLDOWN = frozenset({"suppressed"})


@dataclass(frozen=True)
class PlaybookDecision:
    """One day's decision: ``events`` to upsert (pending first, then deferred, each best first) and
    ``suppressed`` (muted by an open playbook; store for audit, never deliver)."""

    as_of_date: dt.date | None
    model_version: str | None
    events: pd.DataFrame
    suppressed: pd.DataFrame

    @property
    def pending(self) -> pd.DataFrame:
        """Events to deliver as CRM tasks now."""
        return self.events[self.events["status"] == "pending"].reset_index(drop=True)

    @property
    def deferred(self) -> pd.DataFrame:
        """Events held back by the CSM budget; pass them as ``deferred=`` to the next day's run."""
        return self.events[self.events["status"] == "deferred"].reset_index(drop=True)


def idempotency_key(account_id: str, playbook: str, crossing_date: dt.date, model_version: str) -> str:
    """The dedupe key the CRM task and the playbook_events row are upserted on."""
    return f"{account_id}|{playbook}|{crossing_date.isoformat()}|{model_version}"


def empty_events() -> pd.DataFrame:
    """Event frame with the full column contract and no rows."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in EVENT_COLUMNS})


# ------------------------------------------------------------------------------------------ helpers


def _json(value: Any) -> Any:
    """Make payload values JSON-column safe: numpy scalars, NaN, dates, nested containers."""
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if is_missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _parse_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def top_dimension_deltas(attribution: Any, n: int = TOP_DIMENSION_DELTAS) -> list[dict[str, Any]]:
    """Largest absolute dimension moves, from a list of {dimension, delta} or a {dimension: delta} map."""
    attribution = _parse_json(attribution)
    pairs: list[tuple[str, float]] = []
    if isinstance(attribution, dict):
        items = attribution.get("dimensions", attribution)
        if isinstance(items, list):
            attribution = items
        else:
            pairs = [(str(k), v) for k, v in items.items() if isinstance(v, int | float)]
    if isinstance(attribution, list | tuple | np.ndarray):
        for item in attribution:
            if isinstance(item, dict) and "dimension" in item and isinstance(item.get("delta"), int | float):
                pairs.append((str(item["dimension"]), item["delta"]))
    clean = [(d, float(v)) for d, v in pairs if not is_missing(v)]
    clean.sort(key=lambda p: (-abs(p[1]), p[0]))
    return [{"dimension": d, "delta": round(v, 1)} for d, v in clean[:n]]


def _crossing_instant(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1)


# ------------------------------------------------------------------------------------- inputs


def _today_rows(
    today: pd.DataFrame, as_of_date: dt.date | None
) -> tuple[dt.date | None, str | None, pd.DataFrame]:
    rows = normalize_scores(today, "today")
    dates = sorted({d.date() for d in rows["as_of_date"]})
    if len(dates) > 1:
        raise ValueError(f"today holds {len(dates)} as-of dates ({dates[0]}..{dates[-1]}); expected one")
    day = dates[0] if dates else as_of_date
    if as_of_date is not None and day != as_of_date:
        raise ValueError(f"as_of_date {as_of_date} does not match today's rows ({day})")
    current = rows[~rows["is_shadow"]]
    versions = sorted({v for v in current["model_version"] if v is not None})
    if len(versions) > 1:
        raise ValueError(f"today holds several non-shadow model versions {versions}; pass the champion's")
    dupes = current["account_id"][current["account_id"].duplicated()]
    if len(dupes):
        raise ValueError(f"today has several rows for account {dupes.iloc[0]!r}")
    return day, (versions[0] if versions else None), current.reset_index(drop=True)


def _span_days(model: ModelConfig, lookback_days: int) -> int:
    """Replay length: long enough for every rule's own look-back (sustained days, drop window)."""
    need = [int(lookback_days)]
    for rule in model.playbooks.rules.values():
        trig = rule.trigger
        if isinstance(trig, SustainedBand):
            need.append(trig.days + 1)
        elif isinstance(trig, ScoreDrop):
            need.append(trig.within_days + 1)
    return max(need)


def _archived_rows(
    history: pd.DataFrame | None, current: pd.DataFrame, day: dt.date, champion: str | None, span: int
) -> pd.DataFrame:
    """History inside the window, champion rows only, one row per (account, day)."""
    start = pd.Timestamp(day) - pd.Timedelta(days=span)
    hist = normalize_scores(
        history, "history", since=start, before=pd.Timestamp(day), accounts=set(current["account_id"])
    )
    hist = hist[~hist["is_shadow"]]
    rows = pd.concat([hist, current], ignore_index=True) if len(hist) else current.copy()
    # Two archived champions on one day (a promotion mid-history): prefer today's version, then the
    # highest version string, so the choice never depends on row order.
    rows = rows.assign(_mine=(rows["model_version"] == champion), _v=rows["model_version"].fillna(""))
    rows = rows.sort_values(
        ["account_id", "as_of_date", "_mine", "_v"], ascending=[True, True, False, False], kind="mergesort"
    )
    rows = rows.drop_duplicates(["account_id", "as_of_date"], keep="first")
    return rows.drop(columns=["_mine", "_v"]).reset_index(drop=True)


def _reference_events(
    past_events: pd.DataFrame | None, deferred: pd.DataFrame | None, day: dt.date
) -> dict[tuple[str, str], dt.date]:
    """Latest earlier crossing date per (account, playbook), from past events and carried deferrals."""
    latest: dict[tuple[str, str], dt.date] = {}
    for frame in (past_events, deferred):
        if frame is None or frame.empty:
            continue
        status = frame["status"] if "status" in frame.columns else pd.Series("pending", index=frame.index)
        for acc, pb, cd, st in zip(
            frame["account_id"], frame["playbook"], frame["crossing_date"], status, strict=True
        ):
            when = to_date(cd)
            if when is None or when >= day or str(st) in _NOT_COUNTED_FOR_COOLDOWN:
                continue
            key = (str(acc), str(pb))
            if key not in latest or when > latest[key]:
                latest[key] = when
    return latest


# -------------------------------------------------------------------------------------------- events


def _payload(
    row: pd.Series, rule_id: str, rule: PlaybookRule, detail: dict[str, Any], model: ModelConfig
) -> dict[str, Any]:
    notify = [r.value for r in rule.notify]
    h = model.hysteresis_for(rule_id)
    payload: dict[str, Any] = {
        "account_id": row["account_id"],
        "account_name": row["account_name"] if not is_missing(row["account_name"]) else None,
        "playbook": rule_id,
        "description": rule.description,
        "trigger": rule.trigger.model_dump(mode="json"),
        "as_of_date": row["as_of_date"].date(),
        "score": row["eff_score"],
        "band": row["eff_band"],
        "score_change": {"from": detail.pop("score_from", None), "to": detail.pop("score_to", None)},
        "band_change": {"from": detail.pop("band_from", None), "to": detail.pop("band_to", None)},
        "trend_30d": row["trend_30d"],
        "top_dimension_deltas": top_dimension_deltas(row["attribution"]),
        "dimension_scores": dims if isinstance(dims := _parse_json(row["dimension_scores"]), dict) else None,
        "arr_cents": int(row["arr_cents"]) if not is_missing(row["arr_cents"]) else None,
        "renewal_date": row["renewal_date"],
        "segment": row["segment"],
        "lifecycle_stage": row["lifecycle_stage"],
        "owner_id": row["owner_id"],
        "severity": rule.severity.value,
        "original_severity": rule.severity.value,
        "sla_hours": rule.sla_hours,
        "cooldown_days": model.cooldown_days_for(rule_id),
        "hysteresis": {"margin_points": h.margin_points, "persistence_days": h.persistence_days},
        "suggested_actions": list(rule.actions),
        "notify": notify,
        "notify_targets": [r for r in notify if r != "csm"],
        "override": (
            {"band": row["override_band"], "score": row["override_score"]}
            if row["override_band"] is not None or not is_missing(row["override_score"])
            else None
        ),
        "model_version": row["model_version"],
        "detail": detail,
    }
    if row["owner_id"] is None:
        payload["unassigned"] = True
    return _json(payload)


def _new_event(
    row: pd.Series, rule_id: str, rule: PlaybookRule, detail: dict[str, Any], day: dt.date, model: ModelConfig
) -> dict[str, Any]:
    payload = _payload(row, rule_id, rule, dict(detail), model)
    return {
        "account_id": row["account_id"],
        "playbook": rule_id,
        "crossing_date": day,
        "model_version": row["model_version"],
        "severity": rule.severity.value,
        "owner_id": row["owner_id"],
        "idempotency_key": idempotency_key(row["account_id"], rule_id, day, row["model_version"]),
        "priority_score": priority_score(row["arr_cents"], rule.severity.value),
        "due_at": _crossing_instant(day) + pd.Timedelta(hours=rule.sla_hours),
        "status": "pending",
        "payload": payload,
    }


def _carried(deferred: pd.DataFrame | None, day: dt.date, model: ModelConfig) -> list[dict[str, Any]]:
    """Earlier deferred events, re-prioritised for today; overdue ones escalate, none is dropped."""
    if deferred is None or deferred.empty:
        return []
    missing = [
        c for c in EVENT_COLUMNS if c not in deferred.columns and c not in ("status", "priority_score")
    ]
    if missing:
        raise ValueError(f"deferred is missing event columns: {', '.join(missing)}")
    decided_at = _crossing_instant(day)
    out: dict[str, dict[str, Any]] = {}
    for rec in deferred.to_dict("records"):
        crossing = to_date(rec["crossing_date"])
        if crossing is None or crossing >= day:
            continue
        payload = copy.deepcopy(_parse_json(rec["payload"])) if rec["payload"] is not None else {}
        payload = payload if isinstance(payload, dict) else {}
        original = str(payload.get("original_severity") or rec["severity"] or "low")
        rule = model.playbooks.rules.get(str(rec["playbook"]))
        sla = payload.get("sla_hours") or (rule.sla_hours if rule else 24)
        due = pd.Timestamp(rec["due_at"])
        due = due.tz_localize("UTC") if due.tzinfo is None else due.tz_convert("UTC")
        severity = escalate(original, overdue_levels(due, decided_at, sla))
        payload.update(
            original_severity=original,
            severity=severity,
            deferred_since=payload.get("deferred_since") or crossing.isoformat(),
        )
        if severity != original:
            payload["escalated_from"] = original
        key = str(rec["idempotency_key"])
        out.setdefault(
            key,
            {
                "account_id": str(rec["account_id"]),
                "playbook": str(rec["playbook"]),
                "crossing_date": crossing,
                "model_version": str(rec["model_version"]),
                "severity": severity,
                "owner_id": None if is_missing(rec["owner_id"]) else str(rec["owner_id"]),
                "idempotency_key": key,
                "priority_score": priority_score(payload.get("arr_cents"), severity),
                "due_at": due,
                "status": "deferred",
                "payload": payload,
            },
        )
    return [out[k] for k in sorted(out)]


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    if not records:
        return empty_events()
    frame = pd.DataFrame.from_records(records, columns=list(EVENT_COLUMNS))
    frame["priority_score"] = frame["priority_score"].astype(float)
    frame["due_at"] = pd.to_datetime(frame["due_at"], utc=True)
    return frame


# ---------------------------------------------------------------------------------------------- main


def _open_suppressors(
    accounts: list[str],
    fired: dict[str, dict[str, dict[str, Any]]],
    cooling: Callable[[str, str], bool],
    model: ModelConfig,
) -> dict[tuple[str, str], str]:
    """(account, muted rule) -> the rule muting it: a suppressor that fires today or is in cooldown."""
    muted_by: dict[tuple[str, str], str] = {}
    for rule_id in sorted(model.playbooks.rules):
        for target in model.playbooks.rules[rule_id].suppresses:
            for acc in accounts:
                if (acc, target) not in muted_by and (acc in fired.get(rule_id, {}) or cooling(acc, rule_id)):
                    muted_by[(acc, target)] = rule_id
    return muted_by


def _release(pool: pd.DataFrame, day: dt.date, budget: int) -> pd.DataFrame:
    """Budget the pool, note deferral/release dates in payloads, pending rows first."""
    decided = apply_budget(pool, budget)
    if decided.empty:
        return empty_events()
    for payload, status in zip(decided["payload"], decided["status"], strict=True):
        if status == "deferred":
            payload.setdefault("deferred_since", day.isoformat())
        elif "deferred_since" in payload:
            payload["released_on"] = day.isoformat()
    order = decided["status"].map({"pending": 0, "deferred": 1})
    return (
        decided.assign(_s=order).sort_values("_s", kind="mergesort").drop(columns="_s").reset_index(drop=True)
    )


def decide_playbook_events(
    today: pd.DataFrame,
    history: pd.DataFrame | None,
    past_events: pd.DataFrame | None,
    model: ModelConfig,
    *,
    deferred: pd.DataFrame | None = None,
    as_of_date: dt.date | None = None,
    lookback_days: int | None = None,
) -> PlaybookDecision:
    """Decide today's playbook events; deterministic, so reruns and backfills give identical keys.

    ``deferred``: events returned as deferred by the previous run(s); they are re-ranked with today's.
    ``as_of_date`` is only needed when ``today`` is empty but deferred events must still be carried.
    ``lookback_days`` (default: the model's ``playbooks.lookback_days``) must match the history passed.
    """
    day, champion, current = _today_rows(today, as_of_date)
    if day is None:
        if deferred is not None and not deferred.empty:
            raise ValueError("today is empty: pass as_of_date to carry the deferred events")
        return PlaybookDecision(None, None, empty_events(), empty_events())
    span = _span_days(model, model.playbooks.lookback_days if lookback_days is None else lookback_days)
    rows = _archived_rows(history, current, day, champion, span)
    accounts = sorted(current["account_id"])
    start = pd.Timestamp(day) - pd.Timedelta(days=span)
    detector = TriggerDetector(build_grid(rows, accounts, start, pd.Timestamp(day), model), model, {})
    fired: dict[str, dict[str, dict[str, Any]]] = {}
    for rule_id in sorted(model.playbooks.rules):
        rule = model.playbooks.rules[rule_id]
        if rule.enabled:
            fired[rule_id] = {accounts[a]: d for a, d in detector.detect(rule_id, rule).items()}

    latest = _reference_events(past_events, deferred, day)

    def cooling(acc: str, rule_id: str) -> bool:
        last = latest.get((acc, rule_id))
        return last is not None and (day - last).days < model.cooldown_days_for(rule_id)

    allowed = {
        rule_id: {acc: d for acc, d in hits.items() if not cooling(acc, rule_id)}
        for rule_id, hits in fired.items()
    }
    by_account = current.set_index("account_id", drop=False)
    events = [
        _new_event(
            by_account.loc[acc], rule_id, model.playbooks.rules[rule_id], allowed[rule_id][acc], day, model
        )
        for rule_id in sorted(allowed)
        for acc in sorted(allowed[rule_id])
    ]
    # Carried deferrals are muted too: no expansion task goes out once a save plan has opened.
    events += _carried(deferred, day, model)
    muted_by = _open_suppressors(sorted({e["account_id"] for e in events}), allowed, cooling, model)
    kept, muted = [], []
    for event in events:
        by = muted_by.get((event["account_id"], event["playbook"]))
        if by is None:
            kept.append(event)
        else:
            event["status"] = "suppressed"
            event["payload"]["suppressed_by"] = by
            muted.append(event)
    decided = _release(_frame(kept), day, model.playbooks.csm_daily_task_budget)
    return PlaybookDecision(day, champion, decided, rank_order(_frame(muted)))
