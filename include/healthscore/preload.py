"""Warm start for task processes: import the task runtime once in the process that forks them.

Airflow 3 runs every task in a process forked from a long-lived parent (a LocalExecutor worker, itself
forked from the scheduler; a Celery prefork worker). A task that imports pandas, SQLAlchemy and Great
Expectations itself pays seconds of CPU before its first line of work, on every try of every task of
every run. Imported in the parent, those modules are inherited by each fork.

Opt-in per process, through ``airflow_local_settings`` (``airflow/config/`` in this repository):
set ``HEALTHSCORE_PRELOAD_TASK_RUNTIME=true`` in the environment of the scheduler (LocalExecutor) or
of the Celery workers, not of the api-server or dag-processor, which run no tasks.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping

from healthscore.settings import Settings

ENV_FLAG = "HEALTHSCORE_PRELOAD_TASK_RUNTIME"
# What the DAG's tasks import: the task entry points, their heavy dependencies, and Airflow's task runner.
TASK_RUNTIME_MODULES = (
    "airflow.sdk",
    "airflow.sdk.execution_time.task_runner",
    "airflow.providers.standard.decorators.python",
    "healthscore.pipeline.tasks",
    "healthscore.pipeline.signals",
    "healthscore.pipeline.score",
    "healthscore.pipeline.act",
    "healthscore.playbooks.delivery",
    "healthscore.playbooks.rules",
    "healthscore.playbooks.notifiers",
    "great_expectations",
)


def preload_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Parsed by ``Settings`` like every other flag; a value that is no boolean raises ``SettingsError``."""
    return Settings.from_env(environ).preload_task_runtime


def preload_task_runtime(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """Import the task runtime when enabled; returns the modules imported (empty when disabled)."""
    if not preload_enabled(environ):
        return ()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # as GxRunner does: set before GX is imported
    for name in TASK_RUNTIME_MODULES:
        importlib.import_module(name)
    return TASK_RUNTIME_MODULES
