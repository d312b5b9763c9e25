"""HubSpot CRM v3/v4 batch endpoints: batch read, batch update of companies, association reads, and the
company properties (list, create).

A router of its own beside ``vendors.hubspot`` (objects, owners, search, tasks, company PATCH), whose
helpers it shares; the server includes it right after that router, so the routes keep their order.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import Response

from healthscore_sandbox.protocol import Call, VendorError, hubspot_error, iso_now
from healthscore_sandbox.vendors.hubspot import (
    API_CALL,
    INTERNAL_COLUMNS,
    MAX_BATCH_INPUTS,
    READ_CALL,
    SINGULAR,
    TASK_SEARCH_DEFAULT,
    _json_body,
    _object_view,
    _requested,
    _serialize,
    tasks_now,
)
from healthscore_sandbox.views import iso_millis

router = APIRouter()


# ---- batch read / update -----------------------------------------------------------------------
def _batch_ids(body: dict) -> list[str]:
    """The inputs' ids, checked as HubSpot checks them: a list of at most 100, ids unique."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise VendorError(hubspot_error(400, "Invalid input JSON: inputs must be a list of objects",
                                        "VALIDATION_ERROR"))
    if not inputs:
        raise VendorError(hubspot_error(400, "inputs: must contain at least 1 input", "VALIDATION_ERROR"))
    if len(inputs) > MAX_BATCH_INPUTS:
        raise VendorError(hubspot_error(
            400, f"Batch input limit exceeded: {len(inputs)} inputs, at most {MAX_BATCH_INPUTS} allowed",
            "VALIDATION_ERROR"))
    ids = [str(i.get("id") or "") for i in inputs]
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise VendorError(hubspot_error(
            400, f"Duplicate IDs found in batch input: {duplicates}. IDs must be unique", "VALIDATION_ERROR"))
    return ids


def _positions(view: pd.DataFrame, ids: list[str]) -> np.ndarray:
    """Row of each id in the view, -1 where it does not exist (not yet created, deleted, or never)."""
    return pd.Index(view["id"]).get_indexer(ids)


def _is_number(value: Any) -> bool:
    if value in (None, ""):
        return True  # clears the property
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _not_found(obj: str, ids: list[str]) -> dict:
    return {"status": "error", "category": "OBJECT_NOT_FOUND",
            "message": f"Could not get some {SINGULAR[obj]} objects, they may be deleted or not exist. "
            "Check that ids are valid.", "context": {"ids": ids}}


def _batch_answer(call: Call, results: list[dict], errors: list[dict], started: str) -> Response:
    """200 when every input succeeded, 207 Multi-Status with errors and numErrors when some failed."""
    payload: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                               "completedAt": iso_now(call.now)}
    if errors:
        payload["numErrors"] = sum(len(e["context"]["ids"]) for e in errors)
        payload["errors"] = errors
        return call.respond(payload, status=207)
    return call.respond(payload)


@router.post("/crm/v3/objects/{obj}/batch/read")
async def batch_read(obj: str, request: Request, call: Call = READ_CALL) -> Response:
    body = await _json_body(request)
    started = iso_now(call.now)
    ids = _batch_ids(body)
    if obj == "tasks":
        return _batch_read_tasks(call, ids, body, started)
    view = _object_view(call, obj)
    where = _positions(view, ids)
    found = where[where >= 0]
    results = _serialize(view.iloc[found], obj, _requested(obj, body.get("properties")), [])
    missing = [i for i, w in zip(ids, where, strict=True) if w < 0]
    return _batch_answer(call, results, [_not_found(obj, missing)] if missing else [], started)


def _batch_read_tasks(call: Call, ids: list[str], body: dict, started: str) -> Response:
    """Tasks by id as of now, with the requested properties (default: the search's); unknown ids -> 207."""
    tasks = {t["id"]: t for t in tasks_now(call)}
    names = list(dict.fromkeys([*(body.get("properties") or TASK_SEARCH_DEFAULT), *TASK_SEARCH_DEFAULT]))
    results = [{"id": i, "properties": {n: tasks[i]["properties"].get(n) for n in names},
                "createdAt": tasks[i]["createdAt"], "updatedAt": tasks[i]["updatedAt"], "archived": False}
               for i in ids if i in tasks]
    missing = [i for i in ids if i not in tasks]
    errors = [{"status": "error", "category": "OBJECT_NOT_FOUND",
               "message": "Could not get some TASK objects, they may be deleted or not exist. Check that ids are valid.",
               "context": {"ids": missing}}] if missing else []
    return _batch_answer(call, results, errors, started)


@router.post("/crm/v3/objects/companies/batch/update")
async def batch_update_companies(request: Request, call: Call = API_CALL) -> Response:
    """Up to 100 company updates; per-input failures (unknown id, injected transient errors) -> 207."""
    body = await _json_body(request)
    started = iso_now(call.now)
    ids = _batch_ids(body)
    inputs = body["inputs"]
    view = call.state.views.view("companies", call.now)
    store = call.state.hubspot
    known = set(view.columns) - INTERNAL_COLUMNS
    names = {n for i in inputs for n in (i.get("properties") or {})}
    unknown = sorted(n for n in names if n not in known and n not in store.custom_properties)
    if unknown:  # HubSpot validates properties for the whole batch
        raise VendorError(hubspot_error(
            400, "Property values were not valid", "VALIDATION_ERROR",
            errors=[{"message": f'Property "{p}" does not exist', "code": "PROPERTY_DOESNT_EXIST"} for p in unknown]))
    invalid = [{"message": f'{value} was not a valid number.', "code": "INVALID_DOUBLE",
                "context": {"propertyName": [name]}}
               for i in inputs for name, value in (i.get("properties") or {}).items()
               if store.custom_properties.get(name, {}).get("type") == "number" and not _is_number(value)]
    if invalid:  # so are property values: one bad value refuses the whole batch
        raise VendorError(hubspot_error(400, "Property values were not valid", "VALIDATION_ERROR", errors=invalid))
    where = _positions(view, ids)
    transient = call.state.faults.failing_inputs(len(ids))
    missing, failed, results = [], [], []
    stamp = iso_now(call.now)
    created = iso_millis(view["created_ts"].to_numpy()[np.maximum(where, 0)])
    with store.lock:
        for n, (company_id, row, fails, item) in enumerate(zip(ids, where, transient, inputs, strict=True)):
            if row < 0:
                missing.append(company_id)
                continue
            if fails:
                failed.append(company_id)
                continue
            props = {k: None if v is None else str(v) for k, v in (item.get("properties") or {}).items()}
            patches = store.company_patches.setdefault(company_id, {})
            for name, value in props.items():
                patches[name] = (call.now, value)
            results.append({"id": company_id, "properties": {**props, "hs_object_id": company_id,
                                                             "hs_lastmodifieddate": stamp},
                            "createdAt": created[n], "updatedAt": stamp, "archived": False})
        if results:
            store.version += 1
    errors = [_not_found("companies", missing)] if missing else []
    if failed:
        errors.append({"status": "error", "category": "INTERNAL_ERROR",
                       "message": "The update of some COMPANY objects failed; retry them.",
                       "context": {"ids": failed}})
    return _batch_answer(call, results, errors, started)


# ---- associations v4 ---------------------------------------------------------------------------
#: HubSpot-defined association type ids (from -> company, primary).
TO_COMPANY_TYPE = {"contacts": 1, "deals": 5, "meetings": 182}
MAX_ASSOCIATION_INPUTS = 1_000  # [unverified] the extractor sends 100 per request


@router.post("/crm/v4/associations/{from_obj}/{to_obj}/batch/read")
async def read_associations(from_obj: str, to_obj: str, request: Request, call: Call = READ_CALL) -> Response:
    """Company associations of contacts, deals and meetings; ids that do not exist (never, not yet, or
    archived) fail on their own in a 207 answer."""
    if to_obj != "companies" or from_obj not in TO_COMPANY_TYPE:
        raise VendorError(hubspot_error(400, f"Unable to infer object type from: {from_obj} -> {to_obj}",
                                        "VALIDATION_ERROR"))
    body = await _json_body(request)
    started = iso_now(call.now)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs or len(inputs) > MAX_ASSOCIATION_INPUTS:
        raise VendorError(hubspot_error(
            400, f"inputs must be a list of 1 to {MAX_ASSOCIATION_INPUTS} objects", "VALIDATION_ERROR"))
    ids = [str((i or {}).get("id") or "") for i in inputs]
    view = _object_view(call, from_obj)
    where = _positions(view, ids)
    companies = view["company_id"].to_numpy()
    results, missing = [], []
    for object_id, row in zip(ids, where, strict=True):
        if row < 0:
            missing.append(object_id)
            continue
        to_id = companies[row]
        results.append({"from": {"id": object_id}, "to": [{"toObjectId": int(to_id), "associationTypes": [
            {"category": "HUBSPOT_DEFINED", "typeId": TO_COMPANY_TYPE[from_obj], "label": "Primary"}]}]})
    errors = []
    if missing:
        errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                       "message": f"Could not get associations for some {SINGULAR[from_obj]} objects: they may "
                       "be deleted or not exist.", "context": {"ids": missing}})
    return _batch_answer(call, results, errors, started)


@router.get("/crm/v3/properties/companies")
def list_company_properties(call: Call = API_CALL) -> Response:
    view = call.state.views.view("companies", call.now)
    builtin = [{"name": c, "label": c, "type": "string", "fieldType": "text", "groupName": "companyinformation",
                "hubspotDefined": not c.startswith(("customer_", "plan_", "licensed_", "contract_", "arr"))}
               for c in view.columns if c not in INTERNAL_COLUMNS]
    return call.respond({"results": builtin + list(call.state.hubspot.custom_properties.values())})


@router.post("/crm/v3/properties/companies", status_code=201)
async def create_company_property(request: Request, call: Call = API_CALL) -> Response:
    body = await _json_body(request)
    name = str(body.get("name", ""))
    missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
    if missing:
        raise VendorError(hubspot_error(400, f"Missing required fields: {', '.join(missing)}", "VALIDATION_ERROR"))
    store = call.state.hubspot
    view_columns = set(call.state.views.view("companies", call.now).columns)
    with store.lock:
        if name in store.custom_properties or name in view_columns:
            raise VendorError(hubspot_error(409, f"A property named '{name}' already exists.",
                                            "OBJECT_ALREADY_EXISTS"))
        prop = {k: body[k] for k in ("name", "label", "type", "fieldType", "groupName", "description") if k in body}
        prop.update({"hubspotDefined": False, "createdAt": iso_now(call.now)})
        store.custom_properties[name] = prop
    return call.respond(prop, status=201)
