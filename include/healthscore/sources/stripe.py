"""Stripe: customers, subscriptions and invoices; a full list once, then what changed, from the Events API.

Stripe's list endpoints filter on ``created`` only, and subscriptions and invoices keep changing long after
they are created (a payment, a failed attempt, a plan change, a cancellation). What changed is what
``GET /v1/events`` lists: every event carries the object as it stood then (``data.object``), newest first,
filtered by ``type`` (``invoice.*``) or ``types[]``, ``created[gte]``, paged with ``starting_after``, kept 30
days.

- The first batch of an object (no cursor) lists it in full (subscriptions with ``status=all``).
- Later batches read the object's events created at or after the cursor and land each object they carry
  once, in its newest version (events come newest first, so the first one seen wins): the landed state is
  then the state a full list would show.
- A cursor older than Stripe's retention (less an hour's margin), or one from before this reader (a plain
  epoch of the newest ``created``), cannot be resumed from events: the object is listed in full again.

The cursor is ``events:<epoch s>``: events created at or after that instant are not landed yet. It is the
newest event seen or, when that is older, the instant the read started less ``CLOCK_MARGIN_S`` (an event
becomes listable a moment after it is created). Re-reading an event lands the same version again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import ClassVar

from healthscore.sources.base import BearerAuth, Page, Source, SourceConnection, SourceObject, source_objects

PAGE = 100
DAY_S = 86_400
STRIPE_VERSION = "2025-10-29.clover"
EVENTS_CURSOR = "events:"
RETENTION_S = 30 * DAY_S  # Stripe lists events of the last 30 days
RETENTION_MARGIN_S = 3_600
CLOCK_MARGIN_S = 300
#: The events that carry each object, as list parameters.
EVENT_FILTERS: dict[str, dict[str, str | list[str]]] = {
    "customers": {"types[]": ["customer.created", "customer.updated"]},
    "subscriptions": {"type": "customer.subscription.*"},
    "invoices": {"type": "invoice.*"},
}


def events_since(cursor: str | None) -> int | None:
    """The instant an events cursor resumes from; None for no cursor or one written by the list reader."""
    if cursor is None or not cursor.startswith(EVENTS_CURSOR):
        return None
    return int(cursor[len(EVENTS_CURSOR):])


class StripeSource(Source):
    name = "stripe"
    idempotency_header = "Idempotency-Key"  # Stripe replays the first answer for 24 h
    objects: ClassVar[dict[str, SourceObject]] = source_objects("stripe")

    @staticmethod
    def auth(connection: SourceConnection) -> BearerAuth:
        return BearerAuth(connection.password)

    @staticmethod
    def headers(connection: SourceConnection) -> dict[str, str]:
        return {"Stripe-Version": str(connection.extra.get("stripe_version", STRIPE_VERSION))}

    def now(self) -> int:
        """Stripe's "now" as far as this batch knows: the sandbox's simulated instant, else the later of the
        batch instant and the wall clock (retention runs on the real clock)."""
        as_of = int(self.as_of.timestamp()) if self.as_of is not None else None
        if as_of is not None and self.connection.is_sandbox:
            return as_of
        return max(as_of or 0, int(time.time()))

    def pages(self, obj: str, cursor: str | None = None) -> Iterator[Page]:
        """The full list (first batch, or a cursor events cannot resume from), else the events since the
        cursor (windowed objects: from ``window_days`` before it)."""
        now = self.now()
        since = events_since(cursor)
        lookback = (self.spec().object(obj).window_days or 0) * DAY_S
        if since is None or since - lookback <= now - RETENTION_S + RETENTION_MARGIN_S:
            yield from self._list(obj, f"{EVENTS_CURSOR}{now - CLOCK_MARGIN_S}")
        else:
            yield from self._events(obj, since - lookback, floor=max(since, now - CLOCK_MARGIN_S))

    def _list(self, obj: str, cursor: str) -> Iterator[Page]:
        params: dict = {"limit": PAGE}
        if obj == "subscriptions":
            params["status"] = "all"
        while True:
            body = self.client.get_json(f"/v1/{obj}", params=params)
            records = body.get("data", [])
            yield Page(records, cursor)
            if not body.get("has_more") or not records:
                return
            params = {**params, "starting_after": records[-1]["id"]}

    def _events(self, obj: str, since: int, floor: int) -> Iterator[Page]:
        """Each object the events carry, once, newest version first; the cursor is the newest event seen
        or ``floor``, whichever is later."""
        params: dict = {"limit": PAGE, "created[gte]": since, **EVENT_FILTERS[obj]}
        seen: set[str] = set()
        newest = floor
        while True:
            body = self.client.get_json("/v1/events", params=params)
            events = body.get("data", [])
            records = []
            for event in events:
                newest = max(newest, int(event["created"]))
                record = (event.get("data") or {}).get("object") or {}
                if record.get("id") and record["id"] not in seen:
                    seen.add(record["id"])
                    records.append(record)
            yield Page(records, f"{EVENTS_CURSOR}{newest}")
            if not body.get("has_more") or not events:
                return
            params = {**params, "starting_after": events[-1]["id"]}
