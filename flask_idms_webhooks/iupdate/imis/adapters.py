"""The iMIS source (an IQA, page by page) and target (a business object or panel) of the
iUpdate engine, over ``ImisClient``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from ...model.tasks import Prompt
from ..base import FilterValue, Page, Record, RowWriteError, SourceReadError, TargetUnavailable
from .client import ImisClient
from .errors import ImisError, ImisRequestError
from .payloads import ImisEntity

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
    """Writes to one iMIS entity (``parent`` is its ``PrimaryParentEntityTypeName``)."""

    def __init__(self, client: ImisClient, entity: str, *, parent: str = "Party") -> None:
        self.client, self.entity, self.parent = client, entity, parent

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
            return [_record(found) for found in self.client.find(self.entity, criteria)]

    def insert(self, values: Mapping[str, Any]) -> None:
        with self._writing("Insert"):
            self.client.insert(self.entity, values, parent=self.parent)

    def update(self, record: Record, values: Mapping[str, Any]) -> None:
        with self._writing("Update"):
            self.client.update(self.entity, record["identity"], values, parent=self.parent)

    def delete(self, record: Record) -> None:
        with self._writing("Delete"):
            self.client.delete(self.entity, record["identity"])

    #: iMIS has no transaction across requests: each write stands alone.
    transactional = False

    def batch(self) -> AbstractContextManager[None]:
        return nullcontext()

    def row(self) -> AbstractContextManager[None]:
        return nullcontext()
