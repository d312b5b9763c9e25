"""Throughput of ``bulk_upsert`` into ``health_scores`` on PostgreSQL, against a raw COPY of the same rows.

Prints figures and ratios; asserts nothing (timings depend on the machine). Target: the upsert path
(normalise -> COPY into a stage -> INSERT ... SELECT ... ON CONFLICT) keeps >= 0.5 of raw COPY throughput.

    .venv/bin/python bench/bench_archive_upsert.py                 # 200k rows
    .venv/bin/python bench/bench_archive_upsert.py --rows 1000000  # 1M rows

A throw-away database is created on HEALTHSCORE_TEST_PG_ADMIN_URL's server (default: local trust auth)
and dropped afterwards, unless --url names an existing database (its health_scores table is truncated).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import sqlalchemy as sa

from healthscore.warehouse import bulk_upsert, dumps_json, make_engine, upgrade
from healthscore.warehouse.models import HealthScore, ModelVersion

ADMIN_URL = os.environ.get(
    "HEALTHSCORE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
KEYS = ["account_id", "as_of_date", "model_version"]
DIMENSIONS = ("usage", "engagement", "value", "relationship", "financial")


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh database for the run, dropped afterwards."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hs_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def make_frame(n: int, seed: int = 7) -> pd.DataFrame:
    """n health_scores-shaped rows: n/30 accounts x 30 days, JSON breakdowns, some unscored rows."""
    rng = np.random.default_rng(seed)
    days = 30
    accounts = max(1, -(-n // days))
    idx = np.arange(n)
    score = rng.uniform(0, 100, n).round(2)
    unscored = rng.random(n) < 0.02
    dims = rng.uniform(0, 100, (n, len(DIMENSIONS))).round(2)
    base = dt.date(2026, 1, 1)
    frame = pd.DataFrame(
        {
            "account_id": [f"acc-{i:07d}" for i in idx % accounts],
            "as_of_date": [base + dt.timedelta(days=int(d)) for d in idx // accounts],
            "model_version": "v1",
            "score": np.where(unscored, np.nan, score),
            "unscored_reason": np.where(unscored, "insufficient data", None),
            "band": np.select(
                [score >= 75, score >= 50, score >= 25], ["Healthy", "Moderate", "At Risk"], "Critical"
            ),
            "raw_score": score,
            "confidence": rng.uniform(0.5, 1, n).round(3),
            "dimension_scores": [dict(zip(DIMENSIONS, row, strict=True)) for row in dims.tolist()],
            "contributions": [
                {
                    d: round(v * w, 3)
                    for d, v, w in zip(DIMENSIONS, row, (0.35, 0.25, 0.2, 0.15, 0.05), strict=True)
                }
                for row in dims.tolist()
            ],
            "trend_30d": rng.normal(0, 5, n).round(2),
            "trend_90d": rng.normal(0, 8, n).round(2),
            "trend_365d": rng.normal(0, 12, n).round(2),
            "momentum": rng.choice(["up", "flat", "down"], n),
            "projection_90d": rng.uniform(0, 100, n).round(2),
            "segment": rng.choice(["enterprise", "mid_market", "smb"], n),
            "lifecycle_stage": rng.choice(["onboarding", "adoption", "maturity", "renewal"], n),
            "days_in_stage": rng.integers(0, 400, n),
            "is_shadow": False,
            "config_hash": "cfg-0123456789abcdef",
            "computed_at": pd.Timestamp("2026-02-01T02:00:00Z"),
        }
    )
    return frame


def copy_tuples(frame: pd.DataFrame) -> tuple[list[str], list[tuple]]:
    """The same rows as COPY-ready tuples (JSON pre-serialised, NaN -> None): the baseline's input."""
    json_cols = {"dimension_scores", "contributions"}
    columns = list(frame.columns)
    values = []
    for name in columns:
        series = frame[name]
        if name in json_cols:
            values.append([dumps_json(v) for v in series])
        elif name == "computed_at":
            values.append(list(series.dt.to_pydatetime()))
        else:
            values.append(series.astype(object).where(series.notna(), None).tolist())
    return columns, list(zip(*values, strict=True))


def raw_copy(engine: sa.Engine, columns: list[str], rows: list[tuple], *, binary: bool) -> None:
    """COPY straight into health_scores: the ceiling any loader can reach for these rows."""
    with engine.begin() as conn:
        driver = conn.connection.driver_connection
        cols = ", ".join(columns)
        fmt = " (FORMAT BINARY)" if binary else ""
        found = dict(
            conn.exec_driver_sql(
                "SELECT attname, atttypid::int FROM pg_attribute "
                "WHERE attrelid = 'health_scores'::regclass AND attnum > 0"
            ).all()
        )
        with driver.cursor() as cur, cur.copy(f"COPY health_scores ({cols}) FROM STDIN{fmt}") as copy:
            if binary:
                copy.set_types([25 if found[c] == 114 else found[c] for c in columns])  # json as text
            for row in rows:
                copy.write_row(row)


def truncate(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE health_scores")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(url: str, n: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(ModelVersion).from_select(
                ["version", "config_hash", "config_yaml"],
                sa.select(sa.literal("v1"), sa.literal("cfg"), sa.literal("x")).where(
                    ~sa.exists().where(ModelVersion.version == "v1")
                ),
            )
        )
    truncate(engine)

    t0 = time.perf_counter()
    frame = make_frame(n)
    columns, tuples = copy_tuples(frame)
    records = frame.to_dict("records")
    print(f"rows: {n:,}  (generated in {time.perf_counter() - t0:.1f}s; {len(columns)} columns, 2 JSON)")

    copy_text_s = timed(lambda: raw_copy(engine, columns, tuples, binary=False))
    truncate(engine)
    copy_s = timed(lambda: raw_copy(engine, columns, tuples, binary=True))
    truncate(engine)

    def upsert(rows: object) -> Callable[[], None]:
        def go() -> None:
            with engine.begin() as conn:
                assert bulk_upsert(conn, HealthScore, rows, KEYS) == n  # type: ignore[arg-type]

        return go

    insert_df_s = timed(upsert(frame))
    update_df_s = timed(upsert(frame))  # every key conflicts: the DO UPDATE path
    truncate(engine)
    insert_dicts_s = timed(upsert(records))
    engine.dispose()

    def line(label: str, seconds: float) -> None:
        print(
            f"  {label:<44} {seconds:7.2f}s {n / seconds:>10,.0f} rows/s"
            f"   ratio vs binary COPY {copy_s / seconds:4.2f}, vs text COPY {copy_text_s / seconds:4.2f}"
        )

    print("  baselines get pre-built tuples (JSON already serialised); bulk_upsert starts from the rows")
    print(f"  {'raw COPY text format':<44} {copy_text_s:7.2f}s {n / copy_text_s:>10,.0f} rows/s")
    print(f"  {'raw COPY binary format':<44} {copy_s:7.2f}s {n / copy_s:>10,.0f} rows/s")
    line("bulk_upsert DataFrame, all inserts", insert_df_s)
    line("bulk_upsert DataFrame, all updates", update_df_s)
    line("bulk_upsert list[dict], all inserts", insert_dicts_s)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000, help="rows to load (default 200000)")
    parser.add_argument("--url", help="existing PostgreSQL database to use instead of a scratch one")
    args = parser.parse_args()
    if args.url:
        run(args.url, args.rows)
    else:
        with scratch_database() as url:
            run(url, args.rows)


if __name__ == "__main__":
    main()
