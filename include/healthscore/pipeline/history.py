"""`healthscore history bootstrap`: months of history by running the daily DAG's own tasks day by day.

Why not an Airflow backfill: a year is 365 strictly sequential runs (each resumes from the previous batch's
cursors and scores against the history it archived), so a scheduler adds minutes of process start-up per
run and no parallelism. The bootstrap calls the same task entry points (``healthscore.pipeline.tasks``) in
the DAG's order, with the Airflow context a scheduled run would get, in one warm process.
``tests/integration/test_sixty_days.py`` proves that this gives what Airflow runs give.

* Resumable: after each finished day the bootstrap writes its progress file (atomically); a rerun with
  the same range starts at the first unfinished day (a day cut off half-way is run again: every task is
  idempotent per batch, as Airflow retries need).
* Data Docs: the validate tasks skip the per-day Data Docs build (``HEALTHSCORE_DATA_DOCS_PUBLISH=false``);
  the pages and index are built once at the end. The validation results, quarantine and every warehouse
  table are the same as with daily builds (the build only renders stored results to HTML).
"""

from __future__ import annotations

import calendar
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from healthscore.pipeline import tasks
from healthscore.settings import Settings
from healthscore.sources import registry

PROGRESS_FILE = "bootstrap-progress.json"
LOG_FILE = Path("logs") / "history-bootstrap.log"


def log_path(settings: Settings) -> Path:
    """Where a quiet bootstrap sends the pipeline's logs (``<data dir>/logs/history-bootstrap.log``)."""
    return settings.data_dir / LOG_FILE


def day_context(day: date) -> dict[str, Any]:
    """The context a scheduled daily run for batch ``day`` gets (its interval ends at the next midnight)."""
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
    return {"data_interval_end": end, "logical_date": end, "run_id": f"scheduled__{end.isoformat()}"}


def run_day(context: Mapping[str, Any], timings: dict[str, float] | None = None, *, prepare: bool = True) -> None:
    """One daily DAG run: every task in the DAG's dependency order, in this process.

    ``prepare=False`` leaves out ``prepare_warehouse`` (migrations and model registration), a no-op once it has
    run in this process: the bootstrap runs it on its first day only.
    """
    def timed(name: str, call: Callable[[], Any]) -> None:
        started = time.perf_counter()
        call()
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

    # The registry's order is the DAG's: a source comes after the sources it references (HubSpot first).
    sources = [(spec.name, spec.conn_id) for spec in registry.sources()]
    if prepare:
        timed("prepare_warehouse", lambda: tasks.run_prepare(context))
    for source, conn_id in sources:
        timed(f"extract_{source}", lambda s=source, c=conn_id: tasks.run_extract(s, c, context))
    for source, _ in sources:
        timed(f"validate_{source}", lambda s=source: tasks.run_validate(s, context))
    timed("build_signals", lambda: tasks.run_signals(context))
    timed("score_and_archive", lambda: tasks.run_score(context))
    timed("record_outcomes", lambda: tasks.run_outcomes(context))
    timed("run_playbooks", lambda: tasks.run_act(registry.source("hubspot").conn_id, context))


@dataclass(frozen=True)
class BootstrapPlan:
    first: date
    last: date

    @classmethod
    def months_ending(cls, last: date, months: int) -> BootstrapPlan:
        """``months`` months of batches ending with ``last`` (12 months = 365 or 366 days)."""
        if months < 1:
            raise ValueError(f"--months must be at least 1, got {months}")
        year, month = divmod(last.year * 12 + last.month - 1 - months, 12)
        month += 1
        day = min(last.day, calendar.monthrange(year, month)[1])
        return cls(date(year, month, day) + timedelta(days=1), last)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


def _read_progress(path: Path, plan: BootstrapPlan) -> date | None:
    """Last finished day of the same plan, or None (another plan's file is ignored)."""
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if state.get("first") != plan.first.isoformat() or state.get("last") != plan.last.isoformat():
        return None
    return date.fromisoformat(state["done"]) if state.get("done") else None


def _write_progress(path: Path, plan: BootstrapPlan, done: date, timings: Mapping[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"first": plan.first.isoformat(), "last": plan.last.isoformat(),
                               "done": done.isoformat(), "task_seconds": dict(timings)}, indent=2))
    os.replace(tmp, path)


@contextmanager
def env_overrides(overrides: Mapping[str, str]) -> Iterator[None]:
    """Set these environment variables for the block, then put back what was there (or nothing)."""
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _logs_to_file(path: Path | None) -> Iterator[None]:
    """With a path: the terminal's log handlers (stream handlers on stdout/stderr, as Airflow's logging
    config installs on the root logger) are set aside and every record goes to ``path`` (appended) instead,
    so the progress bar stays readable. Other handlers (pytest's capture, files) are left as they are."""
    if path is None:
        yield
        return
    import logging
    import sys

    import airflow  # noqa: F401 -- its logging config installs the terminal handler on import: do it before

    root = logging.getLogger()
    terminal = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                and getattr(h, "stream", None) in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)]
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    level = root.level
    for h in terminal:
        root.removeHandler(h)
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        handler.close()
        for h in terminal:
            root.addHandler(h)
        root.setLevel(level)


@dataclass
class BootstrapResult:
    plan: BootstrapPlan
    days_run: int
    skipped: int
    seconds: float
    task_seconds: dict[str, float]
    #: (batch date, wall seconds, process CPU seconds) of each day run, in order
    day_seconds: list[tuple[date, float, float]] = field(default_factory=list)
    #: where the logs went (quiet mode), or None when they stayed on the terminal
    log_path: Path | None = None


def bootstrap(plan: BootstrapPlan, *, progress: bool = True, stop_after: int | None = None,
              settings: Settings | None = None, quiet: bool | None = None) -> BootstrapResult:
    """Run the daily pipeline for every day of ``plan`` not yet done; resumable (see module doc).

    ``stop_after``: run at most this many days (an interruption on purpose, for tests and trials).
    ``quiet`` (default: when the progress bar is shown): the pipeline's logs go to ``log_path(settings)``
    instead of the terminal, where they would drown the bar; ``quiet=False`` keeps them on the terminal.
    """
    from tqdm import tqdm

    settings = settings or Settings.from_env()
    progress_path = settings.data_dir / PROGRESS_FILE
    logs = log_path(settings) if (progress if quiet is None else quiet) else None
    done = _read_progress(progress_path, plan)
    todo = [d for d in plan.days if done is None or d > done]
    timings: dict[str, float] = {}
    started = time.perf_counter()
    ran = 0
    per_day: list[tuple[date, float, float]] = []
    with env_overrides({"HEALTHSCORE_DATA_DOCS_PUBLISH": "false"}), _logs_to_file(logs), tqdm(
            total=len(plan.days), initial=len(plan.days) - len(todo), unit="day", disable=not progress,
            desc="history", dynamic_ncols=True) as bar:
        for day in todo:
            if stop_after is not None and ran >= stop_after:
                break
            bar.set_postfix_str(day.isoformat())
            wall0, cpu0 = time.perf_counter(), time.process_time()
            run_day(day_context(day), timings, prepare=ran == 0)
            per_day.append((day, time.perf_counter() - wall0, time.process_time() - cpu0))
            _write_progress(progress_path, plan, day, timings)
            ran += 1
            bar.update(1)
        if ran:
            from healthscore.pipeline.validate import QualityPaths
            from healthscore.quality.gate import publish_docs

            bar.set_postfix_str("Data Docs")
            paths = QualityPaths.from_settings(settings)
            docs_started = time.perf_counter()
            publish_docs(paths.data_docs_dir, paths.data_docs_index_limit)  # once, for every day's results
            timings["data_docs (once)"] = time.perf_counter() - docs_started
    return BootstrapResult(plan, ran, len(plan.days) - len(todo), time.perf_counter() - started, timings, per_day,
                           logs)
