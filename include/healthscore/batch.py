"""The batch a run processes and the point in time its reads stand at.

Plain values, no I/O: the pipeline, the warehouse's point-in-time reads and the pure signal computations
all take them, so they live below every layer (and ``pipeline.extract`` and ``pipeline.validate`` no
longer import each other for them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

DAY_S = 86_400


@dataclass(frozen=True)
class Batch:
    """One run of the daily pipeline: the logical date and the instant the data is as of."""

    batch_date: date
    as_of: datetime
    run_id: str

    @classmethod
    def for_interval(cls, start: datetime, end: datetime, run_id: str) -> Batch:
        return cls(start.astimezone(UTC).date(), end.astimezone(UTC), run_id)

    @property
    def point_in_time(self) -> PointInTime:
        return PointInTime.of(self.batch_date, self.as_of)


@dataclass(frozen=True)
class PointInTime:
    """What a run for ``batch_date`` with data as of ``as_of`` may see: batches landed at or before the
    batch date, records stamped at or before as-of."""

    batch_date: date
    as_of: datetime

    @classmethod
    def of(cls, batch_date: date, as_of: datetime) -> PointInTime:
        """As-of made aware UTC (a naive instant is taken as UTC)."""
        return cls(batch_date, as_of.astimezone(UTC) if as_of.tzinfo else as_of.replace(tzinfo=UTC))

    @property
    def as_of_ts(self) -> int:
        return int(self.as_of.timestamp())

    @property
    def last_event_day(self) -> date:
        """Last whole event day: the batch date, unless as-of falls earlier (the day is not over)."""
        return min(self.batch_date, (self.as_of - timedelta(seconds=1)).astimezone(UTC).date())

    def since(self, days: int) -> int:
        """Epoch seconds ``days`` whole days before as-of."""
        return self.as_of_ts - days * DAY_S
