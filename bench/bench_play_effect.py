"""Measured effect of a play against the sandbox's configured true effect, on simulated portfolios.

Why: the monthly report's "do the playbooks work?" figures are only worth something if, where the truth is
known, they find it. tests/play_effect_sim.py fires one playbook on every account a usage-only health estimate
puts in At Risk or Critical; the sandbox's simulated CSMs complete about two thirds of the tasks at random.
Per seed this prints the configured true effect (latent points), the measured one (completed minus left open,
45-60 days after firing, on the latent scale, 95% interval), the same difference in the same world with no
true effect (what selection and noise alone give), and the report's recovery and velocity, completed vs open.
Prints figures, asserts nothing. CPU time is printed beside the wall time (the machine is shared).

    .venv/bin/python bench/bench_play_effect.py --accounts 400 --seeds 11 12 13 14 15
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from healthscore_sandbox.csm import CsmConfig  # noqa: E402
from tests.play_effect_sim import simulate  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "play_effect.txt"


def _share(figs: dict) -> str:
    return "too small" if figs.get("too_small") else f"{100 * figs['rate']:.0f}% of {figs['n']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13, 14, 15])
    parser.add_argument("--playbook", default="executive_escalation")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    wall, cpu = time.perf_counter(), time.process_time()
    lines = []
    paired = []
    for seed in args.seeds:
        real = simulate(accounts=args.accounts, seed=seed, playbook=args.playbook)
        null = simulate(accounts=args.accounts, seed=seed, playbook=args.playbook,
                        config=CsmConfig(true_effects={}))
        play = real.report["playbooks"][0]
        rec, vel = play["recovery"], play["velocity"]
        paired.append(real.level_gap - null.level_gap)
        lines.append(
            f"seed {seed}: fired {real.fired}, completed {real.completed}; true effect {real.true_effect:+.1f}, "
            f"measured {real.level_gap:+.1f} [{real.level_gap_ci[0]:+.1f}, {real.level_gap_ci[1]:+.1f}], "
            f"no-effect world {null.level_gap:+.1f} [{null.level_gap_ci[0]:+.1f}, {null.level_gap_ci[1]:+.1f}], "
            f"paired {paired[-1]:+.1f}; recovery completed {_share(rec['completed'])} vs open "
            f"{_share(rec['left_open'])}; velocity /30 d completed {vel['completed'].get('mean', float('nan')):+.1f} "
            f"vs open {vel['left_open'].get('mean', float('nan')):+.1f}")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    head = (f"# play effect, {datetime.now().isoformat(timespec='seconds')}, commit {commit}, {platform.node()}, "
            f"load {os.getloadavg()[0]:.1f} (shared machine); {args.accounts} accounts, {args.playbook}, "
            f"{len(args.seeds)} seeds, {wall:.1f} s wall, {cpu:.1f} s CPU")
    mean = sum(paired) / len(paired)
    text = "\n".join([head, *lines, f"mean paired difference {mean:+.1f} latent points (configured "
                                     f"{CsmConfig().effect(args.playbook):+.1f})"])
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write(text + "\n\n")


if __name__ == "__main__":
    main()
