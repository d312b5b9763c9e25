"""Record schemas: vendor JSON -> typed, flat DataFrames the quality gate and scoring read.

One registry (``SCHEMAS``) says, per landed object, which columns exist, their dtype and where each
value lives in the vendor record; ``flatten`` is the only code that walks vendor JSON. Adding a field
means adding one ``Col`` line here, and the expectation suites pick its name and dtype up from it.

Conventions (every object):

* ``record_id`` (str) is the landing key, computed exactly like ``SourceObject.record_id``
  (``str(value at the id path)``, so a missing id becomes ``"None"``), which lets the caller find the
  original payload of a quarantined row by ``record_id``.
* Instants are UTC epoch **seconds** in nullable ``Int64`` columns named ``*_ts`` (vendors send ISO
  strings, epoch seconds or epoch milliseconds; all are normalised). Calendar dates (no time of day)
  are ISO ``YYYY-MM-DD`` strings named ``*_date``.
* Money is integer **cents** (``Int64``): HubSpot's decimal-dollar strings (``arr``, ``amount``) are
  converted; Stripe already sends cents.
* Dtypes are nullable pandas dtypes: ``str`` (pandas' default string dtype), ``Int64``, ``Float64``,
  ``boolean``. Empty strings count as missing (HubSpot's "unset").
* Nothing raises on bad values: a value that cannot be parsed becomes null, and the row's
  ``parse_errors`` column names it with the raw value (e.g. ``licensed_seats='ten'``). The suites expect
  ``parse_errors`` to be null, so an unparseable value is caught even in a column where null is legal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import numpy as np
import pandas as pd

from healthscore.sources import registry

DTYPES = ("str", "Int64", "Float64", "boolean")
PARSE_ERRORS = "parse_errors"
_EPOCH = pd.Timestamp(0, tz="UTC")
_TRUE = {"true", "1", "yes"}
_CONTAINERS = (dict, list, tuple, set)
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True)
class Col:
    """One flattened column: dtype, where its value lives (first non-missing path wins), how to parse it.

    ``parse``: ``str`` | ``int`` | ``float`` | ``cents`` (decimal dollars -> cents) | ``epoch`` (any vendor
    timestamp -> epoch seconds) | ``date`` (-> ``YYYY-MM-DD``) | ``bool`` | ``tags`` (list -> space-joined).
    ``required`` columns get existence and dtype expectations in the suites.
    """

    name: str
    paths: tuple[str, ...]
    parse: str = "str"
    required: bool = False
    doc: str = ""

    @property
    def dtype(self) -> str:
        return _PARSE_DTYPE[self.parse]


_PARSE_DTYPE = {"str": "str", "tags": "str", "date": "str", "int": "Int64", "epoch": "Int64", "cents": "Int64",
                "float": "Float64", "bool": "boolean"}


@dataclass(frozen=True)
class ObjectSchema:
    """The flat shape of one landed object."""

    source: str
    obj: str
    id_paths: tuple[str, ...]
    columns: tuple[Col, ...]
    derive: Callable[[pd.DataFrame], None] | None = None
    derived: tuple[tuple[str, str], ...] = ()
    doc: str = ""

    @property
    def dtypes(self) -> dict[str, str]:
        """Every output column -> dtype, in output order (record_id first, parse_errors last)."""
        out = {"record_id": "str"}
        out.update({c.name: c.dtype for c in self.columns})
        out.update(dict(self.derived))
        out[PARSE_ERRORS] = "str"
        return out

    @property
    def required(self) -> tuple[str, ...]:
        return ("record_id", *(c.name for c in self.columns if c.required))


def C(name: str, *paths: str, parse: str = "str", required: bool = False, doc: str = "") -> Col:
    """Shorthand for the registry table: the path defaults to the column name."""
    return Col(name, paths or (name,), parse, required, doc)


# ---- per-object derived columns ------------------------------------------------------------------
_MONTHS_PER_INTERVAL = {"day": 12 / 365, "week": 12 / 52, "month": 1.0, "year": 12.0}


def _subscription_mrr(frame: pd.DataFrame) -> None:
    """mrr_cents = quantity x unit_amount / months per billing interval (first item)."""
    months = frame["billing_interval"].map(_MONTHS_PER_INTERVAL).astype("Float64")
    months = months * frame["billing_interval_count"].fillna(1).astype("Float64")
    mrr = frame["quantity"].astype("Float64") * frame["unit_amount"].astype("Float64") / months
    frame["mrr_cents"] = mrr.round().astype("Int64")


HUBSPOT_COMPANY = ("associations.companies.results.0.id", "properties.associatedcompanyid")

SCHEMAS: dict[tuple[str, str], ObjectSchema] = {(s.source, s.obj): s for s in (
    ObjectSchema("hubspot", "companies", ("id",), (
        C("company_id", "id", required=True),
        C("name", "properties.name", required=True),
        C("domain", "properties.domain"),
        C("industry", "properties.industry"),
        C("owner_id", "properties.hubspot_owner_id", required=True),
        C("lifecycle_stage", "properties.lifecyclestage"),
        C("segment", "properties.customer_segment"),
        C("plan_tier", "properties.plan_tier"),
        C("customer_status", "properties.customer_status"),
        C("employees", "properties.numberofemployees", parse="int"),
        C("licensed_seats", "properties.licensed_seats", parse="int", required=True),
        C("arr_cents", "properties.arr", parse="cents", required=True, doc="HubSpot 'arr' (dollars) in cents"),
        C("renewal_date", "properties.contract_renewal_date", parse="date"),
        C("customer_since_ts", "properties.customer_since", parse="epoch"),
        C("created_ts", "createdAt", "properties.createdate", parse="epoch", required=True),
        C("updated_ts", "updatedAt", "properties.hs_lastmodifieddate", parse="epoch", required=True),
    )),
    ObjectSchema("hubspot", "contacts", ("id",), (
        C("contact_id", "id", required=True),
        C("company_id", *HUBSPOT_COMPANY, required=True),
        C("email", "properties.email", required=True),
        C("first_name", "properties.firstname"),
        C("last_name", "properties.lastname"),
        C("job_title", "properties.jobtitle"),
        C("department", "properties.department"),
        C("role", "properties.customer_role"),
        C("left_company", "properties.left_company", parse="bool"),
        C("created_ts", "createdAt", "properties.createdate", parse="epoch", required=True),
        C("updated_ts", "updatedAt", "properties.lastmodifieddate", parse="epoch", required=True),
    )),
    ObjectSchema("hubspot", "deals", ("id",), (
        C("deal_id", "id", required=True),
        C("company_id", *HUBSPOT_COMPANY, required=True),
        C("deal_name", "properties.dealname"),
        C("deal_stage", "properties.dealstage", required=True),
        C("pipeline", "properties.pipeline"),
        C("deal_type", "properties.dealtype"),
        C("deal_category", "properties.deal_category"),
        C("amount_cents", "properties.amount", parse="cents", required=True, doc="HubSpot 'amount' in cents"),
        C("close_ts", "properties.closedate", parse="epoch"),
        C("created_ts", "createdAt", "properties.createdate", parse="epoch", required=True),
        C("updated_ts", "updatedAt", "properties.hs_lastmodifieddate", parse="epoch", required=True),
    )),
    ObjectSchema("hubspot", "meetings", ("id",), (
        C("meeting_id", "id", required=True),
        C("company_id", *HUBSPOT_COMPANY, required=True),
        C("owner_id", "properties.hubspot_owner_id"),
        C("meeting_ts", "properties.hs_timestamp", parse="epoch", required=True),
        C("title", "properties.hs_meeting_title"),
        C("activity_type", "properties.hs_activity_type"),
        C("outcome", "properties.hs_meeting_outcome", required=True),
        C("created_ts", "createdAt", "properties.hs_createdate", parse="epoch", required=True),
        C("updated_ts", "updatedAt", "properties.hs_lastmodifieddate", parse="epoch", required=True),
    )),
    ObjectSchema("hubspot", "owners", ("id",), (
        C("owner_id", "id", required=True),
        C("email", "email", required=True),
        C("first_name", "firstName"),
        C("last_name", "lastName"),
        C("user_id", "userId", parse="int"),
        C("team", "teams.0.name"),
        C("archived", "archived", parse="bool"),
        C("created_ts", "createdAt", parse="epoch"),
        C("updated_ts", "updatedAt", parse="epoch", required=True),
    )),
    ObjectSchema("zendesk", "tickets", ("id",), (
        C("ticket_id", "id", parse="int", required=True),
        C("organization_id", "organization_id", parse="int", required=True),
        C("requester_id", "requester_id", parse="int"),
        C("status", "status", required=True),
        C("priority", "priority", required=True),
        C("ticket_type", "type"),
        C("channel", "via.channel"),
        C("tags", "tags", parse="tags", doc="space-joined"),
        C("satisfaction_score", "satisfaction_rating.score"),
        C("created_ts", "created_at", parse="epoch", required=True),
        C("updated_ts", "updated_at", parse="epoch", required=True),
        C("solved_ts", "metric_set.solved_at", parse="epoch"),
        C("full_resolution_minutes", "metric_set.full_resolution_time_in_minutes.calendar", parse="int"),
        C("first_reply_minutes", "metric_set.reply_time_in_minutes.calendar", parse="int"),
        C("reopens", "metric_set.reopens", parse="int"),
        C("replies", "metric_set.replies", parse="int"),
    ), doc="metric_set is merged into the ticket record by the extractor"),
    ObjectSchema("zendesk", "satisfaction_ratings", ("id",), (
        C("rating_id", "id", parse="int", required=True),
        C("ticket_id", "ticket_id", parse="int", required=True),
        C("score", "score", required=True),
        C("comment", "comment"),
        C("created_ts", "created_at", parse="epoch", required=True),
        C("updated_ts", "updated_at", parse="epoch"),
    )),
    ObjectSchema("stripe", "customers", ("id",), (
        C("customer_id", "id", required=True),
        C("hubspot_company_id", "metadata.hubspot_company_id", required=True),
        C("email", "email", required=True),
        C("name", "name"),
        C("currency", "currency"),
        C("delinquent", "delinquent", parse="bool"),
        C("balance", "balance", parse="int"),
        C("created_ts", "created", parse="epoch", required=True),
    )),
    ObjectSchema("stripe", "subscriptions", ("id",), (
        C("subscription_id", "id", required=True),
        C("customer_id", "customer", required=True),
        C("hubspot_company_id", "metadata.hubspot_company_id"),
        C("status", "status", required=True),
        C("quantity", "items.data.0.quantity", "quantity", parse="int", required=True),
        C("unit_amount", "items.data.0.price.unit_amount", "plan.amount", parse="int", required=True),
        C("billing_interval", "items.data.0.price.recurring.interval", "plan.interval"),
        C("billing_interval_count", "items.data.0.price.recurring.interval_count", "plan.interval_count",
          parse="int"),
        C("product", "items.data.0.price.product", "plan.product"),
        C("current_period_start_ts", "current_period_start", "items.data.0.current_period_start", parse="epoch"),
        C("current_period_end_ts", "current_period_end", "items.data.0.current_period_end", parse="epoch"),
        C("contract_end_ts", "metadata.contract_end", parse="epoch"),
        C("canceled_ts", "canceled_at", parse="epoch"),
        C("created_ts", "created", parse="epoch", required=True),
    ), derive=_subscription_mrr, derived=(("mrr_cents", "Int64"),),
        doc="quantity/price from the first subscription item; mrr_cents derived from them"),
    ObjectSchema("stripe", "invoices", ("id",), (
        C("invoice_id", "id", required=True),
        C("customer_id", "customer", required=True),
        C("subscription_id", "parent.subscription_details.subscription", "subscription"),
        C("status", "status", required=True),
        C("amount_due", "amount_due", parse="int", required=True),
        C("amount_paid", "amount_paid", parse="int"),
        C("amount_remaining", "amount_remaining", parse="int"),
        C("due_ts", "due_date", parse="epoch"),
        C("paid_ts", "status_transitions.paid_at", parse="epoch"),
        C("period_start_ts", "period_start", parse="epoch"),
        C("period_end_ts", "period_end", parse="epoch"),
        C("attempt_count", "attempt_count", parse="int"),
        C("collection_method", "collection_method"),
        C("created_ts", "created", parse="epoch", required=True),
    )),
    ObjectSchema("mixpanel", "events", ("properties.$insert_id",), (
        C("insert_id", "properties.$insert_id", required=True),
        C("event", "event", required=True),
        C("event_ts", "properties.time", parse="epoch", required=True),
        C("distinct_id", "properties.distinct_id", required=True),
        C("company_id", "properties.company_id", required=True),
        C("feature", "properties.feature"),
        C("nps_score", "properties.nps_score", parse="float"),
        C("csat_score", "properties.csat_score", parse="float"),
    )),
    ObjectSchema("mixpanel", "usage_daily", ("company_id", "event_date"), (
        C("company_id", required=True),
        C("event_date", parse="date", required=True),
        C("active_users", parse="int", required=True),
        C("licensed_seats", parse="int", required=True),
        C("event_count", parse="int"),
    ), doc="per company-day aggregate of events joined to HubSpot licensed_seats; record_id 'company:date'"),
)}

#: (source, object) pairs that have a schema here, in registry order.
OBJECTS: tuple[tuple[str, str], ...] = tuple(SCHEMAS)


def schema(source: str, obj: str) -> ObjectSchema:
    """The schema of one object: the table above, else the ``SCHEMAS`` of the registered source's client
    module (a new source brings its schemas in its own module). KeyError lists what exists."""
    found = SCHEMAS.get((source, obj))
    if found is None and source in registry.names():
        module = import_module(registry.source(source).client.partition(":")[0])
        found = next((s for s in getattr(module, "SCHEMAS", ()) if (s.source, s.obj) == (source, obj)), None)
    if found is None:
        raise KeyError(f"no record schema for {source}.{obj}; known: {', '.join(f'{s}.{o}' for s, o in OBJECTS)}")
    return found


def column_dtypes(source: str, obj: str) -> dict[str, str]:
    """Column name -> pandas dtype of the flattened frame."""
    return schema(source, obj).dtypes


# ---- flattening ----------------------------------------------------------------------------------
def flatten(source: str, obj: str, records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Vendor records -> one typed row each (same order). Never raises on bad values (see module doc)."""
    spec = schema(source, obj)
    rows = records if isinstance(records, list) else list(records)
    walker = _Walker(rows)
    data: dict[str, Any] = {"record_id": _record_ids(walker, spec.id_paths)}
    errors: dict[str, tuple[np.ndarray, list]] = {}
    for col in spec.columns:
        raw = walker.first(col.paths)
        values, bad = _PARSERS[col.parse](raw)
        data[col.name] = values
        if bad.any():
            errors[col.name] = (bad, raw)
    frame = pd.DataFrame(data, index=pd.RangeIndex(len(rows)))
    if spec.derive is not None:
        spec.derive(frame)
    frame[PARSE_ERRORS] = _parse_error_column(errors, len(rows))
    return frame.astype(spec.dtypes, copy=False)[list(spec.dtypes)]


def empty_frame(source: str, obj: str) -> pd.DataFrame:
    """A zero-row frame with the object's columns and dtypes."""
    return flatten(source, obj, [])


class _Walker:
    """Extracts dotted paths from many records, sharing work between paths with a common prefix."""

    def __init__(self, records: list) -> None:
        self._cache: dict[tuple[str, ...], list] = {(): records}

    def values(self, path: str) -> list:
        keys = tuple(path.split("."))
        if keys in self._cache:
            return self._cache[keys]
        parent = self.values(".".join(keys[:-1])) if len(keys) > 1 else self._cache[()]
        key = keys[-1]
        if key.isdigit():
            i = int(key)
            out = [v[i] if isinstance(v, list) and i < len(v) else None for v in parent]
        else:
            out = [v.get(key) if isinstance(v, dict) else None for v in parent]  # JSON objects are dicts
        self._cache[keys] = out
        return out

    def first(self, paths: Sequence[str]) -> list:
        """Per record, the value at the first path where it is present (not None / '')."""
        out = self.values(paths[0])
        for path in paths[1:]:
            if all(not _missing(v) for v in out):
                break
            alt = self.values(path)
            out = [b if _missing(a) else a for a, b in zip(out, alt, strict=True)]
        return out


def _missing(value: Any) -> bool:
    return value is None or value == "" or (type(value) is float and value != value)


def _record_ids(walker: _Walker, paths: tuple[str, ...]) -> list[str]:
    if len(paths) == 1:
        return [str(v) for v in walker.values(paths[0])]
    parts = [walker.values(p) for p in paths]
    return [":".join(str(v) for v in vals) for vals in zip(*parts, strict=True)]


def _parse_error_column(errors: dict[str, tuple[np.ndarray, list]], n: int) -> np.ndarray:
    out = np.full(n, None, dtype=object)
    if not errors:
        return out
    any_bad = np.zeros(n, dtype=bool)
    for bad, _ in errors.values():
        any_bad |= bad
    for i in np.flatnonzero(any_bad):
        out[i] = "; ".join(f"{name}={_short(raw[i])}" for name, (bad, raw) in errors.items() if bad[i])
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- parsers: list of raw values -> (typed values, mask of present-but-unparseable) ---------------
def _scalars(raw: list) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Object series with containers removed; masks (present, container)."""
    series = pd.Series(raw, dtype=object)
    container = np.fromiter((type(v) in _CONTAINERS for v in raw), dtype=bool, count=len(raw))
    if container.any():
        series[container] = None
    present = ~np.fromiter((_missing(v) for v in raw), dtype=bool, count=len(raw))
    return series, present, container


def _parse_str(raw: list) -> tuple[Any, np.ndarray]:
    bad = np.zeros(len(raw), dtype=bool)
    out = []
    for i, v in enumerate(raw):
        if type(v) is str:
            out.append(v if v else None)
        elif v is None or (isinstance(v, float) and v != v):
            out.append(None)
        elif isinstance(v, bool):
            out.append("true" if v else "false")
        elif isinstance(v, int | float):
            out.append(str(v))
        else:
            out.append(None)
            bad[i] = True
    return pd.array(out, dtype="str"), bad


def _parse_tags(raw: list) -> tuple[Any, np.ndarray]:
    joined = [" ".join(str(t) for t in v) if isinstance(v, list) else v for v in raw]
    return _parse_str(joined)


def _numbers(raw: list) -> tuple[pd.Series, np.ndarray]:
    series, present, _ = _scalars(raw)
    if series.map(type).eq(bool).any():  # True is not a number here
        series[series.map(type).eq(bool)] = None
    return pd.to_numeric(series.where(present, None), errors="coerce").astype("float64"), present


def _parse_float(raw: list) -> tuple[Any, np.ndarray]:
    num, present = _numbers(raw)
    bad = present & num.isna().to_numpy()
    return pd.array(num.to_numpy(), dtype="Float64"), bad


def _parse_int(raw: list) -> tuple[Any, np.ndarray]:
    num, present = _numbers(raw)
    frac = (num % 1).fillna(0).to_numpy() != 0
    num[frac] = np.nan
    bad = present & num.isna().to_numpy()
    return pd.array(num.to_numpy(), dtype="Float64").astype("Int64"), bad


def _parse_cents(raw: list) -> tuple[Any, np.ndarray]:
    num, present = _numbers(raw)
    bad = present & num.isna().to_numpy()
    cents = (num * 100).round()
    return pd.array(cents.to_numpy(), dtype="Float64").astype("Int64"), bad


def _parse_epoch(raw: list) -> tuple[Any, np.ndarray]:
    series, present, _ = _scalars(raw)
    num = pd.to_numeric(series.where(present, None), errors="coerce").astype("float64")
    num = num.where(num.abs() < 1e11, num / 1000)  # epoch milliseconds (HubSpot) -> seconds
    text = present & num.isna().to_numpy() & series.map(type).eq(str).to_numpy()
    if text.any():
        stamps = pd.to_datetime(series[text].astype(str), utc=True, errors="coerce", format="ISO8601")
        num[text] = ((stamps - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype="float64")
    bad = present & num.isna().to_numpy()
    return pd.array(np.floor(num.to_numpy()), dtype="Float64").astype("Int64"), bad


def _parse_date(raw: list) -> tuple[Any, np.ndarray]:
    series, present, _ = _scalars(raw)
    out = np.full(len(raw), None, dtype=object)
    if present.any():
        stamps = pd.to_datetime(series[present].astype(str), utc=True, errors="coerce", format="ISO8601")
        out[present] = stamps.dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    values = pd.array(out, dtype="str")
    bad = present & pd.isna(values)
    return values, np.asarray(bad, dtype=bool)


def _parse_bool(raw: list) -> tuple[Any, np.ndarray]:
    out: list[bool | None] = []
    bad = np.zeros(len(raw), dtype=bool)
    for i, v in enumerate(raw):
        if isinstance(v, bool) or v is None:
            out.append(v)
        elif isinstance(v, str) and v.strip().lower() in _TRUE:
            out.append(True)
        elif isinstance(v, str) and v.strip().lower() in _FALSE:
            out.append(False)
        elif v == "":
            out.append(None)
        else:
            out.append(None)
            bad[i] = True
    return pd.array(out, dtype="boolean"), bad


_PARSERS: dict[str, Callable[[list], tuple[Any, np.ndarray]]] = {
    "str": _parse_str, "tags": _parse_tags, "int": _parse_int, "float": _parse_float, "cents": _parse_cents,
    "epoch": _parse_epoch, "date": _parse_date, "bool": _parse_bool,
}
