"""One source's extraction cut into parts pulled side by side, then landed with the cursor in one transaction.

Why: a large batch (a Mixpanel export window, a HubSpot increment) can be pulled by several workers where the
vendor's API lets it be cut. Mixpanel's raw export takes ``from_date``/``to_date``: a part is a run of days.
HubSpot's search filters on the modification date: a part is a window ``[lo, hi)`` of the increment (the last
one open-ended, as the unsplit search is). What the API cannot cut (a first full list, the owners snapshot)
goes whole to one part; several such objects spread over the parts.

The DAG runs ``plan_extract_<source> -> fetch_<source>[part] -> extract_<source>`` (the history bootstrap the
same three steps in its worker processes):

- ``plan_parts``: from the cursors the previous batch committed, exactly where ``extract_source`` starts, and
  ``HEALTHSCORE_EXTRACT_PARTS``. Deterministic: a rerun, retry or backfill of the date plans the same parts,
  named by a key that hashes the whole plan.
- ``fetch_part``: pulls one part and stages it under ``<data dir>/staging/extract/<source>/<batch>/<key>/``:
  written in a temporary directory, renamed into place once complete (a crashed part leaves no part; a retried
  one replaces it). It writes nothing to the warehouse. The staging directory must be shared by the workers,
  like the archive (compose: the ``healthscore-staging`` volume).
- ``land_parts``: once every part is staged, lands them all and writes each object's new cursor (the newest
  the parts saw), in ONE transaction, with the same functions ``extract_object`` and ``extract_mixpanel`` use.
  A missing or stale part fails before anything is written, so a crash anywhere lands nothing, and nothing
  twice. Staged parts of earlier batches are removed after the commit; this batch's stay, so a retry of the
  landing step alone lands them again, identically.

With one part (the default) a batch lands what ``extract_source`` lands; with N, the same rows
(``tests/integration/test_extract_parts.py``, against the sandbox over HTTP).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from healthscore.batch import Batch
from healthscore.pipeline.extract import (
    LANDING_CHUNK,
    MIXPANEL_TRAILING_DAYS,
    ObjectSummary,
    UsageFold,
    _landing_row,
    _record_run,
    _save_cursor,
    _Staging,
    fold_days,
    land_usage,
    mixpanel_days,
    previous_cursor,
)
from healthscore.sources import Source, registry
from healthscore.warehouse.pointintime import land_batch
from healthscore.warehouse.types import utcnow

if TYPE_CHECKING:
    from healthscore.quality.gate import ValidationContext

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
USAGE_FILE = "usage.pickle"  # written and read only by this module, in the deployment's own staging directory


class PartMissing(RuntimeError):
    """A part of the plan is not staged (its fetch failed or was never run): nothing is landed."""


class StalePlan(RuntimeError):
    """The plan was made from other cursors than the ones committed now: plan the batch again."""


def staging_root(data_dir: Path) -> Path:
    return Path(data_dir) / "staging" / "extract"


# ---- plan -------------------------------------------------------------------------------------------------
def plan_parts(source: str, engine: Engine, batch: Batch, parts: int, *, backfill_days: int,
               trailing_days: int = MIXPANEL_TRAILING_DAYS) -> list[dict[str, Any]]:
    """The parts of one source's batch (JSON, for XCom): each part lists its objects and what of each it pulls."""
    spec = registry.source(source)
    if spec.split is None:
        raise ValueError(f"source {source!r} declares no split; its extract task pulls it whole")
    parts = max(1, int(parts))
    with engine.connect() as conn:
        cursors = {obj.name: previous_cursor(conn, source, obj.name, batch.batch_date) for obj in spec.extracted_objects}
    buckets: list[list[dict]] = [[] for _ in range(parts)]
    if spec.split == "days":
        (obj,) = spec.extracted_objects
        days = mixpanel_days(cursors[obj.name], batch, trailing_days, backfill_days)
        for i, run in enumerate(_even_runs(days, parts)):
            buckets[i].append({"object": obj.name, "start_cursor": cursors[obj.name],
                               "days": [d.isoformat() for d in run]})
    else:
        whole = 0
        for obj in spec.extracted_objects:
            cursor = cursors[obj.name]
            if obj.mode == "incremental" and cursor is not None and parts > 1:
                windows = _windows(int(cursor), int(batch.as_of.timestamp() * 1000), parts)
                for i, (lo, hi) in enumerate(windows):
                    buckets[i].append({"object": obj.name, "start_cursor": cursor, "window": [lo, hi],
                                       "tombstones": hi is None})
            else:  # a full list or a snapshot: no filter to cut it by
                buckets[whole % parts].append({"object": obj.name, "start_cursor": cursor, "window": None})
                whole += 1
    filled = [b for b in buckets if b]
    key = hashlib.sha256(json.dumps([source, batch.batch_date.isoformat(), filled], sort_keys=True).encode())
    plan = [{"source": source, "batch_date": batch.batch_date.isoformat(), "key": key.hexdigest()[:16],
             "part": i, "parts": len(filled), "objects": objects} for i, objects in enumerate(filled)]
    log.info("%s for %s: %d part(s): %s", source, batch.batch_date, len(plan),
             [[_describe(o) for o in p["objects"]] for p in plan])
    return plan


def _even_runs(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` cut into at most ``parts`` consecutive runs whose sizes differ by one at most."""
    parts = min(parts, len(items)) or 1
    size, extra = divmod(len(items), parts)
    runs, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        runs.append(list(items[start:end]))
        start = end
    return runs


def _windows(since_ms: int, as_of_ms: int, parts: int) -> list[tuple[int, int | None]]:
    """[since, as_of) cut into ``parts`` equal windows; the last has no upper bound, as the unsplit search."""
    if as_of_ms - since_ms < parts:
        return [(since_ms, None)]
    bounds = [since_ms + (as_of_ms - since_ms) * i // parts for i in range(parts)]
    return [(lo, hi) for lo, hi in zip(bounds, [*bounds[1:], None], strict=True)]


def _describe(item: Mapping[str, Any]) -> str:
    if "days" in item:
        return f"{item['object']} {item['days'][0]}..{item['days'][-1]}" if item["days"] else item["object"]
    if item.get("window"):
        lo, hi = item["window"]
        return f"{item['object']} [{lo}, {hi or 'open'})"
    return f"{item['object']} (whole)"


def _part_dir(root: Path, part: Mapping[str, Any]) -> Path:
    return (Path(root) / part["source"] / part["batch_date"] / part["key"]
            / f"part-{part['part']:03d}-of-{part['parts']:03d}")


# ---- fetch ------------------------------------------------------------------------------------------------
def fetch_part(source: Source, part: Mapping[str, Any], batch: Batch, root: Path,
               validation: ValidationContext | None = None) -> dict[str, Any]:
    """Pull one part and stage it (atomically: a temporary directory renamed into place); its manifest."""
    if part["batch_date"] != batch.batch_date.isoformat():
        raise StalePlan(f"part {part['part']} is for batch {part['batch_date']}, not {batch.batch_date}")
    final = _part_dir(root, part)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.with_name(f"{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    work.mkdir()
    manifest: dict[str, Any] = {"key": part["key"], "part": part["part"], "parts": part["parts"],
                                "started_at": utcnow().isoformat(), "objects": []}
    try:
        for item in part["objects"]:
            retries0 = source.client.stats.retries
            entry = (_fetch_days(source, item, batch, work, validation) if "days" in item
                     else _fetch_records(source, item, batch, work))
            entry["retries"] = source.client.stats.retries - retries0
            manifest["objects"].append(entry)
        (work / MANIFEST).write_text(json.dumps(manifest, sort_keys=True))
        if final.exists():  # a retried part: the new pull replaces the old one
            shutil.rmtree(final)
        os.replace(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("%s part %d of %d for %s staged: %s", part["source"], part["part"] + 1, part["parts"],
             batch.batch_date, [(o["object"], o["records"]) for o in manifest["objects"]])
    return manifest


def _fetch_records(source: Source, item: Mapping[str, Any], batch: Batch, work: Path) -> dict[str, Any]:
    obj, window = item["object"], item.get("window")
    if window is None:
        pages, cursor = source.pages(obj, item["start_cursor"]), item["start_cursor"]
    else:  # only a source that declares modified_windows gets here
        tombstones = int(item["start_cursor"]) if item.get("tombstones") else None
        window_pages = source.window_pages  # type: ignore[attr-defined]
        pages, cursor = window_pages(obj, window[0], window[1], tombstones_since=tombstones), None
    staging = _Staging(work / f"{obj}.jsonl")
    count = 0
    try:
        for page in pages:
            count += 1
            for record in page.records:
                staging.add(_landing_row(source, obj, record, batch))
            cursor = page.cursor or cursor
    finally:
        staging.close()
    return {"object": obj, "records": staging.count, "pages": count, "end_cursor": cursor}


def _fetch_days(source: Source, item: Mapping[str, Any], batch: Batch, work: Path,
                validation: ValidationContext | None) -> dict[str, Any]:
    days = [date.fromisoformat(d) for d in item["days"]]
    fold = fold_days(source, days, batch, validation)  # type: ignore[arg-type]
    if validation is not None and validation.publish_docs:
        from healthscore.quality.docs import runner

        runner(validation.data_docs_dir, validation.data_docs_index_limit).publish(index=False)  # index: at landing
    with (work / USAGE_FILE).open("wb") as handle:
        pickle.dump(fold, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return {"object": item["object"], "records": len(fold.rows), "pages": len(days), "days": item["days"],
            "duplicates_dropped": fold.duplicates, "quarantined": len(fold.quarantined)}


# ---- land -------------------------------------------------------------------------------------------------
def land_parts(source: str, engine: Engine, batch: Batch, plan: Sequence[Mapping[str, Any]], root: Path,
               *, data_docs: tuple[Path, int] | None = None) -> list[ObjectSummary]:
    """Every part of the plan landed, with each object's new cursor, in one transaction; the summaries.

    ``data_docs``: (folder, index limit) whose index to rebuild after a streamed validation (the parts built
    their own pages)."""
    spec = registry.source(source)
    # Read (the cursors), then write: on SQLite take the write lock at BEGIN, so a landing beside this one (the
    # bootstrap's workers) is waited for instead of failing this unit with "database is locked".
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        for obj in spec.extracted_objects:
            start = previous_cursor(conn, source, obj.name, batch.batch_date)
            planned = {o["start_cursor"] for p in plan for o in p["objects"] if o["object"] == obj.name}
            if planned != {start}:
                raise StalePlan(f"{source}.{obj.name} for {batch.batch_date}: planned from cursor {planned}, the "
                                f"committed one is {start!r}; plan the batch again")
        manifests = _staged(root, plan, batch)
        started = min(datetime.fromisoformat(m["started_at"]) for m in manifests)
        if spec.split == "days":
            summaries = [_land_usage(conn, batch, plan, manifests, root, started)]
        else:
            summaries = [_land_object(conn, source, obj.name, batch, plan, manifests, root, started)
                         for obj in spec.extracted_objects]
    if data_docs is not None and spec.streams_validation:
        from healthscore.quality.docs import runner

        runner(*data_docs).publish_index()
    _remove_older(root, source, batch.batch_date, plan[0]["key"])
    for s in summaries:
        log.info("%s.%s: landed %d records for %s from %d part(s) (cursor %s -> %s)", s.source, s.object, s.records,
                 batch.batch_date, len(plan), s.start_cursor, s.end_cursor)
    return summaries


def _staged(root: Path, plan: Sequence[Mapping[str, Any]], batch: Batch) -> list[dict[str, Any]]:
    if not plan:
        raise PartMissing("an empty plan: plan_parts gives at least one part")
    keys = {p["key"] for p in plan}
    if len(keys) != 1 or {p["batch_date"] for p in plan} != {batch.batch_date.isoformat()}:
        raise StalePlan(f"parts from different plans or batches: {sorted(keys)}")
    manifests = []
    for part in plan:
        path = _part_dir(root, part) / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise PartMissing(f"{part['source']} part {part['part']} of {part['parts']} for {part['batch_date']} is "
                              f"not staged ({path.parent}): rerun its fetch task; nothing was landed") from None
        if manifest["key"] != part["key"]:
            raise StalePlan(f"{path} belongs to plan {manifest['key']}, not {part['key']}")
        manifests.append(manifest)
    return manifests


def _entries(plan: Sequence[Mapping[str, Any]], manifests: Sequence[Mapping[str, Any]],
             obj: str) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(part, manifest entry) of each part that pulled ``obj``, in part order (= modification-date order)."""
    return [(part, entry) for part, manifest in zip(plan, manifests, strict=True)
            for entry in manifest["objects"] if entry["object"] == obj]


def _land_object(conn: Any, source: str, obj: str, batch: Batch, plan: Sequence[Mapping[str, Any]],
                 manifests: Sequence[Mapping[str, Any]], root: Path, started: datetime) -> ObjectSummary:
    entries = _entries(plan, manifests, obj)
    summary = ObjectSummary(source, obj, start_cursor=entries[0][0]["objects"][0]["start_cursor"])
    summary.start_cursor = next(o["start_cursor"] for o in entries[0][0]["objects"] if o["object"] == obj)
    ends = [e["end_cursor"] for _, e in entries if e["end_cursor"] is not None]
    if len(entries) == 1:  # whole: the cursor the pull itself ended on, as extract_object keeps it
        summary.end_cursor = entries[0][1]["end_cursor"]
    else:  # windows: the newest modification time any of them saw (ascending search: its last page's cursor)
        summary.end_cursor = str(max(int(c) for c in ends)) if ends else summary.start_cursor
    summary.pages = sum(e["pages"] for _, e in entries)
    files = [_part_dir(root, part) / f"{obj}.jsonl" for part, _ in entries]
    summary.records = land_batch(conn, source, obj, batch.batch_date, _chunks(files))
    _save_cursor(conn, source, obj, batch, summary.end_cursor)
    _record_run(conn, summary, batch, started, summary.records, sum(e["retries"] for _, e in entries))
    return summary


def _chunks(files: Sequence[Path]) -> Iterator[list[dict]]:
    for path in files:
        staged = _Staging.reopen(path)
        try:
            yield from staged.chunks(LANDING_CHUNK)
        finally:
            staged.close()


def _land_usage(conn: Any, batch: Batch, plan: Sequence[Mapping[str, Any]], manifests: Sequence[Mapping[str, Any]],
                root: Path, started: datetime) -> ObjectSummary:
    (obj,) = registry.source("mixpanel").extracted_objects
    summary = ObjectSummary("mixpanel", "usage_daily", start_cursor=plan[0]["objects"][0]["start_cursor"])
    fold = UsageFold()
    retries = 0
    for part, entry in _entries(plan, manifests, obj.name):
        with (_part_dir(root, part) / USAGE_FILE).open("rb") as handle:
            fold.extend(pickle.load(handle))  # noqa: S301 -- written by fetch_part into this deployment's staging
        retries += entry["retries"]
    land_usage(conn, batch, summary, fold, started, retries)
    return summary


def _remove_older(root: Path, source: str, batch_date: date, key: str) -> None:
    """Staged parts of earlier batches, and other plans of this one, once this batch has landed."""
    base = Path(root) / source
    if not base.is_dir():
        return
    for day_dir in base.iterdir():
        try:
            day = date.fromisoformat(day_dir.name)
        except ValueError:
            continue
        if day < batch_date:
            shutil.rmtree(day_dir, ignore_errors=True)
        elif day == batch_date:
            for plan_dir in day_dir.iterdir():
                if plan_dir.name != key:
                    shutil.rmtree(plan_dir, ignore_errors=True)
