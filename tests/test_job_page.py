"""The job page, as a browser gets it from a job's ``Location``: HTML with the task, the
status, a progress bar, the counts, times, parameters and errors, under a
Content-Security-Policy, with the app's own CSS and script and nothing from elsewhere, and
every value escaped; any other caller gets the JSON of the contract, byte for byte. (The
live refresh is the browser test's.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from tests.helpers import poll_path

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


class Page(HTMLParser):
    """The page's elements with their attributes, and its text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def field(self, name: str) -> dict[str, str | None]:
        [found] = [attrs for _, attrs in self.elements if attrs.get("data-field") == name]
        return found


def start(client, key, task_id: str, parameters: dict) -> str:
    answer = client.post(
        f"/idms/tasks/{task_id}/jobs",
        json={"QueryParameters": parameters},
        headers={"X-Webhook-Key": key(task_id)},
    )
    assert answer.status_code == 202, answer.get_json()
    return poll_path(answer.headers["Location"])


def test_a_browser_gets_the_page_of_a_running_job(client, key):
    location = start(client, key, "count", {"Count": 3})
    answer = client.get(location, headers=BROWSER)
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["Vary"] == "Accept" and answer.headers["Cache-Control"] == "no-store"
    page = Page(answer.text)
    assert "Count rows" in page.text  # the task's name
    assert page.field("Status")["data-status"] == "queued"
    [bar] = [attrs for tag, attrs in page.elements if tag == "progress"]
    assert bar["value"] == "0" and bar["max"] == "100"
    # without JavaScript, it reloads itself until the job ends
    assert ("meta", {"http-equiv": "refresh", "content": "7"}) in page.elements


def test_the_page_of_a_finished_job_has_its_counts_and_no_reload(client, key, run_burst):
    location = start(client, key, "count", {"Count": 6, "FailEvery": 4})
    run_burst()
    html = client.get(location, headers=BROWSER).text
    page = Page(html)
    assert page.field("Status")["data-status"] == "succeeded"
    shown = dict(re.findall(r'data-field="(\w+)Count">(\d+)<', html))
    assert shown == {
        "Processed": "6", "Inserted": "2", "Updated": "1", "Skipped": "2", "Error": "1",
        "Deleted": "0", "Row": "6",
    }  # fmt: skip
    assert not [attrs for tag, attrs in page.elements if tag == "meta" and "http-equiv" in attrs]
    assert "Row 4: row 4 refused" in page.text
    [csv] = [
        attrs["href"]
        for tag, attrs in page.elements
        if tag == "a" and "errors.csv" in (attrs.get("href") or "")
    ]
    download = client.get(csv)  # the page's token opens its errors.csv
    assert download.status_code == 200 and "row 4 refused" in download.text


def test_assets_are_the_apps_own(client, key):
    page = Page(client.get(start(client, key, "count", {"Count": 1}), headers=BROWSER).text)
    assets = [attrs.get("href") or attrs.get("src") for tag, attrs in page.elements
              if tag in ("link", "script")]  # fmt: skip
    assert len(assets) == 2
    for asset in assets:
        assert asset and not urlsplit(asset).netloc  # same origin
        served = client.get(asset)
        served.close()  # a file the app sends
        assert served.status_code == 200
        assert served.mimetype in ("text/css", "text/javascript", "application/javascript")


def test_a_hostile_parameter_value_shows_as_text(client, key):
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    location = start(client, key, "params", {"ImisId": 5, "LastName": hostile})
    html = client.get(location, headers=BROWSER).text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(" in html
    assert hostile in "".join(Page(html).text)


@pytest.mark.parametrize(
    "accept",
    [None, "*/*", "application/json", "application/json, text/html", "text/html;q=0.5, */*"],
)
def test_every_other_caller_gets_the_json_byte_for_byte(client, key, accept):
    location = start(client, key, "count", {"Count": 2})
    reference = client.get(location, headers={"Accept": "application/json"})
    headers = {} if accept is None else {"Accept": accept}
    answer = client.get(location, headers=headers)
    assert answer.status_code == 202 and answer.data == reference.data
    assert answer.mimetype == "application/json" and answer.headers["Vary"] == "Accept"
    assert re.fullmatch(r"\d+", answer.headers["Retry-After"])


def test_a_bad_token_is_still_a_401_in_json(client, key):
    location = start(client, key, "count", {"Count": 2})
    answer = client.get(re.sub(r"token=[^&]+", "token=forged", location), headers=BROWSER)
    assert answer.status_code == 401 and answer.mimetype == "application/json"
