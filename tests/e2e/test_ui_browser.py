"""The Customer Health view as a person sees it: headless Chromium logs in to Airflow and uses the plugin.

Debian's ``chromium`` and ``chromium-driver`` are installed when missing (as root, as CI runs); Selenium drives
them. Screenshots go to ``HEALTHSCORE_TEST_ARTIFACTS`` (default ``test-artifacts/ui``) for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from healthscore.local_airflow import REPO
from tests.ui.airflow_ui import USERS
from tests.ui.fixtures import UIServer

pytestmark = [pytest.mark.slow, pytest.mark.airflow]

ARTIFACTS = Path(os.environ.get("HEALTHSCORE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "ui"
PACKAGES = ("chromium", "chromium-driver")


def ensure_chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing Debian's packages first when they are missing."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.geteuid() != 0:
            pytest.fail(f"chromium/chromedriver missing and not root to install them: apt-get install {' '.join(PACKAGES)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], check=True, env=env, timeout=900)
    return shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1100",
                "--disable-gpu", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(120)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(driver, css: str, timeout: float = 60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def test_log_in_open_customer_health_check_figures_and_enter_an_override(ui_server: UIServer, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver, airflow = browser, ui_server.airflow
    driver.get(f"{airflow.url}/auth/login/")
    wait_for(driver, "input[name=username]").send_keys("csm")
    driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(USERS["csm"][1])
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 60).until(lambda d: d.get_cookie("_token") is not None)

    # The view inside the Airflow UI: Airflow's page with the plugin in an iframe.
    driver.get(f"{airflow.url}/plugin/customer-health")
    frame = wait_for(driver, "iframe")
    assert "/customer-health" in frame.get_attribute("src")
    driver.switch_to.frame(frame)
    total = wait_for(driver, "#total-accounts").text
    at_risk_arr = driver.find_element(By.CSS_SELECTOR, "#at-risk-arr").text
    driver.switch_to.default_content()
    assert "Customer Health" in driver.page_source
    shot(driver, "01-portfolio-in-airflow")

    h, s = "health_scores", "account_signals"
    with ui_server.world.engine.connect() as conn:
        day = conn.execute(sa.text(f"select max(as_of_date) from {h} where not is_shadow")).scalar()
        n, risky = conn.execute(sa.text(
            f"select count(*), coalesce(sum(case when h.band in ('At Risk', 'Critical') then s.arr_cents end), 0) "
            f"from {h} h left join {s} s on s.account_id = h.account_id and s.as_of_date = h.as_of_date "
            "where h.as_of_date = :d and not h.is_shadow"), {"d": day}).one()
    assert total == str(n) and at_risk_arr == f"${risky / 100:,.0f}"

    # At risk -> the largest account, inside the frame, as a person would click.
    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe"))
    driver.find_element(By.LINK_TEXT, "At risk").click()
    first = wait_for(driver, "#at-risk tr[data-account] a")
    account_name, account_id = first.text, first.find_element(By.XPATH, "./ancestor::tr").get_attribute("data-account")
    first.click()
    assert wait_for(driver, "#account-name").text.startswith(account_name)
    assert driver.find_elements(By.CSS_SELECTOR, "svg.chart .band-line")
    driver.switch_to.default_content()
    shot(driver, "02-account-in-airflow")

    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe"))
    reason = f"Browser test {uuid.uuid4().hex[:6]}: exec sponsor renewed verbally"
    Select(driver.find_element(By.ID, "band-input")).select_by_visible_text("Healthy")
    driver.find_element(By.ID, "score-input").send_keys("81")
    driver.find_element(By.ID, "reason-input").send_keys(reason)
    expiry = (date.today() + timedelta(days=14)).isoformat()
    driver.execute_script("arguments[0].value = arguments[1]", driver.find_element(By.ID, "expires-input"), expiry)
    driver.find_element(By.ID, "override-submit").click()
    assert "saved" in wait_for(driver, "#saved").text
    row = driver.find_element(By.CSS_SELECTOR, "#overrides tr[data-override]")
    assert reason in row.text and "active" in row.find_element(By.CSS_SELECTOR, ".status").text
    driver.execute_script("document.getElementById('overrides').scrollIntoView()")
    driver.switch_to.default_content()
    shot(driver, "03-override-saved")
    with ui_server.world.engine.connect() as conn:
        stored = conn.execute(sa.text("select account_id, override_band, override_score, author, expires_on "
                                      "from score_overrides where reason = :r"), {"r": reason}).one()
    assert (stored[0], stored[1], stored[2], stored[3], str(stored[4])) == (account_id, "Healthy", 81.0, "csm", expiry)


def test_data_docs_render_their_tables_from_vendored_assets(ui_server: UIServer, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    if driver.get_cookie("_token") is None:  # run alone: sign in with a token cookie
        driver.get(f"{ui_server.airflow.url}/api/v2/version")
        driver.add_cookie({"name": "_token", "value": ui_server.airflow.token("viewer"), "path": "/"})
    driver.get(f"{ui_server.base}/data-docs/index.html")
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "return !!(window.jQuery && jQuery.fn.bootstrapTable) && "
        "document.querySelectorAll('table.table tbody tr').length > 0"))
    rows = driver.execute_script("return document.querySelectorAll('table.table tbody tr').length")
    styled = driver.execute_script("return getComputedStyle(document.querySelector('.container-fluid, .container'))"
                                   ".paddingLeft")
    loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    shot(driver, "04-data-docs")
    assert rows > 0 and styled not in ("", "0px")
    outside = [u for u in loaded if not u.startswith(ui_server.airflow.url)]
    assert outside == [], outside
    assert any(re.search(r"/vendor/bootstrap-table@1\.19\.1/", u) for u in loaded)
