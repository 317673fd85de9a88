"""iMIS over its REST API: the client (``imis_client``) and the engine's source and target
adapters (``imis_adapters``)."""

from .imis_adapters import ImisSource, ImisTarget
from .imis_client import (
    ImisAuthError,
    ImisClient,
    ImisEntity,
    ImisError,
    ImisPage,
    ImisRequestError,
    ImisUnavailable,
)

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
