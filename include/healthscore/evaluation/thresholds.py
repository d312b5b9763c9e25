"""Step 3 of recalibration: the band lines (Healthy, At Risk, Critical) chosen on out-of-fold scores, and
the bands they give (see ``healthscore.evaluation.recalibrate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from healthscore.config import ModelConfig
from healthscore.evaluation.backtest import SEGMENTS
from healthscore.evaluation.holdout import MIN_CLASS_ROWS, _both_classes
from healthscore.evaluation.metrics import specificity_at_recall

TARGET_RECALL = 0.75


@dataclass(frozen=True)
class Lines:
    healthy: dict[str, int]  # segment -> healthy_at_or_above
    at_risk: dict[str, int]  # segment -> at_risk_below
    universal_healthy: int
    universal_at_risk: int
    critical: int  # plain bands: Critical below this
    how: dict[str, str]


def _bands(base: ModelConfig, lines: Lines) -> list[dict[str, Any]]:
    """The base's bands (names, colours, count) with the learned edges, best first, covering 0..100."""
    h, r, c = lines.universal_healthy, lines.universal_at_risk, lines.critical
    edges = [h, r]  # lower edge of each band, best first
    rest = len(base.bands) - 2
    if rest == 1:
        edges.append(0)
    else:
        edges.append(c)
        lower = len(base.bands) - 3  # bands below At Risk share 0..c-1
        step = c / lower
        edges += [int(round(c - step * (i + 1))) for i in range(lower)]
        edges[-1] = 0
    out = []
    upper = 100
    for band, low in zip(base.bands, edges, strict=True):
        item = {"name": band.name, "min": int(low), "max": int(upper)}
        if band.color:
            item["color"] = band.color
        out.append(item)
        upper = int(low) - 1
    return out


def _stump(
    s: np.ndarray, y: np.ndarray, candidates: np.ndarray, min_side: int, lower_worse: bool
) -> int | None:
    """The split ``s < c`` vs ``s >= c`` with the least Gini impurity whose lower side churns more."""
    best, best_imp = None, np.inf
    for c in candidates:
        lo = s < c
        n_lo, n_hi = int(lo.sum()), int((~lo).sum())
        if n_lo < min_side or n_hi < min_side:
            continue
        p_lo, p_hi = y[lo].mean(), y[~lo].mean()
        if lower_worse and not p_lo > p_hi:
            continue
        imp = n_lo * p_lo * (1 - p_lo) + n_hi * p_hi * (1 - p_hi)
        if imp < best_imp - 1e-12:
            best, best_imp = int(c), imp
    return best


def _lines_for(s: np.ndarray, y: np.ndarray, n_all: int) -> tuple[int, int, int, str]:
    """(healthy, at_risk, critical) lines on integer scores ``s`` and what decided them."""
    op = specificity_at_recall(y, -s.astype(float), TARGET_RECALL)
    r = int(np.clip(int(-op.threshold) + 1 if op.threshold is not None else 50, 2, 99))
    how = (
        f"At Risk below {r}: recall {op.recall:.3f} at specificity {op.specificity:.3f} (out-of-fold)"
        if op.recall is not None
        else "At Risk line kept at 50: no out-of-fold outcomes of both kinds"
    )
    above = s >= r
    h = _stump(s[above], y[above], np.arange(r + 1, 101), max(10, int(0.1 * n_all)), True)
    if h is None:
        h = int(np.clip(np.median(s[above]) + 1 if above.any() else r + 10, r + 1, 100))
    below = ~above
    c = _stump(s[below], y[below], np.arange(1, r), max(10, int(0.05 * n_all)), True)
    if c is None:
        c = int(np.clip(np.quantile(s[below], 1 / 3) if below.any() else r // 2, 1, r - 1))
    return h, r, c, how


def band_lines(scores: np.ndarray, y: np.ndarray, segments: np.ndarray, own: Sequence[str]) -> Lines:
    """Universal lines from all out-of-fold scores; a segment's own where it has enough accounts."""
    ok = np.isfinite(scores)
    s = np.floor(scores[ok] + 0.5).astype(int)  # bands compare the score rounded half-up
    yy, seg = y[ok], segments[ok]
    h_u, r_u, c_u, how_u = _lines_for(s, yy, s.size)
    healthy = dict.fromkeys(SEGMENTS, h_u)
    at_risk = dict.fromkeys(SEGMENTS, r_u)
    how = {"universal": how_u}
    for name in own:
        rows = seg == name
        if _both_classes(yy[rows]) and int(yy[rows].sum()) >= MIN_CLASS_ROWS:
            h, r, _, text = _lines_for(s[rows], yy[rows], int(rows.sum()))
            healthy[name], at_risk[name] = h, r
            how[name] = text
    critical = int(max(1, min(c_u, min(at_risk.values()) - 1, r_u - 1)))
    return Lines(healthy, at_risk, h_u, r_u, critical, how)
