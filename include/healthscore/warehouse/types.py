"""Column types shared by the models and the bulk loaders.

Both engines must hand back the same Python values: SQLite has no timezone-aware timestamp and
PostgreSQL returns timestamps in the session time zone, so ``UTCDateTime`` pins everything to UTC.
JSON is serialized by one function (``dumps_json``) whether it goes through SQLAlchemy or COPY, so the
stored text does not depend on the engine or the code path.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

UTC = dt.UTC


def utcnow() -> dt.datetime:
    """Timezone-aware now, the only clock the warehouse writes."""
    return dt.datetime.now(UTC)


def to_utc(value: dt.datetime) -> dt.datetime:
    """Aware datetimes are converted to UTC; naive ones are taken to already be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that always reads back as an aware UTC datetime.

    On SQLite the value is stored as UTC text (SQLite keeps no offset); on PostgreSQL it is a
    ``timestamptz`` and the session time zone no longer leaks into results.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        value = to_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return to_utc(value)


def _json_default(value: Any) -> Any:
    """Make dates, decimals, sets and numpy scalars JSON-able; anything else is a caller bug."""
    if isinstance(value, dt.datetime):
        return to_utc(value).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / pandas scalars
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


# Built once: json.dumps(**kwargs) constructs a new encoder on every call, which costs ~30% per value.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_json_default)
_CANONICAL_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, default=_json_default, sort_keys=True, separators=(",", ":")
)


def dumps_json(value: Any, *, canonical: bool = False) -> str:
    """Serialize for a JSON column; NaN/inf become null because PostgreSQL's json rejects them.

    ``canonical=True`` (sorted keys, no spaces) gives the byte-stable text used for landed payloads
    and their sha256, so re-landing the same vendor record writes identical bytes.
    """
    encoder = _CANONICAL_ENCODER if canonical else _ENCODER
    try:
        return encoder.encode(value)
    except ValueError as exc:
        if "float" not in str(exc):  # e.g. a circular reference: a real bug
            raise
        # Only reached when a float is NaN/inf: clean the (rare) value and serialize again.
        return encoder.encode(_nan_to_none(value))


def canonical_json(value: Any) -> str:
    """Byte-stable JSON text for a vendor record (see ``dumps_json``)."""
    return dumps_json(value, canonical=True)


def json_type() -> sa.JSON:
    """JSON column where Python ``None`` is SQL NULL (not the JSON literal ``null``)."""
    return sa.JSON(none_as_null=True)
