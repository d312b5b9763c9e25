"""healthscore.signals.hubspot on hand-made frames: roster, contract columns, meetings, contacts, deals."""

from __future__ import annotations

from datetime import date

import pandas as pd

from healthscore.config import load_model_config
from healthscore.signals import hubspot
from tests.unit.signal_frames import PIT, days_ago, frame, index

COMPANY = {"company_id": "str", "customer_status": "str", "segment": "str", "plan_tier": "str", "owner_id": "str",
           "arr_cents": "Int64", "renewal_date": "str", "customer_since_ts": "Int64", "created_ts": "Int64"}
MEETING = {"record_id": "str", "company_id": "str", "meeting_ts": "Int64", "title": "str", "activity_type": "str",
           "outcome": "str"}


def test_the_roster_is_the_active_companies_in_id_order() -> None:
    companies = frame([{"company_id": "3", "customer_status": "Active"}, {"company_id": "1", "customer_status": "active"},
                       {"company_id": "2", "customer_status": "churned"}, {"company_id": None, "customer_status": "active"},
                       {"company_id": "4"}], COMPANY)
    assert hubspot.active_accounts(companies)["company_id"].tolist() == ["1", "3"]


def test_contract_columns_tenure_stage_and_dates() -> None:
    model = load_model_config()
    accounts = frame([
        {"company_id": "1", "segment": "smb", "plan_tier": "pro", "owner_id": "7", "arr_cents": 120000,
         "renewal_date": "2027-01-31", "customer_since_ts": days_ago(400), "created_ts": days_ago(900)},
        {"company_id": "2", "created_ts": days_ago(10.5)},  # no customer_since: tenure from creation
    ], COMPANY)
    out = hubspot.contract_columns(accounts, PIT, model)
    assert out["tenure_days"].tolist() == [400, 10]
    assert out["lifecycle_stage"].tolist() == [model.stage_for(400), model.stage_for(10)]
    assert out["renewal_date"].tolist() == [date(2027, 1, 31), None]
    assert out["segment"][0] == "smb" and pd.isna(out["segment"][1])
    assert out["owner_id"][0] == "7" and pd.isna(out["owner_id"][1])
    assert out["as_of_date"].tolist() == [PIT.batch_date] * 2


def test_meetings_touchpoints_training_and_the_latest_qbr() -> None:
    meetings = frame([
        {"record_id": "m1", "company_id": "1", "meeting_ts": days_ago(10), "activity_type": "QBR", "outcome": "COMPLETED"},
        {"record_id": "m2", "company_id": "1", "meeting_ts": days_ago(5), "title": " Check-in ", "outcome": "completed"},
        {"record_id": "m3", "company_id": "1", "meeting_ts": days_ago(100), "activity_type": "Check-in",
         "outcome": "COMPLETED"},  # outside the quarter
        {"record_id": "m4", "company_id": "1", "meeting_ts": days_ago(3), "activity_type": "Training",
         "outcome": "COMPLETED"},
        {"record_id": "m5", "company_id": "2", "meeting_ts": days_ago(100), "activity_type": "QBR", "outcome": "COMPLETED"},
        {"record_id": "m6", "company_id": "2", "meeting_ts": days_ago(20), "activity_type": "QBR", "outcome": "NO_SHOW"},
        {"record_id": "m7", "company_id": "2", "meeting_ts": days_ago(2), "activity_type": "QBR", "outcome": "CANCELED"},
        {"record_id": "m8", "company_id": "3", "meeting_ts": days_ago(-1), "activity_type": "QBR", "outcome": "COMPLETED"},
    ], MEETING)
    out = hubspot.meeting_signals(meetings, index("1", "2", "3"), PIT)
    assert out["csm_touchpoints_qtr"].tolist() == [2.0, 0.0, 0.0]  # the future QBR of "3" does not count
    assert out["training_sessions_qtr"].tolist() == [1.0, 0.0, 0.0]
    assert out["qbr_attended"].tolist() == [1.0, 0.0, 0.0]  # "2": the newest held-or-missed QBR was missed


def test_contacts_that_left_do_not_count() -> None:
    contacts = frame([
        {"company_id": "1", "contact_id": "a", "role": "Executive_Sponsor", "department": "IT", "left_company": False},
        {"company_id": "1", "contact_id": "b", "role": "champion", "department": "IT"},
        {"company_id": "1", "contact_id": "c", "role": "user", "department": "Sales", "left_company": False},
        {"company_id": "2", "contact_id": "d", "role": "champion", "department": "IT", "left_company": True},
    ], {"company_id": "str", "contact_id": "str", "role": "str", "department": "str", "left_company": "boolean"})
    out = hubspot.contact_signals(contacts, index("1", "2"))
    assert out["executive_sponsor"].tolist() == [1.0, 0.0]
    assert out["active_champion"].tolist() == [1.0, 0.0]
    assert out["contacts_engaged"].tolist() == [3.0, 0.0]
    assert out["departments_engaged"].tolist() == [2.0, 0.0]


def test_expansion_deals_closed_won_within_a_year() -> None:
    deals = frame([
        {"company_id": "1", "deal_category": "Expansion", "deal_stage": "closedwon", "close_ts": days_ago(30)},
        {"company_id": "1", "deal_category": "expansion", "deal_stage": "closedwon", "close_ts": days_ago(400)},
        {"company_id": "1", "deal_category": "expansion", "deal_stage": "closedlost", "close_ts": days_ago(30)},
        {"company_id": "2", "deal_category": "new_business", "deal_stage": "closedwon", "close_ts": days_ago(30)},
        {"company_id": "2", "deal_category": None, "deal_stage": "closedwon", "close_ts": None},
    ], {"company_id": "str", "deal_category": "str", "deal_stage": "str", "close_ts": "Int64"})
    out = hubspot.deal_signals(deals, index("1", "2"), PIT)
    pd.testing.assert_series_equal(out["expansion_12m"], pd.Series([1.0, 0.0], index=index("1", "2"), name="count"),
                                   check_names=False)
