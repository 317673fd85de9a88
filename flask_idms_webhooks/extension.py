"""The Flask extension: ``IdmsWebhooks(app=None)`` and ``init_app(app, api=None)``.

The composition root: it reads the settings, loads the tasks, builds the app's state and
registers the routes and the CLI. Nothing imports it but the package root.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar, cast

import redis
from flask import Flask
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from .cli import cli
from .config import EXTENSION_KEY, Settings
from .errors import ConfigurationError, TaskLoadError
from .iupdate.connections import Connections
from .jobs.redis import warn_if_evicting, web_redis
from .logs import log_to
from .model.parameters import QueryParameterSet, chain_problem, schedule_problem
from .model.reporting import Handler
from .model.schedules import CatchUp, Schedule, parse_utc
from .model.tasks import (
    DEFAULT_RETRY_DELAYS,
    TASK_ID,
    Chain,
    Concurrency,
    FilterRow,
    Task,
    chain_errors,
    passed_values,
    webhook_secret_problem,
)
from .security import AdminCheck, Credentials
from .state import WebhooksState
from .taskfile import load_task_file
from .web.docs import assets_blueprint, register_documented, standalone_api
from .web.views import blp

#: A task's function, as its author typed it (its context may be typed ``JobContext``).
H = TypeVar("H", bound=Callable[..., object])


class IdmsWebhooks:
    """Webhooks that start tasks as RQ jobs, and the routes to follow them.

    ``IdmsWebhooks(app)`` or ``webhooks = IdmsWebhooks()`` then ``webhooks.init_app(app,
    api=api)``. Tasks come from ``IDMS_WEBHOOKS_TASKS_FILE`` and from :meth:`task`.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        api: Api | None = None,
        admin_check: AdminCheck | None = None,
        redis_connection: redis.Redis | None = None,
    ) -> None:
        self._python_tasks: dict[str, Task] = {}
        self._admin_check = admin_check
        self._redis_connection = redis_connection
        if app is not None:
            self.init_app(app, api=api)

    # -- Python-registered tasks ----------------------------------------------------------
    def register_task(self, task: Task) -> Task:
        """Register a task built in Python (before ``init_app``)."""
        if not TASK_ID.match(task.id):
            raise TaskLoadError(
                "must be URL-safe: letters, digits, '.', '_' or '-'", task=task.id, key="id"
            )
        if task.id in self._python_tasks:
            raise TaskLoadError("registered twice", task=task.id, key="id")
        QueryParameterSet(task.filters)  # a bad filter list fails here, not on first request
        problem = task.retry_problem()
        if problem is not None:
            raise TaskLoadError(problem, task=task.id, key="retries")
        for bad in (schedule_problem(task, seconds=True), task.signing_problem()):
            if bad is not None:  # (a schedule's 6 fields are checked at init_app)
                raise TaskLoadError(bad[1], task=task.id, key=bad[0])
        if task.callback_secret is not None:
            bad_secret = webhook_secret_problem(task.callback_secret)
            if bad_secret is not None:
                raise TaskLoadError(bad_secret, task=task.id, key="callback_secret")
        self._python_tasks[task.id] = task
        return task

    def task(
        self,
        task_id: str,
        *,
        name: str = "",
        description: str = "",
        filters: Iterable[FilterRow] = (),
        timeout: int | None = None,
        retry_after: int | None = None,
        key: str | None = None,
        key_version: int = 1,
        rate_limit: str | None = None,
        on_success: Iterable[str] = (),
        on_failure: Iterable[str] = (),
        chain_parameters: Mapping[str, Any] | None = None,
        retries: int = 0,
        retry_delays: Iterable[int] = DEFAULT_RETRY_DELAYS,
        idempotent: bool = False,
        schedule: str | Iterable[str] | None = None,
        run_at: str | datetime | None = None,
        schedule_parameters: Mapping[str, Any] | None = None,
        enabled: bool = True,
        max_failures: int = 0,
        catch_up: str = "latest",
        concurrency: str = "parallel",
        require_signature: bool = False,
        signing_secrets: Iterable[str] = (),
        callback_secret: str | None = None,
    ) -> Callable[[H], H]:
        """Decorator: the function becomes a task's work, called with the resolved
        QueryParameters and a :class:`~flask_idms_webhooks.JobContext`. ``schedule`` (UTC
        cron expressions) or ``run_at`` (once) make it run on its own too, with the task
        file's meanings (docs/schedules.rst). ``concurrency``: ``parallel``, ``reject`` or
        ``join`` (what a trigger does while a job of the task is queued or running).
        ``require_signature`` with ``signing_secrets``: its webhooks accept only requests
        signed per Standard Webhooks (docs/http-api.rst)."""

        def fail(key: str, message: str) -> TaskLoadError:
            return TaskLoadError(message, task=task_id, key=key)

        if concurrency not in set(Concurrency):
            raise fail("concurrency", f"{concurrency!r} is not one of parallel, reject, join")
        passed = None
        if chain_parameters is not None:
            try:
                passed = passed_values(chain_parameters)
            except ValueError as error:
                raise fail(".".join(("chain.parameters", *error.args[1:])), error.args[0]) from None
        planned = None
        if schedule is not None or run_at is not None:
            if isinstance(schedule, str):
                schedule = (schedule,)
            if not isinstance(schedule, Iterable | None):
                raise fail("schedule", f"a cron expression or a list of them, got {schedule!r}")
            if catch_up not in set(CatchUp):
                raise fail("catch_up", f"{catch_up!r} is not one of latest, none")
            try:
                when = parse_utc(run_at) if run_at is not None else None
            except ValueError as error:
                raise fail("run_at", str(error)) from None
            planned = Schedule(
                cron=tuple(schedule or ()),
                run_at=when,
                parameters=dict(schedule_parameters or {}),
                enabled=enabled,
                max_failures=max_failures,
                catch_up=CatchUp(catch_up),
            )

        def decorate(handler: H) -> H:
            task = Task(
                id=task_id,
                # It is called with a JobContext, which is a JobReporter.
                handler=cast(Handler, handler),
                name=name or task_id,
                description=description,
                filters=tuple(filters),
                timeout=timeout,
                retry_after=retry_after,
                key=key,
                key_version=key_version,
                rate_limit=rate_limit,
                retries=retries,
                retry_delays=tuple(retry_delays),
                idempotent=idempotent,
                chain=Chain(
                    on_success=tuple(on_success),
                    on_failure=tuple(on_failure),
                    parameters=passed,
                ),
                schedule=planned,
                concurrency=Concurrency(concurrency),
                require_signature=require_signature,
                signing_secrets=tuple(signing_secrets),
                callback_secret=callback_secret,
            )
            self.register_task(task)
            return handler

        return decorate

    # -- binding to an app ---------------------------------------------------------------
    def init_app(self, app: Flask, *, api: Api | None = None) -> None:
        """Bind to ``app``: read the settings once, load tasks, register routes and CLI.

        With ``api`` (the host's flask-smorest ``Api``) the routes join its document;
        without, a standalone ``Api`` is created serving ``{prefix}/openapi.json`` and
        ``{prefix}/docs``.
        """
        if EXTENSION_KEY in app.extensions:
            raise ConfigurationError("IdmsWebhooks is already initialised on this app")
        settings = Settings.from_app(app)
        if settings.log_format == "json":
            log_to("json")
        connections = Connections()
        tasks = dict(self._python_tasks)
        for task in tasks.values():  # Python tasks: a seconds field only where allowed
            bad_schedule = schedule_problem(task, seconds=settings.schedule_seconds)
            if bad_schedule is not None:
                raise TaskLoadError(bad_schedule[1], task=task.id, key=bad_schedule[0])
        if settings.tasks_file:
            loaded = load_task_file(
                settings.tasks_file, connections, schedule_seconds=settings.schedule_seconds
            )
            for task in loaded:
                if task.id in tasks:
                    raise TaskLoadError(
                        "defined in the file and in Python",
                        source=settings.tasks_file,
                        task=task.id,
                        key="id",
                    )
                tasks[task.id] = task
        bad_chain = chain_errors(tasks)
        if bad_chain is not None:
            task_id, key, message = bad_chain
            raise TaskLoadError(message, source=settings.tasks_file or "", task=task_id, key=key)
        parameter_sets = {
            task_id: QueryParameterSet(task.filters) for task_id, task in tasks.items()
        }
        for task in tasks.values():
            bad_passing = chain_problem(task, parameter_sets)
            if bad_passing is not None:
                source = "" if task.id in self._python_tasks else settings.tasks_file or ""
                raise TaskLoadError(bad_passing[1], source=source, task=task.id, key=bad_passing[0])
        scheduled = [task.id for task in tasks.values() if task.schedule is not None]
        if scheduled and not settings.public_url:
            raise ConfigurationError(
                "IDMS_WEBHOOKS_PUBLIC_URL is not set, and task "
                f"{scheduled[0]!r} has a schedule: a scheduled job's PollingUrl is built on "
                "it (there is no request to take it from). Set it to the URL callers reach "
                "this service at."
            )
        state = WebhooksState(
            settings=settings,
            credentials=Credentials(settings.secret_key, settings.admin_token, self._admin_check),
            tasks=tasks,
            parameters=parameter_sets,
            redis=self._redis_connection or web_redis(settings.redis_url, settings.redis_timeout),
            connections=connections,
        )
        if settings.proxy_fix:  # the client address of the rate limits, and the URLs
            if isinstance(app.wsgi_app, ProxyFix):
                raise ConfigurationError(
                    "IDMS_WEBHOOKS_PROXY_FIX is set and app.wsgi_app is a ProxyFix already: "
                    "the proxy headers would be trusted twice. Keep one of them."
                )
            app.wsgi_app = ProxyFix(app.wsgi_app, **settings.proxy_fix)  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = state
        warn_if_evicting(state.redis, "idms-webhooks (web)")
        if api is None:
            api = standalone_api(app, settings)
        register_documented(api, blp, state, settings.url_prefix)
        app.register_blueprint(assets_blueprint(), url_prefix=settings.url_prefix or None)
        if "idms-webhooks" not in app.cli.commands:
            app.cli.add_command(cli)
