"""Peak RSS and CPU of the validate tasks on a 100k-account landed batch, without a 100k-account extraction.

Why: on the 100k-account backfill day ``validate_stripe`` was OOM-killed at 14.1 GiB RSS (issue 11; the
target is <= 2 GiB per task), after a 41-minute extraction. This lands a batch of that size in minutes and
runs the validate tasks on it, each in a fresh process, so their peak is their own.

How: a sandbox of ``--base-accounts`` (1% bad records) is extracted by the DAG's own extract tasks into a
fresh SQLite warehouse; every landed object of the batch is then re-landed
(``pointintime.land_batch``, the extractors' path) tiled to the row counts the 100k-account backfill landed
(``bench/results/bench_daily_e2e.json``), scaled to ``--accounts``. Each copy gets a unique id and keeps its
references (to the original companies, customers, tickets), so the referential checks see the sandbox's mix.
Then each ``validate_<source>`` task runs in its own ``python`` process (``tasks.run_validate``, as Airflow
runs it), which reports VmHWM (``/proc/self/status``), CPU seconds and wall seconds. ``--code DIR`` runs the
tasks from another checkout's ``include/`` (a before/after on the same landed batch).

Prints figures and appends them to ``bench/results/validate_memory.txt``; asserts nothing.

    flock /tmp/healthscore-bench.lock nice -n 5 .venv/bin/python bench/bench_validate_memory.py --accounts 100000
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
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "validate_memory.txt"
END = datetime(2026, 9, 29, tzinfo=UTC)  # batch 2026-09-28, the backfill day of bench_daily_e2e
CONTEXT = {"data_interval_end": END, "logical_date": END, "run_id": "bench-validate-memory"}
#: Rows the 100k-account backfill landed (bench_daily_e2e.json, 2026-12-07, 95,515 companies).
E2E_ACCOUNTS = 100_000


def _landed_at_100k() -> dict[str, int]:
    runs = json.loads((REPO / "bench" / "results" / "bench_daily_e2e.json").read_text())
    run = next(r for r in runs if r["accounts"] == E2E_ACCOUNTS)
    return run["days"][0]["landed"]


def _vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(source: str) -> None:
    """One validate task in this fresh process; prints its figures as one JSON line."""
    from healthscore.pipeline import tasks

    start_rss = _vm_hwm_mib()
    started, cpu0 = time.perf_counter(), time.process_time()
    summaries = tasks.run_validate(source, CONTEXT)
    print(json.dumps({"source": source, "wall_s": round(time.perf_counter() - started, 1),
                      "cpu_s": round(time.process_time() - cpu0, 1), "peak_rss_mib": round(_vm_hwm_mib()),
                      "rss_after_imports_mib": round(start_rss),
                      "objects": {s["suite"]: {k: s[k] for k in ("landed", "accepted", "quarantined", "out_of_scope")}
                                  for s in summaries},
                      "blocked": [s["suite"] for s in summaries if s["critical_failed"]]}))


def tile(engine, source: str, obj: str, target: int) -> int:
    """Re-land the batch of ``source.obj`` as ``target`` rows: copies of the extracted ones with unique ids."""
    import sqlalchemy as sa

    from healthscore.sources.base import canonical_json, source_objects
    from healthscore.warehouse.models import landing_table
    from healthscore.warehouse.pointintime import land_batch

    spec = source_objects(source)[obj]
    assert "." not in spec.id_field, spec.id_field
    table = landing_table(source, obj)
    batch_date = END.date() - timedelta(days=1)
    with engine.connect() as conn:
        base = [(json.loads(p), u) for p, u in conn.execute(
            sa.select(table.c.payload, table.c.source_updated_at).where(table.c.batch_date == batch_date)
            .order_by(table.c.record_id))]
    if not base or target <= len(base):
        return len(base)

    def rows():
        chunk = []
        for i in range(target):
            record, updated = base[i % len(base)]
            copy_no = i // len(base)
            if copy_no:
                value = record[spec.id_field]
                record = {**record, spec.id_field: value + copy_no * 10_000_000 if isinstance(value, int)
                          else f"{value}-{copy_no}"}
            payload = canonical_json(record)
            chunk.append({"record_id": spec.record_id(record), "batch_date": batch_date, "source_updated_at": updated,
                          "payload": payload, "payload_sha256": sha256(payload.encode()).hexdigest()})
            if len(chunk) == 20_000:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    with engine.begin() as conn:
        return land_batch(conn, source, obj, batch_date, rows())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000, help="portfolio size whose volumes are landed")
    parser.add_argument("--base-accounts", type=int, default=2000, help="sandbox portfolio actually extracted")
    parser.add_argument("--sources", default="stripe,hubspot", help="validate tasks to measure")
    parser.add_argument("--chunk-rows", type=int, default=None, help="HEALTHSCORE_VALIDATION_CHUNK_ROWS (default: "
                        "the setting's default)")
    parser.add_argument("--code", type=Path, default=None, help="run the validate tasks from DIR/include")
    parser.add_argument("--port", type=int, default=18201)
    parser.add_argument("--workdir", type=Path, default=None, help="reuse a warehouse landed by an earlier run")
    parser.add_argument("--note", default="")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    from healthscore.demo import pipeline_env
    from healthscore.pipeline import tasks
    from healthscore.sources import registry
    from healthscore.warehouse import make_engine
    from healthscore_sandbox.faults import FaultConfig
    from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

    load_start = os.getloadavg()
    sources = args.sources.split(",")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_validate_memory_"))
    url = f"sqlite:///{work / 'warehouse.db'}"
    env = pipeline_env("http://127.0.0.1:1", url, work / "data", HEALTHSCORE_DATA_DOCS_PUBLISH="false")
    landed: dict[str, int] = {}
    prepared = work / "landed.json"
    if prepared.exists():
        landed = json.loads(prepared.read_text())
        print(f"reusing the batch landed in {work}")
    else:
        started = time.perf_counter()
        state = build_state(SandboxOptions(seed=42, accounts=args.base_accounts, rate_limit_scale=1000,
                                           faults=FaultConfig(bad_record_rate=0.01)))
        with ThreadedSandbox(state, port=args.port) as server:
            env = pipeline_env(server.url, url, work / "data", HEALTHSCORE_DATA_DOCS_PUBLISH="false")
            os.environ.update(env)
            tasks.run_prepare(CONTEXT)
            needed = sorted(set(sources) | {"hubspot"})  # the context reads CRM companies and owners
            for name in needed:
                tasks.run_extract(name, registry.source(name).conn_id, CONTEXT)
        print(f"extracted {args.base_accounts} accounts in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        engine = make_engine(url)
        scale = args.accounts / E2E_ACCOUNTS
        for key, rows in _landed_at_100k().items():
            source, obj = key.split(".")
            if source in needed:
                landed[key] = tile(engine, source, obj, round(rows * scale))
        engine.dispose()
        prepared.write_text(json.dumps(landed))
        print(f"tiled to {args.accounts} accounts' volumes in {time.perf_counter() - started:.0f} s: {landed}")

    child_env = {**os.environ, **env}
    if args.chunk_rows:
        child_env["HEALTHSCORE_VALIDATION_CHUNK_ROWS"] = str(args.chunk_rows)
    if args.code:
        child_env["PYTHONPATH"] = f"{args.code.resolve() / 'include'}{os.pathsep}{child_env.get('PYTHONPATH', '')}"
    figures = []
    for source in sources:
        out = subprocess.run([sys.executable, __file__, "--child", source], env=child_env, capture_output=True,
                             text=True, check=False)
        line = next((x for x in reversed(out.stdout.splitlines()) if x.startswith("{")), None)
        if out.returncode or line is None:
            figures.append({"source": source, "failed": f"rc {out.returncode}", "stderr": out.stderr[-2000:]})
        else:
            figures.append(json.loads(line))
        print(json.dumps(figures[-1]))
    commit = subprocess.run(["git", "-C", str(args.code or REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    load_end = os.getloadavg()
    lines = [f"# {datetime.now(UTC):%Y-%m-%dT%H:%M}Z commit {commit}{' (code from ' + str(args.code) + ')' if args.code else ''}"
             f", {platform.node()} ({os.cpu_count()} cores), load {load_start[0]:.2f} -> {load_end[0]:.2f}"
             f"; {args.accounts} accounts' volumes tiled from {args.base_accounts} extracted; chunk rows "
             f"{args.chunk_rows or 'default'}{'; ' + args.note if args.note else ''}",
             f"#   landed: {landed}"]
    for f in figures:
        if "failed" in f:
            lines.append(f"validate_{f['source']}: FAILED {f['failed']}: {f['stderr'][-300:]!r}")
        else:
            lines.append(f"validate_{f['source']}: peak RSS {f['peak_rss_mib']} MiB (VmHWM; {f['rss_after_imports_mib']} "
                         f"after imports), CPU {f['cpu_s']} s, wall {f['wall_s']} s; blocked {f['blocked']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write("\n".join(lines) + "\n\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
