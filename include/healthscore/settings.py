"""Runtime settings: the one place that reads the process environment.

Every other module receives a ``Settings`` (or values taken from it) as an argument, so tests and
DAG tasks can build one explicitly and nothing depends on ambient state. ``Settings(...)`` takes only
the values given; ``Settings.from_env()`` adds the ``HEALTHSCORE_*`` variables, parsed by
pydantic-settings, so booleans, integers and paths are parsed one way everywhere (``true/false``,
``1/0``, ``yes/no``, ``on/off``; an empty variable counts as unset).

Model decisions (look-backs, carry-forward, history windows) are not settings: they live in the model
YAML, where they are versioned and hashed with the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

WAREHOUSE_CONN_ID = "healthscore_warehouse"
ENV_PREFIX = "HEALTHSCORE_"

# The environment of the from_env() call in progress; None: take only the values passed in.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("healthscore_settings_environ", default=None)


class SettingsError(ValueError):
    """A HEALTHSCORE_* variable that cannot be parsed; the message names the variable and the value."""


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping (os.environ by default)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Surrounding blanks (a stray space in a .env or compose file) are never meant; strip them first.
        environ = {k: v.strip() for k, v in self._environ.items() if k.upper().startswith(ENV_PREFIX)}
        return parse_env_vars(environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class Settings(BaseSettings):
    """Where healthscore keeps its state and how the run behaves (not how a score is built)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore",
                                      frozen=True, populate_by_name=True)

    data_dir: Path = Field(default=Path("data"), description="Root for the SQLite warehouse, reports, archives.")
    warehouse_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. None: Airflow connection 'healthscore_warehouse', else SQLite in data_dir.",
    )
    model_config_path: Path | None = Field(
        default=None, validation_alias="HEALTHSCORE_MODEL_CONFIG", description="Model YAML. None: the packaged default.")
    archive_url: str | None = Field(
        default=None, description="ObjectStoragePath URL for the Parquet archive. None: file://<data_dir>/archive.")
    mixpanel_backfill_days: int = Field(
        default=35, ge=1, description="Days of product events the first Mixpanel batch pulls (30-day signals need 30).")
    data_docs_index_limit: int = Field(
        default=200, ge=1, description="Validations linked from the Data Docs index (pages of older ones stay on disk). "
        "Each build reads that many stored results, once per validate task.")
    data_docs_publish: bool = Field(
        default=True, description="Build the Data Docs pages and index in every validate task. The history "
        "bootstrap turns it off and builds them once at the end (results and quarantine are the same).")
    validation_chunk_rows: int = Field(
        default=100_000, ge=1, description="Landed rows the quality gate validates at a time: a validate task's memory "
        "follows this, not the batch (1.3M invoices at 100k accounts). Verdicts are the same for any size.")
    quality_fail_on_critical: bool = Field(
        default=False, description="Fail the run on a critical quality failure instead of carrying dimensions forward.")
    notify_fallback_email: str | None = Field(
        default=None, description="Where a CSM digest goes when its HubSpot owner has no email, and leadership "
        "alerts (CS leader, executive sponsor); unset: those stay in the outbox, with a warning.")
    preload_task_runtime: bool = Field(
        default=False, description="Import the task runtime once in the process that forks tasks (see preload.py).")
    override_max_days: int = Field(
        default=90, ge=1, le=3650, description="Longest a CSM override may stand: its expiry is at most this many days "
        "after the day it is entered.")

    score_shards: int = Field(
        default=1, ge=1, le=256, description="Account shards the daily scoring step is mapped over (a stable hash "
        "of account_id mod N); the warehouse rows and the Parquet archive are the same for every N.")
    extract_parts: int = Field(
        default=1, ge=1, le=64, description="Parts the extraction of a splittable source is cut into (Mixpanel by "
        "runs of days, HubSpot increments by modification-date windows), each a mapped fetch task; the landed "
        "rows are the same for every N.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        if environ is None:
            return (init_settings,)
        return (init_settings, _MappingEnvSource(settings_cls, environ))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``HEALTHSCORE_*`` variables (``environ``, default ``os.environ``); ``overrides`` win.

        Raises ``SettingsError`` naming the variable when a value cannot be parsed.
        """
        with _reading(os.environ if environ is None else environ):
            try:
                return cls(**overrides)
            except ValidationError as exc:
                raise SettingsError(_describe(exc)) from None

    @property
    def resolved_archive_url(self) -> str:
        return self.archive_url or f"file://{(self.data_dir / 'archive').resolve()}"

    @property
    def default_sqlite_url(self) -> str:
        return f"sqlite:///{(self.data_dir / 'warehouse.db').resolve()}"


@contextmanager
def _reading(environ: Mapping[str, str]) -> Iterator[None]:
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def env_var(field: str) -> str:
    """The environment variable of a settings field (``data_dir`` -> ``HEALTHSCORE_DATA_DIR``)."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field.upper()}"


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        name = field if field.startswith(ENV_PREFIX) else env_var(field) if field in Settings.model_fields else field
        problems.append(f"{name}={err.get('input')!r}: {err['msg']}")
    return "invalid setting: " + "; ".join(problems)
