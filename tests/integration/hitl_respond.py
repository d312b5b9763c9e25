"""Answer a Human-in-the-loop task through Airflow's own REST route, as the Required Actions UI does.

Run as ``python -m tests.integration.hitl_respond DAG_ID RUN_ID TASK_ID OPTION USER`` with the AIRFLOW_HOME /
metadata DB environment of the run: the core API app is built in-process (no server to start) and its
``PATCH .../hitlDetails`` is called with a JWT the configured auth manager issues for ``USER``. Prints the
status code and the response body.
"""

from __future__ import annotations

import sys


def main(dag_id: str, run_id: str, task_id: str, option: str, user: str) -> int:
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    app = create_app(apps="core")
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role="admin"))
    client = TestClient(app)
    response = client.patch(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails",
                            json={"chosen_options": [option], "params_input": {}},
                            headers={"Authorization": f"Bearer {token}"})
    print(response.status_code, response.text)
    return 0 if response.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
