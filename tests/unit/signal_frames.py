"""Hand-made frames in the flattened shape (``sources.schemas.flatten``'s dtypes) for the signal unit tests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from healthscore.batch import DAY_S, PointInTime

PIT = PointInTime(date(2026, 9, 30), datetime(2026, 10, 1, tzinfo=UTC))
NOW = PIT.as_of_ts


def days_ago(days: float) -> int:
    """Epoch seconds ``days`` before the as-of instant."""
    return int(NOW - days * DAY_S)


def frame(rows: list[dict[str, Any]], dtypes: dict[str, str]) -> pd.DataFrame:
    """Rows -> a frame with exactly ``dtypes`` (missing keys are null), as flatten would give."""
    data = {name: pd.array([row.get(name) for row in rows], dtype=dtype) for name, dtype in dtypes.items()}
    return pd.DataFrame(data)


def index(*ids: str) -> pd.Index:
    return pd.Index(list(ids), dtype=object, name="account_id")
