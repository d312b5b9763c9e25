"""Zendesk records derived from the latent world: tickets (rate and tone from seats, latent health and
outage bursts) and their satisfaction ratings.

Split from ``world_records`` (which holds the shared ``Context`` and helpers) to keep modules short;
each generator draws from its own seeded stream, so the records do not depend on where the code lives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from healthscore_sandbox import world_text
from healthscore_sandbox.world_records import (
    DAY,
    STREAM_RATINGS,
    STREAM_TICKETS,
    Context,
    _last_shock_before,
    _pick,
    _requesters,
    seat_lookup,
    seats_at,
)
from healthscore_sandbox.world_sim import SHOCK_HALF_LIFE
from healthscore_sandbox.world_text import str_series

TICKET_CATS = ("how_to", "bug", "complaint", "outage")
PRIORITIES = ("urgent", "high", "normal", "low", "")  # "" = null
TICKET_TYPES = ("question", "incident", "problem", "task")
WEEKDAY_TICKET_FACTOR = np.array([1.0, 1.0, 1.0, 1.0, 0.9, 0.3, 0.25])  # Monday first
OUTAGE_HALF_LIFE = SHOCK_HALF_LIFE["outage"]


def _outage_deficit_block(ctx: Context, b0: int, b1: int) -> np.ndarray:
    n, days = ctx.latent.shape
    out = np.zeros((n, b1 - b0))
    s = ctx.shocks[ctx.shocks["kind"] == "outage"]
    d0 = s["day"].to_numpy()
    sel = (d0 < b1) & (d0 > b0 - 90)
    if not sel.any():
        return out
    acc, d0, mag = s["account_idx"].to_numpy()[sel], d0[sel], s["magnitude"].to_numpy()[sel]
    dec = 0.5 ** (1.0 / OUTAGE_HALF_LIFE)
    for j, t in enumerate(range(b0, b1)):
        live = d0 <= t
        np.add.at(out[:, j], acc[live], mag[live] * dec ** (t - d0[live]))
    return out


def make_tickets(ctx: Context) -> pd.DataFrame:
    """Zendesk tickets: rate from seats and latent (worse health -> more, angrier tickets) plus outage bursts."""
    rng = ctx.rng(STREAM_TICKETS)
    n, days = ctx.latent.shape
    created_acc = ctx.accounts["created_ts"].to_numpy()
    lookup = seat_lookup(ctx.contracts)
    all_acc = np.arange(n)
    start_wd = (ctx.start_ts // DAY + 3) % 7  # 1970-01-01 was a Thursday (weekday 3)
    parts: dict[str, list[np.ndarray]] = {"acc": [], "day": [], "outage": []}
    block = 16
    for b0 in range(0, days, block):
        b1 = min(days, b0 + block)
        dd = np.arange(b0, b1)
        day_start = ctx.start_ts + dd * DAY
        active = (created_acc[:, None] < day_start[None, :] + DAY) & (
            ctx.active_end[:, None] > day_start[None, :]
        )
        seats = seats_at(lookup, all_acc, np.full(n, ctx.start_ts + ((b0 + b1) // 2) * DAY))
        seats = np.where(seats > 0, seats, ctx.accounts["seats"].to_numpy())
        base = 0.0068 * seats.astype(np.float64) ** 0.6
        wk = WEEKDAY_TICKET_FACTOR[(start_wd + dd) % 7]
        onb = np.where((day_start[None, :] - created_acc[:, None]) < 60 * DAY, 2.0, 1.0)
        lat = ctx.latent[:, b0:b1].astype(np.float64)
        lam = base[:, None] * np.exp((55.0 - lat) / 20.0) * wk[None, :] * onb * active
        cnt = rng.poisson(lam)
        r, c = np.nonzero(cnt)
        k = cnt[r, c]
        parts["acc"].append(np.repeat(r, k))
        parts["day"].append(np.repeat(dd[c], k))
        parts["outage"].append(np.zeros(int(k.sum()), dtype=bool))
        defi = _outage_deficit_block(ctx, b0, b1)
        if defi.any():
            lam_o = defi * 0.02 * (1.0 + np.sqrt(seats)[:, None] / 5.0) * active
            r, c = np.nonzero(lam_o)
            k = rng.poisson(lam_o[r, c])
            parts["acc"].append(np.repeat(r, k))
            parts["day"].append(np.repeat(dd[c], k))
            parts["outage"].append(np.ones(int(k.sum()), dtype=bool))
    acc = np.concatenate(parts["acc"]).astype(np.int64)
    day = np.concatenate(parts["day"]).astype(np.int64)
    is_out = np.concatenate(parts["outage"])
    m = len(acc)
    h = ctx.latent[acc, day].astype(np.float64)
    day_start = ctx.start_ts + day * DAY
    onboarding = (day_start - created_acc[acc]) < 60 * DAY

    # category
    p_complaint = (0.05 + 0.45 / (1.0 + np.exp(-(40.0 - h) / 7.0))) * np.where(onboarding, 0.5, 1.0)
    p_bug = np.where(onboarding, 0.12, 0.22)
    u = rng.random(m)
    cat = np.where(u < p_complaint, 2, np.where(u < p_complaint + p_bug, 1, 0))
    cat = np.where(is_out, 3, cat)

    # time of day: business-hours skew inside the account's live part of the day (outages: after the shock)
    lo = np.maximum(day_start, created_acc[acc])
    o_ts, _ = _last_shock_before(ctx.shocks, "outage", acc, day_start + DAY - 1)
    lo = np.where(is_out & (o_ts >= day_start), np.maximum(lo, o_ts), lo)
    hi = np.minimum(day_start + DAY, ctx.active_end[acc])
    frac = np.clip(rng.normal(0.58, 0.2, m), 0.0, 0.999)
    created = lo + (frac * (hi - lo)).astype(np.int64)

    # priority by category, upgraded one level more often when health is low
    prio_tab = np.array(
        [
            [0.00, 0.05, 0.50, 0.27, 0.18],  # how_to
            [0.06, 0.34, 0.50, 0.05, 0.05],  # bug
            [0.10, 0.40, 0.45, 0.02, 0.03],  # complaint
            [0.70, 0.30, 0.00, 0.00, 0.00],  # outage
        ]
    )
    prio = _pick(rng, prio_tab, cat)
    upgrade = rng.random(m) < 0.25 / (1.0 + np.exp(-(40.0 - h) / 6.0))
    prio = np.where(upgrade, np.select([prio == 4, prio >= 1], [2, prio - 1], prio), prio)
    type_tab = np.array(
        [[0.85, 0.0, 0.0, 0.15], [0.0, 0.5, 0.5, 0.0], [0.4, 0.0, 0.6, 0.0], [0.0, 1.0, 0.0, 0.0]]
    )
    ttype = _pick(rng, type_tab, cat)

    # subject and tags
    subj_vocab, subj_off = [], []
    for cname in TICKET_CATS:
        subj_off.append(len(subj_vocab))
        subj_vocab.extend(world_text.TICKET_SUBJECTS[cname])
    subj_len = np.array([len(world_text.TICKET_SUBJECTS[c]) for c in TICKET_CATS])
    subj_code = np.array(subj_off)[cat] + (rng.random(m) * subj_len[cat]).astype(np.int64)
    n_extra = len(world_text.TICKET_EXTRA_TAGS)
    tag_vocab = [
        f"{cname}{' incident' if cname == 'outage' else ''}{'' if e == n_extra else ' ' + world_text.TICKET_EXTRA_TAGS[e]}"
        for cname in TICKET_CATS
        for e in range(n_extra + 1)
    ]
    extra_tag = np.where(rng.random(m) < 0.6, rng.integers(0, n_extra, m), n_extra)
    tag_code = cat * (n_extra + 1) + extra_tag

    # service metrics
    res_median = np.array([240.0, 720.0, 1800.0, 3600.0, 2400.0])[prio]
    res_min = np.exp(np.log(res_median) + rng.normal(0, 1.0, m)) * (1.0 + np.clip(60.0 - h, 0, None) / 100.0)
    res_min = np.maximum(5, np.round(res_min)).astype(np.int64)
    solved = created + res_min * 60
    never = rng.random(m) < 0.01
    solved = np.where(never | (solved >= ctx.end_ts), -1, solved)
    fr_median = np.array([10.0, 30.0, 90.0, 240.0, 120.0])[prio]
    first_reply = np.maximum(1, np.round(np.exp(np.log(fr_median) + rng.normal(0, 0.8, m)))).astype(np.int64)
    first_reply = np.where(solved >= 0, np.minimum(first_reply, res_min), first_reply)
    replies = 1 + rng.poisson(1.0 + 1.5 * (cat == 2) + 0.5 * (cat == 1) + 0.8 * (cat == 3))
    reopens = rng.poisson(0.08 + 0.25 * (cat == 2) + 0.2 * (h < 40))
    full_res = np.where(solved >= 0, (solved - created) // 60, -1)
    requester_rows = _requesters(ctx, rng, acc, created)

    del h, day_start, onboarding, p_complaint, u, lo, o_ts, hi, frac, upgrade, res_median, res_min, never
    order = np.lexsort((acc, created))
    cid = pa.array(ctx.contacts["contact_id"].to_numpy(dtype=object), type=pa.string())
    return pd.DataFrame(
        copy=False,
        data={
            "ticket_id": np.arange(10_001, 10_001 + m, dtype=np.int64),
            "account_idx": acc[order],
            "created_ts": created[order],
            "solved_ts": solved[order].astype(np.int64),
            "priority": str_series(world_text.choose_strings(PRIORITIES, prio[order])),
            "type": str_series(world_text.choose_strings(TICKET_TYPES, ttype[order])),
            "subject": str_series(world_text.choose_strings(tuple(subj_vocab), subj_code[order])),
            "tags": str_series(world_text.choose_strings(tuple(tag_vocab), tag_code[order])),
            "requester_contact_id": str_series(world_text.take_strings(cid, requester_rows[order])),
            "reopens": reopens[order].astype(np.int64),
            "full_resolution_minutes": full_res[order].astype(np.int64),
            "first_reply_minutes": first_reply[order],
            "replies": replies[order].astype(np.int64),
            "category": str_series(world_text.choose_strings(TICKET_CATS, cat[order])),
        },
    )


def make_ratings(ctx: Context, tickets: pd.DataFrame) -> pd.DataFrame:
    """CSAT on ~35% of solved tickets; 'good' probability from latent health, priority and reopens."""
    rng = ctx.rng(STREAM_RATINGS)
    solved = tickets["solved_ts"].to_numpy()
    rows = np.flatnonzero((solved >= 0) & (rng.random(len(tickets)) < 0.35))
    acc = tickets["account_idx"].to_numpy()[rows]
    created = solved[rows] + rng.integers(3600, 72 * 3600, len(rows))
    keep = (created < ctx.end_ts) & (created < ctx.active_end[acc])
    rows, acc, created = rows[keep], acc[keep], created[keep]
    h = ctx.h_at(acc, created)
    urgent = tickets["priority"].to_numpy(dtype=object)[rows] == "urgent"
    reopens = tickets["reopens"].to_numpy()[rows]
    z = (h - 40.0) / 10.0 - 0.4 * urgent - 0.6 * reopens
    good = rng.random(len(rows)) < 1.0 / (1.0 + np.exp(-z))
    ci = rng.integers(0, 1 << 30, len(rows))
    comments = np.where(
        good,
        np.array(world_text.GOOD_COMMENTS, dtype=object)[ci % len(world_text.GOOD_COMMENTS)],
        np.array(world_text.BAD_COMMENTS, dtype=object)[ci % len(world_text.BAD_COMMENTS)],
    )
    order = np.lexsort((rows, created))
    return pd.DataFrame(
        copy=False,
        data={
            "rating_id": np.arange(500_001, 500_001 + len(rows), dtype=np.int64),
            "ticket_id": tickets["ticket_id"].to_numpy()[rows][order],
            "account_idx": acc[order],
            "created_ts": created[order].astype(np.int64),
            "score": str_series(np.where(good, "good", "bad")[order]),
            "comment": str_series(comments[order]),
        },
    )
