"""Render time of every Customer Health page at 100k accounts on PostgreSQL. Target: each under 1 s.

A throw-away database (HEALTHSCORE_TEST_PG_ADMIN_URL's server, default local trust auth) is migrated and filled
through the product's own bulk loader: ``--accounts`` accounts with champion scores on ``--days`` dates over
90 days (the latest, the day before, ~30 days before ...), their signals on the latest and the 30-days-before
date, HubSpot company records (names), playbook events, quarantined records and reconciliation rows, overrides.
Each page is then requested through the app in-process (FastAPI TestClient: routing, queries, template
rendering; no network, no Airflow auth) ``--repeat`` times after one warm-up, and the median and the worst are
printed and written to bench/results/ui_pages.txt with the machine, date, commit and load average.

    .venv/bin/python bench/bench_ui_pages.py                   # 100k accounts
    .venv/bin/python bench/bench_ui_pages.py --accounts 20000  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from fastapi import Request
from fastapi.testclient import TestClient

from healthscore.config import load_model_config
from healthscore.scoring.bands import VALUE_SEGMENTS, assign_bands
from healthscore.settings import Settings
from healthscore.ui.app import Access, Viewer, create_app
from healthscore.warehouse import bulk_upsert, make_engine, upgrade
from healthscore.warehouse.models import (
    AccountSignals,
    BatchReconciliation,
    HealthScore,
    PlaybookEvent,
    Quarantine,
    ScoreOverride,
    landing_table,
)
from healthscore.warehouse.registry import register_model_version

ADMIN_URL = os.environ.get("HEALTHSCORE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).parent / "results" / "ui_pages.txt"
LATEST = date(2026, 9, 30)
SEGMENTS = np.array(["smb", "mid_market", "enterprise"], dtype=object)
STAGES = np.array(["onboarding", "adoption", "maturity"], dtype=object)
PLAYBOOKS = np.array(["engagement_sequence", "executive_escalation", "renewal_rescue", "expansion_motion"],
                     dtype=object)
TARGET_S = 1.0


@contextmanager
def scratch_database() -> Iterator[str]:
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hs_bench_ui_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def score_dates(days: int) -> list[date]:
    """The latest date, the day before, 30 days before, then evenly back to 90 days."""
    picked = {LATEST, LATEST - timedelta(days=1), LATEST - timedelta(days=30)}
    for offset in np.linspace(2, 90, max(days - 3, 0)).round().astype(int):
        picked.add(LATEST - timedelta(days=int(offset)))
    return sorted(picked)[-days:] if len(picked) >= days else sorted(picked)


def seed(engine: sa.Engine, accounts: int, days: int, rng: np.random.Generator) -> dict[str, int]:
    model = load_model_config()
    register_model_version(engine, model)
    ids = np.array([str(1_000_000_000 + i) for i in range(accounts)], dtype=object)
    segment = SEGMENTS[rng.integers(0, 3, accounts)]
    stage = STAGES[rng.integers(0, 3, accounts)]
    arr = (rng.lognormal(10, 1.2, accounts) * 100).astype(np.int64)
    base = rng.uniform(20, 95, accounts)
    drift = rng.normal(0, 0.25, accounts)
    counts: dict[str, int] = {}
    dims = list(model.dimensions)
    with engine.begin() as conn:
        rows = []
        for day in score_dates(days):
            back = (LATEST - day).days
            score = np.clip(base - drift * back + rng.normal(0, 1.5, accounts), 0, 100).round(1)
            bands = assign_bands(pd.Series(score), pd.Series(segment), model).to_numpy(dtype=object)
            cells = np.array(VALUE_SEGMENTS, dtype=object)[rng.integers(0, 7, accounts)]
            for i in range(accounts):
                rows.append({
                    "account_id": ids[i], "as_of_date": day, "model_version": model.version, "score": float(score[i]),
                    "band": bands[i], "raw_score": float(score[i]), "confidence": 0.9,
                    "dimension_scores": {d: float(score[i]) for d in dims},
                    "contributions": {d: round(float(score[i]) / len(dims), 1) for d in dims},
                    "trend_30d": round(float(-drift[i] * 30), 1), "momentum": "down" if drift[i] > 0.17 else
                    "up" if drift[i] < -0.17 else "flat",
                    "attribution": [{"dimension": dims[0], "delta": round(float(-drift[i] * 10), 1)}],
                    "segment": segment[i], "value_segment": cells[i], "lifecycle_stage": stage[i],
                    "is_shadow": False, "config_hash": model.config_hash,
                    "computed_at": datetime.combine(day, datetime.min.time(), UTC),
                })
            if len(rows) >= 200_000:
                counts["health_scores"] = counts.get("health_scores", 0) + bulk_upsert(
                    conn, HealthScore, rows, ["account_id", "as_of_date", "model_version"])
                rows = []
        if rows:
            counts["health_scores"] = counts.get("health_scores", 0) + bulk_upsert(
                conn, HealthScore, rows, ["account_id", "as_of_date", "model_version"])
        signals = [{"account_id": ids[i], "as_of_date": day, "segment": segment[i], "plan": "growth",
                    "lifecycle_stage": stage[i], "tenure_days": 400, "arr_cents": int(arr[i]),
                    "renewal_date": LATEST + timedelta(days=int(rng.integers(1, 365))), "owner_id": "70000001",
                    "signals": {"active_user_pct": 50.0}, "dimension_sources": {d: {"status": "ok", "confidence": 1.0}
                                                                                for d in dims}}
                   for day in (LATEST, LATEST - timedelta(days=30)) for i in range(accounts)]
        counts["account_signals"] = bulk_upsert(conn, AccountSignals, signals, ["account_id", "as_of_date"])
        companies = [{"record_id": ids[i], "batch_date": LATEST, "payload": json.dumps(
            {"id": ids[i], "properties": {"name": f"Company {i}"}}), "payload_sha256": "x"} for i in range(accounts)]
        counts["raw_hubspot_companies"] = bulk_upsert(conn, landing_table("hubspot", "companies"), companies,
                                                      ["record_id", "batch_date"])
        picked = rng.choice(accounts, size=accounts // 5, replace=False)
        events = [{"idempotency_key": f"{ids[i]}|{PLAYBOOKS[i % 4]}|{LATEST - timedelta(days=int(i % 60))}",
                   "account_id": ids[i], "playbook": PLAYBOOKS[i % 4],
                   "crossing_date": LATEST - timedelta(days=int(i % 60)), "model_version": model.version,
                   "severity": "medium", "owner_id": "70000001", "status": ("sent", "pending", "suppressed")[i % 3],
                   "payload": {"account_id": ids[i]}} for i in picked]
        counts["playbook_events"] = bulk_upsert(conn, PlaybookEvent, events, ["idempotency_key"])
        quarantined = [{"run_id": "bench", "batch_date": LATEST, "source": "stripe", "object": "invoices",
                        "record_id": f"in_{i}", "expectation": "expect_column_values_to_not_be_null(amount)",
                        "reason": "amount is null"} for i in range(accounts // 20)]
        counts["quarantine"] = bulk_upsert(conn, Quarantine, quarantined,
                                           ["batch_date", "source", "object", "record_id", "expectation"])
        recon = [{"batch_date": LATEST, "source": s, "object": o, "run_id": "bench", "landed": accounts,
                  "accepted": accounts - (accounts // 20 if o == "invoices" else 0),
                  "quarantined": accounts // 20 if o == "invoices" else 0}
                 for s, o in (("hubspot", "companies"), ("stripe", "invoices"), ("zendesk", "tickets"))]
        counts["batch_reconciliation"] = bulk_upsert(conn, BatchReconciliation, recon, ["batch_date", "source", "object"])
        overrides = [{"account_id": ids[i], "override_band": "Healthy", "reason": "bench", "author": "bench",
                      "expires_on": LATEST + timedelta(days=30)} for i in picked[:1000]]
        conn.execute(sa.insert(ScoreOverride), overrides)
        counts["score_overrides"] = len(overrides)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=10, help="scored dates per account (history depth)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(3)
    with scratch_database() as url:
        upgrade(url)
        engine = make_engine(url)
        started = time.perf_counter()
        counts = seed(engine, args.accounts, args.days, rng)
        seeded_s = time.perf_counter() - started
        with engine.connect() as conn:
            risky = conn.execute(sa.text(
                "select h.account_id from health_scores h join account_signals s on s.account_id = h.account_id "
                "and s.as_of_date = h.as_of_date where h.as_of_date = :d and h.band in ('At Risk', 'Critical') "
                "order by s.arr_cents desc limit 1"), {"d": LATEST}).scalar()
        engine.dispose()

        def allow(request: Request) -> None:
            return None

        app = create_app(Access(allow, allow, lambda: Viewer("bench", True), b"bench"),
                         settings=lambda: Settings.from_env(warehouse_url=url, data_dir=Path("/nonexistent")))
        client = TestClient(app)
        pages = ["/", "/at-risk", f"/accounts/{risky}", "/playbooks", "/data-quality", "/model"]
        figures = []
        for page in pages:
            response = client.get(page)
            assert response.status_code == 200, (page, response.status_code, response.text[:300])
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                client.get(page)
                times.append(time.perf_counter() - t0)
            figures.append((page, statistics.median(times), max(times), len(response.content)))
        client.close()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    load = os.getloadavg()
    lines = [
        f"bench_ui_pages: {args.accounts} accounts x {len(score_dates(args.days))} scored dates on PostgreSQL",
        f"machine {platform.node()} ({os.cpu_count()} cores), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}, "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
        + (" (shared machine: other jobs were running)" if load[0] > (os.cpu_count() or 1) else ""),
        f"seeded {counts} in {seeded_s:.0f} s",
        f"{'page':<28} {'median s':>9} {'worst s':>8} {'bytes':>8}  target < {TARGET_S:g} s",
    ]
    for page, median, worst, size in figures:
        label = "/accounts/<largest at-risk>" if page.startswith("/accounts/") else page
        lines.append(f"{label:<28} {median:>9.3f} {worst:>8.3f} {size:>8}  {'ok' if median < TARGET_S else 'SLOW'}")
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(text + "\n\n")


if __name__ == "__main__":
    main()
