"""Sharded scoring: one shard against N shards run as parallel processes, per-shard costs, and what 1M / 10M need.

A throw-away PostgreSQL database (HEALTHSCORE_TEST_PG_ADMIN_URL's server, default local trust auth; ``--sqlite``
for a SQLite file) is migrated, the packaged model registered, and ``--accounts`` synthetic accounts get stored
``account_signals`` for two dates 30 days apart (the random portfolio of ``tests.unit.test_scoring``: every
segment, tenures across onboarding, some missing signals). The earlier date is scored once (one shard), so the
measured date reads history (trends, momentum, stage runs).

The measured date is then scored twice, from an archive without that date each time:

- 1 shard: one process runs what the ``score_and_archive`` task runs (``load_shard_signals`` + ``score_batch``);
- N shards: N processes at once (one per shard, as N Celery workers would), then ``combine_parquet_parts``.

Each process reports its wall and CPU seconds and peak RSS (imports excluded; reported apart). The Parquet files
of both runs are compared byte for byte. From the per-shard costs a linear model ``cost = a x own accounts +
b x all accounts + c`` (b: the reads every shard does for every account, the day's ids and the archive's dated
history windows) is fitted on the two runs and projected to 1M and 10M accounts. Results go to
bench/results/sharded_scoring.txt with the machine, date, commit and load average (a shared machine: CPU
seconds are the steadier figure).

    nice .venv/bin/python bench/bench_sharded_scoring.py                    # 100k accounts, 2 shards
    nice .venv/bin/python bench/bench_sharded_scoring.py --accounts 20000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ADMIN_URL = os.environ.get("HEALTHSCORE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RESULTS = REPO / "bench" / "results" / "sharded_scoring.txt"
DAY = date(2026, 9, 30)
BEFORE = DAY - timedelta(days=30)


def context(day: date) -> dict:
    end = datetime.combine(day + timedelta(days=1), dtime(), UTC)
    return {"data_interval_end": end, "logical_date": end, "run_id": f"bench__{day.isoformat()}"}


def _usage() -> tuple[float, float]:
    """(CPU seconds of this process, its peak RSS in MB). The peak is VmHWM, reset by exec: ru_maxrss would
    carry the forking parent's peak over (the first run of this bench, 2026-12-07, reported that by mistake)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return ru.ru_utime + ru.ru_stime, int(hwm.split()[1]) / 1024.0


def worker(step: str, day: date, shard: int, shards: int) -> None:
    """One process: a shard's scoring, or the combine step; prints a JSON line with its costs."""
    t0 = time.perf_counter()
    from healthscore.pipeline.runtime import batch_from_context, task_scope
    from healthscore.pipeline.score import combine_parquet_parts, load_shard_signals, score_batch

    imported = time.perf_counter() - t0
    cpu0, floor = _usage()
    start = time.perf_counter()
    out: dict = {"step": step, "shard": shard, "shards": shards, "import_s": round(imported, 2),
                 "import_rss_mb": round(floor)}
    batch = batch_from_context(context(day))
    with task_scope() as (settings, _, engine):
        if step == "score":
            signals = load_shard_signals(engine, day, shard, shards)
            out["load_s"] = round(time.perf_counter() - start, 2)
            out["accounts"] = len(signals)
            out["written"] = score_batch(engine, signals, batch, archive_url=settings.resolved_archive_url,
                                         shard=shard, shards=shards)
        else:
            out["files"] = combine_parquet_parts(engine, batch, settings.resolved_archive_url, shards)
    cpu1, rss = _usage()
    out.update(wall_s=round(time.perf_counter() - start, 2), cpu_s=round(cpu1 - cpu0, 2), peak_rss_mb=round(rss))
    print(json.dumps(out, default=str))


def spawn(env: dict, step: str, day: date, shard: int, shards: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", step, day.isoformat(), str(shard), str(shards)],
                            env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)


def collect(procs: list[subprocess.Popen]) -> list[dict]:
    results = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed ({p.returncode})")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


def run(env: dict, day: date, shards: int) -> dict:
    started = time.perf_counter()
    shard_costs = collect([spawn(env, "score", day, i, shards) for i in range(shards)])
    combine = collect([spawn(env, "combine", day, 0, shards)])[0] if shards > 1 else None
    return {"shards": shards, "wall_s": round(time.perf_counter() - started, 2), "per_shard": shard_costs,
            "combine": combine}


def populate(url: str, accounts: int) -> None:
    import numpy as np

    from healthscore.config import load_model_config
    from healthscore.pipeline.signals import COMPUTED_SIGNALS, store_signals
    from healthscore.warehouse import make_engine, upgrade
    from healthscore.warehouse.registry import register_model_version
    from tests.unit.test_scoring import random_signals

    upgrade(url)
    engine = make_engine(url)
    model = load_model_config(computable_signals=COMPUTED_SIGNALS)
    register_model_version(engine, model)
    for seed, day in enumerate((BEFORE, DAY)):
        frame = random_signals(model, accounts, seed=seed, missing=0.08)
        frame["account_id"] = [f"acct-{i:08d}" for i in np.random.default_rng(9).permutation(accounts)]
        frame["tenure_days"] = random_signals(model, accounts, seed=99)["tenure_days"] + (day - BEFORE).days
        frame["as_of_date"] = day
        frame["lifecycle_stage"] = None
        frame["dimension_sources"] = [{} for _ in range(accounts)]
        store_signals(engine, frame)
    engine.dispose()


def clear_day(url: str, archive: Path, day: date) -> None:
    import shutil

    import sqlalchemy as sa

    from healthscore.warehouse import make_engine
    from healthscore.warehouse.models import HealthScore

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.delete(HealthScore).where(HealthScore.as_of_date == day))
    engine.dispose()
    for folder in (archive / "health_scores" / f"as_of_date={day}", archive / "_shard_parts"):
        shutil.rmtree(folder, ignore_errors=True)


def project(one: dict, many: dict, accounts: int) -> tuple[dict, list[str]]:
    """Fit cost = a x own + b x all + c per metric on (1 shard, N shards); project to 1M / 10M."""
    n = many["shards"]
    own_many = max(s["accounts"] for s in many["per_shard"])
    slowest = max(many["per_shard"], key=lambda s: s["cpu_s"])
    fits = {}
    for metric in ("cpu_s", "peak_rss_mb"):
        y1, y2 = one["per_shard"][0][metric], slowest[metric]
        a = (y1 - y2) / (accounts - own_many)  # per own account
        # b and c are not separable from two runs at one portfolio size: put the rest in b (per account of the
        # portfolio) for CPU, in c (a fixed process floor) for memory; both are stated in the output.
        # The rest is per account of the whole portfolio (every shard reads the day's ids and the archive's
        # dated windows of every account) above a fixed floor: none for CPU (imports are not counted), the
        # process after its imports for memory. Two runs at one size cannot split it further: an upper bound.
        floor = one["per_shard"][0]["import_rss_mb"] if metric == "peak_rss_mb" else 0.0
        rest = y1 - a * accounts - floor
        fits[metric] = {"a": a, "b": rest / accounts, "c": floor}
    combine_per_account = (many["combine"]["cpu_s"] / accounts) if many["combine"] else 0.0
    combine_rss_per_account = ((many["combine"]["peak_rss_mb"] - many["combine"]["import_rss_mb"]) / accounts
                               if many["combine"] else 0.0)
    lines = [f"fit per shard (from 1 vs {n} shards at {accounts} accounts): CPU = {fits['cpu_s']['a'] * 1e6:.1f} us x own "
             f"accounts + {fits['cpu_s']['b'] * 1e6:.1f} us x all accounts; peak RSS = "
             f"{fits['peak_rss_mb']['a'] * 1e3:.2f} MB per 1k own + {fits['peak_rss_mb']['b'] * 1e3:.2f} MB per 1k of all "
             f"accounts + {fits['peak_rss_mb']['c']:.0f} MB (imports); "
             f"combine = {combine_per_account * 1e6:.1f} us and {combine_rss_per_account * 1e3:.2f} MB per 1k accounts"]
    table = {}
    for total in (1_000_000, 10_000_000):
        for shards in (1, 4, 8, 16, 32, 64):
            own = total / shards
            cpu = fits["cpu_s"]["a"] * own + fits["cpu_s"]["b"] * total
            rss = fits["peak_rss_mb"]["a"] * own + fits["peak_rss_mb"]["b"] * total + fits["peak_rss_mb"]["c"]
            table[(total, shards)] = (cpu, rss)
            lines.append(f"  {total:>10,} accounts, {shards:>2} shards: per shard ~{cpu / 60:6.1f} CPU-min, "
                         f"peak ~{rss / 1024:5.1f} GiB; combine ~{combine_per_account * total / 60:5.1f} CPU-min, "
                         f"~{combine_rss_per_account * total / 1024:4.1f} GiB above its imports")
    return table, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument("--worker", nargs=4, metavar=("STEP", "DAY", "SHARD", "SHARDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        step, day, shard, shards = args.worker
        worker(step, date.fromisoformat(day), int(shard), int(shards))
        return

    import sqlalchemy as sa

    load_start = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="hs-bench-shard-"))
    name = f"hs_bench_shard_{uuid.uuid4().hex[:8]}"
    admin = None
    if args.sqlite:
        url = f"sqlite:///{tmp / 'warehouse.db'}"
    else:
        admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEALTHSCORE_", "AIRFLOW_CONN_"))}
    env.update(HEALTHSCORE_WAREHOUSE_URL=url, HEALTHSCORE_DATA_DIR=str(tmp), PYTHONPATH=str(REPO))
    archive = tmp / "archive"
    try:
        t0 = time.perf_counter()
        populate(url, args.accounts)
        collect([spawn(env, "score", BEFORE, 0, 1)])  # the history the measured day reads
        setup = time.perf_counter() - t0
        one = run(env, DAY, 1)
        parquet = archive / "health_scores" / f"as_of_date={DAY}" / "model_version=v1" / "scores.parquet"
        one_bytes = parquet.read_bytes()
        clear_day(url, archive, DAY)
        many = run(env, DAY, args.shards)
        identical = parquet.read_bytes() == one_bytes
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
    load_end = os.getloadavg()
    _, lines = project(one, many, args.accounts)
    backend = "SQLite" if args.sqlite else "PostgreSQL"
    report = [
        f"bench_sharded_scoring: {args.accounts} accounts on {backend}, 1 shard vs {args.shards} shards as parallel "
        f"processes; commit {commit}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"SHARED machine, load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end (wall times are inflated, "
        "CPU seconds are the steadier figure)",
        f"setup (signals for 2 dates, the earlier one scored): {setup:.0f} s wall",
        f"1 shard: {one['wall_s']} s wall (processes started to all done)",
    ]
    for result in (one, many):
        for s in result["per_shard"]:
            report.append(f"  {result['shards']} shard(s), shard {s['shard']}: {s['accounts']} accounts, load "
                          f"{s['load_s']} s, total {s['wall_s']} s wall, {s['cpu_s']} s CPU, peak RSS {s['peak_rss_mb']} MB"
                          f" (imports {s['import_s']} s)")
        if result["combine"]:
            c = result["combine"]
            report.append(f"  combine_shards: {c['wall_s']} s wall, {c['cpu_s']} s CPU, peak RSS {c['peak_rss_mb']} MB")
        if result is many:
            report.append(f"{args.shards} shards: {many['wall_s']} s wall (all shards in parallel, then combine)")
    slowest = max(s["wall_s"] for s in many["per_shard"])
    report.append(f"speed-up of the scoring step: {one['per_shard'][0]['wall_s'] / slowest:.2f}x on the slowest shard, "
                  f"{one['wall_s'] / many['wall_s']:.2f}x end to end with combine; Parquet identical: {identical}")
    report += lines
    text = "\n".join(report) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
