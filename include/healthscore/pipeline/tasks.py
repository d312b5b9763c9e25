"""Entry points of the DAG tasks: Airflow context in, plain pipeline calls out, summaries back as XCom."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from healthscore.pipeline.extract import extract_source
from healthscore.pipeline.runtime import batch_from_context, task_scope
from healthscore.pipeline.validate import QualityPaths, build_context, validate_source
from healthscore.sources import SourceConnection, registry

log = logging.getLogger(__name__)

# The act step runs after the batch's extraction cutoff. Its CRM writes (tasks, health fields) are
# stamped later than the data the batch read, so rerunning a date reads the same CRM state, and the
# next batch sees the writes like any other change. (Only the sandbox's clock makes this visible.)
ACT_AFTER_CUTOFF = timedelta(hours=1)


def run_extract(source: str, conn_id: str, context: Mapping[str, Any]) -> list[dict]:
    with task_scope(context) as (settings, batch, engine):
        connection = SourceConnection.from_airflow(conn_id)
        log.info("extracting %s for batch %s (data as of %s) through connection %s", source, batch.batch_date,
                 batch.as_of.isoformat(), conn_id)
        validation = None
        if registry.source(source).streams_validation:  # its verdict is judged by the validate task
            validation = build_context(engine, source, batch, QualityPaths.from_settings(settings),
                                       publish_docs=settings.data_docs_publish)
        summaries = extract_source(source, connection, engine, batch, validation=validation,
                                   mixpanel_backfill_days=settings.mixpanel_backfill_days)
        return [{k: v for k, v in asdict(s).items()} for s in summaries]


def run_extract_plan(source: str, context: Mapping[str, Any]) -> list[dict]:
    """The parts of a splittable source's batch (``HEALTHSCORE_EXTRACT_PARTS``), planned once from the committed
    cursors so every fetch part and the landing step agree on them (``healthscore.pipeline.extract_parts``)."""
    from healthscore.pipeline.extract_parts import plan_parts

    with task_scope(context) as (settings, batch, engine):
        return plan_parts(source, engine, batch, settings.extract_parts,
                          backfill_days=settings.mixpanel_backfill_days)


def run_extract_fetch(source: str, conn_id: str, part: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
    """Pull and stage one part; nothing is written to the warehouse (the landing step does that)."""
    from healthscore.pipeline.extract_parts import fetch_part, staging_root

    with task_scope(context) as (settings, batch, engine):
        connection = SourceConnection.from_airflow(conn_id)
        log.info("fetching %s part %d of %d for batch %s (data as of %s) through connection %s", source,
                 part["part"] + 1, part["parts"], batch.batch_date, batch.as_of.isoformat(), conn_id)
        validation = None
        if registry.source(source).streams_validation:  # the chunks' verdicts are stored by the landing step
            validation = build_context(engine, source, batch, QualityPaths.from_settings(settings),
                                       publish_docs=settings.data_docs_publish)
        with registry.source(source).client_class()(connection, as_of=batch.as_of) as client:
            return fetch_part(client, part, batch, staging_root(settings.data_dir), validation)


def run_extract_land(source: str, context: Mapping[str, Any], plan: list[dict] | None = None) -> list[dict]:
    """Land every staged part of the batch and the new cursors in one transaction. ``plan``: the plan task's
    (None: planned again, as the history bootstrap does; the same plan while nothing has landed)."""
    from healthscore.pipeline.extract_parts import land_parts, plan_parts, staging_root

    with task_scope(context) as (settings, batch, engine):
        if plan is None:
            plan = plan_parts(source, engine, batch, settings.extract_parts,
                              backfill_days=settings.mixpanel_backfill_days)
        paths = QualityPaths.from_settings(settings)
        docs = (paths.data_docs_dir, paths.data_docs_index_limit) if settings.data_docs_publish else None
        summaries = land_parts(source, engine, batch, list(plan), staging_root(settings.data_dir), data_docs=docs)
        return [asdict(s) for s in summaries]


def run_validate(source: str, context: Mapping[str, Any]) -> list[dict]:
    with task_scope(context) as (settings, batch, engine):
        paths = QualityPaths.from_settings(settings)
        summaries = validate_source(source, engine, batch, paths, fail_on_critical=settings.quality_fail_on_critical,
                                    publish=settings.data_docs_publish, chunk_rows=settings.validation_chunk_rows)
        log.info("Data Docs for RevOps: %s", paths.data_docs_dir / "index.html")
        return [{**s, "batch_date": str(s["batch_date"])} for s in summaries]


def run_prepare(context: Mapping[str, Any]) -> dict:
    """Migrate the warehouse and register the configured model.

    The first model becomes the champion; a YAML whose version is new becomes a challenger (scored daily in
    shadow) and the log says how to promote it; a known version with a changed config is refused.
    """
    from healthscore.config import load_model_config
    from healthscore.pipeline.signals import COMPUTED_SIGNALS
    from healthscore.warehouse.registry import champion_version, register

    with task_scope(migrate=True) as (settings, _, engine):
        model = load_model_config(settings.model_config_path, computable_signals=COMPUTED_SIGNALS)
        registered = register(engine, model, author="prepare_warehouse",
                              changelog=f"registered from {settings.model_config_path or 'the packaged model'}")
        champion = champion_version(engine)
        if registered.role == "champion":
            log.info(registered.message)
        else:
            log.warning("%s; the champion scoring and acting is %s", registered.message, champion)
        return {"model_version": model.version, "config_hash": model.config_hash, "role": registered.role,
                "champion": champion, "message": registered.message}


def run_signals(context: Mapping[str, Any]) -> dict:
    from healthscore.pipeline.score import registered_models
    from healthscore.pipeline.signals import build_signals, store_signals

    with task_scope(context) as (settings, batch, engine):
        champion = next(model for model, shadow in registered_models(engine) if not shadow)
        frame = build_signals(engine, batch.as_of, batch.batch_date, champion)
        store_signals(engine, frame)
        blocked = sorted({d for dims in frame.get("blocked_dimensions", []) for d in (dims or [])})
        return {"accounts": len(frame), "blocked_dimensions": blocked}


def run_score_plan(context: Mapping[str, Any]) -> list[dict[str, int]]:
    """The score_and_archive shards of the batch: ``{"shard": i, "shards": N}`` for i < N
    (``HEALTHSCORE_SCORE_SHARDS``), decided once so every shard and the combine step agree on N."""
    from healthscore.settings import Settings

    shards = Settings.from_env().score_shards
    log.info("scoring in %d account shard(s)", shards)
    return [{"shard": i, "shards": shards} for i in range(shards)]


def run_score(context: Mapping[str, Any], shard: int = 0, shards: int = 1) -> dict:
    from healthscore.pipeline.score import load_shard_signals, score_batch

    cpu0, rss0, _ = _process_usage()
    with task_scope(context) as (settings, batch, engine):
        signals = load_shard_signals(engine, batch.batch_date, shard, shards)
        written = score_batch(engine, signals, batch, archive_url=settings.resolved_archive_url,
                              shard=shard, shards=shards)
        log.info("archive (shard %d of %d): %s rows per model version; Parquet under %s", shard, shards, written,
                 settings.resolved_archive_url)
        cpu1, _, peak = _process_usage()
        # What a shard costs its worker (sizing: bench/bench_celery_scaleout.py reads this line from the task log).
        log.info("shard usage: shard=%d shards=%d accounts=%d cpu_s=%.2f peak_rss_mb=%.0f start_rss_mb=%.0f",
                 shard, shards, len(signals), cpu1 - cpu0, peak, rss0)
        return written


def _process_usage() -> tuple[float, float, float]:
    """(CPU seconds, RSS MB, peak RSS MB) of this process. The peak is /proc's VmHWM (ru_maxrss where there is
    no /proc): ru_maxrss carries a forking parent's peak over exec."""
    import resource
    from pathlib import Path

    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime
    try:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return cpu, int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        return cpu, float("nan"), ru.ru_maxrss / 1024


def run_combine_shards(context: Mapping[str, Any], shard_results: list[dict]) -> dict:
    """After every shard: the Parquet partitions from the shards' part files (nothing to do with one shard)."""
    from healthscore.pipeline.score import combine_parquet_parts

    results = list(shard_results)
    expected: dict[str, int] = {}
    for written in results:
        for version, rows in written.items():
            expected[version] = expected.get(version, 0) + int(rows)
    with task_scope(context) as (settings, batch, engine):
        files = combine_parquet_parts(engine, batch, settings.resolved_archive_url, len(results), expected)
    return {"shards": len(results), "rows": expected, "parquet": files}


def run_act(conn_id: str, context: Mapping[str, Any]) -> dict:
    from healthscore.pipeline.act import act
    from healthscore.playbooks.notifiers import default_outbox_path
    from healthscore.sources import HubSpotSource

    with task_scope(context) as (settings, batch, engine):
        connection = SourceConnection.from_airflow(conn_id)
        with HubSpotSource(connection, as_of=batch.as_of + ACT_AFTER_CUTOFF) as hubspot:
            return act(engine, batch, hubspot.client, default_outbox_path(settings.data_dir),
                       fallback_recipient=settings.notify_fallback_email)


def run_outcomes(context: Mapping[str, Any]) -> dict:
    """Renewal outcomes from the batch's validated CRM deals and Stripe subscriptions (both sides kept)."""
    from healthscore.pipeline.outcomes import record_outcomes

    with task_scope(context) as (_, batch, engine):
        return record_outcomes(engine, batch)


def _report_month(context: Mapping[str, Any]):
    """The month a monthly run reports on: the month before its data interval end, or ``params.month``."""
    from datetime import date

    params = context.get("params") or {}
    if params.get("month"):
        return date.fromisoformat(f"{params['month']}-01" if len(str(params["month"])) == 7 else params["month"])
    return (batch_from_context(context).batch_date).replace(day=1)


def run_accuracy(context: Mapping[str, Any]) -> dict:
    """The monthly accuracy report for the month before the run's data interval end (or params.month)."""
    from healthscore.pipeline.accuracy import AccuracyPaths, run_month

    month = _report_month(context)
    with task_scope() as (settings, _, engine):
        return run_month(engine, month, AccuracyPaths.under(settings.data_dir))


def run_executive_report(context: Mapping[str, Any]) -> dict:
    """The monthly executive report (HTML + PDF) for the same month, sent to leadership through the outbox."""
    from healthscore.pipeline.executive import run_month

    month = _report_month(context)
    with task_scope() as (settings, _, engine):
        return run_month(engine, month, settings.data_dir, settings.notify_fallback_email)


def run_recalibration(step: str, context: Mapping[str, Any], **kwargs: Any) -> dict:
    """One step of the quarterly recalibration, for the batch day before the run's data interval end.

    ``step``: ``training_set`` | ``recalibrate`` | ``backtest`` | ``promote`` (see ``healthscore.pipeline.recalibration``).
    """
    from healthscore.pipeline import recalibration as rc

    params = context.get("params") or {}
    with task_scope(context) as (settings, batch, engine):
        until = batch.batch_date
        out_dir = rc.run_dir(settings.data_dir, until)
        if step == "training_set":
            return rc.build_training_set(engine, until, int(params.get("months") or rc.RecalibrationOptions.months),
                                         out_dir)
        if step == "recalibrate":
            return rc.recalibrate_challenger(engine, until, out_dir,
                                             method=str(params.get("method") or "weighted_average"))
        if step == "backtest":
            margin = params.get("margin")
            return rc.backtest(engine, out_dir, kwargs["challenger"],
                               float(rc.RecalibrationOptions.margin if margin is None else margin))
        if step == "promote":
            return rc.promote_challenger(engine, kwargs["challenger"], kwargs.get("approver"))
    raise ValueError(f"unknown recalibration step {step!r}")
