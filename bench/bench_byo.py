"""Glass box against black box on tables a user brings: is the recalibrated weighted score as good as a classifier?

Two synthetic tables from generators with different true drivers (``tests/byo_tables.py``: adoption-led
"usage" and support/billing-led "friction"; every signal is a noisy view of one latent health, only the true
drivers enter the churn log-odds, through monotone non-linear responses). On each, the same held-out split
``recalibrate`` uses (train on earlier dates of 70% of the accounts, test on later dates of the others):

- recalibrated: ``healthscore.evaluation.recalibrate.recalibrate`` (curves, non-negative weights, lines),
  scored through the product's engine;
- baseline: the packaged weights over the table's signals, normalized by their distribution;
- logistic regression: scikit-learn, on the same signal columns plus the segment (median imputation with
  missing-value indicators, standardized, C chosen by 3-fold grouped CV);
- gradient boosting: scikit-learn's HistGradientBoostingClassifier on the same columns (native missing
  values, segment as a categorical), default settings.

All AUCs are on the held-out rows the weighted model scored (the few rows its coverage rule leaves unscored
are left out for every model). Goals: recalibrated AUC >= logistic regression's, and within 0.02 of boosting's.

    .venv/bin/python bench/bench_byo.py                  # 5,000 accounts x 8 month ends per table
    .venv/bin/python bench/bench_byo.py --accounts 2000  # quicker
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from healthscore.config import load_model_config  # noqa: E402
from healthscore.evaluation.byo import load_byo  # noqa: E402
from healthscore.evaluation.metrics import roc_auc  # noqa: E402
from healthscore.evaluation.recalibrate import recalibrate  # noqa: E402
from tests.byo_tables import FEATURES, MAPPING, OUTCOME, make_table  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "byo.txt"


def _logistic_auc(
    x: pd.DataFrame,
    y: np.ndarray,
    groups: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    with_segment: bool,
) -> float:
    numeric = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
    parts = [("num", numeric, FEATURES)] + ([("seg", OneHotEncoder(), ["segment"])] if with_segment else [])
    lr = make_pipeline(
        ColumnTransformer(parts),
        LogisticRegressionCV(
            Cs=[0.01, 0.1, 1.0, 10.0],
            cv=list(GroupKFold(3).split(x.iloc[train], groups=groups)),
            scoring="roc_auc",
            max_iter=5000,
            use_legacy_attributes=False,
        ),
    )
    lr.fit(x.iloc[train], y[train])
    return float(roc_auc(y[test], lr.predict_proba(x.iloc[test])[:, 1]))


def _classifiers_auc(frame: pd.DataFrame, train: np.ndarray, test: np.ndarray) -> tuple[float, float, float]:
    x = frame[[*FEATURES, "segment"]]
    y = frame[OUTCOME].to_numpy()
    groups = frame["account_id"].to_numpy()[train]
    lr_auc = _logistic_auc(x, y, groups, train, test, with_segment=False)
    lr_seg_auc = _logistic_auc(x, y, groups, train, test, with_segment=True)
    xc = x.copy()
    xc["segment"] = xc["segment"].astype("category")
    hgb = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    hgb.fit(xc.iloc[train], y[train])
    hgb_auc = roc_auc(y[test], hgb.predict_proba(xc.iloc[test])[:, 1])
    return lr_auc, lr_seg_auc, float(hgb_auc)


def run(drivers: str, accounts: int, dates: int, seed: int, tmp: Path) -> dict[str, object]:
    frame = make_table(drivers, accounts=accounts, dates=dates, seed=seed)
    path = tmp / f"{drivers}.csv"
    frame.to_csv(path, index=False)
    mapping = tmp / "mapping.yaml"
    mapping.write_text(yaml.safe_dump(MAPPING), encoding="utf-8")
    start = time.perf_counter()
    table = load_byo(path, mapping, OUTCOME)
    with threadpool_limits(limits=1, user_api="blas"):
        result = recalibrate(table, load_model_config())
    fit_seconds = time.perf_counter() - start
    split = result.split
    scored = result.test_scores["recalibrated"]["score"].to_numpy(dtype=float)
    ok = np.isfinite(scored)
    test = split.test[ok]
    y = table.y
    recal_auc = roc_auc(y[test], -scored[ok])
    base_scores = result.test_scores["baseline"]["score"].to_numpy(dtype=float)[ok]
    base_auc = roc_auc(y[test], -np.nan_to_num(base_scores, nan=50.0))
    # The classifiers see the same rows, in the loaded table's order (load_byo keeps the file's order).
    source = pd.read_csv(path)
    lr_auc, lr_seg_auc, hgb_auc = _classifiers_auc(source, split.train, test)
    return {
        "drivers": drivers,
        "rows": len(table),
        "train_rows": int(split.train.size),
        "test_rows": int(test.size),
        "unscored_test_rows": int((~ok).sum()),
        "churn_rate": float(y.mean()),
        "baseline": base_auc,
        "recalibrated": recal_auc,
        "logistic": lr_auc,
        "logistic_segment": lr_seg_auc,
        "boosting": hgb_auc,
        "fit_seconds": fit_seconds,
        "weights_mid_market": result.model.weights_for("mid_market"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--dates", type=int, default=8)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    lines = [
        f"bench_byo  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  commit {commit.strip()}  "
        f"{platform.machine()} {os.cpu_count()} cores  load average at start {os.getloadavg()[0]:.1f} (shared machine)",
        f"tables: {args.accounts} accounts x {args.dates} month ends, seed {args.seed}; held out by time and account",
        "",
        f"{'drivers':<10}{'rows':>8}{'train':>8}{'test':>7}{'churn':>7}{'baseline':>10}{'recal':>8}{'logreg':>8}"
        f"{'lr+seg':>8}{'hgb':>8}{'recal-lr':>10}{'hgb-recal':>11}  goals (>= lr, within 0.02 of hgb)  fit s",
    ]
    ok_all = True
    with tempfile.TemporaryDirectory() as tmp:
        for drivers in ("usage", "friction"):
            r = run(drivers, args.accounts, args.dates, args.seed, Path(tmp))
            beats_lr = r["recalibrated"] >= r["logistic"]
            near_hgb = r["boosting"] - r["recalibrated"] <= 0.02
            ok_all &= beats_lr and near_hgb
            lines.append(
                f"{drivers:<10}{r['rows']:>8}{r['train_rows']:>8}{r['test_rows']:>7}{r['churn_rate']:>7.3f}"
                f"{r['baseline']:>10.4f}{r['recalibrated']:>8.4f}{r['logistic']:>8.4f}{r['logistic_segment']:>8.4f}"
                f"{r['boosting']:>8.4f}"
                f"{r['recalibrated'] - r['logistic']:>+10.4f}{r['boosting'] - r['recalibrated']:>+11.4f}  "
                f"{'PASS' if beats_lr else 'FAIL'} / {'PASS' if near_hgb else 'FAIL'}"
                f"{'':>22}{r['fit_seconds']:.1f}"
            )
            lines.append(f"{'':<10}recalibrated mid_market weights: {r['weights_mid_market']}")
    lines.append("")
    lines.append(f"all goals met: {ok_all}; unscored held-out rows are left out of every AUC (coverage rule)")
    lines.append(
        "logreg = logistic regression on the same signal columns (the goal's comparison); lr+seg adds segment "
        "dummies, i.e. a per-segment intercept, which a weighted average of 0-100 scores cannot express"
    )
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
