"""health_model_accuracy: does the health score predict churn? Monthly, over the renewals resolved in the month.

Thin wiring only: the logic is ``healthscore.pipeline.accuracy`` over ``healthscore.evaluation``, then the
executive report of the same month (``healthscore.pipeline.executive``, which reads the accuracy just stored). A
run whose data interval ends on the 1st reports on the month before it (``params.month`` = ``YYYY-MM`` for another).
It waits for nothing: the daily DAG's ``record_outcomes`` and the score archive are read as they stand, and a
rerun replaces the month's rows, report and CSVs and sends no alert twice.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task

REPORT_ASSET = Asset("healthscore://reports/accuracy")
EXECUTIVE_ASSET = Asset("healthscore://reports/executive")


@dag(
    dag_id="health_model_accuracy",
    schedule="@monthly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    params={"month": Param(None, type=["null", "string"], description="YYYY-MM to evaluate (default: last month)")},
    tags=["healthscore"],
    doc_md=__doc__,
)
def health_model_accuracy():
    @task(outlets=[REPORT_ASSET])
    def evaluate_accuracy(**context) -> dict:
        """Metrics, retention by band, lead time, misses, targets and drift -> table, HTML + CSVs, outbox."""
        from healthscore.pipeline.tasks import run_accuracy

        return run_accuracy(context)

    @task(outlets=[EXECUTIVE_ASSET])
    def executive_report(**context) -> dict:
        """Portfolio, At Risk ARR, top at-risk, renewals, saves and expansions, accuracy -> HTML + PDF, outbox."""
        from healthscore.pipeline.tasks import run_executive_report

        return run_executive_report(context)

    evaluate_accuracy() >> executive_report()


health_model_accuracy()
