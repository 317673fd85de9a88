"""The app the test suite drives: tasks that count, fail, sleep and take every kind of
parameter. Importable by dotted path so forking workers can load it
(``flask --app tests.sample_app:create_app idms-webhooks worker``)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import redis
from flask import Flask, current_app

from flask_idms_webhooks import (
    DataType,
    FilterRow,
    IdmsWebhooks,
    JobContext,
    Operator,
    Prompt,
    TransientError,
)

webhooks = IdmsWebhooks()

ROW = FilterRow  # short alias for the tables below


@webhooks.task(
    "count",
    name="Count rows",
    description="Counts Count rows as updated, sleeping Delay seconds per row.",
    filters=[
        ROW("Test", "Count", type=DataType.INT32, prompt=Prompt.REQUIRED),
        ROW("Test", "Delay", type=DataType.DOUBLE, default=0.0),
        ROW("Test", "FailEvery", type=DataType.INT32, default=0),
    ],
    retry_after=7,
)
def count(parameters: Mapping[str, Any], context: JobContext) -> None:
    total = parameters["Count"]
    fail_every = parameters["FailEvery"] or 0
    context.set_row_count(total)
    for row in range(1, total + 1):
        context.check_cancelled()
        if parameters["Delay"]:
            time.sleep(parameters["Delay"])
        if fail_every and row % fail_every == 0:
            context.row_error(row, f"row {row} refused")
        elif row % 3 == 0:
            context.count(skipped=1)
        elif row % 3 == 1:
            context.count(updated=1)
        else:
            context.count(inserted=1)


@webhooks.task(
    "crawl",
    name="Count slowly",
    description="Counts Count rows, Delay seconds each: a job a browser can watch.",
    filters=[
        ROW("Test", "Count", type=DataType.INT32, prompt=Prompt.REQUIRED),
        ROW("Test", "Delay", type=DataType.DOUBLE, default=0.1),
    ],
    retry_after=1,
)
def crawl(parameters: Mapping[str, Any], context: JobContext) -> None:
    count(parameters | {"FailEvery": 0}, context)


@webhooks.task("boom", name="Always fails")
def boom(parameters: Mapping[str, Any], context: JobContext) -> None:
    context.set_row_count(10)
    context.count(updated=2)
    raise RuntimeError("the source could not be read")


@webhooks.task(
    "sleep",
    filters=[ROW("Test", "Seconds", type=DataType.DOUBLE, default=60.0)],
)
def sleep(parameters: Mapping[str, Any], context: JobContext) -> None:
    """Blocks without reporting: only the heartbeat thread shows it is alive."""
    context.set_row_count(1)
    with open(os.environ.get("IDMS_TEST_PID_FILE", os.devnull), "w") as pid_file:
        pid_file.write(str(os.getpid()))
    time.sleep(parameters["Seconds"])
    context.count(updated=1)


@webhooks.task(
    "params",
    name="Every kind of parameter",
    filters=[
        ROW(
            "CsContact", "LastName", Operator.STARTS_WITH, prompt=Prompt.OPTIONAL, query_default="A"
        ),
        ROW("CsContact", "FirstName", prompt=Prompt.OPTIONAL, default="Ann", query_default="Bob"),
        ROW("CsContact", "ImisId", type=DataType.INT32, prompt=Prompt.REQUIRED),
        ROW("CsContact", "Status", prompt=Prompt.NONE, default="A"),
        ROW("CsContact", "Age", type=DataType.INT64, prompt=Prompt.OPTIONAL),
        ROW("CsContact", "Dues", type=DataType.DECIMAL),
        ROW("CsContact", "Score", type=DataType.DOUBLE),
        ROW("CsContact", "JoinDate", type=DataType.DATETIME),
        ROW("CsContact", "IsMember", type=DataType.BOOLEAN),
        ROW("CsContact", "Guid", type=DataType.GUID),
        ROW("CsContact", "Paid", Operator.BETWEEN, type=DataType.DECIMAL),
        ROW("CsContact", "Chapter", Operator.IN),
        ROW(
            "Activity", "UpdatedOn", Operator.GREATER_THAN_OR_EQUAL, DataType.DATETIME, key="Since"
        ),
        ROW("Activity", "UpdatedOn", Operator.LESS_THAN_OR_EQUAL, DataType.DATETIME, key="Until"),
    ],
)
def params(parameters: Mapping[str, Any], context: JobContext) -> None:
    context.count(skipped=1)


@webhooks.task(
    "pair",
    name="Two filters share a column",
    filters=[
        ROW("CsContact1", "ImisId", type=DataType.INT32, prompt=Prompt.REQUIRED),
        ROW("CsContact2", "ImisId", type=DataType.INT32, default=7),
    ],
)
def pair(parameters: Mapping[str, Any], context: JobContext) -> None:
    context.count(updated=1)


@webhooks.task(
    "parent",
    filters=[
        ROW("Test", "Count", type=DataType.INT32, prompt=Prompt.REQUIRED),
        ROW("Test", "Fail", type=DataType.BOOLEAN, default=False),
    ],
    on_success=["child", "needy"],
    on_failure=["rescue"],
)
def parent(parameters: Mapping[str, Any], context: JobContext) -> None:
    context.count(updated=parameters["Count"])
    if parameters["Fail"]:
        raise RuntimeError("parent failed")


@webhooks.task(
    "marker",
    filters=[
        ROW("Test", "Count", type=DataType.INT32, prompt=Prompt.REQUIRED),
        ROW("Test", "Mark", prompt=Prompt.REQUIRED),
    ],
    on_success=["child"],
)
def marker(parameters: Mapping[str, Any], context: JobContext) -> None:
    """Writes one row per Count into Redis list ``Mark`` (its "database"), checking for a
    cancel before each: the rows written must be the rows counted."""
    connection = redis.Redis.from_url(current_app.config["IDMS_WEBHOOKS_REDIS_URL"])
    for row in range(parameters["Count"]):
        context.check_cancelled()
        connection.rpush(parameters["Mark"], row)
        context.count(updated=1)


@webhooks.task(
    "flaky",
    filters=[
        ROW("Test", "FailTimes", type=DataType.INT32, prompt=Prompt.REQUIRED),
        ROW("Test", "Mark", prompt=Prompt.REQUIRED),
        ROW("Test", "Seconds", type=DataType.DOUBLE, default=0.0),
    ],
    retries=2,
    retry_delays=[1],
    idempotent=True,
)
def flaky(parameters: Mapping[str, Any], context: JobContext) -> None:
    """Its target is unreachable on its first FailTimes runs (counted in Redis key Mark);
    it then writes 3 rows."""
    connection = redis.Redis.from_url(current_app.config["IDMS_WEBHOOKS_REDIS_URL"])
    run = connection.incr(parameters["Mark"])
    context.count(updated=1)
    time.sleep(parameters["Seconds"])
    if run <= parameters["FailTimes"]:
        raise TransientError(f"the target could not be reached (run {run})")
    context.count(updated=2)


@webhooks.task("child", filters=[ROW("Test", "Count", type=DataType.INT32, prompt=Prompt.REQUIRED)])
def child(parameters: Mapping[str, Any], context: JobContext) -> None:
    context.count(inserted=parameters["Count"])


@webhooks.task("needy", filters=[ROW("Test", "Other", type=DataType.INT32, prompt=Prompt.REQUIRED)])
def needy(parameters: Mapping[str, Any], context: JobContext) -> None:
    """Chained from "parent", which has no Other to give: it cannot start."""


@webhooks.task("rescue")
def rescue(parameters: Mapping[str, Any], context: JobContext) -> None:
    context.count(skipped=1)


def create_app(**config: Any) -> Flask:
    """The test app; settings from ``config``, else from ``IDMS_WEBHOOKS_*`` variables."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test-secret"
    app.config["IDMS_WEBHOOKS_ADMIN_TOKEN"] = "admin-token"
    for name, value in os.environ.items():
        if name.startswith("IDMS_WEBHOOKS_"):
            app.config[name] = value
    app.config.update(config)
    webhooks.init_app(app)
    return app
