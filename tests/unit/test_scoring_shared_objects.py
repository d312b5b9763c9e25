"""``score_accounts`` shares its attribution entry dicts between rows (see ``history.top_attribution``).

That is safe only while nothing edits them in place. These tests run every consumer of the scored frame
in the package (the archive rows and both bulk-upsert write paths of ``pipeline.score``, its Parquet
JSON, and the playbooks' reading of attribution) over a scored frame and check that no shared entry
changed. A new consumer that edits cells should copy them first, or extend these tests and fail.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest

from healthscore.batch import Batch
from healthscore.pipeline.score import _archive_rows
from healthscore.playbooks.rules import top_dimension_deltas
from healthscore.scoring import score_accounts
from healthscore.warehouse.models import HealthScore
from healthscore.warehouse.rowbatch import RowBatch
from tests.unit.test_scoring import AS_OF, DIMS, default_model, random_signals


@pytest.fixture(scope="module")
def scored() -> pd.DataFrame:
    model = default_model()
    signals = random_signals(model, 400, seed=4)
    rng = np.random.default_rng(5)
    history = pd.DataFrame(
        {
            "account_id": np.repeat(signals["account_id"].to_numpy(), 2),
            "as_of_date": [AS_OF - dt.timedelta(days=d) for d in (30, 90)] * len(signals),
            "score": rng.uniform(0, 100, 2 * len(signals)).round(1),
            "lifecycle_stage": "maturity",
            "model_version": "v1",
            **{f"dim_{d}": rng.uniform(0, 100, 2 * len(signals)).round(0) for d in DIMS},
        }
    )
    return score_accounts(signals, model, history=history, model_version="v1")


def _entries(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [entry for cell in frame["attribution"] if cell for entry in cell]


def _snapshot(frame: pd.DataFrame) -> list[str]:
    return [repr(cell) for cell in frame["attribution"]]


def test_the_fixture_really_shares_entries(scored: pd.DataFrame) -> None:
    shared = Counter(map(id, _entries(scored)))
    assert max(shared.values()) > 1
    assert (
        len({id(cell) for cell in scored["attribution"] if cell is not None})
        == scored["attribution"].notna().sum()
    )


def test_consumers_leave_shared_entries_untouched(scored: pd.DataFrame) -> None:
    before = _snapshot(scored)
    entries = _entries(scored)

    batch = Batch(AS_OF, dt.datetime(2025, 7, 1, tzinfo=dt.UTC), "run-1")
    rows = _archive_rows(scored, batch, is_shadow=False)  # pipeline.score -> bulk_upsert(rows)
    copy = RowBatch(HealthScore.__table__, rows, for_copy=True, defer=True)  # PostgreSQL COPY path
    copy.dedupe(["account_id", "as_of_date", "model_version"])
    assert sum(1 for _ in copy.tuples()) == len(scored)
    many = RowBatch(HealthScore.__table__, rows, for_copy=False, defer=True)  # SQLite / executemany path
    assert len(many.dicts(0, len(scored))) == len(scored)
    for cell in scored["attribution"]:  # write_parquet's JSON; playbooks read attribution back
        json.dumps(cell, sort_keys=True)
        top_dimension_deltas(cell)

    assert _snapshot(scored) == before
    assert all(a is b for a, b in zip(entries, _entries(scored), strict=True))
