"""Zendesk Support: cursor-based incremental ticket export with metric sets, satisfaction ratings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from requests.auth import HTTPBasicAuth

from healthscore.sources.base import (
    Page,
    Source,
    SourceConnection,
    SourceObject,
    parse_timestamp,
    source_objects,
)

EXPORT_PAGE = 1000
RATINGS_PAGE = 100


class ZendeskSource(Source):
    name = "zendesk"
    objects: ClassVar[dict[str, SourceObject]] = source_objects("zendesk")

    @staticmethod
    def auth(connection: SourceConnection) -> HTTPBasicAuth:
        return HTTPBasicAuth(f"{connection.login}/token", connection.password or "")

    def pages(self, obj: str, cursor: str | None = None) -> Iterator[Page]:
        if obj == "tickets":
            yield from self._tickets(cursor)
        else:
            yield from self._ratings(cursor)

    def _tickets(self, cursor: str | None) -> Iterator[Page]:
        """Cursor = Zendesk's after_cursor; None starts at time 0 (a full backfill)."""
        params: dict = {"include": "metric_sets", "per_page": EXPORT_PAGE}
        params.update({"cursor": cursor} if cursor else {"start_time": 0})
        url = "/api/v2/incremental/tickets/cursor.json"
        while True:
            body = self.client.get_json(url, params=params)
            metrics = {m["ticket_id"]: m for m in body.get("metric_sets", [])}
            records = [{**t, "metric_set": metrics.get(t["id"])} for t in body.get("tickets", [])]
            yield Page(records, body.get("after_cursor") or cursor)
            if body.get("end_of_stream"):
                return
            url, params = body["after_url"], {}  # absolute, as Zendesk gives it

    def _ratings(self, cursor: str | None) -> Iterator[Page]:
        """Cursor = epoch seconds of the newest rating seen (re-read inclusively; landing is idempotent)."""
        params: dict = {"page[size]": RATINGS_PAGE}
        if cursor:
            params["start_time"] = int(cursor)
        url, newest = "/api/v2/satisfaction_ratings", int(cursor or 0)
        while url:
            body = self.client.get_json(url, params=params)
            records = body.get("satisfaction_ratings", [])
            for record in records:
                stamp = parse_timestamp(record.get("created_at"))
                newest = max(newest, int(stamp.timestamp())) if stamp else newest
            yield Page(records, str(newest) if newest else None)
            url, params = (body.get("links") or {}).get("next"), {}
