"""Vendor-visible records derived from the latent world: contacts, tickets, ratings, meetings, deals, invoices.

Why separate: world.py owns the hidden state (latent health, shocks, renewal outcomes); this module turns it into
noisy, lagged observables. Every generator is vectorised over accounts/records and seeded by its own stream, so
adding a column to one table never changes another.

Zendesk tickets and ratings are generated in ``world_support``, Stripe invoices in ``world_billing``;
this module holds the shared ``Context``, the helpers and the CRM records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from healthscore_sandbox import world_text
from healthscore_sandbox.world_text import str_series

DAY = 86_400
YEAR = 365 * DAY
STREAM_TICKETS, STREAM_RATINGS, STREAM_MEETINGS, STREAM_CONTACTS, STREAM_DEALS, STREAM_INVOICES = (
    4,
    5,
    6,
    7,
    8,
    9,
)

CONTACT_ROLES = ("admin", "champion", "executive_sponsor", "user")
MEETING_KINDS = ("QBR", "Check-in", "Training")
MEETING_OUTCOMES = ("COMPLETED", "NO_SHOW", "CANCELED")


@dataclass
class Context:
    """Shared inputs of the record generators (built once per world)."""

    spec: object
    start_ts: int
    end_ts: int
    accounts: pd.DataFrame
    extra: dict
    latent: np.ndarray
    shocks: pd.DataFrame
    contracts: pd.DataFrame
    churn_ts: np.ndarray
    active_end: np.ndarray
    contacts: pd.DataFrame | None = None

    def rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.spec.seed, stream])

    def h_at(self, acc: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Latent health at the end of the day before ts (clipped to the horizon)."""
        day = np.clip((np.asarray(ts) - self.start_ts) // DAY - 1, 0, self.latent.shape[1] - 1)
        return self.latent[acc, day].astype(np.float64)


def _rows_for_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner index, position within owner) for each exploded row."""
    owner = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) - np.repeat(starts, counts)


def _pick(rng: np.random.Generator, table: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """Categorical draw per row from table[cat[row]] (memory O(rows), not O(rows x choices))."""
    u = rng.random(len(cat))
    out = np.zeros(len(cat), dtype=np.int64)
    cum = np.cumsum(table, axis=1)
    for c in range(len(table)):
        rows = np.flatnonzero(cat == c)
        out[rows] = np.searchsorted(cum[c], u[rows], side="right").clip(0, table.shape[1] - 1)
    return out


def _day_time(rng: np.random.Generator, ts: np.ndarray, lo_h: float = 13.0, hi_h: float = 21.0) -> np.ndarray:
    """Move ts to a business-hours moment (UTC) of its day."""
    return (ts // DAY) * DAY + rng.integers(int(lo_h * 3600), int(hi_h * 3600), len(ts))


def _last_shock_before(
    shocks: pd.DataFrame, kind: str, acc: np.ndarray, ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(ts, magnitude) of the latest shock of a kind at or before ts per row; (-1, 0) if none."""
    s = shocks[shocks["kind"] == kind]
    if len(s) == 0:
        return np.full(len(acc), -1, dtype=np.int64), np.zeros(len(acc))
    s_acc, s_ts, s_mag = s["account_idx"].to_numpy(), s["ts"].to_numpy(), s["magnitude"].to_numpy()
    order = np.lexsort((s_ts, s_acc))
    key = s_acc[order] * (1 << 33) + s_ts[order]
    pos = np.searchsorted(key, acc * (1 << 33) + ts, side="right") - 1
    ok = pos >= 0
    pos_c = np.clip(pos, 0, len(order) - 1)
    ok &= s_acc[order][pos_c] == acc
    return np.where(ok, s_ts[order][pos_c], -1), np.where(ok, s_mag[order][pos_c], 0.0)


def seat_lookup(contracts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (account, term_start) keys for fast 'seats at ts' queries."""
    acc = contracts["account_idx"].to_numpy()
    start = contracts["term_start_ts"].to_numpy()
    order = np.lexsort((start, acc))
    return (
        acc[order] * (1 << 33) + start[order],
        acc[order],
        contracts["term_end_ts"].to_numpy()[order],
        contracts["seats"].to_numpy()[order],
    )


def seats_at(lookup: tuple[np.ndarray, ...], acc: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Licensed seats of each account at ts (0 when no contract covers ts)."""
    keys, c_acc, c_end, c_seats = lookup
    pos = np.searchsorted(keys, acc * (1 << 33) + ts, side="right") - 1
    pos_c = np.clip(pos, 0, len(keys) - 1)
    ok = (pos >= 0) & (c_acc[pos_c] == acc) & (c_end[pos_c] > ts)
    return np.where(ok, c_seats[pos_c], 0)


# --------------------------------------------------------------------------------------------------------------
# contacts


def make_contacts(ctx: Context) -> tuple[pd.DataFrame, pd.Series]:
    """Admin, champion, optional executive sponsor and users per account; champion_left shocks replace champions."""
    rng = ctx.rng(STREAM_CONTACTS)
    seg = ctx.extra["seg"]
    n = len(seg)
    created_acc = ctx.accounts["created_ts"].to_numpy()
    has_sponsor = (seg < 2) | (rng.random(n) < 0.4)
    n_users = np.select(
        [seg == 0, seg == 1], [5 + rng.poisson(8, n), 2 + rng.poisson(4, n)], 1 + rng.poisson(1.5, n)
    )
    counts = 2 + has_sponsor.astype(np.int64) + n_users
    acc, pos = _rows_for_counts(counts)
    role = np.where(pos == 0, 0, np.where(pos == 1, 1, np.where((pos == 2) & has_sponsor[acc], 2, 3)))
    c0 = created_acc[acc]
    created = np.where(role == 0, c0, c0 + rng.integers(0, 2 * 3600, len(acc)))
    limit = np.minimum(ctx.active_end[acc], ctx.end_ts) - DAY
    span_hi = np.where(c0 < ctx.start_ts, ctx.start_ts + 180 * DAY, c0 + 90 * DAY)
    hi = np.maximum(np.minimum(span_hi, limit), c0 + 1)
    user_created = c0 + (rng.random(len(acc)) * (hi - c0)).astype(np.int64)
    created = np.where(role == 3, user_created, created)
    leave = created + (rng.exponential(12.5, len(acc)) * YEAR).astype(np.int64)
    left = np.where((role == 3) & (leave < np.minimum(ctx.active_end[acc], ctx.end_ts)), leave, -1)

    # champion chain from champion_left shocks
    ch = ctx.shocks[ctx.shocks["kind"] == "champion_left"].sort_values(["account_idx", "ts"], kind="stable")
    ch_acc = ch["account_idx"].to_numpy()
    ch_ts = ch["ts"].to_numpy()
    ch_repl = ch["replacement_ts"].to_numpy()
    rank = ch.groupby("account_idx").cumcount().to_numpy()
    starts = np.cumsum(counts) - counts
    first = rank == 0
    left[starts[ch_acc[first]] + 1] = ch_ts[first]  # original champion leaves at the first shock
    # next shock of the same account (if any) ends the replacement's tenure
    nxt_same = np.zeros(len(ch_acc), dtype=bool)
    nxt_same[:-1] = ch_acc[1:] == ch_acc[:-1]
    nxt_ts = np.where(nxt_same, np.append(ch_ts[1:], -1), -1)
    ok = (ch_repl >= 0) & (ch_repl < np.minimum(ctx.active_end[ch_acc], ctx.end_ts))
    r_acc = ch_acc[ok]
    r_created = ch_repl[ok]
    r_left = nxt_ts[ok]

    acc_all = np.concatenate([acc, r_acc])
    role_all = np.concatenate([role, np.full(len(r_acc), 1)])
    created_all = np.concatenate([created, r_created]).astype(np.int64)
    left_all = np.concatenate([left, r_left]).astype(np.int64)
    order = np.lexsort((role_all, created_all, acc_all))
    acc_all, role_all, created_all, left_all = (
        acc_all[order],
        role_all[order],
        created_all[order],
        left_all[order],
    )
    m = len(acc_all)

    n_first, n_last = len(world_text.FIRST_NAMES), len(world_text.LAST_NAMES)
    fi = rng.integers(0, n_first, m)
    li = rng.integers(0, n_last, m)
    # duplicate first.last within an account gets a numeric suffix (rank within equal keys)
    key = (acc_all * n_first + fi) * n_last + li
    ko = np.argsort(key, kind="stable")
    ks = key[ko]
    run_start = np.r_[True, ks[1:] != ks[:-1]]
    first_of_run = np.maximum.accumulate(np.where(run_start, np.arange(m), 0))
    dup = np.empty(m, dtype=np.int64)
    dup[ko] = np.arange(m) - first_of_run
    fslug = pa.array([world_text.slug(x) for x in world_text.FIRST_NAMES])
    lslug = pa.array([world_text.slug(x) for x in world_text.LAST_NAMES])
    suffix = pc.if_else(pa.array(dup > 0), world_text.int_strings(dup + 1), pa.scalar(""))
    domains = world_text.take_strings(
        pa.array(ctx.accounts["domain"].to_numpy(dtype=object), pa.string()), acc_all
    )
    emails = pc.binary_join_element_wise(
        world_text.take_strings(fslug, fi),
        pa.scalar("."),
        world_text.take_strings(lslug, li),
        suffix,
        pa.scalar("@"),
        domains,
        "",
    )
    title_vocab, dept_vocab, role_off, role_len = [], [], [], []
    for rname in CONTACT_ROLES:
        opts = world_text.TITLES_BY_ROLE[rname]
        role_off.append(len(title_vocab))
        role_len.append(len(opts))
        title_vocab.extend(t for t, _ in opts)
        dept_vocab.extend(d for _, d in opts)
    tcode = np.array(role_off)[role_all] + (rng.random(m) * np.array(role_len)[role_all]).astype(np.int64)
    contact_ids = world_text.int_strings(30_000_001 + 2 * np.arange(m, dtype=np.int64))
    contacts = pd.DataFrame(
        copy=False,
        data={
            "contact_id": str_series(contact_ids),
            "account_idx": acc_all.astype(np.int64),
            "first_name": str_series(world_text.choose_strings(world_text.FIRST_NAMES, fi)),
            "last_name": str_series(world_text.choose_strings(world_text.LAST_NAMES, li)),
            "email": str_series(emails),
            "job_title": str_series(world_text.choose_strings(tuple(title_vocab), tcode)),
            "department": str_series(world_text.choose_strings(tuple(dept_vocab), tcode)),
            "role": str_series(world_text.choose_strings(CONTACT_ROLES, role_all)),
            "created_ts": created_all,
            "left_ts": left_all,
        },
    )
    sponsor_ids = pd.Series([None] * n, dtype=object)
    sp = np.flatnonzero(role_all == 2)
    sponsor_ids.iloc[acc_all[sp]] = contacts["contact_id"].to_numpy(dtype=object)[sp]
    return contacts, sponsor_ids


def _requesters(ctx: Context, rng: np.random.Generator, acc: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """A contact of the account that exists at ts (the admin as fallback, who is there from signup)."""
    c = ctx.contacts
    c_acc = c["account_idx"].to_numpy()
    c_created = c["created_ts"].to_numpy()
    c_left = c["left_ts"].to_numpy()
    n = len(ctx.accounts)
    off = np.searchsorted(c_acc, np.arange(n))
    cnt = np.diff(np.append(off, len(c_acc)))
    admin_rows = np.flatnonzero(c["role"].to_numpy(dtype=object) == "admin")
    admin_of = np.zeros(n, dtype=np.int64)
    admin_of[c_acc[admin_rows]] = admin_rows
    chosen = admin_of[acc].copy()
    todo = np.ones(len(acc), dtype=bool)
    for _ in range(4):
        pick = off[acc] + (rng.random(len(acc)) * cnt[acc]).astype(np.int64)
        valid = todo & (c_created[pick] <= ts) & ((c_left[pick] == -1) | (c_left[pick] > ts))
        chosen[valid] = pick[valid]
        todo &= ~valid
    return chosen


# --------------------------------------------------------------------------------------------------------------
# meetings


def make_meetings(ctx: Context) -> pd.DataFrame:
    """QBRs (quarterly, enterprise/mid-market), check-ins by segment, trainings in onboarding/after champion change."""
    rng = ctx.rng(STREAM_MEETINGS)
    seg = ctx.extra["seg"]
    n = len(seg)
    created = ctx.accounts["created_ts"].to_numpy()
    lo = np.maximum(created, ctx.start_ts)
    hi = np.minimum(ctx.active_end, ctx.end_ts)
    live = np.maximum(hi - lo, 0)
    acc_l, ts_l, kind_l = [], [], []

    # QBRs every 91 days from a per-account phase
    q = seg <= 1
    first = created + rng.integers(30, 121, n) * DAY
    period = 91 * DAY
    k_lo = np.maximum(0, -((first - lo) // period))
    k_hi = (hi - 1 - first) // period
    cnt = np.where(q & (hi > lo), np.maximum(0, k_hi - k_lo + 1), 0)
    a, j = _rows_for_counts(cnt)
    ts = first[a] + (k_lo[a] + j) * period + rng.integers(-7, 8, len(a)) * DAY
    acc_l.append(a)
    ts_l.append(ts)
    kind_l.append(np.zeros(len(a), dtype=np.int64))

    # check-ins: Poisson over the live span
    rate = np.array([1 / 14, 1 / 30, 1 / 75])[seg]
    cnt = rng.poisson(rate * live / DAY)
    a, _ = _rows_for_counts(cnt)
    acc_l.append(a)
    ts_l.append(lo[a] + (rng.random(len(a)) * live[a]).astype(np.int64))
    kind_l.append(np.ones(len(a), dtype=np.int64))

    # trainings: onboarding burst, background rate, and after a new champion arrives
    onb = ctx.extra["onboarding"]
    cnt = np.where(onb & (hi > lo), 1 + rng.poisson(2, n), 0)
    a, _ = _rows_for_counts(cnt)
    ts_onb = created[a] + rng.integers(2, 61, len(a)) * DAY
    cnt2 = rng.poisson(live / DAY / 180.0)
    a2, _ = _rows_for_counts(cnt2)
    ts_bg = lo[a2] + (rng.random(len(a2)) * live[a2]).astype(np.int64)
    c = ctx.contacts
    newch = (c["role"] == "champion").to_numpy() & (
        c["created_ts"].to_numpy() > created[c["account_idx"].to_numpy()] + DAY
    )
    a3 = c["account_idx"].to_numpy()[newch]
    keep3 = rng.random(len(a3)) < 0.7
    a3 = a3[keep3]
    ts_ch = c["created_ts"].to_numpy()[newch][keep3] + rng.integers(3, 31, len(a3)) * DAY
    acc_l += [a, a2, a3]
    ts_l += [ts_onb, ts_bg, ts_ch]
    kind_l += [np.full(len(a), 2), np.full(len(a2), 2), np.full(len(a3), 2)]

    acc = np.concatenate(acc_l).astype(np.int64)
    ts = _day_time(rng, np.concatenate(ts_l).astype(np.int64))
    kind = np.concatenate(kind_l).astype(np.int64)
    keep = (ts >= lo[acc]) & (ts < hi[acc])
    acc, ts, kind = acc[keep], ts[keep], kind[keep]
    h = ctx.h_at(acc, ts)
    center = np.array([35.0, 28.0, 25.0])[kind]
    p_done = 0.97 / (1.0 + np.exp(-(h - center) / 10.0))
    u = rng.random(len(acc))
    outcome = np.where(u < p_done, 0, np.where(rng.random(len(acc)) < 0.5, 1, 2))
    order = np.lexsort((acc, ts))
    owner_ids = ctx.accounts["owner_id"].to_numpy(dtype=object)
    return pd.DataFrame(
        copy=False,
        data={
            "meeting_id": str_series(world_text.int_strings(60_000_000_001 + 3 * np.arange(len(acc)))),
            "account_idx": acc[order],
            "owner_id": str_series(owner_ids[acc[order]]),
            "ts": ts[order],
            "kind": str_series(world_text.choose_strings(MEETING_KINDS, kind[order])),
            "outcome": str_series(world_text.choose_strings(MEETING_OUTCOMES, outcome[order])),
        },
    )


# --------------------------------------------------------------------------------------------------------------
# deals


def make_deals(ctx: Context) -> pd.DataFrame:
    """New business per account, one renewal deal per term end, expansion deals (won and lost)."""
    rng = ctx.rng(STREAM_DEALS)
    ct = ctx.contracts
    c_acc = ct["account_idx"].to_numpy()
    c_start = ct["term_start_ts"].to_numpy()
    c_end = ct["term_end_ts"].to_numpy()
    arr = ct["mrr_cents"].to_numpy() * 12
    outcome = ct["outcome"].to_numpy(dtype=object)
    reason = ct["outcome_reason"].to_numpy(dtype=object)
    nxt_same = np.zeros(len(ct), dtype=bool)
    nxt_same[:-1] = c_acc[1:] == c_acc[:-1]
    next_arr = np.where(nxt_same, np.append(arr[1:], 0), arr)
    names = ctx.accounts["name"].to_numpy(dtype=object)
    created_acc = ctx.accounts["created_ts"].to_numpy()
    parts: list[dict[str, np.ndarray]] = []

    def add(acc, typ, amount, create, close, won, label):
        parts.append(
            {
                "acc": acc,
                "type": np.full(len(acc), typ),
                "amount": amount.astype(np.int64),
                "create": create.astype(np.int64),
                "close": close.astype(np.int64),
                "won": won,
                "label": label,
            }
        )

    # new business: the first contract row of each account
    first_row = np.flatnonzero(np.r_[True, c_acc[1:] != c_acc[:-1]])
    a = c_acc[first_row]
    add(
        a,
        0,
        arr[first_row],
        created_acc[a] - rng.integers(20, 91, len(a)) * DAY,
        created_acc[a],
        np.ones(len(a), bool),
        np.array(["New Business"] * len(a), dtype=object),
    )

    # renewal deals: every natural term end
    natural = reason != "mid_term_expansion"
    create = c_end - 90 * DAY + rng.integers(-5, 6, len(ct)) * DAY
    close = np.where(outcome == "open", c_end, c_end - rng.integers(0, 15, len(ct)) * DAY)
    r = natural & (create < ctx.end_ts)
    won = np.isin(outcome, ["renewed", "expanded", "contracted"])
    amount = np.where(won, next_arr, arr)
    year = (c_end // DAY * DAY).astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    add(
        c_acc[r],
        1,
        amount[r],
        create[r],
        close[r],
        won[r],
        np.array([f"Renewal {y}" for y in year[r].tolist()], dtype=object),
    )

    # expansions at renewal (closed with the renewal) and mid-term (closed at the amendment)
    e = natural & (outcome == "expanded")
    add(
        c_acc[e],
        2,
        (next_arr - arr)[e],
        c_end[e] - rng.integers(45, 76, int(e.sum())) * DAY,
        close[e],
        np.ones(int(e.sum()), bool),
        np.array(["Expansion at renewal"] * int(e.sum()), dtype=object),
    )
    mt = reason == "mid_term_expansion"
    add(
        c_acc[mt],
        2,
        (next_arr - arr)[mt],
        c_end[mt] - rng.integers(20, 51, int(mt.sum())) * DAY,
        c_end[mt],
        np.ones(int(mt.sum()), bool),
        np.array(["Seat expansion"] * int(mt.sum()), dtype=object),
    )

    # lost expansion attempts (noise)
    lo = np.maximum(c_start, ctx.start_ts)
    hi = np.minimum(c_end, ctx.end_ts) - 30 * DAY
    lx = (hi > lo) & (rng.random(len(ct)) < 0.06)
    cr = lo[lx] + (rng.random(int(lx.sum())) * (hi - lo)[lx]).astype(np.int64)
    add(
        c_acc[lx],
        2,
        np.round(arr[lx] * rng.uniform(0.1, 0.4, int(lx.sum()))),
        cr,
        cr + rng.integers(20, 61, int(lx.sum())) * DAY,
        np.zeros(int(lx.sum()), bool),
        np.array(["Upsell"] * int(lx.sum()), dtype=object),
    )

    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((cols["acc"], cols["create"]))
    cols = {k: v[order] for k, v in cols.items()}
    m = len(order)
    dealname = [
        f"{nm} - {lb}" for nm, lb in zip(names[cols["acc"]].tolist(), cols["label"].tolist(), strict=True)
    ]
    return pd.DataFrame(
        copy=False,
        data={
            "deal_id": str_series(world_text.int_strings(20_000_000_001 + 2 * np.arange(m))),
            "account_idx": cols["acc"].astype(np.int64),
            "dealname": str_series(dealname),
            "dealtype": str_series(
                world_text.choose_strings(("newbusiness", "renewal", "expansion"), cols["type"])
            ),
            "amount_cents": np.maximum(cols["amount"], 0).astype(np.int64),
            "create_ts": cols["create"],
            "close_ts": cols["close"],
            "won": cols["won"].astype(bool),
            "pipeline": str_series(["default"] * m),
        },
    )


# --------------------------------------------------------------------------------------------------------------
# company changes


def make_company_changes(ctx: Context) -> pd.DataFrame:
    """Every moment a HubSpot company property changes (server derives hs_lastmodifieddate from it)."""
    acc_l, ts_l, why_l = [], [], []

    def add(a, t, why):
        acc_l.append(np.asarray(a, dtype=np.int64))
        ts_l.append(np.asarray(t, dtype=np.int64))
        why_l.append(np.full(len(acc_l[-1]), why, dtype=object))

    n = len(ctx.accounts)
    add(np.arange(n), ctx.accounts["created_ts"].to_numpy(), "created")
    ct = ctx.contracts
    add(ct["account_idx"].to_numpy(), ct["term_start_ts"].to_numpy(), "contract_change")
    churned = np.flatnonzero(ctx.churn_ts != np.iinfo(np.int64).max)
    add(churned, ctx.churn_ts[churned], "churned")
    c = ctx.contacts
    cr = c["role"].to_numpy(dtype=object)
    key = (cr == "champion") | (cr == "executive_sponsor")
    c_acc = c["account_idx"].to_numpy()
    c_created = c["created_ts"].to_numpy()
    c_left = c["left_ts"].to_numpy()
    add(c_acc[key], c_created[key], "contact_role_change")
    gone = key & (c_left >= 0)
    add(c_acc[gone], c_left[gone], "contact_role_change")
    acc = np.concatenate(acc_l)
    ts = np.concatenate(ts_l)
    why = np.concatenate(why_l)
    keep = ts < ctx.end_ts
    df = pd.DataFrame({"account_idx": acc[keep], "ts": ts[keep], "reason": str_series(why[keep])})
    df = df.sort_values(["account_idx", "ts"], kind="stable").drop_duplicates(["account_idx", "ts"])
    return df.reset_index(drop=True)
