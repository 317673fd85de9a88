"""What a running task reports through: the Protocol the engine and Python tasks see.

The concrete job context lives with the jobs (``flask_idms_webhooks.JobContext``); the
task model and the engine know only this shape of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol


class JobReporter(Protocol):
    """Rows, counters, row errors and cancellation of one running job."""

    @property
    def job_id(self) -> str: ...

    def set_row_count(self, total: int | None) -> None:
        """How many records the source returned (the denominator of PercentComplete)."""
        ...

    def progress(self, done: int | None = None, description: str | None = None) -> None:
        """Rows done (defaults to the processed count) and an optional description."""
        ...

    def count(
        self, *, inserted: int = 0, updated: int = 0, skipped: int = 0, deleted: int = 0
    ) -> None:
        """Count processed rows into exactly one outcome each."""
        ...

    def row_error(self, row: int, message: str) -> None:
        """Count a row that failed, with its message."""
        ...

    def check_cancelled(self) -> None:
        """Raise ``JobCancelled`` if the job was cancelled."""
        ...

    def note(self, text: str | None) -> None:
        """A few words shown after the progress figures in ``StatusDescription`` (None to
        drop them): "Processed 120 of 2000 records; 4 of 8 calls in flight ..."."""
        ...


#: What a task does: it gets the resolved QueryParameters (key -> value) and the job's
#: reporter (progress, counters, cancellation); what it returns is ignored.
Handler = Callable[[Mapping[str, Any], JobReporter], object]
