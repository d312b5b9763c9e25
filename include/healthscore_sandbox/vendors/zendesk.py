"""Zendesk Support: cursor-based incremental ticket export and satisfaction ratings."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from healthscore_sandbox.protocol import Call, VendorError, vendor_call, zendesk_error
from healthscore_sandbox.views import iso_seconds

router = APIRouter()
EXPORT_CALL = Depends(vendor_call("zendesk", "zendesk_incremental"))
API_CALL = Depends(vendor_call("zendesk"))

MAX_EXPORT_PER_PAGE = 1000
MAX_RATINGS_PAGE = 100
EXCLUDED_RECENT_SECONDS = 60  # the export leaves out the last minute


def encode_cursor(updated_ts: int, record_id: int) -> str:
    return base64.urlsafe_b64encode(f"{updated_ts}.{record_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        updated, _, record = raw.partition(".")
        return int(updated), int(record)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VendorError(zendesk_error(400, "InvalidPaginationParameter", "cursor is invalid")) from exc


def _absolute(request: Request, path: str, **params: Any) -> str:
    url = request.url.replace(path=path, query="")
    return str(url.include_query_params(**{k: v for k, v in params.items() if v is not None}))


def _ticket_json(row: dict, request: Request) -> dict:
    return {
        "url": _absolute(request, f"/api/v2/tickets/{row['id']}.json"),
        "id": int(row["id"]),
        "external_id": None,
        "via": {"channel": "web"},
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "type": row["type"],
        "subject": row["subject"],
        "raw_subject": row["subject"],
        "status": row["status"],
        "priority": row["priority"],
        "requester_id": int(row["requester_id"]),
        "organization_id": None if row["organization_id"] is None else int(row["organization_id"]),
        "tags": str(row["tags"]).split(),
        "satisfaction_rating": {"score": row["satisfaction_score"]},
    }


def _metric_set_json(row: dict) -> dict:
    solved = row["full_resolution_minutes"] >= 0
    replied = row["first_reply_minutes"] >= 0
    return {
        "id": int(row["id"]),
        "ticket_id": int(row["id"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "solved_at": row["solved_at"],
        "reopens": int(row["reopens"]),
        "replies": int(row["replies"]) if replied else 0,
        "reply_time_in_minutes": {"calendar": int(row["first_reply_minutes"]) if replied else None,
                                  "business": int(row["first_reply_minutes"] * 0.6) if replied else None},
        "full_resolution_time_in_minutes": {
            "calendar": int(row["full_resolution_minutes"]) if solved else None,
            "business": int(row["full_resolution_minutes"] * 0.6) if solved else None,
        },
    }


@router.get("/api/v2/incremental/tickets/cursor.json")
def incremental_tickets(request: Request, start_time: int | None = None, cursor: str | None = None,
                        per_page: int = MAX_EXPORT_PER_PAGE, include: str | None = None,
                        call: Call = EXPORT_CALL) -> Response:
    if start_time is None and cursor is None:
        raise VendorError(zendesk_error(400, "InvalidValue", "start_time or cursor is required"))
    if start_time is not None and start_time > call.now - EXCLUDED_RECENT_SECONDS:
        raise VendorError(zendesk_error(422, "InvalidValue", "Too recent start_time. Use a start_time older than 1 minute"))
    per_page = max(1, min(per_page, MAX_EXPORT_PER_PAGE))
    view = call.state.views.view("tickets", call.now)
    updated = view["updated_ts"].to_numpy()
    ids = view["id"].to_numpy()
    horizon = call.now - EXCLUDED_RECENT_SECONDS
    if cursor is not None:
        cur_ts, cur_id = decode_cursor(cursor)
        start = int(np.searchsorted(updated, cur_ts, side="left"))
        while start < len(view) and updated[start] == cur_ts and ids[start] <= cur_id:
            start += 1
    else:
        start = int(np.searchsorted(updated, start_time, side="left"))
    stop = int(np.searchsorted(updated, horizon, side="left"))
    page = view.iloc[start : min(stop, start + per_page)]
    end_of_stream = start + per_page >= stop
    if len(page):
        after = encode_cursor(int(page["updated_ts"].iat[-1]), int(page["id"].iat[-1]))
    elif cursor is not None:
        after = cursor
    else:  # nothing since start_time: resume just before it next time
        after = encode_cursor(int(start_time) - 1, 2**62)
    frame = page.assign(
        created_at=iso_seconds(page["created_ts"]),
        updated_at=iso_seconds(page["updated_ts"]),
        # object dtype: pandas would otherwise turn None into NaN, which is not JSON
        solved_at=pd.Series(np.where(page["solved_ts"] >= 0, iso_seconds(page["solved_ts"].clip(lower=0)), None),
                            index=page.index, dtype=object),
    )
    rows = frame.to_dict("records")
    query = {"cursor": after, "per_page": per_page if per_page != MAX_EXPORT_PER_PAGE else None, "include": include}
    payload: dict[str, Any] = {
        "tickets": [_ticket_json(r, request) for r in rows],
        "after_url": _absolute(request, request.url.path, **query),
        "after_cursor": after,
        "before_url": None,
        "before_cursor": None,
        "end_of_stream": bool(end_of_stream),
    }
    if include and "metric_sets" in include.split(","):
        payload["metric_sets"] = [_metric_set_json(r) for r in rows]
    return call.respond(payload)


@router.get("/api/v2/satisfaction_ratings")
@router.get("/api/v2/satisfaction_ratings.json")
def satisfaction_ratings(request: Request, start_time: int | None = None, end_time: int | None = None,
                         score: str | None = None, call: Call = API_CALL) -> Response:
    params = request.query_params
    size = int(params.get("page[size]", MAX_RATINGS_PAGE))
    if not 1 <= size <= MAX_RATINGS_PAGE:
        raise VendorError(zendesk_error(400, "InvalidPaginationParameter", f"page[size] must be 1..{MAX_RATINGS_PAGE}"))
    view = call.state.views.view("satisfaction_ratings", call.now)
    mask = np.ones(len(view), dtype=bool)
    if start_time is not None:
        mask &= view["created_ts"].to_numpy() >= start_time
    if end_time is not None:
        mask &= view["created_ts"].to_numpy() < end_time
    if score:
        mask &= (view["score"] == score).to_numpy()
    view = view[mask]
    ids = view["id"].to_numpy()
    start = 0
    if params.get("page[after]"):
        _, after_id = decode_cursor(params["page[after]"])
        start = int(np.searchsorted(ids, after_id, side="right"))
    page = view.iloc[start : start + size]
    has_more = start + size < len(view)
    rows = page.assign(created_at=iso_seconds(page["created_ts"])).to_dict("records")
    ratings = [
        {"url": _absolute(request, f"/api/v2/satisfaction_ratings/{r['id']}.json"), "id": int(r["id"]),
         "ticket_id": None if pd.isna(r["ticket_id"]) else int(r["ticket_id"]), "score": r["score"],
         "comment": r["comment"], "created_at": r["created_at"], "updated_at": r["created_at"]}
        for r in rows
    ]
    after = encode_cursor(0, int(page["id"].iat[-1])) if len(page) else None
    before = encode_cursor(0, int(page["id"].iat[0])) if len(page) else None
    keep = {k: v for k, v in params.items() if not k.startswith("page[")}
    payload = {
        "satisfaction_ratings": ratings,
        "meta": {"has_more": has_more, "after_cursor": after, "before_cursor": before},
        "links": {
            "prev": _absolute(request, request.url.path, **keep, **{"page[size]": size, "page[before]": before})
            if before else None,
            "next": _absolute(request, request.url.path, **keep, **{"page[size]": size, "page[after]": after})
            if has_more else None,
        },
    }
    return call.respond(payload)
