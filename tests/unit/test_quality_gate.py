"""The quality gate on sandbox data with injected bad records: quarantine, reasons, blocking, docs, chunks, alerts."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from healthscore.quality.gate import QualityGateError, ValidationContext, merge, validate, validate_chunks
from healthscore.quality.notify import QualityAlertNotifier, quality_alert_message
from healthscore.quality.policy import QualityThresholds
from healthscore.quality.suites import CHECKS, FRESHNESS, build_suite, full_plan
from healthscore.sources import SourceConnection, client_class, registry
from healthscore.sources.schemas import SCHEMAS, empty_frame, flatten
from healthscore.warehouse.models import BatchReconciliation, QualityResult, Quarantine
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.faults import FaultConfig
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

NOW = int(datetime(2026, 9, 30, 12, tzinfo=UTC).timestamp())
EVENT_DAY = date(2026, 9, 29)
RUN_ID = "scheduled__2026-09-30T00:00:00+00:00"
LANDED = [(s.name, o.name) for s in registry.sources() for o in s.extracted_objects]  # what the vendors serve
NN, RANGE, IN_SET, KNOWN = (
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
)
# (object, injected kind) -> (expectation that must catch it, words of the reason, severity)
EXPECTED = {
    ("companies", "null"): (f"{NN}(name)", "name is null", "critical"),
    ("companies", "out_of_range"): (f"{RANGE}(licensed_seats)", "licensed_seats=-5 below 0", "critical"),
    ("companies", "unknown_fk"): (
        f"{KNOWN}(owner_id)",
        "owner_id='999999999' is not a known HubSpot owner",
        "warning",
    ),
    ("contacts", "null"): (f"{NN}(email)", "email is null", "critical"),
    ("contacts", "out_of_range"): (f"{NN}(email)", "email is null", "critical"),
    ("contacts", "unknown_fk"): (
        f"{KNOWN}(company_id)",
        "company_id='9999999999' is not a known CRM company",
        "critical",
    ),
    ("deals", "null"): (f"{NN}(deal_stage)", "deal_stage is null", "critical"),
    ("deals", "out_of_range"): (f"{RANGE}(amount_cents)", "amount_cents=-50000 below 0", "critical"),
    ("deals", "unknown_fk"): (
        f"{KNOWN}(company_id)",
        "company_id='9999999999' is not a known CRM company",
        "critical",
    ),
    ("meetings", "null"): (f"{NN}(outcome)", "outcome is null", "critical"),
    ("meetings", "out_of_range"): (f"{NN}(outcome)", "outcome is null", "critical"),
    ("meetings", "unknown_fk"): (
        f"{KNOWN}(company_id)",
        "company_id='9999999999' is not a known CRM company",
        "critical",
    ),
    ("tickets", "null"): (f"{NN}(status)", "status is null", "critical"),
    ("tickets", "out_of_range"): (
        f"{IN_SET}(priority)",
        "priority='critical' not one of urgent/high/normal/low",
        "critical",
    ),
    ("tickets", "unknown_fk"): (
        f"{KNOWN}(organization_id)",
        "organization_id=999999999 is not a known Zendesk org",
        "critical",
    ),
    ("satisfaction_ratings", "null"): (f"{NN}(score)", "score is null", "critical"),
    ("satisfaction_ratings", "out_of_range"): (
        f"{IN_SET}(score)",
        "score='excellent' not one of",
        "critical",
    ),
    ("satisfaction_ratings", "unknown_fk"): (
        f"{KNOWN}(ticket_id)",
        "ticket_id=999999999 is not a known Zendesk ticket",
        "critical",
    ),
    ("customers", "null"): (f"{NN}(email)", "email is null", "critical"),
    ("customers", "out_of_range"): (f"{NN}(email)", "email is null", "critical"),
    ("customers", "unknown_fk"): (
        f"{KNOWN}(hubspot_company_id)",
        "hubspot_company_id='9999999999' is not a known",
        "critical",
    ),
    ("subscriptions", "null"): (f"{NN}(status)", "status is null", "critical"),
    ("subscriptions", "out_of_range"): (f"{RANGE}(quantity)", "quantity=-3 below 0", "critical"),
    ("subscriptions", "unknown_fk"): (
        f"{KNOWN}(customer_id)",
        "customer_id='cus_UNKNOWN0000000' is not a known Stripe",
        "critical",
    ),
    ("invoices", "null"): (f"{NN}(status)", "status is null", "critical"),
    ("invoices", "out_of_range"): (f"{RANGE}(amount_due)", "amount_due=-100 below 0", "critical"),
    ("invoices", "unknown_fk"): (
        f"{KNOWN}(customer_id)",
        "customer_id='cus_UNKNOWN0000000' is not a known Stripe",
        "critical",
    ),
    ("events", "null"): (f"{NN}(distinct_id)", "distinct_id is null", "critical"),
    ("events", "out_of_range"): (f"{NN}(distinct_id)", "distinct_id is null", "critical"),
    ("events", "out_of_range:nps"): (f"{RANGE}(nps_score)", "nps_score=14 outside 0..10", "critical"),
    ("events", "out_of_range:csat"): (f"{RANGE}(csat_score)", "csat_score=9 outside 1..5", "critical"),
    ("events", "unknown_fk"): (
        f"{KNOWN}(company_id)",
        "company_id='9999999999' is not a known CRM company",
        "critical",
    ),
}


def connection(source: str, url: str) -> SourceConnection:
    login, password = {
        "hubspot": (None, cred.HUBSPOT_TOKEN),
        "zendesk": (cred.ZENDESK_EMAIL, cred.ZENDESK_API_TOKEN),
        "stripe": (None, cred.STRIPE_SECRET_KEY),
        "mixpanel": (cred.MIXPANEL_SERVICE_ACCOUNT, cred.MIXPANEL_SECRET),
    }[source]
    return SourceConnection(
        source, url, login, password, {"sandbox": True, "project_id": cred.MIXPANEL_PROJECT_ID}
    )


def survey(insert_id: str, company_id: str, **scores: float) -> dict:
    """Survey answers out of range, shaped like the export (the sandbox rarely has one on a given day)."""
    time = int(datetime(2026, 9, 29, 15, tzinfo=UTC).timestamp())
    name = "NPS Survey Responded" if "nps_score" in scores else "CSAT Survey Responded"
    return {
        "event": name,
        "properties": {
            "time": time,
            "distinct_id": "u1_0",
            "$insert_id": insert_id,
            "company_id": company_id,
            **scores,
        },
    }


@pytest.fixture(scope="module")
def world() -> Iterator[SimpleNamespace]:
    """Sandbox with 20% bad records, fetched through the real extractors, flattened; plus the ground truth."""
    state = build_state(
        SandboxOptions(
            seed=7, accounts=150, now=NOW, rate_limit_scale=1000, faults=FaultConfig(bad_record_rate=0.2)
        )
    )
    as_of = datetime.fromtimestamp(NOW, UTC)
    records: dict[tuple[str, str], list[dict]] = {}
    with ThreadedSandbox(state) as server:
        for source, obj in LANDED:
            with client_class(source)(connection(source, server.url), as_of=as_of) as src:
                records[(source, obj)] = (
                    list(src.day_events(EVENT_DAY)) if source == "mixpanel" else list(src.records(obj))
                )
    company = records[("hubspot", "companies")][0]["id"]
    records[("mixpanel", "events")] += [
        survey("hand-nps", company, nps_score=14.0),
        survey("hand-csat", company, csat_score=9.0),
    ]
    frames = {key: flatten(*key, recs) for key, recs in records.items()}
    truth: dict[str, dict[str, str]] = {}
    truth["owners"] = dict.fromkeys(frames[("hubspot", "owners")]["record_id"], "")  # no faults on owners
    for _, obj in LANDED[:-1]:
        if obj == "owners":
            continue
        view = state.views.view(obj, NOW)
        truth[obj] = dict(zip(view["id"].astype(str), view["_bad"], strict=True))
    # The sandbox serves new-business deals of prospects, whose HubSpot company is only created when they
    # become customers: out of scope, not bad. An injected fault on a deal of that shape (an open new-business
    # deal naming an unknown company) cannot be told apart from one, and is counted out of scope too.
    companies = set(frames[("hubspot", "companies")]["record_id"])
    deals = frames[("hubspot", "deals")]
    for rid, company, category, stage in zip(deals["record_id"], deals["company_id"], deals["deal_category"],
                                             deals["deal_stage"], strict=True):
        prospect = str(category).lower() == "newbusiness" and str(stage).lower() != "closedwon"
        if prospect and pd.notna(company) and company not in companies:
            truth["deals"][rid] = "prospect"
    events = frames[("mixpanel", "events")]
    kinds = state.faults.bad_record_kinds("events", events["insert_id"].astype(object))
    truth["events"] = dict(zip(events["record_id"], kinds, strict=True))
    truth["events"].update({"hand-nps": "out_of_range:nps", "hand-csat": "out_of_range:csat"})
    for rid, event in zip(events["record_id"], events["event"], strict=True):
        if truth["events"][rid] == "out_of_range" and event in (
            "NPS Survey Responded",
            "CSAT Survey Responded",
        ):
            truth["events"][rid] = "out_of_range:" + ("nps" if event.startswith("NPS") else "csat")
    accounts = state.world.accounts
    known = {
        "known_company_ids": set(frames[("hubspot", "companies")]["record_id"]),
        "known_owner_ids": set(frames[("hubspot", "owners")]["record_id"]),
        "known_organization_ids": dict(
            zip(
                accounts["zendesk_organization_id"].astype("int64"),
                accounts["hubspot_company_id"].astype(str),
                strict=True,
            )
        ),
        "known_customer_ids": set(frames[("stripe", "customers")]["record_id"]),
        "known_ticket_ids": set(frames[("zendesk", "tickets")]["ticket_id"].dropna().astype(int)),
    }
    yield SimpleNamespace(state=state, frames=frames, truth=truth, known=known)


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quality") / "data_docs"


def context(world: SimpleNamespace, docs_dir: Path, **changes) -> ValidationContext:
    base = ValidationContext(
        run_id=RUN_ID,
        batch_date=date(2026, 9, 30),
        data_interval_end=datetime.fromtimestamp(NOW, UTC),
        data_docs_dir=docs_dir,
        **world.known,
    )
    return dataclasses.replace(base, **changes)


def clean(frame: pd.DataFrame, truth: dict[str, str]) -> pd.DataFrame:
    return frame[frame["record_id"].map(truth).eq("")].reset_index(drop=True)


@pytest.fixture(scope="module")
def outcomes(world, docs_dir) -> dict:
    ctx = context(world, docs_dir)
    return {key: validate(*key, world.frames[key], ctx) for key in LANDED}


# ---- suites --------------------------------------------------------------------------------------
def test_suites_declared_for_every_schema_with_severity_and_reason():
    assert set(CHECKS) == set(SCHEMAS) == set(FRESHNESS)
    for (source, obj), spec in SCHEMAS.items():
        columns = set(spec.dtypes)
        checks = full_plan(source, obj)
        assert {c.column for c in checks if c.column} <= columns and len({c.id for c in checks}) == len(
            checks
        )
        suite = build_suite(source, obj, checks)
        assert suite.name == f"{source}.{obj}" and len(suite.expectations) == len(checks)
        for expectation in suite.expectations:
            assert expectation.meta["severity"] in ("critical", "warning") and expectation.meta["reason"]


# ---- row level: every injected bad record is caught by the check meant for it ---------------------
@pytest.mark.parametrize(("source", "obj"), LANDED)
def test_injected_bad_records_are_caught_with_their_reason(world, outcomes, source, obj):
    outcome, truth = outcomes[(source, obj)], world.truth[obj]
    quarantined: dict[str, list[dict]] = {}
    for row in outcome.quarantine:
        quarantined.setdefault(row["record_id"], []).append(row)
    flagged: dict[str, list[dict]] = {}
    for row in outcome.flagged:
        flagged.setdefault(row["record_id"], []).append(row)
    seen_kinds = set()
    outside = 0
    for record_id in world.frames[(source, obj)]["record_id"]:
        kind = truth[record_id]
        if kind == "prospect":
            assert record_id not in quarantined and record_id not in flagged, record_id
            outside += 1
            continue
        if not kind:
            assert record_id not in quarantined and record_id not in flagged, (
                record_id,
                quarantined.get(record_id),
            )
            continue
        seen_kinds.add(kind)
        expectation, words, severity = EXPECTED[(obj, kind)]
        rows = (quarantined if severity == "critical" else flagged).get(record_id, [])
        assert any(r["expectation"] == expectation and words in r["reason"] for r in rows), (
            record_id,
            kind,
            rows,
        )
        if severity == "warning":
            assert record_id not in quarantined and record_id in outcome.accepted_ids
    if obj != "owners":  # the sandbox injects no bad owners
        assert seen_kinds >= {"null", "unknown_fk"} and any(k.startswith("out_of_range") for k in seen_kinds)
    assert outcome.reconciliation["out_of_scope"] == outside
    assert outside > 0 or obj != "deals", "this world has prospects' deals"


def test_reconciliation_and_rows_fit_the_warehouse_tables(world, outcomes):
    result_columns = {c.name for c in QualityResult.__table__.columns} - {"id", "created_at"}
    quarantine_columns = {c.name for c in Quarantine.__table__.columns} - {"id", "created_at", "payload"}
    for key, outcome in outcomes.items():
        rec, frame = outcome.reconciliation, world.frames[key]
        assert rec["landed"] == len(frame) == rec["accepted"] + rec["quarantined"] + rec["out_of_scope"], key
        assert rec["quarantined"] == frame["record_id"].isin(outcome.quarantined_ids).sum()
        assert not set(outcome.accepted_ids) & outcome.quarantined_ids
        assert set(rec) <= {c.name for c in BatchReconciliation.__table__.columns}
        for row in outcome.results:
            assert set(row) == result_columns and row["severity"] in ("critical", "warning")
            assert row["observed_value"] is None or isinstance(row["observed_value"], str)
            json.dumps(row["details"])
        assert all(set(q) == quarantine_columns for q in outcome.quarantine)
    assert outcomes[("hubspot", "companies")].flagged and not outcomes[("hubspot", "owners")].quarantine


def test_data_docs_written_for_every_run(outcomes, docs_dir):
    index = (docs_dir / "index.html").read_text()
    for (source, obj), outcome in outcomes.items():
        assert outcome.docs_path == docs_dir.resolve() / "index.html"
        assert outcome.validation_pages and outcome.validation_pages[0].is_file()
        assert f"{source}.{obj}" in index


# ---- batch level: freshness and share block, volume warns ----------------------------------------
@pytest.fixture(scope="module")
def stale(world, docs_dir):
    """Clean tickets judged five days later than they were extracted: stale."""
    tickets = clean(world.frames[("zendesk", "tickets")], world.truth["tickets"])
    later = datetime.fromtimestamp(NOW, UTC) + timedelta(days=5)
    return tickets, context(world, docs_dir, data_interval_end=later)


def test_freshness_failure_blocks_the_source_dimensions(stale):
    tickets, ctx = stale
    outcome = validate("zendesk", "tickets", tickets, ctx)
    assert outcome.critical_failed and outcome.reconciliation["quarantined"] == 0
    assert outcome.blocked_dimensions == {"zendesk": ["support", "relationship"]}
    assert len(outcome.block_reasons) == 1 and outcome.block_reasons[0].startswith("stale: newest updated_ts")

    with pytest.raises(QualityGateError, match=r"stale: .* Blocked dimensions: support, relationship") as err:
        validate("zendesk", "tickets", tickets, dataclasses.replace(ctx, fail_on_critical=True))
    assert err.value.outcome.critical_failed and err.value.outcome.validation_pages[0].is_file()

    empty = validate("zendesk", "tickets", empty_frame("zendesk", "tickets"), ctx)
    assert empty.critical_failed and "empty batch" in empty.block_reasons[0]


def test_chunks_judge_freshness_and_volume_on_the_whole_batch_with_their_bounds(stale, world, docs_dir):
    """A chunk carries its batch checks' bounds to merge(): a stale or undersized batch in chunks fails as in one
    piece (the bounds were once dropped with the chunk's batch checks, and every chunked batch passed)."""
    tickets, ctx = stale
    ctx = dataclasses.replace(ctx, volume_history={"zendesk.tickets": [len(tickets) * 4] * 5})
    one = validate("zendesk", "tickets", tickets, ctx)
    size = len(tickets) // 4 + 1
    chunked = validate_chunks("zendesk", "tickets", (tickets.iloc[i : i + size] for i in range(0, len(tickets), size)), ctx)
    batch_rows = [
        [(r["expectation"], r["success"], r["observed_value"], r["details"]) for r in o.results
         if r["details"].get("scope") == "batch"]
        for o in (one, chunked)
    ]
    assert batch_rows[0] == batch_rows[1]
    assert [success for _, success, _, _ in batch_rows[0]] == [False, False, True]  # stale, volume, share
    assert chunked.critical_failed and chunked.block_reasons == one.block_reasons

def test_volume_out_of_range_is_a_warning_that_does_not_block(world, docs_dir):
    tickets = clean(world.frames[("zendesk", "tickets")], world.truth["tickets"])
    outcome = validate(
        "zendesk",
        "tickets",
        tickets,
        context(world, docs_dir, volume_history={"zendesk.tickets": [100, 120, 90, 110]}),
    )
    volume = next(r for r in outcome.results if r["expectation"] == "expect_table_row_count_to_be_between")
    assert not volume["success"] and volume["severity"] == "warning"
    assert (volume["details"]["min_value"], volume["details"]["max_value"]) == (35, 315)
    assert not outcome.critical_failed and outcome.blocked_dimensions == {}


def test_quarantined_share_above_the_limit_blocks(world, docs_dir):
    ctx = context(world, docs_dir, thresholds=QualityThresholds(max_quarantine_share=0.05))
    outcome = validate("stripe", "invoices", world.frames[("stripe", "invoices")], ctx)
    share = next(r for r in outcome.results if r["expectation"] == "gate_max_quarantine_share")
    assert not share["success"] and outcome.blocked_dimensions == {"stripe": ["financial", "value"]}
    assert "rows quarantined" in outcome.block_reasons[0]


def test_missing_required_column_quarantines_every_row(world, docs_dir):
    frame = world.frames[("hubspot", "companies")].drop(columns=["arr_cents"])
    outcome = validate("hubspot", "companies", frame, context(world, docs_dir))
    assert outcome.reconciliation["accepted"] == 0 and outcome.critical_failed
    assert any(q["reason"] == "required column arr_cents is missing" for q in outcome.quarantine)


# ---- other row-level behaviour -------------------------------------------------------------------
def test_unparseable_values_and_missing_reference_sets(world, docs_dir):
    record = {
        "id": "1",
        "properties": {"email": "a@b.io", "associatedcompanyid": "9999999999"},
        "createdAt": "2026-09-01T00:00:00Z",
        "updatedAt": "yesterday",
    }
    frame = flatten("hubspot", "contacts", [record])
    bare = dataclasses.replace(context(world, docs_dir), known_company_ids=None)
    outcome = validate("hubspot", "contacts", frame, bare)
    assert [q["reason"] for q in outcome.quarantine] == ["unparseable value: updated_ts='yesterday'"]
    assert outcome.skipped_checks == [
        "expect_column_values_to_not_be_in_set(company_id): no known_company_ids in the context"
    ]


def test_usage_daily_seats_versus_active_users(world, docs_dir):
    company = next(iter(world.known["known_company_ids"]))
    rows = [
        {"company_id": company, "event_date": f"2026-09-{d:02d}", "active_users": 5, "licensed_seats": 10}
        for d in range(1, 21)
    ]
    rows[0]["active_users"] = 12  # more users than seats: flagged, kept
    rows[1]["active_users"] = -1
    rows[2]["company_id"] = "9999999999"
    outcome = validate(
        "mixpanel", "usage_daily", flatten("mixpanel", "usage_daily", rows), context(world, docs_dir)
    )
    assert [f["reason"] for f in outcome.flagged] == ["active_users=12 exceeds licensed_seats=10"]
    assert {q["reason"] for q in outcome.quarantine} == {
        "active_users=-1 below 0",
        "company_id='9999999999' is not a known CRM company",
    }
    assert outcome.reconciliation["accepted"] == 18 and not outcome.critical_failed


# ---- chunks --------------------------------------------------------------------------------------
def test_chunked_validation_merges_to_the_one_shot_outcome(world, docs_dir):
    events = world.frames[("mixpanel", "events")]
    ctx = context(world, docs_dir, volume_history={"mixpanel.events": [2300, 2500, 2400]})
    one = validate("mixpanel", "events", events, ctx)
    size = len(events) // 3 + 1
    chunked = validate_chunks(
        "mixpanel", "events", (events.iloc[i : i + size] for i in range(0, len(events), size)), ctx
    )

    def comparable(rows: list[dict]) -> list[tuple]:
        return [
            (
                r["expectation"],
                r["column"],
                r["severity"],
                r["success"],
                r["observed_value"],
                r["unexpected_count"],
                r["element_count"],
            )
            for r in rows
        ]

    assert comparable(chunked.results) == comparable(one.results)
    assert chunked.reconciliation == one.reconciliation
    assert sorted(map(str, chunked.quarantine)) == sorted(map(str, one.quarantine))
    assert chunked.accepted_ids == one.accepted_ids and chunked.flagged == one.flagged
    assert (chunked.critical_failed, chunked.block_reasons) == (one.critical_failed, one.block_reasons)
    assert len(chunked.validation_pages) == 3
    with pytest.raises(ValueError, match="partial=True"):
        merge([one])


# ---- notification --------------------------------------------------------------------------------
def test_notifier_writes_alerts_to_the_outbox(stale, tmp_path):
    tickets, ctx = stale
    outcome = validate("zendesk", "tickets", tickets.head(50), ctx)
    subject, body = quality_alert_message(outcome)
    assert subject == "[healthscore] quality gate BLOCKED zendesk.tickets for 2026-09-30"
    assert "Blocked dimensions: support, relationship" in body and "stale:" in body
    assert not any(rid in body for rid in tickets["record_id"].head(50))

    outbox = tmp_path / "outbox" / "quality_alerts.jsonl"
    ti = SimpleNamespace(dag_id="customer_health_daily", task_id="validate_zendesk", run_id=RUN_ID)
    QualityAlertNotifier(outbox)({"ti": ti, "exception": QualityGateError(outcome)})  # as on_failure_callback
    QualityAlertNotifier(outbox, outcome=outcome)({"ti": ti})  # the same alert again (a retry): written once
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["subject"] == subject and lines[0]["kind"] == "quality_alert"
    assert lines[0]["task_id"] == "validate_zendesk" and lines[0]["blocked_dimensions"] == {
        "zendesk": ["support", "relationship"]
    }
    assert lines[0]["dedupe_key"] == f"quality:zendesk.tickets:2026-09-30:{RUN_ID}"


def test_gate_modules_stay_light_for_dag_parsing():
    code = (
        "import sys, healthscore.quality.gate, healthscore.quality.notify, healthscore.quality.docs,"
        " healthscore.notify.outbox;"
        "print(sorted(m for m in ('pandas', 'great_expectations') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
