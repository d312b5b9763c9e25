"""The measured effect of a play in a simulated portfolio has the sign of the sandbox's configured true effect.

tests/play_effect_sim.py: 400 accounts, executive_escalation fires on every account a usage-only estimate puts
in At Risk or Critical, the simulated CSMs complete about two thirds of the tasks at random. The same world
and tasks with no true effect is the control: what selection and noise alone produce.
"""

from __future__ import annotations

import pytest

from healthscore_sandbox.csm import CsmConfig
from tests.play_effect_sim import simulate


@pytest.fixture(scope="module")
def runs():
    return simulate(seed=11), simulate(seed=11, config=CsmConfig(true_effects={}))


def test_completed_plays_do_better_by_about_the_true_effect(runs):
    real, null = runs
    assert real.true_effect == 12.0 and real.fired == null.fired > 60 and 0 < real.completed < real.fired
    low, high = real.level_gap_ci
    assert low > 0, real.level_gap_ci  # the completed accounts' health is higher, beyond noise
    assert null.level_gap_ci[0] < 0 < null.level_gap_ci[1]  # with no true effect, no measured one
    assert real.level_gap - null.level_gap == pytest.approx(real.true_effect, abs=4.0)
    play, none = real.report["playbooks"][0], null.report["playbooks"][0]
    assert play["recovery"]["completed"]["rate"] > play["recovery"]["left_open"]["rate"]
    gain = play["velocity"]["completed"]["mean"] - play["velocity"]["left_open"]["mean"]
    assert gain > 0 and gain > none["velocity"]["completed"]["mean"] - none["velocity"]["left_open"]["mean"]
