"""The iUpdate engine: source rows -> mapping -> match -> action on the target, counted.

Every processed row lands in exactly one of inserted / updated / skipped / error (a delete
counts as updated and also in DeletedCount). The source is read page by page, one page
ahead of the writes (``readahead``), so memory stays flat whatever the row count.

How a page is written depends on the target:

- a transactional one (SQL) writes each page in one transaction, set-based: the rows'
  matches in one look-up, then the writes in one go, in a SAVEPOINT; if that fails, the
  page's rows are written again one by one, each in a SAVEPOINT of its own, so a bad row
  never costs its neighbours. Rows whose keys repeat start a new set.
- one without transactions (iMIS) writes up to ``max_concurrency`` rows at once
  (``inflight``), rows that share a key one after the other; with ``batch_match`` a
  page's matches are found in one call.

Whatever the way, what is written, counted and reported is what one row at a time would
do. Cancellation is checked between rows (sets, for SQL).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Any

from ..model.parameters import QueryParameterSet
from ..model.reporting import JobReporter
from ..model.tasks import Action, FilterRow, Source, Target
from .base import (
    Delete,
    FilterValue,
    Insert,
    Page,
    Record,
    Row,
    RowWriteError,
    SourceReadError,
    TargetAdapter,
    Update,
    Write,
    match_key,
)
from .connections import Connections, Profiles
from .inflight import Done, RowsInFlight
from .readahead import ReadAhead

log = logging.getLogger(__name__)

#: One source row with its number (its position in the source, from 1).
Numbered = tuple[int, Row]
#: ... and what it is looked up by (None: it needs no look-up).
Wanted = tuple[int, Row, dict[str, Any] | None]


class MappingError(SourceReadError):
    """The task's mapping or match names a column the source does not return."""


class IUpdate:
    """The handler of a task declared with a source and a target: runs the engine over
    the app's connections."""

    def __init__(
        self,
        source: Source,
        target: Target,
        filters: tuple[FilterRow, ...],
        profiles: Profiles,
        connections: Connections,
    ) -> None:
        self.source, self.target, self.profiles = source, target, profiles
        self.connections = connections
        self._parameter_set = QueryParameterSet(filters)

    def filter_values(self, parameters: Mapping[str, Any]) -> list[FilterValue]:
        """Every filter row of the task with its value, in query order."""
        return [
            FilterValue(key=key, row=row, value=parameters.get(key))
            for key, row in self._parameter_set.all_rows.items()
        ]

    def __call__(self, parameters: Mapping[str, Any], report: JobReporter) -> None:
        source = self.connections.source(self.source, self.profiles)
        target = self.connections.target(self.target, self.profiles)
        pages = ReadAhead(source.pages(self.filter_values(parameters)))
        try:
            Engine(self.target, target, report).run(pages)
        finally:
            # A failed or cancelled run gives the source's connection back now (on
            # PostgreSQL an open transaction holding locks), not whenever the traceback
            # is collected.
            pages.close()


class Engine:
    """Applies one target's action to rows, counting each into the job context."""

    def __init__(self, target: Target, adapter: TargetAdapter, context: JobReporter) -> None:
        self.target = target
        self.adapter = adapter
        self.context = context
        self._checked_columns = False
        # With a transactional target a page's rows are counted once the page commits: a
        # page undone (cancelled, failed) is counted as nothing, as nothing of it stays.
        self._outcomes: Counter[str] = Counter()
        self._errors: list[tuple[int, str]] = []
        #: The mapping as (target field, source column, constant): one or the other.
        self._fields = [
            (name, None, given.get("value")) if isinstance(given, Mapping) else (name, given, None)
            for name, given in target.mapping.items()
        ]

    def run(self, pages: Iterable[Page]) -> None:
        numbered = self._numbered(pages)
        if self.adapter.transactional:
            self._run_in_sets(numbered)
        elif getattr(self.adapter, "max_concurrency", 1) > 1:
            self._run_in_flight(numbered)
        else:
            for page_rows in numbered:
                for number, row in page_rows:
                    self.context.check_cancelled()
                    self.process(number, row)

    def _numbered(self, pages: Iterable[Page]) -> Iterator[list[Numbered]]:
        """Each page's rows with their numbers; the first page sets the row count."""
        first, number = True, 0
        for page in pages:
            if first:
                self.context.set_row_count(page.total)
                first = False
            self.context.check_cancelled()
            rows = []
            for row in page.rows:
                number += 1
                if not self._checked_columns:
                    self._check_columns(row)
                rows.append((number, row))
            yield rows
        if first:
            self.context.set_row_count(0)

    # -- one row ------------------------------------------------------------------------

    def process(self, number: int, row: Row, matches: list[Record] | None = None) -> None:
        """Apply one row in a SAVEPOINT of its own (SQL) and count it."""
        try:
            with self.adapter.row():
                outcome = self.apply(row, matches)
        except RowWriteError as error:
            self._errors.append((number, str(error)))
        else:
            self._outcomes[outcome] += 1
        if not self.adapter.transactional:
            self._report()

    def apply(self, row: Row, matches: list[Record] | None = None) -> str:
        """Do the action for one row; answers the outcome it counts as."""
        outcome, writes = self.plan(row, matches)
        for write in writes:
            self._write(write)
        return outcome

    def _write(self, write: Write) -> None:
        if isinstance(write, Insert):
            self.adapter.insert(write.values)
        elif isinstance(write, Update):
            self.adapter.update(write.record, write.values)
        else:
            self.adapter.delete(write.record)

    def plan(
        self, row: Row, matches: list[Record] | None = None, criteria: dict[str, Any] | None = None
    ) -> tuple[str, list[Write]]:
        """The outcome of one row and the writes it takes. Its matches are found unless
        given (found in a batch), by its criteria (computed unless given)."""
        target, action = self.target, self.target.action
        values = self.values(row)
        if action is Action.INSERT:
            return "inserted", [Insert(values)]
        criteria = self.criteria(row) if criteria is None else criteria
        if not criteria:
            raise RowWriteError(f"{action} needs a match rule ([tasks.target] match)")
        if target.skip_blank_match and any(_blank(value) for value in criteria.values()):
            return "skipped", []
        if matches is None:
            matches = self.adapter.find(criteria)
        if not matches:
            if action in (Action.INSERT_WITH_MATCHING, Action.INSERT_OR_UPDATE):
                return "inserted", [Insert(values)]
            return "skipped", []  # Update / Delete with nothing to act on
        if action is Action.INSERT_WITH_MATCHING:
            return "skipped", []  # it exists already: inserting again would duplicate it
        if action is Action.INSERT_OR_UPDATE and target.insert_only_when_no_match:
            return "skipped", []
        if len(matches) > 1 and target.skip_if_multiple_matches:
            return "skipped", []
        if action is Action.DELETE:
            return "deleted", [Delete(record) for record in matches]
        return "updated", [Update(record, values) for record in matches]

    def lookup(self, row: Row) -> dict[str, Any] | None:
        """The criteria a row is found by, or None when it needs no look-up."""
        if self.target.action is Action.INSERT:
            return None
        criteria = self.criteria(row)
        if not criteria:
            return None
        if self.target.skip_blank_match and any(_blank(v) for v in criteria.values()):
            return None
        return criteria

    # -- SQL: a page in sets --------------------------------------------------------------

    def _run_in_sets(self, pages: Iterable[list[Numbered]]) -> None:
        in_sets = self._keys_stay()
        for rows in pages:
            with self.adapter.batch():
                sets: Iterable[list[Wanted]] = (
                    self._sets(rows) if in_sets else ([(n, row, None)] for n, row in rows)
                )
                for rows_of_set in sets:
                    self.context.check_cancelled()
                    if len(rows_of_set) == 1:
                        self.process(*rows_of_set[0][:2])
                    else:
                        self._write_set(rows_of_set)
                # A cancel that came while the page was written undoes the page.
                self.context.check_cancelled()
            self._report()

    def _keys_stay(self) -> bool:
        """Whether no write can move a record from one key to another (a match field
        written from another column than the one it is matched by): only then can a set's
        rows be found before any of them is written."""
        if self.target.action is Action.INSERT:
            return True
        mapping = self.target.mapping
        for name, column in self.target.match.items():
            if not mapping and name != column:
                return False
            written = [source for field, source in mapping.items() if field.lower() == name.lower()]
            if any(source != column for source in written):
                return False
        return True

    def _sets(self, rows: list[Numbered]) -> Iterator[list[Wanted]]:
        """The page cut where a key repeats: in one set no two rows may touch one record.
        Each row comes with what it is looked up by."""
        current: list[Wanted] = []
        keys: set[Hashable] = set()
        for number, row in rows:
            criteria = self.lookup(row)
            key = match_key(criteria) if criteria is not None else None
            if key is not None and key in keys:
                yield current
                current, keys = [], set()
            current.append((number, row, criteria))
            if key is not None:
                keys.add(key)
        if current:
            yield current

    def _write_set(self, rows: list[Wanted]) -> None:
        """One look-up and one write for the set, in a SAVEPOINT; if any of it fails, the
        rows one by one."""
        try:
            with self.adapter.row():
                outcomes = self._planned_set(rows)
        except RowWriteError as error:
            log.debug("rows %d-%d one by one: %s", rows[0][0], rows[-1][0], error)
            for number, row, _ in rows:
                self.process(number, row)
        else:
            self._outcomes.update(outcomes)

    def _planned_set(self, rows: list[Wanted]) -> list[str]:
        looked_up = [(n, wanted) for n, (_, _, wanted) in enumerate(rows) if wanted is not None]
        found = self.adapter.find_many([criteria for _, criteria in looked_up])
        if found is None:  # this target looks rows up one by one
            found = [None] * len(looked_up)
        matches = {index: records for (index, _), records in zip(looked_up, found, strict=True)}
        outcomes, writes = [], []
        for index, (_, row, criteria) in enumerate(rows):
            outcome, row_writes = self.plan(row, matches.get(index), criteria)
            outcomes.append(outcome)
            writes += row_writes
        if writes and not self.adapter.write_many(writes):
            for write in writes:
                self._write(write)
        return outcomes

    # -- iMIS: rows in flight -------------------------------------------------------------

    def _run_in_flight(self, pages: Iterable[list[Numbered]]) -> None:
        flight = RowsInFlight(self.adapter.max_concurrency, self._delivered, self._checkpoint)
        with flight:
            try:
                for rows in pages:
                    found = self._found_together(rows, flight)
                    for number, row in rows:
                        criteria = self.lookup(row)
                        key = match_key(criteria) if criteria is not None else None
                        flight.feed(number, key, self._work(row, found.get(number)))
                flight.finish()
            except BaseException:
                flight.stop()
                raise

    def _work(self, row: Row, matches: list[Record] | None) -> Any:
        return lambda: self.apply(row, matches)

    def _found_together(self, rows: list[Numbered], flight: RowsInFlight) -> dict[int, Any]:
        """With ``batch_match``, the page's matches in one look-up: for each key's first
        row, unless a row of that key is still in flight (its write is not seen yet)."""
        chosen: list[tuple[int, dict[str, Any]]] = []
        keys: set[Hashable] = set()
        for number, row in rows:
            criteria = self.lookup(row)
            if criteria is None:
                continue
            key = match_key(criteria)
            if key not in keys and not flight.busy(key):
                chosen.append((number, criteria))
            keys.add(key)
        if not chosen:
            return {}
        try:
            found = self.adapter.find_many([criteria for _, criteria in chosen])
        except RowWriteError as error:  # each row looks itself up, and says why if it fails
            log.warning("batch look-up of rows %d-%d failed: %s", rows[0][0], rows[-1][0], error)
            return {}
        if found is None:
            return {}
        return {number: records for (number, _), records in zip(chosen, found, strict=True)}

    def _delivered(self, done: Done) -> None:
        if done.outcome is not None:
            self._outcomes[done.outcome] += 1
        elif done.error is not None:
            self._errors.append((done.number, done.error))
        self._report()

    def _checkpoint(self) -> None:
        self.context.check_cancelled()
        describe = getattr(self.adapter, "describe", None)
        note = describe() if describe is not None else None
        if note:
            self.context.note(note)

    def _report(self) -> None:
        """Count what was done into the job context."""
        for row_number, message in self._errors:
            self.context.row_error(row_number, message)
        if self._outcomes:
            self.context.count(**self._outcomes)
        self._outcomes.clear()
        self._errors.clear()

    def _check_columns(self, row: Row) -> None:
        wanted = set(self.target.match.values())
        wanted |= {column for column in self.target.mapping.values() if isinstance(column, str)}
        missing = sorted(wanted - set(row))
        if missing:
            raise MappingError(
                f"the source does not return the column(s) {', '.join(missing)} "
                f"(it returns: {', '.join(row) or 'no columns'})"
            )
        self._checked_columns = True

    def values(self, row: Row) -> dict[str, Any]:
        """The target fields of a row: a source column's value, or a constant."""
        if not self._fields:
            return dict(row)
        return {
            name: constant if column is None else row.get(column)
            for name, column, constant in self._fields
        }

    def criteria(self, row: Row) -> dict[str, Any]:
        return {field: row.get(column) for field, column in self.target.match.items()}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
