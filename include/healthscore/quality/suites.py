"""Expectation suites as code: one declarative table of checks per source object, turned into GX suites.

Imports neither pandas nor GX at module level (the schema registry and GX are loaded on use).

Each source (hubspot, zendesk, stripe, mixpanel) has one suite per landed object, named
``<source>.<object>`` (a GX suite validates one frame). ``CHECKS`` below is the one place a check is
declared; ``plan`` adds the checks every object gets and the ones that depend on the run (reference
sets, freshness, volume), ``build_suite`` turns a plan into ``gx.expectations.*`` objects whose ``meta``
carries ``severity`` ("critical" | "warning"), a human ``reason``, the check id and its scope.

Every object automatically gets: existence and dtype of its required columns (``ExpectColumnToExist``,
``ExpectColumnTypeToBe`` -- the GX 1.x schema check that understands pandas nullable dtypes, where
``ExpectColumnValuesToBeInTypeList`` cannot match pandas' ``str``/``Int64``), a unique ``record_id``
(warning for Mixpanel events: the export is not de-duplicated, the usage aggregate drops repeats),
a null ``parse_errors`` (an unparseable vendor value), freshness where it makes sense (``FRESHNESS``)
and volume against the trailing median when history exists.

Scopes and default severities:

* ``row``    -- identity, required values, ranges, allowed values, references: a failing row is
  quarantined when critical, only flagged when a warning.
* ``column`` -- a missing column or wrong dtype: every row of the batch is unusable (all quarantined).
* ``batch``  -- freshness (default critical) and volume (default warning): nothing to quarantine; a
  critical failure blocks the source (see ``healthscore.quality.gate``).

Referential checks are written as ``ExpectColumnValuesToNotBeInSet`` over the batch's keys that are
missing from the known set in the context. That is row-for-row the same test as ``...ToBeInSet(known)``
but its parameter is the handful of unknown keys instead of every known id: GX copies, serialises and
renders a value set into every result and Data Docs page (100k known ids: 11 s and a 5 MB page per run).

The suites are versioned with the repo: ``SUITE_VERSION`` (bump it when a check changes meaning) and a
fingerprint of the plan are stored in each suite's meta and in every result's details.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from healthscore.quality.policy import QualityThresholds, Severity

if TYPE_CHECKING:
    import great_expectations as gx

SUITE_VERSION = "1"

#: Reference sets a ``known`` check can use: name -> (ValidationContext attribute, what a value is).
REFERENCES: dict[str, tuple[str, str]] = {
    "companies": ("known_company_ids", "CRM company"),
    "owners": ("known_owner_ids", "HubSpot owner"),
    "organizations": ("known_organization_ids", "Zendesk organization mapped to a CRM company"),
    "customers": ("known_customer_ids", "Stripe customer"),
    "tickets": ("known_ticket_ids", "Zendesk ticket"),
}

ROW_KINDS = frozenset({"parse", "not_null", "unique", "range", "in_set", "known", "pair"})
COLUMN_KINDS = frozenset({"exists", "type"})
BATCH_KINDS = frozenset({"fresh", "volume"})

_GX_TYPES = {
    "exists": "expect_column_to_exist", "type": "expect_column_type_to_be",
    "parse": "expect_column_values_to_be_null", "not_null": "expect_column_values_to_not_be_null",
    "unique": "expect_column_values_to_be_unique", "range": "expect_column_values_to_be_between",
    "in_set": "expect_column_values_to_be_in_set", "known": "expect_column_values_to_not_be_in_set",
    "pair": "expect_column_pair_values_a_to_be_greater_than_b", "fresh": "expect_column_max_to_be_between",
    "volume": "expect_table_row_count_to_be_between",
}


@dataclass(frozen=True)
class Check:
    """One expectation, declaratively. ``pair`` means ``column >= other``; ``known`` uses ``ref``."""

    kind: str
    column: str | None
    severity: Severity = "critical"
    reason: str = ""
    min_value: float | None = None
    max_value: float | None = None
    values: tuple[Any, ...] | None = None
    ref: str | None = None
    other: str | None = None
    dtype: str | None = None
    hours: float | None = None

    @property
    def scope(self) -> str:
        return "batch" if self.kind in BATCH_KINDS else "column" if self.kind in COLUMN_KINDS else "row"

    @property
    def expectation_type(self) -> str:
        return _GX_TYPES[self.kind]

    @property
    def columns(self) -> str | None:
        """The ``column`` value reported in quality_results (``a,b`` for a pair)."""
        return f"{self.column},{self.other}" if self.other else self.column

    @property
    def id(self) -> str:
        """Unique within a suite; the ``expectation`` recorded on quarantine rows."""
        return f"{self.expectation_type}({self.columns or ''})"

    def param(self, name: str) -> str:
        """Name of a run-time suite parameter of this check."""
        return f"{name}__{self.column or 'table'}"


# ---- the declarative table -----------------------------------------------------------------------
def not_null(column: str, reason: str, severity: Severity = "critical") -> Check:
    return Check("not_null", column, severity, reason)


def at_least(column: str, low: float, reason: str, high: float | None = None,
             severity: Severity = "critical") -> Check:
    return Check("range", column, severity, reason, min_value=low, max_value=high)


def one_of(column: str, values: Collection[Any], reason: str, severity: Severity = "critical") -> Check:
    return Check("in_set", column, severity, reason, values=tuple(values))


def known(column: str, ref: str, reason: str, severity: Severity = "critical") -> Check:
    return Check("known", column, severity, reason, ref=ref)


def at_least_column(column: str, other: str, reason: str, severity: Severity = "warning") -> Check:
    return Check("pair", column, severity, reason, other=other)


TICKET_STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
TICKET_PRIORITIES = ("urgent", "high", "normal", "low")  # null is allowed: Zendesk leaves it unset
SATISFACTION_SCORES = ("unoffered", "offered", "good", "bad", "good_with_comment", "bad_with_comment")
SUBSCRIPTION_STATUSES = ("active", "past_due", "canceled", "unpaid", "trialing", "incomplete",
                         "incomplete_expired", "paused")
INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")

_UNLINKED = "not linked to any account: it contributes nothing, but is not wrong"

CHECKS: dict[tuple[str, str], tuple[Check, ...]] = {
    ("hubspot", "companies"): (
        not_null("company_id", "a company without an id cannot be joined to anything"),
        not_null("name", "a nameless company cannot be shown to its CSM or matched to billing"),
        at_least("licensed_seats", 0, "negative seats make every per-seat usage ratio meaningless"),
        at_least("arr_cents", 0, "ARR cannot be negative"),
        known("owner_id", "owners", "unknown CSM owner: playbook tasks would have no assignee (score unaffected)",
              severity="warning"),
    ),
    ("hubspot", "contacts"): (
        not_null("contact_id", "identity"),
        not_null("email", "a contact without email cannot be matched to product users or ticket requesters"),
        known("company_id", "companies", "the contact points at a company the CRM does not have"),
        not_null("company_id", f"contact {_UNLINKED}", severity="warning"),
    ),
    ("hubspot", "deals"): (
        not_null("deal_id", "identity"),
        not_null("deal_stage", "without a stage a deal cannot count as won, lost or open expansion"),
        at_least("amount_cents", 0, "a deal amount cannot be negative"),
        known("company_id", "companies", "the deal points at a company the CRM does not have"),
        not_null("company_id", f"deal {_UNLINKED} (HubSpot search results carry no associations)",
                 severity="warning"),
    ),
    ("hubspot", "meetings"): (
        not_null("meeting_id", "identity"),
        not_null("meeting_ts", "a meeting without a time cannot be placed in a quarter"),
        not_null("outcome", "without an outcome a meeting cannot count as a held touchpoint"),
        known("company_id", "companies", "the meeting points at a company the CRM does not have"),
        not_null("company_id", f"meeting {_UNLINKED} (HubSpot search results carry no associations)",
                 severity="warning"),
    ),
    ("hubspot", "owners"): (
        not_null("owner_id", "identity"),
        not_null("email", "alerts and digests are addressed to the owner's email", severity="warning"),
    ),
    ("zendesk", "tickets"): (
        not_null("ticket_id", "identity"),
        not_null("status", "a ticket without status cannot count as open or solved"),
        one_of("status", TICKET_STATUSES, "Zendesk ticket statuses"),
        one_of("priority", TICKET_PRIORITIES, "Zendesk priorities (or none); P1 counts depend on it"),
        known("organization_id", "organizations", "the ticket's organization maps to no CRM company"),
        not_null("organization_id", f"ticket {_UNLINKED}", severity="warning"),
        one_of("satisfaction_score", SATISFACTION_SCORES, "Zendesk satisfaction states", severity="warning"),
        at_least("full_resolution_minutes", 0, "durations cannot be negative"),
        at_least("first_reply_minutes", 0, "durations cannot be negative"),
        at_least("reopens", 0, "counts cannot be negative"),
        at_least("replies", 0, "counts cannot be negative"),
    ),
    ("zendesk", "satisfaction_ratings"): (
        not_null("rating_id", "identity"),
        not_null("score", "a rating without a score says nothing about CSAT"),
        one_of("score", SATISFACTION_SCORES, "Zendesk satisfaction scores"),
        known("ticket_id", "tickets", "the rating is about a ticket Zendesk never exported"),
        not_null("ticket_id", f"rating {_UNLINKED}", severity="warning"),
    ),
    ("stripe", "customers"): (
        not_null("customer_id", "identity"),
        not_null("email", "a billing customer without email cannot be dunned or matched"),
        known("hubspot_company_id", "companies", "metadata.hubspot_company_id names a company the CRM does not have"),
        not_null("hubspot_company_id", f"customer {_UNLINKED}", severity="warning"),
    ),
    ("stripe", "subscriptions"): (
        not_null("subscription_id", "identity"),
        not_null("status", "a subscription without status cannot count as active or churned"),
        one_of("status", SUBSCRIPTION_STATUSES, "Stripe subscription statuses"),
        at_least("quantity", 0, "seat quantity cannot be negative"),
        at_least("unit_amount", 0, "prices cannot be negative"),
        at_least("mrr_cents", 0, "MRR cannot be negative"),
        known("customer_id", "customers", "the subscription belongs to a customer Stripe never listed"),
        known("hubspot_company_id", "companies", "metadata.hubspot_company_id names a company the CRM does not have"),
    ),
    ("stripe", "invoices"): (
        not_null("invoice_id", "identity"),
        not_null("status", "an invoice without status cannot count as paid or overdue"),
        one_of("status", INVOICE_STATUSES, "Stripe invoice statuses"),
        at_least("amount_due", 0, "amounts cannot be negative"),
        at_least("amount_paid", 0, "amounts cannot be negative"),
        known("customer_id", "customers", "the invoice belongs to a customer Stripe never listed"),
    ),
    ("mixpanel", "events"): (
        not_null("insert_id", "$insert_id is the de-duplication key"),
        not_null("event", "an event without a name cannot be classified"),
        not_null("event_ts", "an event without a time cannot be placed in a day"),
        not_null("distinct_id", "an event without a user cannot count toward active users"),
        known("company_id", "companies", "the event's company_id is not a CRM company"),
        not_null("company_id", f"event {_UNLINKED}", severity="warning"),
        at_least("nps_score", 0, "NPS answers are 0..10", high=10),
        at_least("csat_score", 1, "CSAT answers are 1..5", high=5),
    ),
    ("mixpanel", "usage_daily"): (
        known("company_id", "companies", "usage aggregated for a company the CRM does not have"),
        not_null("event_date", "a usage row without a day cannot be trended"),
        at_least("active_users", 0, "counts cannot be negative"),
        at_least("licensed_seats", 0, "negative seats make active-user share meaningless"),
        at_least_column("licensed_seats", "active_users",
                        "more active users than licensed seats: over-deployment or stale seat data "
                        "(an expansion signal, not a bad row)"),
    ),
}

@dataclass(frozen=True)
class Scope:
    """Rows outside what the product scores, by design: ``column`` names no known ``ref`` AND every
    ``where`` column (lower-cased) is one of its values AND no ``unless`` column is. Filtered and counted
    (``out_of_scope``), never quarantined: they are not wrong, and a clean day must give a clean report."""

    reason: str
    column: str
    ref: str
    where: dict[str, tuple[str, ...]]
    unless: dict[str, tuple[str, ...]]


#: Out-of-scope rules per object. Prospects have deals in any real CRM before they become customers; the
#: CRM lists only customers as companies here, so a new-business deal not yet won names an unknown company.
#: A won new-business deal, a renewal or an expansion of an unknown company is still a broken reference.
SCOPES: dict[tuple[str, str], Scope] = {
    ("hubspot", "deals"): Scope("a prospect's new-business deal: its company is not a customer (yet)",
                                column="company_id", ref="companies", where={"deal_category": ("newbusiness",)},
                                unless={"deal_stage": ("closedwon",)}),
}

#: Freshness per object: (timestamp column, hours). "default" = QualityThresholds.default_freshness_hours;
#: None = no freshness check (snapshots and objects without a steady daily flow). Overridable by config.
FRESHNESS: dict[tuple[str, str], tuple[str, float | str | None]] = {
    ("hubspot", "companies"): ("updated_ts", None),   # full snapshot; modifications are sparse
    ("hubspot", "contacts"): ("updated_ts", None),    # days can pass without a contact change
    ("hubspot", "deals"): ("updated_ts", None),       # a few per week in a small portfolio
    ("hubspot", "meetings"): ("updated_ts", 72.0),    # no meetings over a weekend
    ("hubspot", "owners"): ("updated_ts", None),      # reference data
    ("zendesk", "tickets"): ("updated_ts", "default"),
    ("zendesk", "satisfaction_ratings"): ("created_ts", 168.0),  # sparse: a few per week
    ("stripe", "customers"): ("created_ts", None),    # only a creation time; new customers are rare
    ("stripe", "subscriptions"): ("created_ts", None),  # full snapshot, no modification time
    ("stripe", "invoices"): ("created_ts", "default"),
    ("mixpanel", "events"): ("event_ts", "default"),
    ("mixpanel", "usage_daily"): ("event_date", None),  # derived from events, whose freshness is checked
}


def freshness_hours(source: str, obj: str, thresholds: QualityThresholds) -> float | None:
    """Effective freshness window of an object (config override, else the table's default)."""
    key = f"{source}.{obj}"
    if key in thresholds.freshness_hours:
        return thresholds.freshness_hours[key]
    hours = FRESHNESS.get((source, obj), (None, None))[1]
    return thresholds.default_freshness_hours if hours == "default" else hours  # type: ignore[return-value]


def declared_checks(source: str, obj: str) -> tuple[Check, ...]:
    """Checks every run of this object carries, before run-dependent ones are added or dropped."""
    from healthscore.sources.schemas import PARSE_ERRORS, schema

    spec = schema(source, obj)
    checks: list[Check] = []
    for name in spec.required:
        dtype = spec.dtypes[name]
        checks.append(Check("exists", name, reason="required column (the flattener always emits it)"))
        checks.append(Check("type", name, reason=f"required column must be {dtype}", dtype=dtype))
    events = (source, obj) == ("mixpanel", "events")
    checks.append(Check("unique", "record_id", "warning" if events else "critical",
                        "Mixpanel's export repeats events; the usage aggregate drops repeats by $insert_id"
                        if events else "one record per id in a landed batch"))
    checks.append(Check("parse", PARSE_ERRORS, reason="a vendor value could not be parsed into its column type"))
    checks.extend(CHECKS.get((source, obj), ()))  # an object without declared checks gets the automatic ones
    return tuple(checks)


def plan(source: str, obj: str, *, thresholds: QualityThresholds, refs: Collection[str] = (),
         volume: bool = False) -> tuple[Check, ...]:
    """The checks of one run: declared ones whose reference set is available, plus freshness and volume."""
    checks = [c for c in declared_checks(source, obj) if c.kind != "known" or c.ref in refs]
    hours = freshness_hours(source, obj, thresholds)
    if hours is not None:
        column = FRESHNESS[(source, obj)][0]
        checks.append(Check("fresh", column, thresholds.freshness_severity,
                            f"newest {column} within {hours:g} h of the data interval end", hours=hours))
    if volume:
        checks.append(Check("volume", None, thresholds.volume_severity,
                            f"row count within {thresholds.volume_k:g}x of the trailing "
                            f"{thresholds.volume_window_days}-day median"))
    return tuple(checks)


def full_plan(source: str, obj: str, thresholds: QualityThresholds | None = None) -> tuple[Check, ...]:
    """Every check the object can have (all references available, volume history present)."""
    return plan(source, obj, thresholds=thresholds or QualityThresholds(), refs=REFERENCES, volume=True)


def suite_name(source: str, obj: str) -> str:
    return f"{source}.{obj}"


def fingerprint(checks: tuple[Check, ...]) -> str:
    """Short stable hash of a plan, stored with results so a change of checks is visible."""
    text = json.dumps([asdict(c) for c in checks], sort_keys=True, default=str)
    return hashlib.sha256(f"{SUITE_VERSION}|{text}".encode()).hexdigest()[:12]


def build_suite(source: str, obj: str, checks: tuple[Check, ...]) -> gx.ExpectationSuite:
    """A GX suite for one plan; run-time values (unknown keys, freshness bound, volume bounds) are
    ``$PARAMETER`` references filled by the gate."""
    import great_expectations as gx

    # Expectations go through the constructor: add_expectation() needs an active data context.
    return gx.ExpectationSuite(
        name=suite_name(source, obj),
        expectations=[_expectation(check) for check in checks],
        meta={"healthscore": {"suite_version": SUITE_VERSION, "fingerprint": fingerprint(checks),
                              "source": source, "object": obj}},
    )


def _expectation(check: Check) -> Any:
    import great_expectations.expectations as gxe

    meta = {"severity": check.severity, "reason": check.reason, "check": check.id, "scope": check.scope}
    col = check.column
    match check.kind:
        case "exists":
            return gxe.ExpectColumnToExist(column=col, meta=meta)
        case "type":
            return gxe.ExpectColumnTypeToBe(column=col, type_=check.dtype, meta=meta)
        case "parse":
            return gxe.ExpectColumnValuesToBeNull(column=col, meta=meta)
        case "not_null":
            return gxe.ExpectColumnValuesToNotBeNull(column=col, meta=meta)
        case "unique":
            return gxe.ExpectColumnValuesToBeUnique(column=col, meta=meta)
        case "range":
            return gxe.ExpectColumnValuesToBeBetween(column=col, min_value=check.min_value,
                                                     max_value=check.max_value, meta=meta)
        case "in_set":
            return gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(check.values or ()), meta=meta)
        case "known":
            return gxe.ExpectColumnValuesToNotBeInSet(column=col, value_set={"$PARAMETER": check.param("unknown")},
                                                      meta=meta)
        case "pair":
            return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=col, column_B=check.other, or_equal=True, ignore_row_if="either_value_is_missing",
                meta=meta)
        case "fresh":
            return gxe.ExpectColumnMaxToBeBetween(column=col, min_value={"$PARAMETER": check.param("fresh_min")},
                                                  meta=meta)
        case "volume":
            return gxe.ExpectTableRowCountToBeBetween(min_value={"$PARAMETER": "volume_min"},
                                                      max_value={"$PARAMETER": "volume_max"}, meta=meta)
    raise ValueError(f"unknown check kind {check.kind!r}")


def all_suites(thresholds: QualityThresholds | None = None) -> dict[str, gx.ExpectationSuite]:
    """Every suite at its fullest (Data Docs' expectation pages, reviews)."""
    from healthscore.sources.schemas import SCHEMAS

    return {suite_name(s, o): build_suite(s, o, full_plan(s, o, thresholds)) for (s, o) in SCHEMAS}
