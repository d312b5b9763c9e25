"""Signal computations: pure functions of point-in-time frames, one module per source (no I/O).

``healthscore.pipeline.signals`` reads the frames through ``healthscore.warehouse.pointintime``, calls
``compute_signals`` and ``apply_dimension_status``, and writes ``account_signals``. Which signals exist, and
which source feeds each, is the registry's (``healthscore.sources.registry``, ``signals=``): the pipeline
checks that ``compute_signals`` returns exactly those.

Definitions (windows end at as-of; counts and flags are 0, not NaN, for an account without records when the
source has data):

usage (``mixpanel``; licensed seats from HubSpot)
  active_user_pct       mean daily active users over the covered days of the last 30 / licensed seats x 100,
                        capped at 100. The export only yields DAILY distinct users, so this is a DAU-based
                        ratio (lower than the MAU ratio the catalogue's baselines assume).
  logins_per_user_week  logins in the last 28 days / (covered days / 7) / mean daily active users
                        (0 when nobody was active): how many sessions an active user opens.
  feature_breadth       distinct tracked feature events (``FEATURE_EVENTS``; logins, page views and
                        surveys excluded) used in the last 30 days / number of tracked features x 100.
  usage_trend_mom       mean DAU of the last 30 days vs the 30 before, % change; needs
                        ``MIN_TREND_COVERED_DAYS`` covered days in each window (0 when both are 0).
engagement (``hubspot`` meetings)
  csm_touchpoints_qtr   COMPLETED meetings of kind QBR or Check-in in the last 90 days.
  qbr_attended          the most recent QBR held or missed (COMPLETED / NO_SHOW; CANCELED ignored) in the
                        last 120 days: 1 if COMPLETED, 0 if NO_SHOW; 0 when there was none.
  training_sessions_qtr COMPLETED Training meetings in the last 90 days.
relationship
  latest_nps            the newest NPS answer (Mixpanel ``nps_latest``) within the last 365 days.
  csat_3m               mean of every CSAT answer in the last 90 days on a 1-5 scale: Mixpanel in-app
                        surveys (csat_sum / csat_responses) pooled with Zendesk ratings (good = 5, bad = 1).
  executive_sponsor     1 if a HubSpot contact with customer_role executive_sponsor has not left, else 0.
  active_champion       1 if a contact with customer_role champion has not left, else 0.
  contacts_engaged      HubSpot contacts on record that have not left the company.
  departments_engaged   distinct departments of those contacts (multi-threading).
support (``zendesk`` tickets, linked by the company's zendesk_organization_id)
  open_tickets          tickets whose status is new/open/pending/hold at as-of.
  p1_tickets_90d        urgent-priority tickets created in the last 90 days.
  resolution_time_trend median full-resolution minutes of tickets solved in the last 90 days vs the 90
                        days before, % change; NaN unless both windows have one.
  complaint_ratio       tickets created in the last 90 days tagged complaint* or escalat* / all of them.
value
  expansion_12m         HubSpot deals with deal_category expansion, closedwon, closed in the last 365 days.
  arr                   ``stripe``: 12 x MRR of the account's live subscriptions (not canceled or expired),
                        in dollars (0 when all are canceled); NaN without any subscription.
  contract_coverage     peak daily active users in the last 30 days / licensed seats x 100, capped at 100.
financial (``stripe``)
  days_past_due         whole days the oldest open/uncollectible invoice is past its due date at as-of, 0
                        when none is, counted only while the subscription snapshot shows past_due/unpaid.
  payment_status_ok     0 if a subscription is past_due/unpaid, an invoice is past due, or an invoice of
                        the last 90 days is uncollectible or needed more than one charge attempt; else 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from healthscore.signals import hubspot, mixpanel, stripe, zendesk
from healthscore.signals.common import FEATURE_EVENTS, PointInTime, SignalInputs, Signals

__all__ = ["FEATURE_EVENTS", "SOURCE_SIGNALS", "SignalInputs", "Signals", "SourcePart", "combine_parts",
           "compute_signals", "csat_3m"]

#: The pooled signal no single source computes: each part brings its CSAT (sum, count) per account.
POOLED = "csat_3m"


@dataclass
class SourcePart:
    """What one source's frames reduce to: its signals, and its share of the pooled csat_3m (sum, count per
    account; None when it has none). Small (per account): the pipeline keeps these, not the frames."""

    signals: Signals
    csat: tuple[pd.Series, pd.Series] | None = None


def _mixpanel(inputs: SignalInputs, pit: PointInTime, feature_events: Sequence[str]) -> SourcePart:
    usage = inputs.usage
    if isinstance(usage, pd.DataFrame):  # rows: reduced once for both the usage signals and the surveys
        usage = mixpanel.UsageTotals.of(usage, inputs.index, pit, feature_events)
    signals = mixpanel.usage_signals(usage, inputs.accounts["licensed_seats"], inputs.index, pit, feature_events)
    signals["latest_nps"] = mixpanel.latest_nps(inputs.nps, inputs.index)
    return SourcePart(signals, mixpanel.survey_totals(usage, inputs.index, pit))


def _hubspot(inputs: SignalInputs, pit: PointInTime, feature_events: Sequence[str]) -> SourcePart:
    frames, index = inputs.frames, inputs.index
    signals = hubspot.meeting_signals(frames["hubspot.meetings"], index, pit)
    signals.update(hubspot.contact_signals(frames["hubspot.contacts"], index))
    signals.update(hubspot.deal_signals(frames["hubspot.deals"], index, pit))
    return SourcePart(signals)


def _zendesk(inputs: SignalInputs, pit: PointInTime, feature_events: Sequence[str]) -> SourcePart:
    tickets = zendesk.tickets_by_account(inputs.frames["zendesk.tickets"], inputs.accounts)
    return SourcePart(zendesk.ticket_signals(tickets, inputs.index, pit),
                      zendesk.rating_totals(inputs.frames["zendesk.satisfaction_ratings"], tickets, pit))


def _stripe(inputs: SignalInputs, pit: PointInTime, feature_events: Sequence[str]) -> SourcePart:
    frames = inputs.frames
    return SourcePart(stripe.billing_signals(frames["stripe.customers"], frames["stripe.subscriptions"],
                                             frames["stripe.invoices"], inputs.accounts, inputs.index, pit))


#: Per source, its reduction of that source's frames alone (``SignalInputs`` holding only them), in the
#: order csat_3m pools them (Mixpanel surveys, then Zendesk ratings).
SOURCE_SIGNALS: dict[str, Callable[[SignalInputs, PointInTime, Sequence[str]], SourcePart]] = {
    "mixpanel": _mixpanel, "hubspot": _hubspot, "zendesk": _zendesk, "stripe": _stripe}


def compute_signals(inputs: SignalInputs, pit: PointInTime,
                    feature_events: Sequence[str] = FEATURE_EVENTS) -> Signals:
    """Every computable signal as a float Series indexed by account id (sources without data give NaN)."""
    return combine_parts(inputs.index, [part(inputs, pit, feature_events) for part in SOURCE_SIGNALS.values()])


def combine_parts(index: pd.Index, parts: Sequence[SourcePart]) -> Signals:
    """The sources' parts (in ``SOURCE_SIGNALS`` order) as one set of signals, csat_3m pooled from their shares."""
    out: Signals = {}
    for part in parts:
        out.update(part.signals)
    out[POOLED] = csat_3m(index, *(part.csat for part in parts if part.csat is not None))
    return out


def csat_3m(index: pd.Index, *totals: tuple[pd.Series, pd.Series] | None) -> pd.Series:
    """Pooled mean of CSAT answers from several sources' (sum, count) per account, in the order given."""
    sums = pd.Series(0.0, index=index)
    counts = pd.Series(0.0, index=index)
    for part in totals:
        if part is None:
            continue
        part_sums, part_counts = part
        sums = sums.add(part_sums, fill_value=0.0).reindex(index)
        counts = counts.add(part_counts, fill_value=0.0).reindex(index)
    return sums / counts.where(counts > 0)
