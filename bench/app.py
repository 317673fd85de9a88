"""The app the webhook scenarios serve: one Python-registered task with three filters.

``gunicorn 'bench.app:create_app()'`` reads ``BENCH_REDIS_URL``, ``BENCH_SECRET`` and
optionally ``BENCH_QUEUE`` and ``BENCH_TASKS_FILE`` from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from flask_idms_webhooks import DataType, FilterRow, IdmsWebhooks, JobContext, Prompt

TASK_ID = "bench"
DEFAULT_SECRET = "bench-secret-not-for-production"  # noqa: S105 (benchmark only)
DEFAULT_QUEUE = "idms-bench"

FILTERS = (
    FilterRow("Bench", "Name", type=DataType.STRING, prompt=Prompt.OPTIONAL),
    FilterRow("Bench", "Count", type=DataType.INT32, prompt=Prompt.OPTIONAL),
    FilterRow("Bench", "Since", type=DataType.DATETIME, prompt=Prompt.OPTIONAL),
)

#: The body of a trigger: the three QueryParameters.
TRIGGER_BODY = {"QueryParameters": {"Name": "Smith", "Count": 42, "Since": "2024-01-02T03:04:05Z"}}


def trivial(parameters: Mapping[str, Any], context: JobContext) -> None:
    """The bench task's work: nothing (a task's signature: its QueryParameters and its
    ``JobContext``)."""


def create_app(**overrides: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        # The extension's own secret, not Flask's SECRET_KEY: with SECRET_KEY set, Flask opens a
        # cookie session on every request, which the bare baselines (no SECRET_KEY) do not.
        IDMS_WEBHOOKS_SECRET_KEY=os.environ.get("BENCH_SECRET", DEFAULT_SECRET),
        IDMS_WEBHOOKS_REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        IDMS_WEBHOOKS_QUEUE_NAME=os.environ.get("BENCH_QUEUE", DEFAULT_QUEUE),
        IDMS_WEBHOOKS_ADMIN_TOKEN="bench-admin-token",  # noqa: S106
    )
    tasks_file = os.environ.get("BENCH_TASKS_FILE")
    if tasks_file:
        app.config["IDMS_WEBHOOKS_TASKS_FILE"] = tasks_file
    app.config.update(overrides)
    webhooks = IdmsWebhooks()
    webhooks.task(TASK_ID, name="Benchmark", filters=FILTERS)(trivial)
    webhooks.init_app(app)
    return app
