"""Every ``IDMS_WEBHOOKS_*`` setting: its default and one line of meaning, read once."""

from __future__ import annotations

import functools
import importlib.metadata
import re
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from limits import RateLimitItem, parse_many

from .errors import ConfigurationError

PREFIX = "IDMS_WEBHOOKS_"
#: Where an app keeps the extension's state: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "idms_webhooks"

#: key (without prefix) -> (default, meaning). The single place a setting is defined.
SETTINGS: dict[str, tuple[Any, str]] = {
    "REDIS_URL": (None, "Redis URL of the job store and queue; required."),
    "URL_PREFIX": ("/idms", "Prefix of every route."),
    "PUBLIC_URL": (None, "Public base URL for Location/PollingUrl; else taken from the request."),
    "RETRY_AFTER": (30, "Retry-After of a queued job, and the most a running one is told."),
    "RETRY_AFTER_MIN": (2, "The least Retry-After of a running job (its estimated time left)."),
    "RESULT_TTL": ("7d", "How long a finished job's record is kept, from the end of the job."),
    "JOB_TIMEOUT": ("6h", "Default job timeout (a task may override)."),
    "TASKS_FILE": (None, "TOML task file; unset means Python-registered tasks only."),
    "ADMIN_TOKEN": (None, "Bearer token of the admin routes; unset means they answer 401."),
    "SECRET_KEY": (None, "Secret of job tokens and derived task keys; falls back to SECRET_KEY."),
    "QUEUE_NAME": ("idms-webhooks", "RQ queue the jobs go to."),
    "MAX_BODY_SIZE": (64 * 1024, "Largest request body accepted, in bytes (413 above)."),
    "MAX_ROW_ERRORS": (50, "Row errors kept in a job record."),
    "HEARTBEAT_TIMEOUT": (60, "Seconds without a heartbeat before a running job is sealed failed."),
    "STORE_OUTAGE": ("120s", "How long a worker rides out Redis being away, retrying, mid-job."),
    "START_ATTEMPTS": (3, "Times a job whose task code never started is dispatched again."),
    "CANCEL_GRACE": ("30s", "Wait for a running job to stop itself before its process is killed."),
    "SCHEDULER_LEASE": (
        "15s",
        "How long the scheduler role outlives its holder: a successor within it.",
    ),
    "SCHEDULE_SECONDS": (False, "Accept a leading seconds field (6-field cron): tests and demos."),
    "REDIS_TIMEOUT": (1.0, "Socket and connect timeout of the web side's Redis client, seconds."),
    "DOCS_PATH": ("/docs", "Swagger UI path under the prefix (standalone Api only)."),
    "LOG_FORMAT": ("text", "The extension's log lines: text, or json (one JSON object a line)."),
    "METRICS_PUBLIC": (False, "Serve /metrics without the admin token (for a scraper)."),
    "CALLBACK_HOSTS": (
        (),
        "Host globs a CallbackUrl may name; empty: callbacks are refused (422).",
    ),
    "CALLBACK_ALLOW_HTTP": (
        False,
        "Accept http:// CallbackUrls (else https only): tests, private nets.",
    ),
    "CALLBACK_ALLOW_PRIVATE": (
        False,
        "Deliver callbacks to loopback, private and link-local addresses (else refused).",
    ),
    "CALLBACK_RETRY_FOR": ("24h", "How long a callback is retried, from the end of its job."),
    "CALLBACK_BACKOFF": ("10s", "Wait before a callback's first retry; doubles, up to an hour."),
    "CALLBACK_TIMEOUT": ("10s", "Time a callback's receiver has to answer (at most 60 s)."),
    "RATE_LIMIT": (None, 'Triggers per task, e.g. "60/minute" (unset: none; a task may override).'),
    "AUTH_FAILURE_LIMIT": ("20/minute", "Failed credentials per client address, then 429 not 401."),
    "POLL_RATE_LIMIT": (None, 'Polls per client address, e.g. "600/minute" (unset: none).'),
    "PROXY_FIX": (None, 'Trust proxy headers: ProxyFix\'s "x_for=1,x_proto=1", or N for x_for=N.'),
}


@functools.cache
def package_version() -> str:
    """This distribution's version ("0" when run from a tree that is not installed)."""
    try:
        return importlib.metadata.version("flask-idms-webhooks")
    except importlib.metadata.PackageNotFoundError:
        return "0"


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> int:
    """Seconds from an integer or a string ``"<n>s|m|h|d"``; ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"not a duration (seconds, or '<n>s|m|h|d'): {value!r}")
    if seconds <= 0:
        raise ValueError(f"a duration must be positive: {value!r}")
    return seconds


#: No rate limit: what an unset, empty or "off" setting means.
NO_LIMIT = ("", "off")
#: The keyword arguments of werkzeug's ``ProxyFix`` (the number of proxies trusted for each).
PROXY_FIX_HEADERS = ("x_for", "x_proto", "x_host", "x_port", "x_prefix")


def parse_rate_limit(value: object) -> tuple[RateLimitItem, ...]:
    """Rate limits in flask-limiter's notation (``"60/minute"``, ``"10 per 2 seconds"``,
    several separated by ``;``); ``()`` for None, ``""`` or ``"off"``; ``ValueError``
    otherwise."""
    if value is None or (isinstance(value, str) and value.strip().lower() in NO_LIMIT):
        return ()
    if not isinstance(value, str):
        raise ValueError(f'not a rate limit (e.g. "60/minute"): {value!r}')
    try:
        items = tuple(parse_many(value.strip()))
    except ValueError:
        raise ValueError(
            f'not a rate limit (e.g. "60/minute", "10 per 2 seconds", "5/second;100/hour"): '
            f"{value!r}"
        ) from None
    if any(item.amount <= 0 for item in items):
        raise ValueError(f'a rate limit allows at least 1 (use "off" for none): {value!r}')
    return items


def parse_proxy_fix(value: object) -> dict[str, int]:
    """ProxyFix's keyword arguments from ``"x_for=1,x_proto=1"``, or from a number N
    (``x_for=N``: the client address only); ``{}`` for None, ``""``, 0 or ``"off"``;
    ``ValueError`` otherwise."""
    text = "" if value is None else str(value).strip()
    if text.lower() in ("", "0", "off"):
        return {}
    if text.isdigit() and not isinstance(value, bool):
        return {"x_for": int(text)}
    trusted: dict[str, int] = {}
    for part in text.split(","):
        name, _, hops = (piece.strip() for piece in part.partition("="))
        if name not in PROXY_FIX_HEADERS or not hops.isdigit():
            raise ValueError(
                "not a ProxyFix configuration (a number of proxies, for x_for, or "
                f"{', '.join(f'{header}=N' for header in PROXY_FIX_HEADERS)} separated by "
                f"commas): {value!r}"
            )
        if int(hops):
            trusted[name] = int(hops)
    return trusted


@dataclass(frozen=True)
class Settings:
    """The settings of one app, validated."""

    redis_url: str
    url_prefix: str
    public_url: str | None
    retry_after: int
    retry_after_min: int
    result_ttl: int
    job_timeout: int
    tasks_file: str | None
    admin_token: str | None
    secret_key: bytes
    queue_name: str
    max_body_size: int
    max_row_errors: int
    heartbeat_timeout: int
    store_outage: int
    start_attempts: int
    cancel_grace: int
    scheduler_lease: int
    schedule_seconds: bool
    redis_timeout: float
    docs_path: str
    log_format: str = "text"
    metrics_public: bool = False
    callback_hosts: tuple[str, ...] = ()
    callback_allow_http: bool = False
    callback_allow_private: bool = False
    callback_retry_for: int = 24 * 3600
    callback_backoff: int = 10
    callback_timeout: int = 10
    rate_limit: tuple[RateLimitItem, ...] = ()
    auth_failure_limit: tuple[RateLimitItem, ...] = ()
    poll_rate_limit: tuple[RateLimitItem, ...] = ()
    proxy_fix: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_app(cls, app: Flask) -> Settings:
        def get(name: str) -> Any:
            return app.config.get(PREFIX + name, SETTINGS[name][0])

        def positive_int(name: str) -> int:
            value = get(name)
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"{PREFIX}{name} must be an integer, got {value!r}"
                ) from None
            if number <= 0 or isinstance(value, bool):
                raise ConfigurationError(f"{PREFIX}{name} must be positive, got {value!r}")
            return number

        def duration(name: str) -> int:
            try:
                return parse_duration(get(name))
            except ValueError as error:
                raise ConfigurationError(f"{PREFIX}{name}: {error}") from None

        def path(name: str) -> str:
            value = str(get(name) or "")
            if value and not value.startswith("/"):
                raise ConfigurationError(f"{PREFIX}{name} must start with '/', got {value!r}")
            return value.rstrip("/")

        def flag(name: str) -> bool:
            value = get(name)
            if isinstance(value, str) and value.strip().lower() in ("", "0", "false", "no"):
                return False
            if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes"):
                return True
            if isinstance(value, bool):
                return value
            raise ConfigurationError(f"{PREFIX}{name} must be true or false, got {value!r}")

        def rate_limit(name: str) -> tuple[RateLimitItem, ...]:
            try:
                return parse_rate_limit(get(name))
            except ValueError as error:
                raise ConfigurationError(f"{PREFIX}{name}: {error}") from None

        def proxy_fix(name: str) -> dict[str, int]:
            try:
                return parse_proxy_fix(get(name))
            except ValueError as error:
                raise ConfigurationError(f"{PREFIX}{name}: {error}") from None

        redis_url = get("REDIS_URL")
        if not redis_url:
            raise ConfigurationError(
                f"{PREFIX}REDIS_URL is not set: give the Redis URL of the job store "
                "(only `make run` starts a private Redis)."
            )
        secret = get("SECRET_KEY") or app.config.get("SECRET_KEY")
        if not secret:
            raise ConfigurationError(
                f"{PREFIX}SECRET_KEY (or Flask's SECRET_KEY) is not set: job tokens and task "
                "keys are signed with it, and every process must share it."
            )
        public_url = get("PUBLIC_URL")
        if public_url and not re.match(r"^https?://[^/]+", str(public_url)):
            raise ConfigurationError(f"{PREFIX}PUBLIC_URL must be an absolute http(s) URL")
        try:
            redis_timeout = float(get("REDIS_TIMEOUT"))
        except (TypeError, ValueError):
            raise ConfigurationError(f"{PREFIX}REDIS_TIMEOUT must be a number of seconds") from None
        log_format = str(get("LOG_FORMAT")).strip().lower()
        if log_format not in ("text", "json"):
            raise ConfigurationError(f"{PREFIX}LOG_FORMAT must be text or json, got {log_format!r}")
        return cls(
            redis_url=str(redis_url),
            url_prefix=path("URL_PREFIX"),
            public_url=str(public_url).rstrip("/") if public_url else None,
            retry_after=positive_int("RETRY_AFTER"),
            retry_after_min=positive_int("RETRY_AFTER_MIN"),
            result_ttl=duration("RESULT_TTL"),
            job_timeout=duration("JOB_TIMEOUT"),
            tasks_file=get("TASKS_FILE") or None,
            admin_token=get("ADMIN_TOKEN") or None,
            secret_key=secret.encode() if isinstance(secret, str) else bytes(secret),
            queue_name=str(get("QUEUE_NAME")),
            max_body_size=positive_int("MAX_BODY_SIZE"),
            max_row_errors=positive_int("MAX_ROW_ERRORS"),
            heartbeat_timeout=positive_int("HEARTBEAT_TIMEOUT"),
            store_outage=duration("STORE_OUTAGE"),
            start_attempts=positive_int("START_ATTEMPTS"),
            cancel_grace=duration("CANCEL_GRACE"),
            scheduler_lease=duration("SCHEDULER_LEASE"),
            schedule_seconds=flag("SCHEDULE_SECONDS"),
            redis_timeout=redis_timeout,
            docs_path=path("DOCS_PATH") or "/docs",
            log_format=log_format,
            metrics_public=flag("METRICS_PUBLIC"),
            callback_hosts=host_globs(PREFIX + "CALLBACK_HOSTS", get("CALLBACK_HOSTS")),
            callback_allow_http=flag("CALLBACK_ALLOW_HTTP"),
            callback_allow_private=flag("CALLBACK_ALLOW_PRIVATE"),
            callback_retry_for=duration("CALLBACK_RETRY_FOR"),
            callback_backoff=duration("CALLBACK_BACKOFF"),
            callback_timeout=at_most(60, "CALLBACK_TIMEOUT", duration("CALLBACK_TIMEOUT")),
            rate_limit=rate_limit("RATE_LIMIT"),
            auth_failure_limit=rate_limit("AUTH_FAILURE_LIMIT"),
            poll_rate_limit=rate_limit("POLL_RATE_LIMIT"),
            proxy_fix=proxy_fix("PROXY_FIX"),
        )


def host_globs(name: str, value: object) -> tuple[str, ...]:
    """Host globs (``*.logic.azure.com``), lowercased: a list of strings, or one string
    of them separated by commas or spaces (from an environment variable)."""
    if isinstance(value, str):
        value = re.split(r"[\s,]+", value)
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ConfigurationError(f"{name} must be a list of host globs, got {value!r}")
    globs = tuple(item.strip().lower() for item in value if item.strip())
    for glob in globs:
        if not re.fullmatch(r"[a-z0-9.*?\[\]:_-]+", glob):
            raise ConfigurationError(f"{name}: {glob!r} is not a host glob (e.g. *.example.com)")
    return globs


def at_most(limit: int, name: str, seconds: int) -> int:
    if seconds > limit:
        raise ConfigurationError(f"{PREFIX}{name} must be at most {limit} s, got {seconds} s")
    return seconds
