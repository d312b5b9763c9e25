"""Human-readable CRM task text and the per-CSM daily digest, built only from the event payload.

Plain text (HubSpot task bodies and e-mail digests render it as-is), ASCII arrows, integers for scores
as shown in the UI. Only payload fields are used, so no credential or internal secret can leak here.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

_ROLE_NAMES = {
    "csm": "the CSM",
    "cs_leader": "the CS leader",
    "exec_sponsor": "our executive sponsor",
    "account_executive": "the account executive",
    "support_lead": "the support lead",
}


def playbook_title(playbook: str) -> str:
    """'save_plan' -> 'Save plan'."""
    return playbook.replace("_", " ").strip().capitalize()


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def fmt_score(value: Any) -> str:
    """Rounded half-up like the band lookup, so the text matches the score in the UI."""
    f = _num(value)
    return "n/a" if f is None else str(math.floor(f + 0.5))


def fmt_delta(value: Any) -> str:
    """Signed one-decimal change, e.g. '-12.0'."""
    f = _num(value)
    return "n/a" if f is None else f"{f:+.1f}"


def fmt_arr(cents: Any) -> str:
    """ARR is stored in integer cents (USD in the default model); shown as whole dollars."""
    f = _num(cents)
    return "unknown" if f is None else f"${f / 100:,.0f}"


def _field(event: Mapping[str, Any] | pd.Series, name: str) -> Any:
    value = event.get(name) if hasattr(event, "get") else None
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _payload(event: Mapping[str, Any] | pd.Series) -> dict[str, Any]:
    payload = _field(event, "payload")
    return payload if isinstance(payload, dict) else {}


def _name(p: Mapping[str, Any]) -> str:
    return str(p.get("account_name") or p.get("account_id") or "unknown account")


def task_subject(event: Mapping[str, Any] | pd.Series) -> str:
    """One line for the CRM task title, e.g. 'Save plan: Acme Corp entered At Risk (78 -> 48)'."""
    p = _payload(event)
    playbook = str(_field(event, "playbook") or p.get("playbook") or "playbook")
    title, name = playbook_title(playbook), _name(p)
    trig = p.get("trigger") or {}
    sc, bc, detail = p.get("score_change") or {}, p.get("band_change") or {}, p.get("detail") or {}
    move = f"({fmt_score(sc.get('from'))} -> {fmt_score(sc.get('to'))})"
    kind = trig.get("type")
    if kind == "band_entered":
        text = f"{name} entered {bc.get('to') or trig.get('band')} {move}"
    elif kind == "band_transition":
        text = f"{name} slipped from {bc.get('from')} to {bc.get('to')} {move}"
    elif kind == "score_drop":
        text = f"{name} dropped {fmt_score(detail.get('drop_points'))} points within {detail.get('within_days')} days {move}"
    elif kind == "score_reached":
        text = f"{name} reached {fmt_score(sc.get('to'))} (from {fmt_score(sc.get('from'))})"
    elif kind == "renewal_window":
        text = f"{name} renews in {detail.get('days_to_renewal')} days at score {fmt_score(sc.get('to'))}"
    elif kind == "sustained_band":
        text = f"{name} {bc.get('to') or trig.get('band')} for {detail.get('days_in_band')} days (score {fmt_score(sc.get('to'))})"
    else:
        text = f"{name} {move}"
    return f"{title}: {text}"


def _date_text(value: Any) -> str:
    if value is None:
        return "n/a"
    ts = pd.Timestamp(value)
    return ts.strftime("%Y-%m-%d %H:%M UTC") if ts.tzinfo is not None else ts.strftime("%Y-%m-%d")


def task_body(event: Mapping[str, Any] | pd.Series) -> str:
    """Multi-line task description: why (score, band, drivers), what (actions), by when, who else."""
    p = _payload(event)
    sc, bc = p.get("score_change") or {}, p.get("band_change") or {}
    lines = [str(p.get("description") or "").strip()]
    lines.append(
        f"Account: {_name(p)} ({p.get('account_id')}), segment {p.get('segment') or 'n/a'}, "
        f"stage {p.get('lifecycle_stage') or 'n/a'}."
    )
    lines.append(
        f"Score: {fmt_score(sc.get('from'))} -> {fmt_score(sc.get('to'))}; band: {bc.get('from') or 'n/a'} -> "
        f"{bc.get('to') or 'n/a'}; 30-day trend {fmt_delta(p.get('trend_30d'))} (as of {p.get('as_of_date')})."
    )
    renewal = p.get("renewal_date")
    lines.append(f"ARR: {fmt_arr(p.get('arr_cents'))}; renewal: {renewal or 'not on record'}.")
    deltas = p.get("top_dimension_deltas") or []
    if deltas:
        lines.append("Biggest changes by dimension:")
        lines += [f"  - {d['dimension']}: {fmt_delta(d.get('delta'))}" for d in deltas]
    if p.get("override"):
        o = p["override"]
        lines.append(
            f"Note: a manual override is active (band {o.get('band') or '-'}, score {fmt_score(o.get('score'))})."
        )
    lines.append("Suggested actions:")
    lines += [f"  {i}. {a}" for i, a in enumerate(p.get("suggested_actions") or [], start=1)]
    if p.get("next_best_action"):  # only where the monthly report's evidence holds one
        lines.append(f"What worked for similar accounts: {p['next_best_action']}")
    targets = p.get("notify_targets") or []
    if targets:
        lines.append("Also notify: " + ", ".join(_ROLE_NAMES.get(t, t) for t in targets) + ".")
    severity = _field(event, "severity") or p.get("severity")
    lines.append(
        f"Severity: {severity}; due by {_date_text(_field(event, 'due_at'))} ({p.get('sla_hours')}h SLA)."
    )
    if p.get("escalated_from"):
        lines.append(f"Escalated from {p['escalated_from']}: this task waited past its due time.")
    if p.get("deferred_since"):
        lines.append(f"Deferred since {p['deferred_since']} because the daily task budget was full.")
    lines.append(f"Ref: {_field(event, 'idempotency_key')} (model {p.get('model_version')}).")
    return "\n".join(line for line in lines if line)


def daily_digest(
    events: pd.DataFrame, owner_id: str | None, *, as_of: dt.date | None = None
) -> tuple[str, str]:
    """(subject, body) summarising one CSM's events of the day: released tasks first, then deferred."""
    if events is None or events.empty:
        mine = pd.DataFrame(columns=["status"])
    else:
        owners = events["owner_id"].map(lambda o: o if isinstance(o, str) else None)
        mine = events[owners == owner_id]
    pending = mine[mine["status"] == "pending"]
    waiting = mine[mine["status"] == "deferred"]
    if as_of is None and not mine.empty:
        as_of = max(pd.Timestamp(d).date() for d in mine["crossing_date"])
    day = as_of.isoformat() if as_of is not None else "today"
    if mine.empty:
        return f"Customer health {day}: no new tasks", "No playbook was triggered for your accounts today."
    urgent = int(pending["severity"].isin(["critical", "high"]).sum()) if not pending.empty else 0
    subject = f"Customer health {day}: {len(pending)} new task{'s' if len(pending) != 1 else ''}"
    if urgent:
        subject += f" ({urgent} urgent)"
    if len(waiting):
        subject += f", {len(waiting)} deferred"
    body = [f"Playbook tasks for your accounts, as of {day}, most important first."]
    if not pending.empty:
        body.append("")
        body.append(f"New tasks ({len(pending)}):")
        for _, ev in pending.iterrows():
            body.append(
                f"  - [{str(ev['severity']).upper()}] {task_subject(ev)}; due {_date_text(ev['due_at'])}"
            )
    if not waiting.empty:
        body.append("")
        body.append(f"Deferred to a later day because of the daily budget ({len(waiting)}):")
        for _, ev in waiting.iterrows():
            body.append(f"  - [{str(ev['severity']).upper()}] {task_subject(ev)}")
    body.append("")
    body.append("Details and suggested actions are in each CRM task.")
    return subject, "\n".join(body)
