"""build_signals' peak memory and CPU on a landed portfolio (issue 11: <= 2 GiB per task at 100k accounts).

Why its own bench: the end-to-end bench lands a 10k-account day in ~25 minutes before build_signals runs once.
Here the landing is done once and build_signals is measured as often as needed on it:

    # once (minutes; under the bench lock): a PostgreSQL database with DAYS landed and validated days
    flock /tmp/healthscore-bench.lock nice -n 5 .venv/bin/python bench/bench_signals_memory.py \\
        prepare --accounts 10000 --db hs_signals_10k --days 1
    # then, as often as needed: the build_signals task (build + store) in a fresh process
    flock /tmp/healthscore-bench.lock nice -n 5 .venv/bin/python bench/bench_signals_memory.py \\
        measure --db hs_signals_10k --save /tmp/frame.pkl [--phases] [--results bench/results/signals_memory.txt]
    .venv/bin/python bench/bench_signals_memory.py compare /tmp/before.pkl /tmp/after.pkl

``prepare`` runs the daily DAG's own extract and validate tasks (``healthscore.pipeline.history.run_task``) against
``healthscore sandbox serve`` in its own process, from the first day of the demo's backfill (the first day
carries the 35-day Mixpanel backfill). ``measure`` runs what the ``build_signals`` task runs (the champion model,
``build_signals`` then ``store_signals``) in a child process and prints wall and CPU seconds and peak RSS (VmHWM of
the child: exec resets it, so nothing of this process is carried over), and, with ``--phases``, the peak resident
memory seen while each step ran (a sampling thread, 20 ms). ``--save`` pickles the frame for ``compare``, which
checks two frames are equal value for value and dtype for dtype.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("HEALTHSCORE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FIRST_DAY = date(2026, 9, 28)
SKIPPED = ("build_signals", "score_and_archive", "record_outcomes", "run_playbooks")


def _db_url(db: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(ADMIN_URL).set(database=db).render_as_string(hide_password=False)


def _context(day: date) -> dict:
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
    return {"data_interval_end": end, "logical_date": end, "run_id": f"scheduled__{end.isoformat()}"}


def _rss_mib(field: str = "VmRSS") -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024.0


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _commit() -> str:
    """The checkout's commit; ``BENCH_COMMIT`` names it for a code snapshot outside git (``git archive``)."""
    return os.environ.get("BENCH_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()


# ---- prepare --------------------------------------------------------------------------------------------
def prepare(accounts: int, db: str, days: int, seed: int, port: int, workdir: Path) -> None:
    """A fresh database with ``days`` landed and validated days of an ``accounts`` sandbox portfolio."""
    import sqlalchemy as sa

    from healthscore.config import load_model_config
    from healthscore.demo import pipeline_env, sandbox_process
    from healthscore.pipeline.history import day_graph, run_task
    from healthscore.warehouse.engine import make_engine
    from healthscore.warehouse.migrate import upgrade
    from healthscore.warehouse.registry import register_model_version

    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    admin.dispose()
    url = _db_url(db)
    upgrade(url)
    register_model_version(make_engine(url), load_model_config())
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with sandbox_process(port, accounts, seed) as base:
        print(f"sandbox ready in {time.monotonic() - started:.0f} s", flush=True)
        os.environ.update(pipeline_env(base, url, workdir, HEALTHSCORE_DATA_DOCS_PUBLISH="false"))
        for n in range(days):
            day = FIRST_DAY + timedelta(days=n)
            for name in day_graph(prepare=n == 0):
                if name in SKIPPED:
                    continue
                t0, c0 = time.monotonic(), _cpu_s()
                run_task(name, _context(day))
                print(f"{day} {name}: {time.monotonic() - t0:.0f} s wall, {_cpu_s() - c0:.0f} s CPU", flush=True)
    print(f"prepared {db}: {accounts} accounts, {days} day(s) from {FIRST_DAY} in {time.monotonic() - started:.0f} s")


# ---- measure --------------------------------------------------------------------------------------------
class PhaseSampler:
    """Peak VmRSS per named phase, sampled by a thread (what the step that ran held at its worst)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.phase = "start"
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            rss = _rss_mib()
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
            time.sleep(interval)

    def wrap(self, owner: Any, name: str, label: Callable[..., str]) -> None:
        """Replace ``owner.name`` (or ``owner[name]``, a dict) by a version that names the phase while it runs."""
        is_dict = isinstance(owner, dict)
        inner = owner[name] if is_dict else getattr(owner, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            outer, self.phase = self.phase, label(*args, **kwargs)
            try:
                return inner(*args, **kwargs)
            finally:
                self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), _rss_mib())
                self.phase = outer

        if is_dict:
            owner[name] = wrapped
        else:
            setattr(owner, name, wrapped)

    def __enter__(self) -> PhaseSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child(db: str, day: date, save: str | None, phases: bool) -> None:
    """One build_signals task in this (fresh) process; prints one JSON line of figures."""
    t_import = time.monotonic()
    from contextlib import nullcontext

    from healthscore.pipeline import signals as pipeline_signals
    from healthscore.pipeline.runtime import batch_from_context
    from healthscore.pipeline.score import registered_models
    from healthscore.warehouse.engine import make_engine

    batch = batch_from_context(_context(day))
    engine = make_engine(_db_url(db))
    out: dict[str, Any] = {"import_s": round(time.monotonic() - t_import, 2), "import_rss_mib": round(_rss_mib())}
    sampler = PhaseSampler() if phases else None
    if sampler is not None:
        mod = pipeline_signals
        pit_mod = mod.pointintime
        sampler.wrap(pit_mod, "versions", lambda conn, source, obj, *a, **k: f"read {source}.{obj}")
        sampler.wrap(pit_mod, "usage_rows", lambda *a, **k: "read mixpanel usage/nps")
        if hasattr(pit_mod, "_usage_frame"):  # the usage window, read one covered day at a time
            sampler.wrap(pit_mod, "_usage_frame", lambda conn, covered, *a, **k: (
                "read mixpanel usage day" if len(covered) == 1 else "read mixpanel usage/nps"))
        sampler.wrap(mod, "flatten", lambda source, obj, *a, **k: f"flatten {source}.{obj}")
        for name in ("compute_signals", "combine_parts"):  # before / after the per-source reductions
            if hasattr(mod, name):
                sampler.wrap(mod, name, lambda *a, _name=name, **k: _name)
        if hasattr(mod, "SOURCE_SIGNALS"):
            for source in list(mod.SOURCE_SIGNALS):
                sampler.wrap(mod.SOURCE_SIGNALS, source, lambda *a, _s=source, **k: f"reduce {_s}")
        sampler.wrap(mod, "apply_dimension_status", lambda *a, **k: "apply_dimension_status")
    cpu0, wall0 = _cpu_s(), time.monotonic()
    with sampler or nullcontext():
        champion = next(model for model, shadow in registered_models(engine) if not shadow)
        frame = pipeline_signals.build_signals(engine, batch.as_of, batch.batch_date, champion)
        built_s, built_cpu = time.monotonic() - wall0, _cpu_s() - cpu0
        if sampler is not None:
            sampler.phase = "store_signals"
        pipeline_signals.store_signals(engine, frame)
    out.update({"accounts": len(frame), "build_s": round(built_s, 1), "build_cpu_s": round(built_cpu, 1),
                "task_s": round(time.monotonic() - wall0, 1), "task_cpu_s": round(_cpu_s() - cpu0, 1),
                "peak_rss_mib": round(_rss_mib("VmHWM"))})
    if sampler is not None:
        out["phases_peak_rss_mib"] = {k: round(v) for k, v in sampler.peaks.items()}
    if save:
        frame.to_pickle(save)
    print("RESULT " + json.dumps(out), flush=True)


def measure(db: str, day: date, save: str | None, phases: bool, results: Path | None, note: str) -> dict:
    """Run ``child`` in a fresh process and report its figures with the load average around it."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    proc = subprocess.run([sys.executable, __file__, "_child", "--db", db, "--day", day.isoformat(),
                           *(["--save", save] if save else []), *(["--phases"] if phases else [])],
                          capture_output=True, text=True, check=False)
    load_after = [round(x, 2) for x in os.getloadavg()]
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"measure failed ({proc.returncode})")
    figures = json.loads(line[len("RESULT "):])
    figures.update({"db": db, "day": day.isoformat(), "load_before": load_before, "load_after": load_after,
                    "commit": _commit(), "date": datetime.now(UTC).isoformat(timespec="seconds")})
    print(json.dumps(figures, indent=1))
    if results is not None:
        machine = f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}"
        text = (f"{figures['date']}  commit {figures['commit']}  {note}\n"
                f"  machine {machine}; load {load_before} -> {load_after}\n"
                f"  {figures['db']} day {figures['day']}: {figures['accounts']} accounts; build_signals task "
                f"{figures['task_s']} s wall, {figures['task_cpu_s']} s CPU (build {figures['build_s']} s, "
                f"{figures['build_cpu_s']} s CPU); peak RSS {figures['peak_rss_mib']} MiB (after imports "
                f"{figures['import_rss_mib']} MiB)\n")
        if "phases_peak_rss_mib" in figures:
            text += "  peak RSS per step (MiB): " + ", ".join(
                f"{k} {v}" for k, v in figures["phases_peak_rss_mib"].items()) + "\n"
        with results.open("a") as fh:
            fh.write(text)
    return figures


def compare(a: str, b: str) -> None:
    """Two saved frames are equal: same columns, dtypes, index and values (NaN == NaN)."""
    import pandas as pd

    left, right = pd.read_pickle(a), pd.read_pickle(b)
    pd.testing.assert_frame_equal(left, right, check_exact=True)
    print(f"equal: {len(left)} rows x {len(left.columns)} columns")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--accounts", type=int, default=10000)
    p.add_argument("--db", required=True)
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--port", type=int, default=18310)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_signals_memory"))
    for name in ("measure", "_child"):
        m = sub.add_parser(name)
        m.add_argument("--db", required=True)
        m.add_argument("--day", type=date.fromisoformat, default=FIRST_DAY)
        m.add_argument("--save", default=None)
        m.add_argument("--phases", action="store_true")
        if name == "measure":
            m.add_argument("--results", type=Path, default=None)
            m.add_argument("--note", default="")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.accounts, args.db, args.days, args.seed, args.port, args.workdir)
    elif args.command == "measure":
        measure(args.db, args.day, args.save, args.phases, args.results, args.note)
    elif args.command == "_child":
        child(args.db, args.day, args.save, args.phases)
    else:
        compare(args.a, args.b)


if __name__ == "__main__":
    main()
