"""Stripe: customers, subscriptions and invoices, newest first with ``starting_after``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from healthscore.sources.base import BearerAuth, Page, Source, SourceConnection, SourceObject

PAGE = 100
# Invoices change after creation (paid, uncollectible): each batch re-reads this trailing window of
# creation dates, so a payment made weeks later still lands. Net-30 terms plus dunning fit in 120 days.
INVOICE_LOOKBACK_SECONDS = 120 * 86_400
STRIPE_VERSION = "2025-10-29.clover"


class StripeSource(Source):
    name = "stripe"
    default_conn_id = "billing_stripe"
    objects: ClassVar[dict[str, SourceObject]] = {
        "customers": SourceObject("customers", "id", "created"),
        "subscriptions": SourceObject("subscriptions", "id", "created"),
        "invoices": SourceObject("invoices", "id", "created"),
    }

    @staticmethod
    def auth(connection: SourceConnection) -> BearerAuth:
        return BearerAuth(connection.password)

    @staticmethod
    def headers(connection: SourceConnection) -> dict[str, str]:
        return {"Stripe-Version": str(connection.extra.get("stripe_version", STRIPE_VERSION))}

    def pages(self, obj: str, cursor: str | None = None) -> Iterator[Page]:
        """Cursor = the newest ``created`` seen (epoch s). Subscriptions are always a full snapshot with
        ``status=all`` and invoices re-read a trailing window: their state changes long after creation."""
        params: dict = {"limit": PAGE}
        if obj == "subscriptions":
            params["status"] = "all"
            cursor = None
        elif cursor:
            lookback = INVOICE_LOOKBACK_SECONDS if obj == "invoices" else 0
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
