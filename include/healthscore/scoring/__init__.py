"""healthscore.scoring: normalization, dimensions, composite methods, bands, trends, attribution.

Pure functions over pandas DataFrames and the model config; no I/O, no clock. ``score_accounts`` turns
one as-of date of ``account_signals`` into rows shaped like the ``health_scores`` archive.

Inputs
  signals    one row per account: account_id, as_of_date, segment (enterprise|mid_market|smb), plan,
             lifecycle_stage (optional; else derived from tenure_days), tenure_days, arr_cents,
             renewal_date, owner_id, one float column per config signal id (NaN = missing), optional
             ``blocked_dimensions`` (list or "a,b" text: treated as missing today) and optional
             ``confidence_<dimension>`` multipliers in [0, 1] for carried-forward values (NaN = 1).
  history    archived rows: account_id, as_of_date, score (required); lifecycle_stage, model_version,
             and dimension scores as a ``dimension_scores`` dict/JSON column or flat ``dim_<dimension>``
             columns (``flatten_dimension_scores``; ``score_accounts``' own output has them), all
             optional. Rows on/after as-of are ignored.
  overrides  score_overrides rows: account_id, override_score, override_band, id (or override_id),
             expires_on, revoked_at, created_at (optional).

Output columns (``output_columns(dimensions)``, in order: ``OUTPUT_COLUMNS`` plus the per-dimension ones)
  score          Float64, 1 decimal half-up; <NA> iff ``unscored_reason`` is set (never NaN)
  raw_score      Float64, the same composite at full precision
  band           from the stored score with segment, lifecycle and renewal-window thresholds
  confidence     share of composite weight backed by data x carry-forward multipliers, 0..1
  dim_<d> / contribution_<d>   Float64 per dimension (catalogue order, after ``confidence``; see
                 ``output_columns``), 1 decimal; <NA> = no data. Contributions sum to the weighted-
                 average composite (points of the score) and are all <NA> when unscored.
                 ``breakdown_dicts`` gives them as the archive's {dimension: value or None} dicts.
                 With ``scoring.method: model_probability`` (the artifact in the YAML, see
                 ``scoring.probability``) contributions are the classifier's points per dimension relative
                 to the score of an account at the training average: they sum to raw_score - that base,
                 and attribution is their change (models whose features are all dimensions; a model on
                 signal features has no archived past value to attribute against: attribution None).
  trend_30d/90d/365d   score now minus the newest archived score in [as_of-N-tolerance, as_of-N]
  momentum       up / flat / down over ``momentum.window_days`` (flat within +/- stable_band_points)
  projection_90d least-squares line through the last 90 days (>= 3 points over >= 28 days), +90 days
  attribution    [{dimension, delta}] top 3 by |delta| of contribution vs the momentum window ago;
                 each row has its own list, but equal entries are one dict shared between rows:
                 treat them as read-only (copy before editing; tests/unit/test_scoring_shared_objects.py)
  value_segment  health x ARR cell (``VALUE_SEGMENTS``); lifecycle_stage, days_in_stage,
                 stage_gate_blocked (held by an exit gate); override_score/band/id beside the score.
Label columns (band, momentum, value_segment, lifecycle_stage, model_version, config_hash) are
pandas Categoricals over their full vocabulary.
"""

from healthscore.scoring.bands import VALUE_SEGMENTS, assign_bands
from healthscore.scoring.composite import ChurnModel, ScoringInputError
from healthscore.scoring.engine import (
    CONTRIBUTION_PREFIX,
    OUTPUT_COLUMNS,
    breakdown_dicts,
    output_columns,
    score_accounts,
)
from healthscore.scoring.frames import dimension_scores, normalize_signals
from healthscore.scoring.history import DIM_PREFIX, flatten_dimension_scores
from healthscore.scoring.lifecycle import time_in_stage_summary
from healthscore.scoring.overrides import active_overrides

__all__ = [
    "CONTRIBUTION_PREFIX",
    "DIM_PREFIX",
    "OUTPUT_COLUMNS",
    "VALUE_SEGMENTS",
    "ChurnModel",
    "ScoringInputError",
    "active_overrides",
    "assign_bands",
    "breakdown_dicts",
    "dimension_scores",
    "flatten_dimension_scores",
    "normalize_signals",
    "output_columns",
    "score_accounts",
    "time_in_stage_summary",
]
