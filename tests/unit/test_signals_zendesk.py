"""healthscore.signals.zendesk on hand-made frames: tickets per account, support signals, CSAT ratings."""

from __future__ import annotations

import numpy as np

from healthscore.signals import zendesk
from tests.unit.signal_frames import PIT, days_ago, frame, index

ACCOUNTS = {"company_id": "str", "zendesk_org": "str"}
TICKET = {"ticket_id": "Int64", "organization_id": "Int64", "status": "str", "priority": "str", "tags": "str",
          "created_ts": "Int64", "solved_ts": "Int64", "full_resolution_minutes": "Int64"}


def accounts():
    return frame([{"company_id": "1", "zendesk_org": "100"}, {"company_id": "2", "zendesk_org": "200"},
                  {"company_id": "3"}], ACCOUNTS)


def test_tickets_reach_accounts_through_the_organization_and_unknown_ones_drop() -> None:
    tickets = frame([{"ticket_id": 1, "organization_id": 100}, {"ticket_id": 2, "organization_id": 999},
                     {"ticket_id": 3, "organization_id": 200}, {"ticket_id": 4}], TICKET)
    out = zendesk.tickets_by_account(tickets, accounts())
    assert out["ticket_id"].tolist() == [1, 3] and out["account_id"].tolist() == ["1", "2"]


def test_open_urgent_complaint_and_resolution_trend() -> None:
    tickets = zendesk.tickets_by_account(frame([
        {"ticket_id": 1, "organization_id": 100, "status": "open", "priority": "urgent", "tags": "complaint billing",
         "created_ts": days_ago(5)},
        {"ticket_id": 2, "organization_id": 100, "status": "solved", "priority": "low", "tags": "how-to",
         "created_ts": days_ago(20), "solved_ts": days_ago(10), "full_resolution_minutes": 300},
        {"ticket_id": 3, "organization_id": 100, "status": "Pending", "priority": "normal", "tags": "escalated",
         "created_ts": days_ago(200)},  # open but old: open, not recent
        {"ticket_id": 4, "organization_id": 100, "status": "closed", "priority": "urgent",
         "created_ts": days_ago(150), "solved_ts": days_ago(120), "full_resolution_minutes": 100},
        {"ticket_id": 5, "organization_id": 200, "status": "new", "priority": "high", "tags": "noncomplaint",
         "created_ts": days_ago(1)},
        {"ticket_id": 6, "organization_id": 200, "status": "open", "priority": "urgent", "created_ts": days_ago(-2)},
    ], TICKET), accounts())
    out = zendesk.ticket_signals(tickets, index("1", "2", "3"), PIT)
    assert out["open_tickets"].tolist() == [2.0, 1.0, 0.0]  # a ticket created after as-of is not open yet
    assert out["p1_tickets_90d"].tolist() == [1.0, 0.0, 0.0]
    assert out["complaint_ratio"].tolist()[:2] == [0.5, 0.0] and np.isnan(out["complaint_ratio"]["3"])
    # Median 300 minutes now vs 100 the quarter before: +200 %; NaN without both windows.
    assert out["resolution_time_trend"]["1"] == 200.0
    assert out["resolution_time_trend"][["2", "3"]].isna().all()


def test_ratings_count_through_their_tickets_account_in_the_last_quarter() -> None:
    tickets = zendesk.tickets_by_account(frame([{"ticket_id": 1, "organization_id": 100},
                                                {"ticket_id": 2, "organization_id": 200}], TICKET), accounts())
    ratings = frame([
        {"ticket_id": 1, "score": "good", "created_ts": days_ago(3)},
        {"ticket_id": 1, "score": "Bad", "created_ts": days_ago(30)},
        {"ticket_id": 1, "score": "offered", "created_ts": days_ago(3)},  # not an answer
        {"ticket_id": 2, "score": "good", "created_ts": days_ago(95)},  # too old
        {"ticket_id": 9, "score": "good", "created_ts": days_ago(3)},  # unknown ticket
    ], {"ticket_id": "Int64", "score": "str", "created_ts": "Int64"})
    sums, counts = zendesk.rating_totals(ratings, tickets, PIT)
    assert sums.to_dict() == {"1": 6.0} and counts.to_dict() == {"1": 2.0}
