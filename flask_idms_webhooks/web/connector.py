"""``GET {prefix}/connector/<task_id>.json``: a task's Power Automate custom-connector
definition (Swagger 2.0, admin), to import as a custom connector. The document holds no
key: the maker gives the task key when creating the connection."""

from __future__ import annotations

import json

from flask import Response, current_app

from ..state import state_of
from .answers import request_root
from .auth import admin_of_task, guarded, known_task
from .blueprint import blp
from .connector_definition import connector_definition
from .docs import ADMIN_ONLY, documented_errors, operation


@blp.route("/connector/<task_id>.json")
@operation("getConnectorDefinition")
@guarded(admin_of_task)
@ADMIN_ONLY
@blp.response(
    200,
    {"type": "object"},
    description="The Swagger 2.0 custom-connector definition of the task.",
)
@documented_errors(401, 404, store=False)
def connector(task_id: str) -> Response:
    """A task's Power Automate custom connector: Swagger 2.0 to import (admin)."""
    state = state_of(current_app)
    task = known_task(state, task_id)
    definition = connector_definition(
        task,
        state.parameters[task.id],
        state.urls.base(request_root()),
        state.settings.url_prefix,
    )
    return Response(
        json.dumps(definition, indent=2, ensure_ascii=False) + "\n",
        mimetype="application/json",
        # Saved by a browser (or `curl -OJ`) under the name the docs use.
        headers={"Content-Disposition": f'attachment; filename="{task.id}.swagger.json"'},
    )
