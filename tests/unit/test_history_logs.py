"""The history bootstrap's quiet mode: the terminal's log handlers are set aside while it runs, records go to the
log file instead, and everything is put back afterwards (other handlers, such as pytest's capture, stay)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from healthscore.pipeline.history import _logs_to_file, log_path
from healthscore.settings import Settings


def test_quiet_mode_moves_terminal_logs_to_the_file_and_restores_them(tmp_path: Path, capsys) -> None:
    import airflow  # noqa: F401 -- its logging config is what the bootstrap meets in real runs

    root = logging.getLogger()
    terminal = logging.StreamHandler(sys.stdout)
    other = logging.StreamHandler(open(tmp_path / "other.log", "w"))  # noqa: SIM115 -- closed below
    root.addHandler(terminal)
    root.addHandler(other)
    level = root.level
    path = tmp_path / "logs" / "history-bootstrap.log"
    try:
        with _logs_to_file(path):
            assert terminal not in root.handlers and other in root.handlers
            logging.getLogger("healthscore.pipeline.test").info("landed 42 rows")
        assert terminal in root.handlers and other in root.handlers and root.level == level
        logging.getLogger("healthscore.pipeline.test").warning("after the bootstrap")
    finally:
        root.removeHandler(terminal)
        root.removeHandler(other)
        other.close()
    text = path.read_text()
    assert "INFO healthscore.pipeline.test: landed 42 rows" in text
    assert "after the bootstrap" not in text
    out = capsys.readouterr().out
    assert "landed 42 rows" not in out and "after the bootstrap" in out


def test_without_a_path_nothing_changes(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    with _logs_to_file(None):
        assert root.handlers == before


def test_the_log_file_is_under_the_data_dir(tmp_path: Path) -> None:
    assert log_path(Settings(data_dir=tmp_path)) == tmp_path / "logs" / "history-bootstrap.log"
