"""Rewrite the README's end-to-end benchmark table from bench/results/bench_daily_e2e.json (never by hand).

The newest run per account count is shown; the table sits between the two marker comments in README.md.

    .venv/bin/python bench/results_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "bench_daily_e2e.json"
README = REPO / "README.md"
START, END = "<!-- bench_daily_e2e:start -->", "<!-- bench_daily_e2e:end -->"


def _top_tasks(day: dict, n: int = 3) -> str:
    tasks = sorted(day["tasks"].items(), key=lambda kv: -kv[1]["seconds"])[:n]
    return ", ".join(f"{t} {v['seconds']:.0f} s" for t, v in tasks)


def table(runs: list[dict]) -> str:
    newest: dict[int, dict] = {}
    for run in runs:
        newest[run["accounts"]] = run  # later entries win
    lines = [
        "| accounts | day | total | CPU (Airflow + sandbox) | slowest tasks | peak RSS (max task) | requests HubSpot / "
        "search / Zendesk / Stripe / Mixpanel | HubSpot at real limits | commit, date, load avg |",
        "| ---: | --- | ---: | ---: | --- | ---: | --- | ---: | --- |",
    ]
    for accounts in sorted(newest):
        run = newest[accounts]
        if run.get("partial"):
            lines.append(f"| {accounts:,} | **partial run** | | | {run['partial']} | | | | |")
        for day in run["days"]:
            req = day.get("requests", {})
            counts = " / ".join(str(req.get(k, 0)) for k in ("hubspot", "hubspot_search", "zendesk", "stripe",
                                                              "mixpanel"))
            peak = max((v["peak_rss_mib"] for v in day["tasks"].values()), default=0)
            state = "" if day.get("state", "success") == "success" else f" ({day['state']})"
            if day["kind"] == "backfill" and isinstance(run.get("mixpanel_backfill_days"), int):
                state += f" (Mixpanel backfill {run['mixpanel_backfill_days']} days, not 35)"
            cpu = (f"{day['airflow_cpu_s']:.0f} + {day.get('sandbox_cpu_s', 0):.0f} s" if "airflow_cpu_s" in day
                   else "-")
            lines.append(
                f"| {accounts:,} | {day['kind']} {day['logical_date']}{state} | {day['total_s']:.0f} s | {cpu} "
                f"| {_top_tasks(day)} "
                f"| {peak:,} MiB | {counts} | {day.get('hubspot_min_seconds_at_real_limits', 0):.0f} s "
                f"| {run['commit']}, {run['date'][:10]}, {'/'.join(str(x) for x in run['load_start'])} |")
        derived = run.get("derived") or {}
        if derived:
            lines.append(
                f"| {accounts:,} | steady / backfill | | | extraction time x{derived.get('steady_vs_backfill_extraction_seconds')}"
                f", requests x{derived.get('steady_vs_backfill_extraction_requests')}; CRM records changed "
                f"{100 * (derived.get('steady_crm_records_changed_share') or 0):.1f}% | | | | |")
    return "\n".join(lines)


def main() -> int:
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    text = README.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks the markers {START} ... {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{table(runs)}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
