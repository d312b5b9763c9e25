"""Extraction cut into parts (``pipeline.extract_parts``) lands what the unsplit extraction lands, against the sandbox
over HTTP: HubSpot by modification-date windows, Mixpanel by days (validated while streaming, bad records quarantined).

Three warehouses land the same two batches (a first full load, then five weeks of changes): unsplit
(``extract_source``), split in 3 parts, and split in 3 parts with crashes (a part that fails, a landing that fails
half-way through its transaction) and retries. Every landing table, the record index, the cursors, the quarantine,
the quality results and the landed counts must be equal; a rerun of a date too.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from healthscore.batch import Batch
from healthscore.pipeline import extract, extract_parts
from healthscore.pipeline.extract import extract_source
from healthscore.pipeline.extract_parts import PartMissing, fetch_part, land_parts, plan_parts, staging_root
from healthscore.pipeline.validate import QualityPaths, build_context
from healthscore.sources import registry
from healthscore.sources.hubspot import HubSpotSource
from healthscore.warehouse import make_engine, upgrade
from healthscore.warehouse.models import (
    ExtractRun,
    LandingRecordIndex,
    MixpanelUsageDaily,
    QualityResult,
    Quarantine,
    SourceCursor,
    landing_table,
)
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state
from tests.integration.airflow_harness import landing_snapshot, table_rows
from tests.integration.test_sources import connections

pytestmark = pytest.mark.slow

DAYS = (date(2026, 8, 25), date(2026, 9, 30))  # a first full load, then five weeks of changes
SOURCES = ("hubspot", "mixpanel")  # the splittable ones; Mixpanel validates against HubSpot's companies
BACKFILL_DAYS = 5
PARTS = 3
MANY = 48  # HubSpot windows of under a day over five weeks: some hold nothing
ADMIN = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}
WALL_CLOCK = {"id", "created_at", "updated_at", "started_at", "finished_at", "pages", "retries"}


def batch_for(day: date) -> Batch:
    return Batch(day, datetime.combine(day + timedelta(days=1), time(), UTC), f"parts-{day.isoformat()}")


def validation(engine: sa.Engine, source: str, batch: Batch, data_dir: Path):
    if not registry.source(source).streams_validation:
        return None
    return build_context(engine, source, batch, QualityPaths.under(data_dir), publish_docs=False)


def warehouse(tmp: Path, name: str) -> tuple[str, sa.Engine]:
    url = f"sqlite:///{tmp / f'{name}.db'}"
    upgrade(url)
    return url, make_engine(url)


def fetch(base: str, engine: sa.Engine, source: str, part: dict, batch: Batch, data_dir: Path) -> dict:
    """One fetch task: its own client, as a mapped task in its own process has."""
    spec = registry.source(source)
    with spec.client_class()(connections(base)[source], as_of=batch.as_of) as client:
        return fetch_part(client, part, batch, staging_root(data_dir), validation(engine, source, batch, data_dir))


def split_extract(base: str, engine: sa.Engine, source: str, batch: Batch, data_dir: Path,
                  parts: int = PARTS) -> list[dict]:
    plan = plan_parts(source, engine, batch, parts, backfill_days=BACKFILL_DAYS)
    manifests = [fetch(base, engine, source, part, batch, data_dir) for part in plan]
    land_parts(source, engine, batch, plan, staging_root(data_dir))
    return [{"plan": part, "manifest": manifest} for part, manifest in zip(plan, manifests, strict=True)]


def snapshot(url: str) -> dict:
    """Everything a batch lands, without wall-clock stamps and request counts."""
    out = {name: rows for name, rows in landing_snapshot(url).items() if rows}
    out.update(table_rows(url, [LandingRecordIndex, SourceCursor, Quarantine, QualityResult, ExtractRun],
                          WALL_CLOCK))
    for name in ("quarantine", "quality_results"):
        out[name] = sorted(out[name], key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return out


def batch_rows(engine: sa.Engine, day: date, source: str) -> dict[str, int]:
    """A source's rows of ``day`` in its landing tables and cursors: what a failed landing must not have written."""
    tables = [landing_table(s, obj) for s, obj in registry.landing_objects() if s == source]
    if source == "mixpanel":
        tables.append(MixpanelUsageDaily.__table__)
    counts = {}
    with engine.connect() as conn:
        for table in tables:
            counts[table.name] = conn.execute(sa.select(sa.func.count()).select_from(table)
                                              .where(table.c.batch_date == day)).scalar_one()
        counts["source_cursors"] = conn.execute(sa.select(sa.func.count()).select_from(SourceCursor).where(
            SourceCursor.source == source, SourceCursor.batch_date == day)).scalar_one()
    return counts


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("parts")
    out: dict = {"plans": {}}
    state = build_state(SandboxOptions(seed=5, accounts=400, rate_limit_scale=1000))
    with pytest.MonkeyPatch.context() as mp, ThreadedSandbox(state) as sandbox:
        mp.setenv("GX_ANALYTICS_ENABLED", "false")
        requests.post(f"{sandbox.url}/_sandbox/faults", headers=ADMIN, json={"bad_record_rate": 0.03, "seed": 2},
                      timeout=5).raise_for_status()
        base = sandbox.url
        url, engine = warehouse(tmp, "unsplit")
        for day in DAYS:
            for source in SOURCES:
                batch = batch_for(day)
                extract_source(source, connections(base)[source], engine, batch,
                               validation=validation(engine, source, batch, tmp / "unsplit"),
                               mixpanel_backfill_days=BACKFILL_DAYS)
        out["unsplit"] = snapshot(url)
        engine.dispose()

        url, engine = warehouse(tmp, "split")
        for day in DAYS:
            for source in SOURCES:
                out["plans"][(source, day)] = split_extract(base, engine, source, batch_for(day), tmp / "split")
        out["split"] = snapshot(url)
        split_extract(base, engine, "hubspot", batch_for(DAYS[-1]), tmp / "split")  # a rerun of the last date
        split_extract(base, engine, "mixpanel", batch_for(DAYS[-1]), tmp / "split")
        out["rerun"] = snapshot(url)
        out["staged_dates"] = sorted(p.name for p in (staging_root(tmp / "split") / "hubspot").iterdir())
        engine.dispose()

        url, engine = warehouse(tmp, "many")  # so many windows that some are empty: the cursor must not move
        for day in DAYS:
            for source in SOURCES:
                out["plans"][(source, day, "many")] = split_extract(base, engine, source, batch_for(day),
                                                                    tmp / "many", parts=MANY)
        out["many"] = snapshot(url)
        engine.dispose()

        url, engine = warehouse(tmp, "crash")
        data_dir = tmp / "crash"
        for source in SOURCES:
            split_extract(base, engine, source, batch_for(DAYS[0]), data_dir)
        batch = batch_for(DAYS[1])
        out["crash"] = {}
        for source in SOURCES:
            plan = plan_parts(source, engine, batch, PARTS, backfill_days=BACKFILL_DAYS)
            fetch(base, engine, source, plan[0], batch, data_dir)
            with mp.context() as broken:  # part 1 dies part-way (the vendor's connection drops for good)
                def drop(*args, **kwargs):
                    raise ConnectionAbortedError("worker lost")

                broken.setattr(requests.Session, "request", drop)
                with pytest.raises(ConnectionAbortedError):
                    fetch(base, engine, source, plan[1], batch, data_dir)
            with pytest.raises(PartMissing):  # the landing refuses: parts 1 and 2 are not staged
                land_parts(source, engine, batch, plan, staging_root(data_dir))
            out["crash"][(source, "after failed part")] = batch_rows(engine, DAYS[1], source)
            for part in plan[1:]:  # the failed part retried, the last one run; part 0 is not pulled again
                fetch(base, engine, source, part, batch, data_dir)
            with mp.context() as broken:  # the landing dies after the first objects were written in its transaction
                calls = []

                def save_then_die(conn, *args, real=extract_parts._save_cursor, calls=calls,
                                  last=1 if source == "mixpanel" else 3, **kwargs):
                    real(conn, *args, **kwargs)
                    calls.append(args)
                    if len(calls) == last:  # HubSpot: after companies, contacts and deals were written
                        raise OSError("worker killed mid-landing")

                broken.setattr(extract_parts, "_save_cursor", save_then_die)
                broken.setattr(extract, "_save_cursor", save_then_die)  # Mixpanel's landing: extract.land_usage
                with pytest.raises(OSError, match="mid-landing"):
                    land_parts(source, engine, batch, plan, staging_root(data_dir))
            out["crash"][(source, "after failed landing")] = batch_rows(engine, DAYS[1], source)
            land_parts(source, engine, batch, plan, staging_root(data_dir))
            land_parts(source, engine, batch, plan, staging_root(data_dir))  # the landing retried after its commit
        out["crashed"] = snapshot(url)
        engine.dispose()
    yield out


def test_split_extraction_really_splits(landed):
    """Otherwise the equality below would prove nothing: several parts, each pulling records."""
    plans = landed["plans"]
    first = plans[("hubspot", DAYS[0])]  # a full load cannot be cut by date: objects spread over the parts
    assert len(first) == PARTS and all(p["plan"]["objects"] for p in first)
    assert all(o["window"] is None for p in first for o in p["plan"]["objects"])
    increment = plans[("hubspot", DAYS[1])]
    windows = {}
    for p in increment:
        for entry, item in zip(p["manifest"]["objects"], p["plan"]["objects"], strict=True):
            if item["window"] is not None:
                windows.setdefault(item["object"], []).append(entry["records"])
    assert set(windows) == {"companies", "contacts", "deals", "meetings"}
    assert all(len(counts) == PARTS for counts in windows.values())
    assert sum(1 for counts in windows.values() for n in counts if n) >= 2 * PARTS, windows
    for day in DAYS:
        days = [p["plan"]["objects"][0]["days"] for p in plans[("mixpanel", day)]]
        assert len(days) == PARTS and all(days)
        assert [d for run in days for d in run] == sorted(d for run in days for d in run)  # consecutive runs
        assert all(p["manifest"]["objects"][0]["records"] for p in plans[("mixpanel", day)])


def test_split_lands_what_the_unsplit_extraction_lands(landed):
    unsplit, split = landed["unsplit"], landed["split"]
    assert set(split) == set(unsplit)
    assert unsplit["raw_hubspot_companies"] and unsplit["raw_mixpanel_usage_daily"]
    assert any(r["source"] == "mixpanel" for r in unsplit["quarantine"]), "no event quarantined: the test is weak"
    tombstones = [row for obj in ("deals", "meetings") for row in unsplit[f"raw_hubspot_{obj}"]
                  if row[1] == str(DAYS[1]) and json.loads(row[3]).get("archived") is True]
    assert tombstones, "no deal or meeting deleted in the increment: the test is weak"
    for name in unsplit:
        assert split[name] == unsplit[name], name


def test_empty_windows_leave_the_cursor_where_the_records_put_it(landed):
    counts = [e["records"] for p in landed["plans"][("hubspot", DAYS[1], "many")] for e in p["manifest"]["objects"]
              if e["object"] == "companies"]
    assert len(counts) == MANY and 0 in counts  # an empty window among them
    for name in landed["unsplit"]:
        assert landed["many"][name] == landed["unsplit"][name], name


def test_a_rerun_of_a_date_lands_the_same(landed):
    assert landed["rerun"] == landed["split"]
    assert landed["staged_dates"] == [DAYS[-1].isoformat()]  # earlier batches' parts removed once landed


def test_a_crash_between_parts_lands_nothing_and_the_retry_lands_once(landed):
    for key, counts in landed["crash"].items():
        assert set(counts.values()) == {0}, (key, counts)
    crashed, unsplit = landed["crashed"], landed["unsplit"]
    for name in unsplit:
        assert crashed[name] == unsplit[name], name


def test_a_stale_plan_is_refused(tmp_path, landed):
    """A plan made before another landing of the date's predecessor moved the cursor is not landed."""
    url, engine = warehouse(tmp_path, "stale")
    batch = batch_for(DAYS[1])
    stale = [{**p["plan"], "objects": [{**o, "start_cursor": "1"} for o in p["plan"]["objects"]]}
             for p in landed["plans"][("hubspot", DAYS[1])]]
    with pytest.raises(extract_parts.StalePlan):
        land_parts("hubspot", engine, batch, stale, staging_root(tmp_path))
    engine.dispose()


def test_a_landing_takes_the_sqlite_write_lock_before_it_reads_the_cursors(tmp_path, landed, monkeypatch):
    """The bootstrap's workers land side by side on SQLite. A landing that read its cursors in a deferred
    transaction failed its first write with "database is locked" once another landing had committed (the 60-day
    test, 2026-12-08): it must hold the write lock from BEGIN, so others wait for it (busy timeout) instead."""
    url, engine = warehouse(tmp_path, "lock")
    path = url.removeprefix("sqlite:///")
    real, probes = extract_parts.previous_cursor, []

    def cursor_then_probe(conn, *args):
        value = real(conn, *args)
        other = sqlite3.connect(path, timeout=0)
        try:
            other.execute("CREATE TABLE probe_writer (x INTEGER)")
            probes.append("written beside the landing")
        except sqlite3.OperationalError as exc:
            probes.append(str(exc))
        finally:
            other.close()
        return value

    monkeypatch.setattr(extract_parts, "previous_cursor", cursor_then_probe)
    stale = [{**p["plan"], "objects": [{**o, "start_cursor": "1"} for o in p["plan"]["objects"]]}
             for p in landed["plans"][("hubspot", DAYS[1])]]
    with pytest.raises(extract_parts.StalePlan):
        land_parts("hubspot", engine, batch_for(DAYS[1]), stale, staging_root(tmp_path))
    engine.dispose()
    assert probes == ["database is locked"], probes


def test_hubspot_window_bounds_partition_the_increment():
    windows = extract_parts._windows(1_000, 10_000, 3)
    assert windows == [(1_000, 4_000), (4_000, 7_000), (7_000, None)]
    assert extract_parts._windows(1_000, 1_001, 3) == [(1_000, None)]
    assert extract_parts._even_runs(list(range(5)), 3) == [[0, 1], [2, 3], [4]]
    assert extract_parts._even_runs(list(range(2)), 3) == [[0], [1]]
    assert HubSpotSource.window_pages  # the client method the windows are pulled with
