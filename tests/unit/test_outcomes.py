"""Renewal outcomes from each side and their reconciliation, on small hand-made histories."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd

from healthscore.evaluation.outcomes import billing_events, changed_states, crm_events, reconcile


def _ts(d: str) -> int:
    return int(datetime.fromisoformat(d).replace(tzinfo=UTC).timestamp())


def state(sub: str, batch: str, *, qty: int, end: str, plan: str = "pro", mrr: int | None = None,
          canceled: bool = False, account: str = "c1") -> dict:
    return {"subscription_id": sub, "batch_date": date.fromisoformat(batch), "account_id": account,
            "customer_id": "cus", "canceled": canceled, "canceled_date": date.fromisoformat(end) if canceled else None,
            "quantity": qty, "mrr_cents": mrr if mrr is not None else qty * 100, "plan": plan,
            "term_end_date": date.fromisoformat(end)}


def deal(deal_id: str, category: str, stage: str, amount: int, close: str, account: str = "c1") -> dict:
    return {"deal_id": deal_id, "company_id": account, "deal_category": category, "deal_stage": stage,
            "amount_cents": amount, "close_ts": _ts(close)}


def test_billing_reads_cancellations_rollovers_and_mid_term_changes() -> None:
    states = pd.DataFrame([
        state("s1", "2026-01-01", qty=10, end="2026-03-01"),
        state("s1", "2026-03-02", qty=7, end="2027-03-01"),                 # renewed with fewer seats
        state("s1", "2026-06-01", qty=9, end="2026-09-01"),                 # amendment: the end moved back (sandbox)
        state("s1", "2026-09-02", qty=9, end="2027-03-01"),                 # amendment: end moves < 300 days
        state("s2", "2026-01-01", qty=5, end="2026-04-01", account="c2"),
        state("s2", "2026-04-02", qty=5, end="2026-04-01", account="c2", canceled=True),
        state("s3", "2026-01-01", qty=5, end="2026-05-01", plan="pro", account="c3"),
        state("s3", "2026-05-02", qty=5, end="2027-05-01", plan="growth", account="c3"),  # plan down
    ])
    events = billing_events(states).set_index(["account_id", "date"])
    assert events.loc[("c1", date(2026, 3, 1)), "outcome"] == "contracted"
    assert events.loc[("c1", date(2026, 3, 1)), "kind"] == "renewal"
    assert events.loc[("c2", date(2026, 4, 1)), "outcome"] == "churned"
    assert events.loc[("c3", date(2026, 5, 1)), "outcome"] == "contracted"
    mid = events[events["kind"] == "mid_term"]
    assert set(mid["outcome"]) == {"expanded"}


def test_only_changed_states_are_logged() -> None:
    before = pd.DataFrame([state("s1", "2026-01-01", qty=10, end="2026-03-01")]).drop(columns="batch_date")
    same = before.copy()
    assert changed_states(same, before).empty
    more = before.assign(quantity=11)
    assert len(changed_states(more, before)) == 1
    assert len(changed_states(before.assign(subscription_id="new"), before)) == 1


def test_crm_follows_the_arr_chain_and_the_deal_type() -> None:
    deals = pd.DataFrame([
        deal("d0", "newbusiness", "closedwon", 100_000, "2025-03-01"),
        deal("d1", "expansion", "closedwon", 20_000, "2025-08-01"),          # mid-term: ARR 120k
        deal("d2", "renewal", "closedwon", 110_000, "2026-02-20"),           # below 120k: contracted
        deal("d3", "renewal", "closedwon", 150_000, "2027-02-20"),           # with an expansion deal: expanded
        deal("d4", "expansion", "closedwon", 40_000, "2027-02-20"),
        deal("d5", "renewal", "closedlost", 150_000, "2028-02-20"),          # lost: churned
        deal("d6", "renewal", "qualifiedtobuy", 150_000, "2029-02-20"),      # open: no outcome
    ])
    events = crm_events(deals).set_index("deal_id")
    assert events.loc["d2", "outcome"] == "contracted" and events.loc["d2", "arr_before_cents"] == 120_000
    assert events.loc["d3", "outcome"] == "expanded"
    assert events.loc["d5", "outcome"] == "churned"
    assert "d6" not in events.index


def test_reconcile_keys_crm_deals_to_the_billing_term_end_and_says_who_saw_what() -> None:
    billing = billing_events(pd.DataFrame([
        state("s1", "2026-01-01", qty=10, end="2026-03-01"),
        state("s1", "2026-03-02", qty=10, end="2027-03-01"),
        state("s2", "2026-01-01", qty=10, end="2026-05-01", account="c2"),
        state("s2", "2026-05-02", qty=8, end="2027-05-01", account="c2"),
    ]))
    crm = crm_events(pd.DataFrame([
        deal("a0", "newbusiness", "closedwon", 1000, "2025-03-01"),
        deal("a1", "renewal", "closedwon", 1000, "2026-02-20"),                      # agrees with billing
        deal("b0", "newbusiness", "closedwon", 1000, "2025-05-01", account="c2"),
        deal("b1", "renewal", "closedwon", 1000, "2026-04-25", account="c2"),        # billing says contracted
        deal("c0", "newbusiness", "closedwon", 1000, "2025-09-10", account="c3"),
        deal("c1", "renewal", "closedlost", 1000, "2026-09-01", account="c3"),       # term end not billed yet
    ]))
    current = pd.DataFrame([{"subscription_id": "s3", "account_id": "c3", "term_end_date": date(2026, 9, 10)}])
    rec = reconcile(crm, billing, current).set_index(["account_id", "renewal_date"])
    a = rec.loc[("c1", date(2026, 3, 1))]
    assert (a["agreement"], a["outcome"], a["source"]) == ("agree", "renewed", "crm+billing")
    b = rec.loc[("c2", date(2026, 5, 1))]
    assert (b["agreement"], b["outcome"], b["crm_outcome"]) == ("disagree", "contracted", "renewed")
    c = rec.loc[("c3", date(2026, 9, 10))]  # keyed on the upcoming term end, so billing will join it later
    assert (c["agreement"], c["outcome"], c["crm_date"]) == ("crm_only", "churned", date(2026, 9, 1))
