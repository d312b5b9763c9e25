"""customer_health_daily: extract -> validate -> signals -> score -> archive -> playbooks -> publish.

Scoring is mapped over account shards (``HEALTHSCORE_SCORE_SHARDS``, 1 by default; see
``healthscore.pipeline.score``): ``plan_score_shards`` lists them, one ``score_and_archive`` per shard, and
``combine_shards`` writes the Parquet partitions from the shards' parts once all have succeeded.

A source whose API lets a batch be cut (HubSpot by modification-date windows, Mixpanel by days) is extracted
as ``plan_extract_<source>`` -> ``fetch_<source>[part]`` -> ``extract_<source>``: ``HEALTHSCORE_EXTRACT_PARTS``
parts (1 by default) pulled side by side, landed with the cursor in one transaction by ``extract_<source>``
(``healthscore.pipeline.extract_parts``).

Thin wiring only: every step is a function in ``healthscore.pipeline``. Runs are strictly sequential:
each batch resumes from the cursors the previous batch committed, scores against the history it
archived, and sees its CRM writes. ``max_active_runs=1`` holds scheduled runs; a backfill has its own
concurrency (10 runs by default), so ``prepare_warehouse`` waits for the whole previous run
(``wait_for_downstream`` with ``run_playbooks``, the last task, directly downstream of it).
Backfill with ``airflow backfill create ... --reprocess-behavior failed``; against the sandbox the
batch instant is sent as the sandbox clock, so history replays exactly.

The extract and validate tasks, their connections and pools come from the source registry
(``healthscore.sources.registry``, standard library only: cheap at parse time). A source whose quality
checks read another source's batch (``references``: the CRM's known companies) runs after that
source's extraction: its extraction when it validates while streaming, else its validation.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from healthscore.sources import registry

SOURCES = {spec.name: spec for spec in registry.sources()}
LANDING_ASSETS = {name: Asset(f"healthscore://warehouse/landing/{name}") for name in SOURCES}
VALIDATED_ASSETS = {name: Asset(f"healthscore://warehouse/validated/{name}") for name in SOURCES}
SCORES_ASSET = Asset("healthscore://warehouse/health_scores")
OUTCOMES_ASSET = Asset("healthscore://warehouse/renewal_outcomes")
CRM_WRITES_POOL = "crm_writes"  # one deliverer at a time: exactly-once recovery searches the CRM first


@dag(
    dag_id="customer_health_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 9, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["healthscore"],
    doc_md=__doc__,
)
def customer_health_daily():
    @task(depends_on_past=True, wait_for_downstream=True)
    def prepare_warehouse(**context) -> dict:
        """Alembic migrations (a no-op at head) and the configured model version registered."""
        from healthscore.pipeline.tasks import run_prepare

        return run_prepare(context)

    def extract_task(name: str, conn_id: str, pool: str):
        @task(task_id=f"extract_{name}", pool=pool, outlets=[LANDING_ASSETS[name]], depends_on_past=True)
        def extract(**context) -> list[dict]:
            from healthscore.pipeline.tasks import run_extract

            return run_extract(name, conn_id, context)

        return extract()

    def split_extract_tasks(name: str, conn_id: str, pool: str):
        """A source whose API lets a batch be cut (``split`` in the registry): the parts planned from the committed
        cursors, one mapped fetch per part (in the vendor's pool), then ``extract_<source>`` lands them all with
        the cursor in one transaction (``healthscore.pipeline.extract_parts``). Returns (first, landing) task."""

        @task(task_id=f"plan_extract_{name}", depends_on_past=True)
        def plan(**context) -> list[dict]:
            from healthscore.pipeline.tasks import run_extract_plan

            return run_extract_plan(name, context)

        @task(task_id=f"fetch_{name}", pool=pool)
        def fetch(part: dict, **context) -> dict:
            from healthscore.pipeline.tasks import run_extract_fetch

            return run_extract_fetch(name, conn_id, part, context)

        @task(task_id=f"extract_{name}", outlets=[LANDING_ASSETS[name]], depends_on_past=True)
        def land(planned: list[dict], fetched: list[dict], **context) -> list[dict]:
            from healthscore.pipeline.tasks import run_extract_land

            return run_extract_land(name, context, plan=list(planned))

        planned = plan()
        return planned, land(planned, fetch.expand(part=planned))

    def validate_task(name: str):
        @task(task_id=f"validate_{name}", outlets=[VALIDATED_ASSETS[name]])
        def validate(**context) -> list[dict]:
            from healthscore.pipeline.tasks import run_validate

            return run_validate(name, context)

        return validate()

    @task
    def build_signals(**context) -> dict:
        """account_signals for the batch: point-in-time, blocked sources carried forward and flagged."""
        from healthscore.pipeline.tasks import run_signals

        return run_signals(context)

    @task
    def plan_score_shards(**context) -> list[dict]:
        """The account shards to score (``HEALTHSCORE_SCORE_SHARDS``): one mapped score_and_archive each."""
        from healthscore.pipeline.tasks import run_score_plan

        return run_score_plan(context)

    @task
    def score_and_archive(shard: int, shards: int, **context) -> dict:
        """One shard's accounts: champion and shadow challengers scored; history upserted, Parquet rows written."""
        from healthscore.pipeline.tasks import run_score

        return run_score(context, shard=shard, shards=shards)

    @task(outlets=[SCORES_ASSET])
    def combine_shards(shard_results: list[dict], **context) -> dict:
        """After every shard: the Parquet partition per model from the shards' parts (one shard wrote it itself)."""
        from healthscore.pipeline.tasks import run_combine_shards

        return run_combine_shards(context, shard_results)

    @task(outlets=[OUTCOMES_ASSET])
    def record_outcomes(**context) -> dict:
        """Renewal outcomes (renewed / churned / contracted / expanded) from CRM deals and Stripe, both sides kept."""
        from healthscore.pipeline.tasks import run_outcomes

        return run_outcomes(context)

    @task(pool=CRM_WRITES_POOL, retries=3, retry_delay=timedelta(minutes=2))
    def run_playbooks(**context) -> dict:
        """Crossings -> CRM tasks exactly once, digests and alerts, CRM health fields on change."""
        from healthscore.pipeline.tasks import run_act

        return run_act(SOURCES["hubspot"].conn_id, context)

    migrated = prepare_warehouse()
    firsts, extracts = {}, {}  # per source: its first extraction task, and the one that lands the batch
    for name, spec in SOURCES.items():
        if spec.split:
            firsts[name], extracts[name] = split_extract_tasks(name, spec.conn_id, spec.pool)
        else:
            firsts[name] = extracts[name] = extract_task(name, spec.conn_id, spec.pool)
    validations = {name: validate_task(name) for name in SOURCES}
    for name, spec in SOURCES.items():
        migrated >> firsts[name]
        extracts[name] >> validations[name]
        for ref in spec.references:  # referential checks need that source's batch landed first
            if ref != name:
                extracts[ref] >> (firsts[name] if spec.streams_validation else validations[name])
    act = run_playbooks()
    signals = build_signals()
    list(validations.values()) >> signals
    plan = plan_score_shards()
    signals >> plan
    scored = score_and_archive.expand_kwargs(plan)
    combined = combine_shards(scored)
    scored >> act  # every shard's warehouse rows are in before the playbooks read them
    combined >> act
    # Outcomes read the validated deals and subscriptions; upstream of the last task, so the next run waits.
    [validations["hubspot"], validations["stripe"]] >> record_outcomes() >> act
    migrated >> act  # so the next run's prepare_warehouse waits for this run's last task too


customer_health_daily()
