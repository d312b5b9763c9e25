"""The hidden history of the sandbox world: accounts and owners, daily latent health with its shocks, and
the contract terms with their renewal outcomes (the model is described in ``healthscore_sandbox.world``).

``world.build_world`` runs these steps, then derives the vendor-visible records from them
(``world_records``, ``world_support``, ``world_billing``).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from healthscore_sandbox import world_text
from healthscore_sandbox.world_text import str_series

if TYPE_CHECKING:
    from healthscore_sandbox.world import WorldSpec

DAY = 86_400
YEAR = 365 * DAY
NEVER = np.iinfo(np.int64).max  # internal "no churn" sentinel; tables use -1

SEGMENTS = ("enterprise", "mid_market", "smb")
PLANS = ("starter", "growth", "pro", "enterprise")
SHOCK_KINDS = ("champion_left", "outage", "budget_cut", "competitor")
OUTCOMES = ("churned", "contracted", "renewed", "expanded")

# per-segment parameters, indexed by segment code (enterprise, mid_market, smb)
SEGMENT_SHARE = np.array([0.10, 0.30, 0.60])
PLAN_PROBS = np.array([[0.0, 0.05, 0.35, 0.60], [0.05, 0.45, 0.45, 0.05], [0.45, 0.45, 0.10, 0.0]])
SEATS_MEDIAN = np.array([250.0, 45.0, 6.0])
SEATS_CLIP = np.array([[50, 5000], [10, 400], [1, 40]])
EMPLOYEES_MEDIAN = np.array([5000.0, 600.0, 40.0])
EMPLOYEES_CLIP = np.array([[1000, 200_000], [100, 5000], [3, 400]])
BASE_HEALTH = np.array([66.0, 62.0, 57.0])
PLAN_HEALTH = np.array([-3.0, 0.0, 2.0, 3.0])
DAILY_SIGMA = np.array([1.0, 1.3, 1.8])
SHOCK_SEGMENT_MULT = np.array([0.8, 1.0, 1.2])
CHURN_LOGIT_OFFSET = np.array([-0.7, -0.2, 0.3])
PRICE_PER_SEAT_CENTS = np.array([1500, 3000, 5500, 9000])
OU_THETA = 1.0 / 45.0
BASELINE_DRIFT_SD = 0.12

SHOCK_KIND_PROBS = np.array([0.35, 0.25, 0.20, 0.20])
SHOCK_MAG_RANGE = np.array([[12.0, 28.0], [8.0, 20.0], [10.0, 25.0], [12.0, 30.0]])
# per-day deficit decay: half-lives in days
SHOCK_HALF_LIFE = {
    "champion_unreplaced": 240.0,
    "champion_replaced": 30.0,
    "outage": 10.0,
    "budget_cut": 200.0,
    "competitor": 90.0,
}
CHAMPION_REPLACE_PROB = 0.8
RENEWAL_WINDOW_DAYS = 90

# rng stream ids (build_world); product events use their own stream with the day ordinal
STREAM_ACCOUNTS, STREAM_LATENT, STREAM_CONTRACTS = 1, 2, 3


def _epoch(d: datetime.date) -> int:
    return int(datetime.datetime(d.year, d.month, d.day, tzinfo=datetime.UTC).timestamp())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _decay(half_life_days: float) -> float:
    return float(0.5 ** (1.0 / half_life_days))


# --------------------------------------------------------------------------------------------------------------
# accounts


def _make_accounts(spec: WorldSpec, start_ts: int, end_ts: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    rng = np.random.default_rng([spec.seed, STREAM_ACCOUNTS])
    n = spec.n_accounts
    seg = rng.choice(3, size=n, p=SEGMENT_SHARE).astype(np.int8)
    plan = np.empty(n, dtype=np.int8)
    u = rng.random(n)
    cum = np.cumsum(PLAN_PROBS, axis=1)[seg]
    plan[:] = (u[:, None] > cum).sum(axis=1).clip(0, 3)
    employees = np.exp(np.log(EMPLOYEES_MEDIAN[seg]) + rng.normal(0, 0.9, n))
    employees = np.clip(employees, EMPLOYEES_CLIP[seg, 0], EMPLOYEES_CLIP[seg, 1]).astype(np.int64)
    seats = np.exp(np.log(SEATS_MEDIAN[seg]) + rng.normal(0, 0.65, n))
    seats = np.clip(np.round(seats), SEATS_CLIP[seg, 0], SEATS_CLIP[seg, 1])
    seats = np.minimum(seats, employees).astype(np.int64)

    onboarding = rng.random(n) < spec.onboarding_share
    horizon = end_ts - start_ts
    new_ts = start_ts + (rng.random(n) * max(horizon - 14 * DAY, DAY)).astype(np.int64)
    tenure = (DAY + rng.random(n) * spec.max_tenure_years * YEAR).astype(np.int64)
    created_ts = np.where(onboarding, new_ts, start_ts - tenure).astype(np.int64)

    # names, domains, industry
    n_pre, n_core, n_sec = len(world_text.NAME_PREFIXES), len(world_text.NAME_CORES), len(world_text.SECTORS)
    i_pre = rng.integers(0, n_pre, n)
    i_core = rng.integers(0, n_core, n)
    i_sec = rng.integers(0, n_sec, n)
    i_legal = rng.integers(0, len(world_text.LEGAL_FORMS), n)
    names = [
        f"{world_text.NAME_PREFIXES[a]}{world_text.NAME_CORES[b]} {world_text.SECTORS[c][0]} {world_text.LEGAL_FORMS[d]}"
        for a, b, c, d in zip(i_pre.tolist(), i_core.tolist(), i_sec.tolist(), i_legal.tolist(), strict=True)
    ]
    base = pd.Series(
        [
            world_text.slug(
                f"{world_text.NAME_PREFIXES[a]}{world_text.NAME_CORES[b]}{world_text.SECTORS[c][0]}"
            )
            for a, b, c in zip(i_pre.tolist(), i_core.tolist(), i_sec.tolist(), strict=True)
        ],
        dtype="str",
    )
    dup_no = base.groupby(base).cumcount().to_numpy()
    tlds = np.array([".com", ".io", ".co", ".net"])
    domains = [
        f"{b}{k + 1 if k else ''}{t}"
        for b, k, t in zip(base.tolist(), dup_no.tolist(), tlds[rng.integers(0, 4, n)].tolist(), strict=True)
    ]
    industry = [world_text.SECTORS[c][1] for c in i_sec.tolist()]

    # owners: CSMs plus cs_leaders
    n_csm = spec.csm_count
    n_lead = max(1, n_csm // 8)
    n_own = n_csm + n_lead
    own_first = rng.integers(0, len(world_text.FIRST_NAMES), n_own)
    own_last = rng.integers(0, len(world_text.LAST_NAMES), n_own)
    owner_ids = np.array([str(70_000_000 + 13 * i + 5) for i in range(n_own)], dtype=object)
    owners = pd.DataFrame(
        {
            "owner_id": str_series(owner_ids),
            "email": str_series(
                [
                    f"{world_text.slug(world_text.FIRST_NAMES[a])}.{world_text.slug(world_text.LAST_NAMES[b])}{i}"
                    f"@healthscore-vendor.example"
                    for i, (a, b) in enumerate(zip(own_first.tolist(), own_last.tolist(), strict=True))
                ]
            ),
            "first_name": str_series([world_text.FIRST_NAMES[a] for a in own_first.tolist()]),
            "last_name": str_series([world_text.LAST_NAMES[b] for b in own_last.tolist()]),
            "user_id": (9_000_000 + 7 * np.arange(n_own)).astype(np.int64),
            "role": str_series(np.where(np.arange(n_own) < n_csm, "csm", "cs_leader")),
        }
    )
    owner_of = rng.integers(0, n_csm, n)

    idx = np.arange(n, dtype=np.int64)
    hub_ids = 1_000_000_000 + idx * 7 + rng.integers(0, 7, n)
    zd_org = 360_000_000_000 + idx * 11 + rng.integers(0, 11, n)
    cus_ids = world_text.unique_base62_ids(rng, n, 14, "cus_")
    sub_ids = world_text.unique_base62_ids(rng, n, 14, "sub_")
    twitter = np.round(np.exp(rng.normal(6.0, 1.6, n))).astype(np.int64)
    pv_bias = rng.normal(0.0, 0.5, n)
    accounts = pd.DataFrame(
        {
            "account_idx": idx,
            "hubspot_company_id": str_series(world_text.int_strings(hub_ids)),
            "name": str_series(names),
            "domain": str_series(domains),
            "industry": str_series(industry),
            "segment": str_series(np.array(SEGMENTS, dtype=object)[seg]),
            "plan": str_series(np.array(PLANS, dtype=object)[plan]),
            "seats": seats,
            "created_ts": created_ts,
            "owner_id": str_series(owner_ids[owner_of]),
            "stripe_customer_id": str_series(cus_ids),
            "zendesk_organization_id": zd_org.astype(np.int64),
            "executive_sponsor_contact_id": pd.Series([None] * n, dtype=object),  # filled once contacts exist
            "employees": employees,
            "vanity_twitter_followers": twitter,
            "vanity_page_views_bias": pv_bias,
        }
    )
    extra = {
        "seg": seg,
        "plan": plan,
        "onboarding": onboarding,
        "owner_of": owner_of,
        "sub_ids": sub_ids,
        "feature_offset": rng.integers(0, 7, n).astype(np.int64),
        "tz_offset_s": (
            rng.choice(np.array([-8, -7, -6, -5, -4, 0, 1, 2, 3, 5.5, 8, 9, 10]), n) * 3600
        ).astype(np.int64),
    }
    return accounts, owners, extra


# --------------------------------------------------------------------------------------------------------------
# latent health and shocks


def _simulate_latent(
    spec: WorldSpec, start_ts: int, created_ts: np.ndarray, seg: np.ndarray, plan: np.ndarray
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, np.ndarray]:
    """Daily loop over days (vectorised over accounts): OU latent minus decaying shock deficits."""
    rng = np.random.default_rng([spec.seed, STREAM_LATENT])
    n, days = spec.n_accounts, spec.days
    mu = np.clip(BASE_HEALTH[seg] + PLAN_HEALTH[plan] + rng.normal(0, 10, n), 20, 88)
    baseline0 = mu.copy()
    sigma = DAILY_SIGMA[seg]
    stat_sd = sigma / np.sqrt(2 * OU_THETA - OU_THETA**2)
    x = mu + rng.normal(0, 1, n) * stat_sd
    created_day = np.floor_divide(created_ts - start_ts, DAY)

    d_champ = np.zeros(n)
    d_out = np.zeros(n)
    d_budget = np.zeros(n)
    d_comp = np.zeros(n)
    has_champion = np.ones(n, dtype=bool)
    replace_day = np.full(n, -1, dtype=np.int64)
    dec = {k: _decay(v) for k, v in SHOCK_HALF_LIFE.items()}
    p_day = spec.shocks_per_quarter * SHOCK_SEGMENT_MULT[seg] / 91.0
    kind_cum = np.cumsum(SHOCK_KIND_PROBS)

    global_days = (
        np.sort(
            rng.choice(
                np.arange(7, max(days - 7, 8)),
                size=min(spec.global_outages, max(days - 14, 0)),
                replace=False,
            )
        )
        if days > 21
        else np.array([], dtype=np.int64)
    )
    global_frac = rng.uniform(0.03, 0.08, len(global_days))

    latent = np.empty((n, days), dtype=np.float32)
    sh_acc, sh_day, sh_kind, sh_mag, sh_repl = [], [], [], [], []
    for t in range(days):
        eps = rng.standard_normal(n)
        mu += BASELINE_DRIFT_SD * rng.standard_normal(n)
        np.clip(mu, 15, 90, out=mu)
        x += OU_THETA * (mu - x) + sigma * eps
        fresh = created_day == t
        if fresh.any():  # signup: start below baseline (time to value)
            x[fresh] = mu[fresh] - 6 + rng.normal(0, 6, int(fresh.sum()))
        d_champ *= np.where(has_champion, dec["champion_replaced"], dec["champion_unreplaced"])
        d_out *= dec["outage"]
        d_budget *= dec["budget_cut"]
        d_comp *= dec["competitor"]

        exists = created_day < t  # existed for the whole previous day
        hit = exists & (rng.random(n) < p_day)
        kinds = np.searchsorted(kind_cum, rng.random(n))
        hit &= ~((kinds == 0) & ~has_champion)  # champion_left needs a champion in place
        if len(global_days) and t in global_days:
            g = exists & (rng.random(n) < global_frac[np.searchsorted(global_days, t)])
            kinds = np.where(g & ~hit, 1, kinds)
            hit |= g
        idx = np.flatnonzero(hit)
        if len(idx):
            k = kinds[idx]
            lo, hi = SHOCK_MAG_RANGE[k, 0], SHOCK_MAG_RANGE[k, 1]
            mag = lo + (hi - lo) * rng.random(len(idx))
            np.add.at(d_champ, idx[k == 0], mag[k == 0])
            np.add.at(d_out, idx[k == 1], mag[k == 1])
            np.add.at(d_budget, idx[k == 2], mag[k == 2])
            np.add.at(d_comp, idx[k == 3], mag[k == 3])
            repl = np.full(len(idx), -1, dtype=np.int64)
            ch = k == 0
            if ch.any():
                has_champion[idx[ch]] = False
                will = rng.random(int(ch.sum())) < CHAMPION_REPLACE_PROB
                delay = rng.integers(14, 121, int(ch.sum()))
                rd = np.where(will, t + delay, -1)
                replace_day[idx[ch]] = rd
                repl[ch] = rd
            sh_acc.append(idx)
            sh_day.append(np.full(len(idx), t, dtype=np.int64))
            sh_kind.append(k)
            sh_mag.append(mag)
            sh_repl.append(repl)
        latent[:, t] = np.clip(x - d_champ - d_out - d_budget - d_comp, 0, 100)
        # champion replacements arriving today (after today's shocks, so a new champion cannot leave the same day)
        arrived = replace_day == t
        if arrived.any():
            has_champion[arrived] = True
            replace_day[arrived] = -1

    if sh_acc:
        acc = np.concatenate(sh_acc)
        day = np.concatenate(sh_day)
        kind = np.concatenate(sh_kind)
        mag = np.concatenate(sh_mag)
        repl_day = np.concatenate(sh_repl)
    else:
        acc = day = kind = repl_day = np.zeros(0, dtype=np.int64)
        mag = np.zeros(0)
    ts = start_ts + day * DAY + rng.integers(8 * 3600, 20 * 3600, len(acc))
    repl_ts = np.where(
        repl_day >= 0, start_ts + repl_day * DAY + rng.integers(9 * 3600, 17 * 3600, len(acc)), -1
    )
    shocks = pd.DataFrame(
        {
            "account_idx": acc.astype(np.int64),
            "day": day.astype(np.int64),
            "ts": ts.astype(np.int64),
            "kind": str_series(np.array(SHOCK_KINDS, dtype=object)[kind]),
            "magnitude": mag.astype(np.float64),
            # champion_left only: when a new champion contact appears (-1: never)
            "replacement_ts": repl_ts.astype(np.int64),
        }
    )
    return latent, shocks, baseline0, mu


# --------------------------------------------------------------------------------------------------------------
# contracts and renewal outcomes


def _mrr_cents(seats: np.ndarray, plan: np.ndarray) -> np.ndarray:
    disc = np.where(seats > 1000, 0.7, np.where(seats > 100, 0.85, 1.0))
    platform = np.where(plan == 3, 50_000, 0)
    return (np.round(seats * PRICE_PER_SEAT_CENTS[plan] * disc) + platform).astype(np.int64)


def _window_mean(latent: np.ndarray, acc: np.ndarray, end_day: np.ndarray, width: int) -> np.ndarray:
    """Mean latent over days [end_day - width, end_day) per row, clipped to the horizon (>= 1 day)."""
    days = latent.shape[1]
    hi = np.clip(end_day, 1, days)
    lo = np.clip(hi - width, 0, days - 1)
    out = np.empty(len(acc))
    order = np.lexsort((lo, hi))
    keys = hi[order] * (days + 1) + lo[order]
    bounds = np.flatnonzero(np.diff(keys)) + 1
    for grp in np.split(order, bounds):
        if len(grp):
            a, b = lo[grp[0]], hi[grp[0]]
            out[grp] = latent[acc[grp], a:b].mean(axis=1)
    return out


def _recent_shock_reason(shocks: pd.DataFrame, acc: np.ndarray, ts: np.ndarray, lookback: int) -> np.ndarray:
    """Kind of the largest shock within lookback before ts per row ('' if none), for outcome_reason."""
    out = np.full(len(acc), "", dtype=object)
    if len(shocks) == 0 or len(acc) == 0:
        return out
    s_acc = shocks["account_idx"].to_numpy()
    s_ts = shocks["ts"].to_numpy()
    s_mag = shocks["magnitude"].to_numpy()
    s_kind = shocks["kind"].to_numpy(dtype=object)
    order = np.lexsort((s_ts, s_acc))
    key = s_acc[order] * (1 << 33) + s_ts[order]
    qhi = np.searchsorted(key, acc * (1 << 33) + ts, side="left")
    qlo = np.searchsorted(key, acc * (1 << 33) + (ts - lookback), side="left")
    best = np.full(len(acc), -1.0)
    for j in range(int((qhi - qlo).max(initial=0))):
        pos = qlo + j
        ok = pos < qhi
        if not ok.any():
            break
        cand = order[pos[ok]]
        better = s_mag[cand] > best[ok]
        rows = np.flatnonzero(ok)[better]
        best[rows] = s_mag[cand[better]]
        out[rows] = s_kind[cand[better]]
    return out


def _make_contracts(
    spec: WorldSpec,
    start_ts: int,
    end_ts: int,
    accounts: pd.DataFrame,
    extra: dict,
    latent: np.ndarray,
    shocks: pd.DataFrame,
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    """Annual terms from each account's signup anniversary; outcomes at term end drawn from latent health."""
    rng = np.random.default_rng([spec.seed, STREAM_CONTRACTS])
    n = spec.n_accounts
    seg, plan = extra["seg"], extra["plan"]
    created = accounts["created_ts"].to_numpy()
    k0 = np.maximum(0, (start_ts - created) // YEAR)
    t_start = created + k0 * YEAR
    seats = accounts["seats"].to_numpy().copy()
    acc = np.arange(n, dtype=np.int64)
    term_index = np.zeros(n, dtype=np.int64)
    churn_ts = np.full(n, NEVER, dtype=np.int64)
    churn_reason = np.full(n, "", dtype=object)

    rows: list[dict[str, np.ndarray]] = []
    renewals: list[dict[str, np.ndarray]] = []

    def emit(a, s, e, st, outc, reason, amend, tidx):
        rows.append(
            {
                "account_idx": a,
                "term_start_ts": s,
                "term_end_ts": e,
                "seats": st,
                "outcome": outc,
                "outcome_reason": reason,
                "amendment": amend,
                "term_index": tidx,
            }
        )

    while len(acc):
        t_end = t_start + YEAR
        seg_a = seg[acc]
        # mid-term expansion (at most one per term), driven by latent at that moment
        m_ts = t_start + rng.integers(120, 271, len(acc)) * DAY + rng.integers(9 * 3600, 18 * 3600, len(acc))
        m_day = np.clip((m_ts - start_ts) // DAY - 1, 0, spec.days - 1)
        h_m = latent[acc, m_day].astype(np.float64)
        p_exp = 0.30 * _sigmoid((h_m - 68.0) / 5.0)
        expand = (m_ts >= start_ts) & (m_ts < end_ts) & (rng.random(len(acc)) < p_exp)
        new_seats = np.maximum(seats + 1, np.round(seats * rng.uniform(1.1, 1.4, len(acc)))).astype(np.int64)
        if expand.any():
            e = expand
            emit(
                acc[e],
                t_start[e],
                m_ts[e],
                seats[e],
                np.full(e.sum(), "expanded", dtype=object),
                np.full(e.sum(), "mid_term_expansion", dtype=object),
                np.zeros(e.sum(), bool),
                term_index[e],
            )
        amend_flag = expand.copy()
        seg_start = np.where(expand, m_ts, t_start)
        seats = np.where(expand, new_seats, seats)

        open_ = t_end >= end_ts
        if open_.any():
            o = open_
            emit(
                acc[o],
                seg_start[o],
                t_end[o],
                seats[o],
                np.full(o.sum(), "open", dtype=object),
                np.full(o.sum(), "", dtype=object),
                amend_flag[o],
                term_index[o],
            )
        d = ~open_
        if not d.any():
            break
        a, te, st = acc[d], t_end[d], seats[d]
        end_day = (te - start_ts) // DAY
        h = _window_mean(latent, a, end_day, RENEWAL_WINDOW_DAYS)
        z = (h - 55.0) / 10.0
        logits = np.stack(
            [
                -1.6 - 1.8 * z + CHURN_LOGIT_OFFSET[seg_a[d]],
                -1.9 - 0.5 * z,
                np.full(len(a), 1.0),
                -1.3 + 0.9 * z,
            ],
            axis=1,
        )
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        outcome = (rng.random(len(a))[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, 3)
        shock_kind = _recent_shock_reason(shocks, a, te, 240 * DAY)
        reason = np.where(outcome == 3, "growth", "healthy").astype(object)
        bad = outcome <= 1
        reason[bad] = np.where(shock_kind[bad] != "", shock_kind[bad], "poor_adoption")
        out_names = np.array(OUTCOMES, dtype=object)[outcome]
        emit(a, seg_start[d], te, st, out_names, reason, amend_flag[d], term_index[d])
        renewals.append(
            {
                "account_idx": a,
                "term_end_ts": te,
                "window_mean_latent": h,
                "p_churn": p[:, 0],
                "outcome": out_names,
                "outcome_reason": reason,
                "seats": st,
            }
        )

        churned = outcome == 0
        churn_ts[a[churned]] = te[churned]
        churn_reason[a[churned]] = reason[churned]
        next_seats = st.copy()
        exp_ = outcome == 3
        con = outcome == 1
        next_seats[exp_] = np.maximum(st[exp_] + 1, np.round(st[exp_] * rng.uniform(1.1, 1.5, exp_.sum())))
        next_seats[con] = np.maximum(
            1, np.minimum(st[con] - 1, np.round(st[con] * rng.uniform(0.55, 0.9, con.sum())))
        )
        keep = ~churned
        acc, t_start, seats = a[keep], te[keep], next_seats[keep].astype(np.int64)
        term_index = term_index[d][keep] + 1

    cols = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    order = np.lexsort((cols["term_start_ts"], cols["account_idx"]))
    cols = {k: v[order] for k, v in cols.items()}
    plan_c = plan[cols["account_idx"]]
    contracts = pd.DataFrame(
        {
            "contract_id": np.arange(1, len(order) + 1, dtype=np.int64),
            "account_idx": cols["account_idx"].astype(np.int64),
            "term_start_ts": cols["term_start_ts"].astype(np.int64),
            "term_end_ts": cols["term_end_ts"].astype(np.int64),
            "seats": cols["seats"].astype(np.int64),
            "mrr_cents": _mrr_cents(cols["seats"], plan_c),
            "outcome": str_series(cols["outcome"]),
            "outcome_reason": str_series(cols["outcome_reason"]),
            "term_index": cols["term_index"].astype(np.int64),
            "amendment": cols["amendment"].astype(bool),
            "stripe_subscription_id": str_series(
                world_text.take_strings(extra["sub_ids"], cols["account_idx"])
            ),
        }
    )
    if renewals:
        rc = {k: np.concatenate([r[k] for r in renewals]) for k in renewals[0]}
        order = np.lexsort((rc["term_end_ts"], rc["account_idx"]))
        renewal_outcomes = pd.DataFrame(
            {
                "account_idx": rc["account_idx"][order].astype(np.int64),
                "term_end_ts": rc["term_end_ts"][order].astype(np.int64),
                "seats": rc["seats"][order].astype(np.int64),
                "window_mean_latent": rc["window_mean_latent"][order],
                "p_churn": rc["p_churn"][order],
                "outcome": str_series(rc["outcome"][order]),
                "outcome_reason": str_series(rc["outcome_reason"][order]),
            }
        )
    else:
        renewal_outcomes = pd.DataFrame(
            {
                "account_idx": np.zeros(0, np.int64),
                "term_end_ts": np.zeros(0, np.int64),
                "seats": np.zeros(0, np.int64),
                "window_mean_latent": np.zeros(0),
                "p_churn": np.zeros(0),
                "outcome": str_series([]),
                "outcome_reason": str_series([]),
            }
        )
    return contracts, churn_ts, renewal_outcomes, churn_reason
