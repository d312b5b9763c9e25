"""Stripe invoices derived from the latent world: one per billing period of each contract row, with
payment delays and failures that grow with low latent health and budget cuts.

Split from ``world_records`` (which holds the shared ``Context`` and helpers) to keep modules short;
the generator draws from its own seeded stream, so the records do not depend on where the code lives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from healthscore_sandbox import world_text
from healthscore_sandbox.world_records import (
    DAY,
    STREAM_INVOICES,
    YEAR,
    Context,
    _last_shock_before,
    _rows_for_counts,
)
from healthscore_sandbox.world_sim import SHOCK_HALF_LIFE
from healthscore_sandbox.world_text import str_series

MONTH = YEAR // 12  # billing period: exactly 1/12 of the 365-day term
# Automatic collection: payment attempts at these offsets after the invoice is finalised (day 0, 3, 5, 7,
# each an hour past the finalisation); the vendor view counts the attempts made by its "now".
PAYMENT_ATTEMPT_OFFSETS = np.array([0, 3, 5, 7]) * DAY + 3600
BUDGET_HALF_LIFE = SHOCK_HALF_LIFE["budget_cut"]


def make_invoices(ctx: Context) -> pd.DataFrame:
    """Stripe invoices per contract row; payment delays/failures grow with low latent and budget cuts."""
    rng = ctx.rng(STREAM_INVOICES)
    ct = ctx.contracts
    seg = ctx.extra["seg"]
    n = len(seg)
    c_acc = ct["account_idx"].to_numpy()
    c_start = ct["term_start_ts"].to_numpy()
    c_end = ct["term_end_ts"].to_numpy()
    mrr = ct["mrr_cents"].to_numpy()
    amend = ct["amendment"].to_numpy()
    prev_same = np.zeros(len(ct), dtype=bool)
    prev_same[1:] = c_acc[1:] == c_acc[:-1]
    prev_mrr = np.where(prev_same, np.r_[0, mrr[:-1]], 0)
    send_acc = np.where(seg == 0, True, np.where(seg == 1, rng.random(n) < 0.3, False))
    annual = seg[c_acc] == 0

    # monthly rows: periods from the row start
    n_per = np.where(annual, 1, -(-(c_end - c_start) // MONTH))
    row, k = _rows_for_counts(n_per)
    p_start = c_start[row] + k * MONTH
    # annual: the whole original term (a row cut by a mid-term expansion was invoiced for the full year)
    p_end = np.where(
        annual[row],
        np.where(amend[row], c_end[row], c_start[row] + YEAR),
        np.minimum(p_start + MONTH, c_end[row]),
    )
    monthly_amt = np.round(mrr[row] * (p_end - p_start) / MONTH)
    annual_amt = np.where(
        amend[row],
        np.round((mrr[row] - prev_mrr[row]) * 12 * (c_end[row] - c_start[row]) / YEAR),
        mrr[row] * 12,
    )
    amount = np.maximum(np.where(annual[row], annual_amt, monthly_amt), 0).astype(np.int64)
    acc = c_acc[row]
    created = p_start + rng.integers(0, 3600, len(row))  # finalised within the hour after the period starts
    keep = (created < ctx.end_ts) & (created < ctx.active_end[acc])
    row, created, p_end, amount, acc = row[keep], created[keep], p_end[keep], amount[keep], acc[keep]
    m = len(row)
    send = send_acc[acc]
    due = np.where(send, created + 30 * DAY, created)

    h = ctx.h_at(acc, created)
    b_ts, b_mag = _last_shock_before(ctx.shocks, "budget_cut", acc, created)
    bd = np.where(b_ts >= 0, b_mag * 0.5 ** ((created - b_ts) / DAY / BUDGET_HALF_LIFE), 0.0)

    # automatic collection: up to 4 attempts (day 0, 3, 5, 7), then manual payment or never
    fail = np.clip(0.03 + 0.25 / (1.0 + np.exp(-(35.0 - h) / 6.0)) + 0.015 * bd, 0, 0.9)
    fails = np.minimum(rng.geometric(1.0 - fail) - 1, 4)  # failed attempts before success, capped
    att_off = np.r_[PAYMENT_ATTEMPT_OFFSETS, PAYMENT_ATTEMPT_OFFSETS[-1]]
    auto_paid = np.where(
        fails < 4,
        created + att_off[fails] + rng.integers(0, 7200, m),
        np.where(rng.random(m) < 0.4, created + rng.integers(10, 41, m) * DAY, -1),
    )
    auto_attempts = np.minimum(fails + 1, 4)

    # invoices: days to pay grow with low health and budget cuts; a few never pay
    dtp = np.maximum(1, np.round(rng.normal(20 + 0.4 * (60 - h) + 1.0 * bd, 8)))
    never = rng.random(m) < 0.02 + 0.1 / (1.0 + np.exp(-(25.0 - h) / 5.0))
    send_paid = np.where(never, -1, created + dtp.astype(np.int64) * DAY + rng.integers(0, DAY, m))
    paid = np.where(send, send_paid, auto_paid)
    paid = np.where(paid >= ctx.end_ts, -1, paid).astype(np.int64)
    attempts = np.where(send, (paid >= 0).astype(np.int64), auto_attempts).astype(np.int64)

    del h, b_ts, b_mag, bd, fail, fails, auto_paid, auto_attempts, dtp, never, send_paid
    order = np.lexsort((acc, created))
    ids = world_text.unique_base62_ids(rng, m, 14, "in_")
    cus = pa.array(ctx.accounts["stripe_customer_id"].to_numpy(dtype=object), type=pa.string())
    acc = acc[order]
    return pd.DataFrame(
        copy=False,
        data={
            "invoice_id": str_series(ids),
            "account_idx": acc,
            "stripe_customer_id": str_series(world_text.take_strings(cus, acc)),
            "contract_id": ct["contract_id"].to_numpy()[row[order]],
            "created_ts": created[order],
            "period_end_ts": p_end[order],
            "due_ts": due[order],
            "amount_due_cents": amount[order],
            "paid_ts": paid[order],
            "attempt_count": attempts[order],
            "collection_method": str_series(
                world_text.choose_strings(
                    ("charge_automatically", "send_invoice"), send[order].astype(np.int64)
                )
            ),
        },
    )
