"""``ImisDouble``: a local iMIS REST API over in-memory data, served over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import create_app
from .control import Fault, RecordedRequest
from .entities import CONTRACTS, EntityTable, Validation
from .operators import QueryFilter
from .queries import Column, IqaQuery
from .state import DoubleState

if TYPE_CHECKING:
    from .keepalive import KeptAliveServer


class CountingHandler(WSGIRequestHandler):
    """Counts the connections it is given. Werkzeug closes each connection after its
    answer, so a stopped double leaves no kept-alive connection."""

    def setup(self) -> None:
        state: DoubleState = self.server.double_state  # type: ignore[attr-defined]
        with state.lock:
            state.traffic.connections_opened += 1
        super().setup()


class CountingQuietHandler(CountingHandler):
    """No access-log line per request (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class ImisDouble:
    """A stand-in for an iMIS site: ``/token``, ``/api/iqa``, ``/api/query``,
    ``/api/QueryDefinition/_execute`` and ``/api/{Entity}[/{id}]``, with fault controls
    and a log of every request. Safe to use from the test while it serves."""

    def __init__(
        self,
        username: str = "manager",
        password: str = "secret",  # noqa: S107 - the double's own made-up login
        *,
        separator: str = ",",
    ) -> None:
        self.username = username
        self.password = password
        self._state = DoubleState(username, password, separator)
        self._server: BaseWSGIServer | KeptAliveServer | None = None

    # -- data ---------------------------------------------------------------------------

    def add_entities(
        self,
        entity: str,
        rows: Iterable[Mapping[str, Any]],
        key: str = "ID",
        *,
        parent: str = "Party",
        contract: str | None = None,
    ) -> None:
        """Add (or replace, by key) entities of a type. ``Party``, ``Person`` and
        ``Organization`` default to typed contracts (served whole, replaced whole by PUT);
        ``contract`` names another contract's ``$type``. ``parent`` is the
        ``PrimaryParentEntityTypeName`` of a GenericEntityData type."""
        with self._state.lock:
            table = self._state.tables.get(entity)
            if table is None:
                table = EntityTable(entity, key, parent, contract or CONTRACTS.get(entity))
                self._state.tables[entity] = table
            elif table.key != key:
                raise ValueError(f"{entity} is keyed by {table.key!r}, not {key!r}")
            table.add(rows)

    def remove_entities(self, entity: str) -> None:
        """Drop an entity type with its records and validations (nothing if absent)."""
        with self._state.lock:
            table = self._state.table(entity)
            if table is not None:
                del self._state.tables[table.name]

    def add_query(
        self,
        path: str,
        entity: str,
        columns: Sequence[Column],
        filters: Sequence[QueryFilter] = (),
    ) -> None:
        """An IQA at ``path`` over ``entity``: ``columns`` are the display names per row,
        in order (a ``(display name, field)`` pair renames a field); ``filters`` in the
        query's filter order."""
        with self._state.lock:
            number = len(self._state.queries) + 1
            self._state.queries[path] = IqaQuery.build(path, entity, columns, filters, number)

    def add_validation(
        self, entity: str, field: str, predicate: Callable[[Any], bool], message: str
    ) -> None:
        """Refuse writes of ``entity`` whose ``field`` fails ``predicate`` (400, with
        ``message`` in ``Errors.$values``). The entity type must have been added."""
        with self._state.lock:
            self._table(entity).validations.append(Validation(field, predicate, message))

    def entities(self, entity: str) -> list[dict[str, Any]]:
        """The current entities of a type (copies), in key order."""
        with self._state.lock:
            return [dict(record) for record in self._table(entity).ordered()]

    def _table(self, entity: str) -> EntityTable:
        table = self._state.table(entity)
        if table is None:
            raise KeyError(f"no entity type {entity!r}; add_entities() first")
        return table

    # -- faults -------------------------------------------------------------------------

    def fail_nth(self, nth: int, status: int = 500, retry_after: int | None = None) -> None:
        """The ``nth`` request from now (any path, 1 = the next) answers ``status``, once;
        ``retry_after`` adds a ``Retry-After`` header (seconds)."""
        with self._state.lock:
            self._state.plan.schedule(nth, Fault(status, retry_after))

    def expire_token_once(self) -> None:
        """The next request with a valid token answers 401 and that token stops working."""
        with self._state.lock:
            self._state.plan.expire_token = True

    def slow(self, seconds: float) -> None:
        """Delay every answer by ``seconds`` (0 to stop)."""
        with self._state.lock:
            self._state.plan.delay = max(0.0, seconds)

    def latency(self, seconds: float) -> None:
        """Delay every entity call (``/api/{Entity}[/{id}]``) by ``seconds``, as a distant
        iMIS would; calls in flight wait side by side (0 to stop)."""
        with self._state.lock:
            self._state.traffic.latency = max(0.0, seconds)

    # -- traffic ------------------------------------------------------------------------

    @property
    def in_flight_peak(self) -> int:
        """The most requests answered at once since serving began or ``reset_peak()``."""
        with self._state.lock:
            return self._state.traffic.in_flight_peak

    def reset_peak(self) -> None:
        with self._state.lock:
            self._state.traffic.in_flight_peak = self._state.traffic.in_flight

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted (kept-alive ones count once)."""
        with self._state.lock:
            return self._state.traffic.connections_opened

    # -- log ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.log)

    def reset_log(self) -> None:
        with self._state.lock:
            self._state.log.clear()

    # -- serving ------------------------------------------------------------------------

    @property
    def separator(self) -> str:
        return self._state.separator

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` while serving."""
        if self._server is None:
            raise RuntimeError("the double is not serving; use `with double.serve():`")
        return f"http://{self._server.host}:{self._server.port}"

    @contextmanager
    def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        quiet: bool = True,
        keep_alive: bool = False,
    ) -> Iterator[str]:
        """Serve in a background thread until the block ends; yields the base URL.
        ``port=0`` takes a free port. ``keep_alive`` serves HTTP/1.1 connections that stay
        open between requests (cheroot, in the ``test`` extra), as a hosted iMIS does;
        without it each answer closes its connection."""
        if self._server is not None:
            raise RuntimeError("the double is already serving")
        if keep_alive:
            with self._serve_kept_alive(host, port) as url:
                yield url
            return
        handler = CountingQuietHandler if quiet else CountingHandler
        server = make_server(
            host, port, create_app(self._state), threaded=True, request_handler=handler
        )
        server.double_state = self._state  # type: ignore[attr-defined]
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="imis-double"
        )
        thread.start()
        self._server = server
        try:
            yield self.base_url
        finally:
            self._server = None
            server.shutdown()
            server.server_close()
            thread.join()

    @contextmanager
    def _serve_kept_alive(self, host: str, port: int) -> Iterator[str]:
        from .keepalive import KeptAliveServer

        server = KeptAliveServer(host, port, create_app(self._state), self._state)
        try:
            with server.running():
                self._server = server
                yield self.base_url
        finally:
            self._server = None

    def serve_forever(self, host: str = "127.0.0.1", port: int = 8765) -> None:
        """Serve in this thread, logging requests, until interrupted (Ctrl-C)."""
        server = make_server(
            host, port, create_app(self._state), threaded=True, request_handler=CountingHandler
        )
        server.double_state = self._state  # type: ignore[attr-defined]
        self._server = server
        try:
            server.serve_forever()
        finally:
            self._server = None
            server.server_close()
