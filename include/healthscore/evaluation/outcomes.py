"""How each renewal resolved, read from both sides: the CRM's renewal deals and billing's subscriptions.

Pure functions over frames (no I/O); ``healthscore.pipeline.outcomes`` reads and writes the warehouse.

* **CRM.** Renewal deals (``deal_category`` renewal) closed won or lost. Lost is *churned*. Won compares the
  renewal's amount (the ARR it renews at) with the ARR in force before it, followed along the account's won
  deals (new business or the last renewal, plus expansions closed since): lower is *contracted*; an
  expansion deal closed with the renewal, or a higher amount, is *expanded*; else *renewed*.
* **Billing.** Consecutive states of a Stripe subscription (``billing_subscription_states``): a cancellation
  is *churned* on its cancellation date; a term that rolls over (the contract end moves on by most of a
  year) is a renewal on the old term end, *contracted* with fewer seats, a lower plan or lower MRR,
  *expanded* with more seats or a higher plan, else *renewed*. Seats added with a shorter next term, or
  seats/plan changed with the same end, is a ``mid_term`` amendment, not a renewal (unless the CRM closed
  a renewal deal for that date: billing alone cannot tell an expanded renewal into an amended term apart).
* **Reconciled.** One record per (account, renewal date = term end, kind). A CRM deal belongs to the
  renewal whose term end billing knows within ``CRM_MATCH_DAYS`` after the deal closed (the current term end
  counts, so a deal closed before its term ends keeps its key when billing sees the rollover). The
  record says ``agree`` / ``disagree`` / ``crm_only`` / ``billing_only``; its ``outcome`` is billing's where
  billing saw it (what the customer is charged), else the CRM's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

OUTCOMES: tuple[str, ...] = ("renewed", "churned", "contracted", "expanded")
#: Plans from lowest to highest: a move down is a contraction, up an expansion.
PLAN_ORDER: tuple[str, ...] = ("starter", "growth", "pro", "enterprise")
#: A contract end that moves on by at least this many days is a renewal; less is an amendment inside a term.
RENEWAL_MIN_TERM_DAYS = 300
#: A renewal deal closes at most this many days before (or 1 day after) its term end.
CRM_MATCH_DAYS = 45
#: An expansion deal closed within this many days of a renewal deal belongs to that renewal.
EXPANSION_AT_RENEWAL_DAYS = 1

STATE_COLUMNS = (
    "subscription_id",
    "account_id",
    "customer_id",
    "canceled",
    "canceled_date",
    "quantity",
    "mrr_cents",
    "plan",
    "term_end_date",
)
#: The columns whose change makes a new state row (identity columns are carried along).
STATE_FIELDS = ("canceled", "canceled_date", "quantity", "mrr_cents", "plan", "term_end_date")
RECORD_COLUMNS = (
    "account_id",
    "renewal_date",
    "kind",
    "outcome",
    "source",
    "agreement",
    "crm_outcome",
    "crm_date",
    "crm_deal_id",
    "crm_arr_before_cents",
    "crm_arr_after_cents",
    "billing_outcome",
    "billing_date",
    "billing_subscription_id",
    "seats_before",
    "seats_after",
    "mrr_before_cents",
    "mrr_after_cents",
    "plan_before",
    "plan_after",
    "note",
)


def _date(ts: object) -> date | None:
    if ts is None or pd.isna(ts) or int(ts) < 0:
        return None
    return datetime.fromtimestamp(int(ts), UTC).date()


def _none(value: object) -> object:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _plan(product: object) -> str | None:
    """Plan name from a Stripe product id (``prod_growth`` -> ``growth``)."""
    if product is None or pd.isna(product):
        return None
    text = str(product)
    return text[5:] if text.startswith("prod_") else text


# ---- billing ----------------------------------------------------------------------------------------------
def subscription_states(subscriptions: pd.DataFrame) -> pd.DataFrame:
    """Flattened Stripe subscriptions (one snapshot) -> the state columns of ``billing_subscription_states``."""
    if subscriptions.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in STATE_COLUMNS})
    status = subscriptions["status"].astype(object)
    canceled = status.eq("canceled").fillna(False).to_numpy(dtype=bool)
    term_end = subscriptions["contract_end_ts"].astype(object)
    term_end = term_end.where(term_end.notna(), subscriptions["current_period_end_ts"].astype(object))
    frame = pd.DataFrame(
        {
            "subscription_id": subscriptions["subscription_id"].astype(object).to_numpy(),
            "account_id": subscriptions["hubspot_company_id"].astype(object).map(_none).to_numpy(),
            "customer_id": subscriptions["customer_id"].astype(object).map(_none).to_numpy(),
            "canceled": canceled,
            "canceled_date": [
                (_date(t) if c else None)
                for t, c in zip(subscriptions["canceled_ts"].astype(object), canceled, strict=True)
            ],
            "quantity": [None if pd.isna(q) else int(q) for q in subscriptions["quantity"].astype(object)],
            "mrr_cents": [None if pd.isna(m) else int(m) for m in subscriptions["mrr_cents"].astype(object)],
            "plan": [_plan(p) for p in subscriptions["product"].astype(object)],
            "term_end_date": [_date(t) for t in term_end],
        }
    )
    return frame.sort_values("subscription_id", kind="stable").reset_index(drop=True)


def changed_states(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``current`` that are new or differ from the subscription's previous state in a state field."""
    if current.empty:
        return current
    if previous.empty:
        return current.reset_index(drop=True)
    prev = previous.set_index("subscription_id")
    keep = []
    for row in current.itertuples(index=False):
        if row.subscription_id not in prev.index:
            keep.append(True)
            continue
        old = prev.loc[row.subscription_id]
        keep.append(any(_none(getattr(row, f)) != _none(old[f]) for f in STATE_FIELDS))
    return current[np.asarray(keep, dtype=bool)].reset_index(drop=True)


def _direction(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, str]:
    """('contracted' | 'expanded' | 'renewed', why) from two consecutive billed states."""

    def rank(plan: object) -> int | None:
        return PLAN_ORDER.index(plan) if plan in PLAN_ORDER else None

    qb, qa = _none(before["quantity"]), _none(after["quantity"])
    pb, pa = rank(before["plan"]), rank(after["plan"])
    mb, ma = _none(before["mrr_cents"]), _none(after["mrr_cents"])
    if pb is not None and pa is not None and pa != pb:
        return ("contracted" if pa < pb else "expanded"), f"plan {before['plan']} -> {after['plan']}"
    if qb is not None and qa is not None and qa != qb:
        return ("contracted" if qa < qb else "expanded"), f"seats {qb} -> {qa}"
    if mb is not None and ma is not None and ma != mb:
        return ("contracted" if ma < mb else "expanded"), f"MRR {mb} -> {ma} cents"
    return "renewed", "same seats, plan and MRR"


def billing_events(states: pd.DataFrame) -> pd.DataFrame:
    """Outcome events from the change log of subscription states (all rows up to the batch, any order)."""
    rows: list[dict] = []
    if not states.empty:
        ordered = states.sort_values(["subscription_id", "batch_date"], kind="stable").to_dict("records")
        for before, after in zip(ordered, ordered[1:], strict=False):
            if before["subscription_id"] == after["subscription_id"]:
                rows.extend(_events_between(str(after["subscription_id"]), before, after))
    columns = (
        "account_id",
        "date",
        "kind",
        "outcome",
        "why",
        "subscription_id",
        "seats_before",
        "seats_after",
        "mrr_before_cents",
        "mrr_after_cents",
        "plan_before",
        "plan_after",
        "seen_batch",
    )
    return pd.DataFrame(rows, columns=list(columns))


def _events_between(sub_id: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict]:
    base = {
        "account_id": _none(after["account_id"]) or _none(before["account_id"]),
        "subscription_id": sub_id,
        "seats_before": _none(before["quantity"]),
        "seats_after": _none(after["quantity"]),
        "mrr_before_cents": _none(before["mrr_cents"]),
        "mrr_after_cents": _none(after["mrr_cents"]),
        "plan_before": _none(before["plan"]),
        "plan_after": _none(after["plan"]),
        "seen_batch": after["batch_date"],
    }
    if bool(after["canceled"]) and not bool(before["canceled"]):
        when = _none(after["canceled_date"]) or _none(before["term_end_date"]) or after["batch_date"]
        return [
            {
                **base,
                "date": when,
                "kind": "renewal",
                "outcome": "churned",
                "why": "subscription canceled",
                "seats_after": 0,
                "mrr_after_cents": 0,
            }
        ]
    if bool(after["canceled"]):
        return []
    end_b, end_a = _none(before["term_end_date"]), _none(after["term_end_date"])
    outcome, why = _direction(before, after)
    if end_b is not None and end_a is not None and end_a > end_b:
        # A term end passed. The next term is normally a year; a shorter one is either an amendment inside the
        # term (seats added: the contract end moves to the original term end) or a renewal into a term that
        # is itself cut by a later amendment. Seats up with a short next term is read as an amendment;
        # ``reconcile`` turns it into a renewal when the CRM closed a renewal deal for that date.
        short = (end_a - end_b).days < RENEWAL_MIN_TERM_DAYS
        kind = "mid_term" if short and outcome == "expanded" else "renewal"
        return [
            {
                **base,
                "date": end_b,
                "kind": kind,
                "outcome": outcome,
                "why": f"term {end_b} -> {end_a}; {why}",
            }
        ]
    if outcome != "renewed":  # seats, plan or price changed inside the term
        return [{**base, "date": after["batch_date"], "kind": "mid_term", "outcome": outcome, "why": why}]
    return []


# ---- CRM --------------------------------------------------------------------------------------------------
def crm_events(deals: pd.DataFrame) -> pd.DataFrame:
    """Renewal outcomes from flattened HubSpot deals (the newest snapshot): one row per closed renewal deal."""
    columns = ("account_id", "date", "outcome", "why", "deal_id", "arr_before_cents", "arr_after_cents")
    if deals.empty:
        return pd.DataFrame(columns=list(columns))
    by_account: dict[str, list[dict]] = {}
    for deal_id, account_id, category, stage, amount, close_ts in zip(
        deals["deal_id"].astype(object),
        deals["company_id"].astype(object),
        deals["deal_category"].astype(object),
        deals["deal_stage"].astype(object),
        deals["amount_cents"].astype(object),
        deals["close_ts"].astype(object),
        strict=True,
    ):
        stage = str(stage).lower() if _none(stage) is not None else ""
        if _none(account_id) is None or _none(close_ts) is None or stage not in ("closedwon", "closedlost"):
            continue
        by_account.setdefault(str(account_id), []).append(
            {
                "deal_id": deal_id,
                "category": str(category).lower() if _none(category) is not None else "",
                "stage": stage,
                "amount": None if _none(amount) is None else int(amount),
                "close_ts": int(close_ts),
            }
        )
    rows: list[dict] = []
    for account_id in sorted(by_account):
        ordered = sorted(by_account[account_id], key=lambda d: (d["close_ts"], str(d["deal_id"])))
        rows.extend(_crm_account_events(account_id, ordered))
    return pd.DataFrame(rows, columns=list(columns))


def _crm_account_events(account_id: str, deals: list[dict]) -> list[dict]:
    """One account's closed deals, oldest first -> its renewal outcomes."""
    day = EXPANSION_AT_RENEWAL_DAYS * 86_400
    won = [d for d in deals if d["stage"] == "closedwon"]
    expansions = [d for d in won if d["category"] == "expansion"]
    out = []
    for deal in (d for d in deals if d["category"] == "renewal"):
        close = deal["close_ts"]
        # ARR in force before this renewal: the last won base deal before it, plus expansions since
        base = [d for d in won if d["category"] in ("newbusiness", "renewal") and d["close_ts"] < close]
        before = None
        if base and base[-1]["amount"] is not None:
            base_close = base[-1]["close_ts"]
            added = [d["amount"] or 0 for d in expansions if base_close + day < d["close_ts"] < close - day]
            before = int(base[-1]["amount"]) + int(sum(added))
        if deal["stage"] == "closedlost":
            out.append(
                {
                    "account_id": account_id,
                    "date": _date(close),
                    "outcome": "churned",
                    "why": "renewal deal closed lost",
                    "deal_id": deal["deal_id"],
                    "arr_before_cents": before,
                    "arr_after_cents": 0,
                }
            )
            continue
        with_it = [d for d in expansions if abs(d["close_ts"] - close) <= day]
        after = deal["amount"]
        if with_it:
            outcome, why = "expanded", "expansion deal closed won with the renewal"
        elif before is not None and after is not None and after < before:
            outcome, why = "contracted", f"renewed at {after} < {before} cents ARR"
        elif before is not None and after is not None and after > before:
            outcome, why = "expanded", f"renewed at {after} > {before} cents ARR"
        else:
            outcome, why = (
                "renewed",
                "renewal deal closed won" + ("" if before is not None else " (no prior ARR)"),
            )
        out.append(
            {
                "account_id": account_id,
                "date": _date(close),
                "outcome": outcome,
                "why": why,
                "deal_id": deal["deal_id"],
                "arr_before_cents": before,
                "arr_after_cents": after,
            }
        )
    return out


# ---- reconciled -------------------------------------------------------------------------------------------
def reconcile(crm: pd.DataFrame, billing: pd.DataFrame, current_states: pd.DataFrame) -> pd.DataFrame:
    """One record per (account, renewal date, kind) with both sides' evidence (``RECORD_COLUMNS``).

    ``current_states``: the latest state per subscription (its term end is the key of a renewal whose deal
    closed before billing rolled the term over).
    """
    records: dict[tuple, dict] = {}
    for ev in billing.itertuples(index=False):
        if ev.account_id is None:
            continue
        key = (ev.account_id, ev.date, ev.kind)
        records[key] = {
            "account_id": ev.account_id,
            "renewal_date": ev.date,
            "kind": ev.kind,
            "billing_outcome": ev.outcome,
            "billing_date": ev.date,
            "billing_subscription_id": ev.subscription_id,
            "seats_before": ev.seats_before,
            "seats_after": ev.seats_after,
            "mrr_before_cents": ev.mrr_before_cents,
            "mrr_after_cents": ev.mrr_after_cents,
            "plan_before": ev.plan_before,
            "plan_after": ev.plan_after,
            "_billing_why": ev.why,
        }
    term_ends: dict[str, list[date]] = {}
    for account_id, day, _kind in records:
        term_ends.setdefault(account_id, []).append(day)
    for st in current_states.itertuples(index=False):
        if _none(st.account_id) is not None and _none(st.term_end_date) is not None:
            term_ends.setdefault(st.account_id, []).append(st.term_end_date)
    for ev in crm.itertuples(index=False):
        candidates = sorted(
            t for t in term_ends.get(ev.account_id, []) if -1 <= (t - ev.date).days <= CRM_MATCH_DAYS
        )
        renewal_date = candidates[0] if candidates else ev.date
        key = (ev.account_id, renewal_date, "renewal")
        amendment = records.get((ev.account_id, renewal_date, "mid_term"))
        if (
            amendment is not None and key not in records
        ):  # billing could not tell; the CRM's deal says renewal
            records[key] = {
                **records.pop((ev.account_id, renewal_date, "mid_term")),
                "kind": "renewal",
                "_billing_why": amendment["_billing_why"] + " (a renewal: the CRM closed its deal)",
            }
        rec = records.setdefault(
            key, {"account_id": ev.account_id, "renewal_date": renewal_date, "kind": "renewal"}
        )
        if rec.get("crm_deal_id") is not None:  # two deals for one renewal: keep the later-closed one
            rec["_crm_extra"] = f"also deal {rec['crm_deal_id']} ({rec['crm_outcome']})"
        rec.update(
            {
                "crm_outcome": ev.outcome,
                "crm_date": ev.date,
                "crm_deal_id": ev.deal_id,
                "crm_arr_before_cents": ev.arr_before_cents,
                "crm_arr_after_cents": ev.arr_after_cents,
                "_crm_why": ev.why,
            }
        )
    out = []
    for key in sorted(records, key=lambda k: (str(k[0]), k[1], k[2])):
        out.append(_finish(records[key]))
    return pd.DataFrame(out, columns=list(RECORD_COLUMNS))


def _finish(rec: dict) -> dict:
    crm, billing = rec.get("crm_outcome"), rec.get("billing_outcome")
    if crm and billing:
        agreement = "agree" if crm == billing else "disagree"
    else:
        agreement = "crm_only" if crm else "billing_only"
    notes = []
    if rec.get("_billing_why"):
        notes.append(f"billing: {rec['_billing_why']}")
    if rec.get("_crm_why"):
        notes.append(f"crm: {rec['_crm_why']}")
    if rec.get("_crm_extra"):
        notes.append(f"crm: {rec['_crm_extra']}")
    row = {c: rec.get(c) for c in RECORD_COLUMNS}
    row.update(
        {
            "outcome": billing or crm,
            "source": "+".join(s for s, v in (("crm", crm), ("billing", billing)) if v),
            "agreement": agreement,
            "note": "; ".join(notes) or None,
        }
    )
    return row


def positive(outcomes: pd.Series, positive_outcomes: Sequence[str] = ("churned", "contracted")) -> np.ndarray:
    """The positive class of the accuracy evaluation (default: churned or contracted)."""
    return outcomes.isin(list(positive_outcomes)).to_numpy(dtype=bool)
