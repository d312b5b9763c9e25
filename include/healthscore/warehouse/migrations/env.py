"""Alembic environment for the healthscore warehouse.

Used both by ``healthscore.warehouse.migrate`` (which hands over an open connection in
``config.attributes["connection"]``) and by the ``alembic`` CLI (URL from ``-x url=...``,
``sqlalchemy.url`` or the usual resolution through ``Settings.from_env()``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from healthscore.warehouse.migrate import PG_MIGRATION_LOCK_KEY
from healthscore.warehouse.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run(connection: sa.Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two tasks upgrading the same database at once queue here instead of racing.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY})
        context.run_migrations()


def _cli_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from healthscore.settings import Settings
    from healthscore.warehouse.engine import resolve_warehouse_url

    return resolve_warehouse_url(Settings.from_env())


def run_migrations_offline() -> None:
    """``alembic upgrade --sql``: render the DDL instead of running it."""
    context.configure(
        url=_cli_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from healthscore.warehouse.migrate import migration_connection

    with migration_connection(_cli_url()) as conn:
        _run(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
