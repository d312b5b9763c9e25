"""CSM overrides: shown beside the computed score, never instead of it.

An override is active for an as-of date when it has not expired by then (``expires_on`` is the first
day it no longer applies) and has not been revoked. Creation and revocation are human decisions that
take effect with the next run whatever the as-of date (a CSM who just added or revoked one expects to
see it so); expiry is a date rule judged at the as-of date. With several active overrides for one
account the newest (``created_at``, then id) wins.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from healthscore.scoring.composite import ScoringInputError
from healthscore.scoring.inputs import positions_in, string_column, to_days


def active_overrides(
    overrides: pd.DataFrame | None, account_id: pd.Series, as_of: np.ndarray
) -> pd.DataFrame:
    """Per account (aligned with ``account_id``): override_score, override_band, override_id of the active one.

    The id is read from ``id`` (the ``score_overrides`` primary key) or ``override_id``; NA when absent.
    """
    n = len(account_id)
    score_col = np.full(n, np.nan)
    band_col = np.full(n, None, dtype=object)
    id_col = np.full(n, np.nan)
    if overrides is not None and len(overrides) > 0:
        _fill_active(overrides, account_id, as_of, score_col, band_col, id_col)
    return pd.DataFrame(
        {
            "override_score": pd.array(score_col, dtype="Float64"),  # NaN -> <NA>
            "override_band": string_column(band_col),
            "override_id": pd.array(id_col, dtype="Int64"),  # NaN -> <NA>; non-integers raise
        }
    )


def _fill_active(
    overrides: pd.DataFrame,
    account_id: pd.Series,
    as_of: np.ndarray,
    score_col: np.ndarray,
    band_col: np.ndarray,
    id_col: np.ndarray,
) -> None:
    need = [c for c in ("account_id", "override_score", "override_band") if c not in overrides.columns]
    if need:
        raise ScoringInputError(f"overrides frame lacks required columns {need}")
    row = positions_in(account_id, overrides["account_id"])
    o = overrides.reset_index(drop=True)
    today = np.full(len(o), np.datetime64("NaT", "D"))
    today[row >= 0] = as_of[row[row >= 0]]
    active = row >= 0
    if "expires_on" in o.columns:
        expires = to_days(o["expires_on"])
        active &= np.isnat(expires) | (expires > today)
    if "revoked_at" in o.columns:
        active &= o["revoked_at"].isna().to_numpy()
    created = np.full(len(o), np.datetime64("NaT", "s"))
    if "created_at" in o.columns:
        created = pd.to_datetime(o["created_at"], utc=True).dt.tz_localize(None).to_numpy("datetime64[s]")
    id_name = "id" if "id" in o.columns else "override_id" if "override_id" in o.columns else None
    ids = (
        pd.to_numeric(o[id_name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        if id_name
        else np.full(len(o), np.nan)
    )
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return
    created_s = created.astype(np.int64)  # NaT is the smallest int64: sorts first
    order = idx[np.lexsort((np.nan_to_num(ids[idx], nan=-1.0), created_s[idx], row[idx]))]
    newest = np.append(row[order][1:] != row[order][:-1], True)
    chosen = order[newest]
    target = row[chosen]
    scores = pd.to_numeric(o["override_score"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isnan(scores[chosen]) & ((scores[chosen] < 0) | (scores[chosen] > 100))
    if bad.any():
        raise ScoringInputError("override_score must be within 0..100")
    score_col[target] = scores[chosen]
    bands = o["override_band"].to_numpy(dtype=object)[chosen]
    band_col[target] = [None if pd.isna(b) else str(b) for b in bands]
    id_col[target] = ids[chosen]
