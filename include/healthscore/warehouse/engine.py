"""Which warehouse to use, and engines tuned for it.

Resolution order (first hit wins): ``Settings.warehouse_url`` > the Airflow connection
``healthscore_warehouse`` > a SQLite file in ``Settings.data_dir``. PostgreSQL URLs are pinned to the
psycopg 3 driver because the bulk loader uses its COPY API.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from healthscore.settings import WAREHOUSE_CONN_ID, Settings
from healthscore.warehouse.types import dumps_json

log = logging.getLogger(__name__)

PG_DRIVER = "postgresql+psycopg"
SQLITE_BUSY_TIMEOUT_S = 30.0
#: Execution option ``sqlite_begin``: IMMEDIATE takes the write lock at BEGIN, so a read-then-write unit
#: waits for other writers (busy timeout) instead of failing with SQLITE_BUSY when its snapshot is stale.
SQLITE_BEGIN_MODES = ("DEFERRED", "IMMEDIATE", "EXCLUSIVE")

# libpq parameters an Airflow connection may carry in its extras and that belong in the URL query.
_PG_QUERY_EXTRAS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "options",
    "target_session_attrs",
)


def normalize_url(url: str | URL) -> str:
    """Return ``url`` with bare ``postgres://`` / ``postgresql://`` mapped to ``postgresql+psycopg://``."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername=PG_DRIVER)
    return parsed.render_as_string(hide_password=False)


def _airflow_connection_url(conn_id: str) -> str | None:
    """URL of an Airflow connection, or None when Airflow is absent/unconfigured or has no such conn."""
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except ImportError:
        log.debug("Airflow is not importable; not looking up connection %r", conn_id)
        return None
    except Exception as exc:  # noqa: BLE001 - not found, no metadata DB, no secrets backend: fall through
        if type(exc).__name__ == "AirflowNotFoundException":
            log.debug("Airflow connection %r is not defined", conn_id)
        else:  # unconfigured Airflow or a broken backend: keep the traceback for whoever debugs it
            log.debug("Airflow connection %r lookup failed; falling through", conn_id, exc_info=True)
        return None
    # Outside the try: a bug in turning the connection into a URL must surface, not fall through.
    return _connection_to_url(conn)


def _connection_to_url(conn: Any) -> str:
    """Build a SQLAlchemy URL from an Airflow ``Connection``'s fields (not ``get_uri``, whose
    ``postgres://`` scheme and query-encoded extras SQLAlchemy does not understand)."""
    extras: dict[str, Any] = dict(conn.extra_dejson or {})
    if extras.get("sqlalchemy_url"):
        return str(extras["sqlalchemy_url"])
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        # Airflow parses sqlite:////abs/path.db into schema='/abs/path.db' (host empty).
        return URL.create("sqlite", database=conn.schema or conn.host or None).render_as_string()
    if conn_type in ("postgres", "postgresql") or conn_type.startswith("postgresql+"):
        drivername = PG_DRIVER if conn_type in ("postgres", "postgresql") else conn_type
        query = {k: str(extras[k]) for k in _PG_QUERY_EXTRAS if extras.get(k) not in (None, "")}
    else:
        drivername = conn_type
        query = {k: str(v) for k, v in extras.items() if isinstance(v, str | int | float)}
    url = URL.create(
        drivername,
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port or None,
        database=conn.schema or None,
        query=query,
    )
    return url.render_as_string(hide_password=False)


def resolve_warehouse_url(settings: Settings) -> str:
    """The warehouse URL this process should use (explicit > Airflow connection > local SQLite)."""
    if settings.warehouse_url:
        return normalize_url(settings.warehouse_url)
    from_airflow = _airflow_connection_url(WAREHOUSE_CONN_ID)
    if from_airflow:
        return normalize_url(from_airflow)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.default_sqlite_url


def _configure_sqlite(engine: Engine, *, in_memory: bool) -> None:
    """WAL, enforced foreign keys, a busy timeout, and real transactions (BEGIN emitted by SQLAlchemy).

    Python 3.11's sqlite3 does not BEGIN before SELECT or DDL ("legacy transaction control"), so a unit
    of work would not be atomic for DDL; SQLAlchemy's documented recipe takes over BEGIN instead.
    ``conn.execution_options(sqlite_begin="IMMEDIATE")`` picks the BEGIN flavour per connection.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        level = conn.get_execution_options().get("isolation_level", conn.dialect.isolation_level)
        if level == "AUTOCOMMIT":
            return
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode not in SQLITE_BEGIN_MODES:
            raise ValueError(f"sqlite_begin must be one of {SQLITE_BEGIN_MODES}, not {mode!r}")
        # A pool reset after an AUTOCOMMIT checkout restores sqlite3's legacy mode; undo that first.
        conn.connection.driver_connection.isolation_level = None
        conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """Engine with per-backend settings; extra ``kwargs`` go to ``create_engine``."""
    parsed = make_url(normalize_url(url))
    kwargs.setdefault("json_serializer", dumps_json)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
        engine = sa.create_engine(parsed, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine, in_memory=in_memory)
        return engine
    if parsed.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, **kwargs)
