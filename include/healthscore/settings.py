"""Runtime settings: the one place that reads the process environment.

Every other module receives a ``Settings`` (or values taken from it) as an argument, so tests and
DAG tasks can build one explicitly and nothing depends on ambient state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, Field

WAREHOUSE_CONN_ID = "healthscore_warehouse"


class Settings(BaseModel):
    """Where healthscore keeps its state and which model config it uses."""

    data_dir: Path = Field(default=Path("data"), description="Root for the SQLite warehouse, reports, archives.")
    warehouse_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. None: Airflow connection 'healthscore_warehouse', else SQLite in data_dir.",
    )
    model_config_path: Path | None = Field(default=None, description="Model YAML. None: the packaged default.")
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
    quality_fail_on_critical: bool = Field(
        default=False, description="Fail the run on a critical quality failure instead of carrying dimensions forward.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get("HEALTHSCORE_DATA_DIR"):
            values["data_dir"] = Path(env["HEALTHSCORE_DATA_DIR"])
        if env.get("HEALTHSCORE_WAREHOUSE_URL"):
            values["warehouse_url"] = env["HEALTHSCORE_WAREHOUSE_URL"]
        if env.get("HEALTHSCORE_QUALITY_FAIL_ON_CRITICAL"):
            values["quality_fail_on_critical"] = env["HEALTHSCORE_QUALITY_FAIL_ON_CRITICAL"].lower() in ("1", "true", "yes")
        if env.get("HEALTHSCORE_ARCHIVE_URL"):
            values["archive_url"] = env["HEALTHSCORE_ARCHIVE_URL"]
        if env.get("HEALTHSCORE_MIXPANEL_BACKFILL_DAYS"):
            values["mixpanel_backfill_days"] = int(env["HEALTHSCORE_MIXPANEL_BACKFILL_DAYS"])
        if env.get("HEALTHSCORE_DATA_DOCS_INDEX_LIMIT"):
            values["data_docs_index_limit"] = int(env["HEALTHSCORE_DATA_DOCS_INDEX_LIMIT"])
        if env.get("HEALTHSCORE_DATA_DOCS_PUBLISH"):
            values["data_docs_publish"] = env["HEALTHSCORE_DATA_DOCS_PUBLISH"].lower() in ("1", "true", "yes")
        if env.get("HEALTHSCORE_MODEL_CONFIG"):
            values["model_config_path"] = Path(env["HEALTHSCORE_MODEL_CONFIG"])
        return cls(**values)

    @property
    def resolved_archive_url(self) -> str:
        return self.archive_url or f"file://{(self.data_dir / 'archive').resolve()}"

    @property
    def default_sqlite_url(self) -> str:
        return f"sqlite:///{(self.data_dir / 'warehouse.db').resolve()}"
