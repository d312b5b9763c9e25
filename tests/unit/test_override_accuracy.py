"""Were the humans right? Overrides judged against outcomes on small frames (evaluation.accuracy.override_accuracy)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from healthscore.config import load_model_config
from healthscore.evaluation.accuracy import band_of, override_accuracy, standing_overrides
from healthscore.reports.accuracy import override_tables

RENEWAL = date(2026, 6, 20)
LEAD = RENEWAL - timedelta(days=60)


def model(min_group_size: int):
    m = load_model_config(None)
    return m.model_copy(update={"evaluation": m.evaluation.model_copy(update={"min_group_size": min_group_size})})


def preds() -> pd.DataFrame:
    rows = [("a1", "renewed", "At Risk"), ("a2", "churned", "Healthy"), ("a3", "churned", "At Risk"),
            ("a4", "renewed", "At Risk"), ("a5", "renewed", "At Risk"), ("a6", "renewed", "At Risk"),
            ("a7", "renewed", "Healthy"), ("a8", "churned", "Critical")]
    return pd.DataFrame([{"account_id": a, "renewal_date": RENEWAL, "lead_date": LEAD, "outcome": o, "band": b,
                          "score": 40.0, "model_version": "v1"} for a, o, b in rows])


def at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour)


def overrides() -> pd.DataFrame:
    before, after = LEAD - timedelta(days=10), LEAD + timedelta(days=30)
    rows = [
        (1, "a1", None, "Healthy", at(before), after, None),            # stands; human right, computed wrong
        (2, "a2", None, "Critical", at(LEAD), after, None),             # entered on the lead date: stands; right
        (3, "a3", 90.0, None, at(before), None, None),                  # a score only (Healthy): human wrong
        (4, "a4", None, "Healthy", at(LEAD + timedelta(days=1)), after, None),  # entered after the lead date
        (5, "a5", None, "Healthy", at(before), LEAD, None),             # gave way on its expiry date (= lead)
        (6, "a6", None, "Healthy", at(before), after, at(LEAD - timedelta(days=1))),  # revoked before
        (7, "a7", None, "Critical", at(before - timedelta(days=5)), after, None),     # older of two standing
        (8, "a7", None, "Healthy", at(before), after, None),            # the newest standing one counts: agree
    ]
    return pd.DataFrame(rows, columns=["id", "account_id", "override_score", "override_band", "created_at",
                                       "expires_on", "revoked_at"])


def test_only_overrides_standing_at_the_lead_date_are_judged_the_newest_of_several():
    standing = standing_overrides(preds(), overrides())
    assert dict(zip(standing["account_id"], standing["override_id"], strict=True)) == {"a1": 1, "a2": 2, "a3": 3,
                                                                                       "a7": 8}


def test_the_override_band_is_judged_against_the_computed_band_on_the_same_renewals():
    result = override_accuracy(preds(), overrides(), model(3), 60)
    rows = {r["account_id"]: r for r in result["rows"]}
    assert rows["a3"]["override_band"] == "Healthy"  # from its score
    assert [(a, rows[a]["override_right"], rows[a]["computed_right"]) for a in sorted(rows)] == [
        ("a1", True, False), ("a2", True, False), ("a3", False, True), ("a7", True, True)]
    assert result["n"] == 4 and not result["too_small"]
    assert (result["override_right"]["k"], result["override_right"]["rate"]) == (3, 0.75)
    assert (result["computed_right"]["k"], result["computed_right"]["rate"]) == (2, 0.5)
    split = result["disagreed"]
    assert split["n"] == 3 and split["override_right"]["k"] == 2 and split["computed_right"]["k"] == 1
    lo, hi = split["override_right"]["ci_low"], split["override_right"]["ci_high"]
    assert 0 < lo < 2 / 3 < hi < 1
    assert result["verdict"] == "the overrides were right more often"


def test_small_samples_say_too_small_and_give_no_rate():
    result = override_accuracy(preds(), overrides(), model(5), 60)
    assert result["too_small"] and result["n"] == 4
    assert "rate" not in result["override_right"] and result["override_right"]["too_small"]
    assert result["verdict"].startswith("too small: 3 renewal(s) where they disagreed")
    table = override_tables(result)["override_accuracy"]
    assert list(table["override_right"]) == ["too small", "too small"] and list(table["n"]) == [4, 3]
    shown = override_tables(override_accuracy(preds(), overrides(), model(3), 60))["override_accuracy"]
    assert shown["override_right"].iloc[0].startswith("75.0% [")


def test_no_overrides_no_renewals_judged():
    empty = override_accuracy(preds(), overrides().iloc[0:0], model(3), 60)
    assert empty["n"] == 0 and empty["rows"] == [] and empty["verdict"].startswith("no renewal")


@pytest.mark.parametrize(("score", "band"), [(74.5, "Healthy"), (74.4, "Moderate"), (24.5, "At Risk"), (0, "Critical")])
def test_a_score_only_override_takes_the_band_of_its_rounded_score(score, band):
    assert band_of(score, model(3)) == band
