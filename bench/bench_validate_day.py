"""CPU seconds of each validate task on one bootstrap day at the demo portfolio (300 accounts), warm.

Why: in the history bootstrap the validate tasks are ~60% of a day's CPU (bench/results/history_cost.txt,
history_bootstrap.txt), and #12's target is 12 months in <= 10 minutes. This isolates them: the bootstrap's
own code (``pipeline.history.bootstrap``, one process) runs ``--days`` days against a sandbox, then the last
day's validate tasks are run again ``--repeat`` times each (``tasks.run_validate``, idempotent per batch), in
the warm process, as a bootstrap worker runs them day after day. The verdict tables are compared between the
bootstrap's run and the repeats (they must not change). ``--profile FILE`` writes a cProfile of the repeats
and prints its top entries.

    flock /tmp/healthscore-bench.lock nice -n 5 .venv/bin/python bench/bench_validate_day.py [--profile /tmp/v.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import subprocess
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "validate_day.txt"
SOURCES = ("hubspot", "zendesk", "stripe", "mixpanel")


def verdicts(url: str) -> dict:
    import sqlalchemy as sa

    from healthscore.warehouse.models import BatchReconciliation, QualityResult, Quarantine

    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        for model in (QualityResult, Quarantine, BatchReconciliation):
            table = model.__table__
            cols = [c for c in table.columns if c.name not in ("id", "created_at")]
            order = [table.c.id] if "id" in table.c else cols[:3]
            out[table.name] = [tuple(r) for r in conn.execute(sa.select(*cols).order_by(*order))]
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--first", type=date.fromisoformat, default=date(2025, 10, 1))
    parser.add_argument("--days", type=int, default=4, help="bootstrap days; the last one is measured")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--port", type=int, default=18202)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--note", default="")
    args = parser.parse_args()

    from healthscore.demo import pipeline_env
    from healthscore.pipeline import tasks
    from healthscore.pipeline.history import BootstrapPlan, bootstrap, day_context, env_overrides
    from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

    load_start = os.getloadavg()
    last = args.first + timedelta(days=args.days - 1)
    with tempfile.TemporaryDirectory(prefix="bench_validate_day_") as tmp:
        url = f"sqlite:///{Path(tmp) / 'warehouse.db'}"
        state = build_state(SandboxOptions(seed=args.seed, accounts=args.accounts, rate_limit_scale=1000))
        with ThreadedSandbox(state, port=args.port) as server:
            os.environ.update(pipeline_env(server.url, url, Path(tmp) / "data"))
            started = time.perf_counter()
            result = bootstrap(BootstrapPlan(args.first, last), progress=False, quiet=True, workers=1)
            boot_s = time.perf_counter() - started
            before = verdicts(url)
            context = day_context(last)
            cpu: dict[str, list[float]] = {s: [] for s in SOURCES}
            profiler = cProfile.Profile() if args.profile else None
            with env_overrides({"HEALTHSCORE_DATA_DOCS_PUBLISH": "false"}):
                for _ in range(args.repeat):
                    for source in SOURCES:
                        cpu0 = time.process_time()
                        if profiler:
                            profiler.enable()
                        tasks.run_validate(source, context)
                        if profiler:
                            profiler.disable()
                        cpu[source].append(time.process_time() - cpu0)
            same = verdicts(url) == before
    load_end = os.getloadavg()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    per_task = {s: min(v) for s, v in cpu.items()}
    boot_validate = {k: round(v, 2) for k, v in result.task_seconds.items() if k.startswith("validate_")}
    lines = [f"# {datetime.now(UTC):%Y-%m-%dT%H:%M}Z commit {commit}, {platform.node()} ({os.cpu_count()} cores), "
             f"load {load_start[0]:.2f} -> {load_end[0]:.2f}; {args.accounts} accounts seed {args.seed}, bootstrap "
             f"{args.first}..{last} (workers=1, {boot_s:.0f} s wall), day {last} re-validated {args.repeat}x warm"
             f"{'; ' + args.note if args.note else ''}",
             "  CPU s per validate task (best of the repeats; all): " + ", ".join(
                 f"{s} {per_task[s]:.3f} ({'/'.join(f'{x:.2f}' for x in cpu[s])})" for s in SOURCES),
             f"  sum {sum(per_task.values()):.3f} CPU s; the bootstrap's own wall s per validate task over "
             f"{args.days} days: {boot_validate}",
             f"  verdict tables unchanged by the repeats: {same}"]
    text = "\n".join(lines)
    print(text)
    with RESULTS.open("a") as fh:
        fh.write(text + "\n\n")
    if profiler:
        profiler.dump_stats(args.profile)
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main()
