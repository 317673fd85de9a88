"""In a real browser (headless Chromium, driven by selenium): a running job's page shows
the bar move and reach 100 % with the final counts, by itself; the dashboard lists the
job; a hostile parameter value shows as text and runs nothing. Screenshots go to
``tests/artifacts/``. These tests need ``chromium`` and ``chromium-driver`` (``.ci/run``
installs them): without them they fail, they never skip."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ADMIN, wait_for

ARTIFACTS = Path(__file__).parent / "artifacts"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not found or not driver_path:
        pytest.fail(
            "the browser tests need Chromium and its driver: apt-get install chromium"
            " chromium-driver (as .ci/run does)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = found
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1000"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def start(server: tuple[str, int], key, task_id: str, parameters: dict) -> str:
    """Start a job through the served app (its Location names the server): the job's
    page URL."""
    host, port = server
    answer = httpx.post(
        f"http://{host}:{port}/idms/tasks/{task_id}/jobs",
        json={"QueryParameters": parameters},
        headers={"X-Webhook-Key": key(task_id)},
    )
    assert answer.status_code == 202, answer.text
    return answer.headers["Location"]


def field(driver, name: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'[data-field="{name}"]').text


def test_the_job_page_follows_a_running_job_to_its_end(browser, key, live_server, start_worker):
    from selenium.webdriver.common.by import By

    location = start(live_server, key, "crawl", {"Count": 40, "Delay": 0.1})  # about 4 s
    browser.get(location)
    assert browser.find_element(By.CSS_SELECTOR, "h1").text == "Count slowly"
    start_worker()
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        value = int(browser.find_element(By.CSS_SELECTOR, "progress").get_attribute("value"))
        if not seen or value != seen[-1]:
            seen.append(value)
        if 0 < value < 100 and len(seen) == 2:
            browser.save_screenshot(str(ARTIFACTS / "job-page-running.png"))
        if browser.find_element(By.ID, "job").get_attribute("data-final") == "true":
            # The last answer may have landed between the two reads: read the bar again.
            value = int(browser.find_element(By.CSS_SELECTOR, "progress").get_attribute("value"))
            if value != seen[-1]:
                seen.append(value)
            break
        time.sleep(0.2)
    assert seen[-1] == 100 and any(0 < value < 100 for value in seen), seen
    assert field(browser, "Status") == "succeeded"
    assert field(browser, "ProcessedCount") == "40"
    assert (field(browser, "InsertedCount"), field(browser, "UpdatedCount")) == ("13", "14")
    assert field(browser, "CompletedOn") != "\u2013"
    browser.save_screenshot(str(ARTIFACTS / "job-page-finished.png"))


def test_the_dashboard_lists_the_job(browser, key, live_server, run_burst):
    from selenium.webdriver.common.by import By

    host, port = live_server
    location = start(live_server, key, "count", {"Count": 3})
    run_burst()
    job_id = location.split("/")[-1].split("?")[0]
    login = base64.b64encode(b"ops:" + ADMIN["Authorization"].split()[1].encode()).decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {login}"}}
    )
    try:
        browser.get(f"http://{host}:{port}/idms/dashboard")
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-job="{job_id}"]')
        assert "succeeded" in row.text
        browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        row.find_element(By.CSS_SELECTOR, "a").click()
        wait_for(lambda: field(browser, "Status") == "succeeded", timeout=10)
    finally:
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})


def test_a_hostile_parameter_value_shows_as_text(browser, key, live_server):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    browser.get(start(live_server, key, "params", {"ImisId": 5, "LastName": hostile}))
    assert hostile in browser.find_element(By.CSS_SELECTOR, "table.parameters").text
    assert browser.find_elements(By.CSS_SELECTOR, "table.parameters img") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 (nothing ran)
    browser.save_screenshot(str(ARTIFACTS / "job-page-hostile-parameter.png"))
