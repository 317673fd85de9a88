"""A client for the iMIS REST API: token, IQA paging with positional parameters, and
GenericEntityData reads and writes, with bounded timeouts and retries. The bodies it
sends and reads are in ``payloads``."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from urllib.parse import quote

import httpx

from .errors import (
    ImisAuthError,
    ImisRequestError,
    ImisUnavailable,
    error_message,
    login_refusal,
)
from .pacing import Pacer
from .payloads import (
    FIND_BY_PATH,
    ImisEntity,
    ImisPage,
    decode_entity,
    decode_iqa_row,
    decode_query_row,
    elements_of,
    find_by_path,
    generic_entity,
    json_default,
    parameter_text,
    prompt_filters_of,
    set_party_property,
)

__all__ = ["ImisClient"]

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500
QUERY_ENDPOINTS = ("iqa", "query")
#: Renew the token this long before iMIS says it expires.
TOKEN_MARGIN = 60.0
#: Lifetime assumed when the token answer carries no ``expires_in``.
DEFAULT_TOKEN_LIFETIME = 300.0
#: What separates the values of ``in:`` on the entity routes (ASI's reference).
IN_SEPARATOR = "|"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


class ImisClient:
    """One iMIS site, one connection pool. Thread-safe for the token; close it when done."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        query_endpoint: str = "iqa",
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        separator: str = ",",
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_connections: int = 10,
    ) -> None:
        if query_endpoint not in QUERY_ENDPOINTS:
            raise ValueError(f"query_endpoint must be 'iqa' or 'query', got {query_endpoint!r}")
        self.base_url = base_url.rstrip("/")
        self.query_endpoint = query_endpoint
        self._username, self._password = username, password
        self._retries, self._backoff, self._max_backoff = retries, backoff, max_backoff
        self._separator = separator
        self._sleep, self._clock = sleep, clock
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = threading.Lock()
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            transport=transport,
            headers={"Accept": "application/json"},
            # Kept-alive connections for as many calls as a job keeps in flight.
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    @property
    def separator(self) -> str:
        """What joins the values of a ``parameter=`` (and of ``eq:``) list."""
        return self._separator

    def __repr__(self) -> str:
        return f"ImisClient({self.base_url!r}, username={self._username!r})"

    def __enter__(self) -> ImisClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- authentication -------------------------------------------------------------

    def token(self) -> str:
        """A bearer token, fetched with the password grant and reused until it expires."""
        with self._token_lock:
            if self._token is not None and self._clock() < self._token_until:
                return self._token
            form = {"grant_type": "password", "username": self._username}
            form["password"] = self._password
            response = self._send("POST", "token", data=form, auth=False)
            if response.status_code >= 400:
                raise ImisAuthError(
                    self._redact(f"iMIS refused the login: {login_refusal(response)}")
                )
            try:
                answer = response.json()
                token = answer["access_token"]
                lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
            except (ValueError, KeyError, TypeError):
                raise ImisAuthError("iMIS answered the login without an access_token") from None
            if not isinstance(token, str) or not token:
                raise ImisAuthError("iMIS answered the login without an access_token")
            margin = min(TOKEN_MARGIN, lifetime / 2)
            self._token, self._token_until = token, self._clock() + lifetime - margin
            return token

    def _forget_token(self, token: str) -> None:
        with self._token_lock:
            if self._token == token:
                self._token = None

    def _redact(self, text: str) -> str:
        for secret in (self._password, self._token):
            if secret:
                text = text.replace(secret, "***")
        return text

    # -- transport --------------------------------------------------------------------

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return float(min(self._max_backoff, self._backoff * 2**attempt))

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str | int | float | bool | None]] | None = None,
        data: Mapping[str, str] | None = None,
        body: Any = None,
        auth: bool = True,
        idempotent: bool = True,
        pacer: Pacer | None = None,
    ) -> httpx.Response:
        """One request with the retry rules; returns any answer that is not retried.

        A non-idempotent request (an insert) is retried only when iMIS surely did not
        process it (no connection, 429, 503): a repeated insert would duplicate the row.
        With a ``pacer``, every attempt takes one of its slots, and a 429 or 503 slows it.
        """
        request = f"{method} /{path}"
        content = None
        if body is not None:
            content = json.dumps(body, default=json_default, ensure_ascii=False).encode()
        attempt, refreshed = 0, False
        while True:
            headers = {"Content-Type": "application/json"} if content is not None else {}
            token = self.token() if auth else ""
            if auth:
                headers["Authorization"] = f"Bearer {token}"
            started = time.perf_counter()
            slot: AbstractContextManager[int] = pacer.call() if pacer else nullcontext(0)
            try:
                with slot as started_in:
                    response = self._http.request(
                        method, f"{self.base_url}/{path}", params=params, data=data,
                        content=content, headers=headers,
                    )  # fmt: skip
            except httpx.TransportError as exc:
                unsent = isinstance(
                    exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                )
                reason = (
                    "timed out" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
                )
                log.debug("%s: %s", request, reason)
                if not idempotent and not unsent:
                    raise ImisRequestError(
                        None,
                        f"{reason}; the write may or may not have been applied",
                        request=request,
                    ) from exc
                if attempt >= self._retries:
                    raise ImisUnavailable(
                        f"iMIS did not answer {request} ({reason}) after {attempt + 1} attempts"
                    ) from exc
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            status = response.status_code
            log.debug("%s -> %d (%.0f ms)", request, status, (time.perf_counter() - started) * 1000)
            if status == 401 and auth and not refreshed:
                refreshed = True
                self._forget_token(token)
                continue
            if status == 429 or status >= 500:
                retry_after = _retry_after(response)
                if pacer is not None and status in (429, 503):
                    pacer.throttled(started_in, retry_after, status)
                if not idempotent and status not in (429, 503):
                    return response
                if attempt >= self._retries:
                    raise ImisUnavailable(
                        f"iMIS answered {status} to {request} after {attempt + 1} attempts: "
                        f"{self._message(response)}"
                    )
                if retry_after is not None and retry_after > self._max_backoff:
                    raise ImisUnavailable(
                        f"iMIS answered {status} to {request} and asked to retry after "
                        f"{retry_after:.0f} s (more than max_backoff {self._max_backoff:.0f} s)"
                    )
                self._sleep(self._delay(attempt, retry_after))
                attempt += 1
                continue
            if pacer is not None:
                pacer.succeeded()
            return response

    def _message(self, response: httpx.Response) -> str:
        return self._redact(error_message(response))

    def _call(self, method: str, path: str, **options: Any) -> Any:
        """A request whose 4xx becomes ``ImisRequestError``; returns the decoded JSON answer."""
        response = self._send(method, path, **options)
        request = f"{method} /{path}"
        if response.status_code == 401:
            raise ImisAuthError(
                f"iMIS refused {request} with a fresh token: {self._message(response)}"
            )
        if response.status_code >= 400:
            raise ImisRequestError(response.status_code, self._message(response), request=request)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            raise ImisRequestError(
                response.status_code, "the answer is not JSON", request=request
            ) from None

    # -- queries ----------------------------------------------------------------------

    def query_pages(
        self, query_name: str, parameters: Sequence[Any], page_size: int = 100
    ) -> Iterator[ImisPage]:
        """Run an IQA page by page. ``parameters`` are positional: one ``parameter=`` per
        prompt filter in the query's order, blanks included."""
        params = [("QueryName", query_name)]
        decode = decode_iqa_row if self.query_endpoint == "iqa" else decode_query_row
        tail = [("parameter", parameter_text(value, self._separator)) for value in parameters]
        path = f"api/{self.query_endpoint}"
        for items, total, offset in self._paged(path, params, tail, page_size):
            yield ImisPage([decode(item) for item in items], total, offset)

    def _paged(
        self,
        path: str,
        head: Sequence[tuple[str, str]],
        tail: Sequence[tuple[str, str]],
        page_size: int,
        pacer: Pacer | None = None,
    ) -> Iterator[tuple[list[Any], int, int]]:
        # The documented order: QueryName, offset, limit, then the positional parameters.
        limit = max(1, min(MAX_PAGE_SIZE, page_size))
        offset = 0
        while True:
            paging = [("offset", str(offset)), ("limit", str(limit))]
            answer = self._call("GET", path, params=[*head, *paging, *tail], pacer=pacer)
            if not isinstance(answer, dict):
                raise ImisRequestError(
                    200, "the answer is not a paged result", request=f"GET /{path}"
                )
            items = answer.get("Items", {}).get("$values", [])
            yield items, int(answer.get("TotalCount") or 0), offset
            next_offset = int(answer.get("NextOffset") or 0)
            if not answer.get("HasNext") or not items:
                return
            offset = next_offset if next_offset > offset else offset + len(items)

    def prompt_filters(self, query_name: str) -> list[dict[str, Any]]:
        """The query's filters with their prompts, in the query's order (FindByPath)."""
        answer = self._call("POST", FIND_BY_PATH, body=find_by_path(query_name))
        definition = answer.get("Result", answer) if isinstance(answer, dict) else None
        if not isinstance(definition, dict):
            raise ImisRequestError(
                404, f"no query at {query_name!r}", request=f"POST /{FIND_BY_PATH}"
            )
        return prompt_filters_of(definition)

    # -- entities ---------------------------------------------------------------------

    def _path(self, entity: str, identity: str | None = None) -> str:
        path = f"api/{quote(entity, safe='')}"
        return f"{path}/{quote(identity, safe='~')}" if identity is not None else path

    def find(
        self, entity: str, criteria: Mapping[str, Any], *, pacer: Pacer | None = None
    ) -> list[ImisEntity]:
        """Entities whose properties equal ``criteria`` (``?Field=eq:value``), all pages."""
        params = [
            (name, "eq:" + parameter_text(value, self._separator))
            for name, value in criteria.items()
        ]
        return self._find(entity, params, pacer)

    def find_in(
        self, entity: str, field: str, values: Sequence[Any], *, pacer: Pacer | None = None
    ) -> list[ImisEntity]:
        """Entities whose ``field`` is one of ``values`` (``?Field=in:v1|v2|...``, ASI's
        form), all pages. No value may hold a ``|``."""
        texts = [parameter_text(value, self._separator) for value in values]
        if not texts or any(IN_SEPARATOR in text for text in texts):
            raise ValueError(f"In takes one or more values without {IN_SEPARATOR!r}")
        return self._find(entity, [(field, "in:" + IN_SEPARATOR.join(texts))], pacer)

    def _find(
        self, entity: str, params: list[tuple[str, str]], pacer: Pacer | None
    ) -> list[ImisEntity]:
        pages = self._paged(self._path(entity), params, (), MAX_PAGE_SIZE, pacer)
        return [decode_entity(item, entity) for items, _total, _offset in pages for item in items]

    def get(self, entity: str, identity: str) -> ImisEntity:
        return decode_entity(self._call("GET", self._path(entity, identity)) or {}, entity)

    def insert(
        self,
        entity: str,
        properties: Mapping[str, Any],
        *,
        parent: str = "Party",
        pacer: Pacer | None = None,
    ) -> ImisEntity:
        """Add an entity; its new key comes from ``Identity.IdentityElements``."""
        body = generic_entity(entity, (), properties, parent)
        path = self._path(entity)
        answer = self._call("POST", path, body=body, idempotent=False, pacer=pacer)
        if isinstance(answer, dict):
            return decode_entity(answer, entity)
        return ImisEntity("", dict(properties))

    def update(
        self,
        entity: str,
        identity: str,
        properties: Mapping[str, Any],
        *,
        parent: str = "Party",
        pacer: Pacer | None = None,
    ) -> ImisEntity:
        """Change the given properties. A Party is read whole, changed and put back (iMIS
        has no partial update for it); other entities get only these properties."""
        path = self._path(entity, identity)
        if entity.lower() == "party":
            party = self._call("GET", path, pacer=pacer)
            if not isinstance(party, dict):
                raise ImisRequestError(
                    None, "the Party answer is not an object", request=f"GET /{path}"
                )
            for name, value in properties.items():
                set_party_property(party, name, value)
            answer = self._call("PUT", path, body=party, pacer=pacer)
        else:
            body = generic_entity(entity, elements_of(identity), properties, parent)
            answer = self._call("PUT", path, body=body, pacer=pacer)
        if isinstance(answer, dict):
            return decode_entity(answer, entity)
        return ImisEntity(identity, dict(properties), tuple(elements_of(identity)))

    def delete(self, entity: str, identity: str, *, pacer: Pacer | None = None) -> None:
        self._call("DELETE", self._path(entity, identity), pacer=pacer)
