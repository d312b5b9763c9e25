"""The one seeded warehouse and api-server the UI tests share (``ui_server`` in tests/conftest.py, session scope:
built once per xdist worker that runs a UI module)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ui.airflow_ui import AirflowUI
from tests.ui.world import World, seeded_world


@dataclass
class UIServer:
    world: World
    airflow: AirflowUI

    @property
    def base(self) -> str:
        return f"{self.airflow.url}/customer-health"


@contextmanager
def ui_server_for(root: Path) -> Iterator[UIServer]:
    data_dir = root / "data"
    url = f"sqlite:///{(data_dir / 'warehouse.db').resolve()}"
    env = {"HEALTHSCORE_WAREHOUSE_URL": url, "HEALTHSCORE_DATA_DIR": str(data_dir), "GX_ANALYTICS_ENABLED": "false"}
    # The app opens the warehouse on its first request, so Airflow migrates and starts while the world is seeded.
    airflow = AirflowUI(root / "airflow", env)
    with ThreadPoolExecutor(1) as pool, pytest.MonkeyPatch.context() as mp:
        mp.setenv("GX_ANALYTICS_ENABLED", "false")
        started = pool.submit(airflow.__enter__)
        try:
            with seeded_world(data_dir, url) as world:
                started.result()
                yield UIServer(world, airflow)
        finally:
            started.exception()  # waits for the start to end either way, then stops what it started
            airflow.stop()
