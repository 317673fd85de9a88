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

from .database import ensure_database

HERE = Path(__file__).resolve().parent
TASKS_FILE = HERE / "tasks.toml"
#: Where the bundled iMIS double listens when no IMIS_BASE_URL is given.
BUNDLED_DOUBLE = {
    "IMIS_BASE_URL": "http://127.0.0.1:8765",
    "IMIS_USERNAME": "manager",
    "IMIS_PASSWORD": "secret",
}


def create_app(**config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(HERE.parent / "instance"))
    app.config["IDMS_WEBHOOKS_TASKS_FILE"] = str(TASKS_FILE)
    app.config["EXAMPLE_DATABASE"] = os.path.join(app.instance_path, "members.db")
    for name, value in os.environ.items():
        if name.startswith(("IDMS_WEBHOOKS_", "EXAMPLE_")):
            app.config[name] = value
    app.config.update(config)
    ensure_database(app.config["EXAMPLE_DATABASE"])
    # tasks.toml names its database as ${EXAMPLE_DATABASE_URL}: point it at this one.
    os.environ["EXAMPLE_DATABASE_URL"] = "sqlite:///" + str(app.config["EXAMPLE_DATABASE"])
    # ... and its iMIS as ${IMIS_BASE_URL} etc.: without one, the bundled double's defaults
    # (`make run` serves the double and sets these).
    for name, value in BUNDLED_DOUBLE.items():
        os.environ.setdefault(name, value)
    IdmsWebhooks(app)
    return app
