"""One app's state (``WebhooksState``) and its single accessor, ``state_of``."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask
from redis import Redis
from rq import Queue

from .config import EXTENSION_KEY, Settings
from .errors import ConfigurationError
from .iupdate.connections import Connections
from .jobs.callbacks import Callbacks
from .jobs.lifecycle import JobManager
from .jobs.rate_limits import RateLimits, task_limits
from .jobs.recovery import Recovery
from .jobs.redis import queue_for
from .jobs.scheduler import Scheduler, SchedulerLoop
from .jobs.store import JobStore
from .jobs.urls import Urls
from .model.parameters import QueryParameterSet
from .model.tasks import Task
from .security import Credentials


@dataclass
class WebhooksState:
    """Everything one app's extension needs, kept in ``app.extensions["idms_webhooks"]``."""

    settings: Settings
    credentials: Credentials
    tasks: dict[str, Task]
    parameters: dict[str, QueryParameterSet]
    redis: Redis
    #: The iMIS clients and SQL engines of the app's engine tasks.
    connections: Connections = field(default_factory=Connections)
    store: JobStore = field(init=False)
    queue: Queue = field(init=False)
    urls: Urls = field(init=False)
    jobs: JobManager = field(init=False)
    recovery: Recovery = field(init=False)
    scheduler: Scheduler = field(init=False)
    callbacks: Callbacks = field(init=False)
    rate_limits: RateLimits = field(init=False)

    def __post_init__(self) -> None:
        self.store = JobStore(
            self.redis,
            result_ttl=self.settings.result_ttl,
            heartbeat_timeout=self.settings.heartbeat_timeout,
            namespace=self.settings.queue_name,
        )
        self.queue = queue_for(self.redis, self.settings.queue_name)
        self.urls = Urls(self.settings.url_prefix, self.settings.public_url, self.credentials)
        self.callbacks = Callbacks(
            settings=self.settings,
            store=self.store,
            queue=self.queue,
            tasks=self.tasks,
            credentials=self.credentials,
        )
        self.jobs = JobManager(
            settings=self.settings,
            store=self.store,
            queue=self.queue,
            urls=self.urls,
            tasks=self.tasks,
            parameters=self.parameters,
            callbacks=self.callbacks,
        )
        self.recovery = Recovery(self.jobs)
        self.scheduler = Scheduler(self.jobs)
        self.rate_limits = RateLimits(
            self.redis,
            self.settings.queue_name,
            triggers=task_limits(self.tasks.values(), self.settings.rate_limit),
            auth_failures=self.settings.auth_failure_limit,
            polls=self.settings.poll_rate_limit,
        )

    def scheduler_loop(self) -> SchedulerLoop | None:
        """A thread to take part in running the schedules (None: no task has one)."""
        if not self.scheduler.schedules:
            return None
        return SchedulerLoop(self.scheduler, lease=self.settings.scheduler_lease)

    def in_work_horse(self, connection: Redis) -> None:
        """In a forked work-horse: talk to Redis through ``connection`` (RQ's own, so the
        horse opens one connection), and leave the parent's iMIS clients and SQL engines
        to the parent."""
        self.redis = connection
        self.store.redis = connection
        self.queue.connection = connection
        self.connections.forget_inherited()


def state_of(app: Flask) -> WebhooksState:
    """The extension's state on ``app`` (``current_app`` in a request or a command);
    ``ConfigurationError`` if ``IdmsWebhooks`` is not initialised on it."""
    try:
        state: WebhooksState = app.extensions[EXTENSION_KEY]
    except KeyError:
        raise ConfigurationError("IdmsWebhooks is not initialised on this app") from None
    return state
