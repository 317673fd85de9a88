"""``Idempotency-Key`` on both webhooks: a repeat replays the first answer and starts
nothing; a different body is 422; keys are scoped to task and route; simultaneous repeats
start exactly one job."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any

import pytest

from flask_idms_webhooks.errors import StoreUnavailable
from tests.helpers import poll_path

ROUTES = {"execute": 200, "jobs": 202}
BODY = {"QueryParameters": {"Count": 3}}


@pytest.fixture
def trigger(client, key):
    def post(
        route: str,
        idempotency_key: str | None,
        body: Any = BODY,
        task_id: str = "count",
        **kwargs: Any,
    ) -> Any:
        headers = {"X-Webhook-Key": key(task_id)}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if isinstance(body, bytes):
            kwargs.update(data=body, content_type="application/json")
        elif body is not None:
            kwargs["json"] = body
        return client.post(f"/idms/tasks/{task_id}/{route}", headers=headers, **kwargs)

    return post


def jobs_of(state: Any, task_id: str = "count") -> int:
    return state.store.history(task_id, 0, 100)[0]  # type: ignore[no-any-return]


def same_answer(first: Any, second: Any) -> None:
    assert second.status_code == first.status_code
    assert second.data == first.data
    assert second.headers.get("Location") == first.headers.get("Location")
    assert second.headers.get("Retry-After") == first.headers.get("Retry-After")
    assert second.mimetype == "application/json"


@pytest.mark.parametrize("route", ROUTES)
def test_a_repeat_replays_the_first_answer_and_starts_nothing(trigger, state, route):
    first = trigger(route, "order-1")
    assert first.status_code == ROUTES[route]
    assert (state.queue.count, jobs_of(state)) == (1, 1)
    for _ in range(3):
        same_answer(first, trigger(route, "order-1"))
    assert (state.queue.count, jobs_of(state)) == (1, 1)
    if route == "jobs":
        assert first.headers["Location"].startswith("http://localhost/idms/jobs/")
        assert first.headers["Retry-After"] == "7"


@pytest.mark.parametrize("route", ROUTES)
def test_without_the_header_every_request_starts_a_job(trigger, state, route):
    ids = {trigger(route, None).get_json()["ExecuteId"] for _ in range(3)}
    assert len(ids) == 3
    assert (state.queue.count, jobs_of(state)) == (3, 3)


@pytest.mark.parametrize("route", ROUTES)
def test_the_body_is_compared_as_parsed_json(trigger, state, route):
    first = trigger(route, "k", b'{"QueryParameters": {"Count": 3, "Delay": 0}}')
    again = trigger(route, "k", b'{ "QueryParameters" : {"Delay":0,\n "Count":3} }  ')
    same_answer(first, again)
    assert jobs_of(state) == 1


@pytest.mark.parametrize("route", ROUTES)
def test_the_same_key_with_another_body_is_422_and_starts_nothing(trigger, state, route):
    first = trigger(route, "k")
    others = (
        {"QueryParameters": {"Count": 4}},
        {"QueryParameters": {"Count": 3, "Delay": 0.5}},
        {"QueryParameters": {"Count": 3, "FailEvery": None}},
    )
    for other in others:
        answer = trigger(route, "k", other)
        assert answer.status_code == 422
        body = answer.get_json()
        assert body["code"] == 422
        assert "Idempotency-Key" in body["message"]
        assert "Location" not in answer.headers
    assert (state.queue.count, jobs_of(state)) == (1, 1)
    same_answer(first, trigger(route, "k"))  # the first body still replays


def test_no_body_and_an_empty_object_are_the_same_body(trigger, state):
    first = trigger("jobs", "k", None, task_id="boom")
    assert first.status_code == 202
    same_answer(first, trigger("jobs", "k", {}, task_id="boom"))
    same_answer(first, trigger("jobs", "k", b"", task_id="boom"))
    assert jobs_of(state, "boom") == 1


def test_keys_are_scoped_to_the_route(trigger, state):
    standard = trigger("execute", "shared")
    polling = trigger("jobs", "shared")
    assert (standard.status_code, polling.status_code) == (200, 202)
    assert standard.get_json()["ExecuteId"] != polling.get_json()["ExecuteId"]
    assert (state.queue.count, jobs_of(state)) == (2, 2)
    same_answer(standard, trigger("execute", "shared"))
    same_answer(polling, trigger("jobs", "shared"))
    assert jobs_of(state) == 2


@pytest.mark.parametrize("route", ROUTES)
def test_keys_are_scoped_to_the_task(trigger, state, route):
    counting = trigger(route, "shared")
    failing = trigger(route, "shared", None, task_id="boom")
    assert failing.status_code == ROUTES[route]
    assert failing.get_json()["TaskId"] == "boom"
    assert counting.get_json()["ExecuteId"] != failing.get_json()["ExecuteId"]
    assert (jobs_of(state), jobs_of(state, "boom"), state.queue.count) == (1, 1, 2)


@pytest.mark.parametrize("route", ROUTES)
def test_different_keys_start_different_jobs(trigger, state, route):
    first, second = trigger(route, "a"), trigger(route, "b")
    assert first.get_json()["ExecuteId"] != second.get_json()["ExecuteId"]
    assert jobs_of(state) == 2


@pytest.mark.parametrize("route", ROUTES)
def test_a_repeat_without_the_task_key_is_refused_not_replayed(client, trigger, state, route):
    trigger(route, "k")
    answer = client.post(
        f"/idms/tasks/count/{route}",
        json=BODY,
        headers={"Idempotency-Key": "k", "X-Webhook-Key": "wrong"},
    )
    assert answer.status_code == 401
    assert b"ExecuteId" not in answer.data
    assert jobs_of(state) == 1


def test_a_repeat_after_the_job_finished_still_replays_the_first_answer(
    client, trigger, state, run_burst
):
    first = trigger("jobs", "k")
    run_burst()
    assert client.get(poll_path(first.headers["Location"])).get_json()["Status"] == "succeeded"
    same_answer(first, trigger("jobs", "k"))
    assert jobs_of(state) == 1
    assert state.queue.count == 0


def test_keys_are_remembered_for_24_hours(trigger, state):
    trigger("jobs", "k")
    claims = list(state.redis.scan_iter("idms:idem:*"))
    assert len(claims) == 1
    assert 24 * 3600 - 60 <= state.redis.ttl(claims[0]) <= 24 * 3600


def test_a_job_that_could_not_be_queued_does_not_hold_its_key(trigger, state, monkeypatch):
    real_create = state.store.create

    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("simulated: Redis stalled")

    monkeypatch.setattr(state.store, "create", unavailable)
    refused = trigger("jobs", "k")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"].isdigit()
    assert refused.get_json()["code"] == 503
    assert (state.queue.count, jobs_of(state)) == (0, 0)
    monkeypatch.setattr(state.store, "create", real_create)
    retried = trigger("jobs", "k")
    assert retried.status_code == 202
    assert (state.queue.count, jobs_of(state)) == (1, 1)
    same_answer(retried, trigger("jobs", "k"))


# -- simultaneous repeats, over real HTTP ----------------------------------------------------


def concurrently(
    address: tuple[str, int], path: str, bodies: list[bytes], headers: dict[str, str]
) -> list[tuple[int, str | None, str | None, bytes]]:
    """POST each body from a thread of its own, all released at once; answers
    (status, Location, Retry-After, body) per request, in order."""
    barrier = threading.Barrier(len(bodies))
    answers: list[Any] = [None] * len(bodies)

    def send(index: int) -> None:
        connection = http.client.HTTPConnection(*address, timeout=30)
        try:
            connection.connect()
            barrier.wait(timeout=30)
            connection.request("POST", path, body=bodies[index], headers=headers)
            response = connection.getresponse()
            answers[index] = (
                response.status,
                response.getheader("Location"),
                response.getheader("Retry-After"),
                response.read(),
            )
        except Exception as error:  # reported by the assertion below
            answers[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(isinstance(answer, tuple) for answer in answers), answers
    return answers


@pytest.mark.parametrize("route", ROUTES)
def test_twenty_simultaneous_repeats_start_exactly_one_job(live_server, key, state, route):
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Key": key("count"),
        "Idempotency-Key": "burst",
    }
    answers = concurrently(
        live_server, f"/idms/tasks/count/{route}", [json.dumps(BODY).encode()] * 20, headers
    )
    assert len(set(answers)) == 1, answers
    status, location, retry_after, body = answers[0]
    assert status == ROUTES[route]
    assert (location is not None, retry_after is not None) == (route == "jobs", route == "jobs")
    assert (state.queue.count, jobs_of(state)) == (1, 1)
    assert (
        json.loads(body)["ExecuteId"]
        == json.loads(state.store.history("count", 0, 1)[1][0])["ExecuteId"]
    )


def test_simultaneous_different_bodies_under_one_key_start_one_job(live_server, key, state):
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Key": key("count"),
        "Idempotency-Key": "race",
    }
    bodies = [json.dumps({"QueryParameters": {"Count": n}}).encode() for n in range(1, 11)]
    answers = concurrently(live_server, "/idms/tasks/count/jobs", bodies, headers)
    statuses = sorted(status for status, *_ in answers)
    assert statuses == [202] + [422] * 9, answers
    assert (state.queue.count, jobs_of(state)) == (1, 1)


def test_a_repeat_that_wins_the_race_is_replayed_to_the_first(trigger, state, monkeypatch):
    """The claim and its job are one transaction: a repeat that claims the key while the
    first request is writing makes the first one's transaction fail as a whole, and the
    first request answers the repeat's job (no wait, one job, no claim without a job)."""
    from flask_idms_webhooks.jobs import lifecycle

    def no_sleeping(seconds: float) -> None:
        raise AssertionError(f"a request slept {seconds} s")

    monkeypatch.setattr(lifecycle.time, "sleep", no_sleeping)
    monkeypatch.setattr("time.sleep", no_sleeping)
    real_write = state.store._write_new
    repeats: list[Any] = []

    def write_after_a_repeat(*args: Any, **kwargs: Any) -> None:
        if not repeats:
            repeats.append(None)
            repeats[0] = trigger("jobs", "mid-write")  # on another connection, first
        real_write(*args, **kwargs)

    monkeypatch.setattr(state.store, "_write_new", write_after_a_repeat)
    first = trigger("jobs", "mid-write")
    assert first.status_code == 202
    (repeat,) = repeats
    same_answer(first, repeat)
    assert (state.queue.count, jobs_of(state)) == (1, 1)
    assert state.redis.exists(state.store.live_key(first.get_json()["ExecuteId"]))
