"""The RQ job function of a job's run: ``flask_idms_webhooks.jobs.run_job`` (queued jobs
store that dotted path)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

from flask import current_app
from rq import get_current_job

from ..config import EXTENSION_KEY
from ..errors import ConfigurationError
from ..logs import about_job
from .documents import Outcome

if TYPE_CHECKING:
    from .lifecycle import JobManager


class _HasJobs(Protocol):
    """What ``run_job`` needs of the extension's state on the app."""

    @property
    def jobs(self) -> JobManager: ...


def run_job(job_id: str) -> Outcome | None:
    """The RQ job function: runs one job inside the worker's app context. (Its RQ job id
    says which dispatch of the job this is: see ``rq_job_id``.) Answers how this dispatch
    ended, for the worker to file RQ's job in the registry that says the same."""
    state = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise ConfigurationError(
            "IdmsWebhooks is not initialised on the worker's app: start workers with "
            "`flask --app <your app> idms-webhooks worker`"
        )
    current = get_current_job()
    with about_job(job_id):
        return cast(_HasJobs, state).jobs.run(job_id, current.id if current is not None else job_id)
