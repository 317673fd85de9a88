"""Connection profiles (``[connections.NAME]`` of a task file) made into adapters.

Clients and engines are made lazily, once per process: the engine runs in RQ's forked
work-horse, and a connection pool must not cross a fork.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import TaskLoadError
from ..tasks import Source, Target
from .base import SourceAdapter, TargetAdapter

KINDS = {
    "imis": {"required": {"base_url", "username", "password"},
             "optional": {"query_endpoint", "separator", "timeout", "retries"}},
    "sql": {"required": {"url"}, "optional": set()},
}  # fmt: skip
QUERY_ENDPOINTS = ("iqa", "query")


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _non_empty_string(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


#: Optional profile keys with their check and what they must be.
PROFILE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "timeout": (_positive_number, "a number of seconds above 0"),
    "retries": (_whole_number, "a whole number from 0"),
    "separator": (_non_empty_string, "a non-empty string"),
}

_clients: dict[tuple[int, str, tuple[tuple[str, str], ...]], Any] = {}


def check_profile(name: str, profile: Mapping[str, Any]) -> None:
    """Raise ``TaskLoadError`` (key ``connections.NAME.KEY``) for a bad profile."""
    if not isinstance(profile, Mapping):
        raise TaskLoadError("must be a table", key=f"connections.{name}")
    kind = profile.get("kind")
    if kind not in KINDS:
        raise TaskLoadError(
            f"kind must be one of {', '.join(KINDS)}, got {kind!r}", key=f"connections.{name}.kind"
        )
    spec = KINDS[kind]
    for key in sorted(spec["required"]):
        if not isinstance(profile.get(key), str) or not profile[key]:
            raise TaskLoadError("is required (a non-empty string)", key=f"connections.{name}.{key}")
    for key in profile:
        if key != "kind" and key not in spec["required"] | spec["optional"]:
            raise TaskLoadError("unknown key", key=f"connections.{name}.{key}")
    for key, (valid, wanted) in PROFILE_CHECKS.items():
        if key in profile and not valid(profile[key]):
            raise TaskLoadError(
                f"must be {wanted}, got {profile[key]!r}", key=f"connections.{name}.{key}"
            )
    endpoint = profile.get("query_endpoint", "iqa")
    if kind == "imis" and endpoint not in QUERY_ENDPOINTS:
        raise TaskLoadError(
            f"must be 'iqa' or 'query', got {endpoint!r}", key=f"connections.{name}.query_endpoint"
        )


def _cached(kind: str, profile: Mapping[str, Any], make: Any) -> Any:
    key = (os.getpid(), kind, tuple(sorted((k, str(v)) for k, v in profile.items())))
    if key not in _clients:
        _clients[key] = make()
    return _clients[key]


def close_all() -> None:
    """Close this process's iMIS clients and SQL engines (tests, shutdown)."""
    from .sql import dispose_engines

    for client in _clients.values():
        close = getattr(client, "close", None)
        if close is not None:
            close()
    _clients.clear()
    dispose_engines()


def imis_client(profile: Mapping[str, Any]) -> Any:
    from .imis import ImisClient

    def make() -> Any:
        options: dict[str, Any] = {
            "query_endpoint": profile.get("query_endpoint", "iqa"),
            "separator": profile.get("separator", ","),
        }
        if "timeout" in profile:
            options["timeout"] = float(profile["timeout"])
        if "retries" in profile:
            options["retries"] = int(profile["retries"])
        return ImisClient(profile["base_url"], profile["username"], profile["password"], **options)

    return _cached("imis", profile, make)


def sql_engine(profile: Mapping[str, Any]) -> Any:
    from .sql import engine_for

    return _cached("sql", profile, lambda: engine_for(profile["url"]))


def _profile(name: str | None, connections: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    if name is None or name not in connections:
        raise TaskLoadError(f"no [connections.{name}] for this task", key="connection")
    return connections[name]


def source_adapter(source: Source, connections: Mapping[str, Mapping[str, Any]]) -> SourceAdapter:
    profile = _profile(source.connection, connections)
    if profile["kind"] == "imis":
        from .imis import ImisSource

        return ImisSource(imis_client(profile), source.query, page_size=source.page_size)
    from .sql import SqlSource

    return SqlSource(sql_engine(profile), source.query, page_size=source.page_size)


def target_adapter(target: Target, connections: Mapping[str, Mapping[str, Any]]) -> TargetAdapter:
    profile = _profile(target.connection, connections)
    if profile["kind"] == "imis":
        from .imis import ImisTarget

        return ImisTarget(imis_client(profile), target.entity)
    from .sql import SqlTarget

    return SqlTarget(sql_engine(profile), target.entity)
