"""model_probability against the glass-box weighted model it reads, on the two synthetic BYO tables.

``recalibrate(..., probability=True)`` (``healthscore recalibrate --probability``) on the tables of
``tests/byo_tables.py`` ("usage"- and "friction"-driven churn): the recalibrated weighted model, and the calibrated
logistic classifier on its dimension scores (``scoring.model_probability``), both scored through the product's
engine on the same held-out rows (later dates, other accounts). AUC and Brier (score / 100 read as P(retained)) per
model, with the packaged baseline, and the CPU seconds of the whole recalibration.

    .venv/bin/python bench/bench_probability.py                   # 2,000 accounts x 8 month ends per table
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

import yaml
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from healthscore.config import load_model_config  # noqa: E402
from healthscore.evaluation.byo import load_byo  # noqa: E402
from healthscore.evaluation.recalibrate import recalibrate  # noqa: E402
from tests.byo_tables import MAPPING, OUTCOME, make_table  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "probability.txt"


def run(drivers: str, accounts: int, dates: int, seed: int, tmp: Path) -> dict[str, object]:
    path = tmp / f"{drivers}.csv"
    make_table(drivers, accounts=accounts, dates=dates, seed=seed).to_csv(path, index=False)
    mapping = tmp / "mapping.yaml"
    mapping.write_text(yaml.safe_dump(MAPPING), encoding="utf-8")
    table = load_byo(path, mapping, OUTCOME)
    cpu, wall = time.process_time(), time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        result = recalibrate(table, load_model_config(), probability=True)
    m = result.metrics
    out: dict[str, object] = {
        "drivers": drivers,
        "rows": len(table),
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "fit": m["probability"]["fit"],
    }
    for name, key in (("baseline", "baseline"), ("weighted", "weighted"), ("probability", "recalibrated")):
        overall = m[key]["held_out"]["overall"]
        out[name] = (overall["auc"], overall.get("brier"), overall["n"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--dates", type=int, default=8)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    lines = [
        f"bench_probability  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  commit {commit.strip()}  "
        f"{platform.machine()} {os.cpu_count()} cores  load average at start {os.getloadavg()[0]:.1f} (shared machine)",
        f"tables: {args.accounts} accounts x {args.dates} month ends, seed {args.seed}; held out by time and account",
        "",
        f"{'drivers':<10}{'rows':>7}{'held-out n':>11}   {'AUC: baseline':>13}{'weighted':>10}{'probability':>12}"
        f"   {'Brier: weighted':>15}{'probability':>12}   {'C':>5}  cpu s  wall s",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for drivers in ("usage", "friction"):
            r = run(drivers, args.accounts, args.dates, args.seed, Path(tmp))
            b, w, p = r["baseline"], r["weighted"], r["probability"]
            lines.append(
                f"{drivers:<10}{r['rows']:>7}{p[2]:>11}   {b[0]:>13.4f}{w[0]:>10.4f}{p[0]:>12.4f}"
                f"   {w[1]:>15.4f}{p[1]:>12.4f}   {r['fit']['strength_C']:>5g}  {r['cpu_s']:>5.1f}  {r['wall_s']:>6.1f}"
            )
            lines.append(f"{'':<10}classifier: {r['fit']['cv']}; cv AUC by C {r['fit']['cv_auc_by_C']}")
    lines.append("")
    lines.append(
        "weighted = the recalibrated glass-box score; probability = a calibrated logistic classifier on its dimension "
        "scores (the default model stays the weighted one). Brier reads score / 100 as P(retained); the weighted score "
        "is not a probability, so its Brier is shown only for scale"
    )
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
