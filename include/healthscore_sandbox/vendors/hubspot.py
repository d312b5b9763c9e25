"""HubSpot CRM v3: objects, owners, search, tasks and company PATCH.

Batch read/update, associations and custom properties are in ``vendors.hubspot_batch``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from healthscore_sandbox.csm import task_as_of
from healthscore_sandbox.protocol import Call, VendorError, hubspot_error, iso_now, vendor_call
from healthscore_sandbox.views import iso_millis

router = APIRouter()
API_CALL = Depends(vendor_call("hubspot"))
SEARCH_CALL = Depends(vendor_call("hubspot", "hubspot_search"))
READ_CALL = Depends(vendor_call("hubspot", write=False))

OBJECTS = {"companies", "contacts", "deals", "meetings"}
MAX_LIST_LIMIT = 100
MAX_SEARCH_LIMIT = 200
MAX_BATCH_INPUTS = 100
SEARCH_RESULT_CAP = 10_000
TASK_TO_COMPANY = 192

DEFAULT_PROPERTIES = {
    "companies": ["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
    "contacts": ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
    "deals": ["amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate",
              "hs_object_id", "pipeline"],
    "meetings": ["hs_createdate", "hs_lastmodifieddate", "hs_object_id", "hs_timestamp"],
}
ALWAYS = {
    "companies": ["createdate", "hs_lastmodifieddate", "hs_object_id"],
    "contacts": ["createdate", "lastmodifieddate", "hs_object_id"],
    "deals": ["createdate", "hs_lastmodifieddate", "hs_object_id"],
    "meetings": ["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
}
MODIFIED = {"companies": "hs_lastmodifieddate", "contacts": "lastmodifieddate", "deals": "hs_lastmodifieddate",
            "meetings": "hs_lastmodifieddate"}
INTERNAL_COLUMNS = {"id", "created_ts", "updated_ts", "company_id", "_bad", "_oid", "archived_ts"}
SINGULAR = {"companies": "COMPANY", "contacts": "CONTACT", "deals": "DEAL", "meetings": "MEETING"}
TASK_PROPERTIES = {"hs_timestamp", "hs_task_subject", "hs_task_body", "hubspot_owner_id", "hs_task_status",
                   "hs_task_priority", "hs_task_type"}


def _object_view(call: Call, obj: str) -> pd.DataFrame:
    if obj not in OBJECTS:
        raise VendorError(hubspot_error(400, f"Unable to infer object type from: {obj}", "VALIDATION_ERROR"))
    view = call.state.views.view(obj, call.now)
    if obj == "companies":
        view = _with_company_patches(call, view)
    return view


def _with_company_patches(call: Call, view: pd.DataFrame) -> pd.DataFrame:
    """Values written by PATCH or batch update (visible from the moment they were written) override the view.

    Vectorised per property: a 100k-company portfolio with every score published rebuilds in well
    under a second, once per (now, store version).
    """
    store = call.state.hubspot
    if not store.company_patches:
        return view
    key = ("companies+patches", call.now, store.version, call.state.faults.config.bad_record_rate)

    def build() -> pd.DataFrame:
        frame = view.copy()
        position = dict(zip(frame["id"].tolist(), range(len(frame)), strict=True))
        with store.lock:
            items = [(cid, list(props.items())) for cid, props in store.company_patches.items()]
        rows: dict[str, list[int]] = {}
        values: dict[str, list[str | None]] = {}
        touched_rows: list[int] = []
        touched_ts: list[int] = []
        for company_id, props in items:
            row = position.get(company_id)
            if row is None:
                continue
            for name, (ts, value) in props:
                if ts > call.now:
                    continue
                rows.setdefault(name, []).append(row)
                values.setdefault(name, []).append(value)
                touched_rows.append(row)
                touched_ts.append(ts)
        for name, where in rows.items():
            column = (frame[name].to_numpy(dtype=object, copy=True) if name in frame.columns
                      else np.full(len(frame), None, dtype=object))
            column[np.asarray(where, dtype=np.int64)] = np.asarray(values[name], dtype=object)
            frame[name] = column
        if touched_rows:
            updated = frame["updated_ts"].to_numpy(dtype="int64", copy=True)
            np.maximum.at(updated, np.asarray(touched_rows, dtype=np.int64), np.asarray(touched_ts, dtype="int64"))
            changed = updated != frame["updated_ts"].to_numpy(dtype="int64")
            frame["updated_ts"] = updated
            if changed.any():
                stamps = frame["hs_lastmodifieddate"].to_numpy(dtype=object, copy=True)
                stamps[changed] = iso_millis(updated[changed])
                frame["hs_lastmodifieddate"] = stamps
        return frame

    return call.state.views.cache.get(key, build)


def _requested(obj: str, properties: str | list[str] | None) -> list[str]:
    if not properties:
        return DEFAULT_PROPERTIES[obj]
    names = properties.split(",") if isinstance(properties, str) else properties
    return list(dict.fromkeys([n.strip() for n in names if n.strip()] + ALWAYS[obj]))


def _serialize(frame: pd.DataFrame, obj: str, properties: list[str], associations: list[str],
               archived: bool = False) -> list[dict]:
    cols = [p for p in properties if p in frame.columns and p not in INTERNAL_COLUMNS]
    missing = [p for p in properties if p not in frame.columns]
    created = iso_millis(frame["created_ts"])
    updated = iso_millis(frame["updated_ts"])
    records = frame[cols].to_dict("records") if cols else [{} for _ in range(len(frame))]
    # Columns as lists once: a DataFrame lookup per record (frame["id"].iat[i]) was a third of a 100k list's time.
    ids = frame["id"].tolist()
    with_companies = "companies" in associations and "company_id" in frame.columns and obj != "companies"
    companies = frame["company_id"].tolist() if with_companies else []
    out = []
    for i, props in enumerate(records):
        for name in missing:
            props[name] = None
        for name, value in props.items():
            if value is not None and not isinstance(value, str):
                props[name] = None if pd.isna(value) else str(value)
        record: dict[str, Any] = {
            "id": ids[i],
            "properties": props,
            "createdAt": created[i],
            "updatedAt": updated[i],
            "archived": archived,
        }
        if archived:
            record["archivedAt"] = updated[i]
        if with_companies:
            record["associations"] = {
                "companies": {"results": [{"id": companies[i], "type": f"{obj[:-1]}_to_company"}]}
            }
        out.append(record)
    return out


def _next_link(call: Call, after: str) -> dict:
    url = call.request.url.include_query_params(after=after)
    return {"next": {"after": after, "link": str(url)}}


@router.get("/crm/v3/objects/{obj}")
def list_objects(obj: str, limit: int = 10, after: str | None = None, properties: str | None = None,
                 associations: str | None = None, archived: bool = False,
                 call: Call = API_CALL) -> Response:
    if obj == "tasks":
        return _list_tasks(call, limit, after)
    if obj == "owners":  # the spelling; HubSpot itself serves /crm/v3/owners
        return list_owners(limit=limit, after=after, call=call)
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise VendorError(hubspot_error(400, f"limit must be between 1 and {MAX_LIST_LIMIT}", "VALIDATION_ERROR"))
    if archived:  # deleted records: HubSpot lists them only when asked, flagged and with archivedAt
        _object_view(call, obj)  # validates the object type
        view = call.state.views.archived(obj, call.now)
    else:
        view = _object_view(call, obj)
    ids = view["_oid"].to_numpy()
    start = 0
    if after:
        if not after.isdigit():
            raise VendorError(hubspot_error(400, f"Invalid after value: {after}", "VALIDATION_ERROR"))
        start = int(np.searchsorted(ids, int(after), side="left"))
    page = view.iloc[start : start + limit]
    payload: dict[str, Any] = {
        "results": _serialize(page, obj, _requested(obj, properties), (associations or "").split(","), archived)
    }
    if start + limit < len(view):
        payload["paging"] = _next_link(call, str(ids[start + limit]))
    return call.respond(payload)


@router.get("/crm/v3/owners")
@router.get("/crm/v3/owners/")
def list_owners(limit: int = 100, after: str | None = None,
                call: Call = API_CALL) -> Response:
    owners = call.state.world.owners.sort_values("owner_id", key=lambda s: s.astype("int64"))
    start = int(after) if after and after.isdigit() else 0
    page = owners.iloc[start : start + limit]
    created = datetime.fromtimestamp(call.state.world.start_ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    results = [
        {"id": str(o.owner_id), "email": o.email, "firstName": o.first_name, "lastName": o.last_name,
         "userId": int(o.user_id), "createdAt": created, "updatedAt": created, "archived": False,
         "teams": [{"id": "1", "name": "Customer Success" if o.role == "csm" else "CS Leadership",
                    "primary": True}]}
        for o in page.itertuples()
    ]
    payload: dict[str, Any] = {"results": results}
    if start + limit < len(owners):
        payload["paging"] = _next_link(call, str(start + limit))
    return call.respond(payload)


# ---- search ----------------------------------------------------------------------------------
def _filter_value(frame: pd.DataFrame, prop: str) -> pd.Series:
    if prop in ("hs_lastmodifieddate", "lastmodifieddate"):
        return frame["updated_ts"].astype("int64") * 1000
    if prop in ("createdate", "hs_createdate"):
        return frame["created_ts"].astype("int64") * 1000
    if prop == "hs_object_id":
        return frame["_oid"]
    if prop not in frame.columns:
        raise VendorError(hubspot_error(400, f"There was a problem with the request: unknown property {prop}",
                                        "VALIDATION_ERROR"))
    return frame[prop]


def _coerce(series: pd.Series, value: Any) -> Any:
    if pd.api.types.is_integer_dtype(series):
        text = str(value)
        if text.lstrip("-").isdigit():
            return int(text)
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    return None if value is None else str(value)


def _apply_filter(frame: pd.DataFrame, flt: dict) -> np.ndarray:
    prop, op = flt.get("propertyName"), str(flt.get("operator", "EQ")).upper()
    series = _filter_value(frame, prop)
    if op == "HAS_PROPERTY":
        return series.notna().to_numpy()
    if op == "NOT_HAS_PROPERTY":
        return series.isna().to_numpy()
    value = _coerce(series, flt.get("value"))
    ops = {"EQ": series == value, "NEQ": series != value, "GT": series > value, "GTE": series >= value,
           "LT": series < value, "LTE": series <= value} if op in {"EQ", "NEQ", "GT", "GTE", "LT", "LTE"} else None
    if ops is None:
        raise VendorError(hubspot_error(400, f"Unsupported operator {op}", "VALIDATION_ERROR"))
    return ops[op].fillna(False).to_numpy(dtype=bool)


@router.post("/crm/v3/objects/{obj}/search")
async def search(obj: str, request: Request, call: Call = SEARCH_CALL) -> Response:
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as exc:
        raise VendorError(hubspot_error(400, f"Invalid input JSON on line 1: {exc.msg}", "VALIDATION_ERROR")) from exc
    limit = int(body.get("limit", 10))
    if not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise VendorError(hubspot_error(400, f"limit must be between 1 and {MAX_SEARCH_LIMIT}", "VALIDATION_ERROR"))
    offset = int(body.get("after") or 0)
    if offset + limit > SEARCH_RESULT_CAP:
        raise VendorError(hubspot_error(
            400, f"There was a problem with the request. Search results are capped at {SEARCH_RESULT_CAP}; "
            "narrow the filters instead of paging further.", "VALIDATION_ERROR"))
    if obj == "tasks":
        return _search_tasks(call, body, limit, offset)
    frame = _object_view(call, obj)
    groups = body.get("filterGroups") or []
    if groups:
        mask = np.zeros(len(frame), dtype=bool)
        for group in groups:
            group_mask = np.ones(len(frame), dtype=bool)
            for flt in group.get("filters", []):
                group_mask &= _apply_filter(frame, flt)
            mask |= group_mask
        frame = frame[mask]
    sorts = body.get("sorts") or []
    keys, ascending = [], []
    for sort in sorts:
        prop = sort if isinstance(sort, str) else sort.get("propertyName")
        direction = "ASCENDING" if isinstance(sort, str) else str(sort.get("direction", "ASCENDING")).upper()
        keys.append(_filter_value(frame, prop).rename(f"_sort_{prop}"))
        ascending.append(direction == "ASCENDING")
    ordered = frame.assign(**{k.name: k for k in keys})
    ordered = ordered.sort_values([k.name for k in keys] + ["_oid"], ascending=ascending + [True], kind="stable")
    page = ordered.iloc[offset : offset + limit]
    payload: dict[str, Any] = {
        "total": len(ordered),
        "results": _serialize(page, obj, _requested(obj, body.get("properties")), []),
    }
    if offset + limit < len(ordered):
        payload["paging"] = {"next": {"after": str(offset + limit)}}
    return call.respond(payload)


# ---- task search ------------------------------------------------------------------------------
TASK_SEARCH_DEFAULT = ["hs_createdate", "hs_lastmodifieddate", "hs_object_id"]
TASK_READ_ONLY = {"hs_task_completion_date"}  # set by HubSpot when a task is completed


def tasks_now(call: Call) -> list[dict]:
    """Every task as of the simulated now: the simulated CSMs complete some (``healthscore_sandbox.csm``)."""
    _, fates = call.state.plays()
    with call.state.hubspot.lock:
        tasks = list(call.state.hubspot.tasks)
    return [task_as_of(t, fates[t["id"]], call.now) if t["id"] in fates else t for t in tasks]
_TOKEN = re.compile(r"\w+")


def _tokens(text: str | None) -> list[str]:
    """Words of a text property, lower-cased: what CONTAINS_TOKEN matches against."""
    return _TOKEN.findall((text or "").lower())


TASK_OPERATORS = {"EQ", "NEQ", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN", "HAS_PROPERTY", "NOT_HAS_PROPERTY"}


def _check_task_filter(flt: dict) -> None:
    prop, op = str(flt.get("propertyName")), str(flt.get("operator", "EQ")).upper()
    if prop not in TASK_PROPERTIES and prop not in TASK_SEARCH_DEFAULT and prop not in TASK_READ_ONLY:
        raise VendorError(hubspot_error(400, f"There was a problem with the request: unknown property {prop}",
                                        "VALIDATION_ERROR"))
    if op not in TASK_OPERATORS:
        raise VendorError(hubspot_error(400, f"Unsupported operator {op} for tasks", "VALIDATION_ERROR"))


def _task_matches(props: dict[str, str | None], flt: dict) -> bool:
    prop, op = str(flt.get("propertyName")), str(flt.get("operator", "EQ")).upper()
    have = props.get(prop)
    if op == "HAS_PROPERTY":
        return have not in (None, "")
    if op == "NOT_HAS_PROPERTY":
        return have in (None, "")
    value = "" if flt.get("value") is None else str(flt.get("value"))
    if op in ("EQ", "NEQ"):
        return (have == value) == (op == "EQ")
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        words = _tokens(have)
        # A value with * is one wildcard token; otherwise every word of the value must occur.
        wanted = [value.lower()] if "*" in value else _tokens(value)
        hit = bool(wanted) and all(any(fnmatch.fnmatchcase(w, t) for w in words) for t in wanted)
        return hit == (op == "CONTAINS_TOKEN")
    raise AssertionError(op)  # _check_task_filter rejected it already


def _search_tasks(call: Call, body: dict, limit: int, offset: int) -> Response:
    """Task search over what clients created: EQ/NEQ, (NOT_)CONTAINS_TOKEN, (NOT_)HAS_PROPERTY.

    Filters in a group are ANDed, groups ORed, ordered by creation (id); no associations in the answer,
    as in HubSpot's search.
    """
    tasks = tasks_now(call)
    groups = body.get("filterGroups") or []
    for group in groups:
        for flt in group.get("filters", []):
            _check_task_filter(flt)
    if groups:
        tasks = [t for t in tasks
                 if any(all(_task_matches(t["properties"], f) for f in g.get("filters", [])) for g in groups)]
    wanted = body.get("properties") or TASK_SEARCH_DEFAULT
    names = list(dict.fromkeys([*wanted, *TASK_SEARCH_DEFAULT]))
    page = tasks[offset : offset + limit]
    results = [{"id": t["id"], "properties": {n: t["properties"].get(n) for n in names},
                "createdAt": t["createdAt"], "updatedAt": t["updatedAt"], "archived": False} for t in page]
    payload: dict[str, Any] = {"total": len(tasks), "results": results}
    if offset + limit < len(tasks):
        payload["paging"] = {"next": {"after": str(offset + limit)}}
    return call.respond(payload)


# ---- writes ----------------------------------------------------------------------------------
async def _json_body(request: Request) -> dict:
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as exc:
        raise VendorError(hubspot_error(400, f"Invalid input JSON: {exc.msg}", "VALIDATION_ERROR")) from exc
    if not isinstance(body, dict):
        raise VendorError(hubspot_error(400, "Invalid input JSON: expected an object", "VALIDATION_ERROR"))
    return body


@router.post("/crm/v3/objects/tasks", status_code=201)
async def create_task(request: Request, call: Call = API_CALL) -> Response:
    body = await _json_body(request)
    props = {k: None if v is None else str(v) for k, v in (body.get("properties") or {}).items()}
    errors = []
    if not props.get("hs_timestamp"):
        errors.append({"message": "hs_timestamp is required", "code": "PROPERTY_REQUIRED"})
    unknown = sorted(set(props) - TASK_PROPERTIES)
    errors += [{"message": f'Property "{p}" does not exist', "code": "PROPERTY_DOESNT_EXIST"} for p in unknown]
    owner = props.get("hubspot_owner_id")
    if owner and owner not in call.state.owner_ids:
        errors.append({"message": f"{owner} is not a valid owner id", "code": "INVALID_OWNER_ID"})
    company_ids = []
    for assoc in body.get("associations") or []:
        target = str((assoc.get("to") or {}).get("id", ""))
        types = assoc.get("types") or []
        if target not in call.state.company_index:
            errors.append({"message": f"company {target} does not exist", "code": "INVALID_ASSOCIATION"})
        elif not any(t.get("associationTypeId") == TASK_TO_COMPANY for t in types):
            errors.append({"message": "task associations need associationTypeId 192", "code": "INVALID_ASSOCIATION"})
        else:
            company_ids.append(target)
    if errors:
        raise VendorError(hubspot_error(400, "Property values were not valid", "VALIDATION_ERROR", errors=errors))
    store = call.state.hubspot
    stamp = iso_now(call.now)
    with store.lock:
        task_id = str(store.next_task_id)
        store.next_task_id += 1
        props.update({"hs_object_id": task_id, "hs_createdate": stamp, "hs_lastmodifieddate": stamp})
        task = {"id": task_id, "properties": props, "createdAt": stamp, "updatedAt": stamp, "archived": False,
                "associations": {"companies": {"results": [{"id": c, "type": "task_to_company"} for c in company_ids]}}}
        store.tasks.append(task)
    return call.respond(task, status=201)


def _list_tasks(call: Call, limit: int, after: str | None) -> Response:
    tasks = tasks_now(call)
    start = int(after) if after and after.isdigit() else 0
    payload: dict[str, Any] = {"results": tasks[start : start + limit]}
    if start + limit < len(tasks):
        payload["paging"] = _next_link(call, str(start + limit))
    return call.respond(payload)


@router.get("/crm/v3/objects/tasks/{task_id}")
def get_task(task_id: str, call: Call = API_CALL) -> Response:
    for task in tasks_now(call):
        if task["id"] == task_id:
            return call.respond(task)
    raise VendorError(hubspot_error(404, "resource not found", "OBJECT_NOT_FOUND"))


@router.patch("/crm/v3/objects/companies/{company_id}")
async def patch_company(company_id: str, request: Request, call: Call = API_CALL) -> Response:
    body = await _json_body(request)
    view = call.state.views.view("companies", call.now)
    if company_id not in set(view["id"]):
        raise VendorError(hubspot_error(404, "resource not found", "OBJECT_NOT_FOUND"))
    props = body.get("properties") or {}
    known = set(view.columns) - INTERNAL_COLUMNS
    store = call.state.hubspot
    unknown = sorted(p for p in props if p not in known and p not in store.custom_properties)
    if unknown:
        raise VendorError(hubspot_error(
            400, "Property values were not valid", "VALIDATION_ERROR",
            errors=[{"message": f'Property "{p}" does not exist', "code": "PROPERTY_DOESNT_EXIST"} for p in unknown]))
    with store.lock:
        patches = store.company_patches.setdefault(company_id, {})
        for name, value in props.items():
            patches[name] = (call.now, None if value is None else str(value))
        store.version += 1
    frame = _with_company_patches(call, view)
    row = frame[frame["id"] == company_id]
    return call.respond(_serialize(row, "companies", _requested("companies", list(props)), [])[0])

