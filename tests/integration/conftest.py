"""Fixtures shared by the integration tests that run Airflow."""

from __future__ import annotations

import pytest

from tests.integration.airflow_harness import AirflowHome


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> AirflowHome:
    """One migrated Airflow metadata DB (with pools) for every DAG test in the session."""
    home = AirflowHome(tmp_path_factory.mktemp("airflow"))
    home.migrate()
    return home
