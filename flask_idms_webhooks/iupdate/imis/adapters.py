"""The iMIS source (an IQA, page by page) and target (a business object or panel) of the
iUpdate engine, over ``ImisClient``."""

from __future__ import annotations

import concurrent.futures as futures
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from decimal import Decimal, InvalidOperation
from typing import Any

from ...model.tasks import Prompt
from ..base import (
    FilterValue,
    Page,
    Record,
    RowWriteError,
    SourceReadError,
    TargetUnavailable,
    Write,
)
from .client import IN_SEPARATOR, ImisClient
from .errors import ImisError, ImisRequestError
from .pacing import Pacer
from .payloads import ImisEntity, parameter_text

#: The most values one ``in:`` look-up carries, and the most characters they take.
IN_VALUES, IN_CHARACTERS = 100, 1500

__all__ = ["ImisSource", "ImisTarget"]


class ImisSource:
    """Rows of one IQA. Each prompt filter (Required or Optional) takes one positional
    ``parameter=`` in query order; fixed filters (prompt None) take none."""

    def __init__(self, client: ImisClient, query_name: str, page_size: int = 100) -> None:
        self.client, self.query_name, self.page_size = client, query_name, page_size

    def pages(self, filters: Sequence[FilterValue]) -> Iterator[Page]:
        parameters = [f.value for f in filters if f.row.prompt is not Prompt.NONE]
        first = True
        try:
            for page in self.client.query_pages(self.query_name, parameters, self.page_size):
                yield Page(page.rows, total=page.total if first else None)
                first = False
        except ImisError as exc:
            raise SourceReadError(f"Could not read the IQA {self.query_name!r}: {exc}") from exc


def _record(entity: ImisEntity) -> Record:
    return {"identity": entity.identity, "properties": entity.properties}


class ImisTarget:
    """Writes to one iMIS entity (``parent`` is its ``PrimaryParentEntityTypeName``).

    A job's calls go through one :class:`Pacer`: at most ``max_concurrency`` in flight,
    fewer while iMIS answers 429 or 503. With ``batch_match``, rows are looked up many at
    a time (``?Field=in:v1|v2|...``) and matched here as iMIS compares: numbers by value,
    text without case.
    """

    #: iMIS has no transaction across requests: each write stands alone.
    transactional = False

    def __init__(
        self,
        client: ImisClient,
        entity: str,
        *,
        parent: str = "Party",
        max_concurrency: int = 1,
        batch_match: bool = False,
    ) -> None:
        self.client, self.entity, self.parent = client, entity, parent
        self.max_concurrency = max_concurrency
        self.batch_match = batch_match
        self.pacer = Pacer(max_concurrency)

    @contextmanager
    def _writing(self, action: str) -> Iterator[None]:
        try:
            yield
        except ImisRequestError as exc:
            raise RowWriteError(f"{action} {self.entity}: {exc.message}") from exc
        except ImisError as exc:
            raise TargetUnavailable(f"{action} {self.entity}: {exc}") from exc

    def find(self, criteria: Mapping[str, Any]) -> list[Record]:
        with self._writing("Find"):
            found = self.client.find(self.entity, criteria, pacer=self.pacer)
        return [_record(entity) for entity in found]

    def find_many(self, criteria: Sequence[Mapping[str, Any]]) -> list[list[Record] | None] | None:
        """With ``batch_match``: each criteria's records, found by ``in:`` on the first
        match field (100 values a call), then matched here on every field. A criteria
        with a blank value, or a value holding ``|``, is looked up on its own (None)."""
        if not self.batch_match or not criteria:
            return None
        field = next(iter(criteria[0]))
        texts: dict[int, str] = {}
        for index, wanted in enumerate(criteria):
            if any(value is None for value in wanted.values()):
                continue
            text = parameter_text(wanted[field], self.client.separator)
            if text and IN_SEPARATOR not in text:
                texts[index] = text
        # The entities found, by their value of the field as compared (so each criteria
        # is checked against its candidates only), with their properties' names lowered.
        found: dict[Any, list[tuple[ImisEntity, dict[str, Any]]]] = {}
        for entities in self._found_in(field, list(_chunks(sorted(set(texts.values()))))):
            for entity in entities:
                properties = {name.lower(): value for name, value in entity.properties.items()}
                value = properties.get(field.lower())
                if value is not None:
                    found.setdefault(_compared(value), []).append((entity, properties))
        answers: list[list[Record] | None] = [None] * len(criteria)
        for index in texts:
            wanted = criteria[index]
            answers[index] = [
                _record(entity)
                for entity, properties in found.get(_compared(wanted[field]), [])
                if all(_equal(properties.get(name.lower()), v) for name, v in wanted.items())
            ]
        return answers

    def _found_in(self, field: str, chunks: list[list[str]]) -> list[list[ImisEntity]]:
        """The entities of each chunk of ``in:`` values: several calls at once (through
        the pacer) when rows may be in flight together."""

        def look_up(chunk: list[str]) -> list[ImisEntity]:
            with self._writing("Find"):
                return self.client.find_in(self.entity, field, chunk, pacer=self.pacer)

        width = min(len(chunks), self.max_concurrency)
        if width <= 1:
            return [look_up(chunk) for chunk in chunks]
        with futures.ThreadPoolExecutor(width, thread_name_prefix="idms-find") as pool:
            return list(pool.map(look_up, chunks))

    def write_many(self, writes: Sequence[Write]) -> bool:
        return False  # each write is a call of its own

    def insert(self, values: Mapping[str, Any]) -> None:
        with self._writing("Insert"):
            self.client.insert(self.entity, values, parent=self.parent, pacer=self.pacer)

    def update(self, record: Record, values: Mapping[str, Any]) -> None:
        identity = record["identity"]
        with self._writing("Update"):
            self.client.update(self.entity, identity, values, parent=self.parent, pacer=self.pacer)

    def delete(self, record: Record) -> None:
        with self._writing("Delete"):
            self.client.delete(self.entity, record["identity"], pacer=self.pacer)

    def batch(self) -> AbstractContextManager[None]:
        return nullcontext()

    def row(self) -> AbstractContextManager[None]:
        return nullcontext()

    def describe(self) -> str | None:
        """The pacer's figures once iMIS has slowed it down, else None."""
        return self.pacer.describe() if self.pacer.decreases else None


def _chunks(texts: list[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for text in texts:
        if chunk and (len(chunk) >= IN_VALUES or size + len(text) + 1 > IN_CHARACTERS):
            yield chunk
            chunk, size = [], 0
        chunk.append(text)
        size += len(text) + 1
    if chunk:
        yield chunk


def _equal(found: Any, wanted: Any) -> bool:
    """As iMIS compares a property with an ``eq:`` value: numbers by value, else text
    without case."""
    return found is not None and _compared(found) == _compared(wanted)


def _compared(value: Any) -> Decimal | str:
    """A value as iMIS compares it: a number, else its text without case."""
    text = parameter_text(value)
    number = _number(text)
    return text.casefold() if number is None else number


def _number(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None
