"""Flatteners: sandbox records (the vendors' JSON) -> typed frames; bad values become null, never raise."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pandas as pd
import pytest

from healthscore.sources import SourceConnection, client_class, registry
from healthscore.sources.schemas import (
    DTYPES,
    OBJECTS,
    PARSE_ERRORS,
    SCHEMAS,
    column_dtypes,
    empty_frame,
    flatten,
)
from healthscore.warehouse.models import LANDING_OBJECTS
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.faults import FaultConfig
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

NOW = int(datetime(2026, 9, 30, 12, tzinfo=UTC).timestamp())
EVENT_DAY = date(2026, 9, 29)
LANDED = [(s.name, o.name) for s in registry.sources() for o in s.extracted_objects]  # what the vendors serve


def connection(source: str, url: str) -> SourceConnection:
    extra = {"sandbox": True, "project_id": cred.MIXPANEL_PROJECT_ID}
    login, password = {
        "hubspot": (None, cred.HUBSPOT_TOKEN),
        "zendesk": (cred.ZENDESK_EMAIL, cred.ZENDESK_API_TOKEN),
        "stripe": (None, cred.STRIPE_SECRET_KEY),
        "mixpanel": (cred.MIXPANEL_SERVICE_ACCOUNT, cred.MIXPANEL_SECRET),
    }[source]
    return SourceConnection(source, url, login, password, extra)


def fetch_all(url: str) -> dict[tuple[str, str], list[dict]]:
    """Every landed object through the real extractors (full loads), events of one day."""
    as_of = datetime.fromtimestamp(NOW, UTC)
    out: dict[tuple[str, str], list[dict]] = {}
    for source, obj in LANDED:
        with client_class(source)(connection(source, url), as_of=as_of) as src:
            out[(source, obj)] = (
                list(src.day_events(EVENT_DAY)) if source == "mixpanel" else list(src.records(obj))
            )
    return out


@pytest.fixture(scope="module")
def world() -> Iterator[tuple]:
    state = build_state(
        SandboxOptions(
            seed=7, accounts=150, now=NOW, rate_limit_scale=1000, faults=FaultConfig(bad_record_rate=0.2)
        )
    )
    with ThreadedSandbox(state) as server:
        yield state, fetch_all(server.url)


def test_registry_covers_every_landing_table_and_uses_known_dtypes():
    assert set(LANDING_OBJECTS) <= set(SCHEMAS)
    assert set(OBJECTS) == set(registry.quality_objects())  # one schema per registered object, no strays
    for key, spec in SCHEMAS.items():
        dtypes = column_dtypes(*key)
        assert list(dtypes)[0] == "record_id" and list(dtypes)[-1] == PARSE_ERRORS
        assert set(dtypes.values()) <= set(DTYPES), key
        assert all(n.endswith("_ts") for n, c in ((c.name, c) for c in spec.columns) if c.parse == "epoch"), (
            key
        )
        empty = empty_frame(*key)
        assert empty.empty and {c: str(t) for c, t in empty.dtypes.items()} == dtypes


@pytest.mark.parametrize(("source", "obj"), LANDED)
def test_flatten_sandbox_records_typed_and_keyed_like_the_landing(world, source, obj):
    _, records = world
    recs = records[(source, obj)]
    frame = flatten(source, obj, recs)
    assert len(frame) == len(recs) > 0
    assert {c: str(t) for c, t in frame.dtypes.items()} == column_dtypes(source, obj)
    spec = client_class(source).objects[obj]
    assert frame["record_id"].tolist() == [spec.record_id(r) for r in recs]
    assert frame[PARSE_ERRORS].isna().all()  # the sandbox's bad values are valid JSON types


def test_hubspot_strings_become_numbers_and_children_get_company_ids(world):
    state, records = world
    companies = flatten("hubspot", "companies", records[("hubspot", "companies")])
    raw = {r["id"]: r["properties"] for r in records[("hubspot", "companies")]}
    for row in companies.head(30).itertuples():
        assert row.arr_cents == round(float(raw[row.record_id]["arr"]) * 100)
        assert row.licensed_seats == int(raw[row.record_id]["licensed_seats"])
    assert (companies["licensed_seats"] == -5).sum() > 0  # fault injection: out_of_range
    for obj in ("contacts", "deals", "meetings"):
        frame = flatten("hubspot", obj, records[("hubspot", obj)])
        view = state.views.view(obj, NOW).set_index("id")
        assert (frame["company_id"] == view.loc[frame["record_id"], "company_id"].to_numpy()).all(), obj
    deals = flatten("hubspot", "deals", records[("hubspot", "deals")])
    assert (deals["amount_cents"] == -50000).sum() > 0  # "-500.00" dollars


def test_contacts_from_search_fall_back_to_associatedcompanyid():
    record = {
        "id": "7",
        "properties": {
            "email": "a@b.io",
            "associatedcompanyid": "42",
            "lastmodifieddate": "2026-09-30T10:00:00.000Z",
        },
        "createdAt": "2026-09-01T00:00:00Z",
        "updatedAt": "2026-09-30T10:00:00.000Z",
    }
    row = flatten("hubspot", "contacts", [record]).iloc[0]
    assert row["company_id"] == "42" and row["updated_ts"] == int(
        datetime(2026, 9, 30, 10, tzinfo=UTC).timestamp()
    )


def test_zendesk_ticket_metric_set_and_stripe_money_fields(world):
    _, records = world
    tickets = flatten("zendesk", "tickets", records[("zendesk", "tickets")])
    first = records[("zendesk", "tickets")][0]
    row = tickets.iloc[0]
    assert row["reopens"] == first["metric_set"]["reopens"] and row["tags"] == " ".join(first["tags"])
    solved = tickets["solved_ts"].notna()
    assert solved.any() and (tickets.loc[solved, "full_resolution_minutes"] >= 0).all()
    assert set(tickets["priority"].dropna()) <= {"urgent", "high", "normal", "low", "critical"}

    subs = flatten("stripe", "subscriptions", records[("stripe", "subscriptions")])
    ok = subs["quantity"] >= 0
    assert (subs.loc[ok, "mrr_cents"] == subs.loc[ok, "quantity"] * subs.loc[ok, "unit_amount"]).all()
    assert subs["hubspot_company_id"].notna().all()
    invoices = flatten("stripe", "invoices", records[("stripe", "invoices")])
    paid, unpaid = invoices["status"] == "paid", invoices["status"].isin(["open", "uncollectible"])
    assert invoices.loc[paid, "paid_ts"].notna().all() and invoices.loc[unpaid, "paid_ts"].isna().all()


def test_mixpanel_events_flatten(world):
    _, records = world
    events = flatten("mixpanel", "events", records[("mixpanel", "events")])
    day_start = int(datetime(2026, 9, 29, tzinfo=UTC).timestamp())
    assert events["event_ts"].between(day_start, day_start + 86_400).all()
    assert events["nps_score"].notna().sum() == sum(
        "nps_score" in e["properties"] for e in records[("mixpanel", "events")]
    )
    assert events["distinct_id"].isna().any()  # injected nulls survive as nulls


def test_unparseable_values_become_null_and_are_named_never_raise():
    records = [
        {
            "id": "1",
            "properties": {
                "arr": "12k",
                "licensed_seats": "ten",
                "customer_since": "yesterday",
                "name": {"nested": True},
                "contract_renewal_date": "2027-02-30",
            },
            "createdAt": 1727697600000,
            "updatedAt": "2026-09-30T12:00:00+02:00",
        },
        {"id": "2", "properties": None},
        {"properties": {"arr": "1500.55", "licensed_seats": "12.0", "numberofemployees": ""}},
        "not even a dict",
    ]
    frame = flatten("hubspot", "companies", records)
    assert frame["record_id"].tolist() == ["1", "2", "None", "None"]
    assert frame["arr_cents"].isna().iloc[0] and frame["licensed_seats"].isna().iloc[0]
    assert frame[PARSE_ERRORS].iloc[0] == (
        "name={'nested': True}; licensed_seats='ten'; arr_cents='12k'; "
        "renewal_date='2027-02-30'; customer_since_ts='yesterday'"
    )
    assert frame["created_ts"].iloc[0] == 1727697600  # epoch ms -> s
    assert frame["updated_ts"].iloc[0] == int(datetime(2026, 9, 30, 10, tzinfo=UTC).timestamp())
    assert frame["arr_cents"].iloc[2] == 150055 and frame["licensed_seats"].iloc[2] == 12
    assert frame[PARSE_ERRORS].iloc[1:].isna().all()
    events = flatten(
        "mixpanel",
        "events",
        [
            {
                "event": "NPS Survey Responded",
                "properties": {"time": "x", "nps_score": "high", "$insert_id": 5},
            }
        ],
    )
    assert events["record_id"].iloc[0] == "5" and pd.isna(events["nps_score"].iloc[0])
    assert events[PARSE_ERRORS].iloc[0] == "event_ts='x'; nps_score='high'"


def test_usage_daily_record_ids_are_company_and_day():
    frame = flatten(
        "mixpanel",
        "usage_daily",
        [
            {
                "company_id": "1",
                "event_date": "2026-09-29",
                "active_users": 3,
                "licensed_seats": 10,
                "event_count": 40,
            }
        ],
    )
    assert frame["record_id"].iloc[0] == "1:2026-09-29" and frame["active_users"].iloc[0] == 3
