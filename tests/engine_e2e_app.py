"""The app of the engine's end-to-end tests, importable by a forking worker
(``flask --app tests.engine_e2e_app:create_app idms-webhooks worker``).

Everything comes from the environment: ``IDMS_WEBHOOKS_*`` settings (the task file in
``IDMS_WEBHOOKS_TASKS_FILE``), and the task file's ``${ENGINE_E2E_IMIS_URL}`` (the iMIS
double the test serves) and ``${ENGINE_E2E_DB_URL}`` (its SQLite database).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from flask_idms_webhooks import IdmsWebhooks

SECRET = "engine-e2e-secret"


def create_app(**config: Any) -> Flask:
    """Settings from ``IDMS_WEBHOOKS_*`` variables, then ``config``."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    app.config["IDMS_WEBHOOKS_ADMIN_TOKEN"] = "admin-token"
    for name, value in os.environ.items():
        if name.startswith("IDMS_WEBHOOKS_"):
            app.config[name] = value
    app.config.update(config)
    IdmsWebhooks(app)
    return app
