"""``idms-webhooks call URL``: start a job through a task's polling webhook URL from any
machine (no Flask app, only the URL), and with ``--wait`` follow it to its end with the
progress bar and exit codes of ``flask idms-webhooks trigger --wait``."""

from __future__ import annotations

import sys
from urllib.parse import parse_qs, urlsplit

import click

from .client import Client, ClientError, Job, WaitTimeout
from .progress import (
    AS_JSON,
    INTERRUPTED,
    NOT_STARTED,
    PARAMETERS,
    STILL_RUNNING,
    WAIT_TIMEOUT,
    JobProgress,
    exit_code,
    fail,
    print_json,
    query_parameters,
    show_outcome,
)

#: ``--interval``'s default: how often the bar is refreshed at most.
INTERVAL = 2.0


@click.group()
def main() -> None:
    """Talk to a flask-idms-webhooks server from any machine."""


@main.command("call")
@click.argument("url")
@PARAMETERS
@click.option(
    "--key", envvar="IDMS_WEBHOOKS_KEY", show_envvar=True, default=None,
    help="The task key, when URL carries no ?key= (the variable keeps it out of `ps`).",
)  # fmt: skip
@click.option("--wait", is_flag=True, help="Follow the job to its end with a progress bar.")
@WAIT_TIMEOUT
@click.option(
    "--interval", type=click.FloatRange(min=0, min_open=True), default=INTERVAL,
    show_default=True, metavar="SECONDS",
    help="With --wait: poll at least this often (a shorter Retry-After is honoured).",
)  # fmt: skip
@click.option(
    "--idempotency-key", default=None,
    help="Sent as Idempotency-Key: a repeat with the same key and parameters starts nothing"
    " and follows the first job.",
)  # fmt: skip
@AS_JSON
def call_command(
    url: str,
    params: tuple[str, ...],
    key: str | None,
    wait: bool,
    timeout: float | None,
    interval: float,
    idempotency_key: str | None,
    as_json: bool,
) -> None:
    """Start a job through URL, a task's polling webhook URL (Webhooks.Polling of its
    task document), and print its polling URL; with --wait, follow it to its end.

    Exit codes: 0 started (with --wait: succeeded), 1 failed, 3 cancelled, 4 could not
    start (refused, the server unreachable; its message on stderr) or could not be
    followed, 5 still running after --timeout, 130 Ctrl-C while waiting (the job goes
    on); 2 is a usage error.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter("not an absolute http(s) URL", param_hint="URL")
    parameters = query_parameters(params)
    # A key in the URL is the one meant for it: IDMS_WEBHOOKS_KEY may be set for another.
    header_key = None if "key" in parse_qs(parts.query) else key
    with Client(f"{parts.scheme}://{parts.netloc}", header_key, prefix="") as client:
        try:
            job = client.start_url(url, parameters or None, idempotency_key)
        except ClientError as error:
            fail(f"the job could not be started: {error}", NOT_STARTED)
        if not wait:
            if as_json:
                print_json(job.document)
            else:
                click.echo(job.location)
            return
        click.echo(f"{job.execute_id}: {job.location}", err=True)
        sys.exit(follow(client, job, as_json=as_json, timeout=timeout, interval=interval))


def follow(
    client: Client, job: Job, *, as_json: bool, timeout: float | None, interval: float
) -> int:
    """Wait for the job with a live bar on stderr, then print its outcome (a table, or
    the document as JSON): the exit code."""
    latest = job
    try:
        with JobProgress() as progress:
            progress.update(job.document)

            def seen(current: Job) -> None:
                nonlocal latest
                latest = current
                progress.update(current.document)

            final = client.wait(job, on_progress=seen, timeout=timeout, interval=interval)
            progress.update(final.document)
    except KeyboardInterrupt:
        click.echo(f"\nStopped waiting; the job goes on: {latest.location}", err=True)
        return INTERRUPTED
    except WaitTimeout as error:
        if as_json:
            print_json(error.job.document)
        click.echo(f"Still {error.job.status} after {timeout:g} s: {error.job.location}",
                   err=True)  # fmt: skip
        return STILL_RUNNING
    except ClientError as error:
        click.echo(f"Error: the job could not be followed: {error}", err=True)
        click.echo(f"It may go on: {latest.location}", err=True)
        return NOT_STARTED
    if as_json:
        print_json(final.document)
    else:
        show_outcome(final.document)
    return exit_code(final.document)


if __name__ == "__main__":
    main(prog_name="idms-webhooks")
