"""Shared fixtures.

PostgreSQL tests use a fresh throw-away database per test on the server named by
HEALTHSCORE_TEST_PG_ADMIN_URL (default: the local trust-auth server, database ``test``).
With CI=true an unreachable server is a failure, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_ADMIN_URL = os.environ.get(
    "HEALTHSCORE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def _pg_admin_engine():
    import sqlalchemy as sa

    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def _pg_unavailable_reason() -> str | None:
    import sqlalchemy as sa

    try:
        engine = _pg_admin_engine()
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc.__class__.__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def _pg_available() -> None:
    reason = _pg_unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true requires PostgreSQL. {reason}")
    pytest.skip(reason)


@pytest.fixture
def postgres_url(_pg_available) -> Iterator[str]:
    """URL of a brand-new empty PostgreSQL database, dropped after the test."""
    import sqlalchemy as sa

    name = f"hs_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine()
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where datname = :name and pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request) -> str:
    """Runs a test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory):
    """A seeded warehouse and an ``airflow api-server`` serving the Customer Health plugin (tests.ui.fixtures)."""
    from tests.ui.fixtures import ui_server_for

    with ui_server_for(tmp_path_factory.mktemp("ui")) as server:
        yield server
