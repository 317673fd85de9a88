"""The iUpdate engine: source rows -> mapping -> match -> action on the target, counted.

Every processed row lands in exactly one of inserted / updated / skipped / error (a delete
counts as updated and also in DeletedCount). The source is read page by page, so memory
stays flat whatever the row count; each page's writes are one batch of the target (one
transaction for SQL). Cancellation is checked between rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..model.parameters import QueryParameterSet
from ..model.reporting import JobReporter
from ..model.tasks import Action, FilterRow, Source, Target
from .base import FilterValue, Page, Record, Row, RowWriteError, SourceReadError, TargetAdapter
from .connections import Connections, Profiles


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
        pages = source.pages(self.filter_values(parameters))
        try:
            Engine(self.target, target, report).run(pages)
        finally:
            # A failed or cancelled run gives the source's connection back now (on
            # PostgreSQL an open transaction holding locks), not whenever the traceback
            # is collected.
            close = getattr(pages, "close", None)
            if close is not None:
                close()


class Engine:
    """Applies one target's action to rows, counting each into the job context."""

    def __init__(self, target: Target, adapter: TargetAdapter, context: JobReporter) -> None:
        self.target = target
        self.adapter = adapter
        self.context = context
        self.row_number = 0
        self._checked_columns = False
        # With a transactional target a page's rows are counted once the page commits: a
        # page undone (cancelled, failed) is counted as nothing, as nothing of it stays.
        self._outcomes: Counter[str] = Counter()
        self._errors: list[tuple[int, str]] = []

    def run(self, pages: Iterable[Page]) -> None:
        first = True
        for page in pages:
            if first:
                self.context.set_row_count(page.total)
                first = False
            self.context.check_cancelled()
            with self.adapter.batch():
                for row in page.rows:
                    self.context.check_cancelled()
                    self.process(row)
            self._report()
        if first:
            self.context.set_row_count(0)

    def process(self, row: Row) -> None:
        self.row_number += 1
        if not self._checked_columns:
            self._check_columns(row)
        try:
            with self.adapter.row():
                outcome = self.apply(row)
        except RowWriteError as error:
            self._errors.append((self.row_number, str(error)))
        else:
            self._outcomes[outcome] += 1
        if not self.adapter.transactional:
            self._report()

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
        if not self.target.mapping:
            return dict(row)
        values: dict[str, Any] = {}
        for field, source in self.target.mapping.items():
            if isinstance(source, Mapping):
                values[field] = source.get("value")
            else:
                values[field] = row.get(source)
        return values

    def criteria(self, row: Row) -> dict[str, Any]:
        return {field: row.get(column) for field, column in self.target.match.items()}

    def apply(self, row: Row) -> str:
        """Do the action for one row; answers the outcome it counts as."""
        target, action = self.target, self.target.action
        values = self.values(row)
        if action is Action.INSERT:
            self.adapter.insert(values)
            return "inserted"
        criteria = self.criteria(row)
        if not criteria:
            raise RowWriteError(f"{action} needs a match rule ([tasks.target] match)")
        if target.skip_blank_match and any(_blank(value) for value in criteria.values()):
            return "skipped"
        matches = self.adapter.find(criteria)
        if not matches:
            if action in (Action.INSERT_WITH_MATCHING, Action.INSERT_OR_UPDATE):
                self.adapter.insert(values)
                return "inserted"
            return "skipped"  # Update / Delete with nothing to act on
        if action is Action.INSERT_WITH_MATCHING:
            return "skipped"  # it exists already: inserting again would duplicate it
        if action is Action.INSERT_OR_UPDATE and target.insert_only_when_no_match:
            return "skipped"
        if len(matches) > 1 and target.skip_if_multiple_matches:
            return "skipped"
        if action is Action.DELETE:
            self._each(matches, self.adapter.delete)
            return "deleted"
        self._each(matches, lambda record: self.adapter.update(record, values))
        return "updated"

    @staticmethod
    def _each(records: Sequence[Record], write: Any) -> None:
        for record in records:
            write(record)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
