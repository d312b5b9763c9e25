"""Sources that cannot be used for a batch, and what that does to the dimensions they feed. Pure.

Sources the gate BLOCKED for the batch, sources with no batch landed for the date, and sources with no
data at all take out the dimensions they feed. Each such dimension is carried forward per account from the
newest earlier ``account_signals`` row whose value came from a good run (at most the model's
``carry_forward.max_days`` old) with confidence ``carry_forward.decay_per_day ** age_days``; when there is none its signals stay NaN and the
dimension is listed in ``blocked_dimensions``. Scoring treats a listed dimension as missing, so carried
dimensions are deliberately NOT listed there (that would throw the carried values away): they are named in
``carried_dimensions`` and discounted by ``confidence_<dimension>``. ``dimension_sources`` records
{status, confidence, reason[, from]} per dimension: ``ok`` | ``carried_forward`` | ``missing``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from healthscore.config import ModelConfig

CONTRACT_COLUMNS = ("account_id", "as_of_date", "segment", "plan", "lifecycle_stage", "tenure_days", "arr_cents",
                    "renewal_date", "owner_id")
STATUS_COLUMNS = ("blocked_dimensions", "carried_dimensions")
CONFIDENCE_PREFIX = "confidence_"
DIMENSION_SOURCES = "dimension_sources"
_NOT_SIGNALS = frozenset({*CONTRACT_COLUMNS, *STATUS_COLUMNS, DIMENSION_SOURCES})

#: An earlier account_signals row: (as_of_date, signals, dimension_sources).
PriorRow = tuple[date, dict, dict]


@dataclass
class SourceStatus:
    """Whether a source's data may be used for a batch, and why not."""

    source: str
    usable: bool
    reason: str


def dimension_reasons(model: ModelConfig, statuses: Mapping[str, SourceStatus],
                      source_dimensions: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Dimension -> why it cannot use this run's data (empty list: it can)."""
    reasons: dict[str, list[str]] = {dim: [] for dim in model.dimensions}
    for source, status in statuses.items():
        if not status.usable:
            for dim in source_dimensions[source]:
                if dim in reasons:
                    reasons[dim].append(status.reason)
    return reasons


def as_dict(value: Any) -> dict:
    """A JSON column's value as a dict (engines hand back a mapping or JSON text)."""
    if isinstance(value, Mapping):
        return dict(value)
    return json.loads(value) if value else {}


def good_value(prior: PriorRow | None, dim: str) -> tuple[date, dict] | None:
    """(date of the last good value, signals of that row) for a dimension, if the prior row has one."""
    if prior is None:
        return None
    as_of_date, signals, sources = prior
    entry = sources.get(dim) or {}
    if entry.get("status") == "ok":
        return as_of_date, signals
    if entry.get("status") == "carried_forward" and entry.get("from"):
        return date.fromisoformat(entry["from"]), signals
    return None


def apply_dimension_status(frame: pd.DataFrame, model: ModelConfig, reasons: Mapping[str, list[str]],
                           prior: Mapping[str, PriorRow], batch_date: date,
                           source_dimensions: Mapping[str, Iterable[str]]) -> pd.DataFrame:
    """Carry blocked dimensions forward (or leave them NaN) and add the status/confidence columns."""
    carry = model.carry_forward
    n = len(frame)
    blocked: list[list[str]] = [[] for _ in range(n)]
    carried: list[list[str]] = [[] for _ in range(n)]
    sources: list[dict] = [{} for _ in range(n)]
    confidence: dict[str, np.ndarray] = {}
    ids = frame["account_id"].tolist()
    for dim, spec in model.dimensions.items():
        fed_by = sorted(s for s, dims in source_dimensions.items() if dim in dims)
        conf = np.ones(n)
        why = reasons.get(dim) or []
        if not why:
            ok = {"status": "ok", "confidence": 1.0,
                  "reason": f"fresh from {', '.join(fed_by)}" if fed_by else "no source mapped in the policy"}
            for row in sources:
                row[dim] = dict(ok)
            confidence[dim] = conf
            continue
        reason = "; ".join(why)
        signal_ids = list(spec.signals)
        columns = {s: frame[s].to_numpy(dtype=float, copy=True) for s in signal_ids}
        for i, account in enumerate(ids):
            good = good_value(prior.get(account), dim)
            age = (batch_date - good[0]).days if good else None
            if good is None or age is None or not 0 < age <= carry.max_days:
                for s in signal_ids:
                    columns[s][i] = np.nan
                conf[i] = 0.0
                blocked[i].append(dim)
                sources[i][dim] = {"status": "missing", "confidence": 0.0,
                                   "reason": f"{reason}; no good value in the last {carry.max_days} days"}
                continue
            weight = carry.confidence(age)
            for s in signal_ids:
                value = good[1].get(s)
                columns[s][i] = np.nan if value is None else float(value)
            conf[i] = weight
            carried[i].append(dim)
            sources[i][dim] = {"status": "carried_forward", "confidence": weight, "from": good[0].isoformat(),
                               "reason": f"{reason}; carried forward from {good[0].isoformat()}"}
        for s, values in columns.items():
            frame[s] = values
        confidence[dim] = conf
    frame["blocked_dimensions"] = blocked
    frame["carried_dimensions"] = carried
    for dim in model.dimensions:
        frame[CONFIDENCE_PREFIX + dim] = confidence[dim]
    frame[DIMENSION_SOURCES] = sources
    return frame.sort_values("account_id", kind="stable").reset_index(drop=True)


def signal_columns(frame: pd.DataFrame) -> list[str]:
    """The signal columns of a build_signals frame (everything that is not contract/status/confidence)."""
    return [c for c in frame.columns if c not in _NOT_SIGNALS and not str(c).startswith(CONFIDENCE_PREFIX)]
