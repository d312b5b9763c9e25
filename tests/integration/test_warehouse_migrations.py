"""Warehouse schema: Alembic chain, models == migrations, constraints, URL resolution, engine setup.

Runs on SQLite and on a fresh PostgreSQL database per test (``warehouse_url`` fixture).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.orm import Session

from healthscore.settings import Settings
from healthscore.warehouse import (
    LANDING_OBJECTS,
    Base,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    resolve_warehouse_url,
    upgrade,
)
from healthscore.warehouse.migrate import PG_MIGRATION_LOCK_KEY
from healthscore.warehouse.models import HealthScore, ModelVersion, landing_table

MODEL_TABLES = set(Base.metadata.tables)


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _diff(url: str, metadata: sa.MetaData) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return compare_metadata(ctx, metadata)
    finally:
        engine.dispose()


def test_expected_tables_are_modelled() -> None:
    expected = {
        "source_cursors",
        "raw_mixpanel_usage_daily",
        "extract_runs",
        "account_signals",
        "model_versions",
        "health_scores",
        "score_overrides",
        "playbook_events",
        "crm_publications",
        "crm_publication_errors",
        "notifications_outbox",
        "notification_deliveries",
        "quality_results",
        "quarantine",
        "batch_reconciliation",
        "billing_subscription_states",
        "renewal_outcomes",
        "accuracy_reports",
    } | {f"raw_{source}_{obj}" for source, obj in LANDING_OBJECTS}
    assert expected == MODEL_TABLES


def test_upgrade_downgrade_upgrade_chain(warehouse_url: str) -> None:
    assert current_revision(warehouse_url) is None
    assert _tables(warehouse_url) == set()

    upgrade(warehouse_url)
    assert current_revision(warehouse_url) == head_revision()
    assert _tables(warehouse_url) == MODEL_TABLES

    downgrade(warehouse_url, "base")
    assert current_revision(warehouse_url) is None
    assert _tables(warehouse_url) == set()

    upgrade(warehouse_url, "head")
    assert current_revision(warehouse_url) == head_revision()
    assert _tables(warehouse_url) == MODEL_TABLES
    upgrade(warehouse_url)  # already at head: a no-op, not an error
    assert current_revision(warehouse_url) == head_revision()


def test_models_and_migrations_agree(warehouse_url: str) -> None:
    upgrade(warehouse_url)
    assert _diff(warehouse_url, Base.metadata) == []

    # Control: the comparison really looks (an extra model column must show up as a difference).
    probe = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(probe)
    probe.tables["health_scores"].append_column(sa.Column("not_migrated", sa.Text()))
    diffs = _diff(warehouse_url, probe)
    assert [(d[0], d[3].name) for d in diffs] == [("add_column", "not_migrated")]


def test_constraint_names_are_deterministic(warehouse_url: str) -> None:
    upgrade(warehouse_url)
    engine = make_engine(warehouse_url)
    try:
        insp = sa.inspect(engine)
        assert insp.get_pk_constraint("health_scores")["name"] == "pk_health_scores"
        uniques = {u["name"] for u in insp.get_unique_constraints("health_scores")}
        assert uniques == {"uq_health_scores_account_id_as_of_date_model_version"}
        fks = {fk["name"] for fk in insp.get_foreign_keys("health_scores")}
        assert fks == {
            "fk_health_scores_model_version_model_versions",
            "fk_health_scores_override_id_score_overrides",
        }
        for source, obj in LANDING_OBJECTS:
            table = landing_table(source, obj).name
            pk = insp.get_pk_constraint(table)
            assert (pk["name"], pk["constrained_columns"]) == (f"pk_{table}", ["record_id", "batch_date"])
            assert {ix["name"] for ix in insp.get_indexes(table)} == {f"ix_{table}_batch_date"}
    finally:
        engine.dispose()


def _model_version(version: str, role: str = "candidate") -> ModelVersion:
    return ModelVersion(version=version, config_hash="h-" + version, config_yaml="weights: {}", role=role)


def test_health_scores_unique_per_account_date_version(warehouse_url: str) -> None:
    upgrade(warehouse_url)
    engine = make_engine(warehouse_url)
    day = dt.date(2026, 3, 1)
    try:
        with Session(engine) as session, session.begin():
            session.add_all([_model_version("v1"), _model_version("v2")])
        with Session(engine) as session, session.begin():
            session.add(HealthScore(account_id="a1", as_of_date=day, model_version="v1", score=70.0))
            # Same account and day under another model version is a separate row (shadow scoring).
            session.add(HealthScore(account_id="a1", as_of_date=day, model_version="v2", score=64.0))
        with pytest.raises(sa.exc.IntegrityError), Session(engine) as session, session.begin():
            session.add(HealthScore(account_id="a1", as_of_date=day, model_version="v1", score=71.0))
        with Session(engine) as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(HealthScore)) == 2
    finally:
        engine.dispose()


def test_integrity_rules(warehouse_url: str) -> None:
    upgrade(warehouse_url)
    engine = make_engine(warehouse_url)
    day = dt.date(2026, 3, 1)
    try:
        with Session(engine) as session, session.begin():
            session.add(_model_version("v1", role="champion"))
        bad = [
            _model_version("v2", role="champion"),  # a second champion
            _model_version("v3", role="king"),  # outside the role vocabulary
            HealthScore(account_id="a", as_of_date=day, model_version="nope", score=50.0),  # FK
            HealthScore(account_id="a", as_of_date=day, model_version="v1", score=None),  # no reason
            HealthScore(account_id="a", as_of_date=day, model_version="v1", score=101.0),  # range
        ]
        for obj in bad:
            with pytest.raises(sa.exc.IntegrityError), Session(engine) as session, session.begin():
                session.add(obj)
        with Session(engine) as session, session.begin():
            session.add(
                HealthScore(account_id="a", as_of_date=day, model_version="v1", unscored_reason="no data")
            )
    finally:
        engine.dispose()


def test_timestamps_are_aware_utc_and_json_null_is_sql_null(warehouse_url: str) -> None:
    upgrade(warehouse_url)
    engine = make_engine(warehouse_url)
    plus_two = dt.timezone(dt.timedelta(hours=2))
    promoted = dt.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=plus_two)
    try:
        with Session(engine) as session, session.begin():
            session.add(ModelVersion(version="v1", config_hash="h", config_yaml="x", promoted_at=promoted))
        with Session(engine) as session:
            row = session.get(ModelVersion, "v1")
            assert row is not None
            assert row.promoted_at == promoted
            assert row.promoted_at.utcoffset() == dt.timedelta(0)
            assert row.created_at.tzinfo is not None and row.created_at.utcoffset() == dt.timedelta(0)
            assert abs(row.created_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
            assert row.metrics is None
            assert session.scalar(sa.select(sa.func.count()).where(ModelVersion.metrics.is_(None))) == 1
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------- URL resolution


def test_explicit_url_wins_and_postgres_scheme_is_normalised(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HEALTHSCORE_WAREHOUSE", "postgresql://airflow@db:5432/from_airflow")
    settings = Settings(data_dir=tmp_path, warehouse_url="postgres://me:s3cret@host:5433/explicit")
    assert resolve_warehouse_url(settings) == "postgresql+psycopg://me:s3cret@host:5433/explicit"
    sqlite = Settings(data_dir=tmp_path, warehouse_url="sqlite:////tmp/x.db")
    assert resolve_warehouse_url(sqlite) == "sqlite:////tmp/x.db"


def test_airflow_connection_beats_default(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_HEALTHSCORE_WAREHOUSE", "postgresql://hs:p%40ss@db.internal:6543/health?sslmode=require"
    )
    url = resolve_warehouse_url(Settings(data_dir=tmp_path / "data"))
    assert sa.engine.make_url(url) == sa.engine.make_url(
        "postgresql+psycopg://hs:p%40ss@db.internal:6543/health?sslmode=require"
    )
    assert not (tmp_path / "data").exists()

    monkeypatch.setenv("AIRFLOW_CONN_HEALTHSCORE_WAREHOUSE", "postgres://u@h/db")
    assert resolve_warehouse_url(Settings(data_dir=tmp_path)) == "postgresql+psycopg://u@h/db"


def test_default_is_sqlite_in_data_dir(monkeypatch, tmp_path, caplog) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_HEALTHSCORE_WAREHOUSE", raising=False)
    settings = Settings(data_dir=tmp_path / "nested" / "data")
    with caplog.at_level(logging.DEBUG, logger="healthscore.warehouse.engine"):
        url = resolve_warehouse_url(settings)
    assert url == settings.default_sqlite_url
    assert (tmp_path / "nested" / "data").is_dir()
    assert any("healthscore_warehouse" in r.getMessage() for r in caplog.records)


def test_sqlite_engine_pragmas(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        # DDL is transactional too (SQLAlchemy emits BEGIN): a failed unit leaves nothing behind.
        with pytest.raises(RuntimeError), engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            raise RuntimeError("boom")
        assert "t" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_postgres_engine_uses_psycopg3(postgres_url: str) -> None:
    engine = make_engine(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping
    finally:
        engine.dispose()


def test_upgrade_waits_for_a_concurrent_migrator(warehouse_url: str) -> None:
    """Tasks starting at once may all call upgrade(): each waits for the database-wide migration lock
    (advisory lock on PostgreSQL, the write lock on SQLite) instead of racing; the later ones then find
    the schema at head and do nothing (see the idempotent upgrade in the chain test)."""
    holder = make_engine(warehouse_url)
    try:
        with holder.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK_KEY})
            else:
                conn.exec_driver_sql("SELECT 1")  # starts the BEGIN IMMEDIATE: holds the write lock
            with ThreadPoolExecutor(max_workers=1) as pool:
                waiting = pool.submit(upgrade, warehouse_url)
                time.sleep(0.5)
                assert not waiting.done()
                conn.commit()  # the other migrator finishes
                waiting.result(timeout=30)
    finally:
        holder.dispose()
    assert current_revision(warehouse_url) == head_revision()
    assert _tables(warehouse_url) == MODEL_TABLES
