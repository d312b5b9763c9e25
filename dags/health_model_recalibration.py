"""health_model_recalibration: learn a challenger from outcomes, backtest it against the champion, promote on approval.

Quarterly. Thin wiring only: the logic is ``healthscore.pipeline.recalibration`` over ``healthscore.evaluation``.

build_training_set -> recalibrate -> backtest -> decide -> approve_challenger (a person, in the Airflow UI's
Required Actions) -> promote_challenger. ``decide`` goes on only if the challenger beats the champion by
``params.margin`` (held-out AUC, and no lower F1); with ``params.auto_approve`` it skips the person. Without an
approval nothing is promoted: the challenger scores daily in shadow meanwhile. Rollback: ``healthscore model rollback``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Asset, Param, dag, task
from airflow.sdk.exceptions import AirflowSkipException

REPORT_ASSET = Asset("healthscore://reports/recalibration")


@dag(
    dag_id="health_model_recalibration",
    schedule="@quarterly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    params={
        "months": Param(12, type="integer", minimum=1, description="outcomes of the last N months"),
        "margin": Param(0.01, type="number", minimum=0, description="held-out AUC gain the challenger needs"),
        "auto_approve": Param(False, type="boolean", description="promote a better challenger without a person"),
        "method": Param("weighted_average", enum=["weighted_average", "model_probability"],
                        description="the challenger's scoring: the glass-box weighted average, or a calibrated "
                                    "classifier over the recalibrated dimension scores"),
    },
    tags=["healthscore"],
    doc_md=__doc__,
)
def health_model_recalibration():
    @task
    def build_training_set(**context) -> dict:
        """Point-in-time signal snapshots at 30/60/90 days' lead joined to the window's renewal outcomes."""
        from healthscore.pipeline.tasks import run_recalibration

        return run_recalibration("training_set", context)

    @task
    def recalibrate(training: dict, **context) -> dict:
        """Curves, non-negative weights and band lines learned on earlier outcomes; registered as challenger."""
        from healthscore.pipeline.tasks import run_recalibration

        return run_recalibration("recalibrate", context)

    @task(outlets=[REPORT_ASSET])
    def backtest(challenger: dict, **context) -> dict:
        """Champion and challenger on the same held-out snapshots: side-by-side table, HTML + CSV."""
        from healthscore.pipeline.tasks import run_recalibration

        return run_recalibration("backtest", context, challenger=challenger["challenger"])

    @task.branch
    def decide(result: dict, **context) -> list[str]:
        if not result["better"]:
            return []
        return ["auto_approved"] if context["params"].get("auto_approve") else ["approve_challenger"]

    approve_challenger = ApprovalOperator(
        task_id="approve_challenger",
        subject="Promote health model {{ ti.xcom_pull(task_ids='backtest')['challenger'] }}?",
        body=("Challenger **{{ ti.xcom_pull(task_ids='backtest')['challenger'] }}** against champion "
              "**{{ ti.xcom_pull(task_ids='backtest')['champion'] }}**: {{ ti.xcom_pull(task_ids='backtest')['why'] }}."
              "\n\nReport: `{{ ti.xcom_pull(task_ids='backtest')['report'] }}`"),
        response_timeout=timedelta(days=14),
    )

    @task
    def auto_approved() -> dict:
        return {"chosen_options": ["Approve"], "responded_by_user": {"name": "auto-approval"}}

    @task(trigger_rule="none_failed_min_one_success")
    def promote_challenger(challenger: dict, **context) -> dict:
        from healthscore.pipeline.recalibration import approver_of
        from healthscore.pipeline.tasks import run_recalibration

        ti = context["ti"]
        approver = approver_of(ti.xcom_pull(task_ids="approve_challenger") or ti.xcom_pull(task_ids="auto_approved"))
        if approver is None:  # not better (both approval paths skipped), or rejected: nothing is promoted
            raise AirflowSkipException("the challenger was not approved: nothing promoted")
        return run_recalibration("promote", context, challenger=challenger["challenger"], approver=approver)

    challenger = recalibrate(build_training_set())
    result = backtest(challenger)
    auto = auto_approved()
    decide(result) >> [approve_challenger, auto]
    [approve_challenger, auto] >> promote_challenger(challenger)


health_model_recalibration()
