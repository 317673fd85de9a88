"""What a chained task receives, made explicit: ``[tasks.chain] parameters = { ChildKey =
"ParentKey", Other = { value = "X" } }`` (or ``chain_parameters=`` in Python); values
passed on are labelled ``chain``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_idms_webhooks import (
    DataType,
    FilterRow,
    IdmsWebhooks,
    JobContext,
    Prompt,
    TaskLoadError,
)
from flask_idms_webhooks.model.tasks import Passed
from flask_idms_webhooks.state import state_of
from flask_idms_webhooks.worker import make_worker
from tests.helpers import bound_app, poll_path


def nothing(parameters: Mapping[str, Any], context: JobContext) -> None:
    context.set_row_count(0)


def two_tasks(redis_url: str, queue_name: str, **chain: Any) -> Flask:
    """``sync`` (Rows, Region) chained on success to ``report`` (Count, Label, Region)."""
    webhooks = IdmsWebhooks()
    webhooks.task(
        "sync",
        filters=[
            FilterRow("Test", "Rows", type=DataType.INT32, prompt=Prompt.REQUIRED),
            FilterRow("Test", "Region", default="EU"),
        ],
        on_success=["report"],
        **chain,
    )(nothing)
    webhooks.task(
        "report",
        filters=[
            FilterRow("Test", "Count", type=DataType.INT32, default=1),
            FilterRow("Test", "Label", default="none"),
            FilterRow("Test", "Region", default="US"),
        ],
    )(nothing)
    return bound_app(webhooks, redis_url, IDMS_WEBHOOKS_QUEUE_NAME=queue_name)


def child_parameters(app: Flask, rows: int) -> dict[str, Any]:
    state = state_of(app)
    client = app.test_client()
    key = state.credentials.task_key(state.tasks["sync"])
    started = client.post(
        "/idms/tasks/sync/jobs",
        json={"QueryParameters": {"Rows": rows}},
        headers={"X-Webhook-Key": key},
    )
    assert started.status_code == 202
    make_worker(app, simple=True).work(burst=True, logging_level="WARNING")
    parent = client.get(poll_path(started.headers["Location"])).get_json()
    assert parent["Success"] is True
    (entry,) = parent["Chain"]
    assert entry["Error"] is None
    child = client.get(poll_path(entry["PollingUrl"])).get_json()
    assert child["Success"] is True and child["Trigger"] == "chain"
    parameters: dict[str, Any] = child["QueryParameters"]
    return parameters


def test_explicit_parameters_are_what_the_child_receives(redis_url: str, queue_name: str) -> None:
    app = two_tasks(
        redis_url,
        queue_name,
        chain_parameters={"Count": "Rows", "Label": {"value": "nightly"}},
    )
    assert child_parameters(app, 42) == {
        "Count": {"Value": 42, "Source": "chain"},
        "Label": {"Value": "nightly", "Source": "chain"},
        # Region is shared by name, but not named: the child's own default, not the parent's
        "Region": {"Value": "US", "Source": "task default"},
    }


def test_without_parameters_shared_keys_pass_on_labelled_chain(
    redis_url: str, queue_name: str
) -> None:
    app = two_tasks(redis_url, queue_name)
    assert child_parameters(app, 42) == {
        "Count": {"Value": 1, "Source": "task default"},
        "Label": {"Value": "none", "Source": "task default"},
        "Region": {"Value": "EU", "Source": "chain"},  # the parent's (its default), never "request"
    }


def test_an_empty_table_passes_nothing(redis_url: str, queue_name: str) -> None:
    app = two_tasks(redis_url, queue_name, chain_parameters={})
    assert {value["Source"] for value in child_parameters(app, 5).values()} == {"task default"}


@pytest.mark.parametrize(
    ("passed", "key", "message"),
    [
        ({"Missing": "Rows"}, "chain.parameters.Missing", "no chained task takes 'Missing'"),
        ({"Count": "Ghost"}, "chain.parameters.Count", "this task has no key 'Ghost'"),
        ({"Count": {"value": "many"}}, "chain.parameters.Count", "integer"),
        ({"Count": 3}, "chain.parameters.Count", "the parent's key (a string)"),
        ({"Count": {"value": 1, "other": 2}}, "chain.parameters.Count", "{ value = <constant> }"),
    ],
)
def test_a_bad_entry_is_a_load_error_naming_it(
    redis_url: str, queue_name: str, passed: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(TaskLoadError) as raised:
        two_tasks(redis_url, queue_name, chain_parameters=passed)
    assert raised.value.task == "sync"
    assert raised.value.key == key
    assert message in str(raised.value)


FILE = """
[[tasks]]
id = "sync"
handler = "tests.test_chain_parameters:nothing"
[[tasks.source.filters]]
business_object = "Test"
column = "Rows"
type = "Int32"
[tasks.chain]
on_success = ["report"]
parameters = {parameters}

[[tasks]]
id = "report"
handler = "tests.test_chain_parameters:nothing"
[[tasks.source.filters]]
business_object = "Test"
column = "Count"
type = "Int32"
"""


def load(tmp_path: Path, redis_url: str, parameters: str) -> Flask:
    task_file = tmp_path / "tasks.toml"
    task_file.write_text(FILE.replace("{parameters}", parameters))
    return bound_app(None, redis_url, IDMS_WEBHOOKS_TASKS_FILE=str(task_file))


def test_the_task_file_key(tmp_path: Path, redis_url: str) -> None:
    app = load(tmp_path, redis_url, '{ Count = "Rows" }')
    assert state_of(app).tasks["sync"].chain.parameters == {"Count": Passed(parent="Rows")}
    constant = load(tmp_path, redis_url, "{ Count = { value = 7 } }")
    assert state_of(constant).tasks["sync"].chain.parameters == {"Count": Passed(value=7)}


@pytest.mark.parametrize(
    ("parameters", "key", "message"),
    [
        ('{ Nope = "Rows" }', "chain.parameters.Nope", "no chained task takes 'Nope'"),
        ('{ Count = "Nope" }', "chain.parameters.Count", "no key 'Nope' to pass on"),
        ('"Rows"', "chain.parameters", "must be a table"),
        ("{ Count = { value = 1, x = 2 } }", "chain.parameters.Count", "value = <constant>"),
    ],
)
def test_the_task_file_key_refused(
    tmp_path: Path, redis_url: str, parameters: str, key: str, message: str
) -> None:
    with pytest.raises(TaskLoadError) as raised:
        load(tmp_path, redis_url, parameters)
    assert (raised.value.task, raised.value.key) == ("sync", key)
    assert message in str(raised.value) and str(tmp_path) in str(raised.value)
