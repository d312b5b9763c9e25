"""What each Customer Health page shows, read from the warehouse with SQLAlchemy.

Every function takes a connection and returns plain data (dicts, lists, dataclasses) for the templates; the
figures are aggregated in SQL (GROUP BY on the champion's rows of one date), so a page costs a few indexed
queries whatever the portfolio size. Scores are the champion's, never shadow rows. Account names come from the
newest HubSpot company record landed by the date, read only for the accounts a page lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa

from healthscore.config import ModelConfig, model_config_from_dict
from healthscore.warehouse import pointintime
from healthscore.warehouse.models import (
    AccountSignals,
    AccuracyReport,
    BatchReconciliation,
    HealthScore,
    ModelVersion,
    PlaybookEvent,
    QualityResult,
    Quarantine,
    ScoreOverride,
)

H = HealthScore.__table__
S = AccountSignals.__table__
E = PlaybookEvent.__table__
O = ScoreOverride.__table__  # noqa: E741 - the table, as H/S/E
TREND_DAYS = 30
OPEN_EVENT_STATUSES = ("pending", "deferred", "sent", "failed")


@dataclass(frozen=True)
class Context:
    """The champion model and the dates a page compares: the latest scored date and ~30 days before it."""

    version: str | None
    model: ModelConfig | None
    latest: date | None
    previous: date | None

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.model.bands] if self.model else []

    @property
    def at_risk_bands(self) -> list[str]:
        """The bands below the second (At Risk, Critical by default): what At Risk ARR counts."""
        return self.band_names[2:]

    @property
    def band_colors(self) -> dict[str, str]:
        return {b.name: (b.color or "#888888") for b in self.model.bands} if self.model else {}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def champion(conn: sa.Connection) -> tuple[str | None, ModelConfig | None]:
    row = conn.execute(sa.select(ModelVersion.version, ModelVersion.config_yaml)
                       .where(ModelVersion.role == "champion")).first()
    if row is None:
        return None, None
    return row.version, model_config_from_dict(json.loads(row.config_yaml), f"model_versions[{row.version}]")


def _champion_rows(version: str, day: date) -> list[Any]:
    return [H.c.model_version == version, H.c.as_of_date == day, H.c.is_shadow.is_(False)]


def context(conn: sa.Connection) -> Context:
    version, model = champion(conn)
    if version is None:
        return Context(None, None, None, None)
    champion_rows = sa.and_(H.c.model_version == version, H.c.is_shadow.is_(False))
    latest = conn.execute(sa.select(sa.func.max(H.c.as_of_date)).where(champion_rows)).scalar()
    previous = None
    if latest is not None:
        previous = conn.execute(sa.select(sa.func.max(H.c.as_of_date)).where(
            champion_rows, H.c.as_of_date <= latest - timedelta(days=TREND_DAYS))).scalar()
    return Context(version, model, latest, previous)


def _joined(version: str, day: date) -> Any:
    """Champion rows of a date with the account's ARR, renewal and owner of the same date."""
    return (sa.select(H, S.c.arr_cents, S.c.renewal_date, S.c.owner_id)
            .select_from(H.outerjoin(S, sa.and_(S.c.account_id == H.c.account_id, S.c.as_of_date == H.c.as_of_date)))
            .where(*_champion_rows(version, day)))


# --------------------------------------------------------------------------------------------- portfolio


@dataclass
class Group:
    """Accounts and ARR of one band/segment/cell now and ~30 days ago."""

    key: str
    accounts: int = 0
    arr_cents: int = 0
    accounts_before: int | None = None
    arr_cents_before: int | None = None
    at_risk_accounts: int = 0
    average_score: float | None = None

    @property
    def accounts_delta(self) -> int | None:
        return None if self.accounts_before is None else self.accounts - self.accounts_before

    @property
    def arr_delta_cents(self) -> int | None:
        return None if self.arr_cents_before is None else self.arr_cents - self.arr_cents_before


@dataclass
class Portfolio:
    ctx: Context
    bands: list[Group]
    segments: list[Group]
    matrix: dict[str, Group]
    at_risk_arr_cents: int
    at_risk_arr_cents_before: int | None
    at_risk_accounts: int
    total_accounts: int
    total_arr_cents: int
    unscored: int
    overrides_active: int


def _cells(conn: sa.Connection, version: str, day: date, at_risk: Sequence[str]) -> list[Any]:
    """Accounts, ARR, score sum/count and at-risk count per (band, segment, value segment) on one date: one
    aggregate over the champion's rows, folded into every grouping a page shows (a few hundred cells at most)."""
    band, segment, cell = (sa.func.coalesce(c, "unscored") for c in (H.c.band, H.c.segment, H.c.value_segment))
    query = (sa.select(band.label("band"), segment.label("segment"), cell.label("cell"), sa.func.count().label("n"),
                       sa.func.coalesce(sa.func.sum(S.c.arr_cents), 0).label("arr"),
                       sa.func.sum(sa.case((H.c.band.in_(at_risk), 1), else_=0)).label("risky"),
                       sa.func.sum(H.c.score).label("score_sum"), sa.func.count(H.c.score).label("scored"))
             .select_from(H.outerjoin(S, sa.and_(S.c.account_id == H.c.account_id, S.c.as_of_date == H.c.as_of_date)))
             .where(*_champion_rows(version, day)).group_by(band, segment, cell))
    return conn.execute(query).all()


def _grouped(cells: list[Any], key: str) -> dict[str, Group]:
    groups: dict[str, Group] = {}
    sums: dict[str, tuple[float, int]] = {}
    for row in cells:
        name = getattr(row, key)
        group = groups.setdefault(name, Group(name))
        group.accounts += int(row.n)
        group.arr_cents += int(row.arr or 0)
        group.at_risk_accounts += int(row.risky or 0)
        total, count = sums.get(name, (0.0, 0))
        sums[name] = (total + float(row.score_sum or 0), count + int(row.scored or 0))
    for name, (total, count) in sums.items():
        groups[name].average_score = total / count if count else None
    return groups


def _merge(now: dict[str, Group], before: dict[str, Group] | None, order: Iterable[str]) -> list[Group]:
    keys = list(dict.fromkeys([*order, *sorted(now), *sorted(before or {})]))
    out = []
    for key in keys:
        group = now.get(key) or Group(key)
        if before is not None:
            old = before.get(key)
            group.accounts_before = old.accounts if old else 0
            group.arr_cents_before = old.arr_cents if old else 0
        if key in now or (before and key in before):
            out.append(group)
    return out


def portfolio(conn: sa.Connection) -> Portfolio:
    ctx = context(conn)
    if ctx.latest is None or ctx.version is None:
        return Portfolio(ctx, [], [], {}, 0, None, 0, 0, 0, 0, 0)
    risky = ctx.at_risk_bands
    now = _cells(conn, ctx.version, ctx.latest, risky)
    before = _cells(conn, ctx.version, ctx.previous, risky) if ctx.previous else None
    bands_now, segments_now, cells_now = (_grouped(now, k) for k in ("band", "segment", "cell"))
    bands_before, segments_before, cells_before = ((_grouped(before, k) for k in ("band", "segment", "cell"))
                                                   if before is not None else (None, None, None))
    from healthscore.scoring.bands import VALUE_SEGMENTS

    matrix = {g.key: g for g in _merge(cells_now, cells_before, VALUE_SEGMENTS)}
    bands = _merge(bands_now, bands_before, [*ctx.band_names, "unscored"])
    at_risk_arr = sum(g.arr_cents for g in bands if g.key in risky)
    at_risk_before = (sum(g.arr_cents_before or 0 for g in bands if g.key in risky)
                      if ctx.previous else None)
    overrides_active = conn.execute(sa.select(sa.func.count()).select_from(H).where(
        *_champion_rows(ctx.version, ctx.latest), H.c.override_id.is_not(None))).scalar() or 0
    return Portfolio(
        ctx, bands, _merge(segments_now, segments_before, ("enterprise", "mid_market", "smb")), matrix,
        at_risk_arr, at_risk_before, sum(g.accounts for g in bands if g.key in risky),
        sum(g.accounts for g in bands), sum(g.arr_cents for g in bands),
        next((g.accounts for g in bands if g.key == "unscored"), 0), int(overrides_active))


# --------------------------------------------------------------------------------------------- at risk


def account_names(conn: sa.Connection, account_ids: Iterable[str], day: date | None) -> dict[str, str]:
    """Company name per account from the newest HubSpot record landed by ``day`` (only these ids)."""
    ids = sorted({str(a) for a in account_ids})
    if not ids:
        return {}
    names: dict[str, str] = {}
    for company in pointintime.latest(conn, "hubspot", "companies", date.max if day is None else day, only=ids):
        name = (company.get("properties") or {}).get("name")
        if name:
            names[str(company["id"])] = str(name)
    return names


def _account_row(row: Any, names: dict[str, str]) -> dict[str, Any]:
    out = dict(row._mapping)
    out["name"] = names.get(out["account_id"], out["account_id"])
    for key in ("attribution", "dimension_scores", "contributions"):
        out[key] = _json(out.get(key))
    return out


def open_events(conn: sa.Connection, account_ids: Iterable[str], since: date) -> dict[str, list[dict[str, Any]]]:
    ids = sorted(set(account_ids))
    out: dict[str, list[dict[str, Any]]] = {a: [] for a in ids}
    if not ids:
        return out
    query = (sa.select(E.c.account_id, E.c.playbook, E.c.status, E.c.crossing_date, E.c.crm_task_id, E.c.due_at)
             .where(E.c.account_id.in_(ids), E.c.crossing_date >= since, E.c.status.in_(OPEN_EVENT_STATUSES))
             .order_by(E.c.crossing_date.desc()))
    for row in conn.execute(query):
        out[row.account_id].append(dict(row._mapping))
    return out


@dataclass
class AtRisk:
    ctx: Context
    accounts: list[dict[str, Any]]
    total_at_risk: int
    declining: list[dict[str, Any]]
    improving: list[dict[str, Any]]


def at_risk(conn: sa.Connection, limit: int = 25, movers: int = 10) -> AtRisk:
    ctx = context(conn)
    if ctx.latest is None or ctx.version is None:
        return AtRisk(ctx, [], 0, [], [])
    base = _joined(ctx.version, ctx.latest)
    risky = base.where(sa.or_(H.c.band.in_(ctx.at_risk_bands), H.c.override_band.in_(ctx.at_risk_bands)))
    rows = conn.execute(risky.order_by(S.c.arr_cents.desc().nulls_last(), H.c.account_id).limit(limit)).all()
    total = conn.execute(sa.select(sa.func.count()).select_from(risky.subquery())).scalar() or 0
    # Movers show no ARR: the champion's rows alone, without joining the whole portfolio's signals.
    scores = sa.select(H).where(*_champion_rows(ctx.version, ctx.latest))
    down = conn.execute(scores.where(H.c.trend_30d < 0).order_by(H.c.trend_30d, H.c.account_id).limit(movers)).all()
    up = conn.execute(scores.where(H.c.trend_30d > 0).order_by(H.c.trend_30d.desc(), H.c.account_id)
                      .limit(movers)).all()
    ids = [r.account_id for r in (*rows, *down, *up)]
    names = account_names(conn, ids, ctx.latest)
    events = open_events(conn, [r.account_id for r in rows], ctx.latest - timedelta(days=90))
    accounts = []
    for row in rows:
        item = _account_row(row, names)
        item["events"] = events.get(row.account_id, [])
        accounts.append(item)
    return AtRisk(ctx, accounts, int(total), [_account_row(r, names) for r in down],
                  [_account_row(r, names) for r in up])


# --------------------------------------------------------------------------------------------- account


@dataclass
class Account:
    ctx: Context
    account_id: str
    name: str
    latest: dict[str, Any] | None
    history: list[dict[str, Any]]
    signals: dict[str, Any] | None
    dimensions: list[dict[str, Any]]
    overrides: list[dict[str, Any]]
    events: list[dict[str, Any]]
    flags: list[str]
    thresholds: dict[str, float] = field(default_factory=dict)


def account_exists(conn: sa.Connection, account_id: str) -> bool:
    return conn.execute(sa.select(S.c.account_id).where(S.c.account_id == account_id).limit(1)).first() is not None


def override_status(row: dict[str, Any], today: date) -> str:
    if row.get("revoked_at") is not None:
        return "revoked"
    expires = row.get("expires_on")
    if expires is not None and expires <= today:
        return "expired"
    return "active"


def overrides_of(conn: sa.Connection, account_id: str | None, today: date, limit: int = 500) -> list[dict[str, Any]]:
    query = sa.select(O).order_by(O.c.created_at.desc(), O.c.id.desc()).limit(limit)
    if account_id is not None:
        query = query.where(O.c.account_id == account_id)
    out = []
    for row in conn.execute(query):
        item = dict(row._mapping)
        item["status"] = override_status(item, today)
        out.append(item)
    return out


def account(conn: sa.Connection, account_id: str, today: date) -> Account | None:
    """One account's page, or None when the warehouse has never seen it."""
    ctx = context(conn)
    if not account_exists(conn, account_id):
        return None
    history: list[dict[str, Any]] = []
    latest = None
    if ctx.version is not None:
        rows = conn.execute(sa.select(H.c.as_of_date, H.c.score, H.c.band, H.c.override_score, H.c.override_band)
                            .where(H.c.account_id == account_id, H.c.model_version == ctx.version,
                                   H.c.is_shadow.is_(False)).order_by(H.c.as_of_date)).all()
        history = [dict(r._mapping) for r in rows]
        last = conn.execute(_joined(ctx.version, ctx.latest).where(H.c.account_id == account_id)).first() \
            if ctx.latest else None
        if last is None and history:
            last = conn.execute(_joined(ctx.version, history[-1]["as_of_date"])
                                .where(H.c.account_id == account_id)).first()
        latest = _account_row(last, {}) if last is not None else None
    sig = conn.execute(sa.select(S).where(S.c.account_id == account_id).order_by(S.c.as_of_date.desc())
                       .limit(1)).first()
    signals = dict(sig._mapping) if sig else None
    if signals:
        signals["signals"] = _json(signals["signals"]) or {}
        signals["dimension_sources"] = _json(signals["dimension_sources"]) or {}
    day = ctx.latest or (signals["as_of_date"] if signals else None)
    name = account_names(conn, [account_id], day).get(account_id, account_id)
    events = [dict(r._mapping) for r in conn.execute(
        sa.select(E.c.id, E.c.playbook, E.c.crossing_date, E.c.severity, E.c.status, E.c.crm_task_id, E.c.sent_at,
                  E.c.due_at, E.c.last_error).where(E.c.account_id == account_id)
        .order_by(E.c.crossing_date.desc(), E.c.id.desc()).limit(100))]
    return Account(ctx, account_id, name, latest, history, signals, _dimensions(ctx, latest, signals),
                   overrides_of(conn, account_id, today), events, _flags(latest, signals),
                   _thresholds(ctx, latest, signals))


def _dimensions(ctx: Context, latest: dict[str, Any] | None, signals: dict[str, Any] | None) -> list[dict[str, Any]]:
    if ctx.model is None:
        return []
    scores = (latest or {}).get("dimension_scores") or {}
    contributions = (latest or {}).get("contributions") or {}
    values = (signals or {}).get("signals") or {}
    sources = (signals or {}).get("dimension_sources") or {}
    out = []
    for dim_id, dim in ctx.model.dimensions.items():
        out.append({
            "id": dim_id, "description": dim.description, "score": scores.get(dim_id),
            "contribution": contributions.get(dim_id), "source": sources.get(dim_id) or {},
            "signals": [{"id": sid, "description": s.description, "unit": s.unit, "value": values.get(sid),
                         "direction": s.direction.value} for sid, s in dim.signals.items()],
        })
    return out


def _flags(latest: dict[str, Any] | None, signals: dict[str, Any] | None) -> list[str]:
    flags = []
    for dim, src in sorted(((signals or {}).get("dimension_sources") or {}).items()):
        status = src.get("status", "ok")
        if status != "ok":
            flags.append(f"{dim}: {status.replace('_', ' ')} (confidence {float(src.get('confidence', 0)):.2f})"
                         f" - {src.get('reason', '')}".rstrip(" -"))
    if latest:
        if latest.get("score") is None and latest.get("unscored_reason"):
            flags.append(f"unscored: {latest['unscored_reason']}")
        if latest.get("stage_gate_blocked"):
            flags.append(f"held in {latest.get('lifecycle_stage')} by the stage exit gate")
    return flags


def _thresholds(ctx: Context, latest: dict[str, Any] | None, signals: dict[str, Any] | None) -> dict[str, float]:
    """The account's band lines now (segment, stage, renewal window)."""
    if ctx.model is None:
        return {}
    segment = (latest or {}).get("segment") or (signals or {}).get("segment")
    stage = (latest or {}).get("lifecycle_stage") or (signals or {}).get("lifecycle_stage")
    renewal = (latest or {}).get("renewal_date")
    as_of = (latest or {}).get("as_of_date")
    days = (renewal - as_of).days if renewal and as_of else None
    try:
        t = ctx.model.thresholds_for(segment if segment in ctx.model.segment_thresholds else None,
                                     stage, days)
    except (KeyError, ValueError):
        t = ctx.model.thresholds_for()
    bands = ctx.model.bands  # best first; context moves the lower edges of the top two only
    lines = {bands[0].name: float(t.healthy_at_or_above), bands[1].name: float(t.at_risk_below)}
    lines.update({b.name: float(b.min) for b in bands[2:] if b.min > 0})
    return lines


# ------------------------------------------------------------------------------------------- playbooks


@dataclass
class Playbooks:
    ctx: Context
    by_playbook: list[dict[str, Any]]
    statuses: list[str]
    recent: list[dict[str, Any]]
    effectiveness_period: date | None = None  # end of the accuracy report the recovery figures come from


def _latest_effectiveness(conn: sa.Connection) -> tuple[date | None, dict[str, dict[str, Any]]]:
    """Per playbook, the newest monthly accuracy report's effectiveness row (recovery, churn, velocity)."""
    A = AccuracyReport.__table__
    for row in conn.execute(sa.select(A.c.period_end, A.c.metrics).order_by(A.c.period_end.desc(), A.c.id.desc())
                            .limit(50)):
        plays = (_json(row.metrics) or {}).get("playbooks")
        if isinstance(plays, dict) and plays.get("playbooks") is not None:
            return row.period_end, {p["playbook"]: p for p in plays["playbooks"]}
    return None, {}


def playbooks(conn: sa.Connection, recent: int = 50) -> Playbooks:
    from healthscore.warehouse.models import PLAYBOOK_STATUSES

    ctx = context(conn)
    counts: dict[str, dict[str, Any]] = {}
    for row in conn.execute(sa.select(E.c.playbook, E.c.status, sa.func.count().label("n"),
                                      sa.func.max(E.c.crossing_date).label("last"))
                            .group_by(E.c.playbook, E.c.status)):
        entry = counts.setdefault(row.playbook, {"playbook": row.playbook, "fired": 0, "last": None,
                                                 **{s: 0 for s in PLAYBOOK_STATUSES}})
        entry[row.status] = int(row.n)
        entry["fired"] += int(row.n)
        entry["last"] = max(filter(None, (entry["last"], row.last)), default=None)
    # Completed as the CRM last said (the act step reads back the tasks it created).
    for row in conn.execute(sa.select(E.c.playbook, sa.func.count().label("n"))
                            .where(E.c.task_status == "COMPLETED").group_by(E.c.playbook)):
        if row.playbook in counts:
            counts[row.playbook]["completed"] = int(row.n)
    period, measured = _latest_effectiveness(conn)
    for entry in counts.values():
        entry.setdefault("completed", 0)
        recovery = ((measured.get(entry["playbook"]) or {}).get("recovery") or {}).get("all")
        entry["recovery"] = recovery  # None: no report measured this playbook yet
    rows = conn.execute(sa.select(E.c.account_id, E.c.playbook, E.c.crossing_date, E.c.severity, E.c.status,
                                  E.c.task_status, E.c.crm_task_id, E.c.owner_id)
                        .order_by(E.c.crossing_date.desc(), E.c.id.desc()).limit(recent)).all()
    names = account_names(conn, [r.account_id for r in rows], ctx.latest)
    return Playbooks(ctx, sorted(counts.values(), key=lambda e: e["playbook"]), list(PLAYBOOK_STATUSES),
                     [{**dict(r._mapping), "name": names.get(r.account_id, r.account_id)} for r in rows], period)


# ----------------------------------------------------------------------------------------- data quality


@dataclass
class Quality:
    batch_date: date | None
    reconciliation: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    quarantine_counts: list[dict[str, Any]]
    quarantined: list[dict[str, Any]]
    quarantined_total: int


def quality(conn: sa.Connection, limit: int = 200) -> Quality:
    R, Q, QR = BatchReconciliation.__table__, Quarantine.__table__, QualityResult.__table__
    day = conn.execute(sa.select(sa.func.max(R.c.batch_date))).scalar()
    if day is None:
        return Quality(None, [], [], [], [], 0)
    # Latest validation per source object: its newest batch (a source blocked today may have validated earlier).
    newest = sa.select(R.c.source, R.c.object, sa.func.max(R.c.batch_date).label("batch_date")).group_by(
        R.c.source, R.c.object).subquery()
    recon = [dict(r._mapping) for r in conn.execute(
        sa.select(R).join(newest, sa.and_(R.c.source == newest.c.source, R.c.object == newest.c.object,
                                          R.c.batch_date == newest.c.batch_date)).order_by(R.c.source, R.c.object))]
    for row in recon:
        row["balanced"] = row["landed"] == row["accepted"] + row["quarantined"] + row.get("out_of_scope", 0)
    failures = [dict(r._mapping) for r in conn.execute(
        sa.select(QR.c.source, QR.c.suite, QR.c.expectation, QR.c.column, QR.c.severity, QR.c.observed_value,
                  QR.c.unexpected_count, QR.c.element_count, QR.c.details)
        .where(QR.c.batch_date == day, QR.c.success.is_(False)).order_by(QR.c.severity, QR.c.suite))]
    for row in failures:
        row["details"] = _json(row["details"]) or {}
    counts = [dict(r._mapping) for r in conn.execute(
        sa.select(Q.c.source, Q.c.object, Q.c.expectation, sa.func.count().label("records"))
        .where(Q.c.batch_date == day).group_by(Q.c.source, Q.c.object, Q.c.expectation)
        .order_by(Q.c.source, Q.c.object, Q.c.expectation))]
    rows = [dict(r._mapping) for r in conn.execute(
        sa.select(Q.c.source, Q.c.object, Q.c.record_id, Q.c.expectation, Q.c.reason)
        .where(Q.c.batch_date == day).order_by(Q.c.source, Q.c.object, Q.c.record_id).limit(limit))]
    return Quality(day, recon, failures, counts, rows, sum(c["records"] for c in counts))


# ------------------------------------------------------------------------------------------------ model


@dataclass
class Models:
    ctx: Context
    versions: list[dict[str, Any]]
    accuracy: list[dict[str, Any]]
    scored_accounts: int
    drift: dict[str, Any] | None = None  # the latest accuracy report's drift results (PSI), with its period
    recalibration: dict[str, Any] | None = None  # the newest recalibrated version and its approval state
    awaiting: list[dict[str, Any]] = field(default_factory=list)  # challengers/candidates not decided yet


def approval_state(version: dict[str, Any]) -> str:
    """Where a registered version stands, from the registry alone (role, backtest decision, approval)."""
    role, backtest = version["role"], (version.get("metrics") or {}).get("backtest")
    if role == "champion":
        return f"approved by {version['approved_by']}" if version.get("approved_by") else "champion"
    if role == "retired":
        return "retired (superseded or rejected)" if version.get("demoted_at") is None else "retired (was champion)"
    if backtest is None:
        return "backtest pending"
    decision = backtest.get("decision") or {}
    if decision.get("better"):
        return "awaiting approval (backtest: better than the champion)"
    return "not promoted: the backtest did not beat the champion"


def _drift(accuracy: list[dict[str, Any]], version: str | None) -> dict[str, Any] | None:
    head = next((a for a in accuracy if a["model_version"] == version and "drift" in a["metrics"]), None)
    if head is None:
        return None
    drift = head["metrics"]["drift"] or {}
    flagged = [{"kind": "dimension", "name": k, "psi": v.get("psi")}
               for k, v in sorted((drift.get("dimensions") or {}).items()) if v.get("alert")]
    flagged += [{"kind": "signal", "name": k, "psi": v.get("psi")}
                for k, v in sorted((drift.get("signals") or {}).items()) if v.get("alert")]
    return {"period_start": head["period_start"], "period_end": head["period_end"], "model_version": version,
            "score_psi": drift.get("score_psi") or {}, "flagged": flagged, "alerts": list(drift.get("alerts") or []),
            "accuracy_decline": drift.get("accuracy_decline") or {}}


def models(conn: sa.Connection) -> Models:
    ctx = context(conn)
    versions = [dict(r._mapping) for r in conn.execute(
        sa.select(ModelVersion.version, ModelVersion.number, ModelVersion.role, ModelVersion.config_hash,
                  ModelVersion.created_at, ModelVersion.promoted_at, ModelVersion.demoted_at,
                  ModelVersion.approved_by, ModelVersion.parent_version, ModelVersion.author,
                  ModelVersion.changelog, ModelVersion.metrics, ModelVersion.notes)
        .order_by(ModelVersion.created_at.desc(), ModelVersion.number.desc()))]
    for v in versions:
        v["metrics"] = _json(v["metrics"]) or {}
        v["state"] = approval_state(v)
    A = AccuracyReport.__table__
    accuracy = [dict(r._mapping) for r in conn.execute(
        sa.select(A).order_by(A.c.period_end.desc(), A.c.horizon_days).limit(50))]
    for row in accuracy:
        row["metrics"] = _json(row["metrics"]) or {}
    scored = 0
    if ctx.latest and ctx.version:
        scored = conn.execute(sa.select(sa.func.count()).select_from(H).where(
            *_champion_rows(ctx.version, ctx.latest), H.c.score.is_not(None))).scalar() or 0
    recalibrated = next((v for v in versions if "recalibration" in v["metrics"]), None)
    if recalibrated is not None:
        backtest = recalibrated["metrics"].get("backtest") or {}
        recalibrated = {**recalibrated, "decision": backtest.get("decision") or {}, "report": backtest.get("report"),
                        "against": backtest.get("against")}
    awaiting = [v for v in versions if v["role"] in ("challenger", "candidate")]
    return Models(ctx, versions, accuracy, int(scored), _drift(accuracy, ctx.version), recalibrated, awaiting)
