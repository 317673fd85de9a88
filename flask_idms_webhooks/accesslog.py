"""A gunicorn logger whose access log never shows keys, tokens or signatures.

Use it with ``logger_class = "flask_idms_webhooks.accesslog.RedactingLogger"`` (the
shipped ``example_app/gunicorn.conf.py`` does).
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

SECRET_QUERY = re.compile(r"(?i)((?:^|[?&;])(?:key|token|signature)=)[^&;\s]*")
SECRET_HEADERS = ("{authorization}i", "{x-webhook-key}i", "{webhook-signature}i")
REDACTED = "[redacted]"


def redact_query(text: str) -> str:
    """``a?key=s3cret&x=1`` -> ``a?key=[redacted]&x=1``."""
    return SECRET_QUERY.sub(lambda match: match.group(1) + REDACTED, text)


class RedactingLogger(Logger):  # type: ignore[misc]
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in ("r", "q", "f"):
            if isinstance(atoms.get(name), str):
                atoms[name] = redact_query(atoms[name])
        for name in SECRET_HEADERS:
            if name in atoms:
                atoms[name] = REDACTED
        return atoms
