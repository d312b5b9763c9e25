"""`healthscore history bootstrap`: months of history by running the daily DAG's own tasks day by day.

Why not an Airflow backfill: a year is 365 strictly sequential runs (each resumes from the previous batch's
cursors and scores against the history it archived), so a scheduler adds minutes of process start-up per
run. The bootstrap calls the same task entry points (``healthscore.pipeline.tasks``), with the Airflow context a
scheduled run would get, in warm processes: by default a pool of worker processes (``DayPool``, one per core)
runs each task of a day as soon as the DAG's upstream tasks of that day are done (``day_graph``: the four
sources' extract and validate chains side by side, outcomes beside signals and scoring), as Airflow's executor
does; days stay strictly one after another. ``workers=1`` runs the tasks one after another in this process.
``tests/integration/test_sixty_days.py`` proves that this gives what Airflow runs give;
``tests/integration/test_history_parallel.py`` that the worker pool gives what sequential tasks give.

* Resumable: after each finished day the bootstrap writes its progress file (atomically); a rerun with
  the same range starts at the first unfinished day (a day cut off half-way is run again: every task is
  idempotent per batch, as Airflow retries need).
* Data Docs: the validate tasks skip the per-day Data Docs build (``HEALTHSCORE_DATA_DOCS_PUBLISH=false``);
  the pages and index are built once at the end (each worker its own validations' pages, side by side, then
  the index once). The validation results, quarantine and every warehouse
  table are the same as with daily builds (the build only renders stored results to HTML).
"""

from __future__ import annotations

import calendar
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
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


def day_graph(*, prepare: bool = True) -> dict[str, tuple[str, ...]]:
    """The daily DAG's tasks as the bootstrap runs them, each with the tasks it waits for: the DAG's wiring
    (``dags/customer_health_daily.py``), from the same registry facts. One account shard, so the shard plan and
    the combine step (a no-op for one shard) are left out. A split source's mapped ``fetch_<source>`` is one task
    here that fetches every part of the plan in turn (the sources' chains already run side by side). Keys are in a dependency order (the sequential one).

    ``prepare=False`` leaves out ``prepare_warehouse`` (migrations and model registration), a no-op once it has
    run: the bootstrap runs it on its first day only. ``tests/dags`` checks this against the parsed DAG.
    """
    specs = registry.sources()
    root = ("prepare_warehouse",) if prepare else ()
    graph: dict[str, list[str]] = {name: [] for name in root}
    first = {spec.name: f"plan_extract_{spec.name}" if spec.split else f"extract_{spec.name}" for spec in specs}
    for spec in specs:  # a split source: plan, fetch (every part, in one worker here), land (see extract_parts)
        graph[first[spec.name]] = list(root)
        if spec.split:
            graph[f"fetch_{spec.name}"] = [first[spec.name]]
            graph[f"extract_{spec.name}"] = [f"fetch_{spec.name}", first[spec.name]]
    for spec in specs:
        graph[f"validate_{spec.name}"] = [f"extract_{spec.name}"]
    for spec in specs:  # a source's referential checks need that source's batch landed first
        for ref in spec.references:
            if ref != spec.name:
                graph[first[spec.name] if spec.streams_validation else f"validate_{spec.name}"].append(
                    f"extract_{ref}")
    graph["build_signals"] = [f"validate_{spec.name}" for spec in specs]
    graph["score_and_archive"] = ["build_signals"]
    graph["record_outcomes"] = ["validate_hubspot", "validate_stripe"]  # the validated deals and subscriptions
    graph["run_playbooks"] = ["score_and_archive", "record_outcomes", *root]
    return {name: tuple(upstream) for name, upstream in graph.items()}


def run_task(name: str, context: Mapping[str, Any]) -> Any:
    """Call the entry point (``healthscore.pipeline.tasks``) of one task of ``day_graph``, as its DAG task does."""
    fixed: dict[str, Callable[[], Any]] = {
        "prepare_warehouse": lambda: tasks.run_prepare(context),
        "build_signals": lambda: tasks.run_signals(context),
        "score_and_archive": lambda: tasks.run_score(context),
        "record_outcomes": lambda: tasks.run_outcomes(context),
        "run_playbooks": lambda: tasks.run_act(registry.source("hubspot").conn_id, context),
    }
    if name in fixed:
        return fixed[name]()
    if name.startswith("plan_extract_"):
        return tasks.run_extract_plan(name.removeprefix("plan_extract_"), context)
    step, _, source = name.partition("_")
    if step == "fetch":  # the DAG maps one task per part; here one task fetches every part in turn
        conn_id = registry.source(source).conn_id
        return [tasks.run_extract_fetch(source, conn_id, part, context)
                for part in tasks.run_extract_plan(source, context)]
    if step == "extract" and registry.source(source).split:
        return tasks.run_extract_land(source, context)
    if step == "extract":
        return tasks.run_extract(source, registry.source(source).conn_id, context)
    if step == "validate":
        return tasks.run_validate(source, context)
    raise ValueError(f"not a task of the daily DAG: {name!r}")


def run_day(context: Mapping[str, Any], timings: dict[str, float] | None = None, *, prepare: bool = True) -> None:
    """One daily DAG run: every task one after another in a dependency order, in this process.

    ``prepare=False`` leaves out ``prepare_warehouse`` (see ``day_graph``).
    """
    for name in day_graph(prepare=prepare):
        started = time.perf_counter()
        run_task(name, context)
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - started


class TaskFailed(RuntimeError):
    """A task failed in a worker process; the message carries the worker's traceback."""


def _worker_main(conn: Any, logs: Path | None) -> None:
    """A worker process: runs what the bootstrap sends (one task at a time), answers with its timings."""
    import traceback

    with _logs_to_file(logs):
        while True:
            try:
                message = conn.recv()
            except (EOFError, KeyboardInterrupt):
                return
            if message[0] == "stop":
                return
            wall0, cpu0 = time.perf_counter(), time.process_time()
            try:
                if message[0] == "task":
                    _run_with_retries(message[1], message[2])
                elif message[0] == "docs":
                    _publish_docs_pages(index=message[1])
                answer: tuple = ("ok", time.perf_counter() - wall0, time.process_time() - cpu0)
            except KeyboardInterrupt:
                return
            except BaseException:  # noqa: BLE001 -- reported to the bootstrap, which stops
                answer = ("error", traceback.format_exc(), time.process_time() - cpu0)
            try:
                conn.send(answer)
            except (BrokenPipeError, EOFError):
                return


#: As the DAG's default_args: a task is retried twice (every task is idempotent per batch).
TASK_RETRIES = 2


def _run_with_retries(name: str, context: Mapping[str, Any]) -> None:
    """A task in a worker; retried (as Airflow would) only when SQLite reports a lock held by a task running beside
    it past the busy timeout: the one failure that running tasks side by side adds."""
    from sqlalchemy.exc import OperationalError

    for attempt in range(TASK_RETRIES + 1):
        try:
            run_task(name, context)
            return
        except OperationalError as exc:
            if "database is locked" not in str(exc) or attempt == TASK_RETRIES:
                raise
            import logging

            logging.getLogger(__name__).warning("%s: %s; retrying (%d of %d)", name, exc.orig, attempt + 1,
                                                TASK_RETRIES)


def _publish_docs_pages(*, index: bool) -> None:
    """This process's pending Data Docs pages (validations run with ``publish=False``); or, with ``index``, only
    the index of every page the site holds."""
    from healthscore.pipeline.validate import QualityPaths
    from healthscore.quality.docs import runner

    paths = QualityPaths.from_settings(Settings.from_env())
    gx_runner = runner(paths.data_docs_dir, paths.data_docs_index_limit)
    if index:
        gx_runner.publish_index()
    else:
        gx_runner.publish(index=False)


class DayPool:
    """``workers`` processes that run a day's tasks in parallel, each task as soon as the tasks it waits for are
    done (``day_graph``: the DAG's own dependencies, as Airflow's executor runs them), one task per process at a
    time. Processes live for the whole bootstrap, so each keeps its warm state (GX context, suites, imports).

    Spawned (not forked): the bootstrap process may hold threads and open connections (an in-process sandbox,
    the progress bar); the workers inherit the environment and start clean.
    """

    def __init__(self, workers: int, logs: Path | None) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        try:
            for number in range(workers):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker_main, args=(child, logs), name=f"history-worker-{number}",
                                   daemon=True)
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
        except BaseException:
            self.close()
            raise

    def _answer(self, conn: Any, what: str) -> tuple:
        try:
            return conn.recv()
        except EOFError:
            raise TaskFailed(f"{what}: the worker process exited") from None

    def run_day(self, context: Mapping[str, Any], timings: dict[str, float], *, prepare: bool) -> float:
        """Every task of the day (``day_graph`` order breaks ties); the CPU seconds the tasks took. After a failed
        task the running ones finish, nothing new starts, and ``TaskFailed`` says which task and why."""
        from multiprocessing.connection import wait

        graph = day_graph(prepare=prepare)
        pending, done = list(graph), set()
        running: dict[Any, str] = {}
        failure: str | None = None
        cpu = 0.0
        while True:
            idle = [c for c in self._conns if c not in running]
            while failure is None and idle:
                ready = next((n for n in pending if all(u in done for u in graph[n])), None)
                if ready is None:
                    break
                pending.remove(ready)
                conn = idle.pop(0)
                conn.send(("task", ready, dict(context)))
                running[conn] = ready
            if not running:
                break
            for conn in wait(list(running)):
                name = running.pop(conn)
                answer = self._answer(conn, name)
                cpu += answer[-1]
                if answer[0] == "ok":
                    done.add(name)
                    timings[name] = timings.get(name, 0.0) + answer[1]
                elif failure is None:
                    failure = f"task {name} of batch {context.get('run_id')} failed:\n{answer[1]}"
        if failure is not None:
            raise TaskFailed(failure)
        if pending:  # cannot happen with a DAG-shaped graph
            raise TaskFailed(f"tasks never became ready: {pending}")
        return cpu

    def publish_docs(self) -> float:
        """Data Docs of every validation the workers ran: their pages side by side, then the index once (it lists
        the pages the site holds); the CPU seconds it took."""
        cpu = 0.0
        for conn in self._conns:
            conn.send(("docs", False))
        for conn in self._conns:
            answer = self._answer(conn, "Data Docs pages")
            if answer[0] != "ok":
                raise TaskFailed(f"Data Docs pages failed:\n{answer[1]}")
            cpu += answer[-1]
        self._conns[0].send(("docs", True))
        answer = self._answer(self._conns[0], "Data Docs index")
        if answer[0] != "ok":
            raise TaskFailed(f"Data Docs index failed:\n{answer[1]}")
        return cpu + answer[-1]

    def close(self) -> None:
        for conn in self._conns:
            with suppress(BrokenPipeError, OSError):
                conn.send(("stop",))
        for proc in self._procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []

    def __enter__(self) -> DayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def default_workers() -> int:
    """Worker processes by default: one per core, at most 4 (a day has four independent source chains)."""
    return max(1, min(4, os.cpu_count() or 1))


def bootstrap(plan: BootstrapPlan, *, progress: bool = True, stop_after: int | None = None,
              settings: Settings | None = None, quiet: bool | None = None,
              workers: int | None = None) -> BootstrapResult:
    """Run the daily pipeline for every day of ``plan`` not yet done; resumable (see module doc).

    ``stop_after``: run at most this many days (an interruption on purpose, for tests and trials).
    ``quiet`` (default: when the progress bar is shown): the pipeline's logs go to ``log_path(settings)``
    instead of the terminal, where they would drown the bar; ``quiet=False`` keeps them on the terminal.
    ``workers`` (default ``default_workers()``): processes running a day's tasks side by side (``DayPool``);
    1 runs them one after another in this process.
    """
    from contextlib import nullcontext

    from tqdm import tqdm

    settings = settings or Settings.from_env()
    workers = default_workers() if workers is None else workers
    progress_path = settings.data_dir / PROGRESS_FILE
    logs = log_path(settings) if (progress if quiet is None else quiet) else None
    done = _read_progress(progress_path, plan)
    remaining = [d for d in plan.days if done is None or d > done]
    skipped = len(plan.days) - len(remaining)
    todo = remaining if stop_after is None else remaining[:stop_after]
    timings: dict[str, float] = {}
    started = time.perf_counter()
    ran = 0
    per_day: list[tuple[date, float, float]] = []
    with env_overrides({"HEALTHSCORE_DATA_DOCS_PUBLISH": "false"}), _logs_to_file(logs), tqdm(
            total=len(plan.days), initial=skipped, unit="day", disable=not progress,
            desc="history", dynamic_ncols=True) as bar, (
            DayPool(workers, logs) if workers > 1 and todo else nullcontext()) as pool:
        for day in todo:
            bar.set_postfix_str(day.isoformat())
            wall0, cpu0 = time.perf_counter(), time.process_time()
            if pool is None:
                run_day(day_context(day), timings, prepare=ran == 0)
                cpu = time.process_time() - cpu0
            else:
                cpu = pool.run_day(day_context(day), timings, prepare=ran == 0) + time.process_time() - cpu0
            per_day.append((day, time.perf_counter() - wall0, cpu))
            _write_progress(progress_path, plan, day, timings)
            ran += 1
            bar.update(1)
        if ran:
            bar.set_postfix_str("Data Docs")
            docs_started = time.perf_counter()
            if pool is None:
                from healthscore.pipeline.validate import QualityPaths
                from healthscore.quality.gate import publish_docs

                paths = QualityPaths.from_settings(settings)
                publish_docs(paths.data_docs_dir, paths.data_docs_index_limit)  # once, for every day's results
            else:
                pool.publish_docs()  # each worker's pages side by side, then the index
            timings["data_docs (once)"] = time.perf_counter() - docs_started
    return BootstrapResult(plan, ran, skipped, time.perf_counter() - started, timings, per_day, logs)
