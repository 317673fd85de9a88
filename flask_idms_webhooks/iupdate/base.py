"""What the engine needs of a source and of a target; adapters implement these."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from ..errors import IdmsWebhooksError, TransientError
from ..model.tasks import FilterRow

#: One source row: column name -> value (None for an absent value).
Row = dict[str, Any]
#: A record found in a target: opaque to the engine, handed back to update/delete.
Record = dict[str, Any]


@dataclass(frozen=True)
class FilterValue:
    """One filter row of the source query with its resolved value, in query order.

    ``value`` is None for a blank; a list for ``Between`` (two) and ``In``.
    """

    key: str  # the QueryParameters key (column, qualified name or explicit key)
    row: FilterRow
    value: Any


@dataclass
class Page:
    rows: list[Row]
    #: How many rows the whole source has, when known (IQA ``TotalCount``, SQL COUNT).
    total: int | None = None


@dataclass(frozen=True)
class Insert:
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Update:
    record: Record
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Delete:
    record: Record


#: One write the engine decided on for a row.
Write = Insert | Update | Delete


def match_key(criteria: Mapping[str, Any]) -> tuple[Any, ...]:
    """Which rows may match the same records: equal here whenever a database or iMIS could
    call them equal (text without case or outer spaces, numbers by value, dates as ISO
    text), so rows that differ here never touch the same records."""
    return tuple(_key_part(criteria[name]) for name in sorted(criteria))


#: How a number's text other than a digit may start, as Decimal reads it: a sign, a point,
#: inf, nan or snan.
NUMBER_STARTS = frozenset("+-.ins")


def _key_part(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, dt.date | dt.time):
        value = value.isoformat()
    text = str(value).strip().casefold()
    if not text[:1].isdigit() and text[:1] not in NUMBER_STARTS:
        return text  # not a number (Decimal would refuse it)
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    return number.normalize() if number.is_finite() else text


class SourceReadError(IdmsWebhooksError):
    """The source could not be read: the job fails with this message."""


class RowWriteError(IdmsWebhooksError):
    """One row could not be written (or matched): counted as a row error, the job goes on."""


class TargetUnavailable(IdmsWebhooksError):
    """The target cannot be reached at all (after retries): the job fails."""


class SourceUnreachable(SourceReadError, TransientError):
    """The source could not be reached (a later attempt may read it)."""


class TargetUnreachable(TargetUnavailable, TransientError):
    """The target could not be reached (a later attempt may write to it)."""


class SourceAdapter(Protocol):
    def pages(self, filters: Sequence[FilterValue]) -> Iterator[Page]:
        """The rows, page by page (memory flat whatever the row count); the first page
        carries ``total`` when the source knows it. Raises ``SourceReadError``."""
        ...


class TargetAdapter(Protocol):
    def find(self, criteria: Mapping[str, Any]) -> list[Record]:
        """Records whose fields equal ``criteria`` (target field -> value)."""
        ...

    def find_many(self, criteria: Sequence[Mapping[str, Any]]) -> list[list[Record] | None] | None:
        """The records of each of ``criteria`` in one go (None for one it cannot look up
        that way), or None when this target does not look up in batches."""
        ...

    def write_many(self, writes: Sequence[Write]) -> bool:
        """Do every write in one go, in a SAVEPOINT of the batch: False when this target
        does not write in batches. Raises ``RowWriteError`` if any write fails (the
        engine then writes the rows one by one)."""
        ...

    #: How many rows of a page may be written at once (iMIS); 1 for a transactional target.
    max_concurrency: int

    def insert(self, values: Mapping[str, Any]) -> None: ...

    def update(self, record: Record, values: Mapping[str, Any]) -> None: ...

    def delete(self, record: Record) -> None: ...

    #: Whether a batch is a transaction (its writes are undone if it does not complete).
    transactional: bool

    def batch(self) -> AbstractContextManager[None]:
        """Around one page of writes: a transaction for SQL, nothing for iMIS."""
        ...

    def row(self) -> AbstractContextManager[None]:
        """Around every write of one source row: a SAVEPOINT for SQL, nothing for iMIS."""
        ...
