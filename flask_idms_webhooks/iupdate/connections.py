"""Connection profiles (``[connections.NAME]`` of a task file) made into adapters.

One app's iMIS clients and SQL engines live in its :class:`Connections`, made lazily,
once per profile: the engine runs in RQ's forked work-horse, and a connection pool must
not cross a fork (a work-horse forgets what it inherited, as it does the Redis client).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TaskLoadError
from ..model.tasks import Source, Target
from .base import SourceAdapter, TargetAdapter

if TYPE_CHECKING:
    import sqlalchemy as sa

    from .imis import ImisClient

KINDS = {
    "imis": {"required": {"base_url", "username", "password"},
             "optional": {"query_endpoint", "separator", "timeout", "retries",
                          "max_concurrency", "batch_match"}},
    "sql": {"required": {"url"}, "optional": set()},
}  # fmt: skip
QUERY_ENDPOINTS = ("iqa", "query")
#: Calls in flight per running job against iMIS, unless ``max_concurrency`` says.
DEFAULT_MAX_CONCURRENCY = 4
MAX_CONCURRENCY = 64


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _non_empty_string(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _concurrency(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_CONCURRENCY


def _boolean(value: Any) -> bool:
    return isinstance(value, bool)


#: Optional profile keys with their check and what they must be.
PROFILE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "timeout": (_positive_number, "a number of seconds above 0"),
    "retries": (_whole_number, "a whole number from 0"),
    "separator": (_non_empty_string, "a non-empty string"),
    "max_concurrency": (_concurrency, f"a whole number from 1 to {MAX_CONCURRENCY}"),
    "batch_match": (_boolean, "true or false"),
}


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


def _max_concurrency(profile: Mapping[str, Any]) -> int:
    return int(profile.get("max_concurrency", DEFAULT_MAX_CONCURRENCY))


ProfileKey = tuple[str, tuple[tuple[str, str], ...]]
Profiles = Mapping[str, Mapping[str, Any]]


def _profile(name: str | None, connections: Profiles) -> Mapping[str, Any]:
    if name is None or name not in connections:
        raise TaskLoadError(f"no [connections.{name}] for this task", key="connection")
    return connections[name]


class Connections:
    """The iMIS clients and SQL engines of one app's tasks, one per profile, made on first
    use and kept for the next job (a forking worker's work-horse starts without any)."""

    def __init__(self) -> None:
        self._made: dict[ProfileKey, Any] = {}
        self._lock = threading.Lock()

    def _get(self, kind: str, profile: Mapping[str, Any], make: Callable[[], Any]) -> Any:
        key = (kind, tuple(sorted((k, str(v)) for k, v in profile.items())))
        with self._lock:
            if key not in self._made:
                self._made[key] = make()
            return self._made[key]

    def imis_client(self, profile: Mapping[str, Any]) -> ImisClient:
        """The client of an iMIS profile."""
        from .imis import ImisClient

        def make() -> ImisClient:
            options: dict[str, Any] = {
                "query_endpoint": profile.get("query_endpoint", "iqa"),
                "separator": profile.get("separator", ","),
            }
            if "timeout" in profile:
                options["timeout"] = float(profile["timeout"])
            if "retries" in profile:
                options["retries"] = int(profile["retries"])
            # Room for every call a job keeps in flight, and its source's read ahead.
            options["max_connections"] = _max_concurrency(profile) + 2
            return ImisClient(
                profile["base_url"], profile["username"], profile["password"], **options
            )

        client: ImisClient = self._get("imis", profile, make)
        return client

    def sql_engine(self, profile: Mapping[str, Any]) -> sa.Engine:
        """The engine of a SQL profile."""
        from .sql import create_engine

        engine: sa.Engine = self._get("sql", profile, lambda: create_engine(profile["url"]))
        return engine

    def source(self, source: Source, profiles: Profiles) -> SourceAdapter:
        profile = _profile(source.connection, profiles)
        if profile["kind"] == "imis":
            from .imis import ImisSource

            return ImisSource(self.imis_client(profile), source.query, page_size=source.page_size)
        from .sql import SqlSource

        return SqlSource(self.sql_engine(profile), source.query, page_size=source.page_size)

    def target(self, target: Target, profiles: Profiles) -> TargetAdapter:
        profile = _profile(target.connection, profiles)
        if profile["kind"] == "imis":
            from .imis import ImisTarget

            return ImisTarget(
                self.imis_client(profile),
                target.entity,
                max_concurrency=_max_concurrency(profile),
                batch_match=bool(profile.get("batch_match", False)),
            )
        from .sql_target import SqlTarget

        return SqlTarget(self.sql_engine(profile), target.entity)

    def close(self) -> None:
        """Close every client and engine (shutdown, tests)."""
        with self._lock:
            made, self._made = list(self._made.values()), {}
        for made_one in made:
            if hasattr(made_one, "dispose"):
                made_one.dispose()
            else:
                made_one.close()

    def forget_inherited(self) -> None:
        """In a forked child: drop the parent's clients and engines without closing them
        (their sockets are still the parent's)."""
        self._lock = threading.Lock()  # the parent may have held it while forking
        for made_one in self._made.values():
            if hasattr(made_one, "dispose"):
                made_one.dispose(close=False)
        self._made = {}


#: A ``${NAME}`` reference to an environment variable in a task file.
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_environment(value: Any, path: str, where: dict[str, str]) -> Any:
    """Replace ``${NAME}`` by the environment variable NAME in every string, recursively."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise TaskLoadError(f"environment variable {name} is not set", key=path, **where)
            return os.environ[name]

        return ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, list):
        return [expand_environment(item, f"{path}[{i}]", where) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {
            k: expand_environment(v, f"{path}.{k}" if path else k, where) for k, v in value.items()
        }
    return value


#: Why a secret written in a task file is refused.
FROM_THE_ENVIRONMENT = 'write it as "${AN_ENVIRONMENT_VARIABLE}": credentials never sit in the file'


def literal_secret(value: Any) -> bool:
    """Whether a secret is written in the task file itself (not ``${NAME}``)."""
    return isinstance(value, str) and bool(value) and not ENV_REFERENCE.search(value)


def refuse_literal_secrets(name: str, profile: Any, source: str) -> None:
    """Credentials come from the environment (``${NAME}``), never written in the file."""
    if not isinstance(profile, dict):
        return
    if literal_secret(profile.get("password")):
        raise TaskLoadError(FROM_THE_ENVIRONMENT, source=source, key=f"connections.{name}.password")
    url = profile.get("url")
    if isinstance(url, str) and not ENV_REFERENCE.search(url):
        from sqlalchemy.engine import make_url  # only for files that connect to SQL
        from sqlalchemy.exc import ArgumentError

        try:
            literal = make_url(url).password
        except ArgumentError:
            return
        if literal:
            raise TaskLoadError(
                'holds a password: give the URL (or its password) as "${AN_ENVIRONMENT_VARIABLE}"',
                source=source,
                key=f"connections.{name}.url",
            )


def resolve_sqlite_path(url: str, base: Path) -> str:
    """A relative SQLite database path, resolved against the task file's folder (so the
    web processes and the workers open the same file); every other URL as it is."""
    from sqlalchemy.engine import make_url  # only for files that connect to SQL
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # the engine reports it when it connects
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database or database == ":memory:":
        return url
    if database.startswith("file:") or Path(database).is_absolute():
        return url
    return parsed.set(database=str(base / database)).render_as_string(hide_password=False)
