"""One attempt of a completion callback over the network: the receiver's name resolved
once, its addresses checked, the POST sent to the address that was checked, its answer
read (a little of it), and what the attempt came to.

The connection goes to the checked address, not to the name again: the URL is requested
with the address as its host, the ``Host`` header and TLS (SNI and the certificate
check) keep the real name. So a name that resolves to a public address at the check and
to a private one a moment later (DNS rebinding) cannot steer the POST. Redirects are not
followed; no proxy from the environment is used (it would connect elsewhere).
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import socket
import time
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx

from .callback_policy import Address, address_problem, retry_after_seconds, without_query

#: The most of a receiver's answer that is read (its body is not used).
MAX_ANSWER_BYTES = 4096
#: How long connecting may take at most, in seconds (the timeout, if shorter).
CONNECT_TIMEOUT = 5.0

#: Statuses after which the callback is tried again (besides network errors).
RETRIED_STATUSES = frozenset({408, 429})

#: What an attempt that sent nothing records as its status.
ADDRESS_REFUSED = "AddressRefused"
RESOLVE_ERROR = "ResolveError"

logger = logging.getLogger("flask_idms_webhooks")

#: The callback being sent in this context, as it may be logged (no query): httpx logs
#: every request's URL at INFO, and a flow's callback URL carries its credential.
_sending: contextvars.ContextVar[str | None] = contextvars.ContextVar("idms_callback", default=None)


class HiddenQuery(logging.Filter):
    """On httpx's logger: a callback's request line without its query."""

    def filter(self, record: logging.LogRecord) -> bool:
        shown = _sending.get()
        if shown is not None and isinstance(record.args, tuple):
            record.args = tuple(shown if isinstance(arg, httpx.URL) else arg for arg in record.args)
        return True


_HIDDEN_QUERY = HiddenQuery()


def hide_queries_from_httpx() -> None:
    """Install the filter on httpx's logger, once per process."""
    httpx_logger = logging.getLogger("httpx")
    if _HIDDEN_QUERY not in httpx_logger.filters:
        httpx_logger.addFilter(_HIDDEN_QUERY)


class Outcome(NamedTuple):
    """What an attempt came to: its status (an HTTP status, or what went wrong), whether
    the callback was delivered, whether it is tried again, and the receiver's
    ``Retry-After`` in seconds, if it gave one."""

    status: str
    delivered: bool = False
    retry: bool = False
    retry_after: float | None = None


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to, once (``socket.gaierror`` when none)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: dict[Address, None] = {}
    for *_, sockaddr in found:
        addresses[ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])] = None
    return list(addresses)


def answer_outcome(response: httpx.Response) -> Outcome:
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(str(code), delivered=True)
    if code in RETRIED_STATUSES or code >= 500:
        return Outcome(
            str(code),
            retry=True,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    return Outcome(str(code))  # a redirect (not followed) or a refusal: not tried again


class Sender:
    """Sends the attempts of one app's callbacks (its address rule and timeout)."""

    def __init__(self, *, allow_private: bool, timeout: float, user_agent: str) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self.user_agent = user_agent
        hide_queries_from_httpx()

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """POST ``body`` to ``url`` once; never raises for the network's or the
        receiver's doing."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        shown = without_query(url)
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as error:
            logger.warning(
                "callback to %s: %s not resolved (%s)", shown, host, type(error).__name__
            )
            return Outcome(RESOLVE_ERROR, retry=True)
        for address in addresses:
            problem = address_problem(address, allow_private=self.allow_private)
            if problem is not None:
                logger.warning("callback to %s refused: %s resolves to %s", shown, host, problem)
                return Outcome(ADDRESS_REFUSED)
        return self._post(url, addresses[0], body, headers)

    def _post(self, url: str, address: Address, body: bytes, headers: Mapping[str, str]) -> Outcome:
        parts = urlsplit(url)
        host = parts.hostname or ""
        target = httpx.URL(url).copy_with(host=str(address))
        sent = {
            **headers,
            "Host": parts.netloc.rpartition("@")[2],
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
        }
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        timeout = httpx.Timeout(self.timeout, connect=min(CONNECT_TIMEOUT, self.timeout))
        deadline = time.monotonic() + 2 * self.timeout
        token = _sending.set(without_query(url))
        try:
            with (
                httpx.Client(
                    # trust_env: SSL_CERT_FILE / SSL_CERT_DIR only (a private CA); the
                    # client itself ignores proxies and .netrc.
                    verify=httpx.create_ssl_context(trust_env=True),
                    trust_env=False,
                    follow_redirects=False,
                    timeout=timeout,
                ) as client,
                client.stream(
                    "POST", target, content=body, headers=sent, extensions=extensions
                ) as response,
            ):
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read >= MAX_ANSWER_BYTES or time.monotonic() > deadline:
                        break
                return answer_outcome(response)
        except httpx.TimeoutException:
            return Outcome("Timeout", retry=True)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL):
            return Outcome("InvalidUrl")
        except httpx.TransportError as error:  # refused, reset, TLS, protocol
            return Outcome(type(error).__name__, retry=True)
        finally:
            _sending.reset(token)
