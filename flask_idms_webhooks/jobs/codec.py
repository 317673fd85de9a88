"""How job records are written and read (JSON), and what a Redis error means for the
caller (``StoreUnavailable``, with whether the request's writes may have run)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import orjson
import redis

from ..errors import StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")

#: The standard library's equivalent of ``orjson.dumps``, for what orjson refuses.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(document: object) -> bytes:
    """A record as compact UTF-8 JSON. orjson (a tenth of the standard library's time on
    a job document: the trigger and every progress write pay it); the standard library
    for what orjson refuses (an int beyond 64 bits), which then raises as it would. Such
    a record starts with a space (JSON whitespace), so that ``loads`` reads it with the
    standard library too: orjson would read an int beyond 64 bits as a float."""
    try:
        return orjson.dumps(document)
    except TypeError:
        return b" " + _ENCODER.encode(document).encode()


def loads(record: bytes | str) -> Any:
    """A stored record, parsed: orjson, or the standard library for a record ``dumps``
    marked as its (a leading space) and for one orjson refuses (a NaN an older writer
    stored)."""
    data = record.encode() if isinstance(record, str) else record
    if data[:1] != b" ":
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


#: What redis-py raises when Redis cannot serve us now (as opposed to a bug of ours).
STORE_ERRORS = (
    redis.ConnectionError,  # refused, dropped, loading (BusyLoadingError)
    redis.TimeoutError,
    redis.OutOfMemoryError,  # at maxmemory with noeviction
    redis.ReadOnlyError,  # a replica after a failover
    redis.exceptions.ExecAbortError,  # a transaction Redis refused (out of memory, queued)
)
#: Answers Redis gives while it cannot serve, that redis-py has no class for.
TRANSIENT_REPLIES = ("MISCONF", "BUSY", "MASTERDOWN", "NOREPLICAS", "TRYAGAIN", "OOM")


def is_store_error(error: BaseException) -> bool:
    """Whether an error of redis-py means Redis cannot serve now."""
    return isinstance(error, STORE_ERRORS) or (
        isinstance(error, redis.ResponseError) and str(error).startswith(TRANSIENT_REPLIES)
    )


def unavailable(error: redis.RedisError) -> StoreUnavailable:
    """The ``StoreUnavailable`` for an error of redis-py. A connection that never opened
    (redis-py says "... connecting to ...") or a command Redis refused (out of memory,
    loading, read-only) changed nothing; any other timeout or dropped connection came
    after the commands were written, and they may have run."""
    refused = isinstance(error, redis.ResponseError) or "connecting" in str(error)
    return StoreUnavailable(f"{type(error).__name__}: {error}", sent=not refused)


def available(method: Callable[P, R]) -> Callable[P, R]:
    """Turn Redis being unreachable, stalled or refusing writes into ``StoreUnavailable``.
    (A decorator, not a context manager: a generator per call is a measurable part of a
    poll.)"""

    @functools.wraps(method)
    def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as error:
            if not is_store_error(error):
                raise
            raise unavailable(error) from error

    return translated
