"""Held-out and cross-validation splits for recalibration: by time and by account, never one account in
both parts (see ``healthscore.evaluation.recalibrate``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from healthscore.evaluation.byo import ByoInputError, ByoTable

TEST_SHARE = 0.3
CV_FOLDS = 3
MIN_CLASS_ROWS = 10


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row positions
    test: np.ndarray
    description: dict[str, Any]


def _account_draw(accounts: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number per account from its id: the same account lands in the same group on any table."""
    out = np.empty(accounts.size)
    for i, a in enumerate(accounts):
        digest = hashlib.sha256(f"{seed}:{a}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2**64
    return out


def holdout_split(table: ByoTable, test_share: float = TEST_SHARE, seed: int = 0) -> Split:
    """Train on earlier dates of some accounts, test on later dates of the others: no account in both."""
    accounts = table.accounts
    unique, inverse = np.unique(accounts, return_inverse=True)
    is_test_account = (_account_draw(unique, seed) < test_share)[inverse]
    dates = table.dates
    days = np.unique(dates)
    if days.size >= 2:
        share_on_or_after = np.array([(dates >= d).mean() for d in days[1:]])
        cutoff = days[1:][int(np.argmin(np.abs(share_on_or_after - test_share)))]
        train = np.flatnonzero(~is_test_account & (dates < cutoff))
        test = np.flatnonzero(is_test_account & (dates >= cutoff))
        how = (
            f"held out by time and account: train on dates before {cutoff} of "
            f"{np.unique(accounts[~is_test_account]).size} accounts, test on dates from {cutoff} of the other "
            f"{np.unique(accounts[is_test_account]).size} accounts"
        )
        cut = str(cutoff)
    else:
        train = np.flatnonzero(~is_test_account)
        test = np.flatnonzero(is_test_account)
        how = "held out by account only (the table has one as_of_date)"
        cut = None
    y = table.y
    for name, rows in (("training", train), ("held-out", test)):
        positives = int(y[rows].sum())
        if rows.size < 2 * MIN_CLASS_ROWS or positives < 2 or rows.size - positives < 2:
            raise ByoInputError(
                f"outcome column {table.outcome!r}: too little data for a held-out evaluation: the {name} part has "
                f"{rows.size} rows and {positives} churned (need at least {2 * MIN_CLASS_ROWS} rows and both outcomes)"
            )
    return Split(
        train=train,
        test=test,
        description={
            "method": how,
            "cutoff_date": cut,
            "train": _part(table, train),
            "test": _part(table, test),
            "rows_unused": int(len(table) - train.size - test.size),
        },
    )


def _part(table: ByoTable, rows: np.ndarray) -> dict[str, Any]:
    y = table.y[rows]
    return {
        "rows": int(rows.size),
        "accounts": int(np.unique(table.accounts[rows]).size),
        "churned": int(y.sum()),
        "first_date": str(table.dates[rows].min()) if rows.size else None,
        "last_date": str(table.dates[rows].max()) if rows.size else None,
    }


def cv_folds(
    table: ByoTable, k: int = CV_FOLDS, seed: int = 1
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Folds that validate each account group on later dates than the other groups trained on."""
    unique, inverse = np.unique(table.accounts, return_inverse=True)
    group = np.minimum((_account_draw(unique, seed) * k).astype(int), k - 1)[inverse]
    dates = table.dates
    days = np.unique(dates)
    folds = []
    if days.size >= k + 1:
        # Cut points at row quantiles 0.4 .. 0.8: each fold trains on what came before its cut.
        cuts = [np.quantile(dates.astype("int64"), q) for q in np.linspace(0.4, 0.8, k)]
        for g, cut in enumerate(cuts):
            cut_day = days[np.searchsorted(days.astype("int64"), cut, side="left").clip(1, days.size - 1)]
            train = np.flatnonzero((group != g) & (dates < cut_day))
            valid = np.flatnonzero((group == g) & (dates >= cut_day))
            folds.append((train, valid))
        kind = f"{k} folds, time-ordered (train before each cut, validate after) and grouped by account"
    else:
        for g in range(k):
            folds.append((np.flatnonzero(group != g), np.flatnonzero(group == g)))
        kind = f"{k} folds grouped by account (too few dates to order them in time)"
    y = table.y
    usable = [(tr, va) for tr, va in folds if _both_classes(y[tr]) and _both_classes(y[va])]
    if not usable:
        raise ByoInputError(
            f"outcome column {table.outcome!r}: too few churned rows in the training part for cross-validation"
        )
    return usable, kind


def _both_classes(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < int(y.sum()) < y.size
