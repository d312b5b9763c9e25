"""Entry points of the DAG tasks: Airflow context in, plain pipeline calls out, summaries back as XCom."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from healthscore.pipeline.extract import extract_source
from healthscore.pipeline.runtime import batch_from_context, warehouse_engine
from healthscore.pipeline.validate import QualityPaths, build_context, validate_source
from healthscore.settings import Settings
from healthscore.sources import SourceConnection

log = logging.getLogger(__name__)


def run_extract(source: str, conn_id: str, context: Mapping[str, Any]) -> list[dict]:
    settings = Settings.from_env()
    batch = batch_from_context(context)
    engine = warehouse_engine(settings)
    try:
        connection = SourceConnection.from_airflow(conn_id)
        log.info("extracting %s for batch %s (data as of %s) through connection %s", source, batch.batch_date,
                 batch.as_of.isoformat(), conn_id)
        validation = None
        if source == "mixpanel":
            validation = build_context(engine, "mixpanel", batch, QualityPaths.under(settings.data_dir))
        summaries = extract_source(source, connection, engine, batch, validation=validation,
                                   mixpanel_backfill_days=settings.mixpanel_backfill_days)
        return [{k: v for k, v in asdict(s).items()} for s in summaries]
    finally:
        engine.dispose()


def run_validate(source: str, context: Mapping[str, Any]) -> list[dict]:
    settings = Settings.from_env()
    batch = batch_from_context(context)
    engine = warehouse_engine(settings)
    try:
        paths = QualityPaths.under(settings.data_dir)
        summaries = validate_source(source, engine, batch, paths, fail_on_critical=settings.quality_fail_on_critical)
        log.info("Data Docs for RevOps: %s", paths.data_docs_dir / "index.html")
        return [{**s, "batch_date": str(s["batch_date"])} for s in summaries]
    finally:
        engine.dispose()
