"""Nothing is promoted without an approval, whichever way the quarterly DAG got to its promote task."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from healthscore.pipeline.recalibration import approver_of

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "health_model_recalibration.py"


def test_only_an_approve_response_names_an_approver():
    assert approver_of({"chosen_options": ["Approve"], "responded_by_user": {"id": "7", "name": "alice"}}) == "alice"
    assert approver_of({"chosen_options": ["Approve"], "responded_by_user": {"id": "7"}}) == "7"
    assert approver_of({"chosen_options": ["Reject"], "responded_by_user": {"name": "bob"}}) is None
    assert approver_of({"responded_by_user": {"name": "bob"}}) is None  # a response that chose nothing
    assert approver_of(None) is None and approver_of({}) is None


class _TaskInstance:
    def __init__(self, responses: dict[str, dict | None]) -> None:
        self.responses = responses

    def xcom_pull(self, task_ids: str) -> dict | None:
        return self.responses.get(task_ids)


def _promote_callable():
    spec = importlib.util.spec_from_file_location("health_model_recalibration_dag", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.health_model_recalibration()  # the file builds its DAG without keeping it in a name
    return dag.get_task("promote_challenger").python_callable


def test_the_promote_task_skips_when_the_challenger_was_not_better_or_was_rejected():
    from airflow.sdk.exceptions import AirflowSkipException

    promote = _promote_callable()
    # Not better: decide skipped both approval paths, yet the trigger rule runs promote (recalibrate succeeded).
    for responses in ({}, {"approve_challenger": {"chosen_options": ["Reject"], "responded_by_user": {"name": "b"}}}):
        with pytest.raises(AirflowSkipException, match="not approved"):
            promote({"challenger": "v1-q1"}, ti=_TaskInstance(responses), params={})
