"""The api-server, scheduler and dag-processor of a LocalAirflow as separate processes, for tests.

Test harness only: the product package runs Airflow through ``healthscore.local_airflow`` for the
demo; tests that need a real scheduler (backfills, the 60-day run) start the components here.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from healthscore.local_airflow import BIN, DagRunResult, LocalAirflow
from healthscore.preload import ENV_FLAG
from healthscore_sandbox.runner import free_port


class AirflowServices:
    """A LocalAirflow's api-server, scheduler and dag-processor (LocalExecutor): DAG runs as in production.

    Used as a context manager; on exit every component (and the executor's workers) is stopped by its
    process group. ``backfill`` creates an Airflow backfill that the scheduler then runs. The scheduler
    preloads the task runtime (``healthscore.preload``) unless ``preload_task_runtime=False``.
    """

    def __init__(self, airflow: LocalAirflow, extra_env: dict[str, str], log_dir: Path, parallelism: int = 4,
                 use_job_schedule: bool = False, preload_task_runtime: bool = True) -> None:
        self.airflow = airflow
        self.port = free_port()
        self.log_dir = log_dir
        self.env = {
            **airflow.env, **extra_env,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            # Without it an unpaused catchup=False DAG also gets a run for the latest interval (wall clock).
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(use_job_schedule),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }
        # The LocalExecutor forks its workers, and they every task, from the scheduler: warm it only.
        self.component_env = {"scheduler": {ENV_FLAG: str(preload_task_runtime).lower()}}
        self.processes: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> AirflowServices:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for component in ("api-server", "dag-processor", "scheduler"):
                handle = (self.log_dir / f"{component}.log").open("w")
                self.processes[component] = subprocess.Popen(
                    [str(BIN / "airflow"), component], env={**self.env, **self.component_env.get(component, {})},
                    stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):  # executor workers share the component's group
                os.killpg(proc.pid, signal.SIGKILL)

    def _wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    log = (self.log_dir / f"{name}.log").read_text()[-3000:]
                    raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=5) as r:
                    health = json.loads(r.read())
                if health.get("scheduler", {}).get("status") == "healthy":
                    return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow services not healthy after {timeout:.0f} s; logs in {self.log_dir}")

    def cli(self, *args: str, timeout: int = 300) -> DagRunResult:
        proc = subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        return DagRunResult(proc.returncode, proc.stdout + proc.stderr)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Until the dag-processor has serialized the DAG (backfills and triggers need it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.airflow.query("select 1 from serialized_dag where dag_id = :dag_id", dag_id=dag_id):
                return
            time.sleep(1)
        raise TimeoutError(f"{dag_id} was not parsed within {timeout:.0f} s; see {self.log_dir}/dag-processor.log")

    def backfill(self, dag_id: str, from_date: str, to_date: str, *options: str) -> None:
        self.wait_for_dag(dag_id)
        for args in (("dags", "unpause", dag_id),
                     ("backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date,
                      *options)):
            result = self.cli(*args)
            if result.returncode:
                raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.output[-3000:]}")

    def dag_runs(self, dag_id: str) -> list[tuple[str, str, str]]:
        """(logical_date, run_type, state) of every run of the DAG, oldest first."""
        return self.airflow.query("select logical_date, run_type, state from dag_run where dag_id = :dag_id "
                                  "order by logical_date", dag_id=dag_id)

    def wait_for_runs(self, dag_id: str, count: int, timeout: float) -> list[tuple[str, str, str]]:
        """Until ``count`` runs have finished (success or failed); the runs, or TimeoutError with the tail."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.dag_runs(dag_id)
            done = [r for r in runs if r[2] in ("success", "failed")]
            if len(done) >= count or any(r[2] == "failed" for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(done)}/{count} runs finished after {timeout:.0f} s: {runs[-3:]}")
            time.sleep(2)

    def run_spans(self, dag_id: str) -> list[tuple[str, str]]:
        """(first task start, last task end) of each run, in logical-date order."""
        return self.airflow.query(
            "select min(ti.start_date), max(ti.end_date) from task_instance ti join dag_run r "
            "on r.dag_id = ti.dag_id and r.run_id = ti.run_id where r.dag_id = :dag_id "
            "group by r.logical_date order by r.logical_date", dag_id=dag_id)
