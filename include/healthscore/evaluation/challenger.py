"""Champion against challenger on the same point-in-time history, scored by the daily DAG's scoring code.

``score_rows`` calls ``healthscore.scoring.score_accounts`` once per as-of date over the stored signal
snapshots (as ``score_and_archive`` does for one batch); ``side_by_side`` gives accuracy, precision, recall,
specificity, F1, AUC and Brier for each model, overall, per segment and per lead; ``verdict`` says whether
the challenger beats the champion by the configured margin; ``changes`` lists what the challenger changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from healthscore.config import ModelConfig
from healthscore.evaluation import accuracy as acc
from healthscore.evaluation.training import scoring_frame
from healthscore.scoring import DIM_PREFIX, score_accounts

METRICS = ("n", "positives", "accuracy", "precision", "recall", "specificity", "f1", "auc", "brier")


def score_rows(model: ModelConfig, rows: pd.DataFrame) -> pd.DataFrame:
    """Score each lead row with ``model`` (per as-of date, no overrides): the rows plus score, band, dims."""
    frame = scoring_frame(rows)
    out = rows[["account_id", "as_of_date", "segment", "horizon_days", "outcome_date", "outcome"]].copy()
    out["score"] = np.nan
    out["band"] = None
    for dim in model.dimensions:
        out[dim] = np.nan
    for _, idx in frame.groupby("as_of_date", sort=True).indices.items():
        part = frame.iloc[idx]  # one row per account and as-of date (training_table keeps it so)
        by_account = score_accounts(part, model, model_version=model.version).set_index("account_id")
        rows_here = frame.index[idx]
        accounts = frame.loc[rows_here, "account_id"]
        out.loc[rows_here, "score"] = by_account["score"].reindex(accounts).to_numpy(dtype=float, na_value=np.nan)
        out.loc[rows_here, "band"] = by_account["band"].astype(object).reindex(accounts).to_numpy()
        for dim in model.dimensions:
            col = DIM_PREFIX + dim
            if col in by_account.columns:
                out.loc[rows_here, dim] = by_account[col].reindex(accounts).to_numpy(dtype=float, na_value=np.nan)
    out["model_version"] = model.version
    return out


def _figures(frame: pd.DataFrame, model: ModelConfig) -> dict[str, Any]:
    scored = frame[frame["score"].notna()]
    figs = acc.figures(scored, model.evaluation)
    figs["unscored"] = int(frame["score"].isna().sum())
    return figs


def side_by_side(scored: Mapping[str, tuple[ModelConfig, pd.DataFrame]]) -> dict[str, Any]:
    """{role: {overall, by_segment, by_horizon, bands}} for each (model, scored rows)."""
    out: dict[str, Any] = {}
    for role, (model, frame) in scored.items():
        out[role] = {
            "version": model.version,
            "overall": _figures(frame, model),
            "by_segment": {str(k): _figures(g, model) for k, g in frame.groupby("segment", sort=True)},
            "by_horizon": {int(k): _figures(g, model) for k, g in frame.groupby("horizon_days", sort=True)},
            "bands": band_distribution(frame, model),
        }
    return out


def band_distribution(frame: pd.DataFrame, model: ModelConfig) -> list[dict[str, Any]]:
    positives = frame["outcome"].isin(list(model.evaluation.positive_outcomes))
    rows = []
    for band in model.bands:
        mask = frame["band"] == band.name
        n = int(mask.sum())
        rows.append({"band": band.name, "n": n, "share": n / len(frame) if len(frame) else None,
                     "churn_rate": float(positives[mask].mean()) if n else None})
    return rows


def table_rows(figures: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The side-by-side table as rows (scope, group, model role, version, metrics) for CSV and HTML."""
    rows = []
    for role, block in figures.items():
        scopes = [("overall", "all", block["overall"])]
        scopes += [("segment", k, v) for k, v in block["by_segment"].items()]
        scopes += [("horizon_days", str(k), v) for k, v in block["by_horizon"].items()]
        for scope, group, figs in scopes:
            rows.append({"scope": scope, "group": group, "model": role, "version": block["version"],
                         **{m: figs.get(m) for m in METRICS}})
    return rows


def verdict(figures: Mapping[str, Any], margin: float) -> dict[str, Any]:
    """Better when the challenger's held-out AUC beats the champion's by ``margin`` and its F1 is not lower."""
    champ, chall = figures["champion"]["overall"], figures["challenger"]["overall"]
    if champ.get("too_small") or chall.get("too_small") or champ.get("auc") is None or chall.get("auc") is None:
        return {"better": False, "why": "too few held-out outcomes to compare", "margin": margin}
    d_auc = chall["auc"] - champ["auc"]
    d_f1 = (chall.get("f1") or 0.0) - (champ.get("f1") or 0.0)
    better = d_auc >= margin and d_f1 >= 0
    why = (f"held-out AUC {chall['auc']:.3f} vs {champ['auc']:.3f} ({d_auc:+.3f}, margin {margin:.3f}); "
           f"F1 {chall.get('f1') or 0:.3f} vs {champ.get('f1') or 0:.3f} ({d_f1:+.3f})")
    return {"better": bool(better), "why": why, "margin": margin, "auc_gain": d_auc, "f1_gain": d_f1}


def _signal_curves(model: ModelConfig) -> dict[str, dict[str, Any]]:
    out = {}
    for dim_name, dim in model.dimensions.items():
        for sid, spec in dim.signals.items():
            out[sid] = {"dimension": dim_name, "floor": spec.floor, "baseline": spec.baseline, "target": spec.target,
                        "cap": spec.cap, "weight": spec.weight}
    return out


def changes(champion: ModelConfig, challenger: ModelConfig, segments: Sequence[str]) -> dict[str, Any]:
    """Weight changes per segment, dropped and added signals, moved curves, band lines before and after."""
    before, after = _signal_curves(champion), _signal_curves(challenger)
    weights = {s: {d: (champion.weights_for(s).get(d), challenger.weights_for(s).get(d))
                   for d in dict.fromkeys([*champion.weights_for(s), *challenger.weights_for(s)])} for s in segments}
    moved = {}
    for sid in sorted(set(before) & set(after)):
        b, a = before[sid], after[sid]
        if any(b[k] != a[k] for k in ("floor", "baseline", "target", "cap")):
            moved[sid] = {"before": {k: b[k] for k in ("floor", "baseline", "target", "cap")},
                          "after": {k: a[k] for k in ("floor", "baseline", "target", "cap")}}
    zero = sorted(sid for sid, a in after.items() if not a["weight"] and before.get(sid, {}).get("weight", 1))
    return {
        "weights": weights,
        "dropped_signals": sorted(set(before) - set(after)),
        "zero_weight_signals": zero,
        "added_signals": sorted(set(after) - set(before)),
        "moved_curves": moved,
        "bands": {"before": [(b.name, b.min, b.max) for b in champion.bands],
                  "after": [(b.name, b.min, b.max) for b in challenger.bands]},
        "segment_thresholds": {
            "before": champion.model_dump(mode="json").get("segment_thresholds"),
            "after": challenger.model_dump(mode="json").get("segment_thresholds")},
    }
