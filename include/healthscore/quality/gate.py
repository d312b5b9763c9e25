"""The quality gate: validate one landed batch with its GX suite, quarantine bad rows, decide blocking.

``validate(source, obj, frame, context)`` runs the object's suite (``healthscore.quality.suites``) on the
flattened frame (``healthscore.sources.schemas.flatten``), writes Data Docs, and returns a
``ValidationOutcome`` shaped for the warehouse (``quality_results``, ``quarantine``,
``batch_reconciliation``).

Semantics -- rows versus sources:

1. **Row-level critical failure -> quarantine, the rest proceeds.** A row failing any critical row check
   (identity, required value, parse error, range, allowed value, reference) is quarantined with a
   reason naming the value (``nps_score=14 outside 0..10``). A column-level failure (required column
   missing, wrong dtype) or a critical check that could not run makes *every* row unusable: all are
   quarantined. Row-level *warnings* only flag rows (``outcome.flagged``); they are accepted.
2. **The source is BLOCKED only by an aggregate critical failure**: a critical batch check failed
   (freshness by default; volume when configured critical), or the share of landed rows quarantined is
   above ``thresholds.max_quarantine_share`` (default 20%, reported as the ``gate_max_quarantine_share``
   result). Then ``critical_failed`` is True, ``block_reasons`` says why, and ``blocked_dimensions``
   maps the source to the health dimensions it feeds (its ``sources.registry`` entry): scoring must
   carry those dimensions forward or mark them stale instead of scoring from bad data.
   With ``context.fail_on_critical`` a blocked outcome raises ``QualityGateError`` (after the Data Docs
   are written); the exception carries the outcome, which the notifier uses.
3. **Reconciliation counts rows**: landed = accepted + quarantined + out_of_scope; a row failing several
   checks is quarantined once (it has one quarantine row per failed check).
4. **Out of scope is not bad.** Records the product does not score by design (``suites.SCOPES``: a
   prospect's new-business deal, whose company is not a customer in the CRM) are filtered before the
   checks and counted as ``out_of_scope``: never quarantined, never counted toward the blocking share.

Every object goes through the same decision (``_decide`` -> ``judge``), the same alert and the same
``fail_on_critical`` setting: the validate task of each source applies ``enforce`` to the verdicts of all
its objects, including those validated while streaming (Mixpanel events) and stored by the extract task.

Chunks: ``validate(..., partial=True)`` validates one chunk (e.g. 100k Mixpanel events): row and column
checks run in GX, batch checks are only measured (max timestamp, row count) and no blocking decision is
taken. ``merge(outcomes)`` sums counts, concatenates quarantine, evaluates the batch checks on the
merged measurements (max of maxima, sum of counts -- exactly what one-shot GX computes) and then
decides; its quarantine is in one-piece order (check by check, rows in batch order), so the stored verdict
of a chunked batch equals the one-piece verdict row for row. ``validate_chunks`` does both. Uniqueness is
checked within a chunk: the landed-batch reader (``pipeline.validate.landed_chunks``) never splits an id
between chunks, so there it is uniqueness over the batch; for streamed Mixpanel events the extractor drops
repeated ``$insert_id`` before chunking.

GX and pandas are imported inside functions: DAG files may import this module at parse time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthscore.quality.policy import QualityThresholds, dimensions_fed_by
from healthscore.quality.suites import (
    REFERENCES,
    SCOPES,
    SUITE_VERSION,
    Check,
    declared_checks,
    plan,
    suite_name,
)
from healthscore.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

SHARE_EXPECTATION = "gate_max_quarantine_share"


class QualityGateError(RuntimeError):
    """A source failed an aggregate critical check; ``outcome`` says which and what is blocked."""

    def __init__(self, outcome: ValidationOutcome) -> None:
        self.outcome = outcome
        dims = ", ".join(d for ds in outcome.blocked_dimensions.values() for d in ds)
        super().__init__(
            f"quality gate blocked {outcome.suite} for batch {outcome.batch_date} (run {outcome.run_id}): "
            f"{'; '.join(outcome.block_reasons)}. Blocked dimensions: {dims}. "
            f"Data Docs: {outcome.docs_path}")


@dataclass(frozen=True)
class ValidationContext:
    """Everything a validation needs besides the frame. Known-id sets left as None skip their checks.

    ``known_organization_ids`` may be the Zendesk organization -> CRM company mapping (its keys are used).
    ``volume_history`` maps ``source.object`` to daily landed row counts, oldest first.
    ``data_docs_index_limit``: validations the Data Docs index links (the caller's setting).
    """

    run_id: str
    batch_date: date
    data_interval_end: datetime
    data_docs_dir: Path
    known_company_ids: Collection[str] | None = None
    known_owner_ids: Collection[str] | None = None
    known_organization_ids: Mapping[Any, Any] | Collection[Any] | None = None
    known_customer_ids: Collection[str] | None = None
    known_ticket_ids: Collection[Any] | None = None
    volume_history: Mapping[str, Sequence[int]] = field(default_factory=dict)
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)
    fail_on_critical: bool = False
    data_docs_index_limit: int = field(default_factory=lambda: Settings().data_docs_index_limit)
    publish_docs: bool = True  # False: the caller builds Data Docs later (the history bootstrap, once)

    @property
    def interval_end_ts(self) -> int:
        end = self.data_interval_end
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
        return int(end.timestamp())


@dataclass
class ValidationOutcome:
    """What the gate decided about one batch (or one chunk, when ``partial``)."""

    source: str
    obj: str
    suite: str
    run_id: str
    batch_date: date
    results: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]
    flagged: list[dict[str, Any]]
    accepted_ids: list[str] | None  # None when not kept (streamed chunks only count their rows)
    reconciliation: dict[str, Any]
    critical_failed: bool = False
    blocked_dimensions: dict[str, list[str]] = field(default_factory=dict)
    block_reasons: list[str] = field(default_factory=list)
    docs_path: Path | None = None
    validation_pages: list[Path] = field(default_factory=list)
    skipped_checks: list[str] = field(default_factory=list)
    partial: bool = False
    deferred: list[dict[str, Any]] = field(default_factory=list)
    max_quarantine_share: float = 0.2
    fail_on_critical: bool = False

    @property
    def quarantined_ids(self) -> set[str]:
        return {q["record_id"] for q in self.quarantine}

    def summary(self) -> dict[str, Any]:
        """Small JSON-able digest (XCom, logs, notifications)."""
        failed = [f"{r['expectation']}({r['column'] or ''})" for r in self.results if not r["success"]]
        return {"suite": self.suite, "run_id": self.run_id, "batch_date": self.batch_date.isoformat(),
                **{k: self.reconciliation.get(k, 0) for k in ("landed", "accepted", "quarantined", "out_of_scope")},
                "flagged": len({f["record_id"] for f in self.flagged}), "failed_expectations": failed,
                "critical_failed": self.critical_failed, "blocked_dimensions": self.blocked_dimensions,
                "block_reasons": self.block_reasons, "docs_path": str(self.docs_path) if self.docs_path else None}


# ---- public entry points -------------------------------------------------------------------------
def validate(source: str, obj: str, frame: pd.DataFrame, context: ValidationContext, *,
             partial: bool = False, keep_accepted_ids: bool = True, publish: bool = True) -> ValidationOutcome:
    """Validate one flattened batch (or one chunk of it with ``partial=True``); see the module doc.

    ``keep_accepted_ids=False`` spares a caller that streams millions of rows the list of accepted ids.
    ``publish=False`` defers the Data Docs pages to one ``publish_docs`` call for many validations.
    """
    from healthscore.quality.docs import runner

    if "record_id" not in frame.columns:
        raise ValueError(f"{source}.{obj}: the frame has no record_id column; build it with schemas.flatten()")
    key = f"{source}.{obj}"
    landed = len(frame)
    outside = _out_of_scope(source, obj, frame, context)
    if outside:
        frame = frame[~frame["record_id"].isin(outside)].reset_index(drop=True)
    history = list(context.volume_history.get(key, ()))[-context.thresholds.volume_window_days:]
    refs = {name for name, (attr, _) in REFERENCES.items() if getattr(context, attr) is not None}
    checks = plan(source, obj, thresholds=context.thresholds, refs=refs, volume=bool(history))
    run_checks = tuple(c for c in checks if not (partial and c.scope == "batch"))
    # Every check's parameters, the batch checks' too: a chunk's measurements carry their bounds to merge().
    params = _parameters(checks, frame, context, history)
    gx_runner = runner(context.data_docs_dir, context.data_docs_index_limit)
    validation, page = gx_runner.run(source, obj, run_checks, frame, params, context.run_id)
    if publish:
        gx_runner.publish()

    by_check = {(r.expectation_config.meta or {}).get("check"): r for r in validation.results}
    record_ids = frame["record_id"]
    base = {"run_id": context.run_id, "batch_date": context.batch_date, "source": source, "object": obj}
    results: list[dict[str, Any]] = []
    bad: dict[str, dict[tuple[str, str], dict[str, Any]]] = {"critical": {}, "warning": {}}
    for check in run_checks:
        result = by_check.get(check.id)
        row, failing = _interpret(check, result, record_ids, params)
        results.append(_result_row(context, source, obj, check, row))
        for record_id, reason in failing:
            bad[check.severity].setdefault((record_id, check.id), {
                **base, "record_id": record_id, "expectation": check.id, "reason": reason})
    quarantine = list(bad["critical"].values())
    quarantined = record_ids.isin({q["record_id"] for q in quarantine}).to_numpy()
    n_quarantined, n_outside = int(quarantined.sum()), landed - len(frame)
    outcome = ValidationOutcome(
        source=source, obj=obj, suite=suite_name(source, obj), run_id=context.run_id,
        batch_date=context.batch_date, results=results, quarantine=quarantine,
        flagged=list(bad["warning"].values()),
        accepted_ids=list(dict.fromkeys(record_ids[~quarantined].tolist())) if keep_accepted_ids else None,
        reconciliation={**base, "landed": landed, "accepted": landed - n_outside - n_quarantined,
                        "quarantined": n_quarantined, "out_of_scope": n_outside},
        docs_path=gx_runner.index_path, validation_pages=[page] if page else [],
        skipped_checks=_skipped(source, obj, refs), partial=partial,
        deferred=[_measure(c, frame, params) for c in checks if partial and c.scope == "batch"],
        max_quarantine_share=context.thresholds.max_quarantine_share, fail_on_critical=context.fail_on_critical,
    )
    if not partial:
        _decide(outcome, context)
    return outcome


def publish_docs(data_docs_dir: Path, index_limit: int) -> Path:
    """Build the Data Docs pages of every validation run with ``publish=False``, and the index; its path."""
    from healthscore.quality.docs import runner

    gx_runner = runner(data_docs_dir, index_limit)
    gx_runner.publish()
    return gx_runner.index_path


def merge(outcomes: Sequence[ValidationOutcome]) -> ValidationOutcome:
    """Combine chunk outcomes (``validate(..., partial=True)``) into the outcome of the whole batch."""
    if not outcomes:
        raise ValueError("merge() needs at least one chunk outcome")
    if not all(o.partial for o in outcomes):
        raise ValueError("merge() combines chunk outcomes only: validate each chunk with partial=True "
                         "(batch checks on a chunk would judge freshness and volume on part of the data)")
    first = outcomes[0]
    if len({(o.suite, o.run_id, o.batch_date) for o in outcomes}) != 1:
        raise ValueError("merge() got outcomes of different suites or runs")
    merged_rows: dict[tuple[str, str | None], dict[str, Any]] = {}
    for outcome in outcomes:
        for row in outcome.results:
            key = (row["expectation"], row["column"])
            merged_rows[key] = _merge_row(merged_rows[key], row) if key in merged_rows else {
                **row, "details": dict(row["details"])}
    results = list(merged_rows.values())
    order = {row["details"].get("check"): i for i, row in enumerate(results)}
    for parts in _group(d for o in outcomes for d in o.deferred).values():
        check = parts[0]["check"]
        values = [p["observed"] for p in parts if p["observed"] is not None]
        observed = (max(values) if values else None) if check.kind == "fresh" else sum(values)
        success = _within(observed, parts[0]["min_value"], parts[0]["max_value"])
        row = _batch_row(check, observed, success, parts[0]["min_value"], parts[0]["max_value"])
        results.append({**_row_base(first), **row})
    rec = dict(first.reconciliation)
    for k in ("landed", "accepted", "quarantined", "out_of_scope"):
        rec[k] = sum(o.reconciliation.get(k, 0) for o in outcomes)
    merged = ValidationOutcome(
        source=first.source, obj=first.obj, suite=first.suite, run_id=first.run_id, batch_date=first.batch_date,
        results=results,
        quarantine=sorted({(q["record_id"], q["expectation"]): q for o in outcomes for q in o.quarantine}.values(),
                          key=lambda q: order.get(q["expectation"], len(order))),  # stable: rows stay in order
        flagged=list({(q["record_id"], q["expectation"]): q for o in outcomes for q in o.flagged}.values()),
        accepted_ids=(None if any(o.accepted_ids is None for o in outcomes)
                      else list(dict.fromkeys(i for o in outcomes for i in o.accepted_ids))),
        reconciliation=rec, docs_path=first.docs_path,
        validation_pages=[p for o in outcomes for p in o.validation_pages],
        skipped_checks=sorted({s for o in outcomes for s in o.skipped_checks}),
        max_quarantine_share=first.max_quarantine_share, fail_on_critical=first.fail_on_critical,
    )
    _decide(merged, None)
    return merged


def validate_chunks(source: str, obj: str, frames: Iterable[pd.DataFrame],
                    context: ValidationContext) -> ValidationOutcome:
    """Validate a stream of chunks (bounded memory) and merge them; raises like ``validate``."""
    outcomes = [validate(source, obj, frame, context, partial=True, publish=False) for frame in frames]
    if not outcomes:
        from healthscore.sources.schemas import empty_frame

        outcomes = [validate(source, obj, empty_frame(source, obj), context, partial=True, publish=False)]
    publish_docs(context.data_docs_dir, context.data_docs_index_limit)
    return merge(outcomes)


# ---- run-time parameters -------------------------------------------------------------------------
def _parameters(checks: tuple[Check, ...], frame: pd.DataFrame, context: ValidationContext,
                history: list[int]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for check in checks:
        if check.kind == "known":
            params[check.param("unknown")] = _unknown_values(frame, check, context)
        elif check.kind == "fresh":
            params[check.param("fresh_min")] = int(context.interval_end_ts - (check.hours or 0) * 3600)
        elif check.kind == "volume":
            median = statistics.median(history)
            params["volume_min"] = math.floor(median / context.thresholds.volume_k)
            params["volume_max"] = math.ceil(median * context.thresholds.volume_k)
    return params


def _out_of_scope(source: str, obj: str, frame: pd.DataFrame, context: ValidationContext) -> set[str]:
    """Record ids of rows the product does not score by design (``suites.SCOPES``); empty without the
    reference set the rule needs (then nothing can be told apart, and the checks judge every row)."""
    rule = SCOPES.get((source, obj))
    if rule is None or not len(frame):
        return set()
    known = getattr(context, REFERENCES[rule.ref][0])
    if known is None:
        return set()
    known_text = {str(k) for k in (known.keys() if isinstance(known, Mapping) else known)}
    keys = frame[rule.column]
    mask = keys.notna() & ~keys.astype(str).isin(known_text)
    for column, values in rule.where.items():
        mask &= frame[column].str.lower().isin(values).fillna(False)
    for column, values in rule.unless.items():
        mask &= ~frame[column].str.lower().isin(values).fillna(False)
    return set(frame.loc[mask.to_numpy(dtype=bool), "record_id"].tolist())


def _unknown_values(frame: pd.DataFrame, check: Check, context: ValidationContext) -> list[Any]:
    """The batch's distinct keys missing from the known set (the NotInSet parameter, see suites doc)."""
    import pandas as pd

    if check.column not in frame.columns:
        return []
    known = getattr(context, REFERENCES[check.ref or ""][0])
    known_text = {str(k) for k in (known.keys() if isinstance(known, Mapping) else known)}
    values = pd.unique(frame[check.column].dropna())
    return [v for v in values.tolist() if str(v) not in known_text]


def _skipped(source: str, obj: str, refs: set[str]) -> list[str]:
    return [f"{c.id}: no {REFERENCES[c.ref or ''][0]} in the context" for c in declared_checks(source, obj)
            if c.kind == "known" and c.ref not in refs]


# ---- interpreting GX results ---------------------------------------------------------------------
def _exception(result: Any) -> str | None:
    info = getattr(result, "exception_info", None) or {}
    candidates = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for item in candidates:
        if item.get("raised_exception"):
            return str(item.get("exception_message") or "exception")
    return None


def _interpret(check: Check, result: Any, record_ids: pd.Series,
               params: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """(result fields, failing (record_id, reason) rows) for one check."""
    all_rows = record_ids.tolist()
    if result is None:
        error = "GX returned no result for this expectation"
        return {"success": False, "observed": f"error: {error}", "exception": error}, \
            ([(r, f"{check.id} could not run: {error}") for r in all_rows] if check.scope != "batch" else [])
    error = _exception(result)
    res = result.result or {}
    if error:
        failing = [] if check.scope == "batch" else [(r, f"{check.id} could not run: {error}") for r in all_rows]
        return {"success": False, "observed": f"error: {error}", "exception": error}, failing
    success = bool(result.success)
    if check.scope == "batch":
        return {"success": success, "observed": res.get("observed_value"),
                "min_value": _bound(check, params, "min"), "max_value": _bound(check, params, "max")}, []
    if check.scope == "column":
        observed = res.get("observed_value", "present") if check.kind == "type" else (
            "present" if success else "missing")
        why = (f"required column {check.column} is missing" if check.kind == "exists"
               else f"column {check.column} is {observed}, expected {check.dtype}")
        return {"success": success, "observed": observed}, ([] if success else [(r, why) for r in all_rows])
    unexpected = res.get("unexpected_index_list") or []
    failing = [(str(item.get("record_id")), _reason(check, item)) for item in unexpected]
    if not success and not failing:  # failed without naming rows: none of them can be trusted
        failing = [(r, f"{check.id} failed without identifying rows") for r in all_rows]
    return {"success": success, "unexpected_count": int(res.get("unexpected_count") or 0),
            "element_count": int(res.get("element_count") or 0),
            "partial_unexpected": [_plain(v) for v in (res.get("partial_unexpected_list") or [])[:10]],
            "sample_record_ids": [f[0] for f in failing[:10]]}, failing


def _bound(check: Check, params: dict[str, Any], side: str) -> Any:
    if check.kind == "fresh":
        return params.get(check.param("fresh_min")) if side == "min" else None
    return params.get(f"volume_{side}")


def _reason(check: Check, item: Mapping[str, Any]) -> str:
    col = check.column or ""
    value = _fmt(item.get(col))
    match check.kind:
        case "not_null":
            return f"{col} is null ({check.reason})"
        case "parse":
            return f"unparseable value: {item.get(col)}"
        case "unique":
            return f"{col}={value} appears more than once in the batch"
        case "range":
            return f"{col}={value} {_range_text(check)}"
        case "in_set":
            return f"{col}={value} not one of {'/'.join(str(v) for v in check.values or ())}"
        case "known":
            return f"{col}={value} is not a known {REFERENCES[check.ref or ''][1]}"
        case "pair":
            return (f"{check.other}={_fmt(item.get(check.other or ''))} exceeds {col}={value}")
    return f"{check.id} failed for {col}={value}"


def _range_text(check: Check) -> str:
    lo, hi = _fmt(check.min_value, quote=False), _fmt(check.max_value, quote=False)
    if check.min_value is not None and check.max_value is not None:
        return f"outside {lo}..{hi}"
    return f"below {lo}" if check.min_value is not None else f"above {hi}"


def _plain(value: Any) -> Any:
    """JSON-able scalar (numpy and pandas scalars to Python)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _fmt(value: Any, quote: bool = True) -> str:
    value = _plain(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and quote:
        return repr(value)
    return "null" if value is None else str(value)


# ---- results rows --------------------------------------------------------------------------------
def _row_base(outcome: ValidationOutcome) -> dict[str, Any]:
    return {"run_id": outcome.run_id, "batch_date": outcome.batch_date, "source": outcome.source,
            "suite": outcome.suite}


def _details(check: Check) -> dict[str, Any]:
    details: dict[str, Any] = {"check": check.id, "scope": check.scope, "reason": check.reason,
                               "suite_version": SUITE_VERSION}
    if check.kind == "range":
        details["range"] = [check.min_value, check.max_value]
    elif check.kind == "in_set":
        details["allowed"] = list(check.values or ())
    elif check.kind == "known":
        details["reference"] = check.ref
    elif check.kind == "fresh":
        details["hours"] = check.hours
    return details


def _result_row(context: ValidationContext, source: str, obj: str, check: Check,
                part: dict[str, Any]) -> dict[str, Any]:
    base = {"run_id": context.run_id, "batch_date": context.batch_date, "source": source,
            "suite": suite_name(source, obj)}
    if check.scope == "batch" and "exception" not in part:
        return {**base, **_batch_row(check, _plain(part["observed"]), part["success"], part["min_value"],
                                     part["max_value"])}
    details = _details(check)
    for key in ("partial_unexpected", "sample_record_ids", "exception"):
        if key in part:
            details[key] = part[key]
    unexpected, elements = part.get("unexpected_count"), part.get("element_count")
    observed = part.get("observed")
    if observed is None and elements is not None:
        observed = _count_text(unexpected or 0, elements)
    return {**base, "expectation": check.expectation_type, "column": check.columns, "severity": check.severity,
            "success": bool(part["success"]), "observed_value": None if observed is None else str(observed),
            "unexpected_count": unexpected, "element_count": elements, "details": details}


def _batch_row(check: Check, observed: Any, success: bool, min_value: Any, max_value: Any) -> dict[str, Any]:
    details = {**_details(check), "min_value": min_value, "max_value": max_value}
    if check.kind == "fresh" and min_value is not None:
        details["min_value_utc"] = datetime.fromtimestamp(min_value, UTC).isoformat()
        if observed is not None:
            details["observed_utc"] = datetime.fromtimestamp(observed, UTC).isoformat()
    return {"expectation": check.expectation_type, "column": check.columns, "severity": check.severity,
            "success": bool(success), "observed_value": "null" if observed is None else str(observed),
            "unexpected_count": None, "element_count": None, "details": details}


def _count_text(unexpected: int, elements: int) -> str:
    share = f" ({100 * unexpected / elements:.2f}%)" if elements else ""
    return f"{unexpected} of {elements} unexpected{share}"


def _merge_row(acc: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    acc["success"] = acc["success"] and row["success"]
    if row["element_count"] is not None:
        acc["unexpected_count"] = (acc["unexpected_count"] or 0) + (row["unexpected_count"] or 0)
        acc["element_count"] = (acc["element_count"] or 0) + row["element_count"]
        acc["observed_value"] = _count_text(acc["unexpected_count"], acc["element_count"])
        for key in ("partial_unexpected", "sample_record_ids"):
            if key in row["details"]:
                acc["details"][key] = (acc["details"].get(key, []) + row["details"][key])[:10]
    elif row["observed_value"] != acc["observed_value"]:
        seen = acc["observed_value"].split(" | ") if acc["observed_value"] else []
        if row["observed_value"] not in seen:
            acc["observed_value"] = " | ".join([*seen, row["observed_value"]])
    if "exception" in row["details"]:
        acc["details"]["exception"] = row["details"]["exception"]
    return acc


def _measure(check: Check, frame: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """A chunk's contribution to a batch check: its newest timestamp or its row count."""
    import pandas as pd

    if check.kind == "fresh":
        newest = frame[check.column].max() if check.column in frame.columns and len(frame) else None
        observed = None if newest is None or pd.isna(newest) else int(newest)
    else:
        observed = len(frame)
    return {"check": check, "observed": observed, "min_value": _bound(check, params, "min"),
            "max_value": _bound(check, params, "max")}


def _group(items: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(item["check"].id, []).append(item)
    return groups


def _within(value: Any, low: Any, high: Any) -> bool:
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value <= high)


# ---- the blocking decision -----------------------------------------------------------------------
def _decide(outcome: ValidationOutcome, context: ValidationContext | None) -> None:
    """Add the quarantine-share result, set blocking fields, raise if asked to."""
    rec = outcome.reconciliation
    landed, quarantined = rec["landed"] - rec.get("out_of_scope", 0), rec["quarantined"]
    share = quarantined / landed if landed else 0.0
    limit = outcome.max_quarantine_share
    ok = share <= limit
    outcome.results.append({
        **_row_base(outcome), "expectation": SHARE_EXPECTATION, "column": None, "severity": "critical",
        "success": ok, "observed_value": f"{share:.4f}", "unexpected_count": quarantined, "element_count": landed,
        "details": {"check": SHARE_EXPECTATION, "scope": "batch", "max_share": limit,
                    "reason": "too many unusable rows: the rest of the batch is not representative"}})
    judge(outcome)
    fail = context.fail_on_critical if context is not None else outcome.fail_on_critical
    if fail and outcome.critical_failed:
        raise QualityGateError(outcome)


def judge(outcome: ValidationOutcome) -> ValidationOutcome:
    """Set ``block_reasons``, ``critical_failed`` and ``blocked_dimensions`` from the outcome's result rows
    (the quarantine-share row included): the one blocking rule, also for a verdict read back from the
    warehouse (``pipeline.validate.stored_outcome``)."""
    rec = outcome.reconciliation
    reasons = [_batch_reason(r) for r in outcome.results
               if r["severity"] == "critical" and not r["success"] and r["details"].get("scope") == "batch"
               and r["expectation"] != SHARE_EXPECTATION]
    share_row = next((r for r in outcome.results if r["expectation"] == SHARE_EXPECTATION), None)
    if share_row is not None and not share_row["success"]:
        landed, quarantined = rec["landed"] - rec.get("out_of_scope", 0), rec["quarantined"]
        share = quarantined / landed if landed else 0.0
        limit = share_row["details"].get("max_share", outcome.max_quarantine_share)
        reasons.append(f"{quarantined} of {landed} rows quarantined ({share:.1%} > {limit:.0%})")
    outcome.block_reasons = reasons
    outcome.critical_failed = bool(reasons)
    outcome.blocked_dimensions = {outcome.source: list(dimensions_fed_by(outcome.source))} if reasons else {}
    return outcome


def _batch_reason(row: dict[str, Any]) -> str:
    """Why a failed batch check blocks, in words."""
    details, column = row["details"], row["column"]
    if "exception" in details:
        return f"{details['check']} could not run: {details['exception']}"
    if row["expectation"] == "expect_column_max_to_be_between":
        if row["observed_value"] == "null":
            return f"stale: no {column} at all (empty batch), needs one after {details.get('min_value_utc')}"
        return (f"stale: newest {column} is {details.get('observed_utc')}, older than {details.get('min_value_utc')}"
                f" ({details.get('hours'):g} h before the data interval end)")
    if row["expectation"] == "expect_table_row_count_to_be_between":
        return f"volume: {row['observed_value']} rows, expected {details.get('min_value')}..{details.get('max_value')}"
    return f"{details.get('check')} failed: observed {row['observed_value']}"
