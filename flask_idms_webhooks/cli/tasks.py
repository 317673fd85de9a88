"""``flask idms-webhooks tasks`` (with ``import-filters``) and ``trigger``: the tasks, their
webhook URLs, and starting a job from the command line (optionally waiting for it)."""

from __future__ import annotations

import json
import sys
from typing import NoReturn, cast

import click

from ..errors import IdmsWebhooksError, ParameterError, TaskBusy
from ..iupdate.prompts import filters_toml
from ..jobs.documents import CLI, JobDocument, joins
from ..progress import (
    AS_JSON,
    NOT_STARTED,
    PARAMETERS,
    WAIT_TIMEOUT,
    fail,
    print_json,
    query_parameters,
)
from .group import BASE_URL_HELP, base_url, cli, current_state, find_task, with_app
from .jobs import follow


def not_started(message: str) -> NoReturn:
    fail(message, NOT_STARTED)


@cli.command("trigger")
@click.argument("task_id")
@PARAMETERS
@click.option("--wait", is_flag=True, help="Follow the job to its end with a progress bar.")
@WAIT_TIMEOUT
@AS_JSON
@click.option("--base-url", "given_base", default=None, help=BASE_URL_HELP)
@with_app
def trigger_command(
    task_id: str,
    params: tuple[str, ...],
    wait: bool,
    timeout: float | None,
    as_json: bool,
    given_base: str | None,
) -> None:
    """Start a job of TASK_ID (as the polling webhook would) and print its polling URL;
    with --wait, follow it to its end.

    Exit codes: 0 started (with --wait: succeeded), 1 failed, 3 cancelled, 4 could not
    start (no such task, invalid parameters, the queue unreachable), 5 still running
    after --timeout; 2 is a usage error.
    """
    state = current_state()
    task = state.tasks.get(task_id)
    if task is None:
        not_started(f"no task {task_id!r} (tasks: {', '.join(state.tasks) or 'none'})")
    try:
        resolved = state.parameters[task_id].resolve(query_parameters(params))
    except ParameterError as error:
        not_started(f"invalid QueryParameters: {json.dumps(error.errors)}")
    wanted = state.jobs.prepare(task, resolved, base_url(given_base), CLI)
    try:
        state.jobs.submit(task, wanted)
        document = wanted
    except TaskBusy as busy:
        document = cast(JobDocument, busy.running)
        if not joins(task, document, wanted):
            not_started(f"nothing was started: {busy} ({document['PollingUrl']})")
        click.echo(f"joined job {document['ExecuteId']}, {document['Status']}", err=True)
    except IdmsWebhooksError as error:
        not_started(f"the job could not be started: {error}")
    if wait:
        click.echo(f"{document['ExecuteId']}: {document['PollingUrl']}", err=True)
        sys.exit(follow(document["ExecuteId"], as_json=as_json, timeout=timeout))
    if as_json:
        print_json(document)
    else:
        click.echo(document["PollingUrl"])


@cli.group("tasks", invoke_without_command=True)
@click.option("--base-url", "given_base", default=None, help=BASE_URL_HELP)
@click.pass_context
def tasks_group(context: click.Context, given_base: str | None) -> None:
    """List the tasks with their webhook URLs (they carry the task keys: keep them secret)."""
    if context.invoked_subcommand is None:
        list_tasks(given_base)


@with_app
def list_tasks(given: str | None) -> None:
    state = current_state()
    base = base_url(given)
    for task in state.tasks.values():
        webhooks = state.urls.webhooks(base, task)
        click.echo(f"{task.id}: {task.name}")
        click.echo(f"  standard: {webhooks['Standard']}")
        click.echo(f"  polling:  {webhooks['Polling']}")
        keys = state.parameters[task.id].keys
        click.echo(f"  QueryParameters: {', '.join(keys) if keys else '(none)'}")


@tasks_group.command("import-filters")
@click.argument("task_id")
@with_app
def import_filters_command(task_id: str) -> None:
    """Print the [[tasks.source.filters]] of TASK_ID's IQA, read from its live iMIS."""
    state = current_state()
    task = find_task(task_id)
    source = task.source
    profile = task.connections.get(source.connection or "") if source else None
    if source is None or profile is None or profile.get("kind") != "imis":
        raise click.UsageError(
            f"task {task_id!r} has no iMIS source ([tasks.source] over kind = imis)"
        )
    try:
        filters = state.connections.imis_client(profile).prompt_filters(source.query)
    except IdmsWebhooksError as error:
        raise click.ClickException(f"iMIS: {error}") from None
    click.echo(filters_toml(source.query, filters), nl=False)
