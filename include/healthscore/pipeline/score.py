"""Score a batch's account signals and archive them: warehouse history plus date-partitioned Parquet.

The champion and every registered challenger score the same signals; challengers are archived with
``is_shadow`` and never reach playbooks. The archive write is one idempotent upsert per model
version, stamped with the batch's as-of instant rather than wall time, so reruns are identical.

Sharded scoring (``Settings.score_shards`` = N > 1): shard ``i`` scores the accounts whose stable hash
(``shard_of``: CRC-32 of the account id, mod N) is ``i``, whatever the portfolio's order or size. Scoring is
per account except for a method that ranks accounts against each other (``CROSS_ACCOUNT_METHODS``:
percentile_rank); such a model's accounts all go to shard 0, so its ranks stay those of the whole day.
Warehouse rows are keyed per account and upserted by each shard. Each shard writes its rows of the
Parquet archive as a part file (``shard_parts``); ``combine_parquet_parts`` then writes the partition's
``scores.parquet`` from the parts, in the one-shard row order, so the file is the one a single shard writes.
With N = 1 the shard writes ``scores.parquet`` itself, as before.
"""

from __future__ import annotations

import json
import logging
import zlib
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.batch import Batch
from healthscore.config import ModelConfig, ScoringMethod, model_config_from_dict
from healthscore.pipeline.score_history import load_needed_history
from healthscore.sources import registry
from healthscore.warehouse.models import HealthScore, ModelVersion, ScoreOverride
from healthscore.warehouse.upsert import bulk_upsert

log = logging.getLogger(__name__)

ARCHIVE_KEY = ["account_id", "as_of_date", "model_version"]
CROSS_ACCOUNT_METHODS = frozenset({ScoringMethod.PERCENTILE_RANK})  # a score depends on the other accounts'
PARTS_DIR = "_shard_parts"  # under the archive URL, beside health_scores/


def shard_of(account_ids: pd.Series | list[str], shards: int) -> np.ndarray:
    """The shard (0..shards-1) of each account: CRC-32 of its UTF-8 id mod ``shards``; stable across
    processes, machines and Python versions, and independent of the other accounts."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return np.fromiter((zlib.crc32(str(a).encode()) % shards for a in account_ids), dtype=np.int64,
                       count=len(account_ids))


def shard_signals(signals: pd.DataFrame, model: ModelConfig, shard: int, shards: int) -> pd.DataFrame:
    """The rows of ``signals`` that shard ``shard`` of ``shards`` scores with ``model`` (index kept)."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is outside 0..{shards - 1}")
    if shards == 1:
        return signals
    if model.scoring.method in CROSS_ACCOUNT_METHODS:
        return signals if shard == 0 else signals.iloc[:0]
    return signals[shard_of(signals["account_id"], shards) == shard]


def registered_models(engine: Engine) -> list[tuple[ModelConfig, bool]]:
    """(model, is_shadow) for the champion and each challenger, champion first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ModelVersion.version, ModelVersion.config_yaml, ModelVersion.role)
                            .where(ModelVersion.role.in_(["champion", "challenger"]))
                            .order_by(ModelVersion.role != "champion", ModelVersion.version)).all()
    return [(model_config_from_dict(json.loads(row.config_yaml), f"model_versions[{row.version}]", stored=True,
                                    computable_signals=registry.signal_ids()), row.role != "champion") for row in rows]


def load_history(engine: Engine, model_version: str, before: date, days: int) -> pd.DataFrame:
    """Archived scores of one model version before a date (for trends, momentum, attribution)."""
    table = HealthScore.__table__
    query = sa.select(table.c.account_id, table.c.as_of_date, table.c.score, table.c.band,
                      table.c.dimension_scores, table.c.lifecycle_stage, table.c.model_version).where(
        table.c.model_version == model_version, table.c.as_of_date < before,
        table.c.as_of_date >= before - timedelta(days=days))
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all(),
                             columns=["account_id", "as_of_date", "score", "band", "dimension_scores",
                                      "lifecycle_stage", "model_version"])
    return frame


def _history(engine: Engine, model: ModelConfig, signals: pd.DataFrame, batch: Batch,
             only_accounts: bool = False) -> pd.DataFrame:
    """What scoring reads from the archive: the rows it needs (bounded, ``score_history``) when every
    account is scored as of the batch date, as the daily pipeline does; else the whole window.
    ``only_accounts``: a shard's part of the day: the date windows of its accounts only."""
    if (pd.to_datetime(signals["as_of_date"]).dt.date == batch.batch_date).all():
        return load_needed_history(engine, model, model.version, batch.batch_date,
                                   [str(a) for a in signals["account_id"]], only_accounts=only_accounts)
    return load_history(engine, model.version, batch.batch_date, model.momentum.history_days)


def load_overrides(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ScoreOverride)).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in ScoreOverride.__table__.columns])


def _archive_rows(scores: pd.DataFrame, batch: Batch, is_shadow: bool) -> list[dict[str, Any]]:
    from healthscore.scoring import CONTRIBUTION_PREFIX, DIM_PREFIX, breakdown_dicts

    columns = set(HealthScore.__table__.c.keys()) - {"id"}
    frame = scores.astype({c: object for c in scores.columns if isinstance(scores[c].dtype, pd.CategoricalDtype)})
    for column, prefix in (("dimension_scores", DIM_PREFIX), ("contributions", CONTRIBUTION_PREFIX)):
        frame[column] = pd.Series(breakdown_dicts(scores, prefix), index=frame.index, dtype=object)
    rows = []
    for record in frame.to_dict("records"):
        row = {k: (None if _missing(v) else v) for k, v in record.items() if k in columns}
        row["is_shadow"] = is_shadow
        row["computed_at"] = batch.as_of
        rows.append(row)
    return rows


def _missing(value: Any) -> bool:
    if isinstance(value, dict | list | tuple):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


SHARD_READ_CHUNK = 900  # account ids per IN list (SQLite's default bind limit is far above)


def load_shard_signals(engine: Engine, as_of_date: date, shard: int, shards: int) -> pd.DataFrame:
    """The day's stored signals that shard ``shard`` of ``shards`` scores, labelled with their row positions in
    ``load_signals`` (the one-shard order, which the Parquet parts keep): only this shard's accounts are read,
    unless a registered model ranks across accounts (``CROSS_ACCOUNT_METHODS``), whose accounts shard 0 scores."""
    from healthscore.pipeline.signals import load_signals, signals_frame
    from healthscore.warehouse.models import AccountSignals

    whole = shards == 1 or (shard == 0 and any(m.scoring.method in CROSS_ACCOUNT_METHODS
                                               for m, _ in registered_models(engine)))
    if whole:
        return load_signals(engine, as_of_date)
    table = AccountSignals.__table__
    with engine.connect() as conn:
        ids = conn.execute(sa.select(table.c.account_id).where(table.c.as_of_date == as_of_date)
                           .order_by(table.c.account_id)).scalars().all()
        if not ids:
            raise LookupError(f"no account_signals stored for {as_of_date}; run the signals task first")
        positions = np.flatnonzero(shard_of(ids, shards) == shard)
        mine = [ids[p] for p in positions]
        rows: list = []
        for at in range(0, len(mine), SHARD_READ_CHUNK):
            chunk = mine[at : at + SHARD_READ_CHUNK]
            rows.extend(conn.execute(sa.select(table).where(table.c.as_of_date == as_of_date,
                                                            table.c.account_id.in_(chunk))
                                     .order_by(table.c.account_id)).mappings().all())
    if [r["account_id"] for r in rows] != mine:  # pragma: no cover - a concurrent signals rebuild
        raise RuntimeError(f"account_signals of {as_of_date} changed while shard {shard} read them")
    if not rows:
        return load_signals(engine, as_of_date).iloc[:0]
    frame = signals_frame(rows)
    frame.index = pd.Index(positions)
    return frame


def score_batch(engine: Engine, signals: pd.DataFrame, batch: Batch, archive_url: str | None = None,
                churn_model: Any = None, *, shard: int = 0, shards: int = 1) -> dict[str, int]:
    """Score with every registered model version and archive; returns rows written per version.

    ``shard``/``shards``: score only that shard's accounts (see the module docstring); with ``shards`` > 1
    the Parquet rows go to a part file, which ``combine_parquet_parts`` turns into ``scores.parquet``.
    """
    from healthscore.scoring import score_accounts

    written: dict[str, int] = {}
    overrides = load_overrides(engine)
    for model, is_shadow in registered_models(engine):
        mine = shard_signals(signals, model, shard, shards)
        if archive_url and shards > 1:
            part = _part_path(archive_url, batch, model.version, shard, shards)
            if part.exists():  # a retry, or the accounts moved: never combine a stale part
                part.unlink()
        if mine.empty:
            written[model.version] = 0
            continue
        history = _history(engine, model, mine, batch,
                           only_accounts=shards > 1 and model.scoring.method not in CROSS_ACCOUNT_METHODS)
        scores = score_accounts(mine, model, history=history, overrides=overrides, churn_model=churn_model,
                                model_version=model.version)
        rows = _archive_rows(scores, batch, is_shadow)
        with engine.begin() as conn:
            written[model.version] = bulk_upsert(conn, HealthScore, rows, ARCHIVE_KEY)
        if archive_url and shards > 1:
            _write_frame(_part_path(archive_url, batch, model.version, shard, shards),
                         _parquet_frame(scores, is_shadow), index=True)
        elif archive_url:
            write_parquet(archive_url, scores, batch, model.version, is_shadow)
        scored = scores["score"].notna().sum()
        log.info("model %s%s: %d accounts scored, %d unscored, bands %s", model.version,
                 " (shadow)" if is_shadow else "", scored, len(scores) - scored,
                 scores["band"].value_counts().to_dict())
    return written


def write_parquet(archive_url: str, scores: pd.DataFrame, batch: Batch, model_version: str, is_shadow: bool) -> str:
    """health_scores/as_of_date=YYYY-MM-DD/model_version=V/scores.parquet under ``archive_url``.

    ``archive_url`` is anything ObjectStoragePath understands: file:///... by default, s3://bucket/...
    when configured (with its Airflow connection). Rewriting a partition replaces it. Dimension scores
    and contributions stay flat float columns (``dim_<d>``, ``contribution_<d>``), which Parquet readers
    can filter and aggregate; the attribution list is JSON text.
    """
    target = _partition(archive_url, batch, model_version) / "scores.parquet"
    _write_frame(target, _parquet_frame(scores, is_shadow), index=False)
    return str(target)


def _parquet_frame(scores: pd.DataFrame, is_shadow: bool) -> pd.DataFrame:
    frame = scores.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(object)
        if frame[column].dtype == object and frame[column].map(lambda v: isinstance(v, dict | list)).any():
            frame[column] = frame[column].map(lambda v: None if v is None else json.dumps(v, sort_keys=True))
    frame["is_shadow"] = is_shadow
    return frame


def _write_frame(target: Any, frame: pd.DataFrame, index: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as handle:
        frame.to_parquet(handle, index=index)


def _partition(archive_url: str, batch: Batch, model_version: str, root: str = "health_scores") -> Any:
    from airflow.sdk import ObjectStoragePath

    return (ObjectStoragePath(archive_url) / root / f"as_of_date={batch.batch_date.isoformat()}"
            / f"model_version={model_version}")


def _part_path(archive_url: str, batch: Batch, model_version: str, shard: int, shards: int) -> Any:
    return _partition(archive_url, batch, model_version, PARTS_DIR) / f"part-{shard:05d}-of-{shards:05d}.parquet"


def shard_parts(archive_url: str, batch: Batch, model_version: str, shards: int) -> list[Any]:
    """The part files the shards of a ``shards``-way run wrote for one partition, in shard order."""
    return [p for p in (_part_path(archive_url, batch, model_version, i, shards) for i in range(shards)) if p.exists()]


def _read_part(part: Any) -> pd.DataFrame:
    """A part file back as the frame that was written: pandas reads text as ``str``, so the columns the
    writer had as ``object`` (the categorical labels) become ``object`` again, as ``scores.parquet`` has them."""
    import pyarrow.parquet as pq

    with part.open("rb") as handle:
        table = pq.read_table(handle)
    meta = table.schema.pandas_metadata or {}
    written = {c["name"]: c["numpy_type"] for c in meta.get("columns", [])}
    frame = table.to_pandas()
    for column in frame.columns:
        if written.get(column) == "object" and frame[column].dtype != object:
            frame[column] = frame[column].astype(object)
    return frame


def combine_parquet_parts(engine: Engine, batch: Batch, archive_url: str, shards: int,
                          expected_rows: dict[str, int] | None = None) -> dict[str, str]:
    """Each registered model's ``scores.parquet`` from its shards' part files, rows in the one-shard order
    (the part files keep the signals' row labels). Returns the file per model version.

    Runs after every shard has finished (the DAG's ``combine_shards``); ``expected_rows`` (per model
    version, the shards' summed row counts) makes a missing or stale part an error, not a short file.
    The parts stay (a retry of this step reads them again); the next sharded run of the date replaces them.
    """
    if shards == 1:
        return {}
    out: dict[str, str] = {}
    for model, _ in registered_models(engine):
        frames = [_read_part(part) for part in shard_parts(archive_url, batch, model.version, shards)]
        rows = sum(len(f) for f in frames)
        want = None if expected_rows is None else expected_rows.get(model.version, 0)
        if not frames or (want is not None and rows != want):
            raise LookupError(f"model {model.version} on {batch.batch_date}: the {len(frames)} shard part file(s) "
                              f"hold {rows} rows, the shards scored {want}; rerun the score_and_archive shards")
        frame = pd.concat(frames).sort_index(kind="stable") if len(frames) > 1 else frames[0]
        target = _partition(archive_url, batch, model.version) / "scores.parquet"
        _write_frame(target, frame, index=False)
        out[model.version] = str(target)
        log.info("model %s: scores.parquet from %d shard part(s), %d rows", model.version, len(frames), rows)
    return out
