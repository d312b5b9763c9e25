"""The sandbox world: contract columns, determinism, integrity, and that latent health (not noise) drives outcomes."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest

from healthscore_sandbox.world import World, WorldSpec, build_world

DAY = 86_400
TABLES = (
    "accounts",
    "owners",
    "contacts",
    "contracts",
    "deals",
    "meetings",
    "tickets",
    "satisfaction_ratings",
    "invoices",
    "company_changes",
    "shocks",
)
CONTRACT_COLUMNS = {
    "accounts": [
        "account_idx",
        "hubspot_company_id",
        "name",
        "domain",
        "industry",
        "segment",
        "plan",
        "seats",
        "created_ts",
        "owner_id",
        "stripe_customer_id",
        "zendesk_organization_id",
        "executive_sponsor_contact_id",
        "employees",
        "vanity_twitter_followers",
        "vanity_page_views_bias",
    ],
    "owners": ["owner_id", "email", "first_name", "last_name", "user_id", "role"],
    "contacts": [
        "contact_id",
        "account_idx",
        "first_name",
        "last_name",
        "email",
        "job_title",
        "department",
        "role",
        "created_ts",
        "left_ts",
    ],
    "contracts": [
        "contract_id",
        "account_idx",
        "term_start_ts",
        "term_end_ts",
        "seats",
        "mrr_cents",
        "outcome",
        "outcome_reason",
    ],
    "deals": [
        "deal_id",
        "account_idx",
        "dealname",
        "dealtype",
        "amount_cents",
        "create_ts",
        "close_ts",
        "won",
        "pipeline",
    ],
    "meetings": ["meeting_id", "account_idx", "owner_id", "ts", "kind", "outcome"],
    "tickets": [
        "ticket_id",
        "account_idx",
        "created_ts",
        "solved_ts",
        "priority",
        "type",
        "subject",
        "tags",
        "requester_contact_id",
        "reopens",
        "full_resolution_minutes",
        "first_reply_minutes",
        "replies",
    ],
    "satisfaction_ratings": ["rating_id", "ticket_id", "account_idx", "created_ts", "score", "comment"],
    "invoices": [
        "invoice_id",
        "account_idx",
        "stripe_customer_id",
        "contract_id",
        "created_ts",
        "period_end_ts",
        "due_ts",
        "amount_due_cents",
        "paid_ts",
        "attempt_count",
        "collection_method",
    ],
    "company_changes": ["account_idx", "ts"],
    "shocks": ["account_idx", "day", "ts", "kind", "magnitude"],
}
INT_COLUMNS = {
    "accounts": [
        "account_idx",
        "seats",
        "created_ts",
        "zendesk_organization_id",
        "employees",
        "vanity_twitter_followers",
    ],
    "contacts": ["account_idx", "created_ts", "left_ts"],
    "contracts": ["account_idx", "term_start_ts", "term_end_ts", "seats", "mrr_cents"],
    "deals": ["account_idx", "amount_cents", "create_ts", "close_ts"],
    "meetings": ["account_idx", "ts"],
    "tickets": [
        "ticket_id",
        "account_idx",
        "created_ts",
        "solved_ts",
        "reopens",
        "full_resolution_minutes",
        "first_reply_minutes",
        "replies",
    ],
    "satisfaction_ratings": ["rating_id", "ticket_id", "account_idx", "created_ts"],
    "invoices": [
        "account_idx",
        "created_ts",
        "period_end_ts",
        "due_ts",
        "amount_due_cents",
        "paid_ts",
        "attempt_count",
    ],
    "company_changes": ["account_idx", "ts"],
    "shocks": ["account_idx", "day", "ts"],
}
EVENT_NAMES = {
    "Login",
    "Dashboard Viewed",
    "Report Created",
    "Export Completed",
    "Integration Configured",
    "Invite Sent",
    "Workflow Automated",
    "API Call",
    "Page Viewed",
    "NPS Survey Responded",
    "CSAT Survey Responded",
}


@pytest.fixture(scope="module")
def small() -> World:
    return build_world(WorldSpec(n_accounts=300, seed=11), use_cache=False)


@pytest.fixture(scope="module")
def big() -> World:
    """A few thousand accounts for the statistical assertions (fixed seed, so they are deterministic)."""
    return build_world(WorldSpec(n_accounts=3000, seed=42), use_cache=False)


def _day(w: World, d: int) -> datetime.date:
    return w.spec.start + datetime.timedelta(days=d)


def _churn_ts(w: World) -> np.ndarray:
    """Churn time per account from the served contracts (INT64 max when never churned)."""
    c = w.contracts
    ch = c[c["outcome"] == "churned"].groupby("account_idx")["term_end_ts"].min()
    out = np.full(len(w.accounts), np.iinfo(np.int64).max, dtype=np.int64)
    out[ch.index.to_numpy()] = ch.to_numpy()
    return out


def _acc_of_company(w: World, company_ids: pd.Series) -> np.ndarray:
    lookup = pd.Series(
        w.accounts["account_idx"].to_numpy(), index=w.accounts["hubspot_company_id"].to_numpy()
    )
    return lookup.reindex(company_ids.to_numpy()).to_numpy()


# ---------------------------------------------------------------------------------------------------------------
# shape and contract


def test_clock_bounds_and_day_index(small: World) -> None:
    assert small.start_ts == int(datetime.datetime(2025, 10, 1, tzinfo=datetime.UTC).timestamp())
    assert small.end_ts == small.start_ts + 457 * DAY
    assert small.end_ts == int(datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC).timestamp())
    assert small.day_index(small.start_ts) == 0
    assert small.day_index(small.start_ts + DAY - 1) == 0
    assert small.day_index(small.end_ts - 1) == 456
    assert small.spec.csm_count == 4
    assert WorldSpec(n_accounts=100_000).csm_count == 1250


def test_contract_columns_and_dtypes(small: World) -> None:
    for table, cols in CONTRACT_COLUMNS.items():
        df = getattr(small, table)
        missing = [c for c in cols if c not in df.columns]
        assert not missing, (table, missing)
        for col in INT_COLUMNS.get(table, []):
            assert df[col].dtype == np.int64, (table, col, df[col].dtype)
    acc = small.accounts
    assert (acc.index.to_numpy() == acc["account_idx"].to_numpy()).all()
    assert (acc["account_idx"].to_numpy() == np.arange(300)).all()
    assert small.latent.dtype == np.float32 and small.latent.shape == (300, 457)
    assert np.isfinite(small.latent).all() and small.latent.min() >= 0 and small.latent.max() <= 100
    assert small.deals["won"].dtype == bool
    for col in ("hubspot_company_id", "owner_id", "stripe_customer_id"):
        assert all(isinstance(v, str) for v in acc[col])
    for table, col in (
        ("owners", "owner_id"),
        ("contacts", "contact_id"),
        ("deals", "deal_id"),
        ("meetings", "meeting_id"),
        ("tickets", "requester_contact_id"),
    ):
        assert getattr(small, table)[col].str.fullmatch(r"[0-9]+").all(), (table, col)
    sponsor = acc["executive_sponsor_contact_id"]
    assert all(v is None or isinstance(v, str) for v in sponsor)


def test_ids_unique_and_formatted(small: World) -> None:
    acc = small.accounts
    for col in ("hubspot_company_id", "stripe_customer_id", "zendesk_organization_id", "domain"):
        assert acc[col].is_unique, col
    assert acc["stripe_customer_id"].str.fullmatch(r"cus_[0-9A-Za-z]{14}").all()
    assert small.invoices["invoice_id"].str.fullmatch(r"in_[0-9A-Za-z]{14}").all()
    for table, col in (
        ("owners", "owner_id"),
        ("contacts", "contact_id"),
        ("contracts", "contract_id"),
        ("deals", "deal_id"),
        ("meetings", "meeting_id"),
        ("tickets", "ticket_id"),
        ("satisfaction_ratings", "rating_id"),
        ("invoices", "invoice_id"),
    ):
        assert getattr(small, table)[col].is_unique, (table, col)
    t = small.tickets
    assert (np.diff(t["ticket_id"].to_numpy()) > 0).all()
    assert (np.diff(t["created_ts"].to_numpy()) >= 0).all()  # ids increase with created_ts


# ---------------------------------------------------------------------------------------------------------------
# determinism


def test_same_spec_builds_identical_world(small: World) -> None:
    again = build_world(WorldSpec(n_accounts=300, seed=11), use_cache=False)
    for table in TABLES:
        pd.testing.assert_frame_equal(getattr(small, table), getattr(again, table), check_exact=True)
    np.testing.assert_array_equal(small.latent, again.latent)
    day = _day(small, 200)
    pd.testing.assert_frame_equal(small.product_events(day), again.product_events(day), check_exact=True)
    gt_a, gt_b = small.ground_truth(), again.ground_truth()
    assert set(gt_a) == {"accounts", "latent_daily", "shocks", "renewal_outcomes"}
    for key in gt_a:
        pd.testing.assert_frame_equal(gt_a[key], gt_b[key], check_exact=True)


def test_different_seed_differs(small: World) -> None:
    other = build_world(WorldSpec(n_accounts=300, seed=12), use_cache=False)
    assert not np.array_equal(small.latent, other.latent)
    assert not small.accounts["stripe_customer_id"].equals(other.accounts["stripe_customer_id"])
    assert len(small.tickets) != len(other.tickets) or not small.tickets["created_ts"].equals(
        other.tickets["created_ts"]
    )
    day = _day(small, 100)
    assert not small.product_events(day)["insert_id"].equals(other.product_events(day)["insert_id"])


def test_cache_returns_same_object() -> None:
    spec = WorldSpec(n_accounts=50, seed=3)
    assert build_world(spec) is build_world(spec)


def test_product_events_do_not_depend_on_generation_order() -> None:
    spec = WorldSpec(n_accounts=200, seed=5)
    w1 = build_world(spec, use_cache=False)
    w2 = build_world(spec, use_cache=False)
    a, b, c = _day(w1, 40), _day(w1, 41), _day(w1, 300)
    first = [w1.product_events(a), w1.product_events(b), w1.product_events(c)]
    w2.product_events(c)
    w2.product_events(a)
    second = {c: w2.product_events(c), b: w2.product_events(b), a: w2.product_events(a)}
    for day, frame in zip((a, b, c), first, strict=True):
        pd.testing.assert_frame_equal(frame, second[day], check_exact=True)
    assert not first[0]["insert_id"].isin(first[1]["insert_id"]).any()  # ids unique across days too


def test_product_events_outside_horizon_are_empty(small: World) -> None:
    before = small.product_events(small.spec.start - datetime.timedelta(days=1))
    after = small.product_events(_day(small, small.spec.days))
    inside = small.product_events(_day(small, 10))
    for frame in (before, after):
        assert frame.empty
        assert list(frame.columns) == list(inside.columns)


# ---------------------------------------------------------------------------------------------------------------
# referential integrity and value domains


def test_referential_integrity(small: World) -> None:
    accounts = set(small.accounts["account_idx"])
    for table in (
        "contacts",
        "contracts",
        "deals",
        "meetings",
        "tickets",
        "satisfaction_ratings",
        "invoices",
        "company_changes",
        "shocks",
    ):
        assert set(getattr(small, table)["account_idx"]) <= accounts, table
    owners = small.owners
    csms = set(owners.loc[owners["role"] == "csm", "owner_id"])
    assert set(small.accounts["owner_id"]) <= csms
    assert set(small.meetings["owner_id"]) <= set(owners["owner_id"])
    assert (owners["role"] == "cs_leader").sum() >= 1
    assert set(owners["role"]) == {"csm", "cs_leader"}

    tickets = small.tickets.set_index("ticket_id")
    r = small.satisfaction_ratings
    assert r["ticket_id"].isin(tickets.index).all()
    assert (tickets.loc[r["ticket_id"], "account_idx"].to_numpy() == r["account_idx"].to_numpy()).all()
    solved = tickets.loc[r["ticket_id"], "solved_ts"].to_numpy()
    assert (solved >= 0).all() and (r["created_ts"].to_numpy() > solved).all()

    contacts = small.contacts.set_index("contact_id")
    req = small.tickets["requester_contact_id"]
    assert req.isin(contacts.index).all()
    assert (contacts.loc[req, "account_idx"].to_numpy() == small.tickets["account_idx"].to_numpy()).all()
    sponsor = small.accounts["executive_sponsor_contact_id"].dropna()
    assert (contacts.loc[sponsor.to_numpy(), "role"] == "executive_sponsor").all()
    assert (contacts.loc[sponsor.to_numpy(), "account_idx"].to_numpy() == sponsor.index.to_numpy()).all()

    inv = small.invoices
    contracts = small.contracts.set_index("contract_id")
    assert inv["contract_id"].isin(contracts.index).all()
    assert (
        contracts.loc[inv["contract_id"], "account_idx"].to_numpy() == inv["account_idx"].to_numpy()
    ).all()
    cus = small.accounts["stripe_customer_id"].to_numpy()[inv["account_idx"].to_numpy()]
    assert (inv["stripe_customer_id"].to_numpy() == cus).all()
    assert (
        small.meetings["owner_id"].to_numpy()
        == small.accounts["owner_id"].to_numpy()[small.meetings["account_idx"].to_numpy()]
    ).all()


def test_account_domains(big: World) -> None:
    acc = big.accounts
    share = acc["segment"].value_counts(normalize=True)
    assert set(share.index) == {"enterprise", "mid_market", "smb"}
    assert (
        0.07 < share["enterprise"] < 0.13 and 0.25 < share["mid_market"] < 0.35 and 0.55 < share["smb"] < 0.65
    )
    assert set(acc["plan"]) <= {"starter", "growth", "pro", "enterprise"}
    ent = acc[acc["segment"] == "enterprise"]
    smb = acc[acc["segment"] == "smb"]
    assert (ent["plan"].isin(["pro", "enterprise"])).mean() > 0.9 and (smb["plan"] == "enterprise").sum() == 0
    assert ent["seats"].median() > 5 * smb["seats"].median()
    assert (acc["seats"] >= 1).all() and (acc["employees"] >= acc["seats"]).all()
    new = acc["created_ts"] >= big.start_ts
    assert 0.2 < new.mean() < 0.3
    assert (acc["created_ts"] < big.end_ts).all()
    assert (acc["created_ts"] >= big.start_ts - int(5 * 365.25 * DAY)).all()
    assert acc["name"].str.len().min() > 5 and acc["domain"].str.contains(r"\.").all()


def test_contact_rules(small: World) -> None:
    c = small.contacts
    assert set(c["role"]) <= {"executive_sponsor", "champion", "user", "admin"}
    left = c["left_ts"].to_numpy()
    assert ((left == -1) | (left > c["created_ts"].to_numpy())).all()
    assert (c.groupby("account_idx")["role"].apply(lambda r: (r == "admin").sum()) == 1).all()
    domains = small.accounts["domain"].to_numpy()[c["account_idx"].to_numpy()]
    assert all(e.endswith("@" + d) for e, d in zip(c["email"], domains, strict=True))
    created = small.accounts["created_ts"].to_numpy()[c["account_idx"].to_numpy()]
    assert (c["created_ts"].to_numpy() >= created).all()


def test_champion_left_shock_changes_contacts(big: World) -> None:
    shocks = big.shocks[big.shocks["kind"] == "champion_left"]
    assert len(shocks) > 20
    champs = big.contacts[big.contacts["role"] == "champion"]
    left_at = set(zip(champs["account_idx"], champs["left_ts"], strict=True))
    assert all((a, t) in left_at for a, t in zip(shocks["account_idx"], shocks["ts"], strict=True))
    replaced = shocks[(shocks["replacement_ts"] >= 0) & (shocks["replacement_ts"] < big.end_ts)]
    created_at = set(zip(champs["account_idx"], champs["created_ts"], strict=True))
    churn = _churn_ts(big)
    expected = [
        (a, t)
        for a, t in zip(replaced["account_idx"], replaced["replacement_ts"], strict=True)
        if t < churn[a]
    ]
    assert expected and all(x in created_at for x in expected)
    assert (replaced["replacement_ts"] > replaced["ts"]).all()


def test_contracts_are_consecutive_terms(small: World) -> None:
    c = small.contracts.sort_values(["account_idx", "term_start_ts"])
    assert set(c["outcome"]) <= {"renewed", "expanded", "contracted", "churned", "open"}
    assert (c["term_end_ts"] > c["term_start_ts"]).all()
    assert (c["seats"] >= 1).all() and (c["mrr_cents"] > 0).all()
    same = c["account_idx"].to_numpy()[1:] == c["account_idx"].to_numpy()[:-1]
    assert (c["term_end_ts"].to_numpy()[:-1][same] == c["term_start_ts"].to_numpy()[1:][same]).all()
    last = c.groupby("account_idx").tail(1)
    assert last["outcome"].isin(["churned", "open"]).all()
    assert (c.loc[c["outcome"] == "open", "term_end_ts"] >= small.end_ts).all()
    assert (c.loc[c["outcome"] != "open", "term_end_ts"] < small.end_ts).all()
    not_last = c.drop(last.index)
    assert not (not_last["outcome"] == "churned").any()
    natural = c[~c["amendment"] & (c["outcome_reason"] != "mid_term_expansion")]
    assert ((natural["term_end_ts"] - natural["term_start_ts"]) == 365 * DAY).all()
    first = c.groupby("account_idx").head(1)
    acc = small.accounts
    assert (first["term_start_ts"].to_numpy() <= np.maximum(acc["created_ts"], small.start_ts)).all()
    assert (first["seats"].to_numpy() == acc["seats"].to_numpy()).all()
    churned = c[c["outcome"] == "churned"]
    assert (churned["outcome_reason"] != "").all()


def test_tickets_domains(small: World) -> None:
    t = small.tickets
    assert set(t["priority"]) <= {"urgent", "high", "normal", "low", ""}
    assert set(t["type"]) <= {"question", "incident", "problem", "task"}
    assert t["tags"].str.contains(r"\b(?:how_to|complaint|bug|outage)\b").all()
    solved = t["solved_ts"].to_numpy()
    created = t["created_ts"].to_numpy()
    is_solved = solved >= 0
    assert (solved[is_solved] >= created[is_solved]).all() and (solved[~is_solved] == -1).all()
    assert (t["full_resolution_minutes"].to_numpy()[is_solved] == (solved - created)[is_solved] // 60).all()
    assert ((solved - created)[is_solved] % 60 == 0).all()
    assert (t["first_reply_minutes"] >= 1).all() and (t["replies"] >= 1).all() and (t["reopens"] >= 0).all()
    assert ((created >= small.start_ts) & (created < small.end_ts)).all()
    assert (solved < small.end_ts).all()


def test_ratings_meetings_deals_invoices_domains(small: World) -> None:
    r = small.satisfaction_ratings
    assert set(r["score"]) == {"good", "bad"}
    assert (r["created_ts"] < small.end_ts).all()

    m = small.meetings
    assert set(m["kind"]) <= {"QBR", "Check-in", "Training"}
    assert set(m["outcome"]) <= {"COMPLETED", "NO_SHOW", "CANCELED"}
    seg = small.accounts["segment"].to_numpy()[m["account_idx"].to_numpy()]
    assert not ((m["kind"] == "QBR") & (seg == "smb")).any()

    d = small.deals
    assert set(d["dealtype"]) == {"newbusiness", "renewal", "expansion"}
    assert (d["pipeline"] == "default").all() and (d["amount_cents"] >= 0).all()
    assert (d["close_ts"] >= d["create_ts"]).all()
    assert (d["dealtype"] == "newbusiness").sum() == len(small.accounts)
    c = small.contracts
    natural_ends = c[
        (c["outcome_reason"] != "mid_term_expansion") & (c["term_end_ts"] - 95 * DAY < small.end_ts)
    ]
    renewals = d[d["dealtype"] == "renewal"]
    assert abs(len(renewals) - len(natural_ends)) <= 0.02 * len(natural_ends) + 2
    lost_renewals = renewals[~renewals["won"] & (renewals["close_ts"] < small.end_ts)]
    assert len(lost_renewals) == (c["outcome"] == "churned").sum()

    inv = small.invoices
    assert set(inv["collection_method"]) <= {"charge_automatically", "send_invoice"}
    paid = inv["paid_ts"].to_numpy()
    assert ((paid == -1) | (paid >= inv["created_ts"].to_numpy())).all()
    assert (inv["amount_due_cents"] >= 0).all() and (inv["attempt_count"] >= 0).all()
    assert (inv["due_ts"] >= inv["created_ts"]).all() and (inv["period_end_ts"] > inv["created_ts"]).all()
    assert (inv["created_ts"] < small.end_ts).all()
    ent = small.accounts["segment"].to_numpy()[inv["account_idx"].to_numpy()] == "enterprise"
    assert (inv.loc[ent, "collection_method"] == "send_invoice").all()


def test_company_changes_cover_lifecycle(small: World) -> None:
    cc = small.company_changes
    pairs = set(zip(cc["account_idx"], cc["ts"], strict=True))
    acc = small.accounts
    assert all((a, t) in pairs for a, t in zip(acc["account_idx"], acc["created_ts"], strict=True))
    c = small.contracts
    assert all((a, t) in pairs for a, t in zip(c["account_idx"], c["term_start_ts"], strict=True))
    ch = c[c["outcome"] == "churned"]
    assert all((a, t) in pairs for a, t in zip(ch["account_idx"], ch["term_end_ts"], strict=True))
    assert (cc["ts"] < small.end_ts).all() and not cc.duplicated(["account_idx", "ts"]).any()


def test_history_is_populated_for_the_first_year(small: World) -> None:
    for table, col in (("tickets", "created_ts"), ("invoices", "created_ts"), ("meetings", "ts")):
        ts = getattr(small, table)[col].to_numpy()
        months = np.unique(
            (ts[(ts >= small.start_ts) & (ts < small.start_ts + 365 * DAY)] - small.start_ts) // (30 * DAY)
        )
        assert len(months) >= 12, table
    for d in (0, 90, 180, 270, 364):
        assert len(
            small.product_events(_day(small, d) + datetime.timedelta(days=(2 - _day(small, d).weekday()) % 7))
        )


# ---------------------------------------------------------------------------------------------------------------
# product events


def test_product_event_schema_and_domains(small: World) -> None:
    day = _day(small, 150)
    ev = small.product_events(day)
    assert list(ev.columns)[:5] == ["insert_id", "event", "time", "distinct_id", "company_id"]
    assert ev["time"].dtype == np.int64 and ev["insert_id"].is_unique
    assert set(ev["event"]) <= EVENT_NAMES and {"Login", "Page Viewed"} <= set(ev["event"])
    start = small.start_ts + 150 * DAY
    assert ev["time"].between(start, start + DAY - 1).all()
    nps = ev.loc[ev["event"] == "NPS Survey Responded", "nps_score"]
    csat = ev.loc[ev["event"] == "CSAT Survey Responded", "csat_score"]
    assert nps.between(0, 10).all() and csat.between(1, 5).all()
    assert ev.loc[ev["event"] != "NPS Survey Responded", "nps_score"].isna().all()
    assert ev.loc[ev["event"] != "CSAT Survey Responded", "csat_score"].isna().all()
    acc = _acc_of_company(small, ev["company_id"])
    assert not np.isnan(acc.astype(float)).any()
    assert (ev["distinct_id"].str.extract(r"^u(\d+)_\d+$")[0].astype(int).to_numpy() == acc).all()
    feat = ev["event"].isin(
        EVENT_NAMES - {"Login", "Page Viewed", "NPS Survey Responded", "CSAT Survey Responded"}
    )
    assert ev.loc[feat, "feature"].notna().all() and ev.loc[~feat, "feature"].isna().all()


def test_active_users_within_seats(big: World) -> None:
    for d in (30, 200, 400):
        ev = big.product_events(_day(big, d))
        acc = _acc_of_company(big, ev["company_id"])
        k = ev["distinct_id"].str.extract(r"_(\d+)$")[0].astype(int).to_numpy()
        seats = big.seats_at(acc, ev["time"].to_numpy())  # seats when it happened
        assert (seats > 0).all() and (k < seats).all()
        users = (
            pd.DataFrame({"acc": acc, "k": k, "seats": seats})
            .groupby("acc")
            .agg(users=("k", "nunique"), seats=("seats", "min"))
        )
        assert (users["users"] <= users["seats"]).all()
        active = ev["event"].isin(["Login"]).to_numpy()
        assert (pd.Series(k[active]).groupby(acc[active]).nunique() > 0).all()


def test_event_volume_scales(big: World) -> None:
    week = [big.product_events(_day(big, d)) for d in range(200, 207)]
    per_account_day = sum(len(f) for f in week) / 7 / len(big.accounts)
    assert 6 < per_account_day < 16
    weekday = [len(f) for f, d in zip(week, range(200, 207), strict=True) if _day(big, d).weekday() < 5]
    weekend = [len(f) for f, d in zip(week, range(200, 207), strict=True) if _day(big, d).weekday() >= 5]
    assert min(weekday) > 2 * max(weekend)


# ---------------------------------------------------------------------------------------------------------------
# churn silences an account


def test_churned_accounts_go_quiet(big: World) -> None:
    churn = _churn_ts(big)
    assert (churn < big.end_ts).sum() > 100
    for table, col in (
        ("tickets", "created_ts"),
        ("invoices", "created_ts"),
        ("meetings", "ts"),
        ("satisfaction_ratings", "created_ts"),
        ("shocks", "ts"),
    ):
        df = getattr(big, table)
        assert (df[col].to_numpy() < churn[df["account_idx"].to_numpy()]).all(), table
    contacts = big.contacts
    assert (contacts["created_ts"].to_numpy() < churn[contacts["account_idx"].to_numpy()]).all()
    churned_early = np.flatnonzero(churn < big.start_ts + 200 * DAY)
    assert len(churned_early) > 20
    for d in (199, 200, 320):
        ev = big.product_events(_day(big, d))
        acc = _acc_of_company(big, ev["company_id"])
        assert (ev["time"].to_numpy() < churn[acc]).all()
        assert not np.isin(acc, churned_early).any()
    # and nothing before signup
    created = big.accounts["created_ts"].to_numpy()
    ev = big.product_events(_day(big, 250))
    acc = _acc_of_company(big, ev["company_id"])
    assert (ev["time"].to_numpy() >= created[acc]).all()
    t = big.tickets
    assert (t["created_ts"].to_numpy() >= created[t["account_idx"].to_numpy()]).all()


# ---------------------------------------------------------------------------------------------------------------
# the latent drives outcomes; vanity signals do not


def test_latent_health_drives_renewal_outcomes(big: World) -> None:
    c = big.contracts
    decided = c[
        c["outcome"].isin(["churned", "renewed", "expanded", "contracted"])
        & (c["outcome_reason"] != "mid_term_expansion")
    ]
    end_day = (decided["term_end_ts"].to_numpy() - big.start_ts) // DAY
    acc = decided["account_idx"].to_numpy()
    means = np.array(
        [big.latent[a, max(0, e - 90) : max(1, e)].mean() for a, e in zip(acc, end_day, strict=True)]
    )
    by_outcome = pd.Series(means).groupby(decided["outcome"].to_numpy()).mean()
    assert (decided["outcome"] == "churned").sum() > 150
    assert by_outcome["churned"] < by_outcome["renewed"] - 10
    assert by_outcome["renewed"] < by_outcome["expanded"]
    assert by_outcome["contracted"] < by_outcome["renewed"]
    gt = big.ground_truth()["renewal_outcomes"]
    assert len(gt) == len(decided)
    assert (
        gt.groupby("outcome")["p_churn"].mean()["churned"]
        > 2 * gt.groupby("outcome")["p_churn"].mean()["renewed"]
    )
    segs = big.accounts["segment"].to_numpy()[acc]
    churn_rate = pd.Series(decided["outcome"].to_numpy() == "churned").groupby(segs).mean()
    assert churn_rate["smb"] > churn_rate["mid_market"] > churn_rate["enterprise"]


def test_shocks_are_ground_truth_with_effect(big: World) -> None:
    s = big.shocks
    assert set(s["kind"]) == {"champion_left", "outage", "budget_cut", "competitor"}
    assert ((s["ts"] - big.start_ts) // DAY == s["day"]).all() and (s["magnitude"] > 0).all()
    per_quarter = len(s) / len(big.accounts) / (big.spec.days / 91)
    assert 0.02 < per_quarter < 0.15
    big_drops = s[(s["magnitude"] > 15) & (s["day"] > 5) & (s["day"] < big.spec.days - 5)]
    before = big.latent[big_drops["account_idx"], big_drops["day"] - 1]
    after = big.latent[big_drops["account_idx"], big_drops["day"]]
    assert np.mean(before - after) > 10
    outages = s[s["kind"] == "outage"]
    t = big.tickets
    urgent_incident = t[t["tags"].str.contains("outage")]
    hit = set(zip(outages["account_idx"], outages["day"], strict=True))
    t_day = (urgent_incident["created_ts"] - big.start_ts) // DAY
    near = [
        any((a, d - k) in hit for k in range(0, 90))
        for a, d in zip(urgent_incident["account_idx"], t_day, strict=True)
    ]
    assert all(near)  # outage tickets only follow outage shocks


def test_low_latent_means_more_complaints_and_bad_csat(big: World) -> None:
    t = big.tickets
    h = big.latent[t["account_idx"], (t["created_ts"] - big.start_ts) // DAY]
    complaint = t["tags"].str.contains("complaint").to_numpy()
    assert complaint[h < 40].mean() > 2 * complaint[h > 65].mean()
    r = big.satisfaction_ratings
    hr = big.latent[r["account_idx"], np.clip((r["created_ts"] - big.start_ts) // DAY - 1, 0, None)]
    good = (r["score"] == "good").to_numpy()
    assert good[hr > 65].mean() > good[hr < 40].mean() + 0.2
    inv = big.invoices
    send = inv[
        (inv["collection_method"] == "send_invoice")
        & (inv["created_ts"] >= big.start_ts)
        & (inv["paid_ts"] > 0)
    ]
    hi_ = big.latent[send["account_idx"], (send["created_ts"] - big.start_ts) // DAY]
    late = (send["paid_ts"] > send["due_ts"]).to_numpy()
    assert late[hi_ < 45].mean() > late[hi_ > 65].mean() + 0.1


def test_vanity_signals_carry_no_information_but_usage_does(big: World) -> None:
    d0 = 150
    days = [_day(big, d0 + i) for i in range(7)]
    ev = pd.concat([big.product_events(d) for d in days], ignore_index=True)
    acc = _acc_of_company(big, ev["company_id"])
    n = len(big.accounts)
    logins = np.bincount(acc[(ev["event"] == "Login").to_numpy()], minlength=n)
    pages = np.bincount(acc[(ev["event"] == "Page Viewed").to_numpy()], minlength=n)
    churn = _churn_ts(big)
    week_start, week_end = big.start_ts + d0 * DAY, big.start_ts + (d0 + 7) * DAY
    live = (big.accounts["created_ts"].to_numpy() < week_start) & (churn > week_end)
    churned_later = (churn < big.end_ts)[live].astype(float)
    seats = big.accounts["seats"].to_numpy()[live]

    def corr(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.corrcoef(x, y)[0, 1])

    assert live.sum() > 2000 and 0.05 < churned_later.mean() < 0.3
    assert corr(logins[live] / seats, churned_later) < -0.08
    assert abs(corr(pages[live], churned_later)) < 0.05
    twitter = np.log1p(big.accounts["vanity_twitter_followers"].to_numpy()[live])
    assert abs(corr(twitter, churned_later)) < 0.05
    bias = big.accounts["vanity_page_views_bias"].to_numpy()[live]
    assert abs(corr(bias, churned_later)) < 0.05
    latent = big.latent[live, d0 : d0 + 7].mean(axis=1)
    assert corr(logins[live] / seats, latent) > 0.25
    assert abs(corr(pages[live], latent)) < 0.06
    assert corr(pages[live], np.exp(bias)) > 0.3  # page views follow the pure-noise bias


def test_ground_truth_shapes(small: World) -> None:
    gt = small.ground_truth()
    acc = gt["accounts"]
    assert len(acc) == 300 and {
        "account_idx",
        "hubspot_company_id",
        "segment",
        "churned",
        "churn_ts",
        "churn_reason",
    } <= set(acc.columns)
    churned = acc[acc["churned"]]
    assert (churned["churn_reason"] != "").all() and (acc.loc[~acc["churned"], "churn_ts"] == -1).all()
    np.testing.assert_array_equal(churned["churn_ts"].to_numpy(), _churn_ts(small)[churned["account_idx"]])
    latent = gt["latent_daily"]
    assert (
        latent.shape == (300, 457)
        and latent.columns[0] == "2025-10-01"
        and latent.columns[-1] == "2026-12-31"
    )
    np.testing.assert_array_equal(latent.to_numpy(), small.latent)
