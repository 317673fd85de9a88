"""A gunicorn logger whose access log never shows keys, tokens or signatures.

Use it with ``logger_class = "flask_idms_webhooks.accesslog.RedactingLogger"`` (the
shipped ``example_app/gunicorn.conf.py`` does).
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger


def _spelled(char: str) -> str:
    """A pattern for one character as a client may send it: itself, or percent-encoded
    once or more (``?``, ``%3F``, ``%253F``); letters in either case (``k``, ``%4B``)."""
    codes = "|".join(sorted({f"{ord(variant):02X}" for variant in {char.lower(), char.upper()}}))
    return f"(?:{re.escape(char)}|%(?:25)*(?:{codes}))"


def _secret_query() -> re.Pattern[str]:
    # A path sent as ``/jobs%3Fkey=...`` is not a query to Werkzeug, but the key is in the
    # request line all the same: match the separators, the names and ``=`` however they
    # are encoded. A value ends at a separator (raw or encoded) or whitespace.
    separator = "|".join(_spelled(char) for char in "?&;")
    name = "|".join("".join(map(_spelled, word)) for word in ("key", "token", "signature"))
    value = r"(?:(?!%(?:25)*(?:26|3B))[^&;\s])*"
    return re.compile(f"(?i)((?:^|{separator})(?:{name}){_spelled('=')}){value}")


SECRET_QUERY = _secret_query()
SECRET_NAMES = re.compile(r"(?i)authorization|webhook[-_]key|signature|cookie")
REDACTED = "[redacted]"


def redact_query(text: str) -> str:
    """``a?key=s3cret&x=1`` -> ``a?key=[redacted]&x=1``; ``a%3Fkey=s3cret`` too."""
    return SECRET_QUERY.sub(lambda match: match.group(1) + REDACTED, text)


class RedactingLogger(Logger):  # type: ignore[misc]
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        # Every atom: the request line, the query, the referer, and the {header}i /
        # {variable}e atoms that repeat them (RAW_URI, QUERY_STRING, HTTP_AUTHORIZATION...).
        for name, value in atoms.items():
            if SECRET_NAMES.search(name):
                atoms[name] = REDACTED
            elif isinstance(value, str):
                atoms[name] = redact_query(value)
        return atoms
