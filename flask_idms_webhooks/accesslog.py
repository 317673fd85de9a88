"""A gunicorn logger whose access log never shows keys, tokens or signatures.

Use it with ``logger_class = "flask_idms_webhooks.accesslog.RedactingLogger"`` (the
shipped ``example_app/gunicorn.conf.py`` does).
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

SECRET_QUERY = re.compile(r"(?i)((?:^|[?&;])(?:key|token|signature)=)[^&;\s]*")
SECRET_NAMES = re.compile(r"(?i)authorization|webhook[-_]key|signature|cookie")
REDACTED = "[redacted]"


def redact_query(text: str) -> str:
    """``a?key=s3cret&x=1`` -> ``a?key=[redacted]&x=1``."""
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
