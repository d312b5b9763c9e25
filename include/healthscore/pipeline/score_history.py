"""The archived scores one day of scoring needs, read by date windows and index seeks, not by history length.

``scoring.score_accounts`` reads from its history frame only:

- trends and attribution: per window ``w`` (``momentum.trend_windows_days`` and ``momentum.window_days``)
  the newest scored row in ``[T - w - tolerance, T - w]``, and the dimension scores of that row for the
  momentum window;
- the projection: the scored rows of the last ``PROJECTION_DAYS`` days;
- stage runs (exit gates, days in stage): the newest row's stage, where its run of equal stages began
  and whether a row of another stage precedes it, inside ``[T - momentum.history_days, T)``.

``load_needed_history`` returns a subset of the archive that holds every row those computations read, so
``score_accounts`` gives the same output as with the full ``momentum.history_days`` window
(``pipeline.score.load_history``). The date windows are read through ``ix_health_scores_as_of_date_model_version``;
a stage run is found with at most ``len(stages) + 2`` seeks per account on ``ix_health_scores_stage_run``
and the unique (account, date, version) index: the newest row of each stage, then the first row after
the newest row of another stage (``P``). Those run rows are added with their stage and a NaN score: they
lie outside every date window, where a score is never read. Rows read are about
``PROJECTION_DAYS + 4 x (tolerance + 1)`` dated rows plus a few seeks per account, whatever the length of
the archive (``tests/integration/test_history_reads.py`` counts them).

Rows of a model version carry that version's stage names or NULL (the engine writes nothing else), so a
stage is matched by name; NULL is the "unknown stage" code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.config import ModelConfig
from healthscore.scoring.history import PROJECTION_DAYS
from healthscore.warehouse.models import HealthScore

HISTORY_COLUMNS = ["account_id", "as_of_date", "score", "band", "dimension_scores", "lifecycle_stage",
                   "model_version"]
ACCOUNT_CHUNK = 2000  # accounts per seek statement (bind parameters stay far below driver limits)
_T = HealthScore.__table__


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of inclusive (lo, hi) integer ranges, as disjoint ranges in ascending order."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] <= r[1]):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def needed_days_back(model: ModelConfig) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
    """(days-back ranges whose rows are read, days-back range whose dimension scores are read), inclusive,
    inside the ``momentum.history_days`` window (1 = yesterday)."""
    mom = model.momentum
    tol, limit = mom.lookup_tolerance_days, mom.history_days
    wanted = [(1, PROJECTION_DAYS)] + [(w, w + tol) for w in {*mom.trend_windows_days, mom.window_days}]
    ranges = merge_ranges((lo, min(hi, limit)) for lo, hi in wanted)
    dims = (mom.window_days, min(mom.window_days + tol, limit))
    return ranges, (dims if dims[0] <= dims[1] else None)


def dated_query(model: ModelConfig, model_version: str, before: date) -> sa.Select:
    """The archive rows inside the date windows of ``needed_days_back``; dimension scores only where read."""
    ranges, dims = needed_days_back(model)
    day = _T.c.as_of_date
    dimension_scores: Any = sa.null()
    if dims is not None:
        dimension_scores = sa.case(
            (day.between(before - timedelta(days=dims[1]), before - timedelta(days=dims[0])), _T.c.dimension_scores))
    windows = [day.between(before - timedelta(days=hi), before - timedelta(days=lo)) for lo, hi in ranges]
    return sa.select(_T.c.account_id, day, _T.c.score, _T.c.band, dimension_scores.label("dimension_scores"),
                     _T.c.lifecycle_stage, _T.c.model_version).where(
        _T.c.model_version == model_version, sa.or_(*windows))


def _accounts(*extra: sa.ColumnClause) -> Any:
    return sa.values(sa.column("account_id", sa.Text), *extra, name="ids")


def _in_window(model: ModelConfig, model_version: str, before: date, account: Any) -> list[Any]:
    start = before - timedelta(days=model.momentum.history_days)
    return [_T.c.model_version == model_version, _T.c.account_id == account, _T.c.as_of_date >= start,
            _T.c.as_of_date < before]


def newest_per_stage_query(model: ModelConfig, model_version: str, before: date, accounts: Sequence[str]) -> sa.Select:
    """Per account: the date of its newest archived row in the window for each stage (and for NULL)."""
    ids = _accounts().data([(a,) for a in accounts]).cte("ids")
    columns = [ids.c.account_id]
    stages: list[str | None] = [s.name for s in model.lifecycle.stages] + [None]
    for i, stage in enumerate(stages):
        match = _T.c.lifecycle_stage.is_(None) if stage is None else _T.c.lifecycle_stage == stage
        seek = (sa.select(_T.c.as_of_date).where(*_in_window(model, model_version, before, ids.c.account_id), match)
                .order_by(_T.c.as_of_date.desc()).limit(1).scalar_subquery())
        columns.append(seek.label(f"s{i}"))
    return sa.select(*columns)


def first_after_query(model: ModelConfig, model_version: str, before: date,
                      starts: Sequence[tuple[str, date]]) -> sa.Select:
    """Per (account, date): the date of the account's first archived row on or after that date (before T)."""
    ids = _accounts(sa.column("lo", sa.Date)).data(list(starts)).cte("ids")
    seek = (sa.select(_T.c.as_of_date).where(*_in_window(model, model_version, before, ids.c.account_id),
                                             _T.c.as_of_date >= ids.c.lo)
            .order_by(_T.c.as_of_date).limit(1).scalar_subquery())
    return sa.select(ids.c.account_id, seek.label("first"))


def stage_run_rows(conn: sa.Connection, model: ModelConfig, model_version: str, before: date,
                   accounts: Sequence[str]) -> list[dict[str, Any]]:
    """For each account with archived rows: its newest row (L), the newest row of another stage (P) and
    the first row after P, or the window's first row without P (R), as history rows with a NaN score."""
    stages: list[str | None] = [s.name for s in model.lifecycle.stages] + [None]
    start = before - timedelta(days=model.momentum.history_days)
    rows: list[dict[str, Any]] = []
    for at in range(0, len(accounts), ACCOUNT_CHUNK):
        chunk = accounts[at : at + ACCOUNT_CHUNK]
        runs: dict[str, tuple[date, str | None, date | None]] = {}
        for record in conn.execute(newest_per_stage_query(model, model_version, before, chunk)):
            newest = [(d, stages[i]) for i, d in enumerate(record[1:]) if d is not None]
            if not newest:
                continue
            last_day, last_stage = max(newest, key=lambda p: p[0])
            other = [p for p in newest if p[1] != last_stage]
            previous = max(other, key=lambda p: p[0]) if other else None
            runs[record[0]] = (last_day, last_stage, None if previous is None else previous[0])
            rows.append(_run_row(record[0], last_day, last_stage, model_version))
            if previous is not None:
                rows.append(_run_row(record[0], previous[0], previous[1], model_version))
        starts = [(a, start if p is None else p + timedelta(days=1)) for a, (_, _, p) in runs.items()]
        if starts:
            for account, first in conn.execute(first_after_query(model, model_version, before, starts)):
                rows.append(_run_row(account, first, runs[account][1], model_version))
    return rows


def _run_row(account: str, day: date, stage: str | None, model_version: str) -> dict[str, Any]:
    return {"account_id": account, "as_of_date": day, "score": np.nan, "band": None, "dimension_scores": None,
            "lifecycle_stage": stage, "model_version": model_version}


def load_needed_history(engine: Engine, model: ModelConfig, model_version: str, before: date,
                        accounts: Sequence[str], only_accounts: bool = False) -> pd.DataFrame:
    """The archive rows ``score_accounts`` reads for accounts scored as of ``before`` (see the module
    docstring): equal output to ``load_history(..., model.momentum.history_days)``, bounded reads.

    ``only_accounts``: read the date windows of ``accounts`` only (in ``ACCOUNT_CHUNK`` lists), not of every
    account: for a scoring shard, a part of the day's accounts (the rest would be dropped by the scoring)."""
    wanted = sorted(set(accounts))
    with engine.connect() as conn:
        query = dated_query(model, model_version, before)
        if only_accounts:
            dated = [dict(r) for at in range(0, len(wanted), ACCOUNT_CHUNK) for r in conn.execute(
                query.where(_T.c.account_id.in_(wanted[at : at + ACCOUNT_CHUNK]))).mappings()]
        else:
            dated = [dict(r) for r in conn.execute(query).mappings()]
        runs = stage_run_rows(conn, model, model_version, before, wanted)
    seen = {(r["account_id"], r["as_of_date"]) for r in dated}
    extra: dict[tuple[str, date], dict[str, Any]] = {}
    for row in runs:
        key = (row["account_id"], row["as_of_date"])
        if key not in seen:
            extra.setdefault(key, row)
    return pd.DataFrame(dated + list(extra.values()), columns=HISTORY_COLUMNS)
