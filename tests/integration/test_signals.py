"""build_signals / store_signals over batches landed from the sandbox through real HTTP into SQLite.

Three consecutive batches are landed and validated once per module; the third is extracted from Stripe
while the sandbox corrupts half the records, so the quality gate blocks Stripe for that batch.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from healthscore.batch import Batch, PointInTime
from healthscore.config import ModelConfig, load_model_config
from healthscore.pipeline.extract import extract_source
from healthscore.pipeline.signals import READS, build_signals, read_frame, source_statuses, store_signals
from healthscore.pipeline.validate import QualityPaths, build_context, validate_source
from healthscore.scoring import score_accounts
from healthscore.signals.carry import CONTRACT_COLUMNS
from healthscore.sources import registry
from healthscore.sources.schemas import flatten
from healthscore.warehouse import make_engine, pointintime, upgrade
from healthscore.warehouse.models import (
    AccountSignals,
    MixpanelUsageDaily,
    QualityResult,
    Quarantine,
    SourceCursor,
    landing_table,
)
from healthscore.warehouse.upsert import bulk_upsert
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state
from tests.integration.test_sources import connections

pytestmark = pytest.mark.slow

DAYS = (date(2026, 9, 14), date(2026, 9, 15), date(2026, 9, 16))
BLOCKED_DAY = DAYS[2]
SOURCES = registry.names()
ADMIN = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}
STRIPE_SIGNALS = ("days_past_due", "payment_status_ok", "expansion_12m", "arr", "contract_coverage")

DECAY = load_model_config().carry_forward.decay_per_day  # a blocked dimension's confidence per day


def batch_for(day: date) -> Batch:
    return Batch(day, datetime.combine(day + timedelta(days=1), time(), UTC), f"signals-{day.isoformat()}")


@dataclass
class Landed:
    url: str
    engine: sa.Engine
    model: ModelConfig
    latent: pd.Series  # mean latent health over the 30 days up to the first batch, by HubSpot company id
    frames: dict[date, pd.DataFrame] = field(default_factory=dict)


def set_faults(base: str, **faults: object) -> None:
    requests.post(f"{base}/_sandbox/faults", headers=ADMIN, json=faults, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> Iterator[Landed]:
    tmp = tmp_path_factory.mktemp("signals")
    url = f"sqlite:///{tmp / 'warehouse.db'}"
    upgrade(url)
    engine = make_engine(url)
    model = load_model_config()
    paths = QualityPaths.under(tmp)
    with pytest.MonkeyPatch.context() as mp, \
            ThreadedSandbox(build_state(SandboxOptions(seed=7, accounts=90, rate_limit_scale=1000))) as sandbox:
        mp.setenv("GX_ANALYTICS_ENABLED", "false")
        world = sandbox.state.world
        day = (DAYS[0] - world.spec.start).days
        latent = pd.Series(world.latent[:, day - 29 : day + 1].mean(axis=1).astype(float),
                           index=world.accounts["hubspot_company_id"].astype(str).to_numpy())
        state = Landed(url, engine, model, latent)
        conns = connections(sandbox.url)
        for number, day in enumerate(DAYS):
            batch = batch_for(day)
            for source in SOURCES:
                validation = build_context(engine, source, batch, paths) if source == "mixpanel" else None
                corrupt = day == BLOCKED_DAY and source == "stripe"
                if corrupt:
                    set_faults(sandbox.url, seed=5, bad_record_rate=0.5)
                try:
                    extract_source(source, conns[source], engine, batch, validation=validation,
                                   mixpanel_backfill_days=35)
                finally:
                    if corrupt:
                        set_faults(sandbox.url)
                validate_source(source, engine, batch, paths)
            frame = build_signals(engine, batch.as_of, day, model)
            store_signals(engine, frame)
            state.frames[day] = frame
            if number == 0:
                # Built before any later batch existed: the reference for the point-in-time checks.
                state.frames[date.min] = frame.copy(deep=True)
        yield state
    engine.dispose()


def test_frame_follows_the_scoring_contract_with_plausible_values(landed):
    frame = landed.frames[DAYS[1]]
    dims = list(landed.model.dimensions)
    expected = [*CONTRACT_COLUMNS, *landed.model.all_signal_ids(), "blocked_dimensions",
                *(f"confidence_{d}" for d in dims)]
    assert not set(expected) - set(frame.columns)
    assert 50 <= len(frame) <= 90 and frame["account_id"].is_unique
    assert frame["account_id"].tolist() == sorted(frame["account_id"])
    assert set(frame["segment"]) <= {"enterprise", "mid_market", "smb"}
    assert set(frame["lifecycle_stage"]) <= {"onboarding", "adoption", "maturity"}
    assert (frame["tenure_days"] >= 0).all() and (frame["as_of_date"] == DAYS[1]).all()
    assert frame["blocked_dimensions"].map(len).eq(0).all()
    for dim in dims:
        assert (frame[f"confidence_{dim}"] == 1.0).all()

    def within(column: str, low: float, high: float, min_present: float) -> None:
        values = frame[column].dropna()
        assert len(values) >= min_present * len(frame), f"{column}: only {len(values)} values"
        assert values.between(low, high).all(), f"{column} outside {low}..{high}: {values.describe()}"

    for pct in ("active_user_pct", "feature_breadth", "contract_coverage"):
        within(pct, 0, 100, 0.9)
    within("latest_nps", 0, 10, 0.05)
    within("csat_3m", 1, 5, 0.3)
    within("complaint_ratio", 0, 1, 0.3)
    within("resolution_time_trend", -100, np.inf, 0.3)
    within("logins_per_user_week", 0, 100, 0.9)
    within("arr", 0, np.inf, 0.9)
    for flag in ("qbr_attended", "executive_sponsor", "active_champion", "payment_status_ok"):
        assert set(frame[flag].dropna().unique()) <= {0.0, 1.0}, flag
    for count in ("csm_touchpoints_qtr", "training_sessions_qtr", "contacts_engaged", "departments_engaged",
                  "open_tickets", "p1_tickets_90d", "expansion_12m", "days_past_due"):
        values = frame[count]
        assert values.notna().all() and (values >= 0).all() and (values == values.round()).all(), count
    # 35 days of product history cannot fill two 30-day windows: the trend waits for more data.
    assert frame["usage_trend_mom"].isna().all()
    # HubSpot ARR (contract column) and Stripe MRR x 12 (signal) describe the same contracts.
    assert np.allclose(frame["arr"], frame["arr_cents"] / 100, rtol=0.01)

    scores = score_accounts(frame, landed.model, model_version=landed.model.version)
    assert scores["score"].notna().mean() > 0.9


def test_rebuilding_a_past_date_after_later_batches_is_identical(landed):
    first = build_signals(landed.engine, batch_for(DAYS[0]).as_of, DAYS[0], landed.model)
    pd.testing.assert_frame_equal(first, landed.frames[date.min])
    second = build_signals(landed.engine, batch_for(DAYS[1]).as_of, DAYS[1], landed.model)
    pd.testing.assert_frame_equal(second, landed.frames[DAYS[1]])


def test_objects_read_chunk_by_chunk_give_the_frame_of_the_whole_read(landed):
    """build_signals flattens each object's streamed records chunk by chunk (memory): the frame must be the one
    flatten gives of every record at once, chunk boundaries anywhere (chunks of 13 records here)."""
    pit = PointInTime.of(DAYS[1], batch_for(DAYS[1]).as_of)
    objects = [("hubspot", "companies", None), *((s, o, pit.since(d) if d else None) for (s, o), d in READS.items())]
    with landed.engine.connect() as conn:
        for source, obj, since in objects:
            since = None if since is None else datetime.fromtimestamp(since, UTC)
            whole = flatten(source, obj, pointintime.versions(conn, source, obj, pit, since))
            assert len(whole) > 13, (source, obj)  # more than one chunk
            pd.testing.assert_frame_equal(read_frame(conn, source, obj, pit, since, chunk_size=13), whole,
                                          check_exact=True)


def test_records_landed_later_do_not_leak_into_an_earlier_as_of(landed):
    table = landing_table("zendesk", "tickets")
    with landed.engine.connect() as conn:
        landed_rows = conn.execute(sa.select(table.c.record_id, table.c.batch_date, table.c.payload)).all()
        early = PointInTime(DAYS[0], batch_for(DAYS[0]).as_of)
        seen = {str(t["id"]): t for t in pointintime.versions(conn, "zendesk", "tickets", early)}
        latest = {str(t["id"]): t for t in pointintime.versions(conn, "zendesk", "tickets",
                                                          PointInTime(DAYS[2], batch_for(DAYS[2]).as_of))}
        # as_of earlier than the batch: records stamped after it are invisible even though they landed
        cut = batch_for(DAYS[1]).as_of - timedelta(hours=12)
        partial = pointintime.versions(conn, "zendesk", "tickets", PointInTime(DAYS[1], cut))
    first_batch = {r.record_id: r.payload for r in landed_rows if r.batch_date == DAYS[0]}
    later_only = {r.record_id for r in landed_rows if r.batch_date > DAYS[0]} - set(first_batch)
    changed = {r.record_id for r in landed_rows if r.batch_date > DAYS[0]} & set(first_batch)
    assert later_only and changed, "the sandbox should create and update tickets between batches"
    assert not later_only & set(seen)
    for record_id in changed:
        assert seen[record_id] == json.loads(first_batch[record_id])
    assert all(datetime.fromisoformat(t["updated_at"].replace("Z", "+00:00")) <= cut for t in partial)
    assert len(partial) < len(latest)


def test_signals_follow_the_sandbox_ground_truth(landed):
    frame = landed.frames[DAYS[0]].set_index("account_id")
    frame["latent"] = landed.latent.reindex(frame.index)
    assert frame["latent"].notna().all()
    rho = frame.corr(method="spearman", numeric_only=True)["latent"]
    # Breadth of feature use, survey answers and complaints are driven by latent health in the sandbox.
    # (active_user_pct is not checked: usage_daily.active_users also counts the health-independent
    # "Page Viewed" visitors, which swamp the signal in small accounts.)
    assert rho["feature_breadth"] > 0.5
    assert rho["complaint_ratio"] < -0.2
    assert rho["csat_3m"] > 0.1
    low, high = frame["latent"].quantile([1 / 3, 2 / 3])
    weak, strong = frame[frame["latent"] <= low], frame[frame["latent"] >= high]
    assert weak["feature_breadth"].mean() + 10 < strong["feature_breadth"].mean()
    assert weak["logins_per_user_week"].mean() < strong["logins_per_user_week"].mean()


def test_blocked_source_dimensions_are_carried_forward_with_decayed_confidence(landed, tmp_path):
    with landed.engine.connect() as conn:
        statuses = source_statuses(conn, BLOCKED_DAY)
        failed = conn.execute(sa.select(QualityResult.expectation).where(
            QualityResult.batch_date == BLOCKED_DAY, QualityResult.source == "stripe",
            QualityResult.severity == "critical", QualityResult.success.is_(False))).scalars().all()
    assert "gate_max_quarantine_share" in failed
    assert not statuses["stripe"].usable and "blocked" in statuses["stripe"].reason
    assert all(statuses[s].usable for s in ("hubspot", "zendesk", "mixpanel"))

    today = landed.frames[BLOCKED_DAY].set_index("account_id")
    before = landed.frames[DAYS[1]].set_index("account_id")
    common = today.index.intersection(before.index)
    assert len(common) >= 0.95 * len(today)
    for dim in ("financial", "value"):
        entries = today.loc[common, "dimension_sources"].map(lambda s, d=dim: s[d])
        assert (entries.map(lambda e: e["status"]) == "carried_forward").all()
        assert (entries.map(lambda e: e["from"]) == DAYS[1].isoformat()).all()
        assert entries.map(lambda e: "stripe" in e["reason"]).all()
        assert np.allclose(today.loc[common, f"confidence_{dim}"], DECAY)
        assert today.loc[common, "carried_dimensions"].map(lambda c, d=dim: d in c).all()
        assert not today.loc[common, "blocked_dimensions"].map(lambda b, d=dim: d in b).any()
    pd.testing.assert_frame_equal(today.loc[common, list(STRIPE_SIGNALS)], before.loc[common, list(STRIPE_SIGNALS)])
    for dim in ("usage", "engagement", "support", "relationship"):
        assert (today[f"confidence_{dim}"] == 1.0).all()
        assert (today["dimension_sources"].map(lambda s, d=dim: s[d]["status"]) == "ok").all()
    scored = score_accounts(today.reset_index(), landed.model, model_version=landed.model.version)
    assert (scored["confidence"].dropna() < 1).all()

    # Without an earlier good row the dimension is missing: NaN, flagged blocked, confidence 0.
    engine = _copy_of(landed, tmp_path)
    victim = common[0]
    with engine.begin() as conn:
        conn.execute(sa.delete(AccountSignals).where(AccountSignals.account_id == victim,
                                                     AccountSignals.as_of_date < BLOCKED_DAY))
    rebuilt = build_signals(engine, batch_for(BLOCKED_DAY).as_of, BLOCKED_DAY, landed.model).set_index("account_id")
    engine.dispose()
    row = rebuilt.loc[victim]
    assert set(row["blocked_dimensions"]) == {"financial", "value"}
    assert row["dimension_sources"]["financial"]["status"] == "missing"
    assert row["confidence_financial"] == 0.0 and np.isnan(row["days_past_due"]) and np.isnan(row["arr"])
    pd.testing.assert_frame_equal(rebuilt.drop(index=victim), today.drop(index=victim))


def test_carried_values_age_from_their_last_good_date(landed, tmp_path):
    """A day with no batch landed at all: every dimension is carried; Stripe's from two days back."""
    engine = _copy_of(landed, tmp_path)
    next_day = BLOCKED_DAY + timedelta(days=1)
    frame = build_signals(engine, batch_for(next_day).as_of, next_day, landed.model).set_index("account_id")
    engine.dispose()
    before = landed.frames[BLOCKED_DAY].set_index("account_id")
    assert frame.index.equals(before.index)
    assert np.allclose(frame["confidence_financial"], DECAY**2)
    assert np.allclose(frame["confidence_usage"], DECAY)
    sources = frame["dimension_sources"]
    assert (sources.map(lambda s: s["financial"]["from"]) == DAYS[1].isoformat()).all()
    assert (sources.map(lambda s: s["usage"]["from"]) == BLOCKED_DAY.isoformat()).all()
    assert sources.map(lambda s: "no batch landed" in s["support"]["reason"]).all()
    signals = list(landed.model.all_signal_ids())
    pd.testing.assert_frame_equal(frame[signals], before[signals])


def _copy_of(landed: Landed, tmp_path: Path) -> sa.Engine:
    """A consistent copy of the module's warehouse (the SQLite backup API includes the WAL)."""
    copy = tmp_path / "copy.db"
    source = sqlite3.connect(landed.url.removeprefix("sqlite:///"))
    target = sqlite3.connect(copy)
    with target:
        source.backup(target)
    source.close()
    target.close()
    return make_engine(f"sqlite:///{copy}")


def test_store_signals_is_idempotent_and_round_trips(landed):
    frame = landed.frames[DAYS[1]]
    store_signals(landed.engine, frame)
    store_signals(landed.engine, frame)
    with landed.engine.connect() as conn:
        table = AccountSignals.__table__
        rows = conn.execute(sa.select(table).where(table.c.as_of_date == DAYS[1])
                            .order_by(table.c.account_id)).all()
    assert [r.account_id for r in rows] == frame["account_id"].tolist()
    signal_ids = landed.model.all_signal_ids()
    for row, (_, expected) in zip(rows, frame.iterrows(), strict=True):
        assert set(row.signals) == set(signal_ids)
        for sid in signal_ids:
            value = expected[sid]
            assert (row.signals[sid] is None) if np.isnan(value) else row.signals[sid] == pytest.approx(value)
        assert row.dimension_sources == expected["dimension_sources"]
        assert row.segment == expected["segment"] and row.tenure_days == expected["tenure_days"]


def test_usage_windows_on_hand_made_rows(tmp_path):
    """Exact usage definitions: zero-filled covered days, newest batch per event day, quarantine honoured;
    sources without any data leave their dimensions missing instead of failing."""
    url = f"sqlite:///{tmp_path / 'hand.db'}"
    upgrade(url)
    engine = make_engine(url)
    day, previous = date(2026, 9, 30), date(2026, 9, 29)
    company = {"id": "1", "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
               "properties": {"name": "A", "customer_status": "active", "licensed_seats": "10", "arr": "1200.00",
                              "customer_segment": "smb", "plan_tier": "starter", "hubspot_owner_id": "7",
                              "customer_since": "2026-01-01T00:00:00Z", "contract_renewal_date": "2027-01-01"}}
    payload = json.dumps(company, sort_keys=True)

    def usage(company_id: str, event_day: date, batch: date, users: int, features: dict) -> dict:
        return {"company_id": company_id, "event_date": event_day, "batch_date": batch, "active_users": users,
                "event_count": users, "logins": 3, "feature_counts": {"Login": 3, **features}}

    rows = []
    for back in range(60):
        event_day = day - timedelta(days=back)
        batch = day if back <= 2 else previous
        rows.append(usage("2", event_day, batch, 1, {}))  # keeps every day covered
        if back == 10:
            continue  # company 1 idle that day: counts as zero, not as a gap
        recent = back < 30
        features = {"Dashboard Viewed": 1} if recent else {"Report Created": 1}
        if back == 5:
            features = {"API Call": 2}
        rows.append(usage("1", event_day, batch, 5 if recent else 2, features))
        if back == 2:  # superseded: the newer batch re-landed this day
            rows.append(usage("1", event_day, previous, 100, {"Workflow Automated": 1}))
    with engine.begin() as conn:
        bulk_upsert(conn, MixpanelUsageDaily, rows, ["company_id", "event_date", "batch_date"])
        pointintime.land_batch(conn, "hubspot", "companies", previous, [[{
            "record_id": "1", "batch_date": previous, "source_updated_at": datetime(2026, 1, 1, tzinfo=UTC),
            "payload": payload, "payload_sha256": "x"}]])
        conn.execute(sa.insert(Quarantine), [{"run_id": "r", "batch_date": day, "source": "mixpanel",
                                              "object": "usage_daily", "record_id": f"1:{day.isoformat()}",
                                              "expectation": "e"}])
        bulk_upsert(conn, SourceCursor, [{"source": s, "object": o, "batch_date": day, "cursor_value": "c"}
                                         for s, o in (("hubspot", "companies"), ("mixpanel", "events"),
                                                      ("stripe", "invoices"))],
                    ["source", "object", "batch_date"])
    model = load_model_config()
    frame = build_signals(engine, datetime(2026, 10, 1, tzinfo=UTC), day, model).set_index("account_id")
    engine.dispose()
    row = frame.loc["1"]
    # recent 30 days: 28 days x 5 users (day -10 idle, today quarantined) over 30 covered days
    assert row["active_user_pct"] == pytest.approx(28 * 5 / 30 / 10 * 100)
    assert row["contract_coverage"] == pytest.approx(50.0)
    assert row["usage_trend_mom"] == pytest.approx((28 * 5 / 30 / 2 - 1) * 100)
    # 28-day logins: 26 active days x 3 logins over 4 weeks / mean DAU (26 x 5 / 28)
    assert row["logins_per_user_week"] == pytest.approx((26 * 3 / 4) / (26 * 5 / 28))
    assert row["feature_breadth"] == pytest.approx(2 / 7 * 100)
    assert row["tenure_days"] == 273 and row["lifecycle_stage"] == "adoption" and row["arr_cents"] == 120000
    assert row["renewal_date"] == date(2027, 1, 1)
    assert row["dimension_sources"]["usage"]["status"] == "ok"
    # Zendesk never landed: its dimensions are missing. Stripe landed nothing for this account: NaN, not 0.
    assert set(row["blocked_dimensions"]) == {"relationship", "support"}
    assert np.isnan(row["open_tickets"]) and np.isnan(row["days_past_due"]) and np.isnan(row["arr"])
    assert row["csm_touchpoints_qtr"] == 0 and row["expansion_12m"] == 0
