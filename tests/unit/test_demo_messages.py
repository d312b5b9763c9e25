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
