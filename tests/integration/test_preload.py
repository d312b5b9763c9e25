"""The opt-in warm start: an Airflow process with HEALTHSCORE_PRELOAD_TASK_RUNTIME holds the task runtime."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from healthscore.local_airflow import BIN, LocalAirflow
from healthscore.preload import ENV_FLAG, TASK_RUNTIME_MODULES, preload_enabled

PROBE = ("import sys, airflow.settings; "
         f"print(sorted(m for m in {TASK_RUNTIME_MODULES!r} if m in sys.modules))")


def _loaded(home: LocalAirflow, flag: str | None) -> subprocess.CompletedProcess:
    env = {**home.env, **({ENV_FLAG: flag} if flag is not None else {})}
    return subprocess.run([str(BIN / "python"), "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> LocalAirflow:
    home = LocalAirflow(tmp_path_factory.mktemp("preload"))
    home.link_config()
    return home


def test_airflow_processes_preload_only_when_asked(home: LocalAirflow) -> None:
    warm = _loaded(home, "true")
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert warm.stdout.strip() == str(sorted(TASK_RUNTIME_MODULES))
    cold = _loaded(home, None)
    assert cold.returncode == 0, cold.stderr[-3000:]
    assert "great_expectations" not in cold.stdout and "healthscore.pipeline.tasks" not in cold.stdout


def test_a_misspelt_flag_stops_the_process_with_its_name(home: LocalAirflow) -> None:
    bad = _loaded(home, "ture")
    assert bad.returncode != 0
    assert ENV_FLAG in bad.stderr and "'ture'" in bad.stderr
    with pytest.raises(ValueError, match=ENV_FLAG):
        preload_enabled({ENV_FLAG: "maybe"})
    assert preload_enabled({ENV_FLAG: " TRUE "}) and not preload_enabled({}) and not preload_enabled({ENV_FLAG: "0"})


def test_config_link_points_at_the_repository(home: LocalAirflow) -> None:
    assert (home.home / "config" / "airflow_local_settings.py").resolve() == (
        Path(__file__).resolve().parents[2] / "airflow" / "config" / "airflow_local_settings.py")
