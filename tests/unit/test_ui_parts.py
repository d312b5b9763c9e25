"""Pure parts of the Customer Health app: override checks, CSRF tokens, Data Docs rewriting, the SVG chart."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from healthscore.ui import charts, datadocs, vendor
from healthscore.ui.app import CSRF_MAX_AGE_S, csrf_ok, csrf_token
from healthscore.ui.overrides import OverrideError, validate

TODAY = date(2026, 10, 1)
BANDS = ["Healthy", "Moderate", "At Risk", "Critical"]


def check(**kw):
    args = {"reason": "renewal signed", "expires_on": TODAY + timedelta(days=10), "author": "csm", "score": None,
            "band": "Healthy", "band_names": BANDS, "today": TODAY, "max_days": 90} | kw
    return validate("1000000003", **args)


def test_override_checks_name_the_problem():
    assert check().band == "Healthy" and check(score="55.5", band="").score == 55.5
    assert check(expires_on=str(TODAY + timedelta(days=90))).expires_on == TODAY + timedelta(days=90)
    for bad, message in (({"reason": "  "}, "reason is required"), ({"reason": "x" * 501}, "at most 500"),
                         ({"score": "abc"}, "must be a number"), ({"score": "101"}, "within 0..100"),
                         ({"score": "nan"}, "within 0..100"), ({"band": "Great"}, "band must be one of"),
                         ({"band": None}, "give a score, a band or both"),
                         ({"expires_on": TODAY}, "must be after today"),
                         ({"expires_on": TODAY + timedelta(days=91)}, "more than 90 days"),
                         ({"expires_on": "next week"}, "a date like"), ({"expires_on": ""}, "expiry date is required"),
                         ({"max_days": 30, "expires_on": TODAY + timedelta(days=31)}, "more than 30 days"),
                         ({"author": ""}, "author is required")):
        with pytest.raises(OverrideError, match=message):
            check(**bad)


def test_csrf_tokens_are_per_user_signed_and_expire():
    token = csrf_token(b"secret", "csm", now=1000)
    assert csrf_ok(b"secret", "csm", token, now=1000 + 60)
    assert not csrf_ok(b"secret", "viewer", token, now=1060)
    assert not csrf_ok(b"other", "csm", token, now=1060)
    assert not csrf_ok(b"secret", "csm", token, now=1000 + CSRF_MAX_AGE_S + 1)
    for forged in ("", None, "abc", "1000.deadbeef", f"2000.{token.split('.')[1]}"):
        assert not csrf_ok(b"secret", "csm", forged, now=1060)


def test_every_vendored_asset_is_committed_and_rewriting_leaves_no_cdn():
    assert vendor.missing_files() == []
    page = "".join(f'<script src="{a.url}"></script>' for a in vendor.ASSETS)
    page += '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=2026">'
    page += '<a href="https://greatexpectations.io">GX</a>'
    assert len(datadocs.external_loads(page)) == len(vendor.ASSETS) + 1
    out = datadocs.rewrite_html(page, "/ch/vendor", "/ch/data-docs")
    assert datadocs.external_loads(out) == []
    assert '"/ch/vendor/vega-lite@5.23.0/build/vega-lite.min.js"' in out and '"/ch/vendor/vega@5.33.1/build/vega.min.js"' in out
    assert '"/ch/data-docs/static/images/logo-long.png"' in out


def test_safe_file_stays_inside_its_root(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text("x")
    (tmp_path / "secret.db").write_text("y")
    assert datadocs.safe_file(tmp_path / "docs", "index.html") is not None
    for escape in ("../secret.db", "/etc/passwd", "..", "", "missing.html"):
        assert datadocs.safe_file(tmp_path / "docs", escape) is None


def test_the_score_chart_draws_the_band_lines_and_the_points():
    history = [{"as_of_date": TODAY - timedelta(days=d), "score": 50 + d, "override_score": None} for d in (30, 10, 0)]
    history[-1]["override_score"] = 90.0
    svg = charts.score_history_svg(history, {"Healthy": 75, "Moderate": 50, "At Risk": 25}, {"Healthy": "#2e7d32"})
    assert svg.count('class="band-line"') == 3 and svg.count('class="score-point"') == 3
    assert 'class="override-line"' in svg and "Healthy &#8805; 75" in svg and svg.startswith("<svg")
    assert "no scores yet" in charts.score_history_svg([], {}, {})


def test_qbr_wording_check_refuses_internal_words_but_not_the_customers_name():
    from healthscore.reports.qbr import WordingError, check_wording

    assert check_wording("Clearlight Health LLC: adoption grew", ("Clearlight Health LLC",))
    for text in ("Your health improved", "low churn", "an at-risk quarter", "Risky", "your score is 80"):
        with pytest.raises(WordingError):
            check_wording(text, ("Clearlight Health LLC",))
