"""The Flask extension: ``IdmsWebhooks(app=None)`` and ``init_app(app, api=None)``."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Blueprint, Flask, send_from_directory
from flask_smorest import Api
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError

from .config import Settings
from .errors import ConfigurationError, TaskLoadError
from .jobs import JobManager, queue_for
from .parameters import QueryParameterSet
from .security import AdminCheck, Credentials
from .store import JobStore
from .taskfile import load_task_file
from .tasks import TASK_ID, Chain, FilterRow, Handler, Task, chain_errors

logger = logging.getLogger("flask_idms_webhooks")

EXTENSION_KEY = "idms_webhooks"
RedisClient = redis.Redis


@functools.cache
def client_identity() -> dict[str, Any]:
    """How our Redis clients name themselves (``CLIENT SETINFO``), made once per process.

    Without it, redis-py 7.2 and later read their own package metadata for every new
    connection: milliseconds in every forked work-horse."""
    try:
        from redis import DriverInfo
    except ImportError:  # older redis-py: nothing read per connection, nothing to name
        return {}
    try:
        version = importlib.metadata.version("flask-idms-webhooks")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return {"driver_info": DriverInfo().add_upstream_driver("flask-idms-webhooks", version)}


def web_redis(url: str, timeout: float) -> redis.Redis:
    """The web side's client: bounded waits, so a stalled Redis is a fast 503.

    A dropped connection is retried once (Redis restarted: reconnect); a timeout is not
    (a stalled Redis would only double the wait).
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        health_check_interval=30,
        **client_identity(),
    )


@dataclass
class WebhooksState:
    """Everything one app's extension needs, kept in ``app.extensions["idms_webhooks"]``."""

    settings: Settings
    credentials: Credentials
    tasks: dict[str, Task]
    parameters: dict[str, QueryParameterSet]
    redis: redis.Redis
    store: JobStore = field(init=False)
    queue: Queue = field(init=False)
    jobs: JobManager = field(init=False)
    #: The request roots seen (by scheme, host, port, script name), as URIs: ``base_url``.
    request_roots: dict[tuple[Any, ...], str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.store = JobStore(
            self.redis,
            result_ttl=self.settings.result_ttl,
            heartbeat_timeout=self.settings.heartbeat_timeout,
        )
        self.queue = queue_for(self.redis, self.settings.queue_name)
        self.jobs = JobManager(self)

    def use_connection(self, connection: RedisClient) -> None:
        """Talk to Redis through ``connection`` from now on (a work-horse: RQ's own)."""
        self.redis = connection
        self.store.redis = connection
        self.queue.connection = connection

    def stop_running_job(self, job_id: str) -> None:
        """Ask the worker running a job to kill its work-horse (forking workers only)."""
        # Not on a worker right now? Then the job context's next check stops it.
        with contextlib.suppress(NoSuchJobError, InvalidJobOperation):
            send_stop_job_command(self.redis, job_id, serializer=self.queue.serializer)


def _assets_blueprint() -> Blueprint:
    """Swagger UI's JavaScript and CSS, served by the app so the docs work offline."""
    from swagger_ui_bundle import swagger_ui_path

    assets = Blueprint("idms_webhooks_swagger_ui", __name__)

    @assets.route("/swagger-ui/<path:filename>")
    def swagger_ui_asset(filename: str) -> Any:
        return send_from_directory(swagger_ui_path, filename, max_age=86400)

    return assets


class _StandaloneApi(Api):  # type: ignore[misc]
    """flask-smorest's ``Api``, keeping the headers an HTTP error carries (``Allow`` of a
    405, ``Retry-After`` of a 503), which its error handler otherwise drops, and giving
    every error body a ``message``."""

    def handle_http_exception(self, error: Any) -> Any:
        payload, code, headers = super().handle_http_exception(error)
        if "message" not in payload:
            payload["message"] = (
                "Invalid request: see errors." if "errors" in payload else error.description
            )
        headers = dict(headers or {})
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                headers.setdefault(name, value)
        return payload, code, headers


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
        on_success: Iterable[str] = (),
        on_failure: Iterable[str] = (),
    ) -> Callable[[Handler], Handler]:
        """Decorator: the function becomes a task's work, called with the resolved
        QueryParameters and a :class:`~flask_idms_webhooks.JobContext`."""

        def decorate(handler: Handler) -> Handler:
            self.register_task(
                Task(
                    id=task_id,
                    handler=handler,
                    name=name or task_id,
                    description=description,
                    filters=tuple(filters),
                    timeout=timeout,
                    retry_after=retry_after,
                    key=key,
                    key_version=key_version,
                    chain=Chain(on_success=tuple(on_success), on_failure=tuple(on_failure)),
                )
            )
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
        tasks = dict(self._python_tasks)
        if settings.tasks_file:
            for task in load_task_file(settings.tasks_file):
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
        state = WebhooksState(
            settings=settings,
            credentials=Credentials(settings.secret_key, settings.admin_token, self._admin_check),
            tasks=tasks,
            parameters={
                task_id: QueryParameterSet(task.filters) for task_id, task in tasks.items()
            },
            redis=self._redis_connection or web_redis(settings.redis_url, settings.redis_timeout),
        )
        app.extensions[EXTENSION_KEY] = state
        if not state.credentials.admin_configured:
            logger.warning(
                "IDMS_WEBHOOKS_ADMIN_TOKEN is not set: the admin routes answer 401 to everyone."
            )

        from .cli import cli
        from .views import SECURITY_SCHEMES, blp

        if api is None:
            api = self._standalone_api(app, settings)
        for name, scheme in SECURITY_SCHEMES.items():
            if name not in api.spec.components.security_schemes:
                api.spec.components.security_scheme(name, scheme)
        api.register_blueprint(blp, url_prefix=settings.url_prefix or None)
        app.register_blueprint(_assets_blueprint(), url_prefix=settings.url_prefix or None)
        if "idms-webhooks" not in app.cli.commands:
            app.cli.add_command(cli)

    @staticmethod
    def _standalone_api(app: Flask, settings: Settings) -> Api:
        prefix = "IDMS_WEBHOOKS_"
        defaults = {
            "API_TITLE": "iDMS webhooks",
            "API_VERSION": "1",
            "OPENAPI_VERSION": "3.0.3",
            "OPENAPI_URL_PREFIX": settings.url_prefix or "/",
            "OPENAPI_JSON_PATH": "openapi.json",
            "OPENAPI_SWAGGER_UI_PATH": settings.docs_path,
            "OPENAPI_SWAGGER_UI_URL": f"{settings.url_prefix}/swagger-ui/",
        }
        for name, value in defaults.items():
            app.config.setdefault(prefix + name, value)
        return _StandaloneApi(app, config_prefix=prefix)


def state_of(app: Flask) -> WebhooksState:
    """The extension's state on ``app`` (``ConfigurationError`` if not initialised)."""
    try:
        return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise ConfigurationError("IdmsWebhooks is not initialised on this app") from None
