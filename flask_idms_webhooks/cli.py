"""``flask idms-webhooks ...``: the worker, the reaper, the scheduler, the schedules and
the task list."""

from __future__ import annotations

import json
import logging
import signal
import threading

import click
from flask import current_app
from flask.cli import with_appcontext
from werkzeug.urls import iri_to_uri

from .errors import IdmsWebhooksError, ParameterError
from .iupdate.prompts import filters_toml
from .jobs.documents import CLI
from .jobs.liveness import WorkerBeat
from .jobs.urls import local_base_url
from .logs import LOGGER, log_to
from .state import state_of
from .worker import Reaper, make_worker

BASE_URL_HELP = (
    "Base of the URLs made when IDMS_WEBHOOKS_PUBLIC_URL is not set "
    "(default: http://127.0.0.1:$PORT, port 8000 without PORT)."
)


def log_to_stderr(level: str) -> None:
    """Show the extension's log (jobs, the reaper, the scheduler) on stderr at ``level``,
    in ``IDMS_WEBHOOKS_LOG_FORMAT``; in text, only if the app set up no logging itself."""
    form = state_of(current_app).settings.log_format
    logger = logging.getLogger(LOGGER)
    if form == "text" and (logger.handlers or logging.getLogger().handlers):
        return
    log_to(form, level)


@click.group("idms-webhooks")
def cli() -> None:
    """flask-idms-webhooks: workers and tasks."""


@cli.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's).")
@click.option("--simple", is_flag=True, help="Run jobs in the worker process (no fork).")
@click.option(
    "--with-scheduler/--without-scheduler",
    default=True,
    show_default=True,
    help="Run RQ's scheduler too (it queues delayed retries when they are due).",
)
@click.option(
    "--schedules/--no-schedules",
    default=True,
    show_default=True,
    help="Take part in running the task schedules (one process at a time does).",
)
@click.option("--logging-level", default="INFO", show_default=True, help="Log level of the worker.")
@click.option("--max-jobs", type=int, default=None, help="Stop after this many jobs.")
@with_appcontext
def worker_command(
    burst: bool,
    name: str | None,
    simple: bool,
    with_scheduler: bool,
    schedules: bool,
    logging_level: str,
    max_jobs: int | None,
) -> None:
    """Run an RQ worker for this app's queue, with the dead-job reaper and the task
    schedules."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = state_of(app)
    log_to_stderr(logging_level)
    worker = make_worker(app, simple=simple, name=name)
    beat = WorkerBeat(state.redis, worker.name)
    beat.start()
    reaper = Reaper(state)
    reaper.start()
    loop = state.scheduler_loop() if schedules and not burst else None
    if loop is not None:
        loop.start()
    try:
        worker.serve(
            burst=burst,
            with_scheduler=with_scheduler,
            logging_level=logging_level,
            max_jobs=max_jobs,
        )
    finally:
        if loop is not None:
            loop.stop()
        reaper.stop()
        beat.stop()


@cli.command("scheduler")
@click.option("--logging-level", default="INFO", show_default=True, help="Log level.")
@with_appcontext
def scheduler_command(logging_level: str) -> None:
    """Run the task schedules alone (no worker), until Ctrl-C or SIGTERM."""
    state = state_of(current_app)
    log_to_stderr(logging_level)
    loop = state.scheduler_loop()
    if loop is None:
        raise click.UsageError("no task has a schedule")
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    click.echo(f"scheduler {loop.holder}: {len(state.scheduler.schedules)} scheduled task(s)")
    loop.start()
    while not stopping.wait(0.5) and loop.is_alive():
        pass
    loop.stop()


@cli.group("schedules", invoke_without_command=True)
@click.pass_context
@with_appcontext
def schedules_group(context: click.Context) -> None:
    """Every task's schedule: cron, enabled, next and last run, last outcome."""
    if context.invoked_subcommand is not None:
        return
    state = state_of(current_app)
    views = state.scheduler.views()
    for task in state.tasks.values():
        view = views.get(task.id)
        if view is None:
            click.echo(f"{task.id}: no schedule (webhooks only)")
            continue
        when = ", ".join(view["Cron"]) or f"once at {view['RunAt']}"
        state_text = "enabled" if view["Enabled"] else "DISABLED"
        click.echo(f"{task.id}: {when} (UTC), {state_text}")
        if view["DisabledReason"]:
            click.echo(f"  disabled: {view['DisabledReason']}")
        click.echo(f"  next run: {view['NextRunOn'] or '-'}")
        last = view["LastRunOn"] or "-"
        outcome = view["LastOutcome"] or "-"
        click.echo(f"  last run: {last} ({outcome}), consecutive failures: "
                   f"{view['ConsecutiveFailures']}")  # fmt: skip


def _set_schedule(task_id: str, enabled: bool) -> None:
    state = state_of(current_app)
    task = state.tasks.get(task_id)
    if task is None or task.schedule is None:
        what = "no task" if task is None else "no schedule on task"
        raise click.BadParameter(f"{what} {task_id!r}", param_hint="TASK")
    view = state.scheduler.set_enabled(task, enabled, "Disabled from the command line")
    click.echo(f"{task_id}: {'enabled' if view['Enabled'] else 'disabled'}; "
               f"next run: {view['NextRunOn'] or '-'}")  # fmt: skip


@schedules_group.command("enable")
@click.argument("task")
@with_appcontext
def enable_command(task: str) -> None:
    """Turn TASK's schedule on (its failure count starts afresh)."""
    _set_schedule(task, True)


@schedules_group.command("disable")
@click.argument("task")
@with_appcontext
def disable_command(task: str) -> None:
    """Turn TASK's schedule off (webhooks still start it)."""
    _set_schedule(task, False)


@cli.command("reap")
@with_appcontext
def reap_command() -> None:
    """One reaper pass: seal every running job presumed dead, dispatch again every queued
    job a dead worker took."""
    handled = state_of(current_app).recovery.reap()
    click.echo(f"recovered {handled} job(s) whose worker died")


@cli.command("trigger")
@click.argument("task_id")
@click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
    help="A QueryParameters value (JSON, else a string); repeat for more.",
)  # fmt: skip
@click.option("--base-url", default=None, help=BASE_URL_HELP)
@with_appcontext
def trigger_command(task_id: str, params: tuple[str, ...], base_url: str | None) -> None:
    """Start a job of TASK_ID (as the polling webhook would) and print its polling URL."""
    state = state_of(current_app)
    task = state.tasks.get(task_id)
    if task is None:
        raise click.BadParameter(f"no task {task_id!r}", param_hint="TASK_ID")
    supplied: dict[str, object] = {}
    for item in params:
        name, sep, raw = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        try:
            supplied[name] = json.loads(raw)
        except ValueError:
            supplied[name] = raw
    try:
        resolved = state.parameters[task_id].resolve(supplied)
    except ParameterError as error:
        raise click.UsageError(f"invalid QueryParameters: {json.dumps(error.errors)}") from None
    document = state.jobs.trigger(
        task, resolved, state.urls.base(iri_to_uri(base_url or local_base_url())), CLI
    )
    click.echo(document["PollingUrl"])


@cli.group("tasks", invoke_without_command=True)
@click.option("--base-url", default=None, help=BASE_URL_HELP)
@click.pass_context
@with_appcontext
def tasks_group(context: click.Context, base_url: str | None) -> None:
    """List the tasks with their webhook URLs (they carry the task keys: keep them secret)."""
    if context.invoked_subcommand is not None:
        return
    state = state_of(current_app)
    base = state.urls.base(iri_to_uri(base_url or local_base_url()))
    for task in state.tasks.values():
        webhooks = state.urls.webhooks(base, task)
        click.echo(f"{task.id}: {task.name}")
        click.echo(f"  standard: {webhooks['Standard']}")
        click.echo(f"  polling:  {webhooks['Polling']}")
        keys = state.parameters[task.id].keys
        click.echo(f"  QueryParameters: {', '.join(keys) if keys else '(none)'}")


@tasks_group.command("import-filters")
@click.argument("task_id")
@with_appcontext
def import_filters_command(task_id: str) -> None:
    """Print the [[tasks.source.filters]] of TASK_ID's IQA, read from its live iMIS."""
    state = state_of(current_app)
    task = state.tasks.get(task_id)
    if task is None:
        raise click.BadParameter(f"no task {task_id!r}", param_hint="TASK_ID")
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
