"""The limit of any health model on the sandbox portfolio: the oracle's AUC and recall at specificity >= 0.85.

Why: a model's figures mean little alone; the sandbox knows each account's hidden latent health, so the same
metric computed from it (the 30-day mean latent as of the lead date, which no model can see) is the best any
model could do on this portfolio, and the ratio to it is the honest measure. With ``--warehouse`` (a
warehouse holding bootstrapped history: ``healthscore history bootstrap``), the default model's figures from
the archive are printed beside the oracle's, over the same renewals. Prints figures, asserts nothing.

    .venv/bin/python bench/bench_accuracy_oracle.py --accounts 5000 --positive churned    # the issue's check
    .venv/bin/python bench/bench_accuracy_oracle.py --accounts 300 --warehouse sqlite:///data/warehouse.db
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from healthscore.evaluation import metrics
from healthscore_sandbox.runner import SandboxOptions
from healthscore_sandbox.world import build_world

RESULTS = Path(__file__).resolve().parent / "results" / "accuracy_oracle.txt"
DAY = 86_400


def oracle_frame(accounts: int, seed: int, positive: list[str], horizon: int) -> pd.DataFrame:
    world = build_world(SandboxOptions(seed=seed, accounts=accounts).world_spec())
    truth = world.ground_truth()
    ren = truth["renewal_outcomes"]
    latent = world.latent
    lead_day = ((ren["term_end_ts"].to_numpy() - world.start_ts) // DAY) - horizon
    keep = lead_day >= 30  # a full 30-day window inside the horizon
    acc = ren["account_idx"].to_numpy()[keep]
    lead = lead_day[keep]
    mean30 = np.array([latent[a, d - 30:d].mean() for a, d in zip(acc, lead, strict=True)])
    ids = truth["accounts"].set_index("account_idx")["hubspot_company_id"]
    return pd.DataFrame({
        "account_id": ids.loc[acc].to_numpy(), "renewal_date": pd.to_datetime(ren["term_end_ts"].to_numpy()[keep],
                                                                               unit="s", utc=True).date,
        "y": ren["outcome"].to_numpy()[keep].astype(str), "oracle_risk": -mean30})


def figures(y: np.ndarray, risk: np.ndarray) -> tuple[float | None, float | None]:
    op = metrics.recall_at_specificity(y, risk, 0.85)
    return metrics.roc_auc(y, risk), op.recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=500, help="the default sandbox portfolio is 500")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--positive", default="churned,contracted", help="outcomes counted positive")
    parser.add_argument("--warehouse", default=None, help="SQLAlchemy URL of a bootstrapped warehouse")
    args = parser.parse_args()
    positive = args.positive.split(",")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"# accuracy vs oracle, {datetime.now().isoformat(timespec='seconds')}, commit {commit}, "
             f"{platform.node()}, load {os.getloadavg()[0]:.1f}; {args.accounts} accounts, seed {args.seed}, "
             f"positive = {' or '.join(positive)}, recall at specificity >= 0.85"]
    for horizon in (30, 60, 90):
        frame = oracle_frame(args.accounts, args.seed, positive, horizon)
        y = frame["y"].isin(positive).to_numpy(dtype=np.int8)
        auc, recall = figures(y, frame["oracle_risk"].to_numpy())
        line = (f"lead {horizon:2d} d: oracle AUC {auc:.3f} recall {recall:.3f} (n={len(frame)}, "
                f"positives {int(y.sum())})")
        if args.warehouse:
            line += "; " + model_line(args.warehouse, frame, positive, horizon)
        lines.append(line)
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(text + "\n\n")


def model_line(url: str, frame: pd.DataFrame, positive: list[str], horizon: int) -> str:
    """The champion's archived scores at the same lead for the renewals the warehouse holds outcomes for."""
    import sqlalchemy as sa

    from healthscore.evaluation.accuracy import predictions_at
    from healthscore.pipeline.accuracy import read_outcomes, read_scores

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        outcomes = read_outcomes(conn, frame["renewal_date"].min(), frame["renewal_date"].max())
        scores = read_scores(conn, sorted(set(outcomes["account_id"])), frame["renewal_date"].min()
                             - pd.Timedelta(days=horizon + 3), frame["renewal_date"].max())
    engine.dispose()
    preds = predictions_at(outcomes, scores[~scores["is_shadow"].astype(bool)], horizon, 3)
    if preds.empty:
        return "model: no archived predictions at this lead"
    merged = preds.merge(frame, on=["account_id", "renewal_date"], how="inner")
    y = merged["outcome"].isin(positive).to_numpy(dtype=np.int8)
    m_auc, m_recall = figures(y, metrics.risk_from_health(merged["score"].to_numpy(float)))
    o_auc, o_recall = figures(y, merged["oracle_risk"].to_numpy())

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}" if a is not None and b else "-"

    return (f"model AUC {m_auc if m_auc is None else round(m_auc, 3)} vs oracle {o_auc if o_auc is None else round(o_auc, 3)} "
            f"(ratio {ratio(m_auc, o_auc)}), recall {m_recall if m_recall is None else round(m_recall, 3)} vs "
            f"{o_recall if o_recall is None else round(o_recall, 3)} (ratio {ratio(m_recall, o_recall)}), n={len(merged)}")


if __name__ == "__main__":
    main()
