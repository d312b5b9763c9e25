"""The sandbox as the vendors' own SDKs see it: the official-client check.

Each check is one call through an official client (``stripe``, ``hubspot-api-client``; both in
requirements.txt) against the sandbox, and it holds when the SDK parses the answer into its own
models and the answer carries what the SDK declares as always present:

* Stripe's SDK is lenient when parsing, so a Stripe check also compares each object with the
  attributes its SDK class annotates as never null (``Invoice.total: int``, ``Invoice.lines``...):
  Stripe always returns those, so a client may read them without a guard.
* HubSpot's generated client validates required fields while deserialising (a missing ``id`` or
  ``createdAt`` raises), so parsing is the check.

``CHECKS`` lists them; the count reported as "official-client check: N of M" is one per entry, and
every entry is a test of its own. Zendesk's and Mixpanel's official clients are not used: Zenpy only
addresses https://<subdomain>.zendesk.com and Mixpanel's library only sends events.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from types import NoneType, UnionType
from typing import Any

import pytest
import requests
import stripe
from hubspot import HubSpot
from hubspot.crm.objects import SimplePublicObjectInputForCreate
from hubspot.crm.properties import PropertyCreate

from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

# The sandbox's clock starts at its first simulated day (2025-10-01); older invoices are its prehistory.
SIMULATED_FROM = 1_759_363_200  # 2025-10-02


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(build_state(SandboxOptions(seed=5, accounts=40, rate_limit_scale=1000))) as server:
        yield server


def never_null(cls: type) -> list[str]:
    """Attributes the SDK class annotates without None: the vendor always sends them."""
    out = []
    for name, hint in vars(cls).get("__annotations__", {}).items():  # evaluated; forward refs stay refs
        if name.startswith("_") or typing.get_origin(hint) is typing.ClassVar:
            continue
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, UnionType) else ()
        if NoneType not in args and "Optional" not in str(hint):
            out.append(name)
    return out


def missing(obj: stripe.StripeObject, cls: type) -> list[str]:
    return [f"{cls.__name__}.{name}" for name in never_null(cls) if name not in obj]


def _stripe(base: str, key: str = cred.STRIPE_SECRET_KEY) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": base}, max_network_retries=0)


def _hubspot(base: str) -> HubSpot:
    return HubSpot(access_token=cred.HUBSPOT_TOKEN, host=base)


# ---- Stripe ------------------------------------------------------------------------------------------
def stripe_customers(base: str) -> list[str]:
    page = _stripe(base).v1.customers.list({"limit": 100})
    assert page.data and all(isinstance(c, stripe.Customer) for c in page.data)
    return [m for c in page.data for m in missing(c, stripe.Customer)]


def stripe_subscriptions(base: str) -> list[str]:
    page = _stripe(base).v1.subscriptions.list({"status": "all", "limit": 100})
    assert page.data and all(isinstance(s, stripe.Subscription) for s in page.data)
    problems = [m for s in page.data for m in missing(s, stripe.Subscription)]
    for sub in page.data:
        for item in sub["items"].data:
            assert isinstance(item, stripe.SubscriptionItem)
            problems += missing(item, stripe.SubscriptionItem) + missing(item.price, stripe.Price)
    return problems


def stripe_invoices(base: str) -> list[str]:
    page = _stripe(base).v1.invoices.list({"limit": 100})
    assert page.data and all(isinstance(i, stripe.Invoice) for i in page.data)
    problems = [m for i in page.data for m in missing(i, stripe.Invoice)]
    for inv in page.data:
        if "lines" not in inv:
            continue
        assert isinstance(inv.lines, stripe.ListObject)
        for line in inv.lines.data:
            assert isinstance(line, stripe.InvoiceLineItem)
            problems += missing(line, stripe.InvoiceLineItem)
        if inv.lines.data and sum(line.amount for line in inv.lines.data) != inv.subtotal:
            problems.append(f"{inv.id}: lines do not add up to subtotal")
        if inv.amount_remaining != inv.amount_due - inv.amount_paid:
            problems.append(f"{inv.id}: amount_remaining != amount_due - amount_paid")
    return problems


def stripe_invoice_history(base: str) -> list[str]:
    """An invoice read back at the instant it was finalised shows it then: unpaid, no attempt made yet.

    (Stripe charges an invoice about an hour after finalising it.) A sandbox serving final values would
    show the attempts and the payment that came later, leaking the future into every backfill.
    """
    problems = []
    later = [i for i in _stripe(base).v1.invoices.list({"limit": 100}).auto_paging_iter()
             if (i.attempt_count > 0 or i.status == "paid") and i.created >= SIMULATED_FROM]
    for inv in later[:: max(1, len(later) // 25)]:
        when = {"X-Sandbox-Now": str(inv.created)}
        then = requests.get(f"{base}/v1/invoices", params={"created": inv.created, "limit": 100}, timeout=10,
                            headers={"Authorization": f"Bearer {cred.STRIPE_SECRET_KEY}", **when}).json()["data"]
        then = next(i for i in then if i["id"] == inv.id)
        if (then["attempt_count"], then["amount_paid"], then["status"]) != (0, 0, "open"):
            problems.append(f"{inv.id} at its creation: attempt_count {then['attempt_count']}, amount_paid "
                            f"{then['amount_paid']}, status {then['status']} (later: {inv.attempt_count}, {inv.status})")
        if then["status_transitions"]["paid_at"] is not None:
            problems.append(f"{inv.id}: paid_at set before it was paid")
    return problems if later else ["no invoice was ever attempted"]


def stripe_paging(base: str) -> list[str]:
    ids = [i.id for i in _stripe(base).v1.invoices.list({"limit": 25}).auto_paging_iter()]
    return [] if ids and len(ids) == len(set(ids)) else [f"auto_paging_iter: {len(ids)} ids, {len(set(ids))} distinct"]


def stripe_created_filter(base: str) -> list[str]:
    every = list(_stripe(base).v1.invoices.list({"limit": 100}).auto_paging_iter())
    cut = sorted(i.created for i in every)[len(every) // 2]
    later = list(_stripe(base).v1.invoices.list({"limit": 100, "created": {"gte": cut}}).auto_paging_iter())
    expected = sum(i.created >= cut for i in every)
    return [] if len(later) == expected else [f"created[gte]: {len(later)} invoices, expected {expected}"]


def stripe_auth_error(base: str) -> list[str]:
    with pytest.raises(stripe.AuthenticationError) as caught:
        _stripe(base, "sk_test_wrongwrongwrong").v1.customers.list()
    return [] if caught.value.http_status == 401 else [f"auth error status {caught.value.http_status}"]


def stripe_invalid_request(base: str) -> list[str]:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        _stripe(base).v1.customers.list({"limit": 1000})
    return [] if caught.value.param == "limit" else [f"invalid request names param {caught.value.param!r}"]


def stripe_missing_anchor(base: str) -> list[str]:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        _stripe(base).v1.invoices.list({"starting_after": "in_doesnotexist"})
    return [] if caught.value.code == "resource_missing" else [f"code {caught.value.code!r}"]


def stripe_events(base: str) -> list[str]:
    """Events parse as ``stripe.Event`` with their object as its SDK class, newest first, paged by the SDK
    (``type`` wildcard and ``types[]``), and one is retrieved by id."""
    client = _stripe(base)
    problems: list[str] = []
    classes = {"invoice": stripe.Invoice, "subscription": stripe.Subscription, "customer": stripe.Customer}
    every = list(client.v1.events.list({"limit": 100}).auto_paging_iter())
    if not every:
        return ["no event listed"]
    created = [e.created for e in every]
    if created != sorted(created, reverse=True) or len({e.id for e in every}) != len(every):
        problems.append("events are not newest first with distinct ids")
    for event in every[:: max(1, len(every) // 50)]:
        problems += missing(event, stripe.Event)
        cls = classes[event.data.object.object]
        if not isinstance(event.data.object, cls):
            problems.append(f"{event.id}: data.object is {type(event.data.object).__name__}, not {cls.__name__}")
        problems += missing(event.data.object, cls)
        if event.type.endswith(".updated") and not getattr(event.data, "previous_attributes", None):
            problems.append(f"{event.id}: an update without previous_attributes")
    invoices = list(client.v1.events.list({"type": "invoice.*", "limit": 25}).auto_paging_iter())
    if not invoices or {e.type.split(".")[0] for e in invoices} != {"invoice"}:
        problems.append(f"type=invoice.*: {sorted({e.type for e in invoices})}")
    chosen = ["customer.subscription.created", "customer.subscription.updated"]
    subscriptions = list(client.v1.events.list({"types": chosen, "limit": 100}).auto_paging_iter())
    if sorted({e.type for e in subscriptions}) != sorted(t for t in chosen if any(e.type == t for e in every)):
        problems.append(f"types[]: {sorted({e.type for e in subscriptions})}")
    one = client.v1.events.retrieve(every[-1].id)
    if one.id != every[-1].id or one.type != every[-1].type:
        problems.append("retrieve returned another event")
    return problems


# ---- HubSpot -----------------------------------------------------------------------------------------
def hubspot_companies_page(base: str) -> list[str]:
    page = _hubspot(base).crm.companies.basic_api.get_page(limit=100, properties=["name", "arr"])
    return [] if page.results and all(r.id and r.created_at for r in page.results) else ["no companies"]


def hubspot_companies_paging(base: str) -> list[str]:
    api = _hubspot(base).crm.companies.basic_api
    ids, after = [], None
    while True:
        page = api.get_page(limit=25, after=after)
        ids += [r.id for r in page.results]
        if not page.paging or not page.paging.next:
            break
        after = page.paging.next.after
    return [] if len(ids) == len(set(ids)) > 25 else [f"{len(ids)} companies over pages"]


def _search(base: str, obj: str) -> Any:
    from hubspot.crm.objects import PublicObjectSearchRequest

    request = PublicObjectSearchRequest(filter_groups=[{"filters": [
        {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "0"}]}],
        sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}], limit=100)
    return _hubspot(base).crm.objects.search_api.do_search(obj, public_object_search_request=request)


def hubspot_search_companies(base: str) -> list[str]:
    found = _search(base, "companies")
    return [] if found.total > 0 and found.results else ["search found no companies"]


def hubspot_search_deals(base: str) -> list[str]:
    found = _search(base, "deals")
    return [] if found.results else ["search found no deals"]


def hubspot_contacts(base: str) -> list[str]:
    page = _hubspot(base).crm.contacts.basic_api.get_page(limit=100)
    return [] if page.results else ["no contacts"]


def hubspot_meetings(base: str) -> list[str]:
    page = _hubspot(base).crm.objects.basic_api.get_page("meetings", limit=100)
    return [] if page.results else ["no meetings"]


def hubspot_owners(base: str) -> list[str]:
    page = _hubspot(base).crm.owners.owners_api.get_page(limit=100)
    return [] if page.results and all(o.id and o.email for o in page.results) else ["no owners"]


def hubspot_create_task(base: str) -> list[str]:
    owner = _hubspot(base).crm.owners.owners_api.get_page(limit=1).results[0].id
    created = _hubspot(base).crm.objects.basic_api.create("tasks", SimplePublicObjectInputForCreate(
        properties={"hs_timestamp": "2026-10-01T00:00:00.000Z", "hs_task_subject": "official client",
                    "hubspot_owner_id": owner, "hs_task_status": "NOT_STARTED"}, associations=[]))
    return [] if created.id and created.properties["hs_task_subject"] == "official client" else ["task not created"]


def hubspot_update_company(base: str) -> list[str]:
    from hubspot.crm.companies import SimplePublicObjectInput

    api = _hubspot(base).crm.companies.basic_api
    company = api.get_page(limit=1).results[0]
    updated = api.update(company.id, SimplePublicObjectInput(properties={"name": company.properties["name"]}))
    return [] if updated.id == company.id else ["update answered another company"]


def hubspot_create_property(base: str) -> list[str]:
    prop = _hubspot(base).crm.properties.core_api.create("companies", PropertyCreate(
        name="official_client_check", label="Official client check", type="string", field_type="text",
        group_name="companyinformation"))
    return [] if prop.name == "official_client_check" else [f"property {prop.name!r}"]


def hubspot_properties(base: str) -> list[str]:
    props = _hubspot(base).crm.properties.core_api.get_all("companies")
    return [] if any(p.name == "name" for p in props.results) else ["no 'name' property"]


def hubspot_auth_error(base: str) -> list[str]:
    from hubspot.crm.companies import ApiException

    with pytest.raises(ApiException) as caught:
        HubSpot(access_token="pat-wrong", host=base).crm.companies.basic_api.get_page(limit=1)
    return [] if caught.value.status == 401 else [f"status {caught.value.status}"]


CHECKS: dict[str, Callable[[str], list[str]]] = {f.__name__: f for f in (
    stripe_customers, stripe_subscriptions, stripe_invoices, stripe_invoice_history, stripe_paging,
    stripe_created_filter, stripe_auth_error, stripe_invalid_request, stripe_missing_anchor, stripe_events,
    hubspot_companies_page, hubspot_companies_paging, hubspot_search_companies, hubspot_search_deals,
    hubspot_contacts, hubspot_meetings, hubspot_owners, hubspot_create_task, hubspot_update_company,
    hubspot_create_property, hubspot_properties, hubspot_auth_error,
)}
RESULTS: dict[str, list[str]] = {}


@pytest.mark.parametrize("name", list(CHECKS))
def test_official_client_check(sandbox: ThreadedSandbox, name: str) -> None:
    try:
        problems = CHECKS[name](sandbox.url)
    except Exception as exc:  # noqa: BLE001 - an SDK that cannot parse the answer is the finding
        problems = [f"{exc.__class__.__name__}: {exc}"[:500]]
    RESULTS[name] = problems
    passed = sum(not p for p in RESULTS.values())
    print(f"official-client check: {passed} of {len(RESULTS)} run so far ({len(CHECKS)} in all)")
    assert not problems, f"{name}: {sorted(set(problems))[:10]}"
