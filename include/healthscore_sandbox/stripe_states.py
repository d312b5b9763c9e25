"""Stripe objects as they stood at any instant, and the events Stripe emitted as they changed.

The world stores timestamps, not states. ``StripeStates`` evaluates a customer, subscription or invoice at
a per-record instant (vectorized: one instant per row), so the list views (every record at one "now") and
the Events API (each record at the instant of its change) are the same code and cannot disagree.

Events: a record changes only at instants the world names (creation, a contract term starting, a churn,
an invoice's payment attempts, payment, write-off, an account going past due or back, a subscription's
monthly period rolling over). ``events`` evaluates every record at each such instant inside Stripe's 30-day
retention and keeps those where its served fields changed; each becomes one event (two for a new invoice:
``invoice.created`` and ``invoice.finalized``). An event's id hashes (record, instant, type), so it is the
same whatever "now" asks, and nothing after "now" is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from healthscore_sandbox.world_billing import PAYMENT_ATTEMPT_OFFSETS

if TYPE_CHECKING:
    from healthscore_sandbox.views import VendorViews

DAY = 86_400
PERIOD = 30 * DAY  # the subscription's billing period in the sandbox
RETENTION = 30 * DAY  # Stripe keeps events 30 days
WRITE_OFF_AFTER_DUE = 90 * DAY + 1  # marked uncollectible 90 days past due, unless paid first
BIG = 1 << 34  # composite key account * BIG + ts (ts < 2**33)
NEVER = 1 << 33
ALPHABET = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))


def _strings(series: pd.Series | np.ndarray) -> np.ndarray:
    return pd.Series(series).astype(str).to_numpy(dtype=object)


def _last_at_or_before(keys: np.ndarray, owners: np.ndarray, owner: np.ndarray, at: np.ndarray) -> tuple:
    """Position of the last ``keys`` entry (sorted owner*BIG+ts) of ``owner`` at or before ``at``, and validity."""
    pos = np.searchsorted(keys, owner * BIG + at, side="right") - 1
    safe = np.maximum(pos, 0)
    valid = (pos >= 0) & (owners[safe] == owner) if len(keys) else np.zeros(len(owner), dtype=bool)
    return safe, valid


class StripeStates:
    """Vectorized states of the Stripe objects at per-row instants (what the vendor served then)."""

    def __init__(self, views: VendorViews) -> None:
        self.views = views
        world = views.world
        accounts = world.accounts
        self.acc_created = accounts["created_ts"].to_numpy(dtype="int64")
        self.acc_seats = accounts["seats"].to_numpy(dtype="int64")
        self.customer_ids = _strings(accounts["stripe_customer_id"])
        self.company_ids = _strings(accounts["hubspot_company_id"])
        self.plans = _strings(accounts["plan"])
        self.names = _strings(accounts["name"])
        self.emails = ("billing@" + accounts["domain"].astype(str)).to_numpy(dtype=object)
        self.sub_ids = np.array(["sub_" + c[4:] for c in self.customer_ids], dtype=object)

        ct = world.contracts
        c_acc = ct["account_idx"].to_numpy(dtype="int64")
        c_start = ct["term_start_ts"].to_numpy(dtype="int64")
        order = np.lexsort((np.arange(len(ct)), c_start, c_acc))  # ties: the later row wins, as before
        self.c_acc, self.c_start = c_acc[order], c_start[order]
        self.c_key = self.c_acc * BIG + self.c_start
        self.c_end = ct["term_end_ts"].to_numpy(dtype="int64")[order]
        self.c_seats = ct["seats"].to_numpy(dtype="int64")[order]
        self.c_mrr = ct["mrr_cents"].to_numpy(dtype="int64")[order]
        churned = (ct["outcome"] == "churned").to_numpy()
        churn = pd.Series(ct["term_end_ts"].to_numpy(dtype="int64")[churned]).groupby(c_acc[churned]).min()
        self.churn = np.full(len(accounts), -1, dtype="int64")
        self.churn[churn.index.to_numpy(dtype="int64")] = churn.to_numpy()

        # Past due: an invoice is overdue at t when due < t < paid (or never paid); an account is past due
        # while any of its invoices is. Kept as the account's state after each change of its overdue count.
        inv = world.invoices
        i_acc = inv["account_idx"].to_numpy(dtype="int64")
        start = inv["due_ts"].to_numpy(dtype="int64") + 1
        paid = inv["paid_ts"].to_numpy(dtype="int64")
        end = np.where(paid >= 0, paid, NEVER)
        keep = end > start
        keys = np.r_[i_acc[keep] * BIG + start[keep], i_acc[keep] * BIG + end[keep]]
        deltas = np.r_[np.ones(int(keep.sum()), dtype="int64"), -np.ones(int(keep.sum()), dtype="int64")]
        summed = pd.Series(deltas).groupby(keys).sum()
        self.pd_key = summed.index.to_numpy(dtype="int64")
        self.pd_acc = self.pd_key // BIG
        count = pd.Series(summed.to_numpy()).groupby(self.pd_acc).cumsum().to_numpy()
        self.pd_state = count > 0
        before = np.r_[False, self.pd_state[:-1]]
        before[np.r_[True, self.pd_acc[1:] != self.pd_acc[:-1]]] = False
        changed = self.pd_state != before
        self.pd_change_acc, self.pd_change_ts = self.pd_acc[changed], self.pd_key[changed] % BIG

    # ---- shared facts ---------------------------------------------------------------------------------------
    def past_due(self, acc: np.ndarray, at: np.ndarray) -> np.ndarray:
        pos, valid = _last_at_or_before(self.pd_key, self.pd_acc, acc, at)
        return valid & self.pd_state[pos] if len(self.pd_key) else valid

    # ---- objects ---------------------------------------------------------------------------------------------
    def customers(self, acc: np.ndarray, at: np.ndarray | int) -> pd.DataFrame:
        acc = np.asarray(acc, dtype="int64")
        at = np.broadcast_to(np.asarray(at, dtype="int64"), acc.shape)
        frame = pd.DataFrame({
            "id": self.customer_ids[acc], "created_ts": self.acc_created[acc], "name": self.names[acc],
            "email": self.emails[acc], "hubspot_company_id": self.company_ids[acc],
            "delinquent": self.past_due(acc, at),
        })
        from healthscore_sandbox.views import UNKNOWN_COMPANY_ID

        kinds = self.views._corrupt("customers", frame, "id")
        frame.loc[kinds.isin(["null", "out_of_range"]).to_numpy(), "email"] = None
        frame.loc[kinds == "unknown_fk", "hubspot_company_id"] = UNKNOWN_COMPANY_ID
        return frame

    def subscriptions(self, acc: np.ndarray, at: np.ndarray | int) -> pd.DataFrame:
        acc = np.asarray(acc, dtype="int64")
        at = np.broadcast_to(np.asarray(at, dtype="int64"), acc.shape)
        pos, valid = _last_at_or_before(self.c_key, self.c_acc, acc, at)
        created = self.acc_created[acc]
        seats = np.where(valid, self.c_seats[pos], self.acc_seats[acc]) if len(self.c_key) else self.acc_seats[acc]
        mrr = np.where(valid, self.c_mrr[pos], 0)
        term_start = np.where(valid, self.c_start[pos], created)
        term_end = np.where(valid, self.c_end[pos], -1)
        churn = self.churn[acc]
        churned = (churn >= 0) & (churn <= at)
        status = np.where(churned, "canceled", np.where(self.past_due(acc, at), "past_due", "active"))
        # Monthly billing periods inside the term; a canceled subscription's period stops at its cancellation.
        ref = np.where(churned, churn, at)
        months = np.maximum(0, (ref - term_start) // PERIOD)
        period_start = np.minimum(term_start + months * PERIOD, ref)
        frame = pd.DataFrame({
            "id": self.sub_ids[acc], "created_ts": created, "customer": self.customer_ids[acc],
            "status": status.astype(object), "quantity": seats,
            "unit_amount": np.where(seats > 0, mrr // np.maximum(seats, 1), 0), "plan": self.plans[acc],
            "current_period_start": period_start, "current_period_end": period_start + PERIOD,
            "term_end_ts": term_end, "canceled_at": np.where(churned, churn, -1),
            "hubspot_company_id": self.company_ids[acc],
        })
        from healthscore_sandbox.views import UNKNOWN_CUSTOMER_ID

        kinds = self.views._corrupt("subscriptions", frame, "id")
        frame.loc[kinds == "null", "status"] = None
        frame.loc[kinds == "out_of_range", "quantity"] = -3
        frame.loc[kinds == "unknown_fk", "customer"] = UNKNOWN_CUSTOMER_ID
        return frame

    def invoices(self, rows: np.ndarray, at: np.ndarray | int) -> pd.DataFrame:
        """Invoices (world rows) at per-row instants: status, amounts, attempts as they stood then."""
        inv = self.views.world.invoices
        rows = np.asarray(rows, dtype="int64")
        at = np.broadcast_to(np.asarray(at, dtype="int64"), rows.shape)
        created = inv["created_ts"].to_numpy(dtype="int64")[rows]
        paid_ts = inv["paid_ts"].to_numpy(dtype="int64")[rows]
        paid = (paid_ts >= 0) & (paid_ts <= at)
        due = inv["due_ts"].to_numpy(dtype="int64")[rows]
        written_off = due + WRITE_OFF_AFTER_DUE
        uncollectible = ~paid & (written_off <= at)
        status = np.where(paid, "paid", np.where(uncollectible, "uncollectible", "open"))
        marked = np.where((written_off <= at) & (~paid | (paid_ts >= written_off)), written_off, -1)
        amount = inv["amount_due_cents"].to_numpy(dtype="int64")[rows]
        # The world keeps each invoice's final attempt count; attempts happen on a fixed schedule.
        final_attempts = inv["attempt_count"].to_numpy(dtype="int64")[rows]
        method = inv["collection_method"].astype(str).to_numpy(dtype=object)[rows]
        automatic = method == "charge_automatically"
        made = (created[:, None] + PAYMENT_ATTEMPT_OFFSETS[None, :]) <= at[:, None]
        scheduled = np.arange(len(PAYMENT_ATTEMPT_OFFSETS))[None, :] < final_attempts[:, None]
        attempts = np.where(automatic, (made & scheduled).sum(axis=1), paid.astype("int64"))
        retry = automatic & ~paid & ~uncollectible & (attempts < len(PAYMENT_ATTEMPT_OFFSETS))
        next_attempt = np.where(retry, created + PAYMENT_ATTEMPT_OFFSETS[np.minimum(attempts, 3)], -1)
        ids = inv["invoice_id"].astype(str).to_numpy(dtype=object)[rows]
        customers = inv["stripe_customer_id"].astype(str).to_numpy(dtype=object)[rows]
        frame = pd.DataFrame({
            "id": ids, "created_ts": created, "customer": customers,
            "subscription": np.array(["sub_" + c[4:] for c in customers], dtype=object),
            "status": status.astype(object), "amount_due": amount, "amount_paid": np.where(paid, amount, 0),
            "due_date": due, "period_start": created,
            "period_end": inv["period_end_ts"].to_numpy(dtype="int64")[rows],
            "paid_at": np.where(paid, paid_ts, -1), "marked_uncollectible_at": marked,
            "attempt_count": attempts.astype("int64"), "next_payment_attempt": next_attempt.astype("int64"),
            "collection_method": method,
            "number": np.array([i[3:11].upper() + "-0001" for i in ids], dtype=object),
        })
        from healthscore_sandbox.views import UNKNOWN_CUSTOMER_ID

        kinds = self.views._corrupt("invoices", frame, "id")
        frame.loc[kinds == "null", "status"] = None
        frame.loc[kinds == "out_of_range", "amount_due"] = -100
        frame.loc[kinds == "unknown_fk", "customer"] = UNKNOWN_CUSTOMER_ID
        return frame

    # ---- events ----------------------------------------------------------------------------------------------
    def events(self, now: int) -> StripeEvents:
        """Every event Stripe still keeps at ``now`` (created in the 30 days up to it), newest first."""
        since = now - RETENTION
        parts = [self._customer_events(since, now), self._subscription_events(since, now),
                 self._invoice_events(since, now)]
        return StripeEvents.combine(parts)

    def _customer_events(self, since: int, now: int) -> _Changes:
        acc = np.arange(len(self.acc_created))
        pick = (self.pd_change_ts > since) & (self.pd_change_ts <= now)
        cand = (np.r_[acc, self.pd_change_acc[pick]], np.r_[self.acc_created, self.pd_change_ts[pick]])
        changes = _changes("customers", cand, self.acc_created, since, now, self.customers)
        changes.types = np.where(changes.is_created, "customer.created", "customer.updated").astype(object)
        return changes

    def _subscription_events(self, since: int, now: int) -> _Changes:
        n = len(self.acc_created)
        acc, ts = [np.arange(n), self.c_acc, self.pd_change_acc], [self.acc_created, self.c_start, self.pd_change_ts]
        churned = self.churn >= 0
        acc.append(np.flatnonzero(churned))
        ts.append(self.churn[churned])
        # Period rollovers in the window: term_start + k * PERIOD, of every contract and of no contract yet.
        for owner, start in ((self.c_acc, self.c_start), (np.arange(n), self.acc_created)):
            last = (now - start) // PERIOD
            for back in range(RETENTION // PERIOD + 1):
                k = last - back
                ok = k >= 1
                acc.append(owner[ok])
                ts.append(start[ok] + k[ok] * PERIOD)
        cand = (np.concatenate(acc), np.concatenate(ts))
        changes = _changes("subscriptions", cand, self.acc_created, since, now, self.subscriptions)
        status = changes.states["status"].to_numpy(dtype=object)
        prev_status = np.where(changes.prev >= 0, changes.states["status"].to_numpy(dtype=object)[changes.prev], None)
        deleted = (status[changes.rows] == "canceled") & (prev_status[changes.rows] != "canceled")
        changes.types = np.where(changes.is_created, "customer.subscription.created",
                                 np.where(deleted, "customer.subscription.deleted",
                                          "customer.subscription.updated")).astype(object)
        return changes

    def _invoice_events(self, since: int, now: int) -> _Changes:
        inv = self.views.world.invoices
        created = inv["created_ts"].to_numpy(dtype="int64")
        paid = inv["paid_ts"].to_numpy(dtype="int64")
        written_off = inv["due_ts"].to_numpy(dtype="int64") + WRITE_OFF_AFTER_DUE
        last_attempt = int(PAYMENT_ATTEMPT_OFFSETS[-1])
        live = (created <= now) & ((created > since - last_attempt) | ((paid > since) & (paid <= now))
                                   | ((written_off > since) & (written_off <= now)))
        rows = np.flatnonzero(live)
        c = created[rows]
        cand_rows = [rows, rows[paid[rows] >= 0], rows]
        cand_ts = [c, paid[rows][paid[rows] >= 0], written_off[rows]]
        for offset in PAYMENT_ATTEMPT_OFFSETS:
            cand_rows.append(rows)
            cand_ts.append(c + int(offset))
        cand = (np.concatenate(cand_rows), np.concatenate(cand_ts))
        changes = _changes("invoices", cand, created, since, now, self.invoices)
        states = changes.states
        status = states["status"].to_numpy(dtype=object)
        attempts = states["attempt_count"].to_numpy(dtype="int64")
        prev = np.maximum(changes.prev, 0)
        at = changes.ts
        became = lambda s: (status[changes.rows] == s) & (status[prev[changes.rows]] != s)  # noqa: E731
        attempted = (attempts[changes.rows] > attempts[prev[changes.rows]]) & (status[changes.rows] == "open")
        world_row = changes.objects
        paid_soon = (paid[world_row] >= 0) & (paid[world_row] - at < DAY)  # the attempt that succeeded
        types = np.where(became("paid"), "invoice.paid",
                         np.where(became("uncollectible"), "invoice.marked_uncollectible",
                                  np.where(attempted & ~paid_soon, "invoice.payment_failed", "invoice.updated")))
        types = np.where(changes.is_created, "invoice.created", types).astype(object)
        # A new invoice is finalized at once (no drafts in this world): invoice.created, then invoice.finalized.
        finalized = changes.subset(changes.is_created)
        finalized.types = np.full(len(finalized.ts), "invoice.finalized", dtype=object)
        changes.types = types
        return _Changes.concat(changes, finalized)


@dataclass
class _Changes:
    """The events of one kind: per event its object (world key), instant, state row and previous state row."""

    kind: str
    states: pd.DataFrame  # every evaluated state (the baselines and the candidates), by row
    rows: np.ndarray  # event -> its state row
    prev: np.ndarray  # state row -> the previous state row of the same object (-1: none)
    objects: np.ndarray  # event -> world key (account index or invoice row)
    ts: np.ndarray
    is_created: np.ndarray
    types: np.ndarray | None = None

    def subset(self, mask: np.ndarray) -> _Changes:
        return _Changes(self.kind, self.states, self.rows[mask], self.prev, self.objects[mask], self.ts[mask],
                        self.is_created[mask])

    @staticmethod
    def concat(a: _Changes, b: _Changes) -> _Changes:
        return _Changes(a.kind, a.states, np.r_[a.rows, b.rows], a.prev, np.r_[a.objects, b.objects],
                        np.r_[a.ts, b.ts], np.r_[a.is_created, b.is_created], np.r_[a.types, b.types])


def _changes(kind: str, cand: tuple[np.ndarray, np.ndarray], created: np.ndarray, since: int, now: int,
             state) -> _Changes:
    """Evaluate objects at their candidate instants in (since, now], after a baseline at ``since`` for those
    that existed then; an instant where the served fields differ from the previous state is an event."""
    obj, ts = cand
    obj, ts = np.asarray(obj, dtype="int64"), np.asarray(ts, dtype="int64")
    keep = (ts > since) & (ts <= now) & (ts >= created[obj])
    obj, ts = obj[keep], ts[keep]
    key = np.unique(obj * BIG + ts)
    obj, ts = key // BIG, key % BIG
    touched = np.unique(obj)
    base = touched[created[touched] <= since]
    all_obj = np.r_[base, obj]
    all_ts = np.r_[np.full(len(base), since, dtype="int64"), ts]
    order = np.lexsort((all_ts, all_obj))
    all_obj, all_ts = all_obj[order], all_ts[order]
    is_base = np.r_[np.ones(len(base), dtype=bool), np.zeros(len(obj), dtype=bool)][order]
    states = state(all_obj, all_ts).reset_index(drop=True)
    n = len(states)
    first = np.r_[True, all_obj[1:] != all_obj[:-1]] if n else np.zeros(0, dtype=bool)
    differs = np.zeros(n, dtype=bool)
    for column in states.columns:
        values = states[column].to_numpy()
        if n > 1:
            differs[1:] |= values[1:] != values[:-1]
    prev = np.where(first, -1, np.arange(n) - 1)
    is_created = first & ~is_base
    event = ~is_base & (is_created | (differs & ~first))
    rows = np.flatnonzero(event)
    return _Changes(kind, states, rows, prev, all_obj[rows], all_ts[rows], is_created[rows])


def event_ids(objects: np.ndarray, ts: np.ndarray, types: np.ndarray) -> np.ndarray:
    """``evt_`` + 22 base62 characters hashed from (object id, instant, type): stable whatever "now" is."""
    text = pd.Series(objects.astype(str)) + "|" + pd.Series(ts.astype(str)) + "|" + pd.Series(types.astype(str))
    chars = []
    for salt in ("stripe-event-a", "stripe-event-b"):
        h = pd.util.hash_pandas_object(text, index=False, hash_key=salt.ljust(16, "0")[:16]).to_numpy()
        digits = np.empty((len(h), 11), dtype="int64")
        for j in range(11):
            digits[:, j] = (h % np.uint64(62)).astype("int64")
            h = h // np.uint64(62)
        chars.append(ALPHABET[digits])
    grid = np.concatenate(chars, axis=1) if len(text) else np.empty((0, 22), dtype="<U1")
    return np.array(["evt_" + "".join(row) for row in grid], dtype=object)


@dataclass
class StripeEvents:
    """The events listed at one "now", newest first: a frame (id, created_ts, type, kind, state row)."""

    frame: pd.DataFrame
    states: dict[str, tuple[pd.DataFrame, np.ndarray]]  # kind -> (states, previous state row)

    @classmethod
    def combine(cls, parts: list[_Changes]) -> StripeEvents:
        frames, states = [], {}
        for part in parts:
            states[part.kind] = (part.states, part.prev)
            ids = part.states["id"].to_numpy(dtype=object)[part.rows]
            frames.append(pd.DataFrame({
                "id": event_ids(ids, part.ts, part.types), "created_ts": part.ts, "type": part.types,
                "kind": part.kind, "state": part.rows,
            }))
        frame = pd.concat(frames, ignore_index=True)
        frame = frame.sort_values(["created_ts", "id"], ascending=False, kind="stable").reset_index(drop=True)
        return cls(frame, states)

    def state_records(self, kind: str, row: int) -> tuple[dict, dict | None]:
        """The object's state at the event (row) and just before it (None for a creation)."""
        frame, prev = self.states[kind]
        before = int(prev[row])
        picked = frame.iloc[[row] + ([before] if before >= 0 else [])].to_dict("records")
        return picked[0], (picked[1] if len(picked) > 1 else None)
