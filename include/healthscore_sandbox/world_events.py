"""On-demand Mixpanel-style product events for one simulated day.

Why on demand: a year of events for 100k accounts is ~300M rows; the sandbox regenerates any day from
(seed, day) instead of holding them. The generator is seeded only by (seed, day ordinal, stream), never by
generation order, and reads the latent health with a 1-3 week lag (usage responds slowly to health).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from healthscore_sandbox import world_text
from healthscore_sandbox.world_records import seats_at

if TYPE_CHECKING:
    from healthscore_sandbox.csm import PlayEffects
    from healthscore_sandbox.world import World

DAY = 86_400
STREAM_EVENTS = 11
FEATURE_EVENTS = (
    "Dashboard Viewed",
    "Report Created",
    "Export Completed",
    "Integration Configured",
    "Invite Sent",
    "Workflow Automated",
    "API Call",
)
FEATURE_NAMES = ("dashboards", "reports", "exports", "integrations", "collaboration", "workflows", "api")
EVENT_NAMES = ("Login", *FEATURE_EVENTS, "Page Viewed", "NPS Survey Responded", "CSAT Survey Responded")
EV_LOGIN, EV_FEATURE0, EV_PAGE, EV_NPS, EV_CSAT = 0, 1, 8, 9, 10
EVENT_COLUMNS = (
    "insert_id",
    "event",
    "time",
    "distinct_id",
    "company_id",
    "feature",
    "nps_score",
    "csat_score",
)

SEG_ACTIVE_SHARE = np.array([0.04, 0.055, 0.09])  # enterprise has more shelfware seats
WEEKDAY_USAGE = np.array([1.0, 1.0, 1.0, 0.95, 0.85, 0.12, 0.08])  # Monday first
WEEKDAY_PAGES = np.array([1.0, 1.0, 1.0, 1.0, 0.9, 0.3, 0.25])
LAG_WEIGHTS = np.array([lag * np.exp(-lag / 6.0) for lag in range(22)]) + 0.02
LAG_WEIGHTS /= LAG_WEIGHTS.sum()  # mass centred on a 1-3 week lag
NPS_DAILY_P = 0.003
CSAT_DAILY_P = 0.004


def empty_events() -> pd.DataFrame:
    """A zero-row frame with the event schema (days outside the horizon)."""
    return pd.DataFrame(
        copy=False,
        data={
            "insert_id": pd.Series([], dtype="str"),
            "event": pd.Series([], dtype="str"),
            "time": pd.Series([], dtype=np.int64),
            "distinct_id": pd.Series([], dtype="str"),
            "company_id": pd.Series([], dtype="str"),
            "feature": pd.Series([], dtype="str"),
            "nps_score": pd.Series([], dtype=np.float64),
            "csat_score": pd.Series([], dtype=np.float64),
        },
    )


def lagged_health(latent: np.ndarray, d: int) -> np.ndarray:
    """Weighted mean of latent over the 3 weeks up to day d (earlier days clipped to day 0)."""
    days = np.clip(d - np.arange(len(LAG_WEIGHTS)), 0, latent.shape[1] - 1)
    return latent[:, days].astype(np.float64) @ LAG_WEIGHTS


def generate_product_events(world: World, day: datetime.date, plays: PlayEffects | None = None) -> pd.DataFrame:
    """All product events of one day for all live accounts, sorted by time.

    ``plays``: completed plays (``healthscore_sandbox.csm``) raise the latent of their accounts from their
    start day on; without any that reach this day the events are the task-free world's, bit for bit."""
    d = (day - world.spec.start).days
    if d < 0 or d >= world.spec.days:
        return empty_events()
    it = world._internal
    ordinal = day.toordinal()
    rng = np.random.default_rng([world.spec.seed, ordinal, STREAM_EVENTS])
    day_start = world.start_ts + d * DAY
    day_end = day_start + DAY
    created = world.accounts["created_ts"].to_numpy()
    live = np.flatnonzero((created < day_end) & (it["active_end"] > day_start))
    n_all = len(created)
    if len(live) == 0:
        return empty_events()

    # per-account draws cover every account (fixed shapes), so they do not depend on which accounts are live
    wd = day.weekday()
    h_lag = lagged_health(world.latent, d)
    h_now = world.latent[:, d].astype(np.float64)
    if plays is not None and len(plays):
        window = np.clip(d - np.arange(len(LAG_WEIGHTS)), 0, world.latent.shape[1] - 1)
        rows, raised = plays.latent_rows(world.latent, d, window)
        if len(rows):
            h_lag[rows] = raised @ LAG_WEIGHTS
            h_now[rows] = raised[:, 0]
    engage = 1.0 / (1.0 + np.exp(-(h_lag - 50.0) / 10.0))
    # licensed seats during the account's live part of the day (the smaller one if a term changes that day)
    all_idx = np.arange(n_all)
    s_first = seats_at(it["seat_lookup"], all_idx, np.maximum(day_start, created))
    s_last = seats_at(it["seat_lookup"], all_idx, np.minimum(day_end, it["active_end"]) - 1)
    seats = np.where((s_first > 0) & (s_last > 0), np.minimum(s_first, s_last), np.maximum(s_first, s_last))
    seats = np.where(seats > 0, seats, world.accounts["seats"].to_numpy())
    age_days = (day_start - created) / DAY
    ramp = np.clip(0.3 + age_days / 30.0, 0.3, 1.0)
    noise = np.exp(rng.normal(0.0, 0.3, n_all))
    p_active = np.clip(
        SEG_ACTIVE_SHARE[it["seg"]] * (0.2 + 1.6 * engage) * WEEKDAY_USAGE[wd] * noise * ramp, 0, 0.95
    )
    dau_all = rng.binomial(seats, p_active)
    breadth_all = np.clip(1 + np.floor(6.0 * engage + rng.normal(0, 0.7, n_all)), 1, 7).astype(np.int64)
    offset_all = (rng.random(n_all) * np.maximum(1, seats // 4)).astype(np.int64)
    pages_all = rng.poisson(
        5.0 * np.exp(world.accounts["vanity_page_views_bias"].to_numpy()) * WEEKDAY_PAGES[wd]
    )

    is_live = np.zeros(n_all, dtype=bool)
    is_live[live] = True
    dau = np.where(is_live, dau_all, 0)
    pages = np.where(is_live, pages_all, 0)

    # active users: distinct ids (offset + j) mod seats, j < dau <= seats
    u_acc = np.repeat(np.arange(n_all), dau)
    u_pos = np.arange(len(u_acc)) - np.repeat(np.cumsum(dau) - dau, dau)
    u_k = (offset_all[u_acc] + u_pos) % seats[u_acc]
    n_users = len(u_acc)
    local_start = np.clip(rng.normal(14.0 * 3600, 2.5 * 3600, n_users), 6 * 3600, 22 * 3600)
    u_session = (local_start - it["tz_offset_s"][u_acc]) % DAY  # seconds into the UTC day

    e_user = engage[u_acc]
    n_login = 1 + rng.poisson(0.25, n_users)
    n_feat = rng.poisson(0.3 + 2.2 * e_user)
    n_nps = (rng.random(n_users) < NPS_DAILY_P).astype(np.int64)
    n_csat = (rng.random(n_users) < CSAT_DAILY_P).astype(np.int64)

    # explode per-user counts into events (user index, event kind 0 login / 1 feature / 2 nps / 3 csat)
    tot = n_login + n_feat + n_nps + n_csat
    ev_user = np.repeat(np.arange(n_users), tot)
    pos = np.arange(len(ev_user)) - np.repeat(np.cumsum(tot) - tot, tot)
    c1 = n_login[ev_user]
    kind = np.where(pos < c1, 0, 3).astype(np.int8)
    c1 += n_feat[ev_user]
    kind[(kind == 3) & (pos < c1)] = 1
    c1 += n_nps[ev_user]
    kind[(kind == 3) & (pos < c1)] = 2
    del pos, c1, tot, n_login, n_feat, n_nps, n_csat
    ev_acc = u_acc[ev_user]
    m = len(ev_user)
    # feature choice: skewed towards the account's primary features, within its breadth
    u = rng.random(m)
    feat = (np.floor(breadth_all[ev_acc] * u**1.5).astype(np.int64) + it["feature_offset"][ev_acc]) % len(
        FEATURE_EVENTS
    )
    code = np.select(
        [kind == 0, kind == 1, kind == 2], [EV_LOGIN, EV_FEATURE0 + feat, EV_NPS], EV_CSAT
    ).astype(np.int8)
    del feat
    # logins open the session; other events follow within the hour
    rng.random(m, out=u)
    t_frac = (u_session[ev_user] + u * np.where(kind == 0, 60.0, 3600.0)) % DAY
    del u, kind
    distinct_k = u_k[ev_user]
    del ev_user

    # vanity page views: volume independent of health, random seat holder
    p_acc = np.repeat(np.arange(n_all), pages)
    p_k = (rng.random(len(p_acc)) * seats[p_acc]).astype(np.int64)
    p_t = (
        np.clip(rng.normal(14.0 * 3600, 3.0 * 3600, len(p_acc)), 0, DAY - 1) - it["tz_offset_s"][p_acc]
    ) % DAY

    acc = np.concatenate([ev_acc, p_acc])
    code = np.concatenate([code, np.full(len(p_acc), EV_PAGE, dtype=np.int8)])
    kk = np.concatenate([distinct_k, p_k])
    t_frac = np.concatenate([t_frac, p_t]) / DAY
    del ev_acc, p_acc, distinct_k, p_k, p_t
    # squeeze into the account's live part of the day (signup / churn days)
    lo = np.maximum(day_start, created[acc])
    t = lo + np.floor(t_frac * (np.minimum(day_end, it["active_end"][acc]) - lo)).astype(np.int64)
    del lo, t_frac

    order = np.lexsort((kk, acc, t))
    acc, code, kk, t = acc[order], code[order], kk[order], t[order]
    del order
    n_ev = len(acc)
    # sparse surveys: scores from today's latent with noise (NaN where the event is not a survey)
    nps = np.full(n_ev, np.nan)
    rows = np.flatnonzero(code == EV_NPS)
    nps[rows] = np.clip(np.round(h_now[acc[rows]] / 10.0 + rng.normal(0, 1.5, len(rows))), 0, 10)
    csat = np.full(n_ev, np.nan)
    rows = np.flatnonzero(code == EV_CSAT)
    csat[rows] = np.clip(np.round(1.0 + 4.0 * h_now[acc[rows]] / 100.0 + rng.normal(0, 0.8, len(rows))), 1, 5)
    seq = (np.uint64(ordinal) << np.uint64(40)) | np.arange(n_ev, dtype=np.uint64)
    salt = world_text.splitmix64(np.array([world.spec.seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    insert_id = world_text.hex16(world_text.splitmix64(seq ^ salt))
    distinct = pc.binary_join_element_wise(
        pa.scalar("u"), world_text.int_strings(acc), pa.scalar("_"), world_text.int_strings(kk), ""
    )
    feature_vocab = pa.array([None, *FEATURE_NAMES, None, None, None], type=pa.string())
    return pd.DataFrame(
        copy=False,
        data={
            "insert_id": pd.Series(insert_id, dtype="str"),
            "event": pd.Series(world_text.choose_strings(EVENT_NAMES, code), dtype="str"),
            "time": t,
            "distinct_id": pd.Series(distinct, dtype="str"),
            "company_id": pd.Series(world_text.take_strings(it["company_ids"], acc), dtype="str"),
            "feature": pd.Series(world_text.take_strings(feature_vocab, code), dtype="str"),
            "nps_score": nps,
            "csat_score": csat,
        },
    )
