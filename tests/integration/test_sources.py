"""The source modules against the sandbox over HTTP: complete pulls, retries under faults, auth, caps."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import requests

from healthscore.sources import HubSpotSource, MixpanelSource, StripeSource, ZendeskSource, registry
from healthscore.sources.base import RetryPolicy, SourceAuthError, SourceConnection
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

NOW = datetime(2026, 9, 30, 12, tzinfo=UTC)
ADMIN = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}
FAST_RETRIES = RetryPolicy(attempts=10, backoff_base=0.01, backoff_max=0.2, timeout=0.5)


def connections(base: str) -> dict[str, SourceConnection]:
    extra = {"sandbox": True}
    return {
        "hubspot": SourceConnection("crm_hubspot", base, password=cred.HUBSPOT_TOKEN, extra=extra),
        "zendesk": SourceConnection("support_zendesk", base, cred.ZENDESK_EMAIL, cred.ZENDESK_API_TOKEN, extra),
        "stripe": SourceConnection("billing_stripe", base, password=cred.STRIPE_SECRET_KEY, extra=extra),
        "mixpanel": SourceConnection("product_mixpanel", base, cred.MIXPANEL_SERVICE_ACCOUNT, cred.MIXPANEL_SECRET,
                                     {**extra, "project_id": cred.MIXPANEL_PROJECT_ID}),
    }


#: The sources paged object by object (Mixpanel is folded per day, below).
SOURCES = {s.name: s.client_class() for s in registry.sources() if s.name != "mixpanel"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(build_state(SandboxOptions(seed=3, accounts=120, rate_limit_scale=1000))) as server:
        yield server


def set_faults(base: str, **faults) -> None:
    requests.post(f"{base}/_sandbox/faults", headers=ADMIN, json=faults, timeout=5).raise_for_status()


def pull_everything(base: str, policy: RetryPolicy | None = None) -> tuple[dict, int]:
    conns, out, retries = connections(base), {}, 0
    for name, cls in SOURCES.items():
        with cls(conns[name], as_of=NOW, policy=policy) as source:
            for obj, spec in cls.objects.items():
                records = list(source.records(obj))
                out[(name, obj)] = {spec.record_id(r): r for r in records}
                assert len(out[(name, obj)]) == len(records), f"{name}.{obj} returned a record twice"
            retries += source.client.stats.retries
    with MixpanelSource(conns["mixpanel"], as_of=NOW, policy=policy) as mixpanel:
        events = mixpanel.fold_day(date(2026, 9, 29), list, lambda acc, e: acc.append(e))
        out[("mixpanel", "events")] = sorted(e["properties"]["$insert_id"] for e in events)
        retries += mixpanel.client.stats.retries
    return out, retries


def test_faults_do_not_change_what_lands(sandbox, caplog):
    clean, clean_retries = pull_everything(sandbox.url)
    assert clean_retries == 0 and all(clean.values())
    set_faults(sandbox.url, seed=11, error_5xx_rate=0.10, rate_429_rate=0.05, timeout_rate=0.02,
               timeout_seconds=1.0, malformed_pages=2)
    try:
        with caplog.at_level(logging.WARNING, logger="healthscore.sources"):
            faulty, retries = pull_everything(sandbox.url, FAST_RETRIES)
    finally:
        set_faults(sandbox.url)
    assert faulty == clean
    assert retries > 0
    assert any("retry" in message for message in caplog.messages)


def test_bad_credentials_fail_fast_naming_the_connection(sandbox):
    conn = SourceConnection("crm_hubspot", sandbox.url, password="wrong", extra={"sandbox": True})
    with HubSpotSource(conn, policy=FAST_RETRIES) as source, pytest.raises(SourceAuthError, match="crm_hubspot"):
        list(source.records("companies"))
    assert source.client.stats.requests == 1


def test_secret_never_in_repr():
    conn = SourceConnection("billing_stripe", "http://x", password=cred.STRIPE_SECRET_KEY)
    assert cred.STRIPE_SECRET_KEY not in repr(conn)


def test_clock_header_only_for_sandbox_connections(sandbox):
    sandbox_conn = connections(sandbox.url)["stripe"]
    real_conn = SourceConnection("billing_stripe", sandbox.url, password=cred.STRIPE_SECRET_KEY)
    assert "X-Sandbox-Now" in StripeSource(sandbox_conn, as_of=NOW).client.session.headers
    assert "X-Sandbox-Now" not in StripeSource(real_conn, as_of=NOW).client.session.headers


def test_incremental_cursors_resume_where_the_last_pull_ended(sandbox):
    conns = connections(sandbox.url)
    early = datetime(2026, 6, 1, tzinfo=UTC)
    with ZendeskSource(conns["zendesk"], as_of=early) as zendesk:
        pages = list(zendesk.pages("tickets"))
        first_ids = {t["id"] for p in pages for t in p.records}
        cursor = pages[-1].cursor
    with ZendeskSource(conns["zendesk"], as_of=NOW) as zendesk:
        later = [t for p in zendesk.pages("tickets", cursor) for t in p.records]
    with ZendeskSource(conns["zendesk"], as_of=NOW) as zendesk:
        full = {t["id"] for t in zendesk.records("tickets")}
    assert later and all(t["updated_at"] >= "2026-06-01" for t in later)
    assert first_ids | {t["id"] for t in later} == full

    with HubSpotSource(conns["hubspot"], as_of=early) as hubspot:
        pages = list(hubspot.pages("companies"))
        cursor = pages[-1].cursor
    with HubSpotSource(conns["hubspot"], as_of=NOW) as hubspot:
        changed = list(hubspot.records("companies", cursor))
    since = datetime.fromtimestamp(int(cursor) / 1000, UTC)
    assert changed and all(datetime.fromisoformat(c["properties"]["hs_lastmodifieddate"]) >= since for c in changed)


def _stripe_read(conn: SourceConnection, obj: str, as_of: datetime, cursor: str | None) -> tuple[list[dict], str]:
    with StripeSource(conn, as_of=as_of) as stripe:
        pages = list(stripe.pages(obj, cursor))
        paths = stripe.client.stats.requests
    records = [r for p in pages for r in p.records]
    assert paths > 0 and len({r["id"] for r in records}) == len(records), f"{obj}: an object landed twice"
    return records, pages[-1].cursor


@pytest.mark.parametrize("bad_record_rate", [0.0, 0.05])
def test_stripe_events_after_a_full_list_land_what_a_full_list_shows(sandbox, bad_record_rate):
    """A full list, then eight daily reads of the events since each cursor (newest version per object):
    the objects held then equal a full list of the last day, field for field."""
    conn = connections(sandbox.url)["stripe"]
    set_faults(sandbox.url, bad_record_rate=bad_record_rate, seed=7)
    try:
        days = [datetime(2026, 9, d, tzinfo=UTC) for d in range(20, 29)]
        for obj in ("customers", "subscriptions", "invoices"):
            records, cursor = _stripe_read(conn, obj, days[0], None)
            held = {r["id"]: r for r in records}
            changed = 0
            for day in days[1:]:
                records, following = _stripe_read(conn, obj, day, cursor)
                assert following.startswith("events:") and int(following[7:]) >= int(cursor[7:])
                held.update({r["id"]: r for r in records})
                changed += len(records)
                cursor = following
            full, _ = _stripe_read(conn, obj, days[-1], None)
            assert held == {r["id"]: r for r in full}, obj
            assert 0 < changed < len(full) * len(days), obj  # the days read what changed, not everything
    finally:
        set_faults(sandbox.url)


def test_stripe_reads_in_full_when_events_cannot_resume(sandbox):
    """A cursor older than Stripe's 30-day event retention, or one the list reader wrote (a plain epoch),
    is answered with the full list; a recent one with events."""
    conn = connections(sandbox.url)["stripe"]
    full, _ = _stripe_read(conn, "invoices", NOW, None)
    stale = f"events:{int(NOW.timestamp()) - 31 * 86_400}"
    legacy = str(int(NOW.timestamp()) - 86_400)
    for cursor in (stale, legacy):
        records, following = _stripe_read(conn, "invoices", NOW, cursor)
        assert {r["id"] for r in records} == {r["id"] for r in full}
        assert following == f"events:{int(NOW.timestamp()) - 300}"
    recent = f"events:{int(NOW.timestamp()) - 86_400}"
    assert 0 < len(_stripe_read(conn, "invoices", NOW, recent)[0]) < len(full)


def test_stripe_events_honour_pagination_filters_and_the_clock(sandbox):
    headers = {"Authorization": f"Bearer {cred.STRIPE_SECRET_KEY}", "X-Sandbox-Now": NOW.isoformat()}
    now = int(NOW.timestamp())

    def get(**params) -> requests.Response:
        return requests.get(f"{sandbox.url}/v1/events", params=params, headers=headers, timeout=10)

    every, params = [], {"limit": 100}
    while True:
        body = get(**params).json()
        every += body["data"]
        if not body["has_more"]:
            break
        params["starting_after"] = body["data"][-1]["id"]
    created = [e["created"] for e in every]
    assert created == sorted(created, reverse=True) and now - 30 * 86_400 < min(created) and max(created) <= now
    assert len({e["id"] for e in every}) == len(every)
    invoices = get(type="invoice.*", limit=100, **{"created[gte]": now - 86_400}).json()["data"]
    assert invoices and all(e["type"].startswith("invoice.") and e["created"] >= now - 86_400 for e in invoices)
    chosen = get(**{"types[]": ["customer.subscription.created", "customer.subscription.deleted"], "limit": 100})
    assert all(e["type"] in ("customer.subscription.created", "customer.subscription.deleted")
               for e in chosen.json()["data"])
    updated = next(e for e in every if e["type"] == "customer.subscription.updated")
    assert updated["data"]["previous_attributes"] and all(
        updated["data"]["previous_attributes"][k] != updated["data"]["object"][k]
        for k in updated["data"]["previous_attributes"])
    # The same events whatever "now" asks, as long as Stripe still keeps them.
    later = {**headers, "X-Sandbox-Now": datetime.fromtimestamp(now + 86_400, UTC).isoformat()}
    page = requests.get(f"{sandbox.url}/v1/events", params={"limit": 100, "created[lte]": now}, headers=later,
                        timeout=10).json()["data"]
    assert [e["id"] for e in page] == [e["id"] for e in every[:100]]
    assert page == every[:100]
    for bad in ({"limit": 101}, {"starting_after": "evt_nosuchevent"},
                {"type": "invoice.*", "types[]": ["invoice.paid"]}):
        answer = get(**bad)
        assert answer.status_code in (400, 404) and "error" in answer.json()
    assert requests.get(f"{sandbox.url}/v1/events", timeout=10).status_code == 401


def test_hubspot_search_restarts_its_window_before_the_10k_cap():
    state = build_state(SandboxOptions(seed=5, accounts=10_600, rate_limit_scale=1000))
    with ThreadedSandbox(state) as server:
        conn = connections(server.url)["hubspot"]
        with HubSpotSource(conn, as_of=NOW) as source:
            found = [r["id"] for r in source.records("companies", cursor="0")]
            requests_made = source.client.stats.requests
    expected = (state.world.accounts["created_ts"] <= NOW.timestamp()).sum()
    assert expected > 10_000
    assert len(found) == len(set(found)) == expected
    assert requests_made > expected // 200  # it had to start a second search window


def test_mixpanel_cut_stream_rereads_the_whole_day(sandbox):
    conn = connections(sandbox.url)["mixpanel"]
    day = date(2026, 9, 28)
    with MixpanelSource(conn, as_of=NOW) as source:
        clean = source.fold_day(day, lambda: [0], lambda acc, _e: acc.__setitem__(0, acc[0] + 1))[0]
    set_faults(sandbox.url, malformed_pages=1)
    try:
        with MixpanelSource(conn, as_of=NOW, policy=FAST_RETRIES) as source:
            counted = source.fold_day(day, lambda: [0], lambda acc, _e: acc.__setitem__(0, acc[0] + 1))[0]
            assert source.client.stats.retries == 1
    finally:
        set_faults(sandbox.url)
    assert counted == clean > 0
