"""The Great Expectations runtime behind the gate: one cached data context per Data Docs folder.

Why this shape:

* An *ephemeral* context (nothing to initialise on disk, no ``great_expectations.yml`` shared between
  concurrent tasks) whose **validation results store is a folder** (``<data_docs_dir>/../gx/validations``)
  and whose Data Docs site is ``data_docs_dir``. GX rebuilds the docs index from the results store and
  deletes pages it cannot find there; with an in-memory store every task process would wipe the pages
  written by the others.
* Every suite is registered when the context is created, for the same reason (expectation pages of
  suites unknown to a process would be removed from the shared site).
* Suites, validation definitions and checkpoints are built once per (object, plan) and reused, so a
  chunked Mixpanel validation pays the GX setup once, not per chunk.
* Data Docs are built by ``publish()``, not by a checkpoint action: rendering the index reads up to
  ``index_limit`` (the caller's setting, ``HEALTHSCORE_DATA_DOCS_INDEX_LIMIT``, 200) stored results, so a task that validates many suites
  (or a Mixpanel day in chunks) builds its pages and the index once at the end, not per validation.

Importing this module does not import GX; ``runner()`` does.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from healthscore.quality.suites import Check, all_suites, build_suite, fingerprint, suite_name

if TYPE_CHECKING:
    import pandas as pd

SITE_NAME = "healthscore"
DATASOURCE = "healthscore"
NO_PAGE = "healthscore.no-page"  # a suite name no suite has
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": ["record_id"],
    "return_unexpected_index_query": False,  # a pandas filter listing every failing index: huge, useless here
    "partial_unexpected_count": 20,
}

_runners: dict[tuple[Path, int], GxRunner] = {}
_runners_lock = threading.Lock()


def results_store_dir(data_docs_dir: Path) -> Path:
    """Where JSON validation results live (next to the docs site, so the index survives processes)."""
    return data_docs_dir.parent / "gx" / "validations"


def safe_run_name(run_id: str) -> str:
    """Airflow run ids contain ':' and '+'; Data Docs paths should not."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_") or "run"


class GxRunner:
    """A GX ephemeral context with a filesystem results store and a Data Docs site."""

    def __init__(self, data_docs_dir: Path, index_limit: int) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # before GX is imported: never phone home
        logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO chatter floods task logs
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self.data_docs_dir = data_docs_dir
        defaults = InMemoryStoreBackendDefaults()
        config = DataContextConfig(store_backend_defaults=defaults, analytics_enabled=False,
                                   progress_bars=ProgressBarsConfig(globally=False))
        config.stores[defaults.validation_results_store_name] = {
            "class_name": "ValidationResultsStore",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(results_store_dir(data_docs_dir))},
        }
        config.data_docs_sites = {SITE_NAME: {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(data_docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "validation_results_limit": index_limit,
                                   "show_how_to_buttons": False},
        }}
        self._gx = gx
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self._datasource = self.context.data_sources.add_pandas(DATASOURCE)
        # Registered at their fullest, by fingerprint: a run whose plan is the full one reuses its suite as is.
        self._suites: dict[str, tuple[str, Any]] = {}
        for name, suite in all_suites().items():
            self._suites[name] = (suite.meta["healthscore"]["fingerprint"], self.context.suites.add(suite))
        self._checkpoints: dict[str, tuple[str, Any]] = {}
        self._batches: dict[str, Any] = {}
        self._unpublished: list[Any] = []  # result and suite identifiers whose pages are not built yet
        self._lock = threading.Lock()

    @property
    def index_path(self) -> Path:
        return self.data_docs_dir / "index.html"

    def _checkpoint(self, source: str, obj: str, checks: tuple[Check, ...]) -> Any:
        """The checkpoint for this plan, rebuilt only when the plan changes."""
        gx = self._gx
        name = suite_name(source, obj)
        key = fingerprint(checks)
        cached = self._checkpoints.get(name)
        if cached and cached[0] == key:
            return cached[1]
        registered = self._suites.get(name)
        if registered and registered[0] == key:
            suite = registered[1]
        else:  # comparing a changed suite expectation by expectation is GX's slowest step here: only on change
            suite = self.context.suites.add_or_update(build_suite(source, obj, checks))
            self._suites[name] = (key, suite)
        batch = self._batches.get(name)
        if batch is None:
            asset = self._datasource.add_dataframe_asset(f"{source}_{obj}")
            batch = self._batches[name] = asset.add_batch_definition_whole_dataframe("whole")
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch, suite=suite))
        checkpoint = self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=name, validation_definitions=[definition], result_format=RESULT_FORMAT, actions=[]))
        self._checkpoints[name] = (key, (checkpoint, definition))
        return checkpoint, definition

    def _validate(self, checkpoint: Any, definition: Any, frame: pd.DataFrame, parameters: dict[str, Any],
                  run: Any) -> tuple[Any, Any]:
        """What ``checkpoint.run`` does for its one validation definition (no actions), without its freshness checks.

        ``Checkpoint.run`` and ``ValidationDefinition.run`` each first compare the checkpoint, the definition
        and the suite with their stored copies (deserialising all three from the stores, then comparing
        expectation by expectation): about a fifth of a validation's cost here, paid on every run. This
        context is ephemeral and owned by this runner, and ``_checkpoint`` adds or updates all three in the
        stores whenever the plan changes, so the comparison cannot fail. The rest is GX's own: its validator
        runs the suite on the batch, and the result, with the meta the definition gives it, goes to the
        results store under the key the checkpoint gives it (what the Data Docs are built from).
        """
        from great_expectations.core.validation_definition import DATAFRAME_REPLACEMENT_STR
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )
        from great_expectations.validator.v1_validator import Validator

        validator = Validator(batch_definition=definition.batch_definition, batch_parameters={"dataframe": frame},
                              result_format=checkpoint.result_format)
        validation = validator.validate_expectation_suite(definition.suite, parameters)
        validation.meta["validation_id"] = definition.id
        validation.meta["checkpoint_id"] = checkpoint.id
        validation.meta["run_id"] = run
        validation.meta["validation_time"] = run.run_time
        validation.meta["batch_parameters"] = {"dataframe": DATAFRAME_REPLACEMENT_STR}
        suite_id = ExpectationSuiteIdentifier(name=definition.suite.name)
        key = ValidationResultIdentifier(expectation_suite_identifier=suite_id, run_id=run,
                                         batch_identifier=validation.batch_id)
        self.context.validation_results_store.store_validation_results(
            suite_validation_result=validation, suite_validation_result_identifier=key,
            expectation_suite_identifier=suite_id)
        return key, validation

    def run(self, source: str, obj: str, checks: tuple[Check, ...], frame: pd.DataFrame,
            parameters: dict[str, Any], run_id: str) -> tuple[Any, Path | None]:
        """Validate ``frame``; returns the suite validation result and its Data Docs page."""
        from great_expectations.data_context.data_context.context_factory import project_manager
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        with self._lock:
            project_manager.set_project(self.context)  # GX resolves some lookups via the "current" context
            checkpoint, definition = self._checkpoint(source, obj, checks)
            run = self._gx.RunIdentifier(run_name=safe_run_name(run_id), run_time=datetime.now(UTC))
            key, validation = self._validate(checkpoint, definition, frame, parameters, run)
            self._unpublished += [key, ExpectationSuiteIdentifier(name=validation.suite_name)]
            urls = self.context.get_docs_sites_urls(resource_identifier=key, site_names=[SITE_NAME],
                                                    only_if_exists=False)  # built by publish()
        page = next((Path(unquote(urlparse(u["site_url"]).path)) for u in urls if u.get("site_url")), None)
        return validation, page

    def publish(self, index: bool = True) -> None:
        """Build the pages of the validations run since the last publish, and the index (unless ``index=False``:
        then ``publish_index`` builds it once, e.g. after other processes built their pages too)."""
        from great_expectations.data_context.data_context.context_factory import project_manager

        with self._lock:
            if not self._unpublished:
                return
            project_manager.set_project(self.context)
            identifiers = list(dict.fromkeys(self._unpublished))
            self.context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=identifiers, build_index=index)
            self._unpublished = []

    def publish_index(self) -> None:
        """Build only the index, of the pages the site holds (from every process that wrote there)."""
        from great_expectations.data_context.data_context.context_factory import project_manager
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        with self._lock:
            project_manager.set_project(self.context)
            # GX builds every page when given no identifiers: one that names no page builds none of them.
            self.context.build_data_docs(site_names=[SITE_NAME], build_index=True,
                                         resource_identifiers=[ExpectationSuiteIdentifier(name=NO_PAGE)])


def runner(data_docs_dir: Path, index_limit: int) -> GxRunner:
    """The cached runner for a Data Docs folder and index size (created on first use)."""
    key = (Path(data_docs_dir).resolve(), int(index_limit))
    with _runners_lock:
        if key not in _runners:
            _runners[key] = GxRunner(*key)
        return _runners[key]
