"""Score a BYO table with a model through the product's own engine, and measure the scores against outcomes.

``score_table`` calls ``healthscore.scoring.score_accounts`` once per as-of date, exactly as the daily DAG
scores one batch, so a backtest shows what the DAG would have shown. Models for a user's table are built
here too: ``table_model`` turns any base model into one whose signals are the table's mapped columns
(the packaged model's dimension weights, curves from the table's own distribution), which is both what
``backtest`` uses without ``--model`` and the baseline ``recalibrate`` has to beat.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from threadpoolctl import threadpool_limits

from healthscore.config import ModelConfig, ModelConfigError, load_model_config, model_config_from_dict
from healthscore.evaluation.byo import (
    ACCOUNT_COLUMN,
    DATE_COLUMN,
    DIMENSIONS,
    SEGMENT_COLUMN,
    SEGMENTS,
    STAGE_COLUMN,
    ByoInputError,
    ByoTable,
    MappedSignal,
    load_byo,
)
from healthscore.evaluation.metrics import binary_metrics, risk_from_health
from healthscore.scoring import DIM_PREFIX, score_accounts

SPECIFICITY_TARGET = 0.85
SOURCE_OF_DIMENSION = {
    "usage": "product",
    "engagement": "crm",
    "relationship": "crm",
    "value": "billing",
    "financial": "billing",
    "support": "support",
}
BRIER_NOTE = "Brier of (100 - score) / 100 read as a churn probability; a health score is not calibrated"


# ------------------------------------------------------------------------------------------- curves


@dataclass(frozen=True)
class Curve:
    """A normalization curve in the schema's terms (raw units of the column)."""

    floor: float
    cap: float
    baseline: float
    target: float


def _tidy(value: float) -> float:
    """Six significant digits for a readable YAML; callers re-check the ordering it must keep."""
    return float(f"{value:.6g}") if math.isfinite(value) and value != 0 else float(value)


def curve_from_goodness(f: float, b: float, t: float, top: float, direction: int) -> Curve:
    """Knots in "goodness" space (value x direction: 0 at ``f``, 50 at ``b``, 100 at ``t``) to a Curve."""
    tidy = tuple(_tidy(v) for v in (f, b, t, top))
    if tidy[0] <= tidy[1] < tidy[2] <= tidy[3]:
        f, b, t, top = tidy
    if direction > 0:
        return Curve(floor=f, cap=top, baseline=b, target=t)
    return Curve(floor=-top, cap=-f, baseline=-b, target=-t)


def binary_curve(direction: int) -> Curve:
    """A 0/1 flag: the healthy value scores 100, the other 0 (as the packaged flags do)."""
    return Curve(0.0, 1.0, 0.5, 1.0) if direction > 0 else Curve(0.0, 1.0, 0.5, 0.0)


def distribution_curve(values: np.ndarray, direction: int, binary: bool) -> Curve:
    """No outcomes used: the worst 5% score 0, the median 50, the best 5% 100 (in the mapped direction)."""
    if binary:
        return binary_curve(direction)
    u = direction * values[np.isfinite(values)]
    if u.size == 0:  # no value at all (a signal absent from a fold's rows): a placeholder on [0, 1] that no row uses
        return binary_curve(direction)
    f, b, t = np.quantile(u, [0.05, 0.5, 0.95])
    top = float(u.max())
    if t <= b:  # a column mostly at one value: 100 starts at the next value seen
        above = u[u > b]
        t = float(above.min()) if above.size else float(b) + 1.0
    return curve_from_goodness(float(f), float(b), float(t), max(top, float(t)), direction)


# -------------------------------------------------------------------------------------------- models


def _kind(signal: MappedSignal, values: np.ndarray, curve: Curve) -> str:
    if signal.binary and (curve.floor, curve.cap) == (0.0, 1.0):
        return "binary"
    if curve.floor < 0 or curve.cap < 0:
        return "change_pct"  # the schema's only signed kind
    present = values[np.isfinite(values)]
    return "count" if np.all(present == np.round(present)) else "rate"


def percent_weights(raw: Mapping[str, float]) -> dict[str, float]:
    """Non-negative weights -> percent summing to 100 (equal when all are 0), 4 decimals."""
    keys = list(raw)
    values = np.array([max(float(raw[k]), 0.0) for k in keys])
    if values.sum() <= 0:
        values = np.ones(len(keys))
    pct = np.round(values / values.sum() * 100.0, 4)
    pct[int(np.argmax(pct))] += round(100.0 - float(pct.sum()), 4)
    return {k: float(round(v, 4)) for k, v in zip(keys, pct, strict=True)}


def signal_spec(
    signal: MappedSignal,
    values: np.ndarray,
    curve: Curve,
    *,
    weight: float = 1.0,
    by_segment: Mapping[str, Curve] | None = None,
    note: str = "",
) -> dict[str, Any]:
    """The YAML entry of one mapped column."""
    spec: dict[str, Any] = {
        "description": f"Table column {signal.column!r}"
        + (" (higher is healthier)" if signal.direction > 0 else " (lower is healthier)")
        + (f"; {note}" if note else ""),
        "unit": "flag" if signal.binary else "as in the table",
        "kind": _kind(signal, values, curve),
        "source": SOURCE_OF_DIMENSION.get(signal.dimension, "crm"),
        "direction": "higher_is_better" if signal.direction > 0 else "lower_is_better",
        "floor": curve.floor,
        "cap": curve.cap,
        "baseline": curve.baseline,
        "target": curve.target,
        "weight": float(weight),
    }
    if by_segment:
        spec["by_segment"] = {s: {"baseline": c.baseline, "target": c.target} for s, c in by_segment.items()}
    return spec


def build_model(
    base: ModelConfig,
    dimensions: Mapping[str, Mapping[str, dict[str, Any]]],
    weights: Mapping[str, Mapping[str, float]],
    *,
    version: str,
    description: str,
    signal_weight_overrides: Mapping[str, Mapping[str, float]] | None = None,
    bands: Sequence[dict[str, Any]] | None = None,
    segment_thresholds: Mapping[str, dict[str, float]] | None = None,
    stage_thresholds: dict[str, float] | None = None,
    source: str = "<byo model>",
) -> ModelConfig:
    """A complete, validated model: the base's bands, lifecycle, momentum and playbooks, the given signals.

    The method is the glass-box weighted average (rule methods name the base's signals, which the table
    need not have). Optional bands/thresholds replace the base's; ``stage_thresholds`` makes every
    lifecycle stage use the segment lines, so the lines learned are the lines applied.
    """
    data = base.model_dump(mode="json")
    data["version"] = version
    data["description"] = description
    data["dimensions"] = {
        dim: {
            "description": base.dimensions[dim].description if dim in base.dimensions else dim,
            "signals": dict(signals),
        }
        for dim, signals in dimensions.items()
    }
    data["weights"] = {seg: dict(weights[seg]) for seg in SEGMENTS}
    data["signal_weight_overrides"] = {
        seg: dict((signal_weight_overrides or {}).get(seg, {})) for seg in SEGMENTS
    }
    scoring = data["scoring"]
    scoring["method"] = "weighted_average"
    scoring["points"]["rules"] = []
    scoring["rag_rules"]["rules"] = []
    if bands is not None:
        data["bands"] = list(bands)
    if segment_thresholds is not None:
        data["segment_thresholds"] = {seg: dict(segment_thresholds[seg]) for seg in SEGMENTS}
    if stage_thresholds is not None:
        for stage in data["lifecycle"]["stages"]:
            stage["thresholds"] = dict(stage_thresholds)
            stage["use_segment_thresholds"] = True
    try:
        return model_config_from_dict(data, source)
    except ModelConfigError as exc:  # a bug here, not the user's input: say what failed, in one line
        raise ByoInputError(
            f"the model built for the table is invalid: {exc.problems[0].render(source)}"
        ) from None


def base_weights_for(base: ModelConfig, dims: Sequence[str]) -> dict[str, dict[str, float]]:
    """The base model's dimension weights restricted to ``dims``, renormalized to 100 per segment."""
    out = {}
    for seg in SEGMENTS:
        w = base.weights_for(seg)
        out[seg] = percent_weights({d: w.get(d, 0.0) for d in dims})
    return out


def mapped_dimensions(signals: Sequence[MappedSignal]) -> list[str]:
    """Dimensions in the packaged catalogue order, then any others in mapping order."""
    present = {s.dimension for s in signals}
    return [d for d in DIMENSIONS if d in present] + sorted(present - set(DIMENSIONS))


def table_model(base: ModelConfig, table: ByoTable, *, version: str | None = None) -> ModelConfig:
    """The base model's dimension weights over the table's mapped signals, normalized by their distribution."""
    dims = mapped_dimensions(table.signals)
    dimensions: dict[str, dict[str, dict[str, Any]]] = {d: {} for d in dims}
    for sig in table.signals:
        values = table.raw(sig)
        dimensions[sig.dimension][sig.signal_id] = signal_spec(
            sig,
            values,
            distribution_curve(values, sig.direction, sig.binary),
            note="normalized by the table's distribution (5th percentile 0, median 50, 95th 100)",
        )
    return build_model(
        base,
        dimensions,
        base_weights_for(base, dims),
        version=version or f"{base.version}-table",
        description=f"{base.version}'s dimension weights over the table's signals, normalized by their distribution",
    )


# ------------------------------------------------------------------------------------------- scoring


def columns_for(model: ModelConfig, table: ByoTable) -> dict[str, str]:
    """Model signal id -> table column; every signal of the model must have its column."""
    by_id = {s.signal_id: s.column for s in table.signals}
    by_column = {s.column: s.column for s in table.signals}
    out: dict[str, str] = {}
    for sid in model.all_signal_ids():
        column = by_id.get(sid) or by_column.get(sid)
        if column is None:
            raise ByoInputError(
                f"missing column for model signal {sid!r}: the model scores it but the mapping names no such column"
            )
        out[sid] = column
    return out


def engine_frame(model: ModelConfig, table: ByoTable, notes: list[str] | None = None) -> pd.DataFrame:
    """The table in the engine's ``signals`` shape: ids as columns, lifecycle stage only when the model knows it."""
    columns = columns_for(model, table)
    frame = pd.DataFrame(
        {
            ACCOUNT_COLUMN: table.frame[ACCOUNT_COLUMN].to_numpy(dtype=object),
            DATE_COLUMN: table.frame[DATE_COLUMN].to_numpy(dtype="datetime64[D]"),
            SEGMENT_COLUMN: table.frame[SEGMENT_COLUMN].to_numpy(dtype=object),
        }
    )
    if table.has_stage:
        stages = table.frame[STAGE_COLUMN]
        known = {s.name for s in model.lifecycle.stages}
        unknown = sorted({str(v) for v in stages.dropna()} - known)
        if unknown:
            if notes is not None:
                notes.append(
                    f"{STAGE_COLUMN} values {unknown[:5]} are not stages of the model ({', '.join(sorted(known))}); "
                    "the column was not used"
                )
        else:
            frame[STAGE_COLUMN] = stages.to_numpy(dtype=object)
    for sid, column in columns.items():
        frame[sid] = table.frame[column].to_numpy(dtype=float)
    return frame


def score_table(model: ModelConfig, table: ByoTable, notes: list[str] | None = None) -> pd.DataFrame:
    """``score_accounts`` per as-of date; one row per table row, in table order.

    Columns: score (NaN when unscored), band (None when unscored), band_index (0 = best, -1 unscored),
    unscored_reason, and one column per dimension of the model.
    """
    frame = engine_frame(model, table, notes)
    dims = list(model.dimensions)
    parts = []
    for _, rows in sorted(frame.groupby(DATE_COLUMN, sort=True).indices.items()):
        out = score_accounts(frame.iloc[rows], model, model_version=model.version)
        part = pd.DataFrame(
            {
                "score": out["score"].to_numpy(dtype=float, na_value=np.nan),
                "band_index": np.asarray(out["band"].cat.codes, dtype=int),
                "unscored_reason": out["unscored_reason"].to_numpy(dtype=object),
                **{d: out[DIM_PREFIX + d].to_numpy(dtype=float, na_value=np.nan) for d in dims},
            },
            index=rows,
        )
        parts.append(part)
    scored = pd.concat(parts).sort_index()
    names = [b.name for b in model.bands]
    codes = scored["band_index"].to_numpy()
    scored["band"] = np.where(codes >= 0, np.array(names, dtype=object)[np.maximum(codes, 0)], None)
    return scored.reset_index(drop=True)


# ------------------------------------------------------------------------------------------- metrics


def flagged(scored: pd.DataFrame) -> np.ndarray:
    """The band rule as a classifier: the third band (At Risk) or worse predicts churn."""
    return scored["band_index"].to_numpy() >= 2


def band_table(scored: pd.DataFrame, y: np.ndarray, model: ModelConfig) -> list[dict[str, Any]]:
    """Accounts and churn rate per band, best band first."""
    rows = []
    total = int(np.sum(scored["band_index"].to_numpy() >= 0))
    for i, band in enumerate(model.bands):
        mask = scored["band_index"].to_numpy() == i
        n = int(mask.sum())
        churned = int(y[mask].sum())
        rows.append(
            {
                "band": band.name,
                "n": n,
                "share": n / total if total else None,
                "churned": churned,
                "churn_rate": churned / n if n else None,
            }
        )
    return rows


def bands_ordered(table: Sequence[Mapping[str, Any]]) -> bool:
    """True when each non-empty band churns at least as much as every better band (the bands mean it)."""
    rates = [r["churn_rate"] for r in table if r["n"]]
    return all(a <= b for a, b in zip(rates, rates[1:], strict=False))


def score_metrics(scored: pd.DataFrame, table: ByoTable, model: ModelConfig) -> dict[str, Any]:
    """Overall and per-segment figures of a scored table, the band table and the unscored count."""
    y = table.y
    score = scored["score"].to_numpy(dtype=float)
    pred = flagged(scored)
    overall = binary_metrics(y, risk_from_health(score), y_pred=pred, specificity_target=SPECIFICITY_TARGET)
    overall["brier_note"] = BRIER_NOTE
    by_segment: dict[str, Any] = {}
    if table.has_segment:
        segs = table.segments
        for seg in SEGMENTS:
            mask = segs == seg
            if mask.any():
                by_segment[seg] = binary_metrics(
                    y[mask],
                    risk_from_health(score[mask]),
                    y_pred=pred[mask],
                    specificity_target=SPECIFICITY_TARGET,
                )
    bands = band_table(scored, y, model)
    return {
        "rows": len(scored),
        "unscored": int(np.isnan(score).sum()),
        "decision_rule": f"band {model.bands[2].name} or worse predicts churn",
        "overall": overall,
        "by_segment": by_segment,
        "bands": bands,
        "bands_ordered": bands_ordered(bands),
    }


# --------------------------------------------------------------------------------------------- output


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(_clean(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_model_yaml(path: Path, model: ModelConfig, header: str) -> None:
    """The model as YAML that ``healthscore config validate`` accepts and ``backtest --model`` reads back."""
    body = yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=110)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(comment + body, encoding="utf-8")


def scores_frame(scored: pd.DataFrame, table: ByoTable, model: ModelConfig) -> pd.DataFrame:
    """scores.csv: account_id, as_of_date, score, band, the outcome, one column per dimension."""
    out = pd.DataFrame(
        {
            ACCOUNT_COLUMN: table.frame[ACCOUNT_COLUMN].to_numpy(dtype=object),
            DATE_COLUMN: pd.to_datetime(table.frame[DATE_COLUMN]).dt.strftime("%Y-%m-%d").to_numpy(),
            "score": scored["score"].to_numpy(dtype=float),
            "band": scored["band"].to_numpy(dtype=object),
            table.outcome: table.y,
        }
    )
    for dim in model.dimensions:
        out[dim] = scored[dim].to_numpy(dtype=float)
    return out


def prepare_out_dir(out: Path | str) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ByoInputError(f"{path}: --out must be a directory, and this is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ByoInputError(f"{path}: cannot create the output directory: {exc.strerror or exc}") from None
    return path


def load_model_arg(path: Path | str | None) -> ModelConfig:
    """``--model`` (or the packaged model): a config error becomes one line naming the first problem."""
    try:
        return load_model_config(Path(path) if path else None)
    except ModelConfigError as exc:
        more = f" (and {len(exc.problems) - 1} more problems)" if len(exc.problems) > 1 else ""
        raise ByoInputError(f"invalid model: {exc.problems[0].render(exc.source)}{more}") from None


def run_backtest(
    table_path: Path | str,
    mapping_path: Path | str,
    outcome: str,
    out: Path | str,
    model_path: Path | str | None = None,
) -> dict[str, Any]:
    """``healthscore backtest``: score every row with the model, write scores.csv, metrics.json, report.html."""
    from healthscore.reports.byo import backtest_report

    model = load_model_arg(model_path)
    dims = tuple(dict.fromkeys((*DIMENSIONS, *model.dimensions)))
    table = load_byo(table_path, mapping_path, outcome, dimensions=dims)
    out_dir = prepare_out_dir(out)
    notes = list(table.notes)
    if model_path is None:
        model = table_model(model, table)
        how = "packaged model's dimension weights; signals normalized by the table's own distribution"
    else:
        how = f"model {model.version} from {model_path}"
        in_model = set(model.all_signal_ids())
        unused = [s.column for s in table.signals if s.signal_id not in in_model and s.column not in in_model]
        if unused:
            notes.append(f"mapped columns the model does not score: {', '.join(unused)}")
    with threadpool_limits(limits=1, user_api="blas"):
        scored = score_table(model, table, notes)
    metrics = {
        "command": "backtest",
        "table": str(table_path),
        "outcome": outcome,
        "model": {"version": model.version, "config_hash": model.config_hash, "how": how},
        "accounts": int(table.frame[ACCOUNT_COLUMN].nunique()),
        "dates": {
            "first": str(table.dates.min()),
            "last": str(table.dates.max()),
            "count": int(np.unique(table.dates).size),
        },
        "evaluation": "every row of the table, scored by the model as given (nothing is fitted here); if the "
        "model was recalibrated on this table, only its held-out rows are out-of-sample",
        **score_metrics(scored, table, model),
        "notes": notes,
    }
    scores_frame(scored, table, model).to_csv(out_dir / "scores.csv", index=False)
    write_json(out_dir / "metrics.json", metrics)
    (out_dir / "report.html").write_text(backtest_report(metrics, scored, table, model), encoding="utf-8")
    return metrics
