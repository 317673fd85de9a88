"""What ``make run`` prints before it serves: where everything is, every task's webhooks,
and a walk-through to paste into another terminal (the CLI, curl, and the client)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from flask import Flask

from flask_idms_webhooks.cli.group import ENV_FILE
from flask_idms_webhooks.jobs.urls import local_base_url
from flask_idms_webhooks.state import state_of

#: The walk-through's task and parameters: the iMIS-to-iMIS sync of the demo contacts
#: whose last name starts with B (or all 270 without a filter), a few seconds long
#: against the bundled double's latency.
WALK_TASK = "sync-imis-dues"
WALK_BODY = '{"QueryParameters": {"LastName": ""}}'


def shown(root: Path, path: Path) -> str:
    """``path`` as typed in the project folder."""
    try:
        return shlex.quote(str(path.relative_to(root)))
    except ValueError:
        return shlex.quote(str(path))


def command(root: Path, name: str) -> str:
    """``name`` as it is run from the project folder (``.venv/bin/flask``, say)."""
    return shown(root, Path(sys.executable).parent / name)


def banner(app: Flask, root: Path, env_file: Path, *, bundled_double: bool) -> str:
    state = state_of(app)
    base = state.urls.base(local_base_url())
    prefix = base + state.settings.url_prefix
    lines = [
        "",
        f"Redis:        {state.settings.redis_url}",
        f"Docs:         {prefix}/docs   (OpenAPI: {prefix}/openapi.json)",
        f"Dashboard:    {prefix}/dashboard   (any user name, the admin token as password)",
        f"Admin token:  {state.settings.admin_token}",
        f"Settings:     {shown(root, env_file)} (the `flask idms-webhooks` commands read it)",
    ]
    imis = os.environ.get("IMIS_BASE_URL", "")
    if bundled_double:
        imis = f"the bundled iMIS double at {imis} (demo data), because IMIS_BASE_URL is unset"
    lines.append(f"iMIS:         {imis}")
    schedules = state.scheduler.views()
    for task in state.tasks.values():
        webhooks = state.urls.webhooks(base, task)
        lines += [
            f"Task {task.id}:",
            f"  standard webhook: {webhooks['Standard']}",
            f"  polling webhook:  {webhooks['Polling']}",
        ]
        if task.id in schedules:
            view = schedules[task.id]
            lines.append(
                f"  schedule:         {', '.join(view['Cron'])} (UTC), "
                f"{'enabled' if view['Enabled'] else 'disabled'}; "
                f"Next run: {view['NextRunOn'] or '-'}"
            )
    if WALK_TASK in state.tasks:
        lines += walk_through(app, root, base, env_file)
    return "\n".join(lines) + "\n"


def walk_through(app: Flask, root: Path, base: str, env_file: Path) -> list[str]:
    """Ready-to-paste commands that start the walk-through task and follow it."""
    state = state_of(app)
    polling = state.urls.webhooks(base, state.tasks[WALK_TASK])["Polling"]
    flask = command(root, "flask")
    if env_file != root / ENV_FILE:  # not where the commands look by default
        flask = f"IDMS_WEBHOOKS_ENV_FILE={shown(root, env_file)} {flask}"
    return [
        "",
        f"Try it, in another terminal in this folder ({WALK_TASK}: a few seconds long):",
        "  # the command line, with a progress bar (exit code 0 = succeeded):",
        f"  {flask} --app example_app:create_app idms-webhooks trigger {WALK_TASK} --wait",
        "  # any HTTP client: start, then poll the Location (202 while running, then 200):",
        f"  LOCATION=$(curl -si -X POST '{polling}' -H 'Content-Type: application/json' \\",
        f"    -d '{WALK_BODY}' | tr -d '\\r' | sed -n 's/^[Ll]ocation: //p')",
        '  curl -s "$LOCATION"; echo; sleep 2; curl -s "$LOCATION"; echo',
        "  # from any machine, with only the URL (the client, pip install flask-idms-webhooks):",
        f"  {command(root, 'idms-webhooks')} call '{polling}' -p LastName=B --wait",
    ]
