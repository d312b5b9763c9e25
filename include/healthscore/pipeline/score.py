"""Score a batch's account signals and archive them: warehouse history plus date-partitioned Parquet.

The champion and every registered challenger score the same signals; challengers are archived with
``is_shadow`` and never reach playbooks. The archive write is one idempotent upsert per model
version, stamped with the batch's as-of instant rather than wall time, so reruns are identical.
"""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.batch import Batch
from healthscore.config import ModelConfig, model_config_from_dict
from healthscore.sources import registry
from healthscore.warehouse.models import HealthScore, ModelVersion, ScoreOverride
from healthscore.warehouse.upsert import bulk_upsert

log = logging.getLogger(__name__)

ARCHIVE_KEY = ["account_id", "as_of_date", "model_version"]


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


def score_batch(engine: Engine, signals: pd.DataFrame, batch: Batch, archive_url: str | None = None,
                churn_model: Any = None) -> dict[str, int]:
    """Score with every registered model version and archive; returns rows written per version."""
    from healthscore.scoring import score_accounts

    written: dict[str, int] = {}
    overrides = load_overrides(engine)
    for model, is_shadow in registered_models(engine):
        history = load_history(engine, model.version, batch.batch_date, model.momentum.history_days)
        scores = score_accounts(signals, model, history=history, overrides=overrides, churn_model=churn_model,
                                model_version=model.version)
        rows = _archive_rows(scores, batch, is_shadow)
        with engine.begin() as conn:
            written[model.version] = bulk_upsert(conn, HealthScore, rows, ARCHIVE_KEY)
        if archive_url:
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
    from airflow.sdk import ObjectStoragePath

    frame = scores.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(object)
        if frame[column].dtype == object and frame[column].map(lambda v: isinstance(v, dict | list)).any():
            frame[column] = frame[column].map(lambda v: None if v is None else json.dumps(v, sort_keys=True))
    frame["is_shadow"] = is_shadow
    folder = (ObjectStoragePath(archive_url) / "health_scores" / f"as_of_date={batch.batch_date.isoformat()}"
              / f"model_version={model_version}")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "scores.parquet"
    with target.open("wb") as handle:
        frame.to_parquet(handle, index=False)
    return str(target)
