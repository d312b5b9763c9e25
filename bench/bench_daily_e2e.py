"""The daily DAG end to end in Airflow against the sandbox: a first (backfill) day, then steady-state days.

For each day: wall time per task and in total (the metadata DB's task durations), peak RSS while each
task ran, requests per vendor (the sandbox's ``GET /_sandbox/stats``, diffed around the day), rows landed
per object; and the incremental cost: a steady day's extraction (time and requests) against the
backfill's, beside the share of records that changed.

How it runs: ``healthscore sandbox serve`` as its own process (rate limits x100, as in the demo), a fresh
SQLite warehouse (or ``--warehouse-url``), a throw-away Airflow home, and ``airflow dags test`` per day
through the demo's runner (no fixed timeout). ``airflow dags test`` runs the tasks one after another in one
process, so "peak RSS of a task" is the process tree's peak while that task ran: an upper bound (memory a
task freed is not always returned to the OS, so a later task can inherit an earlier one's high-water mark).

Targets (issue 11), for the 100k steady-state day on a 2-core machine: <= 3 min end to end, <= 2 GiB per
task, HubSpot requests within a real portal's limit for that time (190 per 10 s; search 5 per s); a day
on which ~1% of records changed costs <= 10% of the full sync's extraction. Prints figures, appends the
run to ``bench/results/bench_daily_e2e.json`` (machine, date, commit, load average) and rewrites the README
table from that file (``bench/results_table.py``). Asserts nothing.

    .venv/bin/python bench/bench_daily_e2e.py --accounts 1000 [--steady-days 1] [--warehouse-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from healthscore.config import load_model_config  # noqa: E402
from healthscore.demo import pipeline_env, run_day, sandbox_process  # noqa: E402
from healthscore.local_airflow import LocalAirflow  # noqa: E402
from healthscore.warehouse import make_engine, upgrade  # noqa: E402
from healthscore.warehouse.models import ExtractRun  # noqa: E402
from healthscore.warehouse.registry import register_model_version  # noqa: E402
from healthscore_sandbox import credentials as cred  # noqa: E402
from healthscore_sandbox.runner import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "bench_daily_e2e.json"
FIRST_DAY = date(2026, 9, 28)
ADMIN = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}
#: A real HubSpot private app (Professional/Enterprise): 190 requests per 10 s; search 5 per second.
HUBSPOT_PER_S, SEARCH_PER_S = 19.0, 5.0


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> dict:
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "mem_gib": round(mem / 2**30, 1), "platform": platform.platform(),
            "python": platform.python_version()}


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            pages = int((entry / "statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        pid = int(entry.name)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def _stats(base: str) -> dict[str, int]:
    return {k: int(v) for k, v in requests.get(f"{base}/_sandbox/stats", headers=ADMIN, timeout=30)
            .json()["requests"].items()}


def _landed(engine: sa.Engine, batch_date: date) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ExtractRun.source, ExtractRun.object, ExtractRun.records_landed)
                            .where(ExtractRun.batch_date == batch_date)).all()
    return {f"{s}.{o}": int(n) for s, o, n in rows}


def run(accounts: int, steady_days: int, warehouse_url: str | None, seed: int) -> dict:
    started_at = datetime.now(UTC)
    load_start = _load()
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp_name:
        tmp = Path(tmp_name)
        url = warehouse_url or f"sqlite:///{tmp / 'warehouse.db'}"
        upgrade(url)
        engine = make_engine(url)
        register_model_version(engine, load_model_config())
        airflow = LocalAirflow(tmp / "airflow")
        airflow.migrate(timeout=None)
        days: list[dict] = []
        t0 = time.monotonic()
        with sandbox_process(free_port(), accounts, seed) as base:
            world_s = time.monotonic() - t0
            print(f"sandbox ready in {world_s:.0f} s ({accounts:,} accounts)", flush=True)
            env = pipeline_env(base, url, tmp / "data")
            for n in range(1 + steady_days):
                logical = FIRST_DAY + timedelta(days=n)
                kind = "backfill" if n == 0 else "steady"
                peaks: dict[str, int] = {}

                def sample(pid: int, tasks: list, peaks: dict[str, int] = peaks) -> None:
                    running = [t for t, state, _ in tasks if state == "running"]
                    if running:
                        rss = _tree_rss(pid)
                        for task in running:
                            peaks[task] = max(peaks.get(task, 0), rss)

                before = _stats(base)
                result = run_day(airflow, logical, env, tmp / f"day-{logical}.log", f"{accounts} {kind}",
                                 out=lambda line: print(line, flush=True), poll_seconds=1.0, on_poll=sample)
                after = _stats(base)
                if result.state != "success":
                    raise SystemExit(f"{logical}: {result.state}; log kept at {result.log_path}"
                                     f" (copy it before the temp dir goes): see bench output above")
                tasks = {t: {"seconds": round(d or 0.0, 1), "peak_rss_mib": round(peaks.get(t, 0) / 2**20)}
                         for t, _, d in result.tasks}
                day = {"kind": kind, "logical_date": logical.isoformat(), "total_s": round(result.seconds, 1),
                       "tasks": tasks,
                       "requests": {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after)
                                    if after.get(k, 0) - before.get(k, 0)},
                       "landed": _landed(engine, logical) or _landed(engine, logical - timedelta(days=1))}
                days.append(day)
                print(json.dumps(day, indent=1), flush=True)
        engine.dispose()
    return {"bench": "bench_daily_e2e", "accounts": accounts, "seed": seed, "date": started_at.isoformat(timespec="seconds"),
            "commit": _commit(), "machine": _machine(), "load_start": load_start, "load_end": _load(),
            "shared_machine": "shared with other helpers' builds and tests during the run (see load averages)",
            "warehouse": "sqlite" if warehouse_url is None else sa.engine.make_url(warehouse_url).get_backend_name(),
            "sandbox_start_s": round(world_s, 1), "days": days, "derived": derive(days)}


def _extraction(day: dict) -> tuple[float, int]:
    seconds = sum(v["seconds"] for t, v in day["tasks"].items() if t.startswith("extract_"))
    vendor_requests = sum(v for k, v in day["requests"].items() if ":" not in k and k != "hubspot_search")
    return seconds, vendor_requests


def derive(days: list[dict]) -> dict:
    """Targets' figures: steady vs backfill extraction, share of records changed, HubSpot at real limits."""
    out: dict = {}
    backfill = next((d for d in days if d["kind"] == "backfill"), None)
    steady = [d for d in days if d["kind"] == "steady"]
    if backfill and steady:
        last = steady[-1]
        b_s, b_r = _extraction(backfill)
        s_s, s_r = _extraction(last)
        crm = [k for k in backfill["landed"] if k.startswith("hubspot.") and k != "hubspot.owners"]
        changed = sum(last["landed"].get(k, 0) for k in crm) / max(1, sum(backfill["landed"].get(k, 0) for k in crm))
        out["steady_vs_backfill_extraction_seconds"] = round(s_s / b_s, 3) if b_s else None
        out["steady_vs_backfill_extraction_requests"] = round(s_r / b_r, 3) if b_r else None
        out["steady_crm_records_changed_share"] = round(changed, 4)
    for d in days:
        hub, search = d["requests"].get("hubspot", 0), d["requests"].get("hubspot_search", 0)
        # Seconds the day's HubSpot traffic needs at a real portal's limits (search has its own, lower one).
        d["hubspot_min_seconds_at_real_limits"] = round(max(hub / HUBSPOT_PER_S, search / SEARCH_PER_S), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--steady-days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warehouse-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--no-save", action="store_true", help="print only; leave bench/results alone")
    args = parser.parse_args(argv)
    print(f"load average at start: {_load()}  cpus: {os.cpu_count()}", flush=True)
    result = run(args.accounts, args.steady_days, args.warehouse_url, args.seed)
    print(json.dumps({k: result[k] for k in ("accounts", "load_start", "load_end", "derived")}, indent=1))
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        runs.append(result)
        RESULTS.write_text(json.dumps(runs, indent=1) + "\n")
        subprocess.run([sys.executable, str(REPO / "bench" / "results_table.py")], check=True)
        print(f"appended to {RESULTS} and rewrote the README table")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
