"""task_scope: what every DAG task entry point opens (settings, its batch, an engine) and always closes."""

from __future__ import annotations

from datetime import date

import pytest

from healthscore.pipeline import runtime
from healthscore.pipeline.history import day_context
from healthscore.pipeline.runtime import task_scope


@pytest.fixture
def disposed(monkeypatch: pytest.MonkeyPatch, tmp_path) -> list:
    """Engines disposed so far, in a SQLite warehouse under tmp_path."""
    monkeypatch.setenv("HEALTHSCORE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEALTHSCORE_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'warehouse.db'}")
    seen: list = []
    make = runtime.warehouse_engine

    def spying(settings, migrate=False):
        engine = make(settings, migrate=migrate)
        dispose = engine.dispose
        engine.dispose = lambda *a, **k: (seen.append(engine), dispose(*a, **k))
        return engine

    monkeypatch.setattr(runtime, "warehouse_engine", spying)
    return seen


def test_the_engine_is_disposed_when_the_task_fails(disposed: list, tmp_path) -> None:
    with pytest.raises(RuntimeError, match="task failed"), task_scope(day_context(date(2026, 9, 1))) as scope:
        settings, batch, engine = scope
        assert settings.data_dir == tmp_path
        assert batch.batch_date == date(2026, 9, 1) and batch.run_id.startswith("scheduled__2026-09-02")
        assert disposed == []
        raise RuntimeError("task failed")
    assert disposed == [engine]


def test_without_a_context_there_is_no_batch_and_the_engine_is_still_disposed(disposed: list) -> None:
    with task_scope() as scope:
        assert scope.batch is None
    assert disposed == [scope.engine]
