"""Where completion callbacks may go (``IDMS_WEBHOOKS_CALLBACK_*``), and when a failed
one is tried again: the rules, without the network.

A CallbackUrl is checked twice. When a job is triggered, its form: https (http only with
``CALLBACK_ALLOW_HTTP``), a host matching ``CALLBACK_HOSTS``, no user name or password, a
bounded length, no literal address the delivery would refuse. When it is delivered, the
addresses its host resolves to (``address_problem``): a name can resolve anywhere.
"""

from __future__ import annotations

import email.utils
import fnmatch
import ipaddress
import random
import time
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from ..config import PREFIX, Settings

#: The longest CallbackUrl accepted (a flow's callback URL is about 400 characters).
MAX_CALLBACK_URL = 2048
#: The longest wait between two attempts of a callback, in seconds (before jitter).
MAX_BACKOFF = 3600
#: Cloud metadata services: refused even with ``CALLBACK_ALLOW_PRIVATE`` (nothing a
#: callback is for answers there, and their answers hold credentials).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def without_query(url: str) -> str:
    """A URL as it is shown and logged: scheme, host and path; no query (a flow's callback
    URL carries its credential there), no fragment, no user name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return SplitResult(parts.scheme, netloc, parts.path, "", "").geturl()


def address_problem(address: Address, *, allow_private: bool) -> str | None:
    """Why a callback may not be sent to ``address``, if it may not."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if address.is_multicast or address.is_unspecified:
        return f"{address} is not an address a callback can be sent to"
    if not allow_private and not address.is_global:
        return (
            f"{address} is a loopback, private, link-local or reserved address "
            f"(allowed only with {PREFIX}CALLBACK_ALLOW_PRIVATE)"
        )
    return None


@dataclass(frozen=True)
class CallbackPolicy:
    """The callback settings of one app, applied."""

    hosts: tuple[str, ...]
    allow_http: bool
    allow_private: bool
    retry_for: int
    backoff: int
    timeout: int

    @classmethod
    def of(cls, settings: Settings) -> CallbackPolicy:
        return cls(
            hosts=settings.callback_hosts,
            allow_http=settings.callback_allow_http,
            allow_private=settings.callback_allow_private,
            retry_for=settings.callback_retry_for,
            backoff=settings.callback_backoff,
            timeout=settings.callback_timeout,
        )

    def url_problem(self, url: object) -> str | None:
        """Why a trigger's CallbackUrl is refused (a sentence naming it), if it is."""
        if not self.hosts:
            return (
                f"Callbacks are not enabled on this server ({PREFIX}CALLBACK_HOSTS is "
                "empty): CallbackUrl is refused."
            )
        if not isinstance(url, str) or not url:
            return "CallbackUrl must be a non-empty string (an https URL)."
        if len(url) > MAX_CALLBACK_URL:
            return f"CallbackUrl must be at most {MAX_CALLBACK_URL} characters."
        if any(char.isspace() or not char.isprintable() for char in url):
            return "CallbackUrl must not hold spaces or control characters."
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (a bad port raises here)
        except ValueError:
            return "CallbackUrl is not a valid URL."
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme.lower() not in schemes:
            only = "" if self.allow_http else f" (http only with {PREFIX}CALLBACK_ALLOW_HTTP)"
            return f"CallbackUrl must be an https URL{only}."
        if parts.username is not None or parts.password is not None:
            return "CallbackUrl must not carry a user name or password."
        host = parts.hostname
        if not host:
            return "CallbackUrl has no host."
        if not self.host_allowed(host):
            return (
                f"CallbackUrl's host {host!r} is not one this server sends callbacks to "
                f"({PREFIX}CALLBACK_HOSTS)."
            )
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return None
        problem = address_problem(literal, allow_private=self.allow_private)
        return None if problem is None else f"CallbackUrl is refused: {problem}."

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(fnmatch.fnmatchcase(host, glob) for glob in self.hosts)

    def next_wait(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before the attempt after ``attempt`` (from 1): the receiver's
        ``Retry-After`` when it gave one, else the back-off (doubling from
        ``CALLBACK_BACKOFF``, at most an hour), with up to 10 % of jitter so that the
        callbacks of many jobs that failed together do not come back together."""
        if retry_after is not None:
            return max(1.0, retry_after)
        wait = min(self.backoff * 2 ** min(attempt - 1, 32), MAX_BACKOFF)
        return float(wait) * (1 + random.uniform(0, 0.1))


def retry_after_seconds(header: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from now: integer seconds or an HTTP date;
    None when absent or unreadable."""
    if header is None:
        return None
    header = header.strip()
    if header.isascii() and header.isdigit():  # (isdigit alone takes "²")
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
