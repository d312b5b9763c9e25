"""The demo's failure line: the failed task's own exception, and bad arguments refused in one line."""

from __future__ import annotations

from healthscore.cli import main
from healthscore.demo import last_error

LOG = """\
[DAG TEST] starting task_id=extract_hubspot map_index=-1
requests.exceptions.ConnectionError: an earlier, retried hiccup
[DAG TEST] starting task_id=run_playbooks map_index=-1
Traceback (most recent call last):
  File "/x/delivery.py", line 10, in publish_scores
    raise RetryableError("HubSpot did not take the batch")
healthscore.sources.base.RetryableError: /crm/v3/objects/companies/batch/update: HubSpot did not take the batch
[DAG TEST] end
"""


def test_last_error_is_the_failed_tasks_exception():
    assert last_error(LOG, "run_playbooks") == (
        "healthscore.sources.base.RetryableError: /crm/v3/objects/companies/batch/update: HubSpot did not take "
        "the batch")
    assert last_error("nothing went wrong here", "run_playbooks") == "no exception line in the log"


def test_demo_refuses_an_account_count_out_of_range(capsys):
    assert main(["demo", "--accounts", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "healthscore demo: --accounts must be between 1 and 100000, not 0"
    assert main(["demo", "--accounts", "100001"]) == 2


def test_a_killed_run_names_the_running_task_and_the_signal(tmp_path):
    """A day whose process the OOM killer took: no exception in the log, the task left 'running'."""
    from datetime import date

    from healthscore.demo import DayResult

    log = tmp_path / "day.log"
    log.write_text("[DAG TEST] starting task_id=validate_stripe map_index=-1\n")
    tasks = [("extract_stripe", "success", 12.0), ("validate_stripe", "running", None), ("build_signals", None, None)]
    killed = DayResult(date(2026, 9, 28), "failed", 99.0, log, tasks, returncode=-9)
    assert killed.failure() == (
        "in task validate_stripe: the run's process was killed by SIGKILL (most often the kernel's out-of-memory "
        f"killer: see dmesg) (log: {log})")
    failed = DayResult(date(2026, 9, 28), "failed", 99.0, log, [("run_playbooks", "failed", 3.0)], returncode=1)
    assert failed.failure() == f"in task run_playbooks: no exception line in the log (log: {log})"
