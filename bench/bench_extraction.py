"""Extraction overhead: our extractor vs a bare requests pagination loop against the same sandbox.

Target: (b)/(a) <= 1.3, where for the same object, the same query parameters and the same sandbox
  (a) bare   = a plain ``requests.Session`` loop paginating to the end and json-decoding every page,
  (b) pages  = our ``Source.pages()`` loop (HttpClient with tenacity retries, vendor cursor logic),
  (c) extract= our full ``extract_object`` into a fresh SQLite warehouse (disk staging, landing rows with
               canonical JSON + sha256, bulk upsert, cursor and run-log commit).
(c)/(a) is printed too: it is what an Airflow extract task really costs per record.

The sandbox runs as a separate process (``healthscore.cli sandbox serve``), so the server does not share
this process's GIL; with 2 cores the client and the server each get about one. Every variant gets one
warm-up pass (the server caches its as-of views) and the best of ``--repeat`` timed passes is reported;
variants are interleaved per round so background load hits them alike. Prints figures; asserts nothing.

    GX_ANALYTICS_ENABLED=false .venv/bin/python bench/bench_extraction.py [--accounts 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import requests  # noqa: E402

from healthscore.pipeline.extract import Batch, extract_object  # noqa: E402
from healthscore.sources import SourceConnection, client_class  # noqa: E402
from healthscore.sources.base import SANDBOX_CLOCK_HEADER  # noqa: E402
from healthscore.sources.hubspot import LIST_PAGE, PROPERTIES  # noqa: E402
from healthscore.sources.stripe import PAGE as STRIPE_PAGE  # noqa: E402
from healthscore.sources.stripe import STRIPE_VERSION  # noqa: E402
from healthscore.sources.zendesk import EXPORT_PAGE  # noqa: E402
from healthscore.warehouse import make_engine, upgrade  # noqa: E402
from healthscore_sandbox import credentials as cred  # noqa: E402
from healthscore_sandbox.runner import free_port  # noqa: E402

NOW = "2026-09-30T06:00:00Z"
AS_OF = datetime(2026, 9, 30, 6, tzinfo=UTC)
BATCH = Batch(date(2026, 9, 29), AS_OF, "bench_extraction")
TARGET_RATIO = 1.3
DEFAULT_OBJECTS = ["zendesk.tickets", "stripe.invoices", "hubspot.contacts"]
LABELS = {"a": "(a) bare", "b": "(b) pages", "c": "(c) land"}


# ---- the sandbox as a separate process ---------------------------------------------------------
class SandboxProcess:
    """``healthscore.cli sandbox serve`` on a free port; stopped (by its pid) on exit."""

    def __init__(self, accounts: int, seed: int, now: str = NOW, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "healthscore.cli", "sandbox", "serve", "--port", str(self.port),
                    "--accounts", str(accounts), "--seed", str(seed), "--now", now,
                    "--rate-limit-scale", "1000000"]
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.startup_s = 0.0

    def start(self, timeout: float = 300.0) -> SandboxProcess:
        t0 = time.perf_counter()
        env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"sandbox exited ({self.proc.returncode}):\n{self.log.read().decode()[-3000:]}")
            try:
                if requests.get(f"{self.url}/_sandbox/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sandbox did not answer on {self.url} within {timeout:.0f} s")
            time.sleep(0.25)
        self.startup_s = time.perf_counter() - t0
        return self

    def status_kib(self, field: str) -> int | None:
        """A VmHWM/VmRSS figure of the sandbox process from /proc (Linux only)."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
        except (OSError, AttributeError):
            return None
        return None

    def cpu_seconds(self) -> float | None:
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, AttributeError):
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def connections(base: str) -> dict[str, SourceConnection]:
    extra = {"sandbox": True}
    return {
        "hubspot": SourceConnection("crm_hubspot", base, password=cred.HUBSPOT_TOKEN, extra=extra),
        "zendesk": SourceConnection("support_zendesk", base, cred.ZENDESK_EMAIL, cred.ZENDESK_API_TOKEN, extra),
        "stripe": SourceConnection("billing_stripe", base, password=cred.STRIPE_SECRET_KEY, extra=extra),
    }


# ---- (a) bare requests loops: the same requests our sources send --------------------------------
def _bare_session(extra_headers: dict[str, str]) -> requests.Session:
    http = requests.Session()
    http.headers.update({SANDBOX_CLOCK_HEADER: AS_OF.isoformat(), **extra_headers})
    return http


def bare_hubspot(base: str, obj: str) -> int:
    params = {"limit": LIST_PAGE, "properties": ",".join(PROPERTIES[obj])}
    if obj != "companies":
        params["associations"] = "companies"
    n = 0
    with _bare_session({"Authorization": f"Bearer {cred.HUBSPOT_TOKEN}"}) as http:
        while True:
            body = http.get(f"{base}/crm/v3/objects/{obj}", params=params, timeout=30).json()
            n += len(body["results"])
            after = (body.get("paging") or {}).get("next", {}).get("after")
            if not after:
                return n
            params["after"] = after


def bare_stripe(base: str, obj: str) -> int:
    params: dict = {"limit": STRIPE_PAGE, **({"status": "all"} if obj == "subscriptions" else {})}
    n = 0
    headers = {"Authorization": f"Bearer {cred.STRIPE_SECRET_KEY}", "Stripe-Version": STRIPE_VERSION}
    with _bare_session(headers) as http:
        while True:
            body = http.get(f"{base}/v1/{obj}", params=params, timeout=30).json()
            n += len(body["data"])
            if not body["has_more"] or not body["data"]:
                return n
            params["starting_after"] = body["data"][-1]["id"]


def bare_zendesk(base: str, obj: str) -> int:
    if obj != "tickets":
        raise SystemExit("bare zendesk loop covers tickets only")
    url, params = f"{base}/api/v2/incremental/tickets/cursor.json", {
        "include": "metric_sets", "per_page": EXPORT_PAGE, "start_time": 0}
    n = 0
    with _bare_session({}) as http:
        http.auth = (f"{cred.ZENDESK_EMAIL}/token", cred.ZENDESK_API_TOKEN)
        while True:
            body = http.get(url, params=params, timeout=30).json()
            n += len(body["tickets"])
            if body["end_of_stream"]:
                return n
            url, params = body["after_url"], None


BARE: dict[str, Callable[[str, str], int]] = {"hubspot": bare_hubspot, "stripe": bare_stripe,
                                              "zendesk": bare_zendesk}


# ---- (b) Source.pages() and (c) extract_object ----------------------------------------------------
def our_pages(conn: SourceConnection, source: str, obj: str) -> int:
    with client_class(source)(conn, as_of=AS_OF) as src:
        return sum(len(page.records) for page in src.pages(obj))


def timed_extract(conn: SourceConnection, source: str, obj: str, workdir: Path, seq: int,
                  ) -> tuple[int, float, float]:
    """A fresh SQLite warehouse per pass, migrated outside the timed part, so every pass is a full load."""
    url = f"sqlite:///{workdir / f'wh_{source}_{obj}_{seq}.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with client_class(source)(conn, as_of=AS_OF) as src:
            t0, c0 = time.perf_counter(), time.process_time()
            summary = extract_object(src, obj, engine, BATCH)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        engine.dispose()
    for path in workdir.glob(f"wh_{source}_{obj}_{seq}.db*"):
        path.unlink()
    return summary.records, elapsed, cpu


def timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    """(records, wall seconds, CPU seconds of this client process)."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = fn()
    return n, time.perf_counter() - t0, time.process_time() - c0


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per variant (best is reported)")
    parser.add_argument("--objects", nargs="+", default=DEFAULT_OBJECTS, help="source.object names")
    args = parser.parse_args(argv)

    print(f"load average (1/5/15 min) at start: {load()}   cpus: {os.cpu_count()}")
    with SandboxProcess(args.accounts, args.seed) as sandbox, tempfile.TemporaryDirectory() as tmp:
        print(f"sandbox: {args.accounts:,} accounts, seed {args.seed}, separate process pid {sandbox.proc.pid}, "
              f"ready in {sandbox.startup_s:.1f} s")
        conns = connections(sandbox.url)
        workdir = Path(tmp)
        header = (f"{'object':17s} {'variant':9s} {'records':>9s} {'best s':>7s} {'rec/s':>8s} "
                  f"{'ratio':>6s} {'client CPU s':>12s} {'CPU ratio':>9s}  all passes (s)")
        print(header)
        totals = {"a": [0, 0.0, 0.0], "b": [0, 0.0, 0.0], "c": [0, 0.0, 0.0]}
        for name in args.objects:
            source, obj = name.split(".")
            conn = conns[source]
            variants: dict[str, Callable[[int], tuple[int, float]]] = {
                "a": lambda _i, s=source, o=obj: timed(lambda: BARE[s](sandbox.url, o)),
                "b": lambda _i, c=conn, s=source, o=obj: timed(lambda: our_pages(c, s, o)),
                "c": lambda i, c=conn, s=source, o=obj: timed_extract(c, s, o, workdir, i),
            }
            for run in variants.values():  # warm-up: the server builds and caches its as-of views
                run(-1)
            runs: dict[str, list[tuple[int, float, float]]] = {k: [] for k in variants}
            for i in range(max(1, args.repeat)):
                for key, run in variants.items():
                    runs[key].append(run(i))
            best = {k: min(v, key=lambda r: r[1]) for k, v in runs.items()}
            _, base_s, base_cpu = best["a"]
            for key in variants:
                n, s, cpu = best[key]
                totals[key][0] += n
                totals[key][1] += s
                totals[key][2] += cpu
                passes = " ".join(f"{r[1]:.2f}" for r in runs[key])
                print(f"{name:17s} {LABELS[key]:9s} {n:>9,d} {s:7.2f} {n / s:>8,.0f} {s / base_s:6.2f} "
                      f"{cpu:12.2f} {cpu / base_cpu:9.2f}  {passes}")
            counts = {best[k][0] for k in best}
            if len(counts) != 1:
                print(f"  note: record counts differ between variants: {sorted(counts)}")
        _, a_s, a_cpu = totals["a"]
        for key in ("a", "b", "c"):
            n, s, cpu = totals[key]
            verdict = "" if key == "a" else (
                f"  {'meets' if s / a_s <= TARGET_RATIO else 'misses'} the <= {TARGET_RATIO} target")
            print(f"{'all objects':17s} {LABELS[key]:9s} {n:>9,d} {s:7.2f} {n / s:>8,.0f} {s / a_s:6.2f} "
                  f"{cpu:12.2f} {cpu / a_cpu:9.2f}{verdict}")
        print("ratio = wall seconds / (a) wall seconds; client CPU = this process only (the server is separate)")
        hwm = sandbox.status_kib("VmHWM")
        cpu = sandbox.cpu_seconds()
        print(f"sandbox process: peak RSS {hwm / 1024 if hwm else float('nan'):.0f} MiB, "
              f"CPU {cpu if cpu is not None else float('nan'):.1f} s")
    print(f"load average (1/5/15 min) at end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
