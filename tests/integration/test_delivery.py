"""Playbook delivery over real HTTP to the sandbox: one HubSpot task per event, whatever happens.

Reruns, a crash between the 201 and the commit, a 201 lost on the way back, 5xx storms on writes,
validation failures; score publishing only on change; digests and alerts written once per rerun.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pytest
import requests
import sqlalchemy as sa
import yaml

from healthscore.config import default_model_text, model_config_from_dict
from healthscore.playbooks import delivery, publication
from healthscore.playbooks.delivery import (
    deliver_pending,
    delivery_token,
    key_line,
    publish_scores,
    record_events,
)
from healthscore.playbooks.notifiers import OutboxNotifier, send_critical_alerts, send_daily_digests
from healthscore.playbooks.rules import PlaybookDecision, decide_playbook_events
from healthscore.sources import HubSpotSource
from healthscore.sources.base import RetryPolicy, SourceConnection
from healthscore.warehouse.engine import make_engine
from healthscore.warehouse.migrate import upgrade
from healthscore.warehouse.models import CrmPublicationError, ModelVersion, NotificationOutbox, PlaybookEvent
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

NOW = datetime(2026, 9, 30, 12, tzinfo=UTC)
AS_OF = dt.date(2026, 9, 29)
ADMIN = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}
HUBSPOT = {"Authorization": f"Bearer {cred.HUBSPOT_TOKEN}"}
FAST = RetryPolicy(attempts=6, backoff_base=0.01, backoff_max=0.05, timeout=5)
EVENTS = PlaybookEvent.__table__


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    state = build_state(SandboxOptions(seed=21, accounts=40, now=int(NOW.timestamp()), rate_limit_scale=1000))
    with ThreadedSandbox(state) as server:
        yield server


@pytest.fixture
def hubspot(sandbox) -> Iterator[HubSpotSource]:
    conn = SourceConnection("crm_hubspot", sandbox.url, password=cred.HUBSPOT_TOKEN, extra={"sandbox": True})
    with HubSpotSource(conn, as_of=NOW, policy=FAST) as source:
        yield source
    requests.post(f"{sandbox.url}/_sandbox/reset", headers=ADMIN, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def companies(sandbox) -> dict[str, list[str]]:
    """Owner id -> company ids visible at NOW, read through the real API."""
    conn = SourceConnection("crm_hubspot", sandbox.url, password=cred.HUBSPOT_TOKEN, extra={"sandbox": True})
    owners: dict[str, list[str]] = defaultdict(list)
    with HubSpotSource(conn, as_of=NOW) as source:
        for record in source.records("companies"):
            owners[str(record["properties"]["hubspot_owner_id"])].append(str(record["id"]))
    return dict(owners)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request):
    """A migrated warehouse on each engine (PostgreSQL skips when no server is reachable, unless CI)."""
    url = request.getfixturevalue(f"{request.param}_url")
    upgrade(url)
    eng = make_engine(url)
    with eng.begin() as conn:
        conn.execute(
            sa.insert(ModelVersion.__table__).values(
                version="v1", config_hash="test", config_yaml="{}", role="champion"
            )
        )
    yield eng
    eng.dispose()


def model(budget: int = 2):
    data = yaml.safe_load(default_model_text())
    data["playbooks"]["csm_daily_task_budget"] = budget
    return model_config_from_dict(data)


def history(account: str, owner: str, scores: list[float], *, shadow: bool = False) -> pd.DataFrame:
    m = model()
    rows = []
    for i, score in enumerate(scores):
        day = AS_OF - dt.timedelta(days=len(scores) - 1 - i)
        rows.append(
            {
                "account_id": account,
                "account_name": f"Company {account}",
                "as_of_date": day,
                "score": score,
                "band": m.band_for(score, "mid_market", "maturity", None),
                "trend_30d": scores[-1] - scores[0],
                "segment": "mid_market",
                "lifecycle_stage": "maturity",
                "arr_cents": 12_000_000,
                "renewal_date": dt.date(2027, 1, 15),
                "owner_id": owner,
                "dimension_scores": {"usage": 40.0, "engagement": 55.0},
                "attribution": [
                    {"dimension": "usage", "delta": -14.5},
                    {"dimension": "relationship", "delta": -6.0},
                ],
                "model_version": "v1",
                "is_shadow": shadow,
                "override_band": None,
                "override_score": None,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def decision(companies) -> PlaybookDecision:
    """Two CSMs: A with three falling accounts (5 events, budget 2 -> 3 deferred), B with one crash."""
    owner_a, owner_b = sorted(
        (o for o in companies if len(companies[o]) >= 3), key=lambda o: -len(companies[o])
    )[:2]
    a1, a2, a3 = companies[owner_a][:3]
    b1 = companies[owner_b][0]
    frame = pd.concat(
        [
            history(a1, owner_a, [82] * 10 + [45, 44]),  # save_plan + rapid_decline
            history(a2, owner_a, [60] * 11 + [15]),  # executive_escalation
            history(a3, owner_a, [83] * 10 + [46, 45]),  # save_plan + rapid_decline
            history(b1, owner_b, [62] * 11 + [12]),  # executive_escalation
        ],
        ignore_index=True,
    )
    today = frame[frame["as_of_date"] == AS_OF]
    out = decide_playbook_events(today, frame[frame["as_of_date"] < AS_OF], None, model())
    assert len(out.pending) == 3 and len(out.deferred) == 3, out.events[["account_id", "playbook", "status"]]
    return out


def sandbox_tasks(base: str) -> list[dict]:
    out, after = [], None
    while True:
        body = requests.get(
            f"{base}/crm/v3/objects/tasks",
            headers=HUBSPOT,
            timeout=5,
            params={"limit": 100, **({"after": after} if after else {})},
        ).json()
        out += body["results"]
        if "paging" not in body:
            return out
        after = body["paging"]["next"]["after"]


def task_key(task: dict) -> str:
    """The idempotency key from a task body's last line ('healthscore-key: <key> <token>')."""
    last = task["properties"]["hs_task_body"].rsplit("\n", 1)[-1]
    assert last.startswith("healthscore-key: ")
    return last.split(" ")[1]


def tasks_by_key(base: str) -> Counter[str]:
    return Counter(task_key(t) for t in sandbox_tasks(base))


def stored(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["idempotency_key"]: dict(r) for r in conn.execute(sa.select(EVENTS)).mappings()}


def set_faults(base: str, **faults) -> None:
    requests.post(f"{base}/_sandbox/faults", headers=ADMIN, json=faults, timeout=5).raise_for_status()


# -------------------------------------------------------------------------------------------- tests


def test_task_search_finds_the_key_token(sandbox, hubspot, companies):
    owner, ids = next(iter(companies.items()))
    body = {
        "properties": {
            "hs_timestamp": "2026-10-01T00:00:00.000Z",
            "hubspot_owner_id": owner,
            "hs_task_body": f"why\n{key_line('k|1')}",
        },
        "associations": [
            {
                "to": {"id": ids[0]},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 192}],
            }
        ],
    }
    created = hubspot.client.post_json("/crm/v3/objects/tasks", body)
    assert delivery.find_task(hubspot.client, "k|1") == created["id"]
    assert delivery.find_task(hubspot.client, "k|2") is None
    wild = hubspot.client.post_json(
        "/crm/v3/objects/tasks/search",
        {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "hs_task_body",
                            "operator": "CONTAINS_TOKEN",
                            "value": delivery_token("k|1")[:10] + "*",
                        },
                        {"propertyName": "hubspot_owner_id", "operator": "EQ", "value": owner},
                    ]
                }
            ]
        },
    )
    assert [r["id"] for r in wild["results"]] == [created["id"]] and "associations" not in wild["results"][0]
    bad = requests.post(
        f"{sandbox.url}/crm/v3/objects/tasks/search",
        headers=HUBSPOT,
        timeout=5,
        json={"filterGroups": [{"filters": [{"propertyName": "nope", "operator": "EQ"}]}]},
    )
    assert bad.status_code == 400 and bad.json()["category"] == "VALIDATION_ERROR"


def test_one_task_per_event_with_the_why_and_reruns_change_nothing(sandbox, hubspot, engine, decision):
    assert record_events(engine, decision) == 6
    summary = deliver_pending(engine, hubspot.client, as_of=AS_OF, settle_seconds=0)
    assert (summary.sent, summary.failed, summary.adopted) == (3, 0, 0)

    pending = decision.pending.set_index("idempotency_key")
    tasks = {task_key(t): t for t in sandbox_tasks(sandbox.url)}
    assert set(tasks) == set(pending.index)
    for key, task in tasks.items():
        ev, props = pending.loc[key], task["properties"]
        assert props["hubspot_owner_id"] == ev["owner_id"]
        assert task["associations"]["companies"]["results"] == [
            {"id": ev["account_id"], "type": "task_to_company"}
        ]
        assert props["hs_task_priority"] == "HIGH" and props["hs_task_status"] == "NOT_STARTED"
        assert props["hs_task_type"] == "TODO" and props["hs_timestamp"].endswith("Z")
        body = props["hs_task_body"]
        for why in (
            "Score: ",
            "band: ",
            "ARR: $120,000",
            "renewal: 2027-01-15",
            "Biggest changes by dimension",
            "usage: -14.5",
            "Suggested actions:",
        ):
            assert why in body, why
        assert body.splitlines()[-1] == key_line(key)
    rows = stored(engine)
    assert {k for k, r in rows.items() if r["status"] == "sent"} == set(pending.index)
    assert all(rows[k]["crm_task_id"] == summary.task_ids[k] and rows[k]["sent_at"] for k in pending.index)
    assert {k for k, r in rows.items() if r["status"] == "deferred"} == set(
        decision.deferred["idempotency_key"]
    )

    for _ in range(3):
        assert record_events(engine, decision) == 0
        again = deliver_pending(engine, hubspot.client, as_of=AS_OF, settle_seconds=0)
        assert again.delivered == 0
    assert tasks_by_key(sandbox.url) == Counter(dict.fromkeys(pending.index, 1))

    # The next day releases the deferred events: status moves deferred -> pending, then they are sent.
    released = decision.events.assign(status="pending")
    reverted = PlaybookDecision(
        AS_OF, "v1", released.assign(payload=[{} for _ in range(len(released))]), decision.suppressed
    )
    assert record_events(engine, PlaybookDecision(AS_OF, "v1", released, decision.suppressed)) == 3
    assert record_events(engine, reverted) == 0  # pending/sent rows are never rewritten
    assert deliver_pending(engine, hubspot.client, as_of=AS_OF, settle_seconds=0).sent == 3
    assert tasks_by_key(sandbox.url) == Counter(dict.fromkeys(decision.events["idempotency_key"], 1))
    assert all(r["status"] == "sent" and r["payload"] for r in stored(engine).values())


def test_crash_between_post_and_commit_adopts_the_task(sandbox, hubspot, engine, decision, monkeypatch):
    record_events(engine, decision)
    real_mark_sent = delivery._mark_sent
    calls = {"n": 0}

    def crash_once(eng, row_id, task_id):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed before commit")
        real_mark_sent(eng, row_id, task_id)

    monkeypatch.setattr(delivery, "_mark_sent", crash_once)
    with pytest.raises(RuntimeError, match="killed"):
        deliver_pending(engine, hubspot.client, as_of=AS_OF, settle_seconds=0)
    orphan = [r for r in stored(engine).values() if r["attempts"] == 1 and r["crm_task_id"] is None]
    assert len(orphan) == 1 and orphan[0]["status"] == "pending"
    assert len(sandbox_tasks(sandbox.url)) == 2  # the crashed POST did create its task

    monkeypatch.setattr(delivery, "_mark_sent", real_mark_sent)
    summary = deliver_pending(engine, hubspot.client, as_of=AS_OF, settle_seconds=0)
    assert (summary.adopted, summary.sent) == (1, 1)
    assert tasks_by_key(sandbox.url) == Counter(dict.fromkeys(decision.pending["idempotency_key"], 1))
    key = orphan[0]["idempotency_key"]
    assert stored(engine)[key]["crm_task_id"] == summary.task_ids[key]


def test_lost_201_is_found_before_retrying(sandbox, hubspot, engine, decision):
    """HubSpot created the task but the answer never arrived (a proxy 502): no second task."""
    record_events(engine, decision)
    lost = {"n": 0}

    def lose_first_created(response, *args, **kwargs):
        if response.status_code == 201 and lost["n"] == 0:
            lost["n"] += 1
            response.status_code = 502
        return response

    hubspot.client.session.hooks["response"].append(lose_first_created)
    summary = deliver_pending(engine, hubspot.client, as_of=AS_OF, settle_seconds=0)
    assert lost["n"] == 1 and (summary.adopted, summary.sent) == (1, 2)
    assert tasks_by_key(sandbox.url) == Counter(dict.fromkeys(decision.pending["idempotency_key"], 1))


def test_write_faults_still_deliver_exactly_once(sandbox, hubspot, engine, decision):
    record_events(
        engine, decision.__class__(AS_OF, "v1", decision.events.assign(status="pending"), decision.suppressed)
    )
    set_faults(sandbox.url, seed=4, error_5xx_rate=0.3, apply_to_writes=True)
    try:
        for _ in range(8):
            deliver_pending(engine, hubspot.client, as_of=AS_OF, settle_seconds=0, max_attempts=20)
            if all(r["status"] == "sent" for r in stored(engine).values()):
                break
        injected = requests.get(f"{sandbox.url}/_sandbox/faults", headers=ADMIN, timeout=5).json()["injected"]
    finally:
        set_faults(sandbox.url)
    assert injected.get("5xx", 0) > 0
    assert all(r["status"] == "sent" for r in stored(engine).values())
    assert tasks_by_key(sandbox.url) == Counter(dict.fromkeys(decision.events["idempotency_key"], 1))
    assert any(r["attempts"] > 1 for r in stored(engine).values())


def test_validation_errors_fail_then_stop_at_max_attempts(sandbox, hubspot, engine, decision):
    bad = decision.pending.head(1).assign(owner_id="999", idempotency_key="bad|owner|2026-09-29|v1")
    record_events(engine, PlaybookDecision(AS_OF, "v1", bad, decision.suppressed.head(0)))
    for run in range(1, 5):
        summary = deliver_pending(engine, hubspot.client, as_of=AS_OF, max_attempts=3, settle_seconds=0)
        row = stored(engine)["bad|owner|2026-09-29|v1"]
        assert row["status"] == "failed" and row["crm_task_id"] is None
        assert row["attempts"] == min(run, 3)
        assert "INVALID_OWNER_ID" in row["last_error"] and cred.HUBSPOT_TOKEN not in row["last_error"]
    assert summary.sent == 0 and sandbox_tasks(sandbox.url) == []


def crm_health(client, ids: list[str]) -> dict[str, tuple]:
    """What the CRM shows, read back through HubSpot's batch read."""
    body = {"properties": ["health_score", "health_band", "health_trend"], "inputs": [{"id": i} for i in ids]}
    out = {}
    for start in range(0, len(ids), 100):
        answer = client.post_json("/crm/v3/objects/companies/batch/read",
                                  {**body, "inputs": body["inputs"][start:start + 100]}, idempotent=True)
        for r in answer["results"]:
            p = r["properties"]
            out[r["id"]] = (p.get("health_score"), p.get("health_band"), p.get("health_trend"))
    return out


def publication_errors(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["account_id"]: dict(r) for r in conn.execute(sa.select(CrmPublicationError.__table__)).mappings()}


def all_company_ids(companies) -> list[str]:
    return sorted(c for cs in companies.values() for c in cs)


def count_batch_updates(client) -> Counter:
    seen = Counter()
    client.session.hooks["response"].append(
        lambda r, *a, **k: seen.update([r.status_code]) if r.request.url.endswith("/batch/update") else None)
    return seen


def test_publish_batches_only_changes_and_never_shadow(sandbox, hubspot, engine, companies):
    ids = all_company_ids(companies)[:4]
    scores = pd.DataFrame(
        {
            "account_id": ids,
            "score": [71.5, 40.2, 88.0, 12.4],
            "band": ["Moderate", "At Risk", "Healthy", "Critical"],
            "momentum": ["up", "down", "flat", None],
        }
    )
    shadow = scores.assign(score=1.0, band="Critical", is_shadow=True)
    frame = pd.concat([scores.assign(is_shadow=False), shadow], ignore_index=True)
    batches = count_batch_updates(hubspot.client)

    first = publish_scores(engine, hubspot.client, frame)
    assert (first.changed, first.published, first.failed) == (4, 4, 0) and batches == Counter({200: 1})
    assert publish_scores(engine, hubspot.client, frame).changed == 0 and batches == Counter({200: 1})
    changed = frame.copy()
    changed.loc[0, "score"] = 71.7  # still shows 72: nothing to send
    changed.loc[1, "score"] = 30.0
    assert publish_scores(engine, hubspot.client, changed).published == 1 and batches == Counter({200: 2})

    shown = crm_health(hubspot.client, ids)
    assert shown[ids[1]] == ("30", "At Risk", "down") and shown[ids[0]] == ("72", "Moderate", "up")
    assert shown[ids[3]] == ("12", "Critical", "")
    names = {p["name"] for p in hubspot.client.get_json("/crm/v3/properties/companies")["results"]}
    assert {"health_score", "health_band", "health_trend", "health_score_computed",
            "health_score_override_reason"} <= names


def test_an_override_is_published_flagged_beside_the_computed_score_until_it_stops(sandbox, hubspot, engine,
                                                                                  companies):
    acc = [c for cs in companies.values() for c in cs][5]

    def crm() -> tuple:
        props = hubspot.client.post_json("/crm/v3/objects/companies/search", {
            "filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": acc}]}],
            "properties": ["health_score", "health_band", "health_score_computed", "health_score_override_reason"],
        })["results"][0]["properties"]
        return (props["health_score"], props["health_band"], props["health_score_computed"],
                props["health_score_override_reason"])

    computed = pd.DataFrame({"account_id": [acc], "score": [41.6], "band": ["At Risk"], "momentum": ["down"]})
    overridden = computed.assign(override_score=[80.0], override_band=["Healthy"], override_id=[7],
                                 override_reason=["renewal signed"])
    assert publish_scores(engine, hubspot.client, computed).published == 1 and crm() == ("42", "At Risk", "42", "")
    assert publish_scores(engine, hubspot.client, overridden).published == 1
    assert crm() == ("80", "Healthy", "42", "renewal signed")
    assert publish_scores(engine, hubspot.client, overridden).changed == 0  # nothing changed
    band_only = overridden.assign(override_score=[None], override_reason=["exec sponsor left"],
                                  override_band=["Critical"])
    assert publish_scores(engine, hubspot.client, band_only).published == 1
    assert crm() == ("42", "Critical", "42", "exec sponsor left")
    assert publish_scores(engine, hubspot.client, computed).published == 1  # expired or revoked: computed again, no flag
    assert crm() == ("42", "At Risk", "42", "")


def test_publish_in_chunks_with_207_partial_failures_recorded_and_retried(sandbox, hubspot, engine, companies):
    ids = all_company_ids(companies)
    gone = ["9999999901", "9999999902"]  # merged or deleted in the CRM: HubSpot answers OBJECT_NOT_FOUND
    scores = pd.DataFrame({"account_id": ids + gone, "score": [float(10 + i) for i in range(len(ids) + 2)],
                           "band": "Moderate", "momentum": "flat"})
    batches = count_batch_updates(hubspot.client)
    set_faults(sandbox.url, batch_record_error_rate=0.3, seed=11)
    try:
        summary = publish_scores(engine, hubspot.client, scores, batch_size=10, record_rounds=6)
    finally:
        set_faults(sandbox.url)
    assert summary.changed == len(ids) + 2 and summary.published == len(ids)
    assert summary.failed == 2 and summary.retried_records > 0 and batches[207] > 0
    assert batches[200] + batches[207] == summary.requests > -(-(len(ids) + 2) // 10)
    shown = crm_health(hubspot.client, ids)
    assert {i: v[0] for i, v in shown.items()} == {i: str(10 + n) for n, i in enumerate(ids)}
    errors = publication_errors(engine)
    assert set(errors) == set(gone) and {e["category"] for e in errors.values()} == {"OBJECT_NOT_FOUND"}
    assert errors[gone[0]]["health_score"] == float(10 + len(ids))

    # Next run: the failed ones are tried again (not dropped), the published ones are not resent.
    again = publish_scores(engine, hubspot.client, scores, batch_size=10)
    assert (again.changed, again.published, again.failed, again.requests) == (2, 0, 2, 1)
    later = publication_errors(engine)
    assert later[gone[0]]["first_failed_at"] == errors[gone[0]]["first_failed_at"]
    assert later[gone[0]]["last_failed_at"] >= errors[gone[0]]["last_failed_at"]
    # Once the account shows what the CRM already has, its error row goes.
    settled = scores[~scores["account_id"].isin(gone)]
    assert publish_scores(engine, hubspot.client, settled).changed == 0 and set(publication_errors(engine)) == set(gone)


def test_publish_rides_out_429s_and_isolates_a_batch_the_crm_refuses(sandbox, hubspot, engine, companies):
    ids = all_company_ids(companies)[:30]
    scores = pd.DataFrame({"account_id": ids, "score": 55.0, "band": "Moderate", "momentum": "up"})
    batches = count_batch_updates(hubspot.client)
    set_faults(sandbox.url, rate_429_rate=0.4, apply_to_writes=True, seed=4)
    try:
        summary = publish_scores(engine, hubspot.client, scores, batch_size=7)
    finally:
        set_faults(sandbox.url)
    assert summary.published == 30 and summary.failed == 0 and batches[429] > 0
    assert set(crm_health(hubspot.client, ids).values()) == {("55", "Moderate", "up")}

    # A value HubSpot refuses makes it refuse the whole batch (400): halves until the bad input is alone.
    chunk = [publication.Publication(i, 60, "Moderate", "up", 60, "") for i in ids[:6]]
    chunk[4] = publication.Publication(ids[4], "sixty", "Moderate", "up", 60, "")
    outcome = publication._batch_update(hubspot.client, chunk, publication.PublishSummary())
    assert sorted(outcome.ok) == sorted(ids[:4] + ids[5:6])
    assert list(outcome.failed) == [ids[4]] and outcome.failed[ids[4]][0] == "VALIDATION_ERROR"


def test_digests_and_alerts_are_written_once(engine, decision, tmp_path):
    outbox = tmp_path / "outbox" / "notifications.jsonl"
    owners = sorted(set(decision.events["owner_id"]))
    leaders = {"cs_leader": "cs-lead@example.test", "exec_sponsor": "exec@example.test"}
    for _ in range(3):
        send_daily_digests(engine, decision.events, outbox, AS_OF)
        send_critical_alerts(engine, decision.events, outbox, AS_OF, recipients=leaders)
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    digests = [m for m in lines if m["kind"] == "daily_digest"]
    alerts = [m for m in lines if m["kind"] == "critical_alert"]
    assert sorted(m["recipient"] for m in digests) == [f"hubspot-owner:{o}" for o in owners]
    busy = next(m for m in digests if "2 new tasks" in m["subject"])
    assert "3 deferred" in busy["subject"] and "[CRITICAL]" in busy["body"]
    escalations = decision.events[decision.events["playbook"] == "executive_escalation"]
    assert len(alerts) == 2 * len(escalations)
    assert Counter(m["recipient"] for m in alerts) == Counter(
        dict.fromkeys(leaders.values(), len(escalations))
    )
    assert all(
        m["subject"].startswith("[healthscore] CRITICAL") and "Suggested actions" in m["body"] for m in alerts
    )
    assert len({m["dedupe_key"] for m in lines}) == len(lines)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(NotificationOutbox.__table__)).mappings().all()
    assert len(rows) == len(lines) and all(r["sent_at"] is not None for r in rows)
    assert cred.HUBSPOT_TOKEN not in outbox.read_text()

    # A crash after the row insert but before the file line: the next run writes the line once.
    lost = tmp_path / "lost.jsonl"
    note = OutboxNotifier(
        recipient="#cs-alerts",
        channel="slack",
        subject="s",
        body="b",
        engine=engine,
        outbox_path=lost,
        dedupe_key="manual:1",
    )
    with engine.begin() as conn:
        conn.execute(
            sa.insert(NotificationOutbox.__table__).values(
                channel="slack", recipient="#cs-alerts", subject="s", body="b", dedupe_key="manual:1"
            )
        )
    assert note.send() is True and note.send() is False
    assert len(lost.read_text().splitlines()) == 1

    # File-only mode dedupes on the keys already in the file; secrets are scrubbed from bodies.
    file_only = tmp_path / "file_only.jsonl"
    leak = f"token {cred.HUBSPOT_TOKEN} Bearer abc.def"
    assert OutboxNotifier(recipient="a@example.test", body=leak, outbox_path=file_only).send() is True
    assert OutboxNotifier(recipient="a@example.test", body=leak, outbox_path=file_only).send() is False
    text = file_only.read_text()
    assert cred.HUBSPOT_TOKEN not in text and "abc.def" not in text
