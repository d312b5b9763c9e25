"""Recalibrate the glass-box weighted model on a user's table of outcomes.

The steps, all fitted on the training part only:

1. **Curves.** Per signal, the normalization curve (floor -> 0, baseline -> 50, target -> 100, monotone in
   the mapped direction) whose shape best matches the signal's retention log-odds: retention per value bin,
   made monotone (isotonic), turned into log-odds, then the knots chosen from the signal's quantiles that make
   those log-odds most nearly linear in the normalized score; then two rounds of backfitting refit each curve
   to its partial residual given the other signals (they all follow one latent health, so a signal's own
   relation carries the others' effects). Each ramp must hold >= 3% of the rows (no knots around a handful
   of rows). Per segment (baseline and target only; the schema keeps floor and cap global) where the
   segment has enough accounts. A signal without a monotone
   relation in its mapped direction keeps a distribution curve and ends up with weight 0.
2. **Weights.** A logistic regression of retention on the normalized signals with non-negative coefficients
   (L1 or L2, chosen by time-ordered, account-grouped cross-validation; balanced classes). A coefficient is
   the signal's weight; a dimension's weight is the sum of its signals', normalized to 100%. The weighted
   average is then the regression's linear predictor rescaled, so it ranks accounts as the regression does.
   Per segment where the data suffices (more than 100 accounts with outcomes) and cross-validation says the
   segment fits rank better than the universal one: shrunk toward the universal fit, with its intercept and
   weight total, so that equal scores mean equal odds in every segment (a weighted average can redistribute
   weight between signals, it has no per-segment intercept). Missing values are imputed, for the refits,
   exactly as the weighted average treats them (a dimension's other signals, then the other dimensions).
3. **Lines.** From out-of-fold scores computed by the scoring engine, each read on the final model's scale
   by its rank (a fold model's percentile among the training rows, then the final model's score at that
   percentile: fold models place their curves differently, so raw fold scores are on other scales): the
   At Risk line is the lowest that
   catches at least 75% of churners (the best specificity at that recall); Healthy and Critical are the
   splits of the scores above and below it that separate churn rates best (a decision stump), so that
   Healthy retains better than Moderate, Moderate better than At Risk, At Risk better than Critical.

The model is evaluated on held-out rows (later dates, other accounts) against the baseline, through the
same engine the daily DAG scores with. ``refit_all`` then reruns the whole procedure on every row (the split
leaves about half of them out of the fit): the quarterly DAG's challenger learns from every outcome and its
backtest judges the fit that never saw the held-out rows.

The steps live in their own modules: ``holdout`` (splits), ``curve_fit`` (one signal's curve),
``weight_fit`` (backfitting, weights, penalty choice) and ``thresholds`` (band lines); this module turns
a fit into a model, runs the whole recalibration and writes its files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from healthscore.config import ModelConfig
from healthscore.evaluation.backtest import (
    SEGMENTS,
    base_weights_for,
    build_model,
    load_model_arg,
    mapped_dimensions,
    percent_weights,
    prepare_out_dir,
    score_metrics,
    score_table,
    signal_spec,
    table_model,
    write_json,
    write_model_yaml,
)
from healthscore.evaluation.byo import DIMENSIONS, ByoInputError, ByoTable, load_byo
from healthscore.evaluation.curve_fit import (
    CURVE_QUANTILES,
    MIN_PARTIAL_CHI2,
    MIN_RAMP_SHARE,
    CurveFit,
    apply_curve,
    curve_goodness,
    fit_curve,
)
from healthscore.evaluation.holdout import (
    CV_FOLDS,
    MIN_CLASS_ROWS,
    TEST_SHARE,
    Split,
    _both_classes,
    cv_folds,
    holdout_split,
)
from healthscore.evaluation.thresholds import TARGET_RECALL, Lines, _bands, band_lines
from healthscore.evaluation.weight_fit import (
    BACKFIT_ROUNDS,
    IMPUTE_ROUNDS,
    MIN_SEGMENT_ACCOUNTS,
    PENALTIES,
    SEGMENT_SHRINKAGE_ROWS,
    Fitted,
    _enough,
    choose_penalty,
    engine_imputed,
    fit_curves,
    fit_nonneg_logistic,
    fit_pipeline,
    fit_weights,
    linear_health,
    normalized_matrix,
    segments_with_data,
)

__all__ = [
    "BACKFIT_ROUNDS",
    "CURVE_QUANTILES",
    "CV_FOLDS",
    "CurveFit",
    "Fitted",
    "IMPUTE_ROUNDS",
    "Lines",
    "MIN_CLASS_ROWS",
    "MIN_PARTIAL_CHI2",
    "MIN_RAMP_SHARE",
    "MIN_SEGMENT_ACCOUNTS",
    "PENALTIES",
    "Recalibration",
    "SEGMENT_SHRINKAGE_ROWS",
    "Split",
    "TARGET_RECALL",
    "TEST_SHARE",
    "apply_curve",
    "band_lines",
    "baseline_model",
    "choose_penalty",
    "curve_goodness",
    "cv_folds",
    "engine_imputed",
    "fit_curve",
    "fit_curves",
    "fit_nonneg_logistic",
    "fit_pipeline",
    "fit_weights",
    "holdout_split",
    "linear_health",
    "model_from_fit",
    "normalized_matrix",
    "probability_model",
    "recalibrate",
    "run_recalibrate",
    "segments_with_data",
]


def _within_dim(coef: np.ndarray, table: ByoTable) -> tuple[dict[str, float], dict[str, float]]:
    """(signal weights inside their dimension, dimension totals) for one coefficient vector."""
    dims = mapped_dimensions(table.signals)
    totals = {d: float(sum(coef[j] for j, s in enumerate(table.signals) if s.dimension == d)) for d in dims}
    weights = {}
    for j, s in enumerate(table.signals):
        total = totals[s.dimension]
        members = sum(1 for t in table.signals if t.dimension == s.dimension)
        weights[s.signal_id] = round(float(coef[j] / total), 4) if total > 0 else round(1.0 / members, 4)
    return weights, totals


def model_from_fit(
    base: ModelConfig,
    table: ByoTable,
    fitted: Fitted,
    *,
    version: str,
    description: str,
    lines: Lines | None = None,
) -> ModelConfig:
    """The fitted curves and weights as a complete model (lines: learned ones, else the base's)."""
    dims = mapped_dimensions(table.signals)
    signal_w, dim_totals = _within_dim(fitted.coef, table)
    if sum(dim_totals.values()) <= 0:
        weights = base_weights_for(base, dims)
    else:
        weights = {s: percent_weights(dim_totals) for s in SEGMENTS}
    overrides: dict[str, dict[str, float]] = {}
    for s, coef in fitted.segment_coef.items():
        seg_w, seg_totals = _within_dim(coef, table)
        if sum(seg_totals.values()) > 0:
            weights[s] = percent_weights(seg_totals)
            overrides[s] = seg_w
    dimensions: dict[str, dict[str, dict[str, Any]]] = {d: {} for d in dims}
    for sig in table.signals:
        by_segment = {s: c[sig.signal_id] for s, c in fitted.segment_curves.items() if sig.signal_id in c}
        dimensions[sig.dimension][sig.signal_id] = signal_spec(
            sig,
            table.raw(sig),
            fitted.curves[sig.signal_id],
            weight=signal_w[sig.signal_id],
            by_segment=by_segment or None,
            note=fitted.curve_how[sig.signal_id],
        )
    kwargs: dict[str, Any] = {}
    if lines is not None:
        kwargs["bands"] = _bands(base, lines)
        kwargs["segment_thresholds"] = {
            s: {"healthy_at_or_above": lines.healthy[s], "at_risk_below": lines.at_risk[s]} for s in SEGMENTS
        }
        kwargs["stage_thresholds"] = {
            "healthy_at_or_above": lines.universal_healthy,
            "at_risk_below": lines.universal_at_risk,
        }
    return build_model(
        base,
        dimensions,
        weights,
        version=version,
        description=description,
        signal_weight_overrides=overrides,
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------- run


@dataclass
class Recalibration:
    """What ``recalibrate`` produced, for the files and the report."""

    model: ModelConfig
    baseline: ModelConfig
    table: ByoTable
    split: Split
    test_scores: dict[str, Any]  # name -> scored frame of the held-out rows
    metrics: dict[str, Any]
    # The model the held-out figures are of: ``model`` itself, or, after ``refit_all``, the same procedure
    # fitted on the training part only (``model`` is then refitted on every row).
    evaluated: ModelConfig | None = None


def _version(base: ModelConfig, table: ByoTable) -> str:
    stamp = str(table.dates.max()).replace("-", "")
    return f"{base.version[:24]}-byo{stamp}"


def baseline_model(base: ModelConfig, train: ByoTable, base_given: bool) -> tuple[ModelConfig, str]:
    """The model to beat: the base as it is when it scores every mapped signal, else its weights over
    the table's signals normalized by the training rows' distribution."""
    ids = {s.signal_id for s in train.signals}
    if base_given and set(base.all_signal_ids()) <= ids:
        return base, f"the base model {base.version} as given"
    return table_model(base, train, version=f"{base.version[:30]}-table"), (
        f"{base.version}'s dimension weights; the table's signals normalized by the training rows' distribution"
    )


def probability_model(
    weighted: ModelConfig,
    base: ModelConfig,
    train: ByoTable,
    fitted: Fitted,
    folds: list[tuple[np.ndarray, np.ndarray]],
    own: list[str],
) -> tuple[ModelConfig, dict[str, Any]]:
    """``--probability``: a calibrated classifier on the recalibrated model's dimension scores.

    Its band lines are learned as the weighted model's are, from out-of-fold probability scores (each fold's
    classifier fitted on the fold's training rows; the dimension scores come from the curves fitted on the
    whole training part). Returns the model (method model_probability) and its fit description.
    """
    from healthscore.evaluation.probability import fit_probability_model, with_probability_model
    from healthscore.scoring.probability import ArtifactClassifier

    dims = list(weighted.dimensions)
    frame = score_table(weighted, train)[dims].assign(
        churned=train.y, as_of_date=train.dates, account_id=train.accounts
    )
    oof = np.full(len(train), np.nan)
    for tr, va in folds:
        artifact = fit_probability_model(frame.iloc[tr], "churned", dims)
        oof[va] = 100.0 * ArtifactClassifier(artifact).predict_proba(frame.iloc[va][dims].to_numpy())[:, 0]
    validated = np.isfinite(oof)
    lines = band_lines(
        oof, train.y, train.segments, [s for s in own if _enough(train, np.flatnonzero(validated & (train.segments == s)))]
    )
    artifact = fit_probability_model(frame, "churned", dims, splits=folds)
    lined = model_from_fit(
        base, train, fitted, version=weighted.version, description=weighted.description, lines=lines
    )
    description = (
        weighted.description.replace("curves, non-negative weights and band lines", "curves and weights")
        + "; scored by a calibrated logistic classifier on the dimension scores (scoring.model_probability), "
        "band lines learned on its out-of-fold scores"
    )
    model = with_probability_model(lined, artifact, description=description)
    info = {
        "features": dims,
        "fit": artifact.fit,
        "lines": {"healthy_at_or_above": lines.healthy, "at_risk_below": lines.at_risk,
                  "critical_below": lines.critical, "how": lines.how},
    }
    return model, info


def percentile_of(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mid-rank percentile (0..1) of each value among the finite ``reference`` scores; NaN stays NaN."""
    ref = np.sort(reference[np.isfinite(reference)])
    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    if ref.size:
        lo = np.searchsorted(ref, values[ok], side="left")
        hi = np.searchsorted(ref, values[ok], side="right")
        out[ok] = (lo + hi) / (2.0 * ref.size)
    return out


def on_scale_of(rank: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Percentiles read back as scores of ``scores``' distribution (its quantiles); NaN stays NaN."""
    ref = scores[np.isfinite(scores)]
    out = np.full(rank.shape, np.nan)
    ok = np.isfinite(rank)
    if ref.size:
        out[ok] = np.quantile(ref, np.clip(rank[ok], 0.0, 1.0))
    return out


@dataclass
class ProcedureFit:
    """One run of the learning procedure on one set of rows: the model and what chose it."""

    model: ModelConfig
    fitted: Fitted
    lines: Lines
    penalty: tuple[str, float]
    per_segment: bool
    backfit_rounds: int
    candidates: list[dict[str, Any]]
    folds: list[tuple[np.ndarray, np.ndarray]]
    fold_kind: str
    own: list[str]
    rows: int


def fit_procedure(train: ByoTable, base: ModelConfig, *, version: str, description: str) -> ProcedureFit:
    """The whole learning procedure on ``train``: penalty by time-ordered CV, lines on out-of-fold engine
    scores, then curves and weights refitted on every row of ``train``.

    Held-out evaluation calls it on the training part; a final refit (``recalibrate(refit_all=True)``) calls
    it on every row, so the model shipped learns from all the outcomes the evaluation vouched for.
    """
    folds, fold_kind = cv_folds(train)
    penalty, per_segment, rounds, candidates = choose_penalty(train, folds)
    # Each fold model's out-of-fold scores as percentiles of its own scores over every training row: fold
    # models and the final one put their curves' 50s in different places, so a raw fold score is on another
    # scale than the final model's (measured: a line learned at 76% flagged 91% under the final model).
    oof_rank = np.full(len(train), np.nan)
    for tr, va in folds:
        fitted = fit_pipeline(train.subset(tr), penalty, per_segment, rounds)
        fold_model = model_from_fit(base, train.subset(tr), fitted, version=version, description="fold")
        reference = score_table(fold_model, train)["score"].to_numpy(dtype=float)
        oof_rank[va] = percentile_of(reference[va], reference)
    fitted = fit_pipeline(train, penalty, per_segment, rounds)
    unlined = model_from_fit(base, train, fitted, version=version, description=description)
    final_scores = score_table(unlined, train)["score"].to_numpy(dtype=float)
    oof = on_scale_of(oof_rank, final_scores)
    own = segments_with_data(train)
    validated = np.isfinite(oof)
    lines = band_lines(
        oof,
        train.y,
        train.segments,
        [s for s in own if _enough(train, np.flatnonzero(validated & (train.segments == s)))],
    )
    model = model_from_fit(base, train, fitted, version=version, description=description, lines=lines)
    return ProcedureFit(
        model, fitted, lines, penalty, per_segment, rounds, candidates, folds, fold_kind, own, len(train)
    )


def _signals_report(train: ByoTable, fitted: Fitted) -> list[dict[str, Any]]:
    """Per signal: its learned curve(s), coefficient and whether it was dropped (weight 0)."""
    signals_report = []
    for j, sig in enumerate(train.signals):
        signals_report.append(
            {
                "column": sig.column,
                "signal_id": sig.signal_id,
                "dimension": sig.dimension,
                "direction": sig.direction,
                "curve": fitted.curves[sig.signal_id].__dict__,
                "curve_by_segment": {
                    s: c[sig.signal_id].__dict__
                    for s, c in fitted.segment_curves.items()
                    if sig.signal_id in c
                },
                "how": fitted.curve_how[sig.signal_id],
                "coefficient": float(fitted.coef[j]),
                "dropped": bool(fitted.coef[j] == 0),
            }
        )
    return signals_report


def recalibrate(
    table: ByoTable,
    base: ModelConfig,
    *,
    base_given: bool = False,
    probability: bool = False,
    refit_all: bool = False,
) -> Recalibration:
    """Fit on the training part, choose lines out-of-fold, evaluate both models on the held-out part.

    ``probability``: the model written is the ``probability_model`` built on the recalibrated one (the
    weighted model's held-out figures stay in the metrics beside it, under ``weighted``).
    ``refit_all``: once evaluated, the procedure runs again on every row (the training part, the held-out
    part and the rows the split leaves unused) and that refit is the model returned; the held-out figures
    stay those of the fit that never saw the held-out rows (``Recalibration.evaluated``). For callers that
    judge the model on outcomes later than the whole table (the quarterly DAG's challenger), where the split
    would otherwise leave about half of the outcomes unlearned from."""
    if not _both_classes(table.y):
        raise ByoInputError(
            f"outcome column {table.outcome!r} holds only {int(table.y[0])}s; recalibration needs churned and retained rows"
        )
    split = holdout_split(table)
    train, test = table.subset(split.train), table.subset(split.test)
    version = _version(base, table)
    description = (
        f"Recalibrated from {base.version} on {Path(table.source).name}: curves, non-negative weights and band lines "
        f"learned from {split.description['train']['rows']} training rows; held-out figures in metrics.json"
    )
    fit = fit_procedure(train, base, version=version, description=description)
    folds, fold_kind, own = fit.folds, fit.fold_kind, fit.own
    penalty, per_segment, candidates, lines, fitted = fit.penalty, fit.per_segment, fit.candidates, fit.lines, fit.fitted
    model = fit.model
    baseline, baseline_how = baseline_model(base, train, base_given)
    weighted = None
    probability_info: dict[str, Any] | None = None
    if probability:
        weighted = model
        model, probability_info = probability_model(weighted, base, train, fitted, folds, own)

    notes = list(table.notes)
    scored = {
        "baseline": score_table(baseline, test, notes),
        "recalibrated": score_table(model, test, notes),
    }
    models = [baseline, model]
    if weighted is not None:
        scored["weighted"] = score_table(weighted, test, notes)
        models.append(weighted)
    held_out = {
        name: score_metrics(frame, test, m) for (name, frame), m in zip(scored.items(), models, strict=True)
    }
    signals_report = _signals_report(train, fitted)
    b_auc = held_out["baseline"]["overall"]["auc"]
    r_auc = held_out["recalibrated"]["overall"]["auc"]
    b_f1 = (held_out["baseline"]["overall"].get("decision") or {}).get("f1")
    r_f1 = (held_out["recalibrated"]["overall"].get("decision") or {}).get("f1")
    metrics = {
        "command": "recalibrate",
        "table": table.source,
        "outcome": table.outcome,
        "rows": len(table),
        "accounts": int(np.unique(table.accounts).size),
        "evaluation": {
            "held_out": True,
            "in_sample_figures": "none: every figure below is on held-out rows the fit never saw",
            **split.description,
        },
        "baseline": {
            "version": baseline.version,
            "config_hash": baseline.config_hash,
            "how": baseline_how,
            "held_out": held_out["baseline"],
        },
        "recalibrated": {
            "version": model.version,
            "config_hash": model.config_hash,
            "held_out": held_out["recalibrated"],
        },
        "improvement": {
            "auc": None if b_auc is None or r_auc is None else r_auc - b_auc,
            "f1": None if b_f1 is None or r_f1 is None else r_f1 - b_f1,
        },
        "cross_validation": {
            "folds": fold_kind,
            "selected": {"penalty": penalty[0], "strength": penalty[1], "per_segment_weights": per_segment,
                         "backfit_rounds": fit.backfit_rounds},
            "candidates": candidates,
            "figure": "mean validation AUC of the regression",
        },
        "weights": {s: model.weights_for(s) for s in SEGMENTS},
        "baseline_weights": {s: baseline.weights_for(s) for s in SEGMENTS},
        "segments_with_own_fit": fitted.segments_fitted,
        "lines": {
            "healthy_at_or_above": lines.healthy,
            "at_risk_below": lines.at_risk,
            "critical_below": lines.critical,
            "how": lines.how,
            "target_recall": TARGET_RECALL,
        },
        **(
            {}
            if weighted is None
            else {
                "weighted": {
                    "version": weighted.version,
                    "config_hash": weighted.config_hash,
                    "how": "the recalibrated weighted average the classifier reads its dimension scores from",
                    "held_out": held_out["weighted"],
                },
                "probability": probability_info,
            }
        ),
        "signals": signals_report,
        "dropped_signals": [s["column"] for s in signals_report if s["dropped"]],
        "notes": notes,
    }
    evaluated = model
    if refit_all:
        if probability:
            raise ValueError("refit_all with probability: refit the classifier on the refitted model instead")
        final = fit_procedure(table, base, version=version, description=(
            f"Recalibrated from {base.version} on {Path(table.source).name}: curves, non-negative weights and band "
            f"lines learned from all {len(table)} rows (the held-out figures in metrics.json are of the same "
            f"procedure fitted on {split.description['train']['rows']} training rows)"))
        model = final.model
        metrics["final_fit"] = {
            "rows": len(table),
            "churned": int(table.y.sum()),
            "how": "the same procedure refitted on every row; held-out figures are of the fit without the held-out rows",
            "cross_validation": {"folds": final.fold_kind, "penalty": final.penalty[0],
                                 "strength": final.penalty[1], "per_segment_weights": final.per_segment,
                                 "backfit_rounds": final.backfit_rounds},
            "evaluated_version_config_hash": evaluated.config_hash,
        }
        metrics["recalibrated"]["config_hash"] = model.config_hash
        metrics["weights"] = {s: model.weights_for(s) for s in SEGMENTS}
        metrics["segments_with_own_fit"] = final.fitted.segments_fitted
        metrics["signals"] = _signals_report(table, final.fitted)
        metrics["dropped_signals"] = [r["column"] for r in metrics["signals"] if r["dropped"]]
        metrics["lines"] = {
            "healthy_at_or_above": final.lines.healthy,
            "at_risk_below": final.lines.at_risk,
            "critical_below": final.lines.critical,
            "how": final.lines.how,
            "target_recall": TARGET_RECALL,
        }
    return Recalibration(model, baseline, table, split, scored, metrics, evaluated)


def run_recalibrate(
    table_path: Path | str,
    mapping_path: Path | str,
    outcome: str,
    out: Path | str,
    model_path: Path | str | None = None,
    *,
    probability: bool = False,
) -> Recalibration:
    """``healthscore recalibrate``: write DIR/model.yaml, DIR/metrics.json and DIR/report.html.

    ``probability`` (``--probability``): model.yaml scores with a calibrated classifier (``probability_model``)."""
    from healthscore.reports.byo import recalibration_report

    base = load_model_arg(model_path)
    dims = tuple(dict.fromkeys((*DIMENSIONS, *base.dimensions)))
    table = load_byo(table_path, mapping_path, outcome, dimensions=dims)
    out_dir = prepare_out_dir(out)
    # Small matrices: BLAS threads only spin (measured 25x slower on 2 busy cores).
    with threadpool_limits(limits=1, user_api="blas"):
        result = recalibrate(table, base, base_given=model_path is not None, probability=probability)
    header = (
        f"healthscore model {result.model.version}, recalibrated by `healthscore recalibrate` from "
        f"{base.version}\non {table.source} (outcome column {outcome!r}); config_hash {result.model.config_hash}.\n"
        "Held-out figures against the baseline: metrics.json and report.html beside this file."
    )
    write_model_yaml(out_dir / "model.yaml", result.model, header)
    write_json(out_dir / "metrics.json", result.metrics)
    (out_dir / "report.html").write_text(recalibration_report(result), encoding="utf-8")
    return result
