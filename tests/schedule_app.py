"""An app with scheduled tasks, read from the task file named by ``IDMS_WEBHOOKS_TASKS_FILE``
(each test writes its own). Importable by dotted path so forking workers load it too
(``flask --app tests.schedule_app:create_app idms-webhooks worker``)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app

from flask_idms_webhooks import IdmsWebhooks, JobContext


def note(parameters: Mapping[str, Any], context: JobContext) -> None:
    """A scheduled task's work: one row, after ``Delay`` seconds; fails when the app's
    ``SCHEDULE_FAIL`` is set (or ``Fail`` is given)."""
    time.sleep(float(parameters.get("Delay") or 0))
    if parameters.get("Fail") or current_app.config.get("SCHEDULE_FAIL"):
        raise RuntimeError("told to fail")
    context.set_row_count(1)
    context.count(updated=1)


def create_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test-secret"
    app.config["IDMS_WEBHOOKS_ADMIN_TOKEN"] = "admin-token"
    app.config["IDMS_WEBHOOKS_PUBLIC_URL"] = "https://sync.example.org"
    for name, value in os.environ.items():
        if name.startswith("IDMS_WEBHOOKS_"):
            app.config[name] = value
    app.config.update(config)
    IdmsWebhooks(app)
    return app
