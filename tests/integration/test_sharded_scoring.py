"""Sharded scoring gives the one-shard result: the same warehouse rows and the same Parquet bytes.

Two SQLite warehouses get the same two dates of stored signals (a random portfolio of ``test_scoring``:
every segment, tenures across onboarding and its exit gate, missing signals) for a weighted-average champion
and a percentile-rank challenger (its ranks read the whole day's accounts). One warehouse is scored as one
shard, the other as three (the task entry points ``run_score`` per shard, then ``run_combine_shards``); the
second date reads the first as history (trends, momentum, attribution, stage runs).
"""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from healthscore.config import default_model_text, model_config_from_dict
from healthscore.pipeline import tasks
from healthscore.pipeline.score import combine_parquet_parts, shard_of
from healthscore.pipeline.signals import COMPUTED_SIGNALS, store_signals
from healthscore.warehouse import make_engine, upgrade
from healthscore.warehouse.models import HealthScore
from healthscore.warehouse.registry import register_model_version
from tests.unit.test_scoring import random_signals

DAYS = (dt.date(2025, 5, 31), dt.date(2025, 6, 30))
ACCOUNTS = 90


def _models():
    data = yaml.safe_load(default_model_text())
    champion = model_config_from_dict(data, computable_signals=COMPUTED_SIGNALS)
    data["version"] = "v9-rank"
    data["scoring"]["method"] = "percentile_rank"
    data["scoring"]["percentile_rank"]["min_peers"] = 5
    return champion, model_config_from_dict(data, computable_signals=COMPUTED_SIGNALS)


def _signals(model, day: dt.date, seed: int) -> pd.DataFrame:
    frame = random_signals(model, ACCOUNTS, seed=seed, missing=0.08)
    frame["tenure_days"] = random_signals(model, ACCOUNTS, seed=0)["tenure_days"] + (day - DAYS[0]).days
    frame["as_of_date"] = day
    frame["lifecycle_stage"] = None
    frame["dimension_sources"] = [{} for _ in range(ACCOUNTS)]
    return frame


def _context(day: dt.date) -> dict:
    end = datetime.combine(day + timedelta(days=1), time(), UTC)
    return {"data_interval_start": end - timedelta(days=1), "data_interval_end": end, "run_id": f"shard-{day}",
            "logical_date": end - timedelta(days=1)}


def _run(root: Path, shards: int, monkeypatch) -> tuple[pd.DataFrame, dict[str, bytes]]:
    """Score both dates in a fresh warehouse under ``root`` with ``shards`` shards, as the DAG's tasks do."""
    root.mkdir()
    url = f"sqlite:///{root / 'warehouse.db'}"
    upgrade(url)
    monkeypatch.setenv("HEALTHSCORE_WAREHOUSE_URL", url)
    monkeypatch.setenv("HEALTHSCORE_DATA_DIR", str(root))
    monkeypatch.setenv("HEALTHSCORE_SCORE_SHARDS", str(shards))
    engine = make_engine(url)
    champion, challenger = _models()
    files: dict[str, bytes] = {}
    try:
        register_model_version(engine, champion)
        register_model_version(engine, challenger, role="challenger")
        for seed, day in enumerate(DAYS):
            store_signals(engine, _signals(champion, day, seed=20 + seed))
            plan = tasks.run_score_plan(_context(day))
            assert plan == [{"shard": i, "shards": shards} for i in range(shards)]
            results = [tasks.run_score(_context(day), **kwargs) for kwargs in plan]
            summary = tasks.run_combine_shards(_context(day), results)
            assert summary["rows"] == {champion.version: ACCOUNTS, challenger.version: ACCOUNTS}
            for version in (champion.version, challenger.version):
                path = root / "archive" / "health_scores" / f"as_of_date={day}" / f"model_version={version}"
                files[f"{day}/{version}"] = (path / "scores.parquet").read_bytes()
        with engine.connect() as conn:
            rows = pd.DataFrame(conn.execute(sa.select(HealthScore.__table__)).mappings().all())
    finally:
        engine.dispose()
    rows = rows.drop(columns=["id"]).sort_values(["as_of_date", "model_version", "account_id"], ignore_index=True)
    return rows, files


def test_three_shards_write_what_one_shard_writes(tmp_path, monkeypatch) -> None:
    one_rows, one_files = _run(tmp_path / "one", 1, monkeypatch)
    three_rows, three_files = _run(tmp_path / "three", 3, monkeypatch)
    assert len(one_rows) == 2 * 2 * ACCOUNTS
    assert one_rows["score"].notna().mean() > 0.7 and one_rows["trend_30d"].notna().any()  # history was read
    assert one_rows["attribution"].notna().any() and one_rows["stage_gate_blocked"].any()
    pd.testing.assert_frame_equal(three_rows, one_rows)
    assert three_files.keys() == one_files.keys()
    for key, content in one_files.items():
        assert three_files[key] == content, key
    # the percentile-rank challenger was scored whole (its ranks span the day), the champion per shard
    parts = sorted((tmp_path / "three" / "archive" / "_shard_parts").rglob("*.parquet"))
    per_model = {v: [p.name for p in parts if f"model_version={v}" in str(p) and DAYS[1].isoformat() in str(p)]
                 for v in ("v1", "v9-rank")}
    assert per_model["v9-rank"] == ["part-00000-of-00003.parquet"]
    assert len(per_model["v1"]) == 3


def test_a_shard_is_a_stable_hash_of_the_account_not_its_position() -> None:
    ids = [f"acc-{i}" for i in range(300)]
    shards = shard_of(ids, 4)
    assert shard_of(list(reversed(ids)), 4).tolist() == list(reversed(shards.tolist()))
    assert shard_of(ids[:10], 4).tolist() == shards[:10].tolist()  # independent of the rest of the portfolio
    assert shard_of(["acc-0", "acc-1", "x'); DROP TABLE t;--"], 4).tolist() == [3, 1, 2]  # CRC-32: fixed across runs
    assert np.bincount(shards, minlength=4).min() > 50
    assert (shard_of(ids, 1) == 0).all()
    with pytest.raises(ValueError):
        shard_of(ids, 0)


def test_combine_refuses_missing_parts(tmp_path) -> None:
    from healthscore.batch import Batch

    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        register_model_version(engine, _models()[0])
        batch = Batch(DAYS[0], datetime.combine(DAYS[0], time(), UTC), "x")
        with pytest.raises(LookupError, match="shard part file"):
            combine_parquet_parts(engine, batch, f"file://{tmp_path / 'archive'}", 3, {"v1": 10})
        assert combine_parquet_parts(engine, batch, f"file://{tmp_path / 'archive'}", 1) == {}
    finally:
        engine.dispose()
