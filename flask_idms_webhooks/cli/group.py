"""The ``flask idms-webhooks`` group and what its commands share: the settings file that
``make run`` writes, loading the app with a clear error, the base URL, finding a task.

The group is also a ``flask.commands`` entry point, so ``--help`` of every command works
before any app is configured; an app is loaded only when a command runs."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import click
from dotenv import dotenv_values
from flask import Flask, current_app
from flask.cli import ScriptInfo
from werkzeug.urls import iri_to_uri

from ..errors import IdmsWebhooksError
from ..jobs.urls import local_base_url
from ..logs import LOGGER, log_to
from ..model.tasks import Task
from ..state import WebhooksState, state_of

P = ParamSpec("P")
R = TypeVar("R")

#: Where ``make run`` writes what its processes use; ``IDMS_WEBHOOKS_ENV_FILE`` moves it.
ENV_FILE = Path("instance") / "idms.env"
BASE_URL_HELP = (
    "Base of the URLs printed (default: IDMS_WEBHOOKS_PUBLIC_URL, else http://127.0.0.1:$PORT, "
    "port 8000 without PORT)."
)


def env_file() -> Path:
    return Path(os.environ.get("IDMS_WEBHOOKS_ENV_FILE") or ENV_FILE)


def read_env_file() -> Path | None:
    """Set the variables of the settings file that the environment does not set (the
    environment wins); the file read, or None when there is none."""
    path = env_file()
    if not path.is_file():
        return None
    for name, value in dotenv_values(path).items():
        if value is not None:
            os.environ.setdefault(name, value)
    return path


@click.group("idms-webhooks")
def cli() -> None:
    """flask-idms-webhooks: workers, schedules, tasks and jobs.

    Settings come from the environment, then from instance/idms.env (written by `make
    run`; IDMS_WEBHOOKS_ENV_FILE names another file), for what the environment leaves
    unset.
    """
    read_env_file()


def with_app(command: Callable[P, R]) -> Callable[P, R]:
    """Like Flask's ``with_appcontext``, but a configuration error is a one-line message
    that says where the settings come from, not a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        info = click.get_current_context().ensure_object(ScriptInfo)
        try:
            app = info.load_app()
            state_of(app)
        except IdmsWebhooksError as error:
            where = env_file()
            hint = (
                f"{where} was read"
                if where.is_file()
                else f"no {where} here: run `make run` from the project, or set the variable"
            )
            raise click.ClickException(f"{error} ({hint})") from None
        with app.app_context():
            return command(*args, **kwargs)

    return run


def current_state() -> WebhooksState:
    return state_of(current_app)


def current_flask_app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]


def base_url(given: str | None) -> str:
    """The base of the URLs printed: ``--base-url``, else the public URL, else the local
    server's (as ``make run`` serves)."""
    if given:
        return iri_to_uri(given).rstrip("/")
    return current_state().urls.base(local_base_url())


def find_task(task_id: str) -> Task:
    """The task ``task_id``, else a usage error listing the tasks there are."""
    state = current_state()
    task = state.tasks.get(task_id)
    if task is None:
        known = ", ".join(state.tasks) or "none"
        raise click.BadParameter(f"no task {task_id!r} (tasks: {known})", param_hint="TASK")
    return task


def log_to_stderr(level: str) -> None:
    """Show the extension's log (jobs, the reaper, the scheduler) on stderr at ``level``,
    in ``IDMS_WEBHOOKS_LOG_FORMAT``; in text, only if the app set up no logging itself."""
    form = current_state().settings.log_format
    logger = logging.getLogger(LOGGER)
    if form == "text" and (logger.handlers or logging.getLogger().handlers):
        return
    log_to(form, level)
