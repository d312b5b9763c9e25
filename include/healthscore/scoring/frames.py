"""DataFrame views of the engine's first steps, for reports, notebooks and the recalibration features.

Both use the calendar lifecycle stage (given, or derived from ``tenure_days``); exit gates need a score
and history, so only ``score_accounts`` applies them.
"""

from __future__ import annotations

import pandas as pd

from healthscore.config import ModelConfig
from healthscore.scoring.compiled import compile_model
from healthscore.scoring.composite import dimension_matrix
from healthscore.scoring.inputs import calendar_stage, prepare_signals
from healthscore.scoring.normalize import normalize_matrix


def normalize_signals(signals: pd.DataFrame, model: ModelConfig) -> pd.DataFrame:
    """0..100 score of every config signal per account (NaN = missing), same index as ``signals``."""
    cm = compile_model(model)
    prep = prepare_signals(signals, cm)
    group = cm.group(prep.segment_code, calendar_stage(prep, cm))
    return pd.DataFrame(
        normalize_matrix(prep.raw, group, cm), columns=list(cm.signal_ids), index=signals.index
    )


def dimension_scores(signals: pd.DataFrame, model: ModelConfig) -> pd.DataFrame:
    """Dimension scores (weighted mean of present normalized signals; NaN = no data), one column each."""
    cm = compile_model(model)
    prep = prepare_signals(signals, cm)
    group = cm.group(prep.segment_code, calendar_stage(prep, cm))
    dims, _ = dimension_matrix(normalize_matrix(prep.raw, group, cm), prep.segment_code, cm)
    return pd.DataFrame(dims, columns=list(cm.dimension_ids), index=signals.index)
