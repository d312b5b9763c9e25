"""The DAG files parse cleanly, stay thin, and only use pools that airflow/pools.json defines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from healthscore.local_airflow import DAGS_FOLDER, POOLS_FILE
from healthscore.pipeline.history import day_graph

PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags["customer_health_daily"]
heavy = sorted(m for m in ("pandas", "great_expectations", "sklearn", "pyarrow") if m in sys.modules)
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dag_ids),
    "tasks": {t.task_id: {"pool": t.pool, "upstream": sorted(t.upstream_task_ids),
                          "depends_on_past": t.depends_on_past, "wait_for_downstream": t.wait_for_downstream,
                          "type": type(t).__name__, "outlets": [a.uri for a in t.outlets]}
              for t in dag.tasks},
    "score_expand": (lambda e: {"kind": type(e).__name__, "from": sorted(op.task_id for op, _ in e.iter_references())})(
        dag.get_task("score_and_archive")._get_specified_expand_input()),
    "max_active_runs": dag.max_active_runs,
    "accuracy_tasks": sorted(t.task_id for t in bag.dags["health_model_accuracy"].tasks),
    "accuracy_schedule": bag.dags["health_model_accuracy"].timetable.expression,
    "recalibration": {t.task_id: {"upstream": sorted(t.upstream_task_ids), "type": type(t).__name__,
                                  "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule)}
                      for t in bag.dags["health_model_recalibration"].tasks},
    "recalibration_schedule": bag.dags["health_model_recalibration"].timetable.expression,
    "heavy_modules": heavy,
}))
"""


def parse(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW_HOME": str(home)})
    out = subprocess.run([sys.executable, "-c", PARSE, str(DAGS_FOLDER)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_daily_dag_parses_wires_the_pipeline_and_uses_defined_pools(tmp_path):
    info = parse(tmp_path)
    assert info["errors"] == {}
    assert "customer_health_daily" in info["dags"]
    tasks = info["tasks"]
    for source in ("hubspot", "zendesk", "stripe", "mixpanel"):
        # HubSpot and Mixpanel are split (pipeline.extract_parts): plan -> mapped fetch -> extract_<source> lands.
        first = f"plan_extract_{source}" if source in ("hubspot", "mixpanel") else f"extract_{source}"
        assert tasks[first]["upstream"] == (["prepare_warehouse"] if source != "mixpanel"
                                            else ["extract_hubspot", "prepare_warehouse"])
        if first != f"extract_{source}":
            assert tasks[first]["depends_on_past"] and tasks[f"extract_{source}"]["depends_on_past"]
            assert tasks[f"fetch_{source}"]["upstream"] == [first]
            assert tasks[f"fetch_{source}"]["type"].endswith("MappedOperator")
            assert tasks[f"fetch_{source}"]["pool"] == f"{source}_api"  # the vendor's rate limit holds per part
            assert tasks[f"extract_{source}"]["upstream"] == [f"fetch_{source}", first]
            assert tasks[f"extract_{source}"]["outlets"] == [f"healthscore://warehouse/landing/{source}"]
        assert f"extract_{source}" in tasks[f"validate_{source}"]["upstream"]
        assert f"validate_{source}" in tasks["build_signals"]["upstream"]
    # Scoring is mapped over the account shards plan_score_shards lists (HEALTHSCORE_SCORE_SHARDS, read at
    # run time); combine_shards writes the Parquet partitions once every shard is done, then the playbooks run.
    assert tasks["plan_score_shards"]["upstream"] == ["build_signals"]
    assert tasks["score_and_archive"]["upstream"] == ["plan_score_shards"]
    assert tasks["score_and_archive"]["type"].endswith("MappedOperator")
    assert info["score_expand"] == {"kind": "ListOfDictsExpandInput", "from": ["plan_score_shards"]}
    assert tasks["combine_shards"]["upstream"] == ["score_and_archive"]
    assert tasks["combine_shards"]["outlets"] == ["healthscore://warehouse/health_scores"]
    assert not tasks["combine_shards"]["type"].endswith("MappedOperator")
    assert tasks["run_playbooks"]["upstream"] == ["combine_shards", "prepare_warehouse", "record_outcomes",
                                                  "score_and_archive"]
    # Renewal outcomes read the validated deals and subscriptions, and finish before the run's last task.
    assert tasks["record_outcomes"]["upstream"] == ["validate_hubspot", "validate_stripe"]
    assert "health_model_accuracy" in info["dags"]
    assert info["accuracy_tasks"] == ["evaluate_accuracy", "executive_report"]
    assert info["accuracy_schedule"] == "0 0 1 * *"
    rec = info["recalibration"]
    assert info["recalibration_schedule"] == "0 0 1 */3 *"  # quarterly
    assert rec["recalibrate"]["upstream"] == ["build_training_set"] and rec["backtest"]["upstream"] == ["recalibrate"]
    assert rec["decide"]["upstream"] == ["backtest"]
    assert rec["approve_challenger"] == {"upstream": ["decide"], "type": "ApprovalOperator", "trigger_rule": "all_success"}
    # promotion only after a person's approval (or the configured auto-approval), never straight from the backtest
    assert rec["promote_challenger"]["upstream"] == ["approve_challenger", "auto_approved", "recalibrate"]
    assert info["max_active_runs"] == 1  # each batch resumes from the previous batch's cursor
    # Backfills run up to 10 runs at once: the first task waits for the previous run's last task.
    assert tasks["prepare_warehouse"]["depends_on_past"] and tasks["prepare_warehouse"]["wait_for_downstream"]
    pools = json.loads(POOLS_FILE.read_text())
    used = {t["pool"] for t in tasks.values()} - {"default_pool"}
    assert used and used <= set(pools)
    assert info["heavy_modules"] == [], "DAG files must not import heavy libraries at parse time"
    # The history bootstrap runs a day's tasks as soon as their upstream tasks are done: the same wiring
    # (ancestors compared; the shard plan and combine steps, not run by the bootstrap, are passed through).
    graph = day_graph()
    assert set(graph) == set(tasks) - {"plan_score_shards", "combine_shards"}
    for name in graph:
        assert _ancestors(graph, name) == _ancestors({t: v["upstream"] for t, v in tasks.items()}, name) - {
            "plan_score_shards", "combine_shards"}, name


def _ancestors(upstream: dict, name: str) -> set[str]:
    seen: set[str] = set()
    stack = list(upstream[name])
    while stack:
        task = stack.pop()
        if task not in seen:
            seen.add(task)
            stack.extend(upstream[task])
    return seen
