"""A small warehouse for the UI tests, filled by the product's own pipeline functions.

One batch of the daily pipeline runs in-process against a threaded sandbox (extract, validate, signals), with
Stripe partly corrupted so records are quarantined and the Data Docs are GX's own. The month of history before
it is that day's signals moved back along each signal's direction (a third of the accounts were better, a third
worse), stored and scored with ``store_signals`` and ``score_batch``; then the last day is scored and acted on
(playbook events, CRM tasks, CRM fields in the sandbox). Extracting a month of days would cost minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import requests
import sqlalchemy as sa

from healthscore.pipeline.extract import Batch, extract_source
from healthscore.pipeline.validate import QualityPaths, build_context, validate_source
from healthscore.sources import SourceConnection
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

SOURCES = ("hubspot", "zendesk", "stripe", "mixpanel")
#: The extracted batch; the history is scored for HISTORY_DAYS before it.
LAST_DAY = date(2026, 9, 30)
HISTORY_DAYS = (35, 30, 25, 20, 15, 10, 7, 5, 3, 2, 1)
ADMIN = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}


def batch_for(day: date) -> Batch:
    return Batch(day, datetime.combine(day + timedelta(days=1), time(), UTC), f"ui-{day.isoformat()}")


def connections(base: str) -> dict[str, SourceConnection]:
    extra = {"sandbox": True}
    return {
        "hubspot": SourceConnection("crm_hubspot", base, password=cred.HUBSPOT_TOKEN, extra=extra),
        "zendesk": SourceConnection("support_zendesk", base, cred.ZENDESK_EMAIL, cred.ZENDESK_API_TOKEN, extra),
        "stripe": SourceConnection("billing_stripe", base, password=cred.STRIPE_SECRET_KEY, extra=extra),
        "mixpanel": SourceConnection("product_mixpanel", base, cred.MIXPANEL_SERVICE_ACCOUNT, cred.MIXPANEL_SECRET,
                                     {**extra, "project_id": cred.MIXPANEL_PROJECT_ID}),
    }


@dataclass
class World:
    """The seeded warehouse, its data folder and the sandbox still serving its CRM."""

    url: str
    data_dir: Path
    sandbox: ThreadedSandbox
    engine: sa.Engine

    @property
    def sandbox_url(self) -> str:
        return self.sandbox.url

    def run_day(self, day: date, *, faults: dict | None = None) -> dict:
        """One daily batch through the product's pipeline functions (no Airflow); the act summary."""
        return run_pipeline_day(self.engine, self.sandbox.url, self.data_dir, day, faults=faults)

    def company(self, account_id: str) -> dict:
        """The CRM company's health properties as the sandbox serves them."""
        response = requests.post(f"{self.sandbox.url}/crm/v3/objects/companies/search",
                                 headers={"Authorization": f"Bearer {cred.HUBSPOT_TOKEN}"}, timeout=10, json={
                                     "filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "EQ",
                                                                    "value": account_id}]}],
                                     "properties": ["health_score", "health_band", "health_trend",
                                                    "health_score_computed", "health_score_override_reason"]})
        response.raise_for_status()
        return response.json()["results"][0]["properties"]


def land_day(engine: sa.Engine, base: str, data_dir: Path, day: date, *, faults: dict | None = None) -> None:
    """Extract and validate every source for one batch, then build and store its signals."""
    from healthscore.config import load_model_config
    from healthscore.pipeline.signals import build_signals, store_signals
    from healthscore.warehouse.registry import register_model_version

    model = load_model_config()
    register_model_version(engine, model)
    batch = batch_for(day)
    paths = QualityPaths.under(data_dir)
    conns = connections(base)
    for source in SOURCES:
        validation = build_context(engine, source, batch, paths) if source == "mixpanel" else None
        if faults and source in faults:
            requests.post(f"{base}/_sandbox/faults", headers=ADMIN, json=faults[source], timeout=5).raise_for_status()
        try:
            extract_source(source, conns[source], engine, batch, validation=validation, mixpanel_backfill_days=35)
        finally:
            if faults and source in faults:
                requests.post(f"{base}/_sandbox/faults", headers=ADMIN, json={}, timeout=5).raise_for_status()
        validate_source(source, engine, batch, paths)
    store_signals(engine, build_signals(engine, batch.as_of, day, model))


def score_and_act(engine: sa.Engine, base: str, data_dir: Path, day: date) -> dict:
    """The score and act tasks of one batch (signals already stored)."""
    from healthscore.pipeline.act import act
    from healthscore.pipeline.score import score_batch
    from healthscore.pipeline.signals import load_signals
    from healthscore.pipeline.tasks import ACT_AFTER_CUTOFF
    from healthscore.playbooks.notifiers import default_outbox_path
    from healthscore.sources import HubSpotSource

    batch = batch_for(day)
    score_batch(engine, load_signals(engine, day), batch, archive_url=f"file://{(data_dir / 'archive').resolve()}")
    with HubSpotSource(connections(base)["hubspot"], as_of=batch.as_of + ACT_AFTER_CUTOFF) as hubspot:
        return act(engine, batch, hubspot.client, default_outbox_path(data_dir))


def run_pipeline_day(engine: sa.Engine, base: str, data_dir: Path, day: date, *, faults: dict | None = None) -> dict:
    land_day(engine, base, data_dir, day, faults=faults)
    return score_and_act(engine, base, data_dir, day)


def synthesize_history(engine: sa.Engine, data_dir: Path, day: date, days_back: tuple[int, ...]) -> None:
    """Score earlier dates from ``day``'s signals moved along each signal's direction, oldest first.

    Accounts ``i % 3 == 0`` were better before (they decline into today), ``i % 3 == 1`` worse (they improve),
    the rest were as today. The shift grows with the distance to ``day``.
    """
    import numpy as np

    from healthscore.config import load_model_config
    from healthscore.pipeline.score import score_batch
    from healthscore.pipeline.signals import load_signals, store_signals

    model = load_model_config()
    today = load_signals(engine, day)
    group = np.arange(len(today)) % 3
    for back in sorted(days_back, reverse=True):
        past = today.copy()
        past["as_of_date"] = day - timedelta(days=back)
        if "tenure_days" in past:
            past["tenure_days"] = (past["tenure_days"] - back).clip(lower=0)
        share = min(1.0, back / 30)
        for dimension in model.dimensions.values():
            for signal_id, signal in dimension.signals.items():
                if signal_id not in past:
                    continue
                good = signal.cap if signal.direction.value == "higher_is_better" else signal.floor
                bad = signal.floor if signal.direction.value == "higher_is_better" else signal.cap
                values = past[signal_id].to_numpy(dtype=float, copy=True)
                target = np.where(group == 0, good, np.where(group == 1, bad, values))
                past[signal_id] = values + (target - values) * 0.6 * share
        store_signals(engine, past)
        score_batch(engine, load_signals(engine, past["as_of_date"].iloc[0]), batch_for(past["as_of_date"].iloc[0]),
                    archive_url=f"file://{(data_dir / 'archive').resolve()}")


@contextmanager
def seeded_world(data_dir: Path, url: str | None = None, accounts: int = 60, seed: int = 11) -> Iterator[World]:
    """A warehouse with ``LAST_DAY`` landed (Stripe partly bad), a month of history, and that day acted on."""
    from healthscore.warehouse import make_engine, upgrade

    data_dir.mkdir(parents=True, exist_ok=True)
    url = url or f"sqlite:///{(data_dir / 'warehouse.db').resolve()}"
    upgrade(url)
    engine = make_engine(url)
    state = build_state(SandboxOptions(seed=seed, accounts=accounts, rate_limit_scale=1000))
    try:
        with ThreadedSandbox(state) as sandbox:
            world = World(url, data_dir, sandbox, engine)
            land_day(engine, sandbox.url, data_dir, LAST_DAY, faults={"stripe": {"seed": 5, "bad_record_rate": 0.05}})
            synthesize_history(engine, data_dir, LAST_DAY, HISTORY_DAYS)
            score_and_act(engine, sandbox.url, data_dir, LAST_DAY)
            yield world
    finally:
        engine.dispose()
