"""Stripe signals: arr (value), days_past_due and payment_status_ok (financial). Pure functions of frames.

Customers reach an account through Stripe's ``hubspot_company_id`` metadata, else the HubSpot company's
``stripe_customer_id``. Invoices are re-read only over a trailing window of ``created`` (the registry's
``window_days`` for ``stripe.invoices``), so one paid after it left the window still reads "open": an invoice
only counts while the subscription snapshot (re-pulled in full every batch) shows the customer past_due/unpaid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from healthscore.signals.common import (
    DAY_S,
    DELINQUENT_SUBSCRIPTION,
    LIVE_SUBSCRIPTION,
    QUARTER_DAYS,
    UNPAID_INVOICE,
    PointInTime,
    Signals,
    between,
    count,
    flag,
)


def customer_accounts(customers: pd.DataFrame, accounts: pd.DataFrame) -> pd.Series:
    """Stripe customer id -> account id."""
    owner = pd.Series(customers["hubspot_company_id"].astype(object).to_numpy(),
                      index=customers["customer_id"].astype(object).to_numpy())
    owner = owner[owner.notna() & ~owner.index.duplicated()]
    from_crm = accounts.dropna(subset=["stripe_customer"]).drop_duplicates("stripe_customer")
    crm = pd.Series(from_crm["company_id"].astype(object).to_numpy(),
                    index=from_crm["stripe_customer"].astype(object).to_numpy())
    return pd.concat([owner, crm[~crm.index.isin(owner.index)]])


def billing_signals(customers: pd.DataFrame, subscriptions: pd.DataFrame, invoices: pd.DataFrame,
                    accounts: pd.DataFrame, index: pd.Index, pit: PointInTime) -> Signals:
    """arr, days_past_due, payment_status_ok (NaN for accounts without any subscription or invoice)."""
    owner = customer_accounts(customers, accounts)

    def account_of(frame: pd.DataFrame, fallback: str | None = None) -> pd.Series:
        acc = frame["customer_id"].astype(object).map(owner)
        if fallback is not None:
            acc = acc.fillna(frame[fallback].astype(object))
        return acc

    subs = subscriptions.assign(account_id=account_of(subscriptions, "hubspot_company_id"))
    status = subs["status"].str.lower().fillna("")
    live = status.isin(LIVE_SUBSCRIPTION).to_numpy(dtype=bool)
    mrr = subs["mrr_cents"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    arr_frame = pd.DataFrame({"account_id": subs["account_id"].to_numpy(), "arr": np.where(live, mrr, 0.0) * 12 / 100})
    arr = arr_frame.groupby("account_id", sort=True)["arr"].sum(min_count=1).reindex(index)
    delinquent = flag(subs["account_id"], status.isin(DELINQUENT_SUBSCRIPTION).to_numpy(dtype=bool), index)
    has_subs = count(subs["account_id"], np.ones(len(subs), dtype=bool), index) > 0

    invoices = invoices.assign(account_id=account_of(invoices))
    keys = invoices["account_id"]
    unpaid = invoices["status"].str.lower().isin(UNPAID_INVOICE).to_numpy(dtype=bool)
    remaining = invoices["amount_remaining"].astype("Float64").fillna(1.0).to_numpy(dtype=float) > 0
    overdue_days = (pit.as_of_ts - invoices["due_ts"].astype("Float64")) // DAY_S
    overdue = unpaid & remaining & (overdue_days > 0).fillna(False).to_numpy(dtype=bool)
    days = pd.DataFrame({"account_id": keys.to_numpy()[overdue],
                         "days": overdue_days.to_numpy(dtype=float, na_value=np.nan)[overdue]})
    oldest = days.groupby("account_id", sort=True)["days"].max().reindex(index, fill_value=0.0).astype(float)
    # Trust a landed "open" only while the fresh subscription snapshot confirms the customer is behind.
    oldest = oldest.where(~has_subs | (delinquent > 0), 0.0)
    has_invoices = count(keys, np.ones(len(invoices), dtype=bool), index) > 0
    recent = between(invoices["created_ts"], pit.since(QUARTER_DAYS), pit.as_of_ts)
    failed = recent & ((invoices["status"].str.lower().eq("uncollectible").fillna(False).to_numpy(dtype=bool))
                       | (invoices["attempt_count"].astype("Float64").fillna(0) > 1).to_numpy(dtype=bool))
    problem = (delinquent > 0) | (oldest > 0) | (count(keys, failed, index) > 0)
    known = has_subs | has_invoices
    return {
        "arr": arr,
        "days_past_due": oldest.where(known),
        "payment_status_ok": (~problem).astype(float).where(known),
    }
