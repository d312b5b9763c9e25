"""The Customer Health plugin in a real ``airflow api-server``: access, pages against the warehouse, overrides.

One seeded warehouse and one api-server for the module (``tests.ui.fixtures.ui_server``).
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
import requests
import sqlalchemy as sa
from fastapi import Request

from healthscore.ui import datadocs
from healthscore.ui.app import Access, Viewer, create_app
from healthscore.warehouse.models import AccountSignals, HealthScore, ScoreOverride
from tests.ui.fixtures import UIServer

pytestmark = [pytest.mark.slow, pytest.mark.airflow]

SAMPLE_PARAMS = {"account_id": "1000000003", "override_id": "1", "path": "index.html"}


def _routes() -> list[tuple[str, str]]:
    """(method, path) of every route the plugin's app registers (same factory as plugins/customer_health.py)."""
    def deny(request: Request) -> None:
        raise AssertionError("not called")

    app = create_app(Access(deny, deny, lambda: Viewer("x", False), b"k"))
    out = []
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or ["GET"]):
            if method == "HEAD":
                continue
            path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: SAMPLE_PARAMS[m.group(1)], route.path)
            out.append((method, path))
    return out


def latest_champion_rows(server: UIServer) -> list[dict]:
    h, s = HealthScore.__table__, AccountSignals.__table__
    with server.world.engine.connect() as conn:
        day = conn.execute(sa.select(sa.func.max(h.c.as_of_date)).where(h.c.is_shadow.is_(False))).scalar()
        return [dict(r._mapping) for r in conn.execute(
            sa.select(h.c.account_id, h.c.band, h.c.score, s.c.arr_cents).join(
                s, sa.and_(s.c.account_id == h.c.account_id, s.c.as_of_date == h.c.as_of_date))
            .where(h.c.as_of_date == day, h.c.is_shadow.is_(False)))]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no override form"
    return match.group(1)


def test_every_registered_route_answers_401_anonymously_and_403_on_a_forged_token(ui_server: UIServer):
    routes = _routes()
    assert len(routes) >= 10 and ("POST", "/accounts/1000000003/overrides") in routes
    for method, path in routes:
        anonymous = requests.request(method, f"{ui_server.base}{path}", timeout=30, allow_redirects=False)
        assert anonymous.status_code == 401, (method, path, anonymous.status_code)
        forged = requests.request(method, f"{ui_server.base}{path}", timeout=30, allow_redirects=False,
                                  headers={"Authorization": "Bearer not-a-jwt"}, cookies={"_token": "x"})
        assert forged.status_code in (401, 403), (method, path, forged.status_code)
    # FastAPI's own documentation routes would bypass the app's dependencies: they are not served.
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert requests.get(f"{ui_server.base}{path}", timeout=30).status_code in (401, 404)


def test_a_session_cookie_or_a_bearer_token_reads_every_page(ui_server: UIServer):
    viewer = ui_server.airflow.session("viewer")
    bearer = {"Authorization": f"Bearer {ui_server.airflow.token('viewer')}"}
    for method, path in _routes():
        if method != "GET" or path.startswith("/vendor"):
            continue
        by_cookie = viewer.get(f"{ui_server.base}{path}", timeout=60)
        assert by_cookie.status_code == 200, (path, by_cookie.text[:300])
        assert requests.get(f"{ui_server.base}{path}", headers=bearer, timeout=60).status_code == 200, path
    assert "(read only)" in viewer.get(f"{ui_server.base}/", timeout=60).text


def test_portfolio_and_at_risk_figures_equal_the_warehouse(ui_server: UIServer):
    rows = latest_champion_rows(ui_server)
    risky = [r for r in rows if r["band"] in ("At Risk", "Critical")]
    html = ui_server.airflow.session("viewer").get(f"{ui_server.base}/", timeout=60).text
    assert re.search(r'id="total-accounts">(\d+)<', html).group(1) == str(len(rows))
    at_risk_arr = sum(r["arr_cents"] or 0 for r in risky)
    assert f'id="at-risk-arr">${at_risk_arr / 100:,.0f}<' in html
    for band in ("Healthy", "Moderate", "At Risk"):
        n = sum(r["band"] == band for r in rows)
        if n:
            assert re.search(rf'data-band="{band}">.*?class="n accounts">(\d+)<', html, re.S).group(1) == str(n)
    page = ui_server.airflow.session("viewer").get(f"{ui_server.base}/at-risk", timeout=60).text
    listed = re.findall(r'<tr data-account="(\d+)">', page)
    expected = [r["account_id"] for r in sorted(risky, key=lambda r: (-(r["arr_cents"] or 0), r["account_id"]))][:25]
    assert listed == expected and listed


def test_data_docs_are_served_with_vendored_assets_and_nothing_from_outside(ui_server: UIServer):
    raw = (ui_server.world.data_dir / "data_docs" / "index.html").read_text()
    assert datadocs.external_loads(raw), "GX's page should name CDNs before rewriting"
    session = ui_server.airflow.session("viewer")
    served = session.get(f"{ui_server.base}/data-docs/index.html", timeout=60).text
    assert datadocs.external_loads(served) == [], "a CDN URL is not vendored (add it to healthscore.ui.vendor)"
    local = sorted(set(re.findall(r'(?:src|href)="(/customer-health/(?:vendor|data-docs)/[^"]+)"', served)))
    assert len([u for u in local if "/vendor/" in u]) >= 10
    for url in local:
        assert session.get(f"{ui_server.airflow.url}{url.split('#')[0]}", timeout=60).status_code == 200, url
    assert session.get(f"{ui_server.base}/data-docs/../warehouse.db", timeout=30).status_code == 404
    assert session.get(f"{ui_server.base}/data-docs/%2e%2e/warehouse.db", timeout=30).status_code == 404


def test_reading_is_not_writing_the_viewer_role_cannot_enter_an_override(ui_server: UIServer):
    viewer = ui_server.airflow.session("viewer")
    account = latest_champion_rows(ui_server)[0]["account_id"]
    page = viewer.get(f"{ui_server.base}/accounts/{account}", timeout=60).text
    assert 'id="override-form"' not in page
    form = {"reason": "x", "expires_on": str(date.today() + timedelta(days=5)), "band": "Healthy", "csrf_token": "1.a"}
    refused = viewer.post(f"{ui_server.base}/accounts/{account}/overrides", data=form, timeout=60,
                          allow_redirects=False)
    assert refused.status_code == 403 and "CSRF" not in refused.text


def test_a_csm_enters_an_override_through_the_csrf_protected_form(ui_server: UIServer):
    csm = ui_server.airflow.session("csm")
    account = latest_champion_rows(ui_server)[1]["account_id"]
    url = f"{ui_server.base}/accounts/{account}"
    token = csrf_of(csm.get(url, timeout=60).text)
    expiry = str(date.today() + timedelta(days=30))
    good = {"score": "88", "band": "Healthy", "reason": "Signed a 3-year renewal yesterday", "expires_on": expiry}

    def post(form: dict, session: requests.Session = csm) -> requests.Response:
        return session.post(f"{url}/overrides", data=form, timeout=60, allow_redirects=False)

    assert post(good).status_code == 403  # no token
    assert post({**good, "csrf_token": csrf_of(ui_server.airflow.session("admin").get(url, timeout=60).text)}
                ).status_code == 403  # another user's token
    for bad, message in (({"reason": " "}, "reason is required"),
                         ({"expires_on": str(date.today() + timedelta(days=91))}, "more than 90 days"),
                         ({"expires_on": ""}, "expiry date is required"),
                         ({"score": "120"}, "within 0..100"),
                         ({"score": "", "band": ""}, "give a score, a band or both")):
        answer = post({**good, **bad, "csrf_token": token})
        assert answer.status_code == 400 and message in answer.text, (bad, answer.text[:200])
    with ui_server.world.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(ScoreOverride)).scalar()
    saved = post({**good, "csrf_token": token})
    assert saved.status_code == 303
    page = csm.get(f"{ui_server.airflow.url}{saved.headers['location']}", timeout=60).text
    assert 'id="saved"' in page and "Signed a 3-year renewal yesterday" in page
    with ui_server.world.engine.connect() as conn:
        rows = conn.execute(sa.select(ScoreOverride).order_by(ScoreOverride.id)).mappings().all()
    assert len(rows) == before + 1
    assert (rows[-1]["account_id"], rows[-1]["override_score"], rows[-1]["override_band"], rows[-1]["author"],
            str(rows[-1]["expires_on"])) == (account, 88.0, "Healthy", "csm", expiry)


def test_the_cli_sets_lists_and_revokes_overrides_and_keeps_them(ui_server: UIServer, monkeypatch, capsys):
    import json

    from healthscore.cli import main

    monkeypatch.setenv("HEALTHSCORE_WAREHOUSE_URL", ui_server.world.url)
    account = latest_champion_rows(ui_server)[2]["account_id"]
    expiry = str(date.today() + timedelta(days=20))
    assert main(["override", "set", account, "--score", "40", "--reason", "exec sponsor left",
                 "--expires", expiry, "--author", "alice"]) == 0
    new_id = json.loads(capsys.readouterr().out)["id"]
    assert main(["override", "set", account, "--band", "Nope", "--reason", "r", "--expires", expiry]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("override not saved: band must be one of") and "\n" not in err
    assert main(["override", "list", "--account", account, "--active"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["status"], r["author"]) for r in listed] == [(new_id, "active", "alice")]
    assert main(["override", "revoke", str(new_id), "--author", "alice"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "revoked"
    assert main(["override", "revoke", str(new_id), "--author", "alice"]) == 1
    assert "already revoked" in capsys.readouterr().err
    assert main(["override", "list", "--account", account]) == 0
    kept = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["status"]) for r in kept] == [(new_id, "revoked")] and kept[0]["revoked_at"]


def test_an_override_from_the_ui_reaches_the_crm_on_the_next_run_and_an_expired_one_gives_way(ui_server: UIServer):
    from healthscore.ui.overrides import set_override
    from tests.ui.world import LAST_DAY

    world, rows = ui_server.world, latest_champion_rows(ui_server)
    entered, expiring = rows[4]["account_id"], rows[5]["account_id"]
    csm = ui_server.airflow.session("csm")
    url = f"{ui_server.base}/accounts/{entered}"
    form = {"score": "77", "band": "", "reason": "QBR went well, usage data lags", "csrf_token": csrf_of(
        csm.get(url, timeout=60).text), "expires_on": str(date.today() + timedelta(days=60))}
    assert csm.post(f"{url}/overrides", data=form, timeout=60, allow_redirects=False).status_code == 303
    # Entered "a while ago" so that it expires inside the world's calendar (the form only takes future dates).
    set_override(world.engine, expiring, band="Critical", reason="champion left, short override",
                 expires_on=LAST_DAY + timedelta(days=2), author="csm", today=LAST_DAY)

    def computed(account: str, day: date) -> str:
        with world.engine.connect() as conn:
            score = conn.execute(sa.select(HealthScore.score).where(
                HealthScore.account_id == account, HealthScore.as_of_date == day,
                HealthScore.is_shadow.is_(False))).scalar_one()
        return str(int(score + 0.5))

    def crm(account: str) -> tuple:
        p = world.company(account)
        return p["health_score"], p["health_band"], p["health_score_computed"], p["health_score_override_reason"]

    next_day = LAST_DAY + timedelta(days=1)
    world.run_day(next_day)
    shown = crm(entered)
    assert shown[0] == "77" and shown[2] == computed(entered, next_day) and shown[3] == form["reason"]
    assert crm(expiring)[1:] == ("Critical", computed(expiring, next_day), "champion left, short override")

    world.run_day(next_day + timedelta(days=1))  # the short override's expiry date: the computed score returns
    with world.engine.connect() as conn:
        band = conn.execute(sa.select(HealthScore.band, HealthScore.override_id).where(
            HealthScore.account_id == expiring, HealthScore.as_of_date == next_day + timedelta(days=1))).one()
        kept = conn.execute(sa.select(sa.func.count()).select_from(ScoreOverride).where(
            ScoreOverride.account_id.in_([entered, expiring]))).scalar()
    assert band.override_id is None
    assert crm(expiring) == (computed(expiring, next_day + timedelta(days=1)), band.band,
                             computed(expiring, next_day + timedelta(days=1)), "")
    assert crm(entered)[0] == "77" and crm(entered)[3] == form["reason"]
    assert kept == 2  # the expired override is still in the archive
    page = csm.get(f"{ui_server.base}/accounts/{expiring}", timeout=60).text
    assert re.search(r'<tr data-override="\d+"><td>\d+</td><td class="status">expired</td>', page)


def test_the_qbr_summary_renders_to_html_and_a_pdf_a_person_can_read_without_internal_wording(ui_server: UIServer,
                                                                                             tmp_path):
    import shutil
    import subprocess

    from healthscore.reports.qbr import FORBIDDEN_WORDS, build_summary, render_html, render_pdf

    if not (shutil.which("pdftoppm") and shutil.which("pdftotext")):
        subprocess.run(["apt-get", "install", "-y", "-qq", "poppler-utils"], check=True, timeout=600)
    rows = sorted(latest_champion_rows(ui_server), key=lambda r: r["score"] or 0)
    for row in (rows[0], rows[len(rows) // 2], rows[-1]):  # lowest, middle and highest score: same wording rules
        with ui_server.world.engine.connect() as conn:
            summary = build_summary(conn, row["account_id"], date(2026, 12, 31))
        html = render_html(summary)
        pdf = tmp_path / f"qbr-{row['account_id']}.pdf"
        pdf.write_bytes(render_pdf(summary))
        subprocess.run(["pdftoppm", "-png", "-r", "50", str(pdf), str(tmp_path / f"qbr-{row['account_id']}")],
                       check=True, timeout=60)
        pages = sorted(tmp_path.glob(f"qbr-{row['account_id']}*.png"))
        assert pages and pages[0].stat().st_size > 5_000
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True,
                              text=True).stdout
        flat = " ".join(text.split())
        assert summary.name in flat
        assert summary.name in html and "Adoption" in flat and "Recommendations for next quarter" in flat
        assert "Licensed seats active in the last 30 days" in flat and summary.recommendations[0][:40] in flat
        words = flat.replace(summary.name, " ")  # the customer's own name may contain any word
        page = re.sub(r"<[^>]+>", " ", html).replace(summary.name, " ")
        for word in FORBIDDEN_WORDS:
            assert not re.search(rf"\b{word}", words, re.I), (word, row["account_id"])
            assert not re.search(rf"\b{word}", page, re.I), word
        assert f"{row['score']:g}" not in flat.split("Adoption")[0]  # no score in the title block


# ------------------------------------------------------------------------------------- the monthly reports

REPORT_MONTH = date(2026, 9, 1)


@pytest.fixture(scope="module")
def monthly(ui_server: UIServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The monthly DAG's two tasks on the UI world for September (its last day is 30 Sept): a few renewals
    resolved that month (one saved after a playbook, one mid-term expansion, one churn), the accuracy month and,
    earlier, an August accuracy row with figures; then the executive report, built twice (a rerun)."""
    from healthscore.pipeline import executive
    from healthscore.pipeline.accuracy import AccuracyPaths
    from healthscore.pipeline.accuracy import run_month as run_accuracy_month
    from healthscore.warehouse.models import AccuracyReport, PlaybookEvent, RenewalOutcome

    engine = ui_server.world.engine
    out = tmp_path_factory.mktemp("monthly")
    with engine.connect() as conn:
        played = sorted(set(conn.execute(sa.select(PlaybookEvent.account_id).where(  # fired by 30 Sept
            PlaybookEvent.status != "suppressed", PlaybookEvent.crossing_date <= date(2026, 9, 30))).scalars()))
        anyday = set(conn.execute(sa.select(PlaybookEvent.account_id)).scalars())
        version = conn.execute(sa.select(HealthScore.model_version).where(
            HealthScore.is_shadow.is_(False)).limit(1)).scalar()
    quiet = [r["account_id"] for r in latest_champion_rows(ui_server) if r["account_id"] not in anyday]
    assert played and len(quiet) >= 2
    common = {"kind": "renewal", "source": "crm+billing", "agreement": "agree", "first_batch_date": date(2026, 9, 30),
              "as_of_batch_date": date(2026, 9, 30), "crm_arr_before_cents": None, "crm_arr_after_cents": None}
    outcomes = [{**common, "account_id": played[0], "renewal_date": date(2026, 9, 30), "outcome": "renewed"},
                {**common, "account_id": quiet[0], "renewal_date": date(2026, 9, 15), "outcome": "expanded",
                 "kind": "mid_term", "crm_arr_before_cents": 1_000_000, "crm_arr_after_cents": 1_500_000},
                {**common, "account_id": quiet[1], "renewal_date": date(2026, 9, 10), "outcome": "churned"}]
    august = {"overall": {"n": 41, "accuracy": 0.8125, "recall": 0.6875, "precision": 0.55, "auc": 0.811,
                          "too_small": False}, "missed_targets": ["recall"], "drift": {"alerts": []}}
    with engine.begin() as conn:
        conn.execute(sa.insert(RenewalOutcome), outcomes)
        conn.execute(sa.insert(AccuracyReport), [{
            "model_version": version, "period_start": date(2026, 8, 1), "period_end": date(2026, 8, 31),
            "horizon_days": 60, "at_risk_threshold": 50.0, "metrics": august}])
    accuracy = run_accuracy_month(engine, REPORT_MONTH, AccuracyPaths.under(out))
    first = executive.run_month(engine, REPORT_MONTH, out, "leadership@example.com", deliver=False)
    second = executive.run_month(engine, REPORT_MONTH, out, "leadership@example.com", deliver=False)
    return {"dir": out, "accuracy": accuracy, "first": first, "second": second, "outcomes": outcomes,
            "version": version, "august": august}


def champion_rows_on(server: UIServer, day: date) -> list[dict]:
    h, s = HealthScore.__table__, AccountSignals.__table__
    with server.world.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            sa.select(h.c.account_id, h.c.band, h.c.override_band, h.c.score, s.c.arr_cents, s.c.renewal_date)
            .join(s, sa.and_(s.c.account_id == h.c.account_id, s.c.as_of_date == h.c.as_of_date))
            .where(h.c.as_of_date == day, h.c.is_shadow.is_(False)))]


def test_the_executive_report_shows_the_warehouses_figures_in_html_and_a_readable_pdf(ui_server: UIServer,
                                                                                     monthly: dict):
    import shutil
    import subprocess
    from pathlib import Path

    from healthscore.reports.executive import build, dollars
    from healthscore.warehouse.models import NotificationOutbox
    from tests.ui.world import HISTORY_DAYS, LAST_DAY

    if not (shutil.which("pdftoppm") and shutil.which("pdftotext")):
        subprocess.run(["apt-get", "install", "-y", "-qq", "poppler-utils"], check=True, timeout=600)
    assert monthly["first"]["as_of"] == LAST_DAY.isoformat()
    with ui_server.world.engine.connect() as conn:
        report = build(conn, REPORT_MONTH)
    before = max(LAST_DAY - timedelta(days=d) for d in HISTORY_DAYS if LAST_DAY - timedelta(days=d) < REPORT_MONTH)
    assert report.before == before
    now, old = champion_rows_on(ui_server, LAST_DAY), champion_rows_on(ui_server, before)
    risky = ("At Risk", "Critical")
    at_risk_arr = sum(r["arr_cents"] or 0 for r in now if r["band"] in risky)
    at_risk_before = sum(r["arr_cents"] or 0 for r in old if r["band"] in risky)
    assert (report.total_accounts, report.at_risk_arr_cents, report.at_risk_arr_cents_before) == (
        len(now), at_risk_arr, at_risk_before)
    for row in report.bands:
        assert row.accounts == sum((r["band"] or "unscored") == row.band for r in now), row
        assert row.accounts_before == sum((r["band"] or "unscored") == row.band for r in old), row
        assert row.arr_cents == sum(r["arr_cents"] or 0 for r in now if (r["band"] or "unscored") == row.band)
    top = sorted((r for r in now if r["band"] in risky or r["override_band"] in risky),
                 key=lambda r: (-(r["arr_cents"] or 0), r["account_id"]))[:10]
    assert [a["account_id"] for a in report.top_at_risk] == [r["account_id"] for r in top] and top
    due = [r for r in now if r["renewal_date"] and LAST_DAY < r["renewal_date"] <= LAST_DAY + timedelta(days=90)]
    assert report.renewals_total == len(due)
    assert report.renewals_arr_cents == sum(r["arr_cents"] or 0 for r in due)
    saved, expanded, churned = (o["account_id"] for o in monthly["outcomes"])
    assert [s["account_id"] for s in report.saves] == [saved] and report.saves[0]["playbooks"]
    assert [(e["account_id"], e["arr_change_cents"]) for e in report.expansions] == [(expanded, 500_000)]
    assert [x["account_id"] for x in report.losses] == [churned]
    assert [h["period_start"] for h in report.accuracy_history] == [date(2026, 8, 1), REPORT_MONTH]
    assert report.accuracy["n"] == monthly["accuracy"]["headline"]["n"]

    html = Path(monthly["first"]["html"]).read_text()
    assert html.count("<svg") == 2 and not re.search(r'(?:src|href)=["\']https?:', html)
    assert f"At Risk ARR: {dollars(at_risk_arr)}" in html
    pdf = Path(monthly["first"]["pdf"])
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(pdf), str(pdf.parent / "page")], check=True, timeout=60)
    pages = sorted(pdf.parent.glob("page*.png"))
    assert pages and pages[0].stat().st_size > 10_000
    text = " ".join(subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True,
                                   text=True).stdout.split())
    assert report.title in text
    assert f"At Risk ARR: {dollars(at_risk_arr)} over {sum(r['band'] in risky for r in now)} accounts" in text
    assert f"({'+' if at_risk_arr >= at_risk_before else '-'}${abs(at_risk_arr - at_risk_before) / 100:,.0f} " \
           "against last month)" in text
    for title in ("Portfolio by band", "Top 10 at-risk accounts by ARR", "Accounts approaching renewal",
                  "Saves this month", "Expansions this month", "Model accuracy"):
        assert title in text, title
    for account in report.top_at_risk[:3]:
        assert account["name"] in text and dollars(account["arr_cents"]) in text
    assert "Saves this month: 1" in text and "expansions: 1 (+$5,000 ARR)" in text
    assert "2026-08 41 81.2% 68.8% 55.0% 0.811 recall" in text  # the August row as the table holds it
    judged = report.accuracy["overrides"]
    assert f"Were the overrides right? {judged['n']} renewal(s) this month" in text and judged["verdict"] in text
    with ui_server.world.engine.connect() as conn:
        sent = conn.execute(sa.select(NotificationOutbox.recipient, NotificationOutbox.subject).where(
            NotificationOutbox.dedupe_key.like("executive:%"))).all()
    assert sent == [("leadership@example.com", report.title)]
    assert monthly["first"]["sent"] and not monthly["second"]["sent"]  # a rerun sends nothing twice


def test_the_model_page_shows_drift_flags_and_the_latest_recalibrations_approval_state(ui_server: UIServer,
                                                                                      monthly: dict):
    from healthscore.config import load_model_config
    from healthscore.warehouse import registry

    engine, viewer = ui_server.world.engine, ui_server.airflow.session("viewer")
    page = viewer.get(f"{ui_server.base}/model", timeout=60).text
    drift = monthly["accuracy"]["drift_alerts"]  # the September accuracy run on this world
    assert drift and 'id="drift-alerts"' in page
    for alert in drift:
        assert f"<li>{alert.replace('>=', '&gt;=')}</li>" in page, alert
    flagged = [a.split(" ")[:2] for a in drift if a.startswith(("dimension ", "signal "))]
    assert len(re.findall(r'<tr data-drift="', page)) == len(flagged)
    for kind, name in flagged:
        assert f'data-drift="{kind}:{name}"' in page
    assert re.search(r'id="score-psi" data-level="alert">\d+\.\d{3}<', page)
    assert "No recalibration yet" in page and 'id="awaiting"' not in page

    # A quarterly recalibration registered a challenger and its backtest beat the champion: awaiting approval.
    model = load_model_config(None)
    challenger = model.model_copy(update={"version": "v1-recal-test"})
    registry.register(engine, challenger, role="challenger", parent=monthly["version"], author="recalibration",
                      changelog="recalibrated on 12 months of outcomes", metrics={"recalibration": {"n": 1}})
    registry.record_metrics(engine, challenger.version, {"recalibration": {"n": 1}, "backtest": {
        "against": monthly["version"], "report": "/data/reports/recalibration/2026-09-30/report.html",
        "decision": {"better": True, "why": "held-out AUC 0.812 vs 0.790 (+0.022, margin 0.010)"}}})
    try:
        page = viewer.get(f"{ui_server.base}/model", timeout=60).text
        assert re.search(r'id="recalibration" data-version="v1-recal-test">.*?<b class="state">awaiting approval',
                         page, re.S)
        assert "held-out AUC 0.812 vs 0.790" in page and "recalibrated on 12 months of outcomes" in page
        assert re.search(r'<table id="awaiting">.*?<tr data-version="v1-recal-test">.*?awaiting approval', page,
                         re.S)
        assert re.search(rf'<tr data-version="{monthly["version"]}">.*?class="state">champion<', page, re.S)
    finally:  # the shared world scores no extra shadow model in the tests after this one
        registry.set_role(engine, challenger.version, "retired")
    page = viewer.get(f"{ui_server.base}/model", timeout=60).text
    assert 'id="awaiting"' not in page and '<b class="state">retired' in page


def test_the_playbooks_page_shows_fired_completed_and_recovered_per_playbook(ui_server: UIServer, monthly: dict):
    from healthscore.warehouse.models import AccuracyReport, PlaybookEvent

    e = PlaybookEvent.__table__
    with ui_server.world.engine.connect() as conn:
        fired = dict(conn.execute(sa.select(e.c.playbook, sa.func.count()).group_by(e.c.playbook)).all())
        completed = dict(conn.execute(sa.select(e.c.playbook, sa.func.count()).where(
            e.c.task_status == "COMPLETED").group_by(e.c.playbook)).all())
        reports = conn.execute(sa.select(AccuracyReport.period_end, AccuracyReport.metrics).order_by(
            AccuracyReport.period_end.desc(), AccuracyReport.id.desc())).all()
    period, metrics = next((p, m) for p, m in reports if "playbooks" in m)
    measured = {row["playbook"]: row["recovery"]["all"] for row in metrics["playbooks"]["playbooks"]}
    assert fired and measured, "the UI world fires playbooks and its September accuracy run measures them"
    page = ui_server.airflow.session("viewer").get(f"{ui_server.base}/playbooks", timeout=60).text
    assert f"from the accuracy report ending {period}" in page
    for playbook, n in fired.items():
        row = re.search(rf'<tr data-playbook="{playbook}">(.*?)</tr>', page, re.S).group(1)
        assert f'<td class="n fired">{n}</td>' in row
        assert f'<td class="n completed">{completed.get(playbook, 0)}</td>' in row
        rec = measured.get(playbook)
        shown = ("-" if not rec else f"too few ({rec['n']})" if rec.get("too_small")
                 else f"{rec['k']} of {rec['n']} ({100 * rec['rate']:.0f}%)")
        assert f'<td class="n recovered">{shown}</td>' in row, (playbook, rec, row)
