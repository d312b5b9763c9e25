"""The history-cost bench's own schedule and report: the same n behind every history, newest run on top."""

from __future__ import annotations

import argparse
import importlib.util
from datetime import date
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "bench_history_cost.py"
_spec = importlib.util.spec_from_file_location("bench_history_cost", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


class Clock:
    """Stands in for ``time``: each step advances the CPU clock by what it is told to cost."""

    def __init__(self) -> None:
        self.cpu = 0.0

    def perf_counter(self) -> float:
        return self.cpu * 2

    def process_time(self) -> float:
        return self.cpu

    def sleep(self, _: float) -> None:
        pass


def fake_day(monkeypatch: pytest.MonkeyPatch,
             costs: dict[int, dict[str, list[float]]]) -> tuple[list[tuple[int, str]], list[int]]:
    """Tasks that cost, behind each history, the CPU seconds listed for their successive runs; returns the
    (history, task) runs in order and the cell holding the history in use."""
    clock, ran, current = Clock(), [], [0]
    rows = iter(range(0, 10**6, 10))
    monkeypatch.setattr(bench, "time", clock)
    monkeypatch.setattr(bench, "rows_read", lambda url: next(rows))

    def step(name: str) -> None:
        clock.cpu += costs[current[0]][name].pop(0)
        ran.append((current[0], name))

    names = list(costs[min(costs)])
    monkeypatch.setattr(bench, "steps", lambda day: [(name, lambda n=name: step(n)) for name in names])
    return ran, current


def test_histories_take_turns_and_short_tasks_get_the_same_extra_runs_behind_each(monkeypatch) -> None:
    # "quick" is short in the first pass behind 30; "slow" is not. Behind 365 "quick" starts slower than
    # the threshold and "slow" quicker: the schedule is the one decided behind 30.
    ran, current = fake_day(monkeypatch, {30: {"quick": [0.2, 0.3, 0.25, 0.21, 0.4], "slow": [1.5, 1.4]},
                                          365: {"quick": [1.2, 0.3, 0.3, 0.3, 0.3], "slow": [0.5, 0.6]}})
    runs, short = bench.measure({30: "a", 365: "b"}, date(2026, 9, 30), 2, 4, 1.0,
                                use=lambda history: current.__setitem__(0, history))
    assert short == {"quick"}
    assert {h: (len(r["quick"]), len(r["slow"])) for h, r in runs.items()} == {30: (5, 2), 365: (5, 2)}
    # Pass 1: 30 then 365, each task once; pass 2: 365 then 30, "quick" four times in a row.
    assert [h for h, _ in ran] == [30, 30, 365, 365] + [365] * 5 + [30] * 5
    assert bench.best(runs[30]["quick"])[1] == pytest.approx(0.2)
    assert bench.median_cpu(runs[30]["quick"]) == pytest.approx(0.25)
    assert all(rows == 10 for task in runs[30].values() for _, _, rows in task)  # one reading between runs


def test_the_report_goes_on_top_and_names_the_task_over_the_bound(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "history_cost.txt"
    out.write_text("an earlier run\n")
    runs: dict[int, dict[str, Any]] = {
        30: {"a": [(1.0, 0.50, 100)], "b": [(1.0, 0.10, 5), (1.0, 0.12, 6)]},
        365: {"a": [(1.0, 0.52, 101)], "b": [(1.0, 0.13, 7), (1.0, 0.20, 9)]},
    }
    args = argparse.Namespace(accounts=30, repeat=2, short_cpu=1.0, short_repeat=5, out=out)
    bench.report(runs, args, (1.0, 2.0, 3.0), 60.0)
    text = out.read_text()
    assert text.startswith("bench_history_cost: one day of the daily tasks behind 30 vs 365 landed batches")
    assert text.endswith("Earlier runs:\n\nan earlier run\n")
    [b] = [line for line in text.splitlines() if line.startswith("b ")]
    assert b.split()[1:] == ["2", "1.00", "1.00", "0.100", "0.130", "1.30", "1.50", "5", "7"]
    assert "worst task b 1.30 -> NOT met" in text  # the total (0.65 / 0.60 = 1.08) is within it
    assert "total 1.08" in text
