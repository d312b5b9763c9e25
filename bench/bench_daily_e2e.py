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
import resource
import signal
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


def _tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and its live descendants, their waited-for children included."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        # utime stime cutime cstime are fields 14-17 of stat (indices 11-14 after the command name)
        cpu[pid] = sum(int(x) for x in fields[11:15]) / tick
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += cpu.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


def _sandbox_pid() -> int | None:
    """This process's child running `healthscore sandbox serve`."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and b"sandbox" in cmd and b"serve" in cmd:
            return int(entry.name)
    return None


def _stats(base: str) -> dict[str, int]:
    return {k: int(v) for k, v in requests.get(f"{base}/_sandbox/stats", headers=ADMIN, timeout=120)
            .json()["requests"].items()}


def _landed(engine: sa.Engine, batch_date: date) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ExtractRun.source, ExtractRun.object, ExtractRun.records_landed)
                            .where(ExtractRun.batch_date == batch_date)).all()
    return {f"{s}.{o}": int(n) for s, o, n in rows}


def _object_seconds(engine: sa.Engine, batch_date: date) -> dict[str, float]:
    """Wall seconds of each object's extraction (pull, stage and land), from extract_runs."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ExtractRun.source, ExtractRun.object, ExtractRun.started_at,
                                      ExtractRun.finished_at).where(ExtractRun.batch_date == batch_date)).all()
    return {f"{s}.{o}": round((end - start).total_seconds(), 1) for s, o, start, end in rows if start and end}


class Stopped(Exception):
    """SIGTERM: the run stops where it is and keeps what it measured (marked partial)."""


def _on_term(signum, frame) -> None:  # noqa: ANN001
    raise Stopped(f"signal {signum}")


def run(accounts: int, steady_days: int, warehouse_url: str | None, seed: int, port: int | None = None,
        workdir: Path | None = None, mixpanel_backfill_days: int | None = None) -> dict:
    started_at = datetime.now(UTC)
    load_start = _load()
    days: list[dict] = []
    partial: str | None = None
    world_s = None
    sandbox_cpu_start = None
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp_name:
        tmp = workdir.resolve() if workdir else Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        url = warehouse_url or f"sqlite:///{tmp / 'warehouse.db'}"
        upgrade(url)
        engine = make_engine(url)
        register_model_version(engine, load_model_config())
        airflow = LocalAirflow(tmp / "airflow")
        airflow.migrate(timeout=None)
        t0 = time.monotonic()
        try:
            with sandbox_process(port or free_port(), accounts, seed) as base:
                world_s = time.monotonic() - t0
                sandbox = _sandbox_pid()
                sandbox_cpu_start = _tree_cpu(sandbox) if sandbox else None
                print(f"sandbox ready in {world_s:.0f} s ({accounts:,} accounts; sandbox CPU {sandbox_cpu_start} s)",
                      flush=True)
                extra = ({} if mixpanel_backfill_days is None
                         else {"HEALTHSCORE_MIXPANEL_BACKFILL_DAYS": str(mixpanel_backfill_days)})
                env = pipeline_env(base, url, tmp / "data", **extra)
                for n in range(1 + steady_days):
                    logical = FIRST_DAY + timedelta(days=n)
                    kind = "backfill" if n == 0 else "steady"
                    peaks: dict[str, int] = {}
                    cpus: dict[str, float] = {}
                    seen: dict[str, list] = {"tasks": [], "cpu": None}

                    def sample(pid: int, tasks: list, peaks: dict[str, int] = peaks, cpus: dict[str, float] = cpus,
                               seen: dict = seen) -> None:
                        seen["tasks"] = tasks
                        running = [t for t, state, _ in tasks if state == "running"]
                        cpu = _tree_cpu(pid)
                        spent, seen["cpu"] = cpu - (seen["cpu"] if seen["cpu"] is not None else cpu), cpu
                        # the CPU since the last poll goes to the tasks running now (one at a time under dags test)
                        for task in running:
                            cpus[task] = cpus.get(task, 0.0) + spent / len(running)
                        if running:
                            rss = _tree_rss(pid)
                            for task in running:
                                peaks[task] = max(peaks.get(task, 0), rss)

                    before = _stats(base)
                    sandbox_before = _tree_cpu(sandbox) if sandbox else None
                    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    load_before = _load()
                    day_started = time.monotonic()
                    day: dict = {"kind": kind, "logical_date": logical.isoformat(), "load_start": load_before}
                    try:
                        result = run_day(airflow, logical, env, tmp / f"day-{logical}.log", f"{accounts} {kind}",
                                         out=lambda line: print(line, flush=True), poll_seconds=1.0, on_poll=sample)
                    except (Stopped, KeyboardInterrupt) as exc:
                        partial = (f"stopped ({exc or 'interrupt'}) during the {kind} day {logical} after "
                                   f"{time.monotonic() - day_started:.0f} s; log {tmp / f'day-{logical}.log'}")
                        day.update(_day_figures(seen["tasks"], peaks, cpus, None, None, None, None))
                        day.update({"state": "stopped", "total_s": round(time.monotonic() - day_started, 1),
                                    "landed": _landed(engine, logical - timedelta(days=1)),
                                    "extract_object_s": _object_seconds(engine, logical - timedelta(days=1))})
                        days.append(day)
                        break
                    children = resource.getrusage(resource.RUSAGE_CHILDREN)
                    after = _stats(base)
                    day.update(_day_figures(result.tasks, peaks, cpus, before, after, sandbox_before,
                                            _tree_cpu(sandbox) if sandbox else None))
                    day.update({"state": result.state, "total_s": round(result.seconds, 1),
                                "airflow_cpu_s": round(children.ru_utime + children.ru_stime
                                                       - children_before.ru_utime - children_before.ru_stime, 1),
                                "load_end": _load(),
                                "landed": _landed(engine, logical) or _landed(engine, logical - timedelta(days=1)),
                                "extract_object_s": (_object_seconds(engine, logical)
                                                     or _object_seconds(engine, logical - timedelta(days=1)))})
                    days.append(day)
                    print(json.dumps(day, indent=1), flush=True)
                    if result.state != "success":
                        partial = f"the {kind} day {logical} ended {result.state} {result.failure()}"
                        print(f"bench_daily_e2e: {partial}", flush=True)
                        break
        except Stopped as exc:  # while the world was being built
            partial = f"stopped ({exc}) before the first day (sandbox start {time.monotonic() - t0:.0f} s)"
        engine.dispose()
    out = {"bench": "bench_daily_e2e", "accounts": accounts, "seed": seed,
           "date": started_at.isoformat(timespec="seconds"), "commit": _commit(), "machine": _machine(),
           "load_start": load_start, "load_end": _load(), "nice": os.nice(0),
           "shared_machine": "shared with other helpers' builds and tests during the run (see load averages)",
           "warehouse": "sqlite" if warehouse_url is None else sa.engine.make_url(warehouse_url).get_backend_name(),
           "mixpanel_backfill_days": mixpanel_backfill_days or "default (HEALTHSCORE_MIXPANEL_BACKFILL_DAYS, 35)",
           "sandbox_start_s": None if world_s is None else round(world_s, 1),
           "sandbox_start_cpu_s": None if sandbox_cpu_start is None else round(sandbox_cpu_start, 1),
           "days": days, "derived": derive(days)}
    if partial:
        out["partial"] = partial
    return out


def _day_figures(tasks: list, peaks: dict[str, int], cpus: dict[str, float], before: dict | None,
                 after: dict | None, sandbox_before: float | None, sandbox_after: float | None) -> dict:
    figures = {"tasks": {t: {"seconds": round(d or 0.0, 1), "state": state,
                             "cpu_s": round(cpus.get(t, 0.0), 1), "peak_rss_mib": round(peaks.get(t, 0) / 2**20)}
                         for t, state, d in tasks}}
    if before is not None and after is not None:
        figures["requests"] = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after)
                               if after.get(k, 0) - before.get(k, 0)}
    if sandbox_before is not None and sandbox_after is not None:
        figures["sandbox_cpu_s"] = round(sandbox_after - sandbox_before, 1)
    return figures


def _extraction(day: dict) -> tuple[float, int]:
    seconds = sum(v["seconds"] for t, v in day["tasks"].items() if t.startswith("extract_"))
    vendor_requests = sum(v for k, v in day["requests"].items() if ":" not in k and k != "hubspot_search")
    return seconds, vendor_requests


def derive(days: list[dict]) -> dict:
    """Targets' figures: steady vs backfill extraction, share of records changed, HubSpot at real limits."""
    out: dict = {}
    done = [d for d in days if d.get("state", "success") == "success"]
    backfill = next((d for d in done if d["kind"] == "backfill"), None)
    steady = [d for d in done if d["kind"] == "steady"]
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
        hub, search = d.get("requests", {}).get("hubspot", 0), d.get("requests", {}).get("hubspot_search", 0)
        # Seconds the day's HubSpot traffic needs at a real portal's limits (search has its own, lower one).
        d["hubspot_min_seconds_at_real_limits"] = round(max(hub / HUBSPOT_PER_S, search / SEARCH_PER_S), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--steady-days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warehouse-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--port", type=int, default=None, help="the sandbox's port (default: a free one)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the warehouse, Airflow home and day logs here (default: a temp dir, removed)")
    parser.add_argument("--mixpanel-backfill-days", type=int, default=None,
                        help="days of events the first batch pulls (default 35); the steady day re-pulls 3 anyway")
    parser.add_argument("--no-save", action="store_true", help="print only; leave bench/results alone")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    print(f"load average at start: {_load()}  cpus: {os.cpu_count()}", flush=True)
    result = run(args.accounts, args.steady_days, args.warehouse_url, args.seed, args.port, args.workdir,
                 args.mixpanel_backfill_days)
    print(json.dumps({k: result.get(k) for k in ("accounts", "load_start", "load_end", "derived", "partial")},
                     indent=1))
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
