"""Every sandbox endpoint over real HTTP with `requests`: pagination, auth, rate limits, clock, seed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import requests
from requests.auth import HTTPBasicAuth

from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

NOW = int(datetime(2026, 9, 30, 12, tzinfo=UTC).timestamp())
EARLIER = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
HUBSPOT = {"Authorization": f"Bearer {cred.HUBSPOT_TOKEN}"}
STRIPE = {"Authorization": f"Bearer {cred.STRIPE_SECRET_KEY}"}
ZENDESK = HTTPBasicAuth(f"{cred.ZENDESK_EMAIL}/token", cred.ZENDESK_API_TOKEN)
MIXPANEL = HTTPBasicAuth(cred.MIXPANEL_SERVICE_ACCOUNT, cred.MIXPANEL_SECRET)
ADMIN = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    state = build_state(SandboxOptions(seed=7, accounts=150, now=NOW, rate_limit_scale=1000))
    with ThreadedSandbox(state) as server:
        yield server


@pytest.fixture
def http(sandbox) -> Iterator[requests.Session]:
    session = requests.Session()
    yield session
    session.post(f"{sandbox.url}/_sandbox/reset", headers=ADMIN).raise_for_status()
    session.close()


def visible(frame, column: str, now: int = NOW):
    return frame[frame[column] <= now]


# ---- pagination: every record exactly once -------------------------------------------------------
def hubspot_all(http, base: str, obj: str, headers=None, **params) -> list[dict]:
    out, after = [], None
    while True:
        query = {"limit": 100, **params, **({"after": after} if after else {})}
        page = http.get(f"{base}/crm/v3/objects/{obj}", headers={**HUBSPOT, **(headers or {})}, params=query)
        page.raise_for_status()
        body = page.json()
        out += body["results"]
        if "paging" not in body:
            return out
        after = body["paging"]["next"]["after"]
        assert body["paging"]["next"]["link"].startswith(base)


@pytest.mark.parametrize(
    ("obj", "table", "ts", "id_col"),
    [("companies", "accounts", "created_ts", "hubspot_company_id"), ("contacts", "contacts", "created_ts", "contact_id"),
     ("deals", "deals", "create_ts", "deal_id"), ("meetings", "meetings", "ts", "meeting_id")],
)
def test_hubspot_objects_paginate_each_record_once(sandbox, http, obj, table, ts, id_col):
    records = hubspot_all(http, sandbox.url, obj, properties="name,dealstage,hs_meeting_outcome")
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))
    archived = set(sandbox.state.views.archived(obj, NOW)["id"])  # deleted in the CRM: not listed
    expected = set(visible(getattr(sandbox.state.world, table), ts)[id_col].astype(str)) - archived
    assert set(ids) == expected and len(expected) > 20
    for record in records[:50]:
        assert all(v is None or isinstance(v, str) for v in record["properties"].values())
        assert record["properties"]["hs_object_id"] == record["id"]


def test_hubspot_company_properties_are_strings_and_custom_ones_served(sandbox, http):
    page = http.get(f"{sandbox.url}/crm/v3/objects/companies", headers=HUBSPOT,
                    params={"limit": 5, "properties": "arr,licensed_seats,customer_segment,hubspot_owner_id"}).json()
    props = page["results"][0]["properties"]
    assert float(props["arr"]) >= 0 and props["licensed_seats"].isdigit()
    assert props["customer_segment"] in {"enterprise", "mid_market", "smb"}


def test_hubspot_owners_and_associations(sandbox, http):
    owners = http.get(f"{sandbox.url}/crm/v3/owners", headers=HUBSPOT).json()["results"]
    assert {o["id"] for o in owners} == set(sandbox.state.world.owners["owner_id"].astype(str))
    deals = http.get(f"{sandbox.url}/crm/v3/objects/deals", headers=HUBSPOT,
                     params={"limit": 3, "associations": "companies"}).json()["results"]
    company_ids = set(sandbox.state.world.accounts["hubspot_company_id"].astype(str))
    assert all(d["associations"]["companies"]["results"][0]["id"] in company_ids for d in deals)


def test_hubspot_search_incremental_on_lastmodified(sandbox, http):
    since_ms = (NOW - 120 * 86400) * 1000
    body = {"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE",
                                           "value": str(since_ms)}]}],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["name"], "limit": 50}
    found, after = [], None
    while True:
        resp = http.post(f"{sandbox.url}/crm/v3/objects/companies/search", headers=HUBSPOT,
                         json={**body, **({"after": after} if after else {})})
        resp.raise_for_status()
        page = resp.json()
        found += page["results"]
        if "paging" not in page:
            break
        after = page["paging"]["next"]["after"]
    stamps = [r["properties"]["hs_lastmodifieddate"] for r in found]
    assert stamps == sorted(stamps) and len({r["id"] for r in found}) == len(found) == page["total"]
    everything = hubspot_all(http, sandbox.url, "companies")
    expected = {r["id"] for r in everything
                if datetime.fromisoformat(r["properties"]["hs_lastmodifieddate"]).timestamp() * 1000 >= since_ms}
    assert {r["id"] for r in found} == expected
    assert 0 < len(expected) < len(everything)


def test_hubspot_search_caps_at_ten_thousand_results(sandbox, http):
    resp = http.post(f"{sandbox.url}/crm/v3/objects/companies/search", headers=HUBSPOT,
                     json={"limit": 100, "after": "9950"})
    assert resp.status_code == 400
    assert resp.json()["category"] == "VALIDATION_ERROR" and "10000" in resp.json()["message"]
    assert http.post(f"{sandbox.url}/crm/v3/objects/companies/search", headers=HUBSPOT,
                     json={"limit": 100, "after": "9900"}).status_code == 200


def test_hubspot_task_create_and_company_patch(sandbox, http):
    company = sandbox.state.world.accounts.iloc[0]
    owner = str(company["owner_id"])
    task = {"properties": {"hs_timestamp": "2026-10-02T12:00:00Z", "hs_task_subject": "Save plan",
                           "hs_task_body": "why", "hubspot_owner_id": owner, "hs_task_status": "NOT_STARTED",
                           "hs_task_priority": "HIGH", "hs_task_type": "TODO"},
            "associations": [{"to": {"id": str(company["hubspot_company_id"])},
                              "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 192}]}]}
    created = http.post(f"{sandbox.url}/crm/v3/objects/tasks", headers=HUBSPOT, json=task)
    assert created.status_code == 201 and created.json()["properties"]["hubspot_owner_id"] == owner
    missing = http.post(f"{sandbox.url}/crm/v3/objects/tasks", headers=HUBSPOT,
                        json={"properties": {"hs_task_subject": "x"}})
    assert missing.status_code == 400 and missing.json()["errors"][0]["code"] == "PROPERTY_REQUIRED"
    listed = http.get(f"{sandbox.url}/crm/v3/objects/tasks", headers=HUBSPOT).json()["results"]
    assert [t["id"] for t in listed] == [created.json()["id"]]

    url = f"{sandbox.url}/crm/v3/objects/companies/{company['hubspot_company_id']}"
    unknown = http.patch(url, headers=HUBSPOT, json={"properties": {"health_score": "72"}})
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    prop = {"name": "health_score", "label": "Health score", "type": "number", "fieldType": "number",
            "groupName": "companyinformation"}
    assert http.post(f"{sandbox.url}/crm/v3/properties/companies", headers=HUBSPOT, json=prop).status_code == 201
    assert http.post(f"{sandbox.url}/crm/v3/properties/companies", headers=HUBSPOT, json=prop).status_code == 409
    patched = http.patch(url, headers=HUBSPOT, json={"properties": {"health_score": 72}})
    assert patched.status_code == 200 and patched.json()["properties"]["health_score"] == "72"
    read = http.get(f"{sandbox.url}/crm/v3/objects/companies", headers=HUBSPOT,
                    params={"limit": 1, "properties": "health_score"}).json()["results"][0]
    assert read["properties"]["health_score"] == "72"
    assert http.patch(f"{sandbox.url}/crm/v3/objects/companies/123", headers=HUBSPOT,
                      json={"properties": {"name": "x"}}).status_code == 404


def test_hubspot_batch_update_and_read_as_documented(sandbox, http):
    base = f"{sandbox.url}/crm/v3/objects/companies/batch"
    ids = sorted(visible(sandbox.state.world.accounts, "created_ts")["hubspot_company_id"].astype(str))[:3]
    prop = {"name": "health_score", "label": "Health score", "type": "number", "fieldType": "number",
            "groupName": "companyinformation"}
    unknown = http.post(f"{base}/update", headers=HUBSPOT,
                        json={"inputs": [{"id": ids[0], "properties": {"health_score": "1"}}]})
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    http.post(f"{sandbox.url}/crm/v3/properties/companies", headers=HUBSPOT, json=prop).raise_for_status()

    inputs = [{"id": c, "properties": {"health_score": str(60 + n)}} for n, c in enumerate(ids)]
    ok = http.post(f"{base}/update", headers=HUBSPOT, json={"inputs": inputs})
    assert ok.status_code == 200 and ok.json()["status"] == "COMPLETE" and "errors" not in ok.json()
    assert sorted(r["id"] for r in ok.json()["results"]) == ids

    partial = http.post(f"{base}/update", headers=HUBSPOT, json={"inputs": [
        {"id": ids[0], "properties": {"health_score": "70"}}, {"id": "123", "properties": {"health_score": "1"}}]})
    assert partial.status_code == 207
    body = partial.json()
    assert [r["id"] for r in body["results"]] == [ids[0]] and body["numErrors"] == 1
    assert body["errors"][0]["category"] == "OBJECT_NOT_FOUND" and body["errors"][0]["context"]["ids"] == ["123"]

    bad_value = http.post(f"{base}/update", headers=HUBSPOT, json={"inputs": [
        {"id": ids[0], "properties": {"health_score": "71"}}, {"id": ids[1], "properties": {"health_score": "high"}}]})
    assert bad_value.status_code == 400 and bad_value.json()["errors"][0]["code"] == "INVALID_DOUBLE"
    too_many = http.post(f"{base}/update", headers=HUBSPOT,
                         json={"inputs": [{"id": str(i), "properties": {}} for i in range(101)]})
    assert too_many.status_code == 400 and too_many.json()["category"] == "VALIDATION_ERROR"
    dup = http.post(f"{base}/update", headers=HUBSPOT, json={"inputs": [{"id": ids[0]}, {"id": ids[0]}]})
    assert dup.status_code == 400 and "Duplicate" in dup.json()["message"]

    read = http.post(f"{base}/read", headers=HUBSPOT,
                     json={"properties": ["health_score"], "inputs": [{"id": i} for i in [*ids, "123"]]})
    assert read.status_code == 207 and read.json()["errors"][0]["context"]["ids"] == ["123"]
    scores = {r["id"]: r["properties"]["health_score"] for r in read.json()["results"]}
    assert scores == {ids[0]: "70", ids[1]: "61", ids[2]: "62"}
    full = http.post(f"{base}/read", headers=HUBSPOT, json={"inputs": [{"id": i} for i in ids]})
    assert full.status_code == 200 and len(full.json()["results"]) == 3
    # What was written is what the list and search endpoints show, stamped as a modification.
    listed = {r["id"]: r for r in hubspot_all(http, sandbox.url, "companies", properties="health_score")}
    assert listed[ids[1]]["properties"]["health_score"] == "61"
    assert listed[ids[1]]["properties"]["hs_lastmodifieddate"].startswith("2026-09-30T12:00:00")


def test_hubspot_archived_records_and_v4_associations(sandbox, http):
    live = hubspot_all(http, sandbox.url, "meetings")
    gone = hubspot_all(http, sandbox.url, "meetings", archived="true")
    assert gone and all(r["archived"] is True and r["archivedAt"] for r in gone)
    assert not {r["id"] for r in gone} & {r["id"] for r in live}
    assert all(r["properties"]["hs_lastmodifieddate"] == r["archivedAt"] for r in gone)
    search = http.post(f"{sandbox.url}/crm/v3/objects/meetings/search", headers=HUBSPOT, json={
        "filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": gone[0]["id"]}]}]})
    assert search.json()["total"] == 0  # deleted records leave search too

    url = f"{sandbox.url}/crm/v4/associations/meetings/companies/batch/read"
    ids = [r["id"] for r in live[:3]]
    ok = http.post(url, headers=HUBSPOT, json={"inputs": [{"id": i} for i in ids]})
    assert ok.status_code == 200
    by_id = {r["from"]["id"]: r["to"] for r in ok.json()["results"]}
    listed = {r["id"]: r["associations"]["companies"]["results"][0]["id"]
              for r in hubspot_all(http, sandbox.url, "meetings", associations="companies")[:3]}
    assert {i: str(to[0]["toObjectId"]) for i, to in by_id.items()} == listed
    assert by_id[ids[0]][0]["associationTypes"][0]["category"] == "HUBSPOT_DEFINED"
    partial = http.post(url, headers=HUBSPOT, json={"inputs": [{"id": ids[0]}, {"id": gone[0]["id"]}]})
    assert partial.status_code == 207 and partial.json()["numErrors"] == 1
    assert partial.json()["errors"][0]["context"]["ids"] == [gone[0]["id"]]
    assert http.post(f"{sandbox.url}/crm/v4/associations/meetings/tickets/batch/read", headers=HUBSPOT,
                     json={"inputs": [{"id": ids[0]}]}).status_code == 400


def test_hubspot_batch_update_partial_faults_and_429(sandbox, http):
    base = f"{sandbox.url}/crm/v3/objects/companies/batch/update"
    ids = sorted(visible(sandbox.state.world.accounts, "created_ts")["hubspot_company_id"].astype(str))[:100]
    inputs = [{"id": c, "properties": {"name": f"n{c}"}} for c in ids]
    http.post(f"{sandbox.url}/_sandbox/faults", headers=ADMIN,
              json={"batch_record_error_rate": 0.3, "seed": 3}).raise_for_status()
    answer = http.post(base, headers=HUBSPOT, json={"inputs": inputs})
    assert answer.status_code == 207
    body = answer.json()
    failed = body["errors"][0]["context"]["ids"]
    assert body["errors"][0]["category"] == "INTERNAL_ERROR" and body["numErrors"] == len(failed)
    assert 10 < len(failed) < 60 and sorted([*failed, *(r["id"] for r in body["results"])]) == ids
    http.post(f"{sandbox.url}/_sandbox/faults", headers=ADMIN,
              json={"rate_429_rate": 1.0, "apply_to_writes": True}).raise_for_status()
    limited = http.post(base, headers=HUBSPOT, json={"inputs": inputs[:1]})
    assert limited.status_code == 429 and limited.json()["policyName"] == "TEN_SECONDLY_ROLLING"


def zendesk_export(http, base: str, start_time: int = 0, headers=None) -> tuple[list[dict], list[dict], dict]:
    tickets, metrics = [], []
    resp = http.get(f"{base}/api/v2/incremental/tickets/cursor.json", auth=ZENDESK, headers=headers,
                    params={"start_time": start_time, "include": "metric_sets", "per_page": 100})
    while True:
        resp.raise_for_status()
        body = resp.json()
        tickets += body["tickets"]
        metrics += body["metric_sets"]
        if body["end_of_stream"]:
            return tickets, metrics, body
        assert body["after_url"].startswith(base)  # absolute, pointing at the sandbox itself
        resp = http.get(body["after_url"], auth=ZENDESK, headers=headers)


def test_zendesk_incremental_export_each_ticket_once(sandbox, http):
    tickets, metrics, last = zendesk_export(http, sandbox.url)
    ids = [t["id"] for t in tickets]
    assert len(ids) == len(set(ids)) and {m["ticket_id"] for m in metrics} == set(ids)
    world = sandbox.state.world.tickets
    assert set(world.loc[world.created_ts <= NOW - 3600, "ticket_id"]) <= set(ids)
    assert set(ids) <= set(world.loc[world.created_ts <= NOW, "ticket_id"])
    updated = [t["updated_at"] for t in tickets]
    assert updated == sorted(updated)
    assert {t["status"] for t in tickets} <= {"new", "open", "pending", "hold", "solved", "closed"}
    # Resuming from the final cursor yields nothing new: the stream is complete.
    again = http.get(f"{sandbox.url}/api/v2/incremental/tickets/cursor.json", auth=ZENDESK,
                     params={"cursor": last["after_cursor"]}).json()
    assert again["tickets"] == [] and again["end_of_stream"] is True


def test_zendesk_satisfaction_ratings_cursor(sandbox, http):
    ratings, url = [], f"{sandbox.url}/api/v2/satisfaction_ratings?page[size]=25"
    while url:
        body = http.get(url, auth=ZENDESK).json()
        ratings += body["satisfaction_ratings"]
        url = body["links"]["next"]
        assert body["meta"]["has_more"] == bool(url)
    world = visible(sandbox.state.world.satisfaction_ratings, "created_ts")
    assert sorted(r["id"] for r in ratings) == sorted(world["rating_id"].tolist())
    assert {r["score"] for r in ratings} <= {"good", "bad"}


def stripe_all(http, base: str, obj: str, headers=None, **params) -> list[dict]:
    out, after = [], None
    while True:
        query = {"limit": 100, **params, **({"starting_after": after} if after else {})}
        resp = http.get(f"{base}/v1/{obj}", headers={**STRIPE, **(headers or {})}, params=query)
        resp.raise_for_status()
        body = resp.json()
        assert body["object"] == "list"
        out += body["data"]
        if not body["has_more"]:
            return out
        after = body["data"][-1]["id"]


@pytest.mark.parametrize("obj", ["customers", "subscriptions", "invoices"])
def test_stripe_lists_each_record_once_newest_first(sandbox, http, obj):
    params = {"status": "all"} if obj == "subscriptions" else {}
    records = stripe_all(http, sandbox.url, obj, **params)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) > 20
    created = [r["created"] for r in records]
    assert created == sorted(created, reverse=True)
    world = sandbox.state.world
    expected = {"customers": visible(world.accounts, "created_ts")["stripe_customer_id"],
                "subscriptions": visible(world.accounts, "created_ts")["stripe_customer_id"],
                "invoices": visible(world.invoices, "created_ts")["invoice_id"]}[obj]
    if obj == "subscriptions":
        assert {r["customer"] for r in records} == set(expected)
    else:
        assert set(ids) == set(expected)
    if obj == "invoices":
        assert all(isinstance(r["amount_due"], int) for r in records)


def test_stripe_created_window_status_all_and_limit(sandbox, http):
    every = stripe_all(http, sandbox.url, "subscriptions", status="all")
    default = stripe_all(http, sandbox.url, "subscriptions")
    assert {s["status"] for s in default} <= {"active", "past_due"}
    assert len(every) >= len(default)
    lo, hi = EARLIER - 200 * 86400, EARLIER
    window = stripe_all(http, sandbox.url, "customers", **{"created[gte]": lo, "created[lt]": hi})
    assert window and all(lo <= c["created"] < hi for c in window)
    too_big = http.get(f"{sandbox.url}/v1/customers", headers=STRIPE, params={"limit": 101})
    assert too_big.status_code == 400 and too_big.json()["error"]["param"] == "limit"


def mixpanel_export(http, base: str, day: date, headers=None) -> list[dict]:
    resp = http.get(f"{base}/api/2.0/export", auth=MIXPANEL, headers=headers,
                    params={"from_date": day.isoformat(), "to_date": day.isoformat(),
                            "project_id": cred.MIXPANEL_PROJECT_ID})
    resp.raise_for_status()
    return [json.loads(line) for line in resp.text.splitlines() if line]


def test_mixpanel_export_streams_the_day(sandbox, http):
    day = date(2026, 9, 15)
    events = mixpanel_export(http, sandbox.url, day)
    assert len(events) == len(sandbox.state.world.product_events(day)) > 100
    ids = [e["properties"]["$insert_id"] for e in events]
    assert len(ids) == len(set(ids))
    company_ids = set(sandbox.state.world.accounts["hubspot_company_id"].astype(str))
    day_start = int(datetime(2026, 9, 15, tzinfo=UTC).timestamp())
    for event in events:
        props = event["properties"]
        assert props["company_id"] in company_ids and day_start <= props["time"] < day_start + 86400
        if event["event"] == "NPS Survey Responded":
            assert 0 <= props["nps_score"] <= 10


def test_mixpanel_rejects_future_and_missing_project(sandbox, http):
    future = http.get(f"{sandbox.url}/api/2.0/export", auth=MIXPANEL,
                      params={"from_date": "2026-10-01", "to_date": "2026-10-02", "project_id": cred.MIXPANEL_PROJECT_ID})
    assert future.status_code == 400 and "later than today" in future.json()["error"]
    assert http.get(f"{sandbox.url}/api/2.0/export", auth=MIXPANEL,
                    params={"from_date": "2026-09-01", "to_date": "2026-09-01"}).status_code == 400


# ---- auth ------------------------------------------------------------------------------------
def test_every_api_rejects_bad_auth_with_its_own_error_body(sandbox, http):
    base = sandbox.url
    hub = http.get(f"{base}/crm/v3/objects/companies", headers={"Authorization": "Bearer nope"})
    assert hub.status_code == 401 and hub.json()["category"] == "INVALID_AUTHENTICATION"
    zen = http.get(f"{base}/api/v2/incremental/tickets/cursor.json", params={"start_time": 0},
                   auth=HTTPBasicAuth("x/token", "y"))
    assert zen.status_code == 401 and zen.json()["error"] == "Couldn't authenticate you"
    stripe = http.get(f"{base}/v1/customers", headers={"Authorization": "Bearer sk_test_wrongwrongwrong"})
    assert stripe.status_code == 401 and stripe.json()["error"]["type"] == "invalid_request_error"
    assert "sk_test_" in stripe.json()["error"]["message"] and "wrongwrongwrong" not in stripe.json()["error"]["message"]
    mix = http.get(f"{base}/api/2.0/export", auth=HTTPBasicAuth("a", "b"),
                   params={"from_date": "2026-09-01", "to_date": "2026-09-01", "project_id": cred.MIXPANEL_PROJECT_ID})
    assert mix.status_code == 401 and "authenticate" in mix.json()["error"]
    assert http.get(f"{base}/_sandbox/clock").status_code == 401


# ---- rate limits -----------------------------------------------------------------------------
def test_rate_limits_answer_429_with_vendor_headers():
    state = build_state(SandboxOptions(seed=7, accounts=30, now=NOW, rate_limit_scale=0.01))
    with ThreadedSandbox(state) as server, requests.Session() as http:
        ok = http.get(f"{server.url}/crm/v3/objects/companies", headers=HUBSPOT)
        assert ok.status_code == 200
        assert ok.headers["X-HubSpot-RateLimit-Max"] == "1" and ok.headers["X-HubSpot-RateLimit-Remaining"] == "0"
        assert ok.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        limited = http.get(f"{server.url}/crm/v3/objects/companies", headers=HUBSPOT)
        assert limited.status_code == 429
        assert limited.json()["errorType"] == "RATE_LIMIT" and limited.json()["policyName"] == "TEN_SECONDLY_ROLLING"

        params = {"start_time": 0}
        first = http.get(f"{server.url}/api/v2/incremental/tickets/cursor.json", auth=ZENDESK, params=params)
        assert first.status_code == 200 and first.headers["X-Rate-Limit"] == "1"
        second = http.get(f"{server.url}/api/v2/incremental/tickets/cursor.json", auth=ZENDESK, params=params)
        assert second.status_code == 429 and 1 <= int(second.headers["Retry-After"]) <= 60
        assert second.json()["error"] == "APIRateLimitExceeded"

        assert http.get(f"{server.url}/v1/customers", headers=STRIPE).status_code == 200
        stripe = http.get(f"{server.url}/v1/customers", headers=STRIPE)
        assert stripe.status_code == 429 and stripe.json()["error"]["code"] == "rate_limit"


def test_injected_429_and_5xx_use_vendor_shapes(sandbox, http):
    http.post(f"{sandbox.url}/_sandbox/faults", headers=ADMIN, json={"rate_429_rate": 1.0}).raise_for_status()
    zen = http.get(f"{sandbox.url}/api/v2/incremental/tickets/cursor.json", auth=ZENDESK, params={"start_time": 0})
    assert zen.status_code == 429 and "Retry-After" in zen.headers
    http.post(f"{sandbox.url}/_sandbox/faults", headers=ADMIN, json={"error_5xx_rate": 1.0}).raise_for_status()
    stripe = http.get(f"{sandbox.url}/v1/customers", headers=STRIPE)
    assert stripe.status_code == 500 and stripe.json()["error"]["type"] == "api_error"
    hub = http.get(f"{sandbox.url}/crm/v3/objects/companies", headers=HUBSPOT)
    assert hub.status_code >= 500 and hub.json()["status"] == "error"


def test_malformed_page_then_recovery(sandbox, http):
    http.post(f"{sandbox.url}/_sandbox/faults", headers=ADMIN, json={"malformed_pages": 1}).raise_for_status()
    bad = http.get(f"{sandbox.url}/v1/customers", headers=STRIPE)
    assert bad.status_code == 200
    with pytest.raises(ValueError):
        bad.json()
    assert http.get(f"{sandbox.url}/v1/customers", headers=STRIPE).json()["object"] == "list"


def test_bad_records_are_injected_deterministically(sandbox, http):
    http.post(f"{sandbox.url}/_sandbox/faults", headers=ADMIN, json={"bad_record_rate": 0.2, "seed": 5})
    first = stripe_all(http, sandbox.url, "invoices")
    second = stripe_all(http, sandbox.url, "invoices")
    assert first == second
    assert any(i["amount_due"] < 0 for i in first) and any(i["status"] is None for i in first)
    assert any(i["customer"].startswith("cus_UNKNOWN") for i in first)


def test_mixpanel_duplicates_and_late_events(sandbox, http):
    day = date(2026, 9, 20)
    clean = mixpanel_export(http, sandbox.url, day)
    http.post(f"{sandbox.url}/_sandbox/faults", headers=ADMIN,
              json={"mixpanel_duplicate_rate": 0.05, "mixpanel_late_rate": 0.1, "mixpanel_late_days": 2})
    next_day = {"X-Sandbox-Now": "2026-09-21T12:00:00Z"}
    early = mixpanel_export(http, sandbox.url, day, headers=next_day)
    ids = [e["properties"]["$insert_id"] for e in early]
    assert len(ids) > len(set(ids)), "duplicates share $insert_id"
    assert len(set(ids)) < len(clean), "late events are not visible yet"
    later = mixpanel_export(http, sandbox.url, day, headers={"X-Sandbox-Now": "2026-09-23T12:00:00Z"})
    assert {e["properties"]["$insert_id"] for e in later} == {e["properties"]["$insert_id"] for e in clean}


# ---- clock and seed --------------------------------------------------------------------------
def test_clock_hides_future_data(sandbox, http):
    past = {"X-Sandbox-Now": datetime.fromtimestamp(EARLIER, UTC).isoformat()}
    then = hubspot_all(http, sandbox.url, "companies", headers=past)
    now = hubspot_all(http, sandbox.url, "companies")
    assert len(then) < len(now)
    assert all(datetime.fromisoformat(c["createdAt"]).timestamp() <= EARLIER for c in then)
    assert all(datetime.fromisoformat(c["updatedAt"]).timestamp() <= EARLIER for c in then)
    invoices = stripe_all(http, sandbox.url, "invoices", headers=past)
    assert invoices and max(i["created"] for i in invoices) <= EARLIER
    tickets, _, _ = zendesk_export(http, sandbox.url, headers=past)
    assert all(datetime.fromisoformat(t["updated_at"]).timestamp() <= EARLIER for t in tickets)
    # The admin endpoint moves the clock for everyone.
    http.post(f"{sandbox.url}/_sandbox/clock", headers=ADMIN, json={"now": EARLIER}).raise_for_status()
    assert len(hubspot_all(http, sandbox.url, "companies")) == len(then)
    http.post(f"{sandbox.url}/_sandbox/clock", headers=ADMIN, json={"now": NOW}).raise_for_status()


def first_pages(base: str) -> list:
    with requests.Session() as http:
        return [
            http.get(f"{base}/crm/v3/objects/companies", headers=HUBSPOT,
                     params={"limit": 50, "properties": "name,arr"}).json(),
            http.get(f"{base}/api/v2/incremental/tickets/cursor.json", auth=ZENDESK,
                     params={"start_time": 0, "per_page": 50}).json()["tickets"],
            http.get(f"{base}/v1/invoices", headers=STRIPE, params={"limit": 50}).json(),
            http.get(f"{base}/api/2.0/export", auth=MIXPANEL,
                     params={"from_date": "2026-09-01", "to_date": "2026-09-01",
                             "project_id": cred.MIXPANEL_PROJECT_ID}).text,
        ]


def test_same_seed_same_data_other_seed_other_data():
    pages = []
    for seed in (11, 11, 12):
        with ThreadedSandbox(build_state(SandboxOptions(seed=seed, accounts=40, now=NOW))) as server:
            # Absolute URLs (Zendesk, HubSpot paging links) name the server's port; the data must not differ.
            pages.append(json.loads(json.dumps(first_pages(server.url)).replace(server.url, "BASE")))
    assert pages[0] == pages[1]
    assert pages[0][0] != pages[2][0] and pages[0][3] != pages[2][3]
