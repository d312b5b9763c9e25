"""What each vendor would show at a given simulated "now".

The world stores timestamps, not states. A view projects the world onto one vendor object as of
``now``: records created later are invisible, statuses follow from the timestamps, and the
configured bad records are corrupted. Views are whole-table DataFrames built once per (object,
now) and cached, so paginating through them costs only the page slice.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import pandas as pd

from healthscore_sandbox.faults import HOSTILE_NAMES, FaultInjector
from healthscore_sandbox.stripe_states import StripeEvents, StripeStates
from healthscore_sandbox.world import World

DAY = 86_400
UNKNOWN_COMPANY_ID = "9999999999"
UNKNOWN_OWNER_ID = "999999999"
UNKNOWN_ORGANIZATION_ID = 999_999_999
UNKNOWN_CUSTOMER_ID = "cus_UNKNOWN0000000"
TICKET_CLOSE_AFTER = 4 * DAY
CONTRACT_SENT_BEFORE_CLOSE = 30 * DAY
#: Records users delete in the CRM (HubSpot archives them: gone from lists and search, listed with
#: ``archived=true``): (share of records, seconds after their creation), stable per record id.
ARCHIVING: dict[str, tuple[float, int]] = {"deals": (0.03, 20 * DAY), "meetings": (0.02, 3 * DAY)}


def iso_seconds(ts: np.ndarray | pd.Series) -> np.ndarray:
    """Epoch seconds -> '2026-01-31T12:00:00Z' (Zendesk, HubSpot dates)."""
    values = np.asarray(ts, dtype="int64").astype("datetime64[s]")
    return np.char.add(np.datetime_as_string(values, unit="s").astype(object).astype(str), "Z").astype(object)


def iso_millis(ts: np.ndarray | pd.Series) -> np.ndarray:
    """Epoch seconds -> '2026-01-31T12:00:00.000Z' (HubSpot timestamps)."""
    values = np.asarray(ts, dtype="int64").astype("datetime64[s]").astype("datetime64[ms]")
    return np.char.add(np.datetime_as_string(values, unit="ms").astype(str), "Z").astype(object)


def iso_or_none(ts: pd.Series, now: int) -> np.ndarray:
    """ISO string where 0 <= ts <= now, else None."""
    ts = ts.to_numpy(dtype="int64")
    visible = (ts >= 0) & (ts <= now)
    out = np.full(len(ts), None, dtype=object)
    if visible.any():
        out[visible] = iso_seconds(ts[visible])
    return out


def dollars(cents: pd.Series) -> np.ndarray:
    """HubSpot currency properties are strings of decimal dollars."""
    values = cents.to_numpy(dtype="int64")
    return np.array([f"{v / 100:.2f}" for v in values], dtype=object)


def _strings(series: pd.Series) -> np.ndarray:
    return series.astype(str).to_numpy(dtype=object)


def _by_numeric_id(frame: pd.DataFrame) -> pd.DataFrame:
    """HubSpot pages in id order; ``_oid`` keeps the numeric id so paging needs no re-parsing."""
    frame["_oid"] = frame["id"].astype("int64")
    return frame.sort_values("_oid").reset_index(drop=True)


class ViewCache:
    """LRU of built views keyed by (object, now, fault fingerprint)."""

    def __init__(self, size: int = 24) -> None:
        self._size = size
        self._items: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, build: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        frame = build()
        with self._lock:
            self._items[key] = frame
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return frame

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class VendorViews:
    """Builds the per-object views; one instance per running sandbox."""

    def __init__(self, world: World, faults: FaultInjector) -> None:
        self.world = world
        self.faults = faults
        self.cache = ViewCache()
        accounts = world.accounts
        self._company_ids = accounts["hubspot_company_id"].astype(str)
        self._org_ids = accounts["zendesk_organization_id"].astype("int64")
        self._customer_ids = accounts["stripe_customer_id"].astype(str)
        self._stripe: StripeStates | None = None

    def view(self, obj: str, now: int) -> pd.DataFrame:
        """What the vendor lists at ``now`` (HubSpot: without the archived records)."""
        if obj in ARCHIVING:
            return self._split(obj, now)[0]
        return self.cache.get((obj, now, *self._fault_key()), lambda: getattr(self, f"_build_{obj}")(now))

    def archived(self, obj: str, now: int) -> pd.DataFrame:
        """HubSpot records archived (deleted) by ``now``, with ``archived_ts`` as their archive time."""
        if obj not in ARCHIVING:
            return self.view(obj, now).iloc[0:0].assign(archived_ts=pd.Series(dtype="int64"))
        return self._split(obj, now)[1]

    def _fault_key(self) -> tuple:
        return (self.faults.config.bad_record_rate, self.faults.config.seed, self.faults.config.hostile_names)

    def _split(self, obj: str, now: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(live, archived) views; an archived record's modification time is its archive time, as in HubSpot.
        Cached as one entry so a 1M-meeting view is held once."""
        def build() -> tuple[pd.DataFrame, pd.DataFrame]:
            from healthscore_sandbox.faults import unit_hashes

            frame = getattr(self, f"_build_{obj}")(now)
            share, after = ARCHIVING[obj]
            picked = unit_hashes(frame["id"], self.world.spec.seed, f"archive:{obj}") < share
            # Fixed per record (from its creation), so a deletion never depends on the instant asked about.
            when = frame["created_ts"].to_numpy(dtype="int64") + after
            archived = picked & (when <= now)
            gone = frame[archived].copy()
            gone["archived_ts"] = when[archived]
            gone["updated_ts"] = gone["archived_ts"]
            gone["hs_lastmodifieddate"] = iso_millis(gone["archived_ts"].to_numpy())
            live = frame[~archived].reset_index(drop=True) if archived.any() else frame
            return live, gone.reset_index(drop=True)

        return self.cache.get(("split", obj, now, *self._fault_key()), build)  # type: ignore[return-value]

    # ---- shared as-of facts -------------------------------------------------------------
    def current_contracts(self, now: int) -> pd.DataFrame:
        """The latest contract term started at or before now, per account (index account_idx)."""
        contracts = self.world.contracts
        started = contracts[contracts["term_start_ts"] <= now]
        latest = started.sort_values(["account_idx", "term_start_ts"]).groupby("account_idx").tail(1)
        return latest.set_index("account_idx")

    def churned_at(self, now: int) -> pd.Series:
        """Churn time per churned account (only churns that happened by now)."""
        contracts = self.world.contracts
        churned = contracts[(contracts["outcome"] == "churned") & (contracts["term_end_ts"] <= now)]
        return churned.groupby("account_idx")["term_end_ts"].min()

    def _corrupt(self, obj: str, frame: pd.DataFrame, id_column: str) -> pd.Series:
        # pandas 3 infers a string dtype that turns None into NaN; vendors send null.
        for column in frame.columns:
            if pd.api.types.is_string_dtype(frame[column]):
                values = frame[column].astype(object)
                frame[column] = values.where(values.notna(), None)
        kinds = self.faults.bad_record_kinds(obj, frame[id_column])
        frame["_bad"] = kinds.to_numpy()
        return kinds

    # ---- HubSpot ------------------------------------------------------------------------
    def _build_companies(self, now: int) -> pd.DataFrame:
        accounts = self.world.accounts
        visible = accounts[accounts["created_ts"] <= now]
        idx = visible.index
        contract = self.current_contracts(now).reindex(idx)
        churned = self.churned_at(now).reindex(idx)
        changes = self.world.company_changes
        changes = changes[changes["ts"] <= now].groupby("account_idx")["ts"].max().reindex(idx)
        modified = changes.fillna(visible["created_ts"]).astype("int64")
        frame = pd.DataFrame(
            {
                "id": _strings(visible["hubspot_company_id"]),
                "created_ts": visible["created_ts"].to_numpy(),
                "updated_ts": modified.to_numpy(),
                "name": _strings(visible["name"]),
                "domain": _strings(visible["domain"]),
                "industry": _strings(visible["industry"]),
                "numberofemployees": _strings(visible["employees"]),
                "hubspot_owner_id": _strings(visible["owner_id"]),
                "lifecyclestage": np.where(churned.notna(), "other", "customer").astype(object),
                "twitterfollowers": _strings(visible["vanity_twitter_followers"]),
                "customer_segment": _strings(visible["segment"]),
                "plan_tier": _strings(visible["plan"]),
                "customer_status": np.where(churned.notna(), "churned", "active").astype(object),
                "licensed_seats": _strings(contract["seats"].fillna(visible["seats"]).astype("int64")),
                "arr": dollars(contract["mrr_cents"].fillna(0).astype("int64") * 12),
                "contract_renewal_date": np.array(
                    [None if pd.isna(t) else str(np.datetime64(int(t), "s").astype("datetime64[D]"))
                     for t in contract["term_end_ts"]],
                    dtype=object,
                ),
                "customer_since": iso_seconds(visible["created_ts"]),
                # Set by the Zendesk-HubSpot integration: joins support data to the CRM company.
                "zendesk_organization_id": _strings(visible["zendesk_organization_id"]),
                "stripe_customer_id": _strings(visible["stripe_customer_id"]),
            }
        )
        frame["createdate"] = iso_millis(frame["created_ts"])
        frame["hs_lastmodifieddate"] = iso_millis(frame["updated_ts"])
        frame["hs_object_id"] = frame["id"]
        kinds = self._corrupt("companies", frame, "id")
        frame.loc[kinds == "null", "name"] = None
        frame.loc[kinds == "out_of_range", "licensed_seats"] = "-5"
        frame.loc[kinds == "unknown_fk", "hubspot_owner_id"] = UNKNOWN_OWNER_ID
        hostile = self.hostile_company_names()
        if hostile:
            named = frame["id"].map(hostile)
            frame["name"] = named.where(named.notna(), frame["name"]).astype(object)
        return _by_numeric_id(frame)

    def hostile_company_names(self) -> dict[str, str]:
        """company id -> hostile name for the first ``hostile_names`` companies in id order (whenever visible)."""
        count = self.faults.config.hostile_names
        if not count:
            return {}
        ids = sorted(self._company_ids, key=int)[:count]
        return {cid: HOSTILE_NAMES[i % len(HOSTILE_NAMES)] for i, cid in enumerate(ids)}

    def _build_contacts(self, now: int) -> pd.DataFrame:
        contacts = self.world.contacts
        visible = contacts[contacts["created_ts"] <= now]
        left = (visible["left_ts"] >= 0) & (visible["left_ts"] <= now)
        updated = np.where(left, visible["left_ts"], visible["created_ts"])
        frame = pd.DataFrame(
            {
                "id": _strings(visible["contact_id"]),
                "created_ts": visible["created_ts"].to_numpy(),
                "updated_ts": updated,
                "firstname": _strings(visible["first_name"]),
                "lastname": _strings(visible["last_name"]),
                "email": _strings(visible["email"]),
                "jobtitle": _strings(visible["job_title"]),
                "department": _strings(visible["department"]),
                "customer_role": _strings(visible["role"]),
                "left_company": np.where(left, "true", "false").astype(object),
                "associatedcompanyid": self._company_ids.to_numpy()[visible["account_idx"].to_numpy()],
            }
        )
        frame["company_id"] = frame["associatedcompanyid"]
        frame["createdate"] = iso_millis(frame["created_ts"])
        frame["lastmodifieddate"] = iso_millis(frame["updated_ts"])
        frame["hs_object_id"] = frame["id"]
        kinds = self._corrupt("contacts", frame, "id")
        frame.loc[kinds.isin(["null", "out_of_range"]).to_numpy(), "email"] = None
        frame.loc[kinds == "unknown_fk", ["associatedcompanyid", "company_id"]] = UNKNOWN_COMPANY_ID
        return _by_numeric_id(frame)

    def _build_deals(self, now: int) -> pd.DataFrame:
        deals = self.world.deals
        visible = deals[deals["create_ts"] <= now]
        closed = visible["close_ts"] <= now
        sent_at = visible["close_ts"] - CONTRACT_SENT_BEFORE_CLOSE
        sent = ~closed & (sent_at <= now)
        stage = np.where(
            closed,
            np.where(visible["won"], "closedwon", "closedlost"),
            np.where(sent, "contractsent", "qualifiedtobuy"),
        )
        # A stage change is a modification (hs_lastmodifieddate moves), so an incremental reader sees it.
        updated = np.where(closed, visible["close_ts"], np.where(sent, np.maximum(sent_at, visible["create_ts"]),
                                                                  visible["create_ts"]))
        frame = pd.DataFrame(
            {
                "id": _strings(visible["deal_id"]),
                "created_ts": visible["create_ts"].to_numpy(),
                "updated_ts": updated,
                "dealname": _strings(visible["dealname"]),
                "amount": dollars(visible["amount_cents"]),
                "dealstage": stage.astype(object),
                "pipeline": "default",
                "dealtype": np.where(visible["dealtype"] == "newbusiness", "newbusiness", "existingbusiness").astype(object),
                "deal_category": _strings(visible["dealtype"]),
                "closedate": iso_millis(visible["close_ts"]),
                "company_id": self._company_ids.to_numpy()[visible["account_idx"].to_numpy()],
            }
        )
        frame["createdate"] = iso_millis(frame["created_ts"])
        frame["hs_lastmodifieddate"] = iso_millis(frame["updated_ts"])
        frame["hs_object_id"] = frame["id"]
        kinds = self._corrupt("deals", frame, "id")
        frame.loc[kinds == "null", "dealstage"] = None
        frame.loc[kinds == "out_of_range", "amount"] = "-500.00"
        frame.loc[kinds == "unknown_fk", "company_id"] = UNKNOWN_COMPANY_ID
        return _by_numeric_id(frame)

    def _build_meetings(self, now: int) -> pd.DataFrame:
        meetings = self.world.meetings
        visible = meetings[meetings["ts"] <= now]
        frame = pd.DataFrame(
            {
                "id": _strings(visible["meeting_id"]),
                "created_ts": visible["ts"].to_numpy(),
                "updated_ts": visible["ts"].to_numpy(),
                "hs_timestamp": iso_millis(visible["ts"]),
                "hs_meeting_title": _strings(visible["kind"]),
                "hs_activity_type": _strings(visible["kind"]),
                "hs_meeting_outcome": _strings(visible["outcome"]),
                "hubspot_owner_id": _strings(visible["owner_id"]),
                "company_id": self._company_ids.to_numpy()[visible["account_idx"].to_numpy()],
            }
        )
        frame["hs_createdate"] = iso_millis(frame["created_ts"])
        frame["hs_lastmodifieddate"] = iso_millis(frame["updated_ts"])
        frame["hs_object_id"] = frame["id"]
        kinds = self._corrupt("meetings", frame, "id")
        frame.loc[kinds.isin(["null", "out_of_range"]).to_numpy(), "hs_meeting_outcome"] = None
        frame.loc[kinds == "unknown_fk", "company_id"] = UNKNOWN_COMPANY_ID
        return _by_numeric_id(frame)

    # ---- Zendesk ------------------------------------------------------------------------
    def _build_tickets(self, now: int) -> pd.DataFrame:
        tickets = self.world.tickets
        t = tickets[tickets["created_ts"] <= now]
        created = t["created_ts"].to_numpy(dtype="int64")
        opened = created + t["first_reply_minutes"].to_numpy(dtype="int64") * 60
        solved_ts = t["solved_ts"].to_numpy(dtype="int64")
        solved = (solved_ts >= 0) & (solved_ts <= now)
        closed = solved & (solved_ts + TICKET_CLOSE_AFTER <= now)
        is_open = opened <= now
        status = np.where(closed, "closed", np.where(solved, "solved", np.where(is_open, "open", "new")))
        updated = np.where(
            closed, solved_ts + TICKET_CLOSE_AFTER, np.where(solved, solved_ts, np.where(is_open, opened, created))
        )
        ratings = self.world.satisfaction_ratings
        ratings = ratings[ratings["created_ts"] <= now].set_index("ticket_id")
        rating_score = ratings["score"].reindex(t["ticket_id"].to_numpy()).to_numpy(dtype=object)
        rating_id = ratings["rating_id"].reindex(t["ticket_id"].to_numpy()).to_numpy()
        # A rating is an update of the ticket too.
        rating_ts = ratings["created_ts"].reindex(t["ticket_id"].to_numpy()).fillna(-1).to_numpy(dtype="int64")
        updated = np.maximum(updated, rating_ts)
        sat = np.where(pd.isna(rating_score), np.where(solved, "offered", "unoffered"), rating_score)
        priority = t["priority"].to_numpy(dtype=object)
        priority = np.where(priority == "", None, priority)
        frame = pd.DataFrame(
            {
                "id": t["ticket_id"].to_numpy(dtype="int64"),
                "created_ts": created,
                "updated_ts": updated,
                "solved_ts": np.where(solved, solved_ts, -1),
                "status": status.astype(object),
                "priority": priority,
                "type": t["type"].to_numpy(dtype=object),
                "subject": t["subject"].to_numpy(dtype=object),
                "tags": t["tags"].to_numpy(dtype=object),
                "organization_id": self._org_ids.to_numpy()[t["account_idx"].to_numpy()],
                "requester_id": t["requester_contact_id"].astype("int64").to_numpy(),
                "satisfaction_score": sat.astype(object),
                "satisfaction_id": rating_id,
                "reopens": np.where(solved, t["reopens"].to_numpy(), 0),
                "replies": t["replies"].to_numpy(),
                "first_reply_minutes": np.where(is_open, t["first_reply_minutes"].to_numpy(), -1),
                "full_resolution_minutes": np.where(solved, t["full_resolution_minutes"].to_numpy(), -1),
            }
        )
        frame["organization_id"] = frame["organization_id"].astype(object)
        kinds = self._corrupt("tickets", frame, "id")
        frame.loc[kinds == "null", "status"] = None
        frame.loc[kinds == "out_of_range", "priority"] = "critical"
        frame.loc[kinds == "unknown_fk", "organization_id"] = UNKNOWN_ORGANIZATION_ID
        return frame.sort_values(["updated_ts", "id"]).reset_index(drop=True)

    def _build_satisfaction_ratings(self, now: int) -> pd.DataFrame:
        ratings = self.world.satisfaction_ratings
        visible = ratings[ratings["created_ts"] <= now]
        frame = pd.DataFrame(
            {
                "id": visible["rating_id"].to_numpy(dtype="int64"),
                "created_ts": visible["created_ts"].to_numpy(dtype="int64"),
                "ticket_id": visible["ticket_id"].to_numpy(dtype="int64").astype(object),
                "score": visible["score"].to_numpy(dtype=object),
                "comment": visible["comment"].to_numpy(dtype=object),
                "organization_id": self._org_ids.to_numpy()[visible["account_idx"].to_numpy()],
            }
        )
        kinds = self._corrupt("satisfaction_ratings", frame, "id")
        frame.loc[kinds == "null", "score"] = None
        frame.loc[kinds == "out_of_range", "score"] = "excellent"
        frame.loc[kinds == "unknown_fk", "ticket_id"] = UNKNOWN_ORGANIZATION_ID
        return frame.sort_values("id").reset_index(drop=True)

    # ---- Stripe -------------------------------------------------------------------------
    @staticmethod
    def _stripe_order(frame: pd.DataFrame) -> pd.DataFrame:
        """Stripe lists newest first."""
        return frame.sort_values(["created_ts", "id"], ascending=False).reset_index(drop=True)

    @property
    def stripe(self) -> StripeStates:
        """Stripe objects at per-record instants (lists and events share it); built on first use."""
        if self._stripe is None:
            self._stripe = StripeStates(self)
        return self._stripe

    def _build_customers(self, now: int) -> pd.DataFrame:
        visible = np.flatnonzero(self.world.accounts["created_ts"].to_numpy() <= now)
        return self._stripe_order(self.stripe.customers(visible, now))

    def _build_subscriptions(self, now: int) -> pd.DataFrame:
        visible = np.flatnonzero(self.world.accounts["created_ts"].to_numpy() <= now)
        return self._stripe_order(self.stripe.subscriptions(visible, now))

    def _build_invoices(self, now: int) -> pd.DataFrame:
        visible = np.flatnonzero(self.world.invoices["created_ts"].to_numpy() <= now)
        return self._stripe_order(self.stripe.invoices(visible, now))

    def stripe_events(self, now: int) -> StripeEvents:
        """The events Stripe lists at ``now`` (its 30-day retention), newest first; cached like a view."""
        return self.cache.get(("stripe_events", now, *self._fault_key()),  # type: ignore[return-value]
                              lambda: self.stripe.events(now))
