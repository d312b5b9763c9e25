"""A landed batch validated in chunks gives the verdict it gets in one piece, row for row.

The validate tasks read a batch ``HEALTHSCORE_VALIDATION_CHUNK_ROWS`` rows at a time (bounded memory at 100k
accounts). One faulty sandbox day is landed once, then validated with the default chunk size (every object in
one piece here) and with 7-row chunks: ``quality_results``, ``quarantine`` and ``batch_reconciliation`` must be
the same rows in the same order, on SQLite and PostgreSQL (a streamed server-side cursor there).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from healthscore.demo import pipeline_env
from healthscore.pipeline import tasks, validate
from healthscore.quality import gate
from healthscore.sources import registry
from healthscore.sources.schemas import flatten
from healthscore.warehouse.models import BatchReconciliation, QualityResult, Quarantine, landing_table
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

pytestmark = pytest.mark.slow

END = datetime(2026, 9, 10, tzinfo=UTC)
CONTEXT = {"data_interval_end": END, "logical_date": END, "run_id": "quality-chunks"}
ADMIN = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}
TINY = 7
VALIDATED = [s.name for s in registry.sources()]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    state = build_state(SandboxOptions(seed=5, accounts=40, rate_limit_scale=1000))
    with ThreadedSandbox(state) as server:
        requests.post(f"{server.url}/_sandbox/faults", headers=ADMIN, json={"seed": 3, "bad_record_rate": 0.08},
                      timeout=5).raise_for_status()
        yield server


def verdict(url: str) -> dict[str, list[dict]]:
    """The three verdict tables in insertion order, without their ids and clocks."""
    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        for model in (QualityResult, Quarantine, BatchReconciliation):
            table = model.__table__
            columns = [c for c in table.columns if c.name not in ("id", "created_at")]
            order = [table.c.id] if "id" in table.c else columns[:3]
            out[table.name] = [dict(r) for r in conn.execute(sa.select(*columns).order_by(*order)).mappings()]
    engine.dispose()
    return out


def test_tiny_chunks_give_the_one_piece_verdict(sandbox, warehouse_url, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in pipeline_env(sandbox.url, warehouse_url, tmp_path / "data",
                                   HEALTHSCORE_MIXPANEL_BACKFILL_DAYS="2").items():
        monkeypatch.setenv(key, value)
    tasks.run_prepare(CONTEXT)
    for spec in registry.sources():
        tasks.run_extract(spec.name, spec.conn_id, CONTEXT)

    merged: list[str] = []
    real_merge = gate.merge

    def spy(outcomes):
        merged.append(f"{outcomes[0].suite} x{len(outcomes)}")
        return real_merge(outcomes)

    monkeypatch.setattr(gate, "merge", spy)
    whole = {s: tasks.run_validate(s, CONTEXT) for s in VALIDATED}
    assert merged == [], "at the default chunk size every object of this small world is one piece"
    one_piece = verdict(warehouse_url)

    monkeypatch.setenv("HEALTHSCORE_VALIDATION_CHUNK_ROWS", str(TINY))
    chunked = {s: tasks.run_validate(s, CONTEXT) for s in VALIDATED}
    assert any(name.startswith("stripe.invoices") for name in merged), merged
    in_chunks = verdict(warehouse_url)

    assert one_piece["quarantine"], "the faulty day quarantines rows"
    assert any(r["landed"] > 3 * TINY for r in one_piece["batch_reconciliation"])
    for table, rows in one_piece.items():
        assert in_chunks[table] == rows, table
    strip = ("docs_path",)
    assert [[{k: v for k, v in s.items() if k not in strip} for s in ss] for ss in chunked.values()] == \
        [[{k: v for k, v in s.items() if k not in strip} for s in ss] for ss in whole.values()]


def test_landed_frames_are_the_batch_flattened_in_sorted_disjoint_runs(sandbox, sqlite_url, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in pipeline_env(sandbox.url, sqlite_url, tmp_path / "data").items():
        monkeypatch.setenv(key, value)
    tasks.run_prepare(CONTEXT)
    tasks.run_extract("stripe", registry.source("stripe").conn_id, CONTEXT)
    engine = sa.create_engine(sqlite_url)
    table = landing_table("stripe", "invoices")
    monkeypatch.setattr(validate, "DECODE_ROWS", 3)  # frames concatenated from several decoded pieces
    with engine.connect() as conn:
        batch_date = conn.execute(sa.select(sa.func.max(table.c.batch_date))).scalar_one()
        payloads = conn.execute(sa.select(table.c.payload).where(table.c.batch_date == batch_date)
                                .order_by(table.c.record_id)).scalars().all()
        frames = list(validate.landed_frames(conn, "stripe", "invoices", batch_date, TINY))
        some = {str(json.loads(p)["id"]) for p in payloads[::5]}
        kept = validate.landed_payloads(conn, "stripe", "invoices", batch_date, some)
    engine.dispose()
    assert len(payloads) > 2 * TINY
    assert [len(f) for f in frames[:-1]] == [TINY] * (len(frames) - 1) and 0 < len(frames[-1]) <= TINY
    whole = flatten("stripe", "invoices", [json.loads(p) for p in payloads])
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole)
    assert kept == {str(r["id"]): json.dumps(r, sort_keys=True, default=str)
                    for r in map(json.loads, payloads[::5])}
