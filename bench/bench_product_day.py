"""Product day at scale: 100k accounts, ~1M+ Mixpanel events for one day: wall time and peak RSS.

Target: the extract task's peak RSS <= 1.5 GiB. Prints figures and ratios; asserts nothing.

Production path, one batch day: the sandbox (a separate process, ``healthscore.cli sandbox serve``) serves
--accounts companies; this process lands HubSpot for the batch (``extract_source("hubspot")``, so
``build_context`` reads the real known company ids), builds the mixpanel ``ValidationContext`` exactly as
the Airflow task does, then runs ``extract_mixpanel`` for that single day (trailing_days=1,
backfill_days=1): the export is streamed, de-duplicated on $insert_id, validated by the GX events suite
in 100k-row chunks and folded per company, then landed into a fresh SQLite warehouse.

Memory: ``ru_maxrss`` is a lifetime high-water mark (it includes the HubSpot step), so the kernel's
VmHWM is reset (/proc/self/clear_refs) right before the mixpanel step and a sampler thread records
VmRSS; the mixpanel figure is that step's own peak and its delta over the baseline before it.
The day is warmed first (a bare streaming pass that also gives the exact served event count and a bare
requests + json.loads baseline), so the timed step does not include the server generating the day.
--tracemalloc snapshots Python allocations at each chunk flush and prints the largest sites (slow).

    GX_ANALYTICS_ENABLED=false .venv/bin/python bench/bench_product_day.py [--accounts 100000] [--day 2026-09-29]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import requests  # noqa: E402
from bench_extraction import SandboxProcess  # noqa: E402 - sibling bench (run as bench/bench_product_day.py)

import healthscore.pipeline.extract as extract_mod  # noqa: E402
import healthscore.pipeline.validate as validate_mod  # noqa: E402
import healthscore.quality.gate as gate_mod  # noqa: E402
import healthscore.sources.schemas as schemas_mod  # noqa: E402
from healthscore.pipeline.extract import (  # noqa: E402
    Batch,
    DayUsage,
    extract_mixpanel,
    extract_object,
    extract_source,
)
from healthscore.pipeline.validate import QualityPaths, build_context  # noqa: E402
from healthscore.sources import HubSpotSource, MixpanelSource, SourceConnection  # noqa: E402
from healthscore.sources.base import SANDBOX_CLOCK_HEADER  # noqa: E402
from healthscore.warehouse import make_engine, upgrade  # noqa: E402
from healthscore_sandbox import credentials as cred  # noqa: E402

NOW = "2026-09-30T06:00:00Z"
AS_OF = datetime(2026, 9, 30, 6, tzinfo=UTC)
RSS_TARGET = int(1.5 * 1024**3)
MiB = 2**20


# ---- memory probes ------------------------------------------------------------------------------
def status_kib(field: str, pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def rss() -> int:
    return status_kib("VmRSS") * 1024


def hwm() -> int:
    return status_kib("VmHWM") * 1024


def ru_maxrss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_hwm() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); ru_maxrss is not reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class RssSampler(threading.Thread):
    """VmRSS every ``interval`` seconds: the peak and when it happened, relative to ``t0``."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self.peak_at = interval, 0, 0.0
        self.t0 = time.perf_counter()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            value = rss()
            if value > self.peak:
                self.peak, self.peak_at = value, time.perf_counter() - self.t0
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


# ---- where the mixpanel step spends its time (wrappers installed by this bench only) ----------------
class Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.chunks: list[dict[str, Any]] = []
        self.snapshots: list[tuple[int, tracemalloc.Snapshot]] = []

    def timer(self, name: str, fn: Callable) -> Callable:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        return wrapped

    def install(self, snapshot: bool) -> Callable[[], None]:
        saved = [(schemas_mod, "flatten", schemas_mod.flatten), (gate_mod, "validate", gate_mod.validate),
                 (gate_mod, "merge", gate_mod.merge), (DayUsage, "flush", DayUsage.flush),
                 (DayUsage, "_fold", DayUsage._fold), (DayUsage, "rows", DayUsage.rows),
                 (extract_mod, "bulk_upsert", extract_mod.bulk_upsert),
                 (validate_mod, "store_outcome", validate_mod.store_outcome)]
        schemas_mod.flatten = self.timer("flatten (events -> frame)", schemas_mod.flatten)
        gate_mod.validate = self.timer("GX validate (chunks)", gate_mod.validate)
        gate_mod.merge = self.timer("merge outcomes", gate_mod.merge)
        DayUsage._fold = self.timer("fold per company", DayUsage._fold)
        rows, phases = self.timer("usage rows", DayUsage.rows), self

        def traced_rows(usage: DayUsage, batch: Batch) -> list[dict]:
            if snapshot:  # everything the day accumulated (seen ids, outcomes, per-company aggregates)
                phases.snapshots.append((-1, tracemalloc.take_snapshot()))
            return rows(usage, batch)

        DayUsage.rows = traced_rows
        extract_mod.bulk_upsert = self.timer("land usage + cursor (bulk_upsert)", extract_mod.bulk_upsert)
        validate_mod.store_outcome = self.timer("store_outcome (results, quarantine)", validate_mod.store_outcome)
        flush = saved[3][2]

        def traced_flush(usage: DayUsage) -> None:
            if not usage.buffer:
                return flush(usage)
            before, t0 = rss(), time.perf_counter()
            if snapshot:
                phases.snapshots.append((len(phases.chunks), tracemalloc.take_snapshot()))
            flush(usage)
            phases.chunks.append({"rows": len(usage.seen), "rss_before": before, "rss_after": rss(),
                                  "seconds": time.perf_counter() - t0, "outcomes": len(usage.outcomes)})
            return None

        DayUsage.flush = traced_flush

        def restore() -> None:
            for owner, name, value in saved:
                setattr(owner, name, value)
        return restore


def bare_stream(base: str, day: date) -> tuple[int, int, float]:
    """(lines, bytes, seconds) of a plain requests stream of the day's export, json-decoding each line."""
    params = {"from_date": day.isoformat(), "to_date": day.isoformat(), "project_id": cred.MIXPANEL_PROJECT_ID}
    t0, lines, size = time.perf_counter(), 0, 0
    with requests.get(f"{base}/api/2.0/export", params=params, stream=True, timeout=600,
                      auth=(cred.MIXPANEL_SERVICE_ACCOUNT, cred.MIXPANEL_SECRET),
                      headers={SANDBOX_CLOCK_HEADER: AS_OF.isoformat()}) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines(chunk_size=1 << 16):
            if line:
                json.loads(line)
                lines += 1
                size += len(line) + 1
    return lines, size, time.perf_counter() - t0


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--day", type=date.fromisoformat, default=date(2026, 9, 29),
                        help="the batch day (default: Tuesday 2026-09-29; the sandbox clock is " + NOW + ")")
    parser.add_argument("--days", type=int, default=1,
                        help="days the mixpanel step pulls, ending on --day (trailing_days=backfill_days=N; "
                             "1 = one product day; the DAG's daily run re-pulls 3, its first run 35)")
    parser.add_argument("--hubspot-objects", nargs="+", default=None,
                        help="land only these HubSpot objects first (default: all, as the DAG does; "
                             "build_context only reads companies and owners)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="cProfile the mixpanel step and print the top N functions by own time (slows it)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="snapshot Python allocations at each chunk flush (slows the step a lot)")
    args = parser.parse_args(argv)
    day = args.day

    print(f"load average (1/5/15 min) at start: {load()}   cpus: {os.cpu_count()}")
    with SandboxProcess(args.accounts, args.seed, NOW) as sandbox, tempfile.TemporaryDirectory() as tmp:
        print(f"sandbox: {args.accounts:,} accounts, seed {args.seed}, separate process pid {sandbox.proc.pid}, "
              f"ready in {sandbox.startup_s:.1f} s")
        base = sandbox.url
        lines, bare_s = 0, 0.0
        for back in range(args.days - 1, -1, -1):  # the server caches at most 4 days
            pulled = day - timedelta(days=back)
            _, _, warm_s = bare_stream(base, pulled)  # the server generates and caches the day
            n, size, seconds = bare_stream(base, pulled)
            lines, bare_s = lines + n, bare_s + seconds
            print(f"day {pulled} ({pulled.strftime('%a')}): {n:,} event lines served ({size / MiB:,.0f} MiB JSONL); "
                  f"first (cold) pass {warm_s:.1f} s, bare requests+json.loads pass {seconds:.2f} s = "
                  f"{n / seconds:,.0f} events/s")

        url = f"sqlite:///{Path(tmp) / 'warehouse.db'}"
        upgrade(url)
        engine = make_engine(url)
        batch = Batch(day, AS_OF, f"bench_product_day_{day}")
        extra = {"sandbox": True}
        hubspot = SourceConnection("crm_hubspot", base, password=cred.HUBSPOT_TOKEN, extra=extra)
        mixpanel = SourceConnection("product_mixpanel", base, cred.MIXPANEL_SERVICE_ACCOUNT, cred.MIXPANEL_SECRET,
                                    {**extra, "project_id": cred.MIXPANEL_PROJECT_ID})

        t0 = time.perf_counter()
        if args.hubspot_objects:
            with HubSpotSource(hubspot, as_of=batch.as_of) as source:
                summaries = [extract_object(source, obj, engine, batch) for obj in args.hubspot_objects]
        else:
            summaries = extract_source("hubspot", hubspot, engine, batch)
        hub_s = time.perf_counter() - t0
        print(f"hubspot landed first: {', '.join(f'{s.object}={s.records:,}' for s in summaries)} "
              f"in {hub_s:.1f} s; RSS now {rss() / MiB:,.0f} MiB, ru_maxrss so far {ru_maxrss() / MiB:,.0f} MiB")

        t0 = time.perf_counter()
        context = build_context(engine, "mixpanel", batch, QualityPaths.under(Path(tmp)))
        ctx_s = time.perf_counter() - t0
        print(f"build_context: {len(context.known_company_ids or ()):,} known companies in {ctx_s:.2f} s "
              f"(part of the task, not of the timed step below)")

        gc.collect()
        baseline, maxrss_before = rss(), ru_maxrss()
        reset_ok = reset_hwm()
        phases = Phases()
        restore = phases.install(args.tracemalloc)
        if args.tracemalloc:
            tracemalloc.start(1)
        profiler = cProfile.Profile() if args.profile else None
        sampler = RssSampler()
        sampler.start()
        c0 = time.process_time()
        t0 = time.perf_counter()
        try:
            if profiler:
                profiler.enable()
            with MixpanelSource(mixpanel, as_of=batch.as_of) as source:
                summary = extract_mixpanel(source, engine, batch, context, trailing_days=args.days,
                                           backfill_days=args.days)
        finally:
            if profiler:
                profiler.disable()
            wall = time.perf_counter() - t0
            cpu = time.process_time() - c0
            sampler.stop()
            restore()
        step_hwm = hwm() if reset_ok else 0
        traced_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else 0
        tracemalloc.stop()
        quality = summary.extra.get("quality") or {}

        events = lines - summary.extra["duplicates_dropped"]
        print(f"\nmixpanel {args.days} day(s) ending {day}: {summary.records:,} company-day rows from "
              f"{lines:,} events "
              f"({summary.extra['duplicates_dropped']:,} duplicates dropped; quality landed={quality.get('landed')} "
              f"accepted={quality.get('accepted')} quarantined={quality.get('quarantined')})")
        print(f"  wall {wall:7.2f} s   client CPU {cpu:.2f} s   {lines / wall:>9,.0f} events/s   "
              f"{wall / bare_s:.2f} x the bare requests+json.loads pass ({bare_s:.2f} s)"
              f"{'   [tracemalloc on: timings inflated]' if args.tracemalloc else ''}")
        print("  where the time goes (s):")
        for name, seconds in phases.seconds.items():
            print(f"    {name:38s} {seconds:7.2f}")
        inner = sum(v for k, v in phases.seconds.items() if k in (
            "flatten (events -> frame)", "GX validate (chunks)", "fold per company"))
        flush_total = sum(c["seconds"] for c in phases.chunks)
        tail = sum(v for k, v in phases.seconds.items() if k in (
            "merge outcomes", "usage rows", "land usage + cursor (bulk_upsert)", "store_outcome (results, quarantine)"))
        accounted = flush_total + tail
        print(f"    {'flush total (incl. quarantine lookup)':38s} {flush_total:7.2f}   "
              f"(flatten + validate + fold: {inner:.2f})")
        print(f"    {'stream + json.loads + dedup (rest)':38s} {wall - accounted:7.2f}")
        print("  chunks (rows seen so far, RSS before -> after flush, flush seconds):")
        for i, chunk in enumerate(phases.chunks):
            print(f"    #{i:<2d} {chunk['rows']:>9,d}  {chunk['rss_before'] / MiB:7,.0f} -> "
                  f"{chunk['rss_after'] / MiB:7,.0f} MiB  {chunk['seconds']:6.2f} s")

        print("  memory of THIS process:")
        print(f"    baseline RSS before the step        {baseline / MiB:8,.0f} MiB")
        if reset_ok:
            print(f"    peak RSS during the step (VmHWM)    {step_hwm / MiB:8,.0f} MiB   delta over baseline "
                  f"{(step_hwm - baseline) / MiB:,.0f} MiB   ratio to 1.5 GiB target {step_hwm / RSS_TARGET:.2f}")
        print(f"    sampled peak VmRSS (every 50 ms)    {sampler.peak / MiB:8,.0f} MiB   at t+{sampler.peak_at:.1f} s")
        end_maxrss = ru_maxrss()
        print(f"    ru_maxrss (lifetime)                {end_maxrss / MiB:8,.0f} MiB   (before the step "
              f"{maxrss_before / MiB:,.0f} MiB; delta {(end_maxrss - maxrss_before) / MiB:,.0f} MiB)   "
              f"ratio to 1.5 GiB target {end_maxrss / RSS_TARGET:.2f}")
        if args.tracemalloc:
            print(f"    tracemalloc peak of Python allocations {traced_peak / MiB:,.0f} MiB")
        sandbox_hwm = sandbox.status_kib("VmHWM")
        sandbox_rss = sandbox.status_kib("VmRSS")
        if sandbox_hwm:
            print(f"  sandbox process {sandbox.proc.pid}: peak RSS (VmHWM) {sandbox_hwm / 1024:,.0f} MiB, "
                  f"RSS now {sandbox_rss / 1024:,.0f} MiB")
        if phases.snapshots:
            index, snap = max(phases.snapshots, key=lambda s: sum(st.size for st in s[1].statistics("filename")))
            where = "after the last flush (before rows())" if index < 0 else f"before flushing chunk #{index}"
            total = sum(st.size for st in snap.statistics("filename"))
            print(f"  tracemalloc: largest snapshot ({total / MiB:,.0f} MiB traced) taken {where}; top sites:")
            for stat in snap.statistics("lineno")[:12]:
                frame = stat.traceback[0]
                print(f"    {stat.size / MiB:8,.1f} MiB {stat.count:>10,d} blocks  "
                      f"{frame.filename.split('/site-packages/')[-1].split('/include/')[-1]}:{frame.lineno}")
        if profiler:
            print(f"  cProfile of the step, top {args.profile} by own time:")
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.profile)
            print("\n".join("    " + line for line in out.getvalue().splitlines()[6:] if line.strip()))
        engine.dispose()
        print(f"events counted: {events:,} unique of {lines:,} served")
    print(f"load average (1/5/15 min) at end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
