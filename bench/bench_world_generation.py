"""Benchmark the sandbox world: build_world wall time and peak RSS, and product_events throughput for one day.

Why: the sandbox must start a 100k-account world in well under a minute and under 2 GiB, and regenerate a ~1M-event
day in a few seconds. Prints figures and their ratios to the targets; never asserts.

    .venv/bin/python bench/bench_world_generation.py --accounts 100000
"""

from __future__ import annotations

import argparse
import datetime
import resource
import sys
import time

from healthscore_sandbox.world import WorldSpec, build_world

BUILD_SECONDS_TARGET = 60.0
RSS_BYTES_TARGET = 2 * 1024**3
EVENTS_SECONDS_TARGET = 3.0  # for ~1M events
TABLES = (
    "accounts",
    "contacts",
    "contracts",
    "deals",
    "meetings",
    "tickets",
    "satisfaction_ratings",
    "invoices",
    "company_changes",
    "shocks",
)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a small report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--days", type=int, default=457)
    parser.add_argument(
        "--day",
        type=datetime.date.fromisoformat,
        default=None,
        help="event day to time (default: the first Wednesday after 200 simulated days)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="product_events timings to take (best is reported)"
    )
    args = parser.parse_args(argv)

    spec = WorldSpec(seed=args.seed, n_accounts=args.accounts, days=args.days)
    rss_before = peak_rss_bytes()
    t0 = time.perf_counter()
    world = build_world(spec, use_cache=False)
    build_s = time.perf_counter() - t0
    build_rss = peak_rss_bytes()

    print(f"world: {args.accounts} accounts x {args.days} days, seed {args.seed}")
    print(f"build_world wall      : {build_s:8.2f} s   ({build_s / BUILD_SECONDS_TARGET:.2f} x 60 s target)")
    print(
        f"peak RSS after build  : {build_rss / 2**20:8.0f} MiB ({build_rss / RSS_BYTES_TARGET:.2f} x 2 GiB target;"
        f" {rss_before / 2**20:.0f} MiB before build)"
    )
    print("rows: " + ", ".join(f"{t}={len(getattr(world, t)):,}" for t in TABLES))

    day = args.day
    if day is None:
        day = spec.start + datetime.timedelta(days=min(200, spec.days - 1))
        while day.weekday() != 2 and (day - spec.start).days < spec.days - 1:
            day += datetime.timedelta(days=1)
    best = float("inf")
    n_events = 0
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        frame = world.product_events(day)
        best = min(best, time.perf_counter() - t0)
        n_events = len(frame)
        del frame
    rate = n_events / best if best > 0 else float("inf")
    scaled = best * 1_000_000 / max(n_events, 1)
    print(
        f"product_events({day.isoformat()}, {day.strftime('%a')}): {n_events:,} events in {best:.2f} s "
        f"= {rate:,.0f} events/s; {scaled:.2f} s per 1M events ({scaled / EVENTS_SECONDS_TARGET:.2f} x 3 s target)"
    )
    print(f"events per account    : {n_events / max(args.accounts, 1):.1f}")
    total_rss = peak_rss_bytes()
    print(
        f"peak RSS incl. events : {total_rss / 2**20:8.0f} MiB ({total_rss / RSS_BYTES_TARGET:.2f} x 2 GiB target)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
