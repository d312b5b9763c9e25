"""HubSpot signals: the account roster and contract columns, meetings (engagement), contacts
(relationship), deals (value). Pure functions of flattened frames."""

from __future__ import annotations

from datetime import date

import pandas as pd

from healthscore.config import ModelConfig
from healthscore.signals.common import (
    DAY_S,
    EXPANSION_DAYS,
    QBR_LOOKBACK_DAYS,
    QUARTER_DAYS,
    TOUCHPOINT_KINDS,
    PointInTime,
    Signals,
    between,
    count,
    flag,
)


def active_accounts(companies: pd.DataFrame) -> pd.DataFrame:
    """The companies whose ``customer_status`` is active in the version read, by company id: churned
    companies have nothing left to score (and one churned after as-of is still active in that version)."""
    active = companies["customer_status"].str.lower().eq("active").fillna(False) & companies["company_id"].notna()
    return companies[active.to_numpy(dtype=bool)].sort_values("company_id", kind="stable").reset_index(drop=True)


def contract_columns(accounts: pd.DataFrame, pit: PointInTime, model: ModelConfig) -> pd.DataFrame:
    """account_id, as_of_date, segment, plan, lifecycle stage from tenure, ARR, renewal date, owner."""
    since = accounts["customer_since_ts"].fillna(accounts["created_ts"])
    tenure = ((pit.as_of_ts - since) // DAY_S).clip(lower=0).astype("Int64")
    stages = {int(t): model.stage_for(int(t)) for t in tenure.dropna().unique()}
    renewal = [date.fromisoformat(v) if isinstance(v, str) else None for v in accounts["renewal_date"]]
    return pd.DataFrame({
        "account_id": accounts["company_id"].astype(object).to_numpy(),
        "as_of_date": [pit.batch_date] * len(accounts),
        "segment": accounts["segment"].astype(object).where(accounts["segment"].notna(), None).to_numpy(),
        "plan": accounts["plan_tier"].astype(object).where(accounts["plan_tier"].notna(), None).to_numpy(),
        "lifecycle_stage": [stages.get(int(t)) if pd.notna(t) else None for t in tenure],
        "tenure_days": tenure.to_numpy(),
        "arr_cents": accounts["arr_cents"].astype("Int64").to_numpy(),
        "renewal_date": pd.Series(renewal, dtype=object).to_numpy(),
        "owner_id": accounts["owner_id"].astype(object).where(accounts["owner_id"].notna(), None).to_numpy(),
    })


def meeting_signals(meetings: pd.DataFrame, index: pd.Index, pit: PointInTime) -> Signals:
    """csm_touchpoints_qtr, training_sessions_qtr, qbr_attended."""
    kind = meetings["activity_type"].fillna(meetings["title"]).str.strip().str.lower().fillna("")
    outcome = meetings["outcome"].str.upper().fillna("")
    ts = meetings["meeting_ts"]
    keys = meetings["company_id"]
    completed = (outcome == "COMPLETED").to_numpy(dtype=bool)
    quarter = between(ts, pit.since(QUARTER_DAYS), pit.as_of_ts)
    qbr = meetings[(kind == "qbr").to_numpy(dtype=bool) & outcome.isin(["COMPLETED", "NO_SHOW"]).to_numpy(dtype=bool)
                   & between(ts, pit.since(QBR_LOOKBACK_DAYS), pit.as_of_ts)]
    latest = qbr.sort_values(["company_id", "meeting_ts", "record_id"], kind="stable").groupby("company_id").tail(1)
    attended = pd.Series((latest["outcome"].str.upper() == "COMPLETED").to_numpy(dtype=float),
                         index=latest["company_id"].astype(object).to_numpy())
    return {
        "csm_touchpoints_qtr": count(keys, completed & quarter & kind.isin(TOUCHPOINT_KINDS).to_numpy(dtype=bool),
                                     index),
        "training_sessions_qtr": count(keys, completed & quarter & (kind == "training").to_numpy(dtype=bool), index),
        "qbr_attended": attended.reindex(index, fill_value=0.0).astype(float),
    }


def contact_signals(contacts: pd.DataFrame, index: pd.Index) -> Signals:
    """executive_sponsor, active_champion, contacts_engaged, departments_engaged (contacts who have not left)."""
    current = contacts[~contacts["left_company"].fillna(False).to_numpy(dtype=bool)]
    role = current["role"].str.lower().fillna("")
    keys = current["company_id"]
    by_company = current.groupby(keys.astype(object).to_numpy(), sort=True)
    return {
        "executive_sponsor": flag(keys, (role == "executive_sponsor").to_numpy(dtype=bool), index),
        "active_champion": flag(keys, (role == "champion").to_numpy(dtype=bool), index),
        "contacts_engaged": by_company["contact_id"].nunique().reindex(index, fill_value=0).astype(float),
        "departments_engaged": by_company["department"].nunique().reindex(index, fill_value=0).astype(float),
    }


def deal_signals(deals: pd.DataFrame, index: pd.Index, pit: PointInTime) -> Signals:
    """expansion_12m: closed-won expansion deals closed in the last 365 days."""
    expansion = (deals["deal_category"].str.lower().eq("expansion") & deals["deal_stage"].str.lower().eq("closedwon"))
    window = between(deals["close_ts"], pit.since(EXPANSION_DAYS), pit.as_of_ts)
    return {"expansion_12m": count(deals["company_id"], expansion.fillna(False).to_numpy(dtype=bool) & window, index)}
