"""The synthetic customer portfolio ("world") behind the local vendor-API sandbox.

Why this exists: the pipeline must be developed and evaluated against data whose true health is known. The world
holds a hidden daily *latent health* per account and derives every vendor-visible record (CRM, tickets, invoices,
product events) from it as a noisy, lagged consequence, so a scoring model can be judged against ground truth.

Model in short (independent of any scoring model):

* latent health: mean-reverting (OU-like) around a slowly drifting, segment/plan-specific baseline, minus shock
  deficits (champion_left, outage, budget_cut, competitor) that decay at kind-specific rates;
* renewals: at each annual term end the outcome (churned / contracted / renewed / expanded) is a softmax draw whose
  logits depend on the mean latent over the 90 days before the term end -- never on an observable;
* observables (usage, tickets, CSAT/NPS, meeting attendance, late payments) are drawn from the latent with noise
  and lags; ``vanity_*`` columns and "Page Viewed" volume carry no information at all.

All timestamps are int64 UTC epoch seconds; ``-1`` means "never". The sandbox server decides visibility from its
simulated clock, so tables store timestamps, not current statuses. Billing: smb is monthly card billing
(charge_automatically); mid_market is monthly, ~30% of accounts on invoice (send_invoice, net 30); enterprise is
invoiced annually in advance (send_invoice, net 30). A mid-term expansion splits a contract term into two rows: the
first ends at the amendment with outcome "expanded"/"mid_term_expansion", the second (``amendment`` = True) runs to
the original term end with the new seats.

Columns beyond the server contract: contracts.term_index/amendment/stripe_subscription_id, tickets.category,
company_changes.reason, shocks.replacement_ts. ``latent`` before an account's signup day is a placeholder
(the process is simulated for every account but only means something from signup on).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from healthscore_sandbox import world_billing, world_records, world_support
from healthscore_sandbox.world_sim import (
    DAY,
    NEVER,
    _epoch,
    _make_accounts,
    _make_contracts,
    _simulate_latent,
)
from healthscore_sandbox.world_text import str_series

if TYPE_CHECKING:
    from healthscore_sandbox.csm import PlayEffects


@dataclass(frozen=True)
class WorldSpec:
    """Everything that determines a world; the same spec always builds the same world."""

    seed: int = 42
    n_accounts: int = 500
    start: datetime.date = datetime.date(2025, 10, 1)  # first simulated day
    days: int = 457  # through 2026-12-31 inclusive
    n_csms: int | None = None  # default: ~n_accounts/80 clipped to [3, 1500]
    onboarding_share: float = 0.25  # accounts that sign up during the horizon
    max_tenure_years: float = 5.0  # tenure of accounts that signed up before start
    shocks_per_quarter: float = 0.06  # expected shocks per account per quarter (all kinds)
    global_outages: int = 3  # platform-wide outage days hitting a few % of accounts at once

    def __post_init__(self) -> None:
        if self.n_accounts < 1 or self.days < 1:
            raise ValueError("n_accounts and days must be positive")
        if not 0.0 <= self.onboarding_share <= 1.0:
            raise ValueError("onboarding_share must be within [0, 1]")

    @property
    def csm_count(self) -> int:
        """Number of CSM owners (cs_leaders come on top)."""
        if self.n_csms is not None:
            return max(1, int(self.n_csms))
        return int(np.clip(round(self.n_accounts / 80), 3, 1500))


def _release_memory() -> None:
    """Hand freed heap pages back to the OS between build stages (keeps the peak RSS of big worlds down)."""
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)  # glibc only


@dataclass(eq=False)
class World:
    """A built world: vendor-visible tables, hidden ground truth and an on-demand product event generator."""

    spec: WorldSpec
    start_ts: int
    end_ts: int
    accounts: pd.DataFrame
    owners: pd.DataFrame
    contacts: pd.DataFrame
    contracts: pd.DataFrame
    deals: pd.DataFrame
    meetings: pd.DataFrame
    tickets: pd.DataFrame
    satisfaction_ratings: pd.DataFrame
    invoices: pd.DataFrame
    company_changes: pd.DataFrame
    latent: np.ndarray
    shocks: pd.DataFrame
    _internal: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (
            f"World(seed={self.spec.seed}, n_accounts={self.spec.n_accounts}, start={self.spec.start}, "
            f"days={self.spec.days})"
        )

    def day_index(self, ts: int) -> int:
        """Index of the simulated day containing ts (may be negative or >= days outside the horizon)."""
        return int((int(ts) - self.start_ts) // DAY)

    def seats_at(self, account_idx: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Licensed seats per (account, ts) from the contract rows; 0 where no contract covers ts."""
        acc = np.asarray(account_idx, dtype=np.int64)
        return world_records.seats_at(
            self._internal["seat_lookup"], acc, np.broadcast_to(np.asarray(ts, np.int64), acc.shape)
        )

    def product_events(self, day: datetime.date, plays: PlayEffects | None = None) -> pd.DataFrame:
        """Mixpanel-style events of one day, regenerated deterministically from (seed, day) on every call;
        ``plays`` (completed CSM plays, ``healthscore_sandbox.csm``) raise their accounts' latent."""
        from healthscore_sandbox.world_events import generate_product_events

        if isinstance(day, datetime.datetime):
            day = day.date()
        return generate_product_events(self, day, plays)

    def ground_truth(self) -> dict[str, pd.DataFrame]:
        """Hidden truth for the admin command and evaluation; never served by the vendor APIs."""
        it = self._internal
        acc = self.accounts
        churn_ts = it["churn_ts"]
        gt_accounts = pd.DataFrame(
            {
                "account_idx": acc["account_idx"].to_numpy(),
                "hubspot_company_id": acc["hubspot_company_id"],
                "name": acc["name"],
                "segment": acc["segment"],
                "plan": acc["plan"],
                "created_ts": acc["created_ts"].to_numpy(),
                "baseline_health": it["baseline0"].astype(np.float32),
                "churned": churn_ts != NEVER,
                "churn_ts": np.where(churn_ts == NEVER, -1, churn_ts),
                "churn_reason": str_series(it["churn_reason"]),
                "n_shocks": np.bincount(self.shocks["account_idx"].to_numpy(), minlength=len(acc)),
            }
        )
        dates = [(self.spec.start + datetime.timedelta(days=i)).isoformat() for i in range(self.spec.days)]
        latent_daily = pd.DataFrame(self.latent, columns=pd.Index(dates, dtype="str"), copy=False)
        latent_daily.index.name = "account_idx"
        return {
            "accounts": gt_accounts,
            "latent_daily": latent_daily,  # wide: one row per account, one float32 column per ISO date
            "shocks": self.shocks.copy(),
            "renewal_outcomes": it["renewal_outcomes"].copy(),
        }


def build_world(spec: WorldSpec, *, use_cache: bool = True) -> World:
    """Build (or fetch from a small in-process cache) the world for a spec; deterministic per spec."""
    if use_cache:
        return _build_cached(spec)
    return _build(spec)


@functools.lru_cache(maxsize=1)  # one world at a time: a 100k world is ~1.3 GB
def _build_cached(spec: WorldSpec) -> World:
    return _build(spec)


# --------------------------------------------------------------------------------------------------------------


def _build(spec: WorldSpec) -> World:
    start_ts = _epoch(spec.start)
    end_ts = start_ts + spec.days * DAY
    accounts, owners, extra = _make_accounts(spec, start_ts, end_ts)
    created = accounts["created_ts"].to_numpy()
    latent, shocks_all, baseline0, _ = _simulate_latent(spec, start_ts, created, extra["seg"], extra["plan"])
    contracts, churn_ts, renewal_outcomes, churn_reason = _make_contracts(
        spec, start_ts, end_ts, accounts, extra, latent, shocks_all
    )
    # shocks after churn never happened for the customer relationship: drop them from truth
    keep = shocks_all["ts"].to_numpy() < churn_ts[shocks_all["account_idx"].to_numpy()]
    shocks = shocks_all[keep].reset_index(drop=True)
    active_end = np.minimum(churn_ts, end_ts)

    ctx = world_records.Context(
        spec=spec,
        start_ts=start_ts,
        end_ts=end_ts,
        accounts=accounts,
        extra=extra,
        latent=latent,
        shocks=shocks,
        contracts=contracts,
        churn_ts=churn_ts,
        active_end=active_end,
    )
    contacts, sponsor_ids = world_records.make_contacts(ctx)
    accounts["executive_sponsor_contact_id"] = sponsor_ids
    ctx.contacts = contacts
    _release_memory()
    tickets = world_support.make_tickets(ctx)
    _release_memory()
    ratings = world_support.make_ratings(ctx, tickets)
    meetings = world_records.make_meetings(ctx)
    deals = world_records.make_deals(ctx)
    _release_memory()
    invoices = world_billing.make_invoices(ctx)
    company_changes = world_records.make_company_changes(ctx)
    _release_memory()

    internal = {
        "churn_ts": churn_ts,
        "churn_reason": churn_reason,
        "active_end": active_end,
        "baseline0": baseline0,
        "renewal_outcomes": renewal_outcomes,
        "seg": extra["seg"],
        "feature_offset": extra["feature_offset"],
        "tz_offset_s": extra["tz_offset_s"],
        "company_ids": pa.array(accounts["hubspot_company_id"].to_numpy(dtype=object), type=pa.string()),
        "seat_lookup": world_records.seat_lookup(contracts),
    }
    return World(
        spec=spec,
        start_ts=start_ts,
        end_ts=end_ts,
        accounts=accounts,
        owners=owners,
        contacts=contacts,
        contracts=contracts,
        deals=deals,
        meetings=meetings,
        tickets=tickets,
        satisfaction_ratings=ratings,
        invoices=invoices,
        company_changes=company_changes,
        latent=latent,
        shocks=shocks,
        _internal=internal,
    )
