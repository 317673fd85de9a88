"""Following a job on a terminal: a live progress bar while it runs, its final counts as
a table, and the exit code of its outcome; and the options both commands that start and
follow jobs share (``-p KEY=VALUE``, ``--timeout``, ``--json``).

It works on job status documents (HTTP-CONTRACT.md), wherever they come from: the store
(``flask idms-webhooks trigger --wait``) or a served app's poll (``idms-webhooks call
--wait``). Nothing here knows Flask, Redis or HTTP."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

#: Exit codes of a followed job (2 is click's usage error).
SUCCEEDED = 0
FAILED = 1
CANCELLED = 3
NOT_STARTED = 4
#: ``--timeout`` ran out with the job still queued or running (it goes on).
STILL_RUNNING = 5
#: Ctrl-C while waiting (the job goes on).
INTERRUPTED = 130

PARAMETERS = click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
    help="A QueryParameters value (JSON, else a string); repeat for more.",
)  # fmt: skip
WAIT_TIMEOUT = click.option(
    "--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
    help="With --wait: stop waiting after this long (exit 5; the job goes on).",
)  # fmt: skip
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print the job document as JSON.")

Document = Mapping[str, Any]
#: The rows of the final table: (label, the document's field).
COUNTS = (
    ("Rows", "RowCount"),
    ("Processed", "ProcessedCount"),
    ("Inserted", "InsertedCount"),
    ("Updated", "UpdatedCount"),
    ("Skipped", "SkippedCount"),
    ("Errors", "ErrorCount"),
)
#: How many row errors the final table lists (the document holds the first ones).
ERRORS_SHOWN = 10


def query_parameters(params: tuple[str, ...]) -> dict[str, Any]:
    """``-p KEY=VALUE`` options as a QueryParameters object (a value is JSON, else text)."""
    supplied: dict[str, Any] = {}
    for item in params:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        try:
            supplied[name] = json.loads(raw)
        except ValueError:
            supplied[name] = raw
    return supplied


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def exit_code(document: Document) -> int:
    """0 succeeded, 1 failed, 3 cancelled, 5 not finished yet."""
    if document.get("Success") is None:
        return STILL_RUNNING
    if document["Success"]:
        return SUCCEEDED
    return CANCELLED if document.get("Status") == "cancelled" else FAILED


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def rows_per_second(document: Document) -> float | None:
    """Rows processed per second since the job started, by the server's clock (None
    before a second has passed)."""
    end = document.get("CompletedOn") or document.get("UpdatedOn")
    elapsed = seconds_between(document.get("StartedOn"), end)
    if elapsed is None or elapsed < 1:
        return None
    return float(document.get("ProcessedCount") or 0) / elapsed


def counts_text(document: Document, rate: float | None = None) -> str:
    """Like ``420 of 1,000 rows, 5 errors, 180 rows/s`` (``rate``: else by the server's
    clock)."""
    processed = document.get("ProcessedCount") or 0
    total = document.get("RowCount")
    rate = rows_per_second(document) if rate is None else rate
    text = f"{processed:,} of {total:,} rows" if total is not None else f"{processed:,} rows"
    if document.get("ErrorCount"):
        text += f", {document['ErrorCount']:,} errors"
    return text + (f", {rate:,.0f} rows/s" if rate is not None else "")


class JobProgress:
    """A live progress bar of one job, on ``console`` (stderr by default): its status,
    percent complete, counts and rows/s. ``update`` it with each document read."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description:<11}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._bar: TaskID | None = None
        #: (when, rows processed) at the first sight of the job running: the live rate is
        #: measured here, finer than the documents' whole-second timestamps.
        self._first: tuple[float, int] | None = None

    def __enter__(self) -> JobProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, document: Document) -> None:
        processed = int(document.get("ProcessedCount") or 0)
        now = time.monotonic()
        if self._first is None and document.get("Status") == "in progress":
            self._first = (now, processed)
        rate = None
        if self._first is not None and now - self._first[0] >= 1:
            rate = (processed - self._first[1]) / (now - self._first[0])
        status = str(document.get("Status", ""))
        percent = int(document.get("PercentComplete") or 0)
        counts = counts_text(document, rate)
        if self._bar is None:
            self._bar = self._progress.add_task(status, total=100, completed=percent, counts=counts)
        else:
            self._progress.update(self._bar, description=status, completed=percent, counts=counts)


def outcome_table(document: Document) -> Table:
    """The final counts of a job, with its outcome, duration and first row errors."""
    table = Table(show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_row("Status", str(document.get("Status")))
    for label, key in COUNTS:
        value = document.get(key)
        table.add_row(label, "-" if value is None else f"{value:,}")
    took = seconds_between(document.get("StartedOn"), document.get("CompletedOn"))
    if took is not None:  # the documents' times are whole seconds
        table.add_row("Took", f"{took:,.0f} s" if took >= 1 else "under 1 s")
    rate = rows_per_second(document)
    if rate is not None:
        table.add_row("Rows/s", f"{rate:,.0f}")
    error = document.get("Error")
    if error:
        table.add_row("Error", f"{error.get('Type')}: {error.get('Message')}")
    for row_error in (document.get("Errors") or [])[:ERRORS_SHOWN]:
        table.add_row(f"Row {row_error['Row']}", str(row_error["Message"]))
    return table


def show_outcome(document: Document, console: Console | None = None) -> None:
    """Print the job's task and id, then the final table (on stdout by default)."""
    console = console or Console()
    console.print(f"{document.get('TaskId')}: job {document.get('ExecuteId')}", highlight=False)
    console.print(outcome_table(document))


def fail(message: str, code: int) -> NoReturn:
    """End a command with ``Error: message`` on stderr and the exit ``code``."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)
