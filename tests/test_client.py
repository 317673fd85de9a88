"""flask_idms_webhooks.client: the polling rules of the contract against scripted servers
(httpx.MockTransport), then start, wait, cancel and refusals against a served app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from flask_idms_webhooks import client as client_module
from flask_idms_webhooks.client import (
    Client,
    Job,
    JobError,
    ProtocolError,
    Refused,
    RowError,
    Unavailable,
    WaitTimeout,
)
from tests.helpers import ADMIN

BASE = "https://host"
POLL = "https://host/idms/jobs/j1?token=t"


def document(status: str = "queued", **fields: Any) -> dict[str, Any]:
    success = {"succeeded": True, "failed": False, "cancelled": False}.get(status)
    return {"ExecuteId": "j1", "TaskId": "count", "Status": status, "Success": success,
            "PercentComplete": 0, "PollingUrl": POLL, "RetryAfter": 30, "Error": None,
            **fields}  # fmt: skip


def running(retry_after: str = "7", location: str = POLL, **fields: Any) -> httpx.Response:
    return httpx.Response(
        202,
        json=document("in progress", **fields),
        headers={"Location": location, "Retry-After": retry_after},
    )


def finished(**fields: Any) -> httpx.Response:
    return httpx.Response(200, json=document("succeeded", PercentComplete=100, **fields))


def refusal(code: int, message: str, **headers: str) -> httpx.Response:
    body = {"code": code, "status": "…", "message": message, "errors": {"Count": ["bad"]}}
    return httpx.Response(code, json=body, headers=headers)


class Script:
    """A server answering the scripted answers in turn (an exception is raised instead),
    keeping the requests it was sent."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    """The client's clock and sleep: sleeping only moves the time on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(client_module, "sleep", fake.sleep)
    monkeypatch.setattr(client_module, "monotonic", lambda: fake.now)
    return fake


@pytest.fixture
def scripted() -> Iterator[Any]:
    made: list[Client] = []

    def make(*answers: httpx.Response | Exception, **options: Any) -> tuple[Client, Script]:
        script = Script(*answers)
        client = Client(BASE, "the-key", transport=httpx.MockTransport(script), **options)
        made.append(client)
        return client, script

    yield make
    for client in made:
        client.close()


def started(client: Client) -> Job:
    return client.start("count", {"Count": 3})


def test_start_posts_the_parameters_with_the_key_in_a_header(scripted):
    client, script = scripted(running(), running())
    job = client.start("count", {"Count": 3}, idempotency_key="once")
    assert (job.execute_id, job.status, job.location, job.retry_after) == (
        "j1", "in progress", POLL, 7,
    )  # fmt: skip
    assert not job.finished and job.success is None
    request = script.requests[0]
    assert (request.method, str(request.url)) == ("POST", "https://host/idms/tasks/count/jobs")
    assert request.headers["X-Webhook-Key"] == "the-key"
    assert request.headers["Idempotency-Key"] == "once"
    assert json.loads(request.content) == {"QueryParameters": {"Count": 3}}
    client.status(job)
    poll = script.requests[1]
    assert str(poll.url) == POLL and "key" not in poll.url.params  # never in a URL


def test_a_base_url_may_already_end_with_the_prefix():
    for base in ("https://host/idms", "https://host/idms/"):
        script = Script(running())
        with Client(base, "k", transport=httpx.MockTransport(script)) as client:
            client.start("count")
        assert str(script.requests[0].url) == "https://host/idms/tasks/count/jobs"
        assert script.requests[0].content == b""  # no parameters: no body at all


def test_start_url_keeps_a_given_url_and_its_key_as_they_are():
    script = Script(running())
    with Client(BASE, transport=httpx.MockTransport(script)) as client:
        client.start_url("https://host/idms/tasks/count/jobs?key=in-url", {"Count": 1})
    request = script.requests[0]
    assert str(request.url) == "https://host/idms/tasks/count/jobs?key=in-url"
    assert "X-Webhook-Key" not in request.headers


def test_wait_sleeps_each_retry_after_and_reports_each_202(scripted, clock):
    client, _ = scripted(running("7"), running("3", PercentComplete=40), running("2"),
                         finished(ProcessedCount=3, UpdatedCount=3))  # fmt: skip
    seen: list[Job] = []
    final = client.wait(started(client), on_progress=seen.append)
    assert clock.slept == [7, 3, 2]
    assert [job.http_status for job in seen] == [202, 202]
    assert seen[0].percent_complete == 40 and seen[1].retry_after == 2
    assert final.finished and final.success is True and final.status == "succeeded"
    assert (final.processed_count, final.updated_count, final.http_status) == (3, 3, 200)
    assert final.location == POLL  # where it was polled: a final answer has no Location


def test_interval_bounds_the_sleep_from_above(scripted, clock):
    client, _ = scripted(running("30"), running("1"), finished())
    client.wait(started(client), interval=2)
    assert clock.slept == [2, 1]


def test_polling_stops_at_the_first_non_202(scripted, clock):
    client, script = scripted(running(), finished(), running(), running())
    assert client.wait(started(client)).status == "succeeded"
    assert len(script.requests) == 2 and len(script.answers) == 2  # the rest never asked


@pytest.mark.parametrize("location", ["/idms/jobs/j1?token=t", "host/idms/jobs/j1", ""])
def test_a_202_without_an_absolute_location_is_a_protocol_error(scripted, clock, location):
    client, _ = scripted(running(location=location))
    with pytest.raises(ProtocolError, match="absolute Location"):
        started(client)
    client, _ = scripted(running(), running(location=location))
    with pytest.raises(ProtocolError, match="absolute Location"):
        client.wait(started(client))


@pytest.mark.parametrize("retry_after", ["1.5", "", "Wed, 21 Oct 2026 07:28:00 GMT", "-1"])
def test_a_202_without_an_integer_retry_after_is_a_protocol_error(scripted, clock, retry_after):
    client, _ = scripted(running(), running(retry_after))
    with pytest.raises(ProtocolError, match="integer Retry-After"):
        client.wait(started(client))


def test_429_503_and_network_errors_are_retried(scripted, clock):
    client, script = scripted(
        running("7"),
        refusal(503, "the job store is unavailable", **{"Retry-After": "5"}),
        refusal(429, "too many requests"),
        httpx.ConnectError("connection refused"),
        httpx.Response(408),
        finished(),
    )
    assert client.wait(started(client)).success is True
    # Retry-After of the 202, then the 503's, then a doubling back-off where none is given.
    assert clock.slept == [7, 5, 1.0, 2.0, 4.0]
    assert len(script.requests) == 6


def test_failed_polls_in_a_row_end_as_unavailable_with_the_servers_message(scripted, clock):
    client, _ = scripted(running(), *[refusal(503, "Redis is away")] * 3, retries=2)
    with pytest.raises(Unavailable) as raised:
        client.wait(started(client))
    assert (raised.value.status_code, raised.value.message) == (503, "Redis is away")


def test_a_404_raises_with_the_servers_message_and_is_not_retried(scripted, clock):
    client, script = scripted(running(), refusal(404, "No job 'j1' (or it has expired)."))
    with pytest.raises(Refused) as raised:
        client.wait(started(client))
    assert raised.value.status_code == 404
    assert raised.value.message == "No job 'j1' (or it has expired)."
    assert str(raised.value) == "404: No job 'j1' (or it has expired)."
    assert len(script.requests) == 2


def test_a_3xx_is_not_followed(scripted, clock):
    client, _ = scripted(running(), httpx.Response(302, headers={"Location": "https://elsewhere"}))
    with pytest.raises(ProtocolError, match="302"):
        client.wait(started(client))


def test_the_timeout_raises_wait_timeout_with_the_last_job(scripted, clock):
    client, _ = scripted(running("7"), running("7", PercentComplete=10), running("7"))
    with pytest.raises(WaitTimeout) as raised:
        client.wait(started(client), timeout=10)
    assert raised.value.job.percent_complete == 0  # the third answer: its default
    assert raised.value.job.status == "in progress"
    assert clock.slept == [7, 3] and sum(clock.slept) == 10  # not a second longer
    assert "still in progress after 10 s" in str(raised.value)


def test_a_poll_failing_at_the_deadline_is_still_a_wait_timeout(scripted, clock):
    """The job may run on: the wait ran out, whatever the last poll met (exit 5, not 4)."""
    client, _ = scripted(
        running("7"), running("7", PercentComplete=10), refusal(503, "Redis away"), finished()
    )
    with pytest.raises(WaitTimeout) as raised:
        client.wait(started(client), timeout=10)
    assert raised.value.job.percent_complete == 10  # the last job read
    assert "Redis away" in str(raised.value)
    assert clock.slept == [7, 3]


@pytest.mark.parametrize(
    "malformed",
    [
        {"ExecuteId": "x", "Errors": [{"Row": "a", "Message": "m"}]},
        {"ExecuteId": "x", "Error": "boom"},
        {"ExecuteId": "x", "CreatedOn": "yesterday"},
        {"ExecuteId": "x", "ProcessedCount": "many"},
    ],
)
def test_a_malformed_document_is_a_protocol_error(malformed):
    with pytest.raises(ProtocolError, match="malformed"):
        Job.from_document(malformed)


def test_start_refusals_carry_the_servers_message_and_are_not_retried(scripted):
    client, script = scripted(refusal(422, "invalid QueryParameters"))
    with pytest.raises(Refused) as raised:
        started(client)
    assert raised.value.message == "invalid QueryParameters"
    assert raised.value.errors == {"Count": ["bad"]}
    client, script = scripted(refusal(503, "the queue is unreachable", **{"Retry-After": "9"}))
    with pytest.raises(Unavailable) as unavailable:
        started(client)
    assert unavailable.value.retry_after == 9 and len(script.requests) == 1
    client, _ = scripted(httpx.ConnectError("connection refused"))
    with pytest.raises(Unavailable, match="connection refused"):
        started(client)


def test_a_200_to_the_start_request_is_not_a_polling_webhook(scripted):
    standard = httpx.Response(200, json={"ExecuteId": "j1", "TaskId": "c", "Status": "queued"})
    client, _ = scripted(standard)
    with pytest.raises(ProtocolError, match="200, not 202: is this a task's polling webhook"):
        started(client)


def test_cancelling_a_finished_job_answers_its_final_document(scripted):
    sealed = document("succeeded", PercentComplete=100)
    body = {"code": 409, "message": "The job has already finished.", "errors": {"Job": sealed}}
    client, script = scripted(running(), httpx.Response(409, json=body))
    job = client.cancel(started(client))
    assert job.finished and job.status == "succeeded" and job.document == sealed
    assert script.requests[1].method == "DELETE" and str(script.requests[1].url) == POLL


def test_a_job_is_typed():
    job = Job.from_document(document(
        "failed", RowCount=10, ProcessedCount=2, UpdatedCount=2, ErrorCount=1,
        Errors=[{"Row": 17, "Message": "refused"}], StartedOn="2026-11-29T06:00:00Z",
        Error={"Type": "RuntimeError", "Message": "the source could not be read"},
    ))  # fmt: skip
    assert job.finished and job.success is False
    assert job.errors == (RowError(17, "refused"),)
    assert job.error == JobError("RuntimeError", "the source could not be read")
    assert job.started_on == datetime(2026, 11, 29, 6, tzinfo=UTC) and job.completed_on is None
    assert (job.row_count, job.error_count, job.retry_after) == (10, 1, 30)
    with pytest.raises(ProtocolError):
        Job.from_document({"message": "not a job"})


# -- against a served app


@pytest.fixture
def served(live_server: tuple[str, int]) -> str:
    host, port = live_server
    return f"http://{host}:{port}"


def test_start_wait_succeeded_with_counts(served, key, run_burst):
    with Client(served, key("count")) as client:
        job = client.start("count", {"Count": 30})
        assert job.status == "queued" and job.location.startswith(f"{served}/idms/jobs/")
        assert job.retry_after == 7
        seen: list[Job] = []

        def progress(current: Job) -> None:
            seen.append(current)
            run_burst()  # the job runs between two polls

        final = client.wait(job, on_progress=progress, interval=0.01)
    assert [(j.http_status, j.status) for j in seen] == [(202, "queued")]
    assert final.success is True and final.status == "succeeded" and final.percent_complete == 100
    assert (final.row_count, final.processed_count) == (30, 30)
    assert (final.inserted_count, final.updated_count, final.skipped_count) == (10, 10, 10)
    assert final.error_count == 0 and final.errors == () and final.error is None


def test_start_url_takes_the_polling_webhook_of_the_task_document(served, run_burst):
    task = httpx.get(f"{served}/idms/tasks/boom", headers=ADMIN).json()
    with Client(served) as client:  # no key: the URL carries it
        job = client.start_url(task["Webhooks"]["Polling"])
        run_burst()
        final = client.wait(job, interval=0.01)
    assert final.status == "failed" and final.success is False
    assert final.error == JobError("RuntimeError", "the source could not be read")
    assert httpx.get(final.location).json() == final.document


def test_cancel_a_queued_job(served, key):
    with Client(served, key("count")) as client:
        job = client.start("count", {"Count": 5})
        cancelled = client.cancel(job)
        assert cancelled.status == "cancelled" and cancelled.success is False
        again = client.cancel(job)  # the server's 409: the job's final document
        assert again.status == "cancelled" and again.document == client.status(job).document
        assert client.wait(job, interval=0.01).status == "cancelled"


def test_a_wrong_key_is_refused_with_the_servers_message(served, key):
    with Client(served, "not-the-key") as client, pytest.raises(Refused) as raised:
        client.start("count", {"Count": 1})
    assert raised.value.status_code == 401
    assert raised.value.message == "The X-Webhook-Key header is not this task's key."
    with Client(served, key("count")) as client, pytest.raises(Refused) as unknown:
        client.start("nope")
    assert (unknown.value.status_code, unknown.value.message) == (404, "No task 'nope'.")


def test_invalid_parameters_are_refused_with_what_is_wrong(served, key):
    with Client(served, key("count")) as client, pytest.raises(Refused) as raised:
        client.start("count", {"Count": "many", "Colour": "red"})
    assert (raised.value.status_code, raised.value.message) == (422, "Invalid QueryParameters.")
    wrong = raised.value.errors["json"]["QueryParameters"]
    assert wrong == {
        "Colour": ["Unknown parameter 'Colour'. Valid keys: Count, Delay, FailEvery."],
        "Count": ["Not a valid integer."],
    }
