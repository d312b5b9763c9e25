"""Programmatic Alembic: the only way the warehouse schema changes.

The migration scripts live inside the package (``warehouse/migrations``) so an installed healthscore can
upgrade its own warehouse, e.g. from a DAG task or ``healthscore`` CLI, without a checkout.
Each command runs in one transaction: a failing migration leaves the previous schema in place
(PostgreSQL and, thanks to the engine's explicit BEGIN, SQLite too).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from healthscore.warehouse.engine import make_engine, normalize_url

PACKAGE_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = PACKAGE_DIR / "alembic.ini"
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"

# Taken (transaction-scoped) by env.py on PostgreSQL so concurrent upgrades queue instead of racing.
# Any constant works; it only has to be the same for every process migrating this database.
PG_MIGRATION_LOCK_KEY = 0x4845414C5448  # "HEALTH"

# Alembic keeps its migration context in module globals (alembic.context / alembic.op), so two commands
# must never run at once in one process. Across processes the database-side locks take over.
_ALEMBIC_LOCK = threading.Lock()


def alembic_config(url: str | None = None) -> Config:
    """Alembic ``Config`` pointing at the packaged scripts (and at ``url`` if given)."""
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


@contextmanager
def migration_connection(url: str) -> Iterator[sa.Connection]:
    """A connection inside one transaction, set up for schema changes.

    On SQLite, foreign keys are switched off for the duration (batch mode rebuilds tables, which would
    otherwise trip or cascade through referencing rows) and checked with ``PRAGMA foreign_key_check``
    before commit, as the SQLite docs prescribe for schema changes.
    """
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _fk_off(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA foreign_keys=OFF")

    try:
        # IMMEDIATE: on SQLite two processes migrating at once queue on the write lock (PostgreSQL uses an
        # advisory lock in env.py); the option is ignored by other dialects.
        with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            yield conn
            if conn.dialect.name == "sqlite":
                problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise RuntimeError(f"migration left dangling foreign keys: {problems[:10]}")
    finally:
        engine.dispose()


def _run_command(url: str, fn: Any, *args: Any) -> None:
    cfg = alembic_config(url)
    with _ALEMBIC_LOCK, migration_connection(url) as conn:
        cfg.attributes["connection"] = conn
        fn(cfg, *args)


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the warehouse at ``url`` up to ``revision`` (default: latest)."""
    _run_command(url, command.upgrade, revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Take the warehouse at ``url`` down to ``revision`` (default: empty schema)."""
    _run_command(url, command.downgrade, revision)


def current_revision(url: str) -> str | None:
    """Revision the database is at, or None if it was never migrated."""
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    """Latest revision shipped with this package."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships at least one revision
        raise RuntimeError(f"no Alembic revisions in {MIGRATIONS_DIR}")
    return head


def is_up_to_date(url: str) -> bool:
    """True when the database is at the packaged head (a cheap pre-flight for tasks)."""
    return current_revision(url) == head_revision()
