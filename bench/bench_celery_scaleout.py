"""Scale-out on the native Celery topology: the mapped scoring of N accounts on 1 Celery worker and on 2.

The warehouse is prepared as bench_sharded_scoring prepares it (a PostgreSQL database of its own: ``--accounts``
synthetic accounts with stored ``account_signals`` for two dates 30 days apart, the earlier one scored into the
run's archive so the measured date reads history). Then the warehouse is vacuumed and analyzed (a bulk load leaves
PostgreSQL without statistics: the first topology after it was the slow one, whatever its worker count), one
warm-up topology runs and is discarded, and the measured topologies run in alternating order (``--order``, by
default 1,2,2,1 workers, so neither count always comes first); before each, the measured date is cleared and the
warehouse vacuumed and analyzed again, so every run starts from the same state. Each topology (concurrency 1
per worker, ``HEALTHSCORE_SCORE_SHARDS`` shards, 2 by default) is started with the operator's command
(``python -m deploy.native start``, as tests/e2e/test_celery_topology.py does; Redis database ``--redis-db`` and
a queue of its own), ``customer_health_daily`` is triggered for the measured date through the authenticated REST
API with the DAG paused, every task but the scoring ones (plan_score_shards, the mapped score_and_archive,
combine_shards) is set to success through the API, the DAG is unpaused, and the run is awaited; then the
topology is stopped (``python -m deploy.native stop``) and no process of the run may be left.

Recorded: the mapped step's wall time from the task-instance records (first score_and_archive start to last end,
and to combine_shards' end), each shard's worker, duration, and its own CPU seconds and peak RSS (VmHWM) from
the ``shard usage`` line the task logs. Results go to bench/results/celery_scaleout.txt with the machine, date,
commit and the load average before and after each run (a shared machine: CPU seconds are the steadier figure);
the summary compares the mean mapped wall per worker count over the measured runs.

    flock /tmp/healthscore-bench.lock nice -n 5 .venv/bin/python bench/bench_celery_scaleout.py --accounts 20000
    flock /tmp/healthscore-bench.lock nice -n 5 .venv/bin/python bench/bench_celery_scaleout.py   # 100k accounts
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_sharded_scoring import ADMIN_URL, BEFORE, DAY, clear_day, collect, populate, spawn  # noqa: E402

from deploy.native import run_processes  # noqa: E402

RESULTS = REPO / "bench" / "results" / "celery_scaleout.txt"
DAG_ID = "customer_health_daily"
SCORING_TASKS = {"plan_score_shards", "score_and_archive", "combine_shards"}
USAGE = re.compile(r"shard usage: shard=(\d+) shards=(\d+) accounts=(\d+) cpu_s=([\d.]+) peak_rss_mb=(\d+) "
                   r"start_rss_mb=(\d+)")


def native(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy.native", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def vacuum_analyze(url: str) -> float:
    """VACUUM (ANALYZE) the warehouse database: fresh statistics and no dead rows before a measured run; seconds."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    t0 = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")
    finally:
        engine.dispose()
    return time.perf_counter() - t0


def measure(run_dir: Path, variables: dict[str, str], postgres: str, redis: str, workers: int, tag: str,
            port_base: int | None = None) -> dict:
    """One topology with ``workers`` Celery workers: the scoring tasks of one run, then stop."""
    load0 = os.getloadavg()[0]
    ports = ("--port-base", str(port_base)) if port_base else ()
    started = native("start", "--run-dir", str(run_dir), "--workers", str(workers), "--postgres", postgres,
                     "--redis", redis, *ports, *(f"--set={k}={v}" for k, v in variables.items()))
    if started.returncode != 0:
        native("stop", "--run-dir", str(run_dir))
        raise SystemExit(f"start failed: {started.stdout}{started.stderr}")
    state = json.loads((run_dir / "native.json").read_text())
    try:
        api = state["api_url"]
        token = requests.post(f"{api}/auth/token", timeout=60, json={
            "username": "admin", "password": variables["AIRFLOW_ADMIN_PASSWORD"]}).json()["access_token"]
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        base = f"{api}/api/v2/dags/{DAG_ID}"
        deadline = time.monotonic() + 300
        while session.get(base, timeout=60).status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("the DAG was not parsed within 300 s")
            time.sleep(2)
        run_id = f"bench_scaleout_{workers}w_{tag}"
        created = session.post(f"{base}/dagRuns", timeout=60, json={
            "dag_run_id": run_id, "logical_date": f"{DAY}T00:00:00Z",
            "data_interval_start": f"{DAY}T00:00:00Z", "data_interval_end": f"{DAY.fromordinal(DAY.toordinal() + 1)}T00:00:00Z"})
        if not created.ok:
            raise SystemExit(f"trigger failed: {created.text}")
        tis = session.get(f"{base}/dagRuns/{run_id}/taskInstances", params={"limit": 200}, timeout=60).json()
        for ti in tis["task_instances"]:
            if ti["task_id"] not in SCORING_TASKS:
                done = session.patch(f"{base}/dagRuns/{run_id}/taskInstances/{ti['task_id']}", timeout=60,
                                     json={"new_state": "success"})
                if not done.ok:
                    raise SystemExit(f"marking {ti['task_id']} failed: {done.text}")
        if not session.patch(base, json={"is_paused": False}, timeout=60).ok:
            raise SystemExit("unpause failed")
        deadline = time.monotonic() + 3600
        run: dict = {}
        while time.monotonic() < deadline:
            try:
                run = session.get(f"{base}/dagRuns/{run_id}", timeout=60).json()
            except requests.RequestException:
                continue
            if run.get("state") in ("success", "failed"):
                break
            time.sleep(3)
        tis = session.get(f"{base}/dagRuns/{run_id}/taskInstances", params={"limit": 200},
                          timeout=60).json()["task_instances"]
    finally:
        before_stop = run_processes(state["run_id"], state["pids"].values())
        stopped = native("stop", "--run-dir", str(run_dir))
        left = run_processes(state["run_id"], state["pids"].values())
    if run.get("state") != "success":
        raise SystemExit(f"run {run_id}: {run.get('state')}; {[(t['task_id'], t['state']) for t in tis]}; "
                         f"logs in {run_dir}")
    shards = sorted((t for t in tis if t["task_id"] == "score_and_archive"), key=lambda t: t["map_index"])
    combine = next(t for t in tis if t["task_id"] == "combine_shards")
    per_shard = []
    for ti in shards:
        logs = list((run_dir / "airflow-home" / "logs").glob(
            f"dag_id={DAG_ID}/run_id={run_id}/task_id=score_and_archive/map_index={ti['map_index']}/attempt=*.log"))
        found = [m for path in logs for m in USAGE.finditer(path.read_text(errors="replace"))]
        usage = found[-1].groups() if found else (None,) * 6
        per_shard.append({"map_index": ti["map_index"], "worker": ti["hostname"], "try": ti["try_number"],
                          "duration_s": round((ts(ti["end_date"]) - ts(ti["start_date"])).total_seconds(), 1),
                          "accounts": usage[2], "cpu_s": usage[3], "peak_rss_mb": usage[4],
                          "start_rss_mb": usage[5]})
    first = min(ts(t["start_date"]) for t in shards)
    return {"workers": workers, "tag": tag, "state": run["state"], "per_shard": per_shard,
            "load_before": round(load0, 1), "load_after": round(os.getloadavg()[0], 1),
            "mapped_wall_s": round((max(ts(t["end_date"]) for t in shards) - first).total_seconds(), 1),
            "with_combine_s": round((ts(combine["end_date"]) - first).total_seconds(), 1),
            "combine_s": round((ts(combine["end_date"]) - ts(combine["start_date"])).total_seconds(), 1),
            "processes_before_stop": len(before_stop), "left_after_stop": left, "stop": stopped.stdout.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--redis", default="127.0.0.1:6379")
    parser.add_argument("--redis-db", default="7")
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--order", default="1,2,2,1", help="worker counts of the measured runs, in run order "
                        "(alternating, so neither count always runs first)")
    parser.add_argument("--warmup", type=int, default=2, help="workers of the discarded warm-up run (0: none)")
    parser.add_argument("--port-base", type=int, default=None, help="deploy.native --port-base (a shared "
                        "machine's assigned port range)")
    args = parser.parse_args()

    load_start = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    tag = uuid.uuid4().hex[:8]
    run_dir = (args.run_dir or Path(tempfile.mkdtemp(prefix="hs-bench-celery-"))).resolve()
    admin_url = sa.engine.make_url(ADMIN_URL)
    postgres = f"{admin_url.host}:{admin_url.port or 5432}"
    warehouse = f"hs_bench_celery_wh_{tag}"
    order = [int(n) for n in args.order.split(",")]
    runs = ([("warmup", args.warmup)] if args.warmup else []) + [(f"r{i + 1}", n) for i, n in enumerate(order)]
    airflow_dbs = [f"hs_bench_celery_af{n}_{label}_{tag}" for label, n in runs]
    variables = {
        "POSTGRES_USER": admin_url.username or "postgres", "WAREHOUSE_DB_USER": admin_url.username or "postgres",
        "WAREHOUSE_DB_NAME": warehouse, "REDIS_DB": args.redis_db,
        "AIRFLOW_CELERY_QUEUE": f"healthscore-bench-{tag}", "AIRFLOW_CELERY_WORKER_CONCURRENCY": "1",
        "AIRFLOW_USE_JOB_SCHEDULE": "false", "HEALTHSCORE_SCORE_SHARDS": str(args.shards),
        "HEALTHSCORE_SANDBOX_ACCOUNTS": "20", "HEALTHSCORE_MIXPANEL_BACKFILL_DAYS": "3",
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(12),
    }
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{warehouse}"')
    url = admin_url.set(database=warehouse).render_as_string(hide_password=False)
    data_dir = run_dir / "airflow-home" / "data"  # the topology's HEALTHSCORE_DATA_DIR (compose /opt/airflow/data)
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEALTHSCORE_", "AIRFLOW_CONN_"))}
    env.update(HEALTHSCORE_WAREHOUSE_URL=url, HEALTHSCORE_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO))
    results, warmups, vacuums = [], [], []
    try:
        t0 = time.perf_counter()
        populate(url, args.accounts)
        collect([spawn(env, "score", BEFORE, 0, 1)])  # the history the measured day reads, in the run's archive
        setup = time.perf_counter() - t0
        print(f"setup {setup:.0f} s", flush=True)
        for (label, workers), airflow_db in zip(runs, airflow_dbs, strict=True):
            clear_day(url, data_dir / "archive", DAY)
            vacuums.append(vacuum_analyze(url))
            result = measure(run_dir, {**variables, "AIRFLOW_DB_NAME": airflow_db}, postgres, args.redis, workers,
                             f"{label}_{tag}", args.port_base)
            result["label"] = label
            print(json.dumps(result), flush=True)
            (warmups if label == "warmup" else results).append(result)
    finally:
        with admin.connect() as conn:
            for name in (warehouse, *airflow_dbs):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    load_end = os.getloadavg()
    report = [
        f"bench_celery_scaleout: {args.accounts} accounts, {args.shards} shards, native Celery topology "
        f"(deploy.native, Redis db {args.redis_db}, PostgreSQL), measured runs with workers {args.order} in that order "
        f"after a discarded warm-up run with {args.warmup or 'no'} workers, concurrency 1 each; "
        f"commit {commit}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"SHARED machine, load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end",
        f"setup (signals for 2 dates, the earlier one scored outside Airflow): {setup:.0f} s wall; VACUUM (ANALYZE) "
        f"of the warehouse before every run: {', '.join(f'{v:.1f}' for v in vacuums)} s",
    ]
    for r in [*warmups, *results]:
        report.append(f"{r['label']} (discarded)" if r["label"] == "warmup" else r["label"])
        report.append(f"{r['workers']} worker(s), load {r['load_before']} -> {r['load_after']}: mapped score_and_archive {r['mapped_wall_s']} s wall (first shard "
                      f"start to last shard end), {r['with_combine_s']} s with combine_shards ({r['combine_s']} s); "
                      f"{r['processes_before_stop']} processes of the run before stop, left after stop: "
                      f"{r['left_after_stop'] or 'none'}")
        for s in r["per_shard"]:
            report.append(f"  shard {s['map_index']} on {s['worker']} (try {s['try']}): {s['accounts']} accounts, "
                          f"{s['duration_s']} s task wall, {s['cpu_s']} s CPU, peak RSS {s['peak_rss_mb']} MB "
                          f"(RSS {s['start_rss_mb']} MB at task start)")
    by_workers: dict[int, list[dict]] = {}
    for r in results:
        by_workers.setdefault(r["workers"], []).append(r)
    means = {}
    for workers, rs in sorted(by_workers.items()):
        mapped = [r["mapped_wall_s"] for r in rs]
        combined = [r["with_combine_s"] for r in rs]
        cpu = [float(s["cpu_s"]) for r in rs for s in r["per_shard"] if s["cpu_s"] is not None]
        shard_wall = [s["duration_s"] for r in rs for s in r["per_shard"]]
        means[workers] = (sum(mapped) / len(mapped), sum(combined) / len(combined))
        report.append(f"{workers} worker(s) over {len(rs)} measured runs: mapped wall {mapped} s (mean "
                      f"{means[workers][0]:.1f}), with combine {combined} s (mean {means[workers][1]:.1f}); per shard "
                      f"task wall {min(shard_wall)}-{max(shard_wall)} s, CPU {min(cpu):.2f}-{max(cpu):.2f} s")
    if 1 in means and 2 in means:
        report.append(f"2 workers vs 1 (means): mapped step {means[1][0] / means[2][0]:.2f}x, with combine "
                      f"{means[1][1] / means[2][1]:.2f}x (wall; >1 means 2 workers were faster)")
    text = "\n".join(report) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
