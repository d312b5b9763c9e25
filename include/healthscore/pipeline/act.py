"""Turn the champion's archived scores into action: playbook events, CRM tasks, digests, CRM fields.

Crossings are decided against the archive (never a recomputation), every event is stored with its
idempotency key before anything is sent, and shadow (challenger) scores never get here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.batch import Batch
from healthscore.config import ModelConfig
from healthscore.pipeline.score import registered_models
from healthscore.sources.base import HttpClient
from healthscore.warehouse import pointintime
from healthscore.warehouse.models import (
    AccountSignals,
    AccuracyReport,
    HealthScore,
    PlaybookEvent,
    ScoreOverride,
)

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["account_id", "as_of_date", "score", "band", "trend_30d", "segment", "lifecycle_stage",
                 "dimension_scores", "attribution", "override_band", "override_score", "override_id", "model_version",
                 "momentum"]
# What the replay reads from earlier days (playbooks.frames.build_grid): the state, not the JSON breakdowns
# that only today's rows put into event payloads.
HISTORY_COLUMNS = ["account_id", "as_of_date", "score", "band", "segment", "lifecycle_stage", "override_band",
                   "override_score", "model_version"]
# What a cooldown reads from earlier events (playbooks.rules._reference_events).
PAST_EVENT_COLUMNS = ("account_id", "playbook", "crossing_date", "status")


def scores_query(version: str, start: Any, end: Any, columns: list[str] = SCORE_COLUMNS) -> sa.Select:
    """The champion's archived (non-shadow) rows dated ``start``..``end``."""
    table = HealthScore.__table__
    return sa.select(*[table.c[c] for c in columns]).where(
        table.c.model_version == version, table.c.is_shadow.is_(False),
        table.c.as_of_date >= start, table.c.as_of_date <= end)


def _scores(conn: sa.Connection, version: str, start: Any, end: Any,
            columns: list[str] = SCORE_COLUMNS) -> pd.DataFrame:
    rows = conn.execute(scores_query(version, start, end, columns)).mappings().all()
    return pd.DataFrame(rows, columns=columns)


def _account_context(conn: sa.Connection, as_of_date: Any) -> pd.DataFrame:
    """Owner, ARR, renewal date and name of each account, as of the scored date."""
    table = AccountSignals.__table__
    rows = conn.execute(sa.select(table.c.account_id, table.c.owner_id, table.c.arr_cents, table.c.renewal_date)
                        .where(table.c.as_of_date == as_of_date)).mappings().all()
    frame = pd.DataFrame(rows, columns=["account_id", "owner_id", "arr_cents", "renewal_date"])
    names = {company["id"]: (company.get("properties") or {}).get("name")
             for company in pointintime.latest(conn, "hubspot", "companies", as_of_date)}
    frame["account_name"] = frame["account_id"].map(names)
    return frame


def _events(conn: sa.Connection, *where: Any, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    from healthscore.playbooks.rules import EVENT_COLUMNS

    columns = EVENT_COLUMNS if columns is None else columns
    table = PlaybookEvent.__table__
    rows = conn.execute(sa.select(*[table.c[c] for c in columns]).where(*where)).mappings().all()
    return pd.DataFrame(rows, columns=list(columns))


def past_events_where(model: ModelConfig, day: Any) -> list[Any]:
    """Earlier events that can still hold a cooldown today: an older one cannot, so the read stays as long
    as the longest cooldown, however many events the warehouse holds."""
    horizon = day - timedelta(days=cooldown_horizon(model))
    return [PlaybookEvent.crossing_date < day, PlaybookEvent.crossing_date >= horizon]


def cooldown_horizon(model: ModelConfig) -> int:
    """Days back an earlier event can still hold a cooldown of one of the model's playbooks (0: none)."""
    return max((model.cooldown_days_for(rule_id) for rule_id in model.playbooks.rules), default=0)


def best_actions(conn: sa.Connection, version: str, before: Any) -> list[dict[str, Any]]:
    """The next-best-action table of the newest monthly report that ended before ``before`` (empty if none)."""
    table = AccuracyReport.__table__
    rows = conn.execute(sa.select(table.c.metrics).where(table.c.model_version == version,
                                                         table.c.period_end < before)
                        .order_by(table.c.period_end.desc(), table.c.horizon_days).limit(12)).scalars()
    for metrics in rows:
        metrics = json.loads(metrics) if isinstance(metrics, str) else metrics
        if isinstance(metrics, dict) and isinstance(metrics.get("playbooks"), dict):
            return list(metrics["playbooks"].get("next_best_action") or [])
    return []


def decide_and_record(engine: Engine, batch: Batch) -> Any:
    """Decide today's events for the champion and store them (pending/deferred/suppressed) before sending."""
    from healthscore.evaluation.effectiveness import with_best_actions
    from healthscore.playbooks.delivery import record_events
    from healthscore.playbooks.rules import decide_playbook_events

    champion = next((model for model, shadow in registered_models(engine) if not shadow), None)
    if champion is None:
        raise RuntimeError("no champion model version is registered; run the scoring task first")
    day = batch.batch_date
    with engine.connect() as conn:
        context = _account_context(conn, day)
        today = _scores(conn, champion.version, day, day).merge(context, on="account_id", how="left")
        lookback = timedelta(days=champion.playbooks.lookback_days)  # what decide_playbook_events replays
        history = _scores(conn, champion.version, day - lookback, day - timedelta(days=1), HISTORY_COLUMNS)
        past = _events(conn, *past_events_where(champion, day), columns=PAST_EVENT_COLUMNS)
        deferred = _events(conn, PlaybookEvent.status == "deferred", PlaybookEvent.crossing_date < day)
        evidence = best_actions(conn, champion.version, day)
    decision = decide_playbook_events(today, history, past, champion, deferred=deferred, as_of_date=day)
    decision = replace(decision, events=with_best_actions(decision.events, evidence))  # "recovered 42% of 31 ..."
    stored = record_events(engine, decision)
    log.info("playbooks %s: %d pending, %d deferred, %d suppressed (%d new rows)", day, len(decision.pending),
             len(decision.deferred), len(decision.suppressed), stored)
    return decision


def act(engine: Engine, batch: Batch, hubspot: HttpClient, outbox_path: Path,
        fallback_recipient: str | None = None) -> dict[str, Any]:
    """Events -> CRM tasks (exactly once) -> the status of the tasks created before (were the plays done?)
    -> digests and alerts to the owners' emails, delivered where a transport is configured
    (``healthscore.notify.delivery``) -> CRM health fields."""
    from healthscore.notify.delivery import deliver_outbox, owner_recipients
    from healthscore.playbooks.delivery import deliver_pending, publish_scores
    from healthscore.playbooks.followup import read_task_statuses
    from healthscore.playbooks.notifiers import send_critical_alerts, send_daily_digests

    decision = decide_and_record(engine, batch)
    delivery = deliver_pending(engine, hubspot, as_of=batch.as_of)
    followup = read_task_statuses(engine, hubspot, as_of=batch.as_of)  # were earlier plays done?
    recipients = owner_recipients(engine, batch.batch_date, fallback_recipient)
    digests = send_daily_digests(engine, decision.pending, outbox_path, batch.batch_date, recipients=recipients)
    roles = {"cs_leader": fallback_recipient, "executive_sponsor": fallback_recipient} if fallback_recipient else {}
    alerts = send_critical_alerts(engine, decision.pending, outbox_path, batch.batch_date, recipients=roles)
    notified = deliver_outbox(engine)
    champion = next(model for model, shadow in registered_models(engine) if not shadow)
    with engine.connect() as conn:
        today = _with_override_reasons(conn, _scores(conn, champion.version, batch.batch_date, batch.batch_date))
    published = publish_scores(engine, hubspot, today)
    summary = {"pending": len(decision.pending), "deferred": len(decision.deferred),
               "suppressed": len(decision.suppressed), "delivery": _plain(asdict(delivery)),
               "task_followup": _plain(asdict(followup)), "digests": digests, "alerts": alerts,
               "published": published.published,
               "publish": _plain(asdict(published)), "notifications_delivered": len(notified.delivered)}
    log.info("act %s: %s", batch.batch_date, summary)
    return summary


def _with_override_reasons(conn: sa.Connection, scores: pd.DataFrame) -> pd.DataFrame:
    """``override_reason`` beside each row's ``override_id`` (the CRM shows why a CSM overrode the score)."""
    table = ScoreOverride.__table__
    ids = sorted({int(i) for i in scores["override_id"].dropna()})
    reasons: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        reasons.update(conn.execute(sa.select(table.c.id, table.c.reason).where(table.c.id.in_(chunk))).all())
    scores = scores.copy()
    scores["override_reason"] = [None if pd.isna(i) else reasons.get(int(i)) for i in scores["override_id"]]
    return scores


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
