"""Stripe: customers, subscriptions and invoices lists (newest first, starting_after, created[...])."""

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


def _subscription(r: dict) -> dict:
    price = {"id": f"price_{r['plan']}_seat", "object": "price", "unit_amount": int(r["unit_amount"]),
             "currency": "usd", "recurring": {"interval": "month", "interval_count": 1},
             "product": f"prod_{r['plan']}"}
    period = {"current_period_start": int(r["current_period_start"]), "current_period_end": int(r["current_period_end"])}
    canceled = _opt(r["canceled_at"])
    return {
        "id": r["id"], "object": "subscription", "customer": r["customer"], "status": r["status"],
        "created": int(r["created_ts"]), "start_date": int(r["created_ts"]), **period,
        "cancel_at_period_end": False, "canceled_at": canceled, "ended_at": canceled,
        "collection_method": "charge_automatically", "currency": "usd", "livemode": False,
        "items": {"object": "list", "has_more": False, "data": [
            {"id": "si_" + r["id"][4:], "object": "subscription_item", "price": price,
             "quantity": int(r["quantity"]), **period}]},
        "metadata": {"hubspot_company_id": r["hubspot_company_id"], "contract_end": str(_opt(r["term_end_ts"]) or "")},
    }


def _invoice(r: dict) -> dict:
    paid_at = _opt(r["paid_at"])
    return {
        "id": r["id"], "object": "invoice", "customer": r["customer"], "subscription": r["subscription"],
        "status": r["status"], "paid": r["status"] == "paid", "created": int(r["created_ts"]),
        "currency": "usd", "amount_due": int(r["amount_due"]), "amount_paid": int(r["amount_paid"]),
        "amount_remaining": int(r["amount_due"]) - int(r["amount_paid"]), "due_date": int(r["due_date"]),
        "period_start": int(r["period_start"]), "period_end": int(r["period_end"]),
        "attempt_count": int(r["attempt_count"]), "collection_method": r["collection_method"],
        "status_transitions": {"finalized_at": int(r["created_ts"]), "paid_at": paid_at},
        "livemode": False,
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
