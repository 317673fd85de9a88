"""Job records: what is written reads back exactly, and a task's history index stays
bounded."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

import pytest
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_idms_webhooks.jobs.dispatch import HISTORY_TRIM_EVERY
from flask_idms_webhooks.jobs.store import dumps, loads
from flask_idms_webhooks.state import WebhooksState


def trigger(client: FlaskClient, key: str) -> Any:
    return client.post(
        "/idms/tasks/count/jobs",
        json={"QueryParameters": {"Count": 1}},
        headers={"X-Webhook-Key": key},
    )


# -- the history index: JobStore.create's trim ----------------------------------------------


def test_stale_history_entries_are_trimmed_and_fresh_ones_kept(
    client: FlaskClient, key: Callable[[str], str], state: WebhooksState
) -> None:
    """A task's job list never grows without bound: entries past expiry go, live ones stay."""
    config = state.settings
    live_ttl = (state.tasks["count"].timeout or config.job_timeout) + config.result_ttl
    history = state.store.history_key("count")
    now = time.time()
    horizon = now - live_ttl - config.result_ttl
    state.redis.zadd(history, {"stale-1": horizon - 3600, "stale-2": horizon - 10})
    state.redis.zadd(history, {"fresh-1": horizon + 60, "fresh-2": now - 60})
    other = state.store.history_key("boom")
    state.redis.zadd(other, {"stale-of-another-task": horizon - 3600})
    created = []
    for _ in range(HISTORY_TRIM_EVERY):
        answer = trigger(client, key("count"))
        assert answer.status_code == 202, answer.data[:300]
        created.append(answer.get_json()["ExecuteId"])
    members = {raw.decode() for raw in cast(list[bytes], state.redis.zrange(history, 0, -1))}
    assert members == {"fresh-1", "fresh-2", *created}
    assert state.redis.zrange(other, 0, -1) == [b"stale-of-another-task"]


# -- records (orjson, with the standard library behind it) -------------------------------

JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(document=JSON_VALUES)
def test_a_record_reads_back_as_written(document):
    """Whatever a job record holds (an int beyond 64 bits included, which orjson refuses
    and the standard library writes), it reads back equal, and is the JSON the standard
    library would read."""
    record = dumps(document)
    assert loads(record) == document
    assert json.loads(record) == document


def test_a_record_holding_nan_written_by_the_standard_library_still_reads():
    """A record an older writer stored with NaN (orjson refuses it) is still read."""
    record = json.dumps({"Score": float("nan"), "Count": 1}).encode()
    value = loads(record)
    assert value["Count"] == 1 and value["Score"] != value["Score"]


@pytest.mark.parametrize(
    "number", [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30)]
)
def test_integers_at_and_beyond_64_bits_read_back_exactly(number):
    """orjson reads an integer beyond 64 bits as a float; a record never does."""
    value = loads(dumps({"n": number, "s": "x"}))["n"]
    assert value == number and type(value) is int
