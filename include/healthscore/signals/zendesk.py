"""Zendesk signals: tickets (support) and satisfaction ratings (their share of csat_3m).

Tickets reach an account through the HubSpot company's ``zendesk_organization_id``. Pure functions of frames.
"""

from __future__ import annotations

import pandas as pd

from healthscore.signals.common import (
    CSAT_RATING_VALUE,
    OPEN_TICKET_STATUSES,
    QUARTER_DAYS,
    PointInTime,
    Signals,
    between,
    count,
)


def tickets_by_account(tickets: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    """Tickets of known accounts, with ``account_id`` (organization -> company through HubSpot)."""
    orgs = accounts.dropna(subset=["zendesk_org"]).drop_duplicates("zendesk_org")
    owner = pd.Series(orgs["company_id"].astype(object).to_numpy(), index=orgs["zendesk_org"].astype(object).to_numpy())
    account = tickets["organization_id"].astype("Int64").astype("str").astype(object).map(owner)
    return tickets.assign(account_id=account)[account.notna().to_numpy()].reset_index(drop=True)


def ticket_signals(tickets: pd.DataFrame, index: pd.Index, pit: PointInTime) -> Signals:
    """open_tickets, p1_tickets_90d, complaint_ratio, resolution_time_trend over ``tickets_by_account``."""
    keys = tickets["account_id"]
    seen = (tickets["created_ts"] <= pit.as_of_ts).fillna(False).to_numpy(dtype=bool)
    open_now = tickets["status"].str.lower().isin(OPEN_TICKET_STATUSES).to_numpy(dtype=bool) & seen
    recent = between(tickets["created_ts"], pit.since(QUARTER_DAYS), pit.as_of_ts)
    urgent = tickets["priority"].str.lower().eq("urgent").fillna(False).to_numpy(dtype=bool)
    tags = tickets["tags"].fillna("").str.lower()
    complaint = (tags.str.contains(r"(?:^|\s)(?:complaint|escalat)", regex=True)).to_numpy(dtype=bool)
    n_recent = count(keys, recent, index)
    return {
        "open_tickets": count(keys, open_now, index),
        "p1_tickets_90d": count(keys, recent & urgent, index),
        "complaint_ratio": count(keys, recent & complaint, index) / n_recent.where(n_recent > 0),
        "resolution_time_trend": resolution_trend(tickets, index, pit),
    }


def resolution_trend(tickets: pd.DataFrame, index: pd.Index, pit: PointInTime) -> pd.Series:
    """Median full-resolution minutes of the last 90 days vs the 90 before, % change (NaN unless both)."""
    minutes = tickets["full_resolution_minutes"].astype("Float64")
    solved = tickets[minutes.notna().to_numpy()]
    minutes = minutes[minutes.notna()].to_numpy(dtype=float)

    def median(start: int, end: int) -> pd.Series:
        mask = between(solved["solved_ts"], start, end)
        frame = pd.DataFrame({"account_id": solved["account_id"].to_numpy()[mask], "m": minutes[mask]})
        return frame.groupby("account_id", sort=True)["m"].median().reindex(index)

    now = median(pit.since(QUARTER_DAYS), pit.as_of_ts)
    before = median(pit.since(2 * QUARTER_DAYS), pit.since(QUARTER_DAYS))
    return (now / before.where(before > 0) - 1.0) * 100.0


def rating_totals(ratings: pd.DataFrame, tickets: pd.DataFrame, pit: PointInTime) -> tuple[pd.Series, pd.Series]:
    """Sum and count per account of the CSAT ratings of the last 90 days (good = 5, bad = 1), through
    their ticket's account (``tickets_by_account``); accounts without ratings are absent."""
    owner = pd.Series(tickets["account_id"].to_numpy(), index=tickets["ticket_id"].astype("Int64").to_numpy())
    owner = owner[~owner.index.duplicated()]
    value = ratings["score"].str.lower().map(CSAT_RATING_VALUE).astype(float)
    mask = between(ratings["created_ts"], pit.since(QUARTER_DAYS), pit.as_of_ts) & value.notna().to_numpy()
    rated = pd.DataFrame({"account_id": ratings["ticket_id"].astype("Int64").map(owner).to_numpy()[mask],
                          "value": value.to_numpy()[mask]}).dropna(subset=["account_id"])
    by_account = rated.groupby("account_id", sort=True)["value"]
    return by_account.sum(), by_account.count().astype(float)
