"""Incremental cost: a day on which few records changed against a full sync, extraction only.

Target (issue 11): a day on which about 1% of the records changed costs <= 10% of a full sync's extraction.

The DAG's own extraction (``pipeline.extract.extract_source``, every source in registry order) runs twice into
one SQLite warehouse against the sandbox (a separate process, as in production): the first batch is the full
sync (every object from the beginning, Mixpanel's default backfill), the second the next day, starting from the
cursors the first committed. Nothing is written to the CRM in between, so the second day reads what the
simulated customers changed, not our own score PATCHes (``bench_daily_e2e`` measures that full day).

Printed per object: records in the full sync, records the next day, their share; per batch: CPU seconds of this
process, wall seconds and vendor requests (``GET /_sandbox/stats``). The ratio is taken on CPU seconds of this
process plus the sandbox's (the machine may be shared), and on requests.

    .venv/bin/python bench/bench_incremental.py [--accounts 2000] [--seed 42]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extraction import SandboxProcess  # noqa: E402

from healthscore.batch import Batch  # noqa: E402
from healthscore.demo import sandbox_connections  # noqa: E402
from healthscore.pipeline.extract import extract_source  # noqa: E402
from healthscore.sources import SourceConnection, registry  # noqa: E402
from healthscore.warehouse import make_engine, upgrade  # noqa: E402
from healthscore.warehouse.models import ExtractRun  # noqa: E402
from healthscore_sandbox import credentials as cred  # noqa: E402

FULL_DAY = date(2026, 9, 28)
TARGET = 0.10
RESULTS = Path(__file__).resolve().parent / "results" / "incremental.txt"


def _connection(env: dict[str, str], conn_id: str) -> SourceConnection:
    os.environ.update(env)  # the AIRFLOW_CONN_* of the sandbox, read as the tasks read them
    return SourceConnection.from_airflow(conn_id)


def _requests(base: str) -> int:
    stats = requests.get(f"{base}/_sandbox/stats", headers={"Authorization": f"Bearer {cred.ADMIN_TOKEN}"},
                         timeout=30).json()["requests"]
    return sum(int(v) for k, v in stats.items() if ":" not in k and k != "hubspot_search")


def _landed(engine: sa.Engine, day: date) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ExtractRun.source, ExtractRun.object, ExtractRun.records_landed)
                            .where(ExtractRun.batch_date == day)).all()
    return {f"{s}.{o}": int(n) for s, o, n in rows}


def _batch(day: date) -> Batch:
    return Batch(day, datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC), f"bench_incremental_{day}")


def run(accounts: int, seed: int) -> str:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_incr_") as tmp, \
            SandboxProcess(accounts, seed, now="2026-09-30T06:00:00Z") as sandbox:
        url = f"sqlite:///{Path(tmp) / 'warehouse.db'}"
        upgrade(url)
        engine = make_engine(url)
        env = sandbox_connections(sandbox.url, None)
        figures = []
        for day in (FULL_DAY, FULL_DAY + timedelta(days=1)):
            batch = _batch(day)
            cpu0, srv0, wall0, req0 = time.process_time(), sandbox.cpu_seconds() or 0.0, time.perf_counter(), \
                _requests(sandbox.url)
            for spec in registry.sources():
                extract_source(spec.name, _connection(env, spec.conn_id), engine, batch)
            figures.append({"cpu": time.process_time() - cpu0, "server_cpu": (sandbox.cpu_seconds() or 0.0) - srv0,
                            "wall": time.perf_counter() - wall0, "requests": _requests(sandbox.url) - req0,
                            "landed": _landed(engine, day)})
        engine.dispose()
    full, next_day = figures
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "bench_incremental: extraction of a full sync vs the next day (no CRM writes between), per object and in total",
        f"date {datetime.now(UTC).isoformat(timespec='seconds')}  commit {commit}  machine {os.uname().nodename} "
        f"({os.cpu_count()} cores, Python {sys.version.split()[0]})",
        f"load average before {load_before[0]:.1f} / after {os.getloadavg()[0]:.1f}; portfolio {accounts:,} accounts "
        f"(seed {seed}); batches {FULL_DAY} (full) and {FULL_DAY + timedelta(days=1)}",
        "",
        f"{'object':28} {'mode':12} {'full':>9} {'next day':>9} {'share':>7}",
    ]
    modes = {f"{s.name}.{o.name}": o.mode for s in registry.sources() for o in s.objects}
    total_full = total_next = changed_full = changed_next = 0
    for key in sorted(full["landed"]):
        a, b = full["landed"][key], next_day["landed"].get(key, 0)
        mode = modes.get(key, "folded")
        lines.append(f"{key:28} {mode:12} {a:9,} {b:9,} {b / a if a else 0:7.1%}")
        total_full, total_next = total_full + a, total_next + b
        if mode == "incremental":
            changed_full, changed_next = changed_full + a, changed_next + b
    cost_full = full["cpu"] + full["server_cpu"]
    cost_next = next_day["cpu"] + next_day["server_cpu"]
    ratio_cpu = cost_next / cost_full
    ratio_req = next_day["requests"] / full["requests"]
    lines += [
        f"{'all records':28} {'':12} {total_full:9,} {total_next:9,} {total_next / total_full:7.1%}",
        f"{'incremental objects':28} {'':12} {changed_full:9,} {changed_next:9,} {changed_next / changed_full:7.1%}"
        "   <- the records that changed",
        "",
        f"{'':28} {'full':>9} {'next day':>9} {'ratio':>7}",
        f"{'CPU s (client + sandbox)':28} {cost_full:9.1f} {cost_next:9.1f} {ratio_cpu:7.3f}",
        f"{'wall s':28} {full['wall']:9.1f} {next_day['wall']:9.1f} {next_day['wall'] / full['wall']:7.3f}",
        f"{'vendor requests':28} {full['requests']:9,} {next_day['requests']:9,} {ratio_req:7.3f}",
        "",
        f"target next day <= {TARGET:.0%} of the full sync: CPU {ratio_cpu:.1%}, requests {ratio_req:.1%} -> "
        + ("met" if max(ratio_cpu, ratio_req) <= TARGET else "NOT met"),
        "Snapshot objects (owners) and windowed re-reads (Stripe invoices' day of events before the cursor, "
        "Mixpanel's trailing days) are read whatever changed, by design: their share above is what that costs.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("healthscore").setLevel(logging.WARNING)
    text = run(args.accounts, args.seed)
    print(text, end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    earlier = RESULTS.read_text() if RESULTS.exists() else ""
    RESULTS.write_text(text + ("\n" + earlier if earlier else ""))  # newest run first, the earlier ones kept
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
