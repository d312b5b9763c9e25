"""`healthscore demo`: the main job on the embedded defaults.

SQLite warehouse under data/, Airflow on its own SQLite metadata DB under data/airflow/, and the
sandbox started as a separate process, exactly as an operator would run them. The daily DAG runs in
Airflow for a few consecutive days, then the demo prints what landed, what the quality gate did and
where the reports are.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from healthscore.settings import Settings
from healthscore_sandbox import credentials as cred

if TYPE_CHECKING:
    from healthscore.local_airflow import LocalAirflow

DEMO_LAST_DAY = date(2026, 9, 30)
#: Days of history the demo bootstraps before its Airflow runs. 64 days (from 2026-07-25) put a score in the
#: archive 30 days (+ the 3-day lookup tolerance) before every September renewal, so the 30-day lead of the
#: accuracy report covers the whole month; the 60- and 90-day leads reach before the history and show their
#: (partial) coverage. `healthscore demo --history-days 130` covers all three leads (about twice as long).
DEMO_HISTORY_DAYS = 64
PROGRESS_POLL_SECONDS = 3.0
FINISHED = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Exit|Interrupt))(?::\s*(.*))?$")


class DemoError(RuntimeError):
    """A demo step failed; the message says which and where its log is (shown without a traceback)."""


@dataclass
class DayResult:
    logical_date: date
    state: str | None
    seconds: float
    log_path: Path
    tasks: list[tuple[str, str | None, float | None]]
    returncode: int | None = None

    def failed_tasks(self) -> list[str]:
        """Tasks that failed (``up_for_retry``: failed with retries left when the test run gave up), else the
        tasks still running when the run's process died (killed: it had no time to mark them failed)."""
        failed = [t for t, state, _ in self.tasks if state in ("failed", "up_for_retry")]
        return failed or [t for t, state, _ in self.tasks if state == "running"]

    def failure(self) -> str:
        """One line: which task, what error (a kill by signal says so: SIGKILL is most often the OOM killer)."""
        failed = self.failed_tasks()
        task = failed[0] if failed else None
        if self.returncode is not None and self.returncode < 0:
            name = signal.Signals(-self.returncode).name
            error = (f"the run's process was killed by {name}"
                     + (" (most often the kernel's out-of-memory killer: see dmesg)" if name == "SIGKILL" else ""))
        else:
            error = last_error(self.log_path.read_text(errors="replace"), task)
        return f"{f'in task {task}' if task else '(no task named)'}: {error} (log: {self.log_path})"


def last_error(output: str, task_id: str | None = None) -> str:
    """The last exception line of a run's output (after the failed task started, when it is named)."""
    if task_id:
        marker = output.rfind(f"task_id={task_id}")
        output = output[marker:] if marker >= 0 else output
    found = None
    for line in output.splitlines():
        match = _ERROR_LINE.match(line.strip().removeprefix("E "))
        if match and not line.strip().startswith(("File ", "raise ", "During handling")):
            found = line.strip()
    return found or "no exception line in the log"


def run_day(airflow: LocalAirflow, logical: date, env: dict[str, str], log_path: Path, label: str,
            out: Callable[[str], None] = print, poll_seconds: float = PROGRESS_POLL_SECONDS,
            on_poll: Callable[[int, list[tuple[str, str | None, float | None]]], None] | None = None,
            dag_id: str = "customer_health_daily") -> DayResult:
    """One `airflow dags test` of the daily DAG, without a fixed timeout, printing each task's state
    change as the metadata DB shows it (polled every few seconds). ``on_poll(pid, tasks)`` is called at
    each poll (the benchmark samples memory there)."""
    started = time.monotonic()
    proc = airflow.start(logical.isoformat(), env, log_path, dag_id=dag_id)
    shown: dict[str, str | None] = {}
    tasks: list[tuple[str, str | None, float | None]] = []
    try:
        while True:
            done = proc.poll() is not None
            tasks = airflow.run_tasks(logical.isoformat(), dag_id)
            if on_poll is not None and not done:
                on_poll(proc.pid, tasks)
            for task_id, state, duration in tasks:
                if state == shown.get(task_id) or state in (None, "scheduled", "queued"):
                    continue
                shown[task_id] = state
                took = f" in {duration:.0f} s" if state in FINISHED and duration is not None else ""
                out(f"  {label} [{time.monotonic() - started:5.0f} s] {task_id}: {state}{took}")
            if done:
                break
            time.sleep(poll_seconds)
    finally:
        if proc.poll() is None:  # interrupted: take the run's whole process group down with us
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    output = log_path.read_text(errors="replace")
    from healthscore.local_airflow import DagRunResult

    state = DagRunResult(proc.returncode, output).state or ("failed" if proc.returncode else None)
    return DayResult(logical, state, time.monotonic() - started, log_path, tasks, proc.returncode)


@contextmanager
def sandbox_process(port: int, accounts: int, seed: int) -> Iterator[str]:
    """Run `healthscore sandbox serve` as a child process until the block ends."""
    command = [sys.executable, "-m", "healthscore.cli", "sandbox", "serve", "--port", str(port),
               "--accounts", str(accounts), "--seed", str(seed)]
    proc = subprocess.Popen(command)
    base = f"http://127.0.0.1:{port}"
    try:
        # No fixed deadline: building a 100k-account world takes minutes on a busy machine, and a
        # sandbox that dies says so at once.
        started = time.monotonic()
        reported = 0.0
        while True:
            if proc.poll() is not None:
                raise DemoError(f"the sandbox exited with code {proc.returncode} before it was ready")
            try:
                if requests.get(f"{base}/_sandbox/health", timeout=1).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            waited = time.monotonic() - started
            if waited - reported >= 30:
                reported = waited
                print(f"sandbox: still building the {accounts}-account world ({waited:.0f} s)", flush=True)
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sandbox_connections(base_url: str, timeout: float | None = None) -> dict[str, str]:
    """Airflow connections (AIRFLOW_CONN_* JSON) pointing every source at a sandbox."""
    def conn(login: str | None, password: str, **extra: object) -> str:
        extra = {"sandbox": True, **extra, **({"timeout": timeout} if timeout is not None else {})}
        return json.dumps({"conn_type": "http", "host": base_url, "login": login, "password": password,
                           "extra": extra})

    return {
        "AIRFLOW_CONN_CRM_HUBSPOT": conn(None, cred.HUBSPOT_TOKEN),
        "AIRFLOW_CONN_SUPPORT_ZENDESK": conn(cred.ZENDESK_EMAIL, cred.ZENDESK_API_TOKEN),
        "AIRFLOW_CONN_BILLING_STRIPE": conn(None, cred.STRIPE_SECRET_KEY),
        "AIRFLOW_CONN_PRODUCT_MIXPANEL": conn(cred.MIXPANEL_SERVICE_ACCOUNT, cred.MIXPANEL_SECRET,
                                              project_id=cred.MIXPANEL_PROJECT_ID),
    }


def pipeline_env(base_url: str, warehouse_url: str, data_dir: Path, timeout: float | None = None,
                 **extra: str) -> dict[str, str]:
    """Environment of one pipeline run: sandbox connections, the warehouse, the data folder."""
    env = sandbox_connections(base_url, timeout)
    url = make_url(warehouse_url)
    if url.get_backend_name() == "postgresql":  # through the Airflow connection, as in production
        env["AIRFLOW_CONN_HEALTHSCORE_WAREHOUSE"] = url.set(drivername="postgresql").render_as_string(
            hide_password=False)
    else:
        env["HEALTHSCORE_WAREHOUSE_URL"] = warehouse_url
    env["HEALTHSCORE_DATA_DIR"] = str(data_dir.resolve())
    env.update(extra)
    return env


def run_demo(settings: Settings, accounts: int = 300, seed: int = 42, days: int = 3,
             history_days: int = DEMO_HISTORY_DAYS, sandbox_port: int | None = None) -> int:
    from healthscore.config import load_model_config
    from healthscore.local_airflow import LocalAirflow
    from healthscore.pipeline.signals import COMPUTED_SIGNALS
    from healthscore.warehouse.engine import make_engine, resolve_warehouse_url
    from healthscore.warehouse.migrate import upgrade
    from healthscore.warehouse.registry import register_model_version
    from healthscore_sandbox.runner import free_port

    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    url = resolve_warehouse_url(settings)
    upgrade(url)
    engine = make_engine(url)
    model = load_model_config(settings.model_config_path, computable_signals=COMPUTED_SIGNALS)
    register_model_version(engine, model)
    print(f"warehouse: {engine.url.render_as_string(hide_password=True)}; model {model.version} "
          f"(config {model.config_hash[:12]})", flush=True)

    airflow = LocalAirflow(data_dir / "airflow")
    print(f"airflow: home {airflow.home} (SQLite metadata DB); migrating and importing pools ...", flush=True)
    logs = data_dir / "airflow" / "demo-logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        airflow.migrate(timeout=None)
    except RuntimeError as exc:
        (logs / "airflow-migrate.log").write_text(str(exc))
        raise DemoError(f"{str(exc).splitlines()[0]} {last_error(str(exc))} "
                        f"(log: {logs / 'airflow-migrate.log'})") from exc
    with sandbox_process(sandbox_port or free_port(), accounts, seed) as base:
        print(f"sandbox: {base} ({accounts} accounts, seed {seed})", flush=True)
        env = pipeline_env(base, url, data_dir)
        if history_days > 0:
            bootstrap_history(env, history_days, days)
        total = time.monotonic()
        for n, offset in enumerate(range(days - 1, -1, -1), start=1):
            logical = DEMO_LAST_DAY - timedelta(days=offset)
            label = f"day {n}/{days} {logical}"
            print(f"customer_health_daily {logical} (day {n} of {days}) ...", flush=True)
            result = run_day(airflow, logical, env, logs / f"customer_health_daily-{logical}.log", label,
                             out=lambda line: print(line, flush=True))
            print(f"customer_health_daily {logical}: {result.state} in {result.seconds:.0f} s", flush=True)
            if result.state != "success":
                raise DemoError(f"customer_health_daily {logical} failed {result.failure()}")
        print(f"{days} days in {time.monotonic() - total:.0f} s", flush=True)
        month = DEMO_LAST_DAY.replace(day=1)
        logical = DEMO_LAST_DAY + timedelta(days=1)
        print(f"health_model_accuracy {month:%Y-%m} ...", flush=True)
        result = run_day(airflow, logical, env, logs / f"health_model_accuracy-{month:%Y-%m}.log",
                         f"accuracy {month:%Y-%m}", out=lambda line: print(line, flush=True),
                         dag_id="health_model_accuracy")
        print(f"health_model_accuracy {month:%Y-%m}: {result.state} in {result.seconds:.0f} s", flush=True)
        if result.state != "success":
            raise DemoError(f"health_model_accuracy {month:%Y-%m} failed {result.failure()}")
        print_summary(engine, data_dir)
        print_csm_view(engine, base, data_dir)
    print_accuracy(engine, data_dir)
    engine.dispose()
    return 0


def bootstrap_history(env: dict[str, str], history_days: int, airflow_days: int) -> None:
    """The days before the Airflow runs, through the history bootstrap (the DAG's own tasks, in process)."""

    from healthscore.pipeline.history import BootstrapPlan, bootstrap, env_overrides, log_path

    # `airflow dags test` of logical date D processes batch D - 1 (its interval ends at D): the Airflow runs
    # cover the batches DEMO_LAST_DAY - airflow_days .. DEMO_LAST_DAY - 1, the history ends the day before.
    last = DEMO_LAST_DAY - timedelta(days=airflow_days + 1)
    plan = BootstrapPlan(last - timedelta(days=history_days - 1), last)
    print(f"history: bootstrapping {plan.first} .. {plan.last} ({len(plan.days)} days) with the daily DAG's tasks "
          "(`healthscore history bootstrap`; resumes if interrupted) ...", flush=True)
    with env_overrides(env):
        settings = Settings.from_env()
        print(f"history: the pipeline's logs go to {log_path(settings)}", flush=True)
        result = bootstrap(plan, settings=settings)
    print(f"history: {result.days_run} days in {result.seconds:.0f} s ({result.skipped} already done)", flush=True)


def print_csm_view(engine: sa.Engine, base_url: str, data_dir: Path) -> None:
    """What a CSM receives: tasks per playbook, one task as the CRM shows it, one digest."""
    from healthscore.playbooks.notifiers import default_outbox_path
    from healthscore.warehouse.models import PlaybookEvent

    with engine.connect() as conn:
        per_playbook = conn.execute(sa.select(PlaybookEvent.playbook, PlaybookEvent.status, sa.func.count())
                                    .group_by(PlaybookEvent.playbook, PlaybookEvent.status)
                                    .order_by(PlaybookEvent.playbook, PlaybookEvent.status)).all()
        task_id = conn.execute(sa.select(PlaybookEvent.crm_task_id).where(PlaybookEvent.crm_task_id.is_not(None))
                               .order_by(PlaybookEvent.id.desc()).limit(1)).scalar()
        statuses = conn.execute(sa.select(PlaybookEvent.task_status, sa.func.count())
                                .where(PlaybookEvent.crm_task_id.is_not(None))
                                .group_by(PlaybookEvent.task_status).order_by(PlaybookEvent.task_status)).all()
    print("\nCRM tasks per playbook (playbook_events):")
    if not per_playbook:
        print("  none yet (no threshold crossed in the days run)")
    for playbook, status, count in per_playbook:
        print(f"  {playbook:28s} {status:10s} {count}")
    if statuses:
        print("  task status read back from HubSpot (the sandbox's simulated CSMs): "
              + ", ".join(f"{s or 'not read yet'} {n}" for s, n in statuses))
    if task_id:
        props = "hs_task_subject,hs_task_body,hs_task_priority,hs_task_status,hs_timestamp,hubspot_owner_id"
        task = requests.get(f"{base_url}/crm/v3/objects/tasks/{task_id}", params={"properties": props},
                            headers={"Authorization": f"Bearer {cred.HUBSPOT_TOKEN}"}, timeout=10)
        if task.ok:
            p = task.json().get("properties", {})
            print(f"\nOne task as the CSM reads it in the CRM (task {task_id}, owner {p.get('hubspot_owner_id')}, "
                  f"{p.get('hs_task_priority')}, due {p.get('hs_timestamp')}):")
            print(f"  {p.get('hs_task_subject')}")
            for line in str(p.get("hs_task_body") or "").splitlines():
                print(f"  | {line}")
    digests = []
    outbox = default_outbox_path(data_dir)
    if outbox.exists():
        digests = [json.loads(line) for line in outbox.read_text().splitlines() if '"daily_digest"' in line]
    if digests:
        d = digests[-1]
        print(f"\nThe last digest sent ({len(digests)} in {outbox}), to {d['recipient']}:")
        print(f"  {d['subject']}")
        for line in str(d["body"]).splitlines()[:25]:
            print(f"  | {line}")


def print_accuracy(engine: sa.Engine, data_dir: Path) -> None:
    from healthscore.warehouse.models import AccuracyReport

    with engine.connect() as conn:
        rows = conn.execute(sa.select(AccuracyReport.period_start, AccuracyReport.horizon_days,
                                      AccuracyReport.model_version, AccuracyReport.metrics, AccuracyReport.report_path)
                            .order_by(AccuracyReport.period_start.desc(), AccuracyReport.horizon_days)).all()
    if not rows:
        print("accuracy: no report yet")
        return
    print(f"\nAccuracy of model {rows[0][2]} on the renewals of {rows[0][0]:%Y-%m} (accuracy_reports):")
    for _, horizon, _, metrics, _ in (r for r in rows if r[0] == rows[0][0]):
        m = json.loads(metrics) if isinstance(metrics, str) else metrics
        o = m.get("overall", {})
        if o.get("too_small"):
            print(f"  {horizon:3d} days before: n={o.get('n')} (too small for figures)")
            continue
        shown = {k: "-" if o.get(k) is None else f"{o[k]:.2f}" for k in ("accuracy", "recall", "specificity", "f1",
                                                                         "auc")}
        print(f"  {horizon:3d} days before: n={o.get('n')} accuracy {shown['accuracy']} recall {shown['recall']} "
              f"specificity {shown['specificity']} F1 {shown['f1']} AUC {shown['auc']}")
    for _, _, _, metrics, _ in (r for r in rows if r[0] == rows[0][0]):
        m = json.loads(metrics) if isinstance(metrics, str) else metrics
        for play in (m.get("playbooks") or {}).get("playbooks", []):
            rec = play["recovery"]["all"]
            shown = "too small" if rec.get("too_small") else f"{100 * rec['rate']:.0f}% of {rec['n']}"
            print(f"  play {play['playbook']}: fired {play['fired']}, completed {play['completed']}, "
                  f"recovered within 60 days {shown}")
    print(f"Accuracy report (HTML, CSVs beside it): {rows[0][4]}")


def print_summary(engine: sa.Engine, data_dir) -> None:
    from healthscore.warehouse.models import BatchReconciliation, HealthScore, QualityResult

    with engine.connect() as conn:
        recon = conn.execute(sa.select(BatchReconciliation.batch_date, BatchReconciliation.source,
                                       BatchReconciliation.object, BatchReconciliation.landed,
                                       BatchReconciliation.accepted, BatchReconciliation.quarantined,
                                       BatchReconciliation.out_of_scope)
                             .order_by(BatchReconciliation.batch_date.desc(), BatchReconciliation.source,
                                       BatchReconciliation.object)).all()
        failed = conn.execute(sa.select(sa.func.count()).select_from(QualityResult)
                              .where(QualityResult.success.is_(False))).scalar_one()
        bands = conn.execute(sa.select(HealthScore.band, sa.func.count()).where(
            HealthScore.as_of_date == sa.select(sa.func.max(HealthScore.as_of_date)).scalar_subquery(),
            HealthScore.is_shadow.is_(False)).group_by(HealthScore.band)).all()
    if recon:
        latest = recon[0][0]
        print(f"\nbatch {latest}: landed = accepted + quarantined + out of scope (not scored by design)")
        for _, source, obj, landed, accepted, quarantined, outside in (r for r in recon if r[0] == latest):
            print(f"  {source}.{obj:22s} {landed:7d} = {accepted:7d} + {quarantined} + {outside}")
    print(f"failed expectations across runs: {failed}")
    if bands:
        print("latest scores by band: " + ", ".join(f"{band or 'unscored'}: {n}" for band, n in sorted(
            bands, key=lambda b: str(b[0]))))
    print(f"Data Docs (RevOps): {data_dir / 'data_docs' / 'index.html'}")
    print(f"Task logs: {data_dir / 'airflow' / 'demo-logs'}")
