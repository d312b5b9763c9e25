"""The registry of sources: the one place that says which sources and objects the pipeline lands.

One ``SourceSpec`` per vendor says where it lives (Airflow connection id and pool), which client module
pages through it, which objects it lands and how (each object's mode, cursor, landing table, record id
and modification time), and what it feeds (health dimensions and signals). Everything that used to keep
its own list derives from here:

- the DAG's ``extract_<source>`` / ``validate_<source>`` tasks, their pools and connection ids, and the
  CRM-first wiring (``references``);
- the extractors: which objects to pull, snapshot versus incremental versus windowed re-read
  (``sources.hubspot``, ``sources.stripe``, ``pipeline.extract``), and the record id / modification time
  of a landed row (``Source.objects``);
- the validate task's objects (``pipeline.validate``) and the quality policy's source -> dimensions map
  (``quality.policy.SOURCE_DIMENSIONS``: what a blocked source takes out of the score);
- the warehouse's landing tables (``warehouse.models.LANDING_OBJECTS`` / ``LANDING_MODELS``);
- the point-in-time reads: which objects are snapshots, which cursor marks a source as landed.

Modes:

- ``incremental``: each batch pulls what changed after the cursor the previous batch committed; a record's
  truth is its newest landed version.
- ``snapshot``: each batch lists the object in full; the newest snapshot is the truth (a record missing
  from it is gone).
- ``windowed``: each batch re-reads a trailing window (``window_days``) before its cursor, because records
  keep changing after they are created (invoices get paid, events arrive late).

Light on purpose: standard library only, so a DAG file can import it at parse time. The client classes
are named as ``"module:Class"`` and imported only when a task needs one (``SourceSpec.client_class``).
Adding a source: one client module and one ``register(SourceSpec(...))`` here (README, "Adding a source").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from healthscore.sources.base import Source

Mode = Literal["incremental", "snapshot", "windowed"]
MODES: tuple[str, ...] = ("incremental", "snapshot", "windowed")
RAW = "raw"  # landing: the raw landing table raw_<source>_<object>, one row per record and batch


@dataclass(frozen=True)
class ObjectSpec:
    """One vendor object: how it is pulled, where its cursor and landing rows go, how to read a record.

    ``landing`` is ``"raw"`` (the table ``raw_<source>_<object>``) or the name of the table the object is
    folded into while it streams (Mixpanel events -> ``mixpanel_usage_daily``). ``extracted=False``
    marks an object derived from another one at landing (not pulled itself); ``validated`` says where
    its quality suite runs: ``"landed"`` in the validate task over the landed batch, ``"streamed"``
    while extracting (events are never landed raw); every verdict goes through the same gate.
    """

    name: str
    mode: Mode
    cursor: str
    id_field: str = "id"
    updated_field: str | None = None
    landing: str = RAW
    window_days: int | None = None
    extracted: bool = True
    validated: Literal["landed", "streamed"] = "landed"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"object {self.name!r}: mode {self.mode!r} is not one of {', '.join(MODES)}")
        if (self.mode == "windowed") != (self.window_days is not None):
            raise ValueError(f"object {self.name!r}: window_days is required for windowed mode, and only for it")


@dataclass(frozen=True)
class SourceSpec:
    """One source: connection, pool, client, objects, and the dimensions and signals it feeds.

    ``cursor_object`` is the object whose committed cursor marks the source as landed for a batch.
    ``references`` are sources whose batch this one's quality checks read (known company ids...): the
    DAG runs their extraction first. ``split`` says how the vendor's API lets one batch's extraction be cut
    into parts pulled side by side (``pipeline.extract_parts``): ``"days"`` (an export by date range),
    ``"modified_windows"`` (a search on the modification date); None: one extract task pulls it all.
    """

    name: str
    client: str
    conn_id: str
    pool: str
    objects: tuple[ObjectSpec, ...]
    dimensions: tuple[str, ...]
    signals: tuple[str, ...]
    cursor_object: str
    references: tuple[str, ...] = ()
    split: Literal["days", "modified_windows"] | None = None

    def __post_init__(self) -> None:
        names = [o.name for o in self.objects]
        if len(set(names)) != len(names):
            raise ValueError(f"source {self.name!r}: object names repeat: {names}")
        if self.cursor_object not in names:
            raise ValueError(f"source {self.name!r}: cursor_object {self.cursor_object!r} is not one of {names}")
        if ":" not in self.client:
            raise ValueError(f"source {self.name!r}: client must be 'module:Class', not {self.client!r}")

    def object(self, name: str) -> ObjectSpec:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(f"source {self.name!r} has no object {name!r}; it has {', '.join(self.object_names)}")

    @property
    def object_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objects)

    @property
    def extracted_objects(self) -> tuple[ObjectSpec, ...]:
        """Objects the extract task pulls, in order."""
        return tuple(o for o in self.objects if o.extracted)

    @property
    def validated_objects(self) -> tuple[str, ...]:
        """Objects the validate task checks over their landed batch, in order."""
        return tuple(o.name for o in self.objects if o.validated == "landed")

    @property
    def streams_validation(self) -> bool:
        """Some object is validated while it streams: the extract task needs the quality context."""
        return any(o.validated == "streamed" for o in self.objects)

    def mode(self, obj: str) -> Mode:
        return self.object(obj).mode

    def client_class(self) -> type[Source]:
        """The vendor client class (imported now: requests, tenacity, the vendor module)."""
        module, _, attr = self.client.partition(":")
        return getattr(import_module(module), attr)


_REGISTRY: dict[str, SourceSpec] = {}


def register(spec: SourceSpec) -> SourceSpec:
    """Add a source. Consumers that build tables or tasks from the registry read it when they are
    imported (the warehouse's landing models, the DAG at parse time): register before importing them."""
    if spec.name in _REGISTRY:
        raise ValueError(f"source {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def sources() -> tuple[SourceSpec, ...]:
    """Every registered source, in registration order (the DAG's and the reports' order)."""
    return tuple(_REGISTRY.values())


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def source(name: str) -> SourceSpec:
    """One source's declaration; KeyError lists the registered ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; registered: {', '.join(_REGISTRY)}") from None


def _pairs(keep: Iterable[tuple[SourceSpec, ObjectSpec]]) -> tuple[tuple[str, str], ...]:
    return tuple((s.name, o.name) for s, o in keep)


def _all_objects() -> Iterable[tuple[SourceSpec, ObjectSpec]]:
    return ((s, o) for s in _REGISTRY.values() for o in s.objects)


def landing_objects() -> tuple[tuple[str, str], ...]:
    """(source, object) of every raw landing table."""
    return _pairs((s, o) for s, o in _all_objects() if o.landing == RAW)


def snapshot_objects() -> frozenset[tuple[str, str]]:
    """(source, object) pairs landed as full snapshots: the newest snapshot is the truth."""
    return frozenset(_pairs((s, o) for s, o in _all_objects() if o.mode == "snapshot"))


def cursor_objects() -> dict[str, str]:
    """Source -> the object whose committed cursor marks the source as landed for a batch."""
    return {s.name: s.cursor_object for s in _REGISTRY.values()}


def signal_ids() -> frozenset[str]:
    """Every signal some source feeds: the signals the pipeline computes (``pipeline.signals`` checks that
    ``healthscore.signals.compute_signals`` returns exactly these; a model using another one is refused)."""
    return frozenset(s for spec in _REGISTRY.values() for s in spec.signals)


def source_dimensions() -> dict[str, tuple[str, ...]]:
    """Source -> the health dimensions computed from it (blocked together when its data is unusable)."""
    return {s.name: s.dimensions for s in _REGISTRY.values()}


def quality_objects() -> tuple[tuple[str, str], ...]:
    """(source, object) of every object with a quality suite (landed or streamed)."""
    return _pairs(_all_objects())


# ---- the four sources ----------------------------------------------------------------------------------
register(SourceSpec(
    name="hubspot", client="healthscore.sources.hubspot:HubSpotSource", conn_id="crm_hubspot", pool="hubspot_api",
    objects=(
        ObjectSpec("companies", "incremental", "newest hs_lastmodifieddate seen (epoch ms); search from it",
                   updated_field="properties.hs_lastmodifieddate"),
        ObjectSpec("contacts", "incremental", "newest lastmodifieddate seen (epoch ms); search from it",
                   updated_field="properties.lastmodifieddate"),
        # Search answers carry no associations: deals/meetings get their company from the v4 associations
        # batch read, and deletions since the cursor land as tombstones (archived records).
        ObjectSpec("deals", "incremental", "newest hs_lastmodifieddate seen (epoch ms); search from it",
                   updated_field="properties.hs_lastmodifieddate"),
        ObjectSpec("meetings", "incremental", "newest hs_lastmodifieddate seen (epoch ms); search from it",
                   updated_field="properties.hs_lastmodifieddate"),
        ObjectSpec("owners", "snapshot", "none (the owners list has no filter)", updated_field="updatedAt"),
    ),
    dimensions=("relationship", "engagement", "value"),
    signals=("csm_touchpoints_qtr", "qbr_attended", "training_sessions_qtr", "executive_sponsor", "active_champion",
             "contacts_engaged", "departments_engaged", "expansion_12m"),
    cursor_object="companies", split="modified_windows",
))
register(SourceSpec(
    name="zendesk", client="healthscore.sources.zendesk:ZendeskSource", conn_id="support_zendesk",
    pool="zendesk_api",
    objects=(
        ObjectSpec("tickets", "incremental", "Zendesk's after_cursor of the incremental export",
                   updated_field="updated_at"),
        ObjectSpec("satisfaction_ratings", "incremental", "newest created_at seen (epoch s), re-read inclusively",
                   updated_field="updated_at"),
    ),
    dimensions=("support", "relationship"),
    signals=("open_tickets", "p1_tickets_90d", "resolution_time_trend", "complaint_ratio", "csat_3m"),
    cursor_object="tickets", references=("hubspot",),
))
register(SourceSpec(
    name="stripe", client="healthscore.sources.stripe:StripeSource", conn_id="billing_stripe", pool="stripe_api",
    objects=(
        # Stripe lists filter on creation only: after a first full list, each batch reads what changed from
        # the Events API (the object each event carries, newest version); older than its 30-day retention:
        # listed in full again (``sources.stripe``).
        ObjectSpec("customers", "incremental", "events:<epoch s>; customer.created/updated events from it",
                   updated_field="created"),
        ObjectSpec("subscriptions", "incremental", "events:<epoch s>; customer.subscription.* events from it",
                   updated_field="created"),
        # A day of invoice events before the cursor as well: the batch then holds every invoice created in
        # the 48 h the freshness check looks at, as the old 120-day re-read of creation dates did.
        ObjectSpec("invoices", "windowed", "events:<epoch s>; invoice.* events from 1 day before it",
                   updated_field="created", window_days=1),
    ),
    dimensions=("financial", "value"),
    signals=("arr", "days_past_due", "payment_status_ok"),
    cursor_object="invoices", references=("hubspot",),
))
register(SourceSpec(
    name="mixpanel", client="healthscore.sources.mixpanel:MixpanelSource", conn_id="product_mixpanel",
    pool="mixpanel_api",
    objects=(
        # Streamed one day at a time, validated while streaming, folded per company-day, never landed raw;
        # each batch re-pulls the trailing days for late events and de-duplicates on $insert_id.
        ObjectSpec("events", "windowed", "the batch date (YYYY-MM-DD)", id_field="properties.$insert_id",
                   updated_field="properties.time", landing="mixpanel_usage_daily", window_days=3,
                   validated="streamed"),
        # Derived at landing (not pulled): one row per company and event day, record id "company_id:event_date".
        ObjectSpec("usage_daily", "windowed", "kept on events", id_field="company_id:event_date",
                   landing="mixpanel_usage_daily", window_days=3, extracted=False),
    ),
    # contract coverage = active users / licensed seats is a value signal with source: product
    dimensions=("usage", "relationship", "value"),
    signals=("active_user_pct", "logins_per_user_week", "feature_breadth", "usage_trend_mom", "latest_nps",
             "csat_3m", "contract_coverage"),
    cursor_object="events", references=("hubspot",), split="days",
))
