"""Stripe: customers, subscriptions and invoices, newest first with ``starting_after``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from healthscore.sources.base import BearerAuth, Page, Source, SourceConnection, SourceObject, source_objects

PAGE = 100
DAY_S = 86_400
STRIPE_VERSION = "2025-10-29.clover"


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

    def pages(self, obj: str, cursor: str | None = None) -> Iterator[Page]:
        """Cursor = the newest ``created`` seen (epoch s). Snapshot objects (subscriptions, with
        ``status=all``) are listed in full; windowed ones (invoices) re-read the registry's trailing window
        of creation dates: their state changes long after creation (a payment made weeks later still lands)."""
        params: dict = {"limit": PAGE}
        spec = self.spec().object(obj)
        if obj == "subscriptions":
            params["status"] = "all"
        if spec.mode == "snapshot":
            cursor = None
        elif cursor:
            lookback = (spec.window_days or 0) * DAY_S
            params["created[gte]"] = max(0, int(cursor) - lookback)
        newest = int(cursor or 0)
        while True:
            body = self.client.get_json(f"/v1/{obj}", params=params)
            records = body.get("data", [])
            newest = max([newest, *(int(r["created"]) for r in records)])
            yield Page(records, str(newest) if newest else None)
            if not body.get("has_more") or not records:
                return
            params = {**params, "starting_after": records[-1]["id"]}
