"""customer_health_daily: extract the four sources, validate each batch with Great Expectations.

Thin wiring only: every step is a function in ``healthscore.pipeline``. Runs are sequential
(``max_active_runs=1``, ``depends_on_past`` on extraction) because each batch resumes from the cursor
the previous batch committed; catchup replays history through the sandbox clock.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

SOURCES = {
    "hubspot": ("crm_hubspot", "hubspot_api"),
    "zendesk": ("support_zendesk", "zendesk_api"),
    "stripe": ("billing_stripe", "stripe_api"),
    "mixpanel": ("product_mixpanel", "mixpanel_api"),
}
LANDING_ASSETS = {name: Asset(f"healthscore://warehouse/landing/{name}") for name in SOURCES}
VALIDATED_ASSETS = {name: Asset(f"healthscore://warehouse/validated/{name}") for name in SOURCES}


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
    @task
    def migrate_warehouse() -> None:
        """Schema changes only through Alembic; a no-op when already at head."""
        from healthscore.pipeline.runtime import warehouse_engine

        warehouse_engine(migrate=True).dispose()

    def extract_task(name: str, conn_id: str, pool: str):
        @task(task_id=f"extract_{name}", pool=pool, outlets=[LANDING_ASSETS[name]], depends_on_past=True)
        def extract(**context) -> list[dict]:
            from healthscore.pipeline.tasks import run_extract

            return run_extract(name, conn_id, context)

        return extract()

    def validate_task(name: str):
        @task(task_id=f"validate_{name}", outlets=[VALIDATED_ASSETS[name]])
        def validate(**context) -> list[dict]:
            from healthscore.pipeline.tasks import run_validate

            return run_validate(name, context)

        return validate()

    migrated = migrate_warehouse()
    extracts = {name: extract_task(name, conn_id, pool) for name, (conn_id, pool) in SOURCES.items()}
    validations = {name: validate_task(name) for name in SOURCES}
    for name in SOURCES:
        migrated >> extracts[name] >> validations[name]
    # Referential checks need the CRM batch: Mixpanel validates its events while it streams them.
    extracts["hubspot"] >> [extracts["mixpanel"], validations["zendesk"], validations["stripe"]]


customer_health_daily()
