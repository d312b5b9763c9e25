"""Airflow local settings of a healthscore deployment (Airflow imports this from ``$AIRFLOW_HOME/config``).

Only the opt-in warm start of task processes lives here: see ``healthscore.preload``. Nothing else is
exported to Airflow's settings (``__all__`` is empty).
"""

from healthscore.preload import preload_task_runtime as _preload_task_runtime

__all__: list[str] = []

_preload_task_runtime()
