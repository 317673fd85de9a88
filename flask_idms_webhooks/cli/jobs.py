"""``flask idms-webhooks jobs [list|show|cancel]``, and following a job to its end (for
``trigger --wait`` and ``jobs show --wait``): read from the store, as a poll would."""

from __future__ import annotations

import sys
import time

import click
from rich.console import Console
from rich.table import Table

from ..jobs.codec import loads
from ..jobs.documents import QUEUED, JobDocument
from ..jobs.listing import STATUSES
from ..jobs.liveness import workers_alive
from ..progress import (
    AS_JSON,
    INTERRUPTED,
    NOT_STARTED,
    STILL_RUNNING,
    WAIT_TIMEOUT,
    JobProgress,
    counts_text,
    exit_code,
    print_json,
    show_outcome,
)
from .group import cli, current_state, with_app

#: How often a followed job is read (the store is local: no need for Retry-After).
EVERY = 0.5


def job_or_exit(job_id: str) -> tuple[bool, JobDocument]:
    """(finished, document) of a job, else exit 4 (no such job, or expired)."""
    found = current_state().jobs.current(job_id)
    if found is None:
        click.echo(f"Error: no job {job_id!r} (or its record has expired)", err=True)
        sys.exit(NOT_STARTED)
    body, finished, document = found
    return finished, document if document is not None else loads(body)


def follow(job_id: str, *, as_json: bool, timeout: float | None) -> int:
    """Follow a job with a live progress bar (on stderr) until it is sealed, then print
    its outcome (a table, or the document as JSON): the outcome's exit code."""
    deadline = None if timeout is None else time.monotonic() + timeout
    finished, document = job_or_exit(job_id)
    if document["Status"] == QUEUED and not workers_alive(current_state().redis):
        click.echo("No worker is running on this Redis: the job waits in the queue until "
                   "one starts (flask ... idms-webhooks worker).", err=True)  # fmt: skip
    try:
        with JobProgress() as progress:
            progress.update(document)
            while not finished and (deadline is None or time.monotonic() < deadline):
                time.sleep(EVERY)
                finished, document = job_or_exit(job_id)
                progress.update(document)
    except KeyboardInterrupt:
        click.echo(f"\nStopped waiting; the job goes on: {document['PollingUrl']}", err=True)
        return INTERRUPTED
    if as_json:
        print_json(document)
    elif finished:
        show_outcome(document)
    if not finished:
        click.echo(f"Still {document['Status']} after {timeout:g} s: {document['PollingUrl']}",
                   err=True)  # fmt: skip
        return STILL_RUNNING
    return exit_code(document)


@cli.group("jobs")
def jobs_group() -> None:
    """Jobs of every task: list them, show one (or wait for it), cancel one.

    Exit codes when a job is followed: 0 succeeded, 1 failed, 3 cancelled, 4 no such
    job, 5 still running after --timeout.
    """


@jobs_group.command("list")
@click.option("--task", "task_id", default=None, help="Only this task's jobs.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only jobs in it.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@AS_JSON
@with_app
def list_command(task_id: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """The most recent jobs, newest first."""
    state = current_state()
    if task_id is not None and task_id not in state.tasks:
        known = ", ".join(state.tasks) or "none"
        raise click.BadParameter(f"no task {task_id!r} (tasks: {known})", param_hint="--task")
    total, records = state.store.jobs_page(
        [task_id] if task_id else list(state.tasks), status, 0, limit
    )
    documents = [loads(record) for record in records]
    if as_json:
        print_json({"Total": total, "Jobs": documents})
        return
    table = Table(title=f"{len(documents)} of {total} job(s), newest first")
    for column in ("ExecuteId", "Task", "Status", "%", "Counts", "Created (UTC)"):
        table.add_column(column, no_wrap=column != "Counts")
    for document in documents:
        table.add_row(
            document["ExecuteId"],
            document["TaskId"],
            document["Status"],
            str(document["PercentComplete"]),
            counts_text(document),
            document["CreatedOn"],
        )
    Console().print(table)


@jobs_group.command("show")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Follow the job to its end with a progress bar.")
@WAIT_TIMEOUT
@AS_JSON
@with_app
def show_command(job_id: str, wait: bool, timeout: float | None, as_json: bool) -> None:
    """A job's document: its outcome as a table once finished (exit code as above), or
    its progress so far."""
    if wait:
        sys.exit(follow(job_id, as_json=as_json, timeout=timeout))
    finished, document = job_or_exit(job_id)
    if as_json:
        print_json(document)
    elif finished:
        show_outcome(document)
    else:
        click.echo(f"{document['Status']}, {document['PercentComplete']}%: "
                   f"{counts_text(document)}")  # fmt: skip
        click.echo(f"poll: {document['PollingUrl']}")
    sys.exit(exit_code(document))


@jobs_group.command("cancel")
@click.argument("job_id")
@with_app
def cancel_command(job_id: str) -> None:
    """Cancel a queued or running job (a queued one ends at once; a running one at its
    next row or page). Exit 1 when it had already finished."""
    finished, document = job_or_exit(job_id)
    if finished:
        click.echo(f"Error: job {job_id} has already finished ({document['Status']})", err=True)
        sys.exit(1)
    answer = loads(current_state().jobs.cancel(job_id, document))
    click.echo(f"{job_id}: {answer['Status']} ({answer['StatusDescription']})")
