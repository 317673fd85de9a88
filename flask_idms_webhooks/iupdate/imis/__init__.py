"""iMIS over its REST API: the client (``client``), the bodies it sends and reads
(``payloads``), its errors (``errors``) and the engine's source and target (``adapters``)."""

from .adapters import ImisSource, ImisTarget
from .client import ImisClient
from .errors import ImisAuthError, ImisError, ImisRequestError, ImisUnavailable
from .payloads import ImisEntity, ImisPage

__all__ = [
    "ImisAuthError",
    "ImisClient",
    "ImisEntity",
    "ImisError",
    "ImisPage",
    "ImisRequestError",
    "ImisSource",
    "ImisTarget",
    "ImisUnavailable",
]
