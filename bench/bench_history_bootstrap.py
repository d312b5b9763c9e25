"""History bootstrap: how long `healthscore history bootstrap` takes for N months of a portfolio, per task.

Why: the accuracy report needs a year of archived scores before its first outcome means anything; the
target is 12 months of the demo portfolio (300 accounts) in <= 10 minutes on the 2-core machine. Runs the
bootstrap entry point (the DAG's own task functions, day by day) against an in-process sandbox, into a
fresh SQLite warehouse, and prints wall time, CPU time, days per minute and seconds per task, with the
load average (the machine is shared). Asserts nothing.

    GX_ANALYTICS_ENABLED=false .venv/bin/python bench/bench_history_bootstrap.py --months 12 --accounts 300
    .venv/bin/python bench/bench_history_bootstrap.py --days 20        # a quick per-day profile
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from healthscore.demo import pipeline_env
from healthscore.pipeline.history import BootstrapPlan, bootstrap
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "history_bootstrap.txt"


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the bootstrap's workers, joined at its end)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--days", type=int, default=None, help="only the first N days of the plan")
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--last", type=date.fromisoformat, default=date(2026, 9, 30))
    parser.add_argument("--workers", type=int, default=None, help="bootstrap worker processes (default: per core)")
    args = parser.parse_args()
    plan = BootstrapPlan.months_ending(args.last, args.months)
    if args.days:
        plan = BootstrapPlan(plan.first, min(plan.last, plan.first + timedelta(days=args.days - 1)))
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        state = build_state(SandboxOptions(seed=args.seed, accounts=args.accounts, rate_limit_scale=1000))
        with ThreadedSandbox(state, port=free_port()) as server:
            os.environ.update(pipeline_env(server.url, f"sqlite:///{Path(tmp) / 'warehouse.db'}", Path(tmp) / "data"))
            cpu0, wall0 = _cpu(), time.perf_counter()
            result = bootstrap(plan, progress=True, workers=args.workers)
            cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
    load_after = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"# history bootstrap, {datetime.now().isoformat(timespec='seconds')}, commit {commit}, "
        f"{platform.node()} ({os.cpu_count()} cores), load average before {load_before[0]:.1f} after "
        f"{load_after[0]:.1f} (shared machine)",
        f"plan {plan.first}..{plan.last}: {result.days_run} days, {args.accounts} accounts, seed {args.seed}",
        f"wall {wall:.0f} s, process CPU {cpu:.0f} s (bootstrap and its worker processes, the in-process sandbox "
        f"included), "
        f"{result.days_run / wall * 60:.1f} days/min; 12 months at this rate: {365 * wall / max(result.days_run, 1) / 60:.1f} min",
        "per day (wall s / CPU s): " + ", ".join(f"{d.isoformat()[5:]} {w:.1f}/{c:.1f}"
                                                 for d, w, c in result.day_seconds),
        "seconds per task (all days):",
        *(f"  {name:20s} {sec:8.1f}  ({sec / max(result.days_run, 1):.2f} s/day)"
          for name, sec in sorted(result.task_seconds.items(), key=lambda kv: -kv[1])),
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(text + "\n\n")


if __name__ == "__main__":
    main()
