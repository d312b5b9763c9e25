"""HubSpot deals and meetings read incrementally (search + v4 associations + archived tombstones) give the
same point-in-time records as the full snapshots they replace, deletions included, for far fewer requests.

Two warehouses land the same sandbox days: one with deals/meetings listed in full every batch (the old
mode), one incrementally (the default). Every point-in-time read the signals make must agree, including a
past date rebuilt after later batches landed tombstones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest
import requests
import sqlalchemy as sa

from healthscore.pipeline import signals
from healthscore.pipeline.extract import Batch, extract_source
from healthscore.pipeline.signals import PointInTime, read_versions
from healthscore.pipeline.validate import QualityPaths, validate_source
from healthscore.sources import registry
from healthscore.sources.hubspot import HubSpotSource
from healthscore.warehouse import make_engine, upgrade
from healthscore.warehouse.models import Quarantine, landing_table
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state
from tests.integration.test_sources import connections

pytestmark = pytest.mark.slow

DAYS = (date(2026, 8, 25), date(2026, 9, 12), date(2026, 9, 30))
ADMIN = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}
SINCE = {"deals": signals.EXPANSION_DAYS, "meetings": signals.QBR_LOOKBACK_DAYS}


def batch_for(day: date) -> Batch:
    return Batch(day, datetime.combine(day + timedelta(days=1), time(), UTC), f"crm-{day.isoformat()}")


def hubspot_requests(base: str) -> int:
    stats = requests.get(f"{base}/_sandbox/stats", headers=ADMIN, timeout=5).json()["requests"]
    return int(stats.get("hubspot", 0))


def pit_records(engine: sa.Engine, obj: str, day: date) -> list[str]:
    """What the signals read for ``obj`` on ``day``: the records (canonical JSON), window as in _read_inputs."""
    batch = batch_for(day)
    pit = PointInTime(day, batch.as_of)
    since = datetime.fromtimestamp(pit.since(SINCE[obj]), UTC)
    with engine.connect() as conn:
        return sorted(json.dumps(r, sort_keys=True) for r in read_versions(conn, "hubspot", obj, pit, since))


def _old_modes(cls: type[HubSpotSource], obj: str) -> str:
    """Deals and meetings as the full snapshots they were before the v4 associations."""
    return "snapshot" if obj in SINCE else registry.source("hubspot").mode(obj)


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("incremental")
    state = build_state(SandboxOptions(seed=5, accounts=400, rate_limit_scale=1000))
    out: dict = {"requests": {}, "reads": {}, "quarantined": {}}
    with pytest.MonkeyPatch.context() as mp, ThreadedSandbox(state) as sandbox:
        mp.setenv("GX_ANALYTICS_ENABLED", "false")
        requests.post(f"{sandbox.url}/_sandbox/faults", headers=ADMIN, json={"bad_record_rate": 0.03, "seed": 2},
                      timeout=5).raise_for_status()
        conn = connections(sandbox.url)["hubspot"]
        for mode in ("snapshot", "incremental"):
            if mode == "snapshot":  # the old way, for reference
                mp.setattr(HubSpotSource, "mode", classmethod(_old_modes))
                mp.setattr(signals, "SNAPSHOT_OBJECTS", signals.SNAPSHOT_OBJECTS | {("hubspot", "deals"),
                                                                                   ("hubspot", "meetings")})
            else:
                mp.undo()
                mp.setenv("GX_ANALYTICS_ENABLED", "false")
            url = f"sqlite:///{tmp / f'{mode}.db'}"
            upgrade(url)
            engine = make_engine(url)
            paths = QualityPaths.under(tmp / mode)
            for day in DAYS:
                before = hubspot_requests(sandbox.url)
                extract_source("hubspot", conn, engine, batch_for(day))
                out["requests"][(mode, day)] = hubspot_requests(sandbox.url) - before
                validate_source("hubspot", engine, batch_for(day), paths)
                for obj in SINCE:
                    out["reads"][(mode, obj, day)] = pit_records(engine, obj, day)
            # A past date rebuilt after every later batch (and tombstone) landed.
            for obj in SINCE:
                out["reads"][(mode, obj, "rebuilt")] = pit_records(engine, obj, DAYS[1])
            with engine.connect() as c:
                out["quarantined"][mode] = c.execute(
                    sa.select(Quarantine.record_id, Quarantine.object).where(Quarantine.source == "hubspot")
                    .distinct()).all()
            out[mode] = engine
        out["world"] = state.world
        yield out
        for mode in ("snapshot", "incremental"):
            out[mode].dispose()


@pytest.mark.parametrize("obj", ["deals", "meetings"])
def test_incremental_reads_equal_the_snapshot_reads_every_day(warehouses, obj):
    for day in DAYS:
        snap, inc = warehouses["reads"][("snapshot", obj, day)], warehouses["reads"][("incremental", obj, day)]
        assert snap and inc == snap, f"{obj} on {day}: {len(inc)} incremental vs {len(snap)} snapshot records"
    assert warehouses["reads"][("incremental", obj, "rebuilt")] == warehouses["reads"][("incremental", obj, DAYS[1])]
    assert warehouses["reads"][("snapshot", obj, "rebuilt")] == warehouses["reads"][("snapshot", obj, DAYS[1])]


def test_deletions_land_as_tombstones_and_leave_the_reads(warehouses):
    engine = warehouses["incremental"]
    deleted_after_read: set[str] = set()
    for obj in SINCE:
        table = landing_table("hubspot", obj)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.record_id, table.c.batch_date, table.c.payload)
                                .where(table.c.batch_date > DAYS[0])).all()
        tombstones = {r.record_id for r in rows if json.loads(r.payload).get("archived") is True}
        assert tombstones, f"no {obj} was deleted between the batches: the test would prove nothing"
        # Records read on an earlier day and deleted later are gone from the last day's read.
        earlier = {json.loads(r)["id"] for day in DAYS[:-1] for r in warehouses["reads"][("incremental", obj, day)]}
        last = {json.loads(r)["id"] for r in warehouses["reads"][("incremental", obj, DAYS[-1])]}
        assert not tombstones & last
        deleted_after_read.update(tombstones & earlier)
    assert deleted_after_read, "no record was read and then deleted: the reads were never put to the test"
    # Tombstones are not validated (nothing to check), so they are never quarantined; the bad records are
    # the same in both modes.
    assert set(warehouses["quarantined"]["incremental"]) == set(warehouses["quarantined"]["snapshot"])


def test_incremental_days_cost_a_fraction_of_the_snapshot_requests(warehouses):
    first = warehouses["requests"][("incremental", DAYS[0])]
    assert first == warehouses["requests"][("snapshot", DAYS[0])]  # the first batch is a full load in both
    for day in DAYS[1:]:
        inc, snap = warehouses["requests"][("incremental", day)], warehouses["requests"][("snapshot", day)]
        assert inc < 0.5 * snap, (day, inc, snap)
