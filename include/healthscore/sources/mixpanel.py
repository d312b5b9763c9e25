"""Mixpanel raw export: JSONL streamed one day at a time, folded as it arrives, never held whole."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import date
from typing import ClassVar, TypeVar

import msgspec
from requests.auth import HTTPBasicAuth

from healthscore.sources.base import (
    Page,
    RetryableError,
    Source,
    SourceConnection,
    SourceObject,
    source_objects,
)

log = logging.getLogger(__name__)
CHUNK = 20_000
_decode = msgspec.json.Decoder().decode  # ~3x json.loads; a 100k-account day is ~1M export lines
Acc = TypeVar("Acc")


class MixpanelSource(Source):
    name = "mixpanel"
    objects: ClassVar[dict[str, SourceObject]] = source_objects("mixpanel")

    @staticmethod
    def auth(connection: SourceConnection) -> HTTPBasicAuth:
        return HTTPBasicAuth(connection.login or "", connection.password or "")

    def pages(self, obj: str, cursor: str | None = None) -> Iterator[Page]:
        """Chunks of one day's events; cursor = the day (YYYY-MM-DD). A cut stream raises
        RetryableError part-way, so callers that must not double count use ``fold_day``."""
        if cursor is None:
            raise ValueError("Mixpanel export needs a day: pass cursor='YYYY-MM-DD'")
        chunk: list[dict] = []
        for event in self.day_events(date.fromisoformat(cursor)):
            chunk.append(event)
            if len(chunk) >= CHUNK:
                yield Page(chunk, cursor)
                chunk = []
        yield Page(chunk, cursor)

    def day_events(self, day: date) -> Iterator[dict]:
        params = {"from_date": day.isoformat(), "to_date": day.isoformat(),
                  "project_id": self.connection.extra.get("project_id")}
        response = self.client.request("GET", "/api/2.0/export", params=params, stream=True)
        with response:
            for number, line in enumerate(response.iter_lines(chunk_size=1 << 16), start=1):  # 512 B by default
                if not line:
                    continue
                try:
                    yield _decode(line)
                except ValueError as exc:  # msgspec.DecodeError is one
                    raise RetryableError(f"{day} export line {number} is not JSON (stream cut?)") from exc

    def fold_day(self, day: date, start: Callable[[], Acc], step: Callable[[Acc, dict], None]) -> Acc:
        """Fold a day's events into a fresh accumulator; a broken stream restarts the whole day."""
        attempts = self.client.policy.attempts
        for attempt in range(1, attempts + 1):
            acc = start()
            try:
                for event in self.day_events(day):
                    step(acc, event)
                return acc
            except RetryableError as exc:
                if attempt == attempts:
                    raise
                self.client.stats.retries += 1
                log.warning("%s: %s; re-reading the day (attempt %d/%d)", self.connection.conn_id, exc,
                            attempt + 1, attempts)
        raise AssertionError("unreachable")
