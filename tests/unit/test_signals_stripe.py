"""healthscore.signals.stripe on hand-made frames: who a customer is, ARR, days past due, payment status."""

from __future__ import annotations

import numpy as np

from healthscore.signals import stripe
from tests.unit.signal_frames import PIT, days_ago, frame, index

ACCOUNTS = {"company_id": "str", "stripe_customer": "str"}
CUSTOMER = {"customer_id": "str", "hubspot_company_id": "str"}
SUBSCRIPTION = {"customer_id": "str", "hubspot_company_id": "str", "status": "str", "mrr_cents": "Int64"}
INVOICE = {"customer_id": "str", "status": "str", "amount_remaining": "Int64", "due_ts": "Int64",
           "created_ts": "Int64", "attempt_count": "Int64"}


def accounts():
    return frame([{"company_id": "1", "stripe_customer": "cus_a"}, {"company_id": "2", "stripe_customer": "cus_b"},
                  {"company_id": "3"}, {"company_id": "4"}], ACCOUNTS)


def test_stripe_metadata_wins_and_the_crm_fills_in() -> None:
    customers = frame([{"customer_id": "cus_a", "hubspot_company_id": "9"}, {"customer_id": "cus_c"}], CUSTOMER)
    owner = stripe.customer_accounts(customers, accounts())
    assert owner.to_dict() == {"cus_a": "9", "cus_b": "2"}


def test_arr_delinquency_and_payment_status() -> None:
    customers = frame([{"customer_id": "cus_a", "hubspot_company_id": "1"},
                       {"customer_id": "cus_b", "hubspot_company_id": "2"}], CUSTOMER)
    subscriptions = frame([
        {"customer_id": "cus_a", "status": "active", "mrr_cents": 10000},
        {"customer_id": "cus_a", "status": "canceled", "mrr_cents": 50000},
        {"customer_id": "cus_b", "status": "past_due", "mrr_cents": 2000},
        {"customer_id": "cus_x", "hubspot_company_id": "3", "status": "canceled", "mrr_cents": 700},
    ], SUBSCRIPTION)
    invoices = frame([
        {"customer_id": "cus_a", "status": "open", "amount_remaining": 500, "due_ts": days_ago(12),
         "created_ts": days_ago(40), "attempt_count": 1},  # open, but the subscription is fine: stale
        {"customer_id": "cus_b", "status": "open", "amount_remaining": 2000, "due_ts": days_ago(12.5),
         "created_ts": days_ago(40), "attempt_count": 1},
        {"customer_id": "cus_b", "status": "open", "amount_remaining": 2000, "due_ts": days_ago(3),
         "created_ts": days_ago(10), "attempt_count": 1},
        {"customer_id": "cus_a", "status": "paid", "amount_remaining": 0, "due_ts": days_ago(50),
         "created_ts": days_ago(60), "attempt_count": 3},  # needed retries in the last quarter
    ], INVOICE)
    out = stripe.billing_signals(customers, subscriptions, invoices, accounts(), index("1", "2", "3", "4"), PIT)
    assert out["arr"].tolist()[:3] == [1200.0, 240.0, 0.0] and np.isnan(out["arr"]["4"])
    assert out["days_past_due"].tolist()[:3] == [0.0, 12.0, 0.0] and np.isnan(out["days_past_due"]["4"])
    assert out["payment_status_ok"].tolist()[:3] == [0.0, 0.0, 1.0] and np.isnan(out["payment_status_ok"]["4"])
