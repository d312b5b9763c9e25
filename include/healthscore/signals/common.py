"""Shared pieces of the signal computations: windows, vocabularies, the inputs frame bundle, counting helpers.

Every function here is pure: frames and a ``PointInTime`` in, float Series indexed by account id out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from healthscore.batch import DAY_S, PointInTime

if TYPE_CHECKING:
    from healthscore.signals.mixpanel import UsageTotals

__all__ = ["DAY_S", "PointInTime"]

USAGE_WINDOW_DAYS = 30
LOGIN_WINDOW_DAYS = 28
MIN_USAGE_COVERED_DAYS = 7
MIN_TREND_COVERED_DAYS = 21
NPS_LOOKBACK_DAYS = 365
QUARTER_DAYS = 90
QBR_LOOKBACK_DAYS = 120
EXPANSION_DAYS = 365

#: The product's tracking plan: events that mean "a feature was used" (feature_breadth's denominator).
FEATURE_EVENTS: tuple[str, ...] = (
    "Dashboard Viewed", "Report Created", "Export Completed", "Integration Configured", "Invite Sent",
    "Workflow Automated", "API Call",
)
OPEN_TICKET_STATUSES = frozenset({"new", "open", "pending", "hold"})
TOUCHPOINT_KINDS = frozenset({"qbr", "check-in"})
LIVE_SUBSCRIPTION = frozenset({"active", "past_due", "unpaid", "trialing", "paused"})
DELINQUENT_SUBSCRIPTION = frozenset({"past_due", "unpaid"})
UNPAID_INVOICE = frozenset({"open", "uncollectible"})
CSAT_RATING_VALUE = {"good": 5.0, "bad": 1.0}

Signals = dict[str, pd.Series]


@dataclass
class SignalInputs:
    """Flattened point-in-time frames: ``accounts`` (the active HubSpot companies, with ``zendesk_org`` and
    ``stripe_customer``), ``frames["<source>.<object>"]`` (flattened records), Mixpanel ``usage`` and ``nps``
    company-day rows (None when Mixpanel is not usable; ``attrs["covered_days"]`` on ``usage``). The pipeline
    gives ``usage`` already reduced (``mixpanel.UsageTotals``, fed day by day), never the window's rows."""

    accounts: pd.DataFrame
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    usage: pd.DataFrame | UsageTotals | None = None
    nps: pd.DataFrame | None = None

    @property
    def index(self) -> pd.Index:
        """The accounts signals are computed for, in order."""
        return pd.Index(self.accounts["company_id"].astype(object), name="account_id")


def count(keys: pd.Series, mask: Any, index: pd.Index) -> pd.Series:
    """Rows per account where ``mask`` holds, 0 for accounts without any."""
    selected = keys[np.asarray(mask, dtype=bool)]
    return selected.value_counts().reindex(index, fill_value=0).astype(float)


def flag(keys: pd.Series, mask: Any, index: pd.Index) -> pd.Series:
    """1.0 for accounts with any row where ``mask`` holds, else 0.0."""
    return (count(keys, mask, index) > 0).astype(float)


def between(ts: pd.Series, start: int, end: int) -> np.ndarray:
    """start < ts <= end, nulls False."""
    return ((ts > start) & (ts <= end)).fillna(False).to_numpy(dtype=bool)
