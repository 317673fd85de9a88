"""``flask idms-webhooks worker``, ``scheduler`` and ``reap``: the processes that run
jobs, schedules and recovery."""

from __future__ import annotations

import signal
import threading

import click

from ..jobs.liveness import WorkerBeat
from ..state import state_of
from ..worker import Reaper, make_worker
from .group import cli, current_flask_app, current_state, log_to_stderr, with_app


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
@with_app
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
    app = current_flask_app()
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
@with_app
def scheduler_command(logging_level: str) -> None:
    """Run the task schedules alone (no worker), until Ctrl-C or SIGTERM."""
    state = current_state()
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


@cli.command("reap")
@with_app
def reap_command() -> None:
    """One reaper pass: seal every running job presumed dead, dispatch again every queued
    job a dead worker took."""
    handled = current_state().recovery.reap()
    click.echo(f"recovered {handled} job(s) whose worker died")
