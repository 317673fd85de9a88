"""The example app: flask-idms-webhooks serving tasks over a small membership database.

``create_app()`` reads every ``IDMS_WEBHOOKS_*`` variable from the environment; ``make
run`` (``python -m example_app.run``) sets them up, with a private Redis when none is given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from flask_idms_webhooks import IdmsWebhooks
from flask_idms_webhooks.jobs.urls import local_base_url

from .database import ensure_database

HERE = Path(__file__).resolve().parent
TASKS_FILE = HERE / "tasks.toml"
#: The dues summary's schedule (UTC): nightly, or every 10 s with EXAMPLE_FAST_SCHEDULE=1.
NIGHTLY = "0 2 * * *"
FAST_SCHEDULE = "*/10 * * * * *"
#: Where the bundled iMIS double listens when no IMIS_BASE_URL is given.
BUNDLED_DOUBLE = {
    "IMIS_BASE_URL": "http://127.0.0.1:8765",
    "IMIS_USERNAME": "manager",
    "IMIS_PASSWORD": "secret",
}


def instance_path() -> Path:
    """The example's instance folder (its database, Redis, secret): ``instance/`` beside
    the package, or ``EXAMPLE_INSTANCE_PATH`` (so a test's server keeps out of yours)."""
    return Path(os.environ.get("EXAMPLE_INSTANCE_PATH") or HERE.parent / "instance")


def create_app(**config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(instance_path()))
    app.config["IDMS_WEBHOOKS_TASKS_FILE"] = str(TASKS_FILE)
    app.config["EXAMPLE_DATABASE"] = os.path.join(app.instance_path, "members.db")
    for name, value in os.environ.items():
        if name.startswith(("IDMS_WEBHOOKS_", "EXAMPLE_")):
            app.config[name] = value
    app.config.update(config)
    # A scheduled job has no request to take its PollingUrl's host from: on this machine
    # unless told otherwise (`make run` sets it to where it serves).
    app.config.setdefault("IDMS_WEBHOOKS_PUBLIC_URL", local_base_url())
    # tasks.toml schedules refresh-dues-summary as ${EXAMPLE_DUES_SCHEDULE}: nightly, or
    # every 10 seconds (a seconds field, a demo's) with EXAMPLE_FAST_SCHEDULE=1.
    fast = str(app.config.get("EXAMPLE_FAST_SCHEDULE", "")).strip() in ("1", "true", "yes")
    os.environ["EXAMPLE_DUES_SCHEDULE"] = FAST_SCHEDULE if fast else NIGHTLY
    if fast:
        app.config["IDMS_WEBHOOKS_SCHEDULE_SECONDS"] = True
    ensure_database(app.config["EXAMPLE_DATABASE"])
    # tasks.toml names its database as ${EXAMPLE_DATABASE_URL}: point it at this one.
    os.environ["EXAMPLE_DATABASE_URL"] = "sqlite:///" + str(app.config["EXAMPLE_DATABASE"])
    # ... and its iMIS as ${IMIS_BASE_URL} etc.: without one, the bundled double's defaults
    # (`make run` serves the double and sets these).
    for name, value in BUNDLED_DOUBLE.items():
        os.environ.setdefault(name, value)
    IdmsWebhooks(app)
    return app
