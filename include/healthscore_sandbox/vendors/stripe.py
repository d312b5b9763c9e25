"""Stripe: customers, subscriptions, invoices and events lists (newest first, starting_after, created[...]).

``/v1/events`` lists what changed, as Stripe's Events API does: events of the last 30 days up to "now", newest
first, filtered by ``type`` (a ``*`` wildcard allowed: ``invoice.*``) or ``types[]`` (up to 20 exact names),
each carrying the object as it stood at the event (``data.object``) and, for updates, the values its changed
fields had before (``data.previous_attributes``). Built by ``healthscore_sandbox.stripe_states``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from healthscore_sandbox.protocol import Call, VendorError, stripe_error, vendor_call

router = APIRouter()
API_CALL = Depends(vendor_call("stripe"))

MAX_LIMIT = 100
CREATED_OPS = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}
SUBSCRIPTION_STATUSES = {"active", "past_due", "canceled", "unpaid", "trialing", "incomplete",
                         "incomplete_expired", "paused", "all", "ended"}
INVOICE_STATUSES = {"draft", "open", "paid", "uncollectible", "void"}
API_VERSION = "2025-10-29.clover"
MAX_EVENT_TYPES = 20
RENDER = {"customers": lambda r: _customer(r), "subscriptions": lambda r: _subscription(r),
          "invoices": lambda r: _invoice(r)}


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.lstrip("-").isdigit():
        raise VendorError(stripe_error(400, "invalid_request_error", f"Invalid integer: {raw}",
                                       code="parameter_invalid_integer", param=name))
    return int(raw)


def _list(call: Call, obj: str, kind: str, frame: pd.DataFrame, to_json) -> Response:
    request = call.request
    limit = _int_param(request, "limit")
    limit = 10 if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise VendorError(stripe_error(400, "invalid_request_error",
                                       f"This value must be greater than or equal to 1 and less than or equal "
                                       f"to {MAX_LIMIT}.", code="parameter_invalid_integer", param="limit"))
    created = frame["created_ts"].to_numpy()
    mask = np.ones(len(frame), dtype=bool)
    exact = _int_param(request, "created")
    if exact is not None:
        mask &= created == exact
    for op, fn in CREATED_OPS.items():
        value = _int_param(request, f"created[{op}]")
        if value is not None:
            mask &= fn(created, value)
    frame = frame[mask]
    ids = frame["id"].to_numpy()
    start = 0
    after = request.query_params.get("starting_after")
    before = request.query_params.get("ending_before")
    if after or before:
        anchor = after or before
        where = np.flatnonzero(ids == anchor)
        if not len(where):
            raise VendorError(stripe_error(400, "invalid_request_error", f"No such {kind}: '{anchor}'",
                                           code="resource_missing", param="starting_after" if after else "ending_before"))
        if after:
            start = int(where[0]) + 1
        else:
            start = max(0, int(where[0]) - limit)
            frame = frame.iloc[: int(where[0])]
    page = frame.iloc[start : start + limit]
    payload: dict[str, Any] = {
        "object": "list",
        "url": f"/v1/{obj}",
        "has_more": bool(start + limit < len(frame)),
        "data": [to_json(r) for r in page.to_dict("records")],
    }
    return call.respond(payload)


def _opt(ts: int) -> int | None:
    return None if ts is None or ts < 0 else int(ts)


def _customer(r: dict) -> dict:
    return {"id": r["id"], "object": "customer", "created": int(r["created_ts"]), "name": r["name"],
            "email": r["email"], "currency": "usd", "balance": 0, "delinquent": bool(r["delinquent"]),
            "livemode": False, "metadata": {"hubspot_company_id": r["hubspot_company_id"]}}


PRICES_CREATED = 1_704_067_200  # 2024-01-01: the price book predates every customer


def _subscription(r: dict) -> dict:
    """The subscription object as Stripe documents it (API 2025-10-29.clover): one per-seat item."""
    recurring = {"interval": "month", "interval_count": 1, "meter": None, "trial_period_days": None,
                 "usage_type": "licensed"}
    price = {"id": f"price_{r['plan']}_seat", "object": "price", "active": True, "billing_scheme": "per_unit",
             "created": PRICES_CREATED, "currency": "usd", "livemode": False, "lookup_key": None, "metadata": {},
             "nickname": None, "product": f"prod_{r['plan']}", "recurring": recurring, "tax_behavior": "unspecified",
             "type": "recurring", "unit_amount": int(r["unit_amount"]), "unit_amount_decimal": str(int(r["unit_amount"]))}
    plan = {"id": price["id"], "object": "plan", "active": True, "amount": price["unit_amount"],
            "amount_decimal": price["unit_amount_decimal"], "billing_scheme": "per_unit", "created": PRICES_CREATED,
            "currency": "usd", "interval": "month", "interval_count": 1, "livemode": False, "metadata": {},
            "meter": None, "nickname": None, "product": price["product"], "tiers_mode": None,
            "transform_usage": None, "trial_period_days": None, "usage_type": "licensed"}
    period = {"current_period_start": int(r["current_period_start"]), "current_period_end": int(r["current_period_end"])}
    canceled, created = _opt(r["canceled_at"]), int(r["created_ts"])
    item = {"id": "si_" + r["id"][4:], "object": "subscription_item", "created": created, "discounts": [],
            "metadata": {}, "plan": plan, "price": price, "quantity": int(r["quantity"]), "subscription": r["id"],
            "tax_rates": [], **period}
    return {
        "id": r["id"], "object": "subscription", "application": None, "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": int(r["current_period_start"]), "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic", "updated_at": None}, "billing_schedules": [],
        "billing_thresholds": None, "cancel_at": None, "cancel_at_period_end": False, "canceled_at": canceled,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically", "created": created, "currency": "usd",
        "customer": r["customer"], "days_until_due": None, "default_payment_method": None, "default_source": None,
        "default_tax_rates": [], "description": None, "discounts": [], "ended_at": canceled,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {"object": "list", "has_more": False, "data": [item], "total_count": 1,
                  "url": f"/v1/subscription_items?subscription={r['id']}"},
        "latest_invoice": None, "livemode": False,
        "metadata": {"hubspot_company_id": r["hubspot_company_id"], "contract_end": str(_opt(r["term_end_ts"]) or "")},
        "next_pending_invoice_item_invoice": None, "on_behalf_of": None, "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": "off"},
        "pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None,
        "schedule": None, "start_date": created, "status": r["status"], "test_clock": None, "transfer_data": None,
        "trial_end": None, "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None, **period,
    }


def _invoice(r: dict) -> dict:
    """The invoice object as Stripe documents it (API 2025-10-29.clover), one subscription line.

    No tax, discount or credit note exists in this world, so ``total == subtotal == amount_due`` and the
    tax/discount lists are empty; ``subscription`` moved under ``parent`` in that API version. Fields that
    change over the invoice's life (status, amounts paid, attempts, transitions) are those at ``now``.
    """
    created, amount, paid = int(r["created_ts"]), int(r["amount_due"]), int(r["amount_paid"])
    period = {"start": int(r["period_start"]), "end": int(r["period_end"])}
    subscription = r["subscription"]
    parent = {"type": "subscription_details", "quote_details": None,
              "subscription_details": {"subscription": subscription, "metadata": {}}}
    line = {
        "id": "il_" + r["id"][3:], "object": "line_item", "amount": amount, "currency": "usd",
        "description": "Seats (monthly or annual term)", "discount_amounts": [], "discountable": True,
        "discounts": [], "invoice": r["id"], "livemode": False, "metadata": {}, "period": period,
        "parent": {"type": "subscription_item_details", "invoice_item_details": None,
                   "subscription_item_details": {"subscription": subscription,
                                                 "subscription_item": "si_" + subscription[4:],
                                                 "invoice_item": None, "proration": False,
                                                 "proration_details": {"credited_items": None}}},
        "pretax_credit_amounts": [], "pricing": None, "quantity": 1, "subtotal": amount, "taxes": [],
    }
    return {
        "id": r["id"], "object": "invoice", "account_country": "US", "account_name": "Sandbox SaaS Inc.",
        "account_tax_ids": None, "amount_due": amount, "amount_overpaid": 0, "amount_paid": paid,
        "amount_remaining": amount - paid, "amount_shipping": 0, "application": None,
        "attempt_count": int(r["attempt_count"]), "attempted": int(r["attempt_count"]) > 0,
        "auto_advance": r["status"] == "open", "automatic_tax": {"enabled": False, "liability": None,
                                                                "provider": None, "status": None},
        "automatically_finalizes_at": None, "billing_reason": "subscription_cycle",
        "collection_method": r["collection_method"], "confirmation_secret": None, "created": created,
        "currency": "usd", "custom_fields": None, "customer": r["customer"], "customer_address": None,
        "customer_email": None, "customer_name": None, "customer_phone": None, "customer_shipping": None,
        "customer_tax_exempt": "none", "customer_tax_ids": [], "default_payment_method": None,
        "default_source": None, "default_tax_rates": [], "description": None, "discounts": [],
        # Stripe leaves due_date null under charge_automatically; served as before (the finalisation
        # time) because the product's days_past_due reads it: a separate, visible change.
        "due_date": int(r["due_date"]),
        "effective_at": created, "ending_balance": 0, "footer": None, "from_invoice": None,
        "hosted_invoice_url": None, "invoice_pdf": None, "issuer": {"type": "self"}, "last_finalization_error": None,
        "latest_revision": None,
        "lines": {"object": "list", "data": [line], "has_more": False, "total_count": 1,
                  "url": f"/v1/invoices/{r['id']}/lines"},
        "livemode": False, "metadata": {}, "next_payment_attempt": _opt(r["next_payment_attempt"]),
        "number": r["number"], "on_behalf_of": None, "parent": parent, "payment_settings": {
            "default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": period["end"], "period_start": period["start"], "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0, "receipt_number": None, "rendering": None, "shipping_cost": None,
        "shipping_details": None, "starting_balance": 0, "statement_descriptor": None, "status": r["status"],
        "status_transitions": {"finalized_at": created, "marked_uncollectible_at": _opt(r["marked_uncollectible_at"]),
                               "paid_at": _opt(r["paid_at"]), "voided_at": None},
        "subtotal": amount, "subtotal_excluding_tax": amount, "test_clock": None, "threshold_reason": None,
        "total": amount, "total_discount_amounts": [], "total_excluding_tax": amount,
        "total_pretax_credit_amounts": [], "total_taxes": [], "webhooks_delivered_at": created,
    }


@router.get("/v1/customers")
def customers(call: Call = API_CALL) -> Response:
    return _list(call, "customers", "customer", call.state.views.view("customers", call.now), _customer)


@router.get("/v1/subscriptions")
def subscriptions(status: str | None = None, customer: str | None = None,
                  call: Call = API_CALL) -> Response:
    if status is not None and status not in SUBSCRIPTION_STATUSES:
        raise VendorError(stripe_error(400, "invalid_request_error", f"Invalid status: {status}", param="status"))
    frame = call.state.views.view("subscriptions", call.now)
    if status is None:  # Stripe leaves canceled subscriptions out unless asked
        frame = frame[frame["status"] != "canceled"]
    elif status == "ended":
        frame = frame[frame["status"] == "canceled"]
    elif status != "all":
        frame = frame[frame["status"] == status]
    if customer:
        frame = frame[frame["customer"] == customer]
    return _list(call, "subscriptions", "subscription", frame, _subscription)


@router.get("/v1/invoices")
def invoices(status: str | None = None, customer: str | None = None, subscription: str | None = None,
             call: Call = API_CALL) -> Response:
    if status is not None and status not in INVOICE_STATUSES:
        raise VendorError(stripe_error(400, "invalid_request_error", f"Invalid status: {status}", param="status"))
    frame = call.state.views.view("invoices", call.now)
    if status:
        frame = frame[frame["status"] == status]
    if customer:
        frame = frame[frame["customer"] == customer]
    if subscription:
        frame = frame[frame["subscription"] == subscription]
    return _list(call, "invoices", "invoice", frame, _invoice)


def _previous(now: dict, before: dict) -> dict:
    """The fields of ``before`` whose values differ in ``now`` (nested objects: their changed fields)."""
    out: dict[str, Any] = {}
    for key, old in before.items():
        new = now.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            out[key] = _previous(new, old)
        else:
            out[key] = old
    return out


def _event(events, r: dict) -> dict:
    state, before = events.state_records(r["kind"], int(r["state"]))
    render = RENDER[r["kind"]]
    obj = render(state)
    data: dict[str, Any] = {"object": obj}
    if before is not None and r["type"].endswith(".updated"):
        data["previous_attributes"] = _previous(obj, render(before))
    return {"id": r["id"], "object": "event", "api_version": API_VERSION, "context": None,
            "created": int(r["created_ts"]), "data": data, "livemode": False, "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None}, "type": r["type"]}


def _type_filter(call: Call, frame):
    params = call.request.query_params
    one = params.get("type")
    many = [v for k, v in params.multi_items() if k == "types" or (k.startswith("types[") and k.endswith("]"))]
    if one is not None and many:
        raise VendorError(stripe_error(400, "invalid_request_error",
                                       "You may only specify one of these parameters: type, types.", param="type"))
    if len(many) > MAX_EVENT_TYPES:
        raise VendorError(stripe_error(400, "invalid_request_error",
                                       f"You may pass at most {MAX_EVENT_TYPES} types.", param="types"))
    types = frame["type"]
    if one is not None:
        if one.endswith("*"):
            return frame[types.str.startswith(one[:-1]).to_numpy(dtype=bool)]
        return frame[(types == one).to_numpy(dtype=bool)]
    if many:
        return frame[types.isin(many).to_numpy(dtype=bool)]
    return frame


@router.get("/v1/events")
def events(call: Call = API_CALL) -> Response:
    listed = call.state.views.stripe_events(call.now)
    return _list(call, "events", "event", _type_filter(call, listed.frame), lambda r: _event(listed, r))


@router.get("/v1/events/{event_id}")
def event(event_id: str, call: Call = API_CALL) -> Response:
    listed = call.state.views.stripe_events(call.now)
    found = listed.frame[(listed.frame["id"] == event_id).to_numpy(dtype=bool)]
    if found.empty:
        raise VendorError(stripe_error(404, "invalid_request_error", f"No such event: '{event_id}'",
                                       code="resource_missing", param="id"))
    return call.respond(_event(listed, found.to_dict("records")[0]))
