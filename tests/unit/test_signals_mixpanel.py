"""healthscore.signals.mixpanel on hand-made company-day rows: usage windows, feature breadth, NPS, surveys;
and the pooled csat_3m."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from healthscore.signals import csat_3m, mixpanel
from tests.unit.signal_frames import PIT, index

LAST = PIT.last_event_day


def usage(rows: list[dict], covered_days: int) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["company_id", "event_date", "active_users", "logins", "feature_counts",
                                        "csat_sum", "csat_responses"])
    frame.attrs["covered_days"] = [LAST - timedelta(days=d) for d in range(covered_days)]
    return frame


def day(company: str, back: int, users: int, logins: int = 0, features: dict | None = None, **extra) -> dict:
    return {"company_id": company, "event_date": LAST - timedelta(days=back), "active_users": users,
            "logins": logins, "feature_counts": features or {}, "csat_sum": 0.0, "csat_responses": 0, **extra}


def test_usage_windows_zero_fill_covered_days_and_compare_months() -> None:
    rows = [day("1", b, 6 if b < 30 else 3, logins=2, features={"Dashboard Viewed": 1} if b < 30 else
                {"Report Created": 1}) for b in range(60) if b != 4]  # idle on day 4: zero, not a gap
    rows += [day("1", 4, 0, features={"API Call": 1}), day("2", 0, 1)]
    out = mixpanel.usage_signals(usage(rows, 60), pd.Series([10, 0]), index("1", "2"), PIT,
                                 ("Dashboard Viewed", "API Call", "Report Created", "Invite Sent"))
    assert out["active_user_pct"]["1"] == (6 * 29 / 30) / 10 * 100
    assert np.isnan(out["active_user_pct"]["2"])  # no licensed seats: no ratio
    assert out["contract_coverage"]["1"] == 60.0
    assert out["feature_breadth"].tolist() == [50.0, 0.0]  # 2 of 4 tracked features in the last 30 days
    dau28 = 6 * 27 / 28
    assert np.isclose(out["logins_per_user_week"]["1"], (2 * 27 / 4) / dau28)
    assert out["logins_per_user_week"]["2"] == 0.0  # active but no logins
    assert np.isclose(out["usage_trend_mom"]["1"], ((6 * 29 / 30) / 3 - 1) * 100)


def test_too_few_covered_days_give_nan_and_no_usage_gives_nan() -> None:
    rows = [day("1", b, 5) for b in range(5)]
    out = mixpanel.usage_signals(usage(rows, 5), pd.Series([10]), index("1"), PIT, ("API Call",))
    assert all(np.isnan(out[name]["1"]) for name in mixpanel.USAGE_SIGNALS)
    empty = mixpanel.usage_signals(None, pd.Series([10]), index("1"), PIT, ("API Call",))
    assert sorted(empty) == sorted(mixpanel.USAGE_SIGNALS) and all(s.isna().all() for s in empty.values())


def test_latest_nps_and_pooled_csat() -> None:
    nps = pd.DataFrame({"company_id": ["1", "1", "2"], "event_date": [LAST - timedelta(days=9), LAST,
                                                                      LAST - timedelta(days=300)],
                        "nps_latest": [3.0, 9.0, 7.0]})
    assert mixpanel.latest_nps(nps, index("1", "2", "3")).tolist()[:2] == [9.0, 7.0]
    assert mixpanel.latest_nps(None, index("1")).isna().all()

    rows = [day("1", 2, 1, csat_sum=9.0, csat_responses=2), day("1", 95, 1, csat_sum=5.0, csat_responses=1)]
    survey = mixpanel.survey_totals(usage(rows, 100), index("1", "2"), PIT)
    assert survey is not None and survey[0].to_dict() == {"1": 9.0}  # the 95-day-old answer is out
    ratings = (pd.Series({"1": 1.0, "2": 5.0}), pd.Series({"1": 1.0, "2": 1.0}))
    pooled = csat_3m(index("1", "2", "3"), survey, ratings)
    assert pooled.tolist()[:2] == [10.0 / 3, 5.0] and np.isnan(pooled["3"])
    assert csat_3m(index("1"), None, None).isna().all()


def test_usage_fed_day_by_day_gives_what_the_whole_window_gives() -> None:
    """The pipeline reduces the usage window one covered day at a time (``UsageTotals.update``): every usage
    signal and the surveys' CSAT sums must be the ones of the whole frame, float sums included (0.1-steps do
    not add up exactly, so an order change would show), and rows of other accounts must be ignored."""
    rows = [day(c, b, (b * 7 + int(c)) % 9, logins=b % 4, csat_sum=0.1 * (b % 5), csat_responses=b % 2,
                features={"API Call": b % 3, "Invite Sent": int(b % 11 == 0)})
            for b in range(95) for c in ("1", "2", "3") if (b + int(c)) % 4]
    whole = usage(rows, 95)
    accounts, seats, features = index("1", "2", "4"), pd.Series([5, 8, 3]), ("API Call", "Invite Sent", "Login")
    fed = mixpanel.UsageTotals(accounts, whole.attrs["covered_days"], PIT, list(features))
    for _, one_day in whole.groupby("event_date", sort=True):
        fed.update(one_day)
    expected = mixpanel.usage_signals(whole, seats, accounts, PIT, features)
    got = mixpanel.usage_signals(fed, seats, accounts, PIT, features)
    assert sorted(got) == sorted(mixpanel.USAGE_SIGNALS)
    for name in mixpanel.USAGE_SIGNALS:
        pd.testing.assert_series_equal(got[name], expected[name], check_exact=True, obj=name)
    assert got["feature_breadth"].tolist() == [2 / 3 * 100.0, 2 / 3 * 100.0, 0.0]
    assert got["usage_trend_mom"]["4"] == 0.0  # no rows at all: both months 0
    assert got["active_user_pct"]["1"] > 0
    (sums, counts), (whole_sums, whole_counts) = fed.surveys(), mixpanel.survey_totals(whole, accounts, PIT)
    assert sums.tolist() == whole_sums.tolist() and counts.tolist() == whole_counts.tolist()
    assert sorted(sums.index) == ["1", "2"] and counts["1"] > 0
