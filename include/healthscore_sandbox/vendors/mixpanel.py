"""Mixpanel raw export: JSONL streamed one day at a time, never a whole range in memory.

Like the real export it is not de-duplicated (duplicates share ``$insert_id``) and late-ingested
events appear only in later pulls, which is why the extractor re-pulls a trailing window.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from healthscore_sandbox import credentials
from healthscore_sandbox.protocol import Call, SandboxState, VendorError, mixpanel_error, vendor_call
from healthscore_sandbox.views import DAY, UNKNOWN_COMPANY_ID

router = APIRouter()
API_CALL = Depends(vendor_call("mixpanel"))

INGESTION_DELAY_SECONDS = 60
OPTIONAL_PROPERTIES = ("nps_score", "csat_score", "feature")
_day_cache: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
_day_cache_lock = threading.Lock()


def _events_for(state: SandboxState, day: date) -> pd.DataFrame:
    plays, _ = state.plays()
    d = (day - state.world.spec.start).days
    key = (id(state.world), day, plays.signature(d))  # the plays that reach this day's latent
    with _day_cache_lock:
        if key in _day_cache:
            _day_cache.move_to_end(key)
            return _day_cache[key]
    frame = state.world.product_events(day, plays)
    with _day_cache_lock:
        _day_cache[key] = frame
        while len(_day_cache) > 4:
            _day_cache.popitem(last=False)
    return frame


def visible_events(state: SandboxState, day: date, now: int, events: set[str] | None = None) -> pd.DataFrame:
    """The day's events as the export would return them at ``now`` (faults applied)."""
    frame = _events_for(state, day)
    cfg = state.faults.config
    ids = frame["insert_id"]
    times = frame["time"].to_numpy()
    late = state.faults.selected(ids, "late", cfg.mixpanel_late_rate)
    ingested = times + np.where(late, cfg.mixpanel_late_days * DAY, INGESTION_DELAY_SECONDS)
    keep = ingested <= now
    if events:
        keep &= frame["event"].isin(events).to_numpy()
    out = frame[keep].copy()
    kinds = state.faults.bad_record_kinds("events", out["insert_id"])
    if kinds.any():
        survey_nps = out["event"].eq("NPS Survey Responded")
        survey_csat = out["event"].eq("CSAT Survey Responded")
        out_of_range = kinds.eq("out_of_range")
        out.loc[out_of_range & survey_nps, "nps_score"] = 14.0
        out.loc[out_of_range & survey_csat, "csat_score"] = 9.0
        nulls = kinds.eq("null") | (out_of_range & ~survey_nps & ~survey_csat)
        out["distinct_id"] = out["distinct_id"].astype(object)
        out.loc[nulls, "distinct_id"] = None
        out.loc[kinds.eq("unknown_fk"), "company_id"] = UNKNOWN_COMPANY_ID
    dupes = state.faults.selected(out["insert_id"], "duplicate", cfg.mixpanel_duplicate_rate)
    if dupes.any():
        copies = out[dupes].copy()
        copies["time"] = copies["time"] + 1  # real duplicates often differ by a retry's delay
        out = pd.concat([out, copies]).sort_index(kind="stable")
    return out


def to_jsonl(frame: pd.DataFrame) -> str:
    """Mixpanel's export line shape; properties a row does not have are left out, not null."""
    if frame.empty:
        return ""
    frame = frame.reset_index(drop=True)
    props = frame.drop(columns=["event"]).rename(columns={"insert_id": "$insert_id"})
    optional = [c for c in OPTIONAL_PROPERTIES if c in props.columns]
    pattern = props[optional].notna().to_numpy() if optional else np.zeros((len(props), 0), dtype=bool)
    keys = pattern.dot(1 << np.arange(pattern.shape[1])) if optional else np.zeros(len(props), dtype=int)
    lines = pd.Series("", index=props.index, dtype=object)
    for key in np.unique(keys):
        rows = keys == key
        drop = [c for i, c in enumerate(optional) if not (key >> i) & 1]
        part = props.loc[rows].drop(columns=drop)
        lines[rows] = part.to_json(orient="records", lines=True).splitlines()
    names = {name: json.dumps(name) for name in frame["event"].unique()}
    prefix = frame["event"].map(names)
    return ('{"event":' + prefix + ',"properties":' + lines + "}\n").str.cat()


def _parse_date(value: str | None, name: str, request: Request) -> date:
    if not value:
        raise VendorError(mixpanel_error(400, request, f"'{name}' is a required parameter"))
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise VendorError(mixpanel_error(400, request, f"'{name}' is invalid: expected YYYY-MM-DD")) from exc


@router.get("/api/2.0/export")
@router.get("/api/2.0/export/")
def export(request: Request, from_date: str | None = None, to_date: str | None = None,
           project_id: str | None = None, event: str | None = None,
           call: Call = API_CALL) -> Response:
    start = _parse_date(from_date, "from_date", request)
    end = _parse_date(to_date, "to_date", request)
    if project_id != credentials.MIXPANEL_PROJECT_ID:
        raise VendorError(mixpanel_error(400, request, "project_id is required for service-account requests "
                                                       "and must name a project the account can read"))
    today = datetime.fromtimestamp(call.now, UTC).date()
    if end < start:
        raise VendorError(mixpanel_error(400, request, "'to_date' must not be before 'from_date'"))
    if end > today:
        raise VendorError(mixpanel_error(400, request, f"'to_date' cannot be later than today ({today})"))
    names = set(json.loads(event)) if event else None
    state, now = call.state, call.now
    world_start = datetime.fromtimestamp(state.world.start_ts, UTC).date()
    malformed = state.faults.take_malformed_page()

    def stream() -> Iterator[bytes]:
        day = max(start, world_start)
        while day <= end:
            chunk = to_jsonl(visible_events(state, day, now, names))
            if malformed and chunk:
                yield chunk[: len(chunk) // 2].encode()  # connection cut mid-line
                return
            if chunk:
                yield chunk.encode()
            day += timedelta(days=1)

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8", headers=call.headers)
