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
import re
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from itertools import chain
from typing import Any, cast

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


# ------------------------------------------------------------------------------- dumps_json, in bulk
#
# The COPY loader serialises whole JSON columns (a million score breakdowns). ``dumps_json`` spends most
# of its time in ``float.__repr__``; msgspec formats floats ~10x faster. Its output is compact (no spaces)
# and writes exponents differently (``1e16``, ``1e-7``, ``0.00001`` where Python writes ``1e+16``,
# ``1e-07``, ``1e-05``), so it is used only where its text can be turned into exactly ``dumps_json``'s:
#
# * every value is a plain ``dict`` with plain ``str`` keys free of characters JSON escapes and of
#   ``{}:,`` (so every ``:`` and ``,`` in the output is a separator), and every dict value is exactly
#   ``float``/``int``/``bool``/``None`` (no nesting, no strings, no enums, dates, decimals...);
# * ``,`` and ``:`` then gain Python's trailing space, and the few floats msgspec writes in another
#   notation (an exponent, or ``0.0000...``) are rewritten with ``repr``; digits are the same, both
#   print the shortest round-tripping decimal. NaN/inf are ``null`` in both.
#
# Anything else falls back to ``dumps_json`` value by value, so the output never depends on the path.

_BULK_VALUE_TYPES = frozenset({float, int, bool, type(None)})
_BULK_UNSAFE_KEY = re.compile(r'[\x00-\x1f"\\{}:,]')
# A value (always after ``:``) msgspec writes unlike ``repr``: an exponent, or fixed notation below 1e-4.
_BULK_ODD_FLOAT = re.compile(rb":(-?(?:[0-9]+(?:\.[0-9]+)?e-?[0-9]+|0\.0000[0-9]*))")
_msgspec_encode: Callable[[Any], bytes] | None = None


def _python_float(match: re.Match[bytes]) -> bytes:
    # msgspec's token parses back to the same double; repr gives dumps_json's spelling of it.
    return b":" + repr(float(match[1])).encode()


def _flat_shape(objs: list[Any]) -> tuple[set[str], set[type]] | None:
    """The keys and value types of ``objs`` if they are flat dicts the bulk path handles, else None."""
    if set(map(type, objs)) != {dict}:
        return None
    keys = set(chain.from_iterable(objs))
    if any(type(k) is not str or _BULK_UNSAFE_KEY.search(k) for k in keys):
        return None
    value_types = set(map(type, chain.from_iterable(map(dict.values, objs))))
    if not value_types <= _BULK_VALUE_TYPES:
        return None
    return keys, value_types


def _encode_flat(objs: list[Any], keys: set[str], value_types: set[type]) -> list[str] | None:
    """The bulk path for ``objs`` of shape ``keys`` (a superset of their keys) / ``value_types``."""
    global _msgspec_encode
    if _msgspec_encode is None:
        import msgspec

        _msgspec_encode = msgspec.json.Encoder().encode
    try:
        raw = _msgspec_encode(objs)
    except (TypeError, ValueError, OverflowError):  # e.g. an int too long to print: dumps_json decides
        return None
    # Rewrite odd floats only if the text may hold one: "0.0000", or more "e"s than the keys account for
    # (true/false have one too: then always rewrite). When every dict has every key, counting is cheap.
    if set(map(len, objs)) == {len(keys)}:
        key_e = len(objs) * sum(k.count("e") for k in keys)
    else:
        key_e = sum(n * k.count("e") for k, n in Counter(chain.from_iterable(objs)).items())
    if bool in value_types or b"0.0000" in raw or raw.count(b"e") != key_e:
        raw = _BULK_ODD_FLOAT.sub(_python_float, raw)
    # [{"a":1.5,"b":null},{}] -> ['{"a": 1.5, "b": null}', '{}']. Keys hold no braces and values are
    # scalars, so "},{" only ever separates two dicts.
    text = raw.replace(b"},{", b"}\x00{").replace(b",", b", ").replace(b":", b": ").decode()
    return text[1:-1].split("\x00")


def _with_nones(values: Sequence[Any], texts: list[str]) -> list[str | None]:
    """``texts`` (one per non-None value) put back in place among the Nones of ``values``."""
    if len(texts) == len(values):
        return cast(list[str | None], texts)
    found = iter(texts)
    return [None if v is None else next(found) for v in values]


def dumps_json_many(values: Sequence[Any]) -> list[str | None]:
    """``[None if v is None else dumps_json(v) for v in values]``, byte for byte, but much faster when
    the values are flat dicts of numbers (e.g. per-dimension scores)."""
    objs = [v for v in values if v is not None]
    shape = _flat_shape(objs) if objs else None
    texts = _encode_flat(objs, *shape) if shape else None
    if texts is None:
        return [None if v is None else dumps_json(v) for v in values]
    return _with_nones(values, texts)


def json_column_serialiser(values: Sequence[Any]) -> Callable[[Sequence[Any]], list[str | None]] | None:
    """A function computing ``dumps_json_many`` of any subset of ``values`` that cannot raise, or None.

    Offered for None and flat dicts of floats/bools/None under plain keys (ints are left out: one too
    long to print raises, as are keys UTF-8 cannot encode). Such a column can then be serialised later,
    e.g. chunk by chunk while rows stream out, without moving an error past a point of no return; the
    function skips the checks already made here.
    """
    objs = [v for v in values if v is not None]
    shape = _flat_shape(objs)
    if shape is None or int in shape[1]:
        return None
    keys, value_types = shape
    try:
        _ = [k.encode() for k in keys]
    except UnicodeEncodeError:
        return None

    def serialise(subset: Sequence[Any]) -> list[str | None]:
        objs = [v for v in subset if v is not None]
        texts = _encode_flat(objs, keys, value_types) if objs else []
        if texts is None:  # not expected; dumps_json cannot fail on these values either
            return [None if v is None else dumps_json(v) for v in subset]
        return _with_nones(subset, texts)

    return serialise


def canonical_json(value: Any) -> str:
    """Byte-stable JSON text for a vendor record (see ``dumps_json``)."""
    return dumps_json(value, canonical=True)


def json_type() -> sa.JSON:
    """JSON column where Python ``None`` is SQL NULL (not the JSON literal ``null``)."""
    return sa.JSON(none_as_null=True)
