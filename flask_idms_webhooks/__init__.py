"""flask-idms-webhooks: start iDMS-style data-sync tasks by webhook and follow them.

The names below are loaded when first used, so that ``flask_idms_webhooks.client`` (and
the ``idms-webhooks`` command built on it) starts without importing Flask, RQ or Redis.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import (
        ConfigurationError,
        IdmsWebhooksError,
        JobCancelled,
        ParameterError,
        StoreUnavailable,
        TaskLoadError,
        TransientError,
    )
    from .extension import IdmsWebhooks
    from .jobs.context import JobContext
    from .model.tasks import DataType, FilterRow, Operator, Prompt, Task

#: Where each public name lives.
_MODULES = {
    "ConfigurationError": ".errors",
    "IdmsWebhooksError": ".errors",
    "JobCancelled": ".errors",
    "ParameterError": ".errors",
    "StoreUnavailable": ".errors",
    "TaskLoadError": ".errors",
    "TransientError": ".errors",
    "IdmsWebhooks": ".extension",
    "JobContext": ".jobs.context",
    "DataType": ".model.tasks",
    "FilterRow": ".model.tasks",
    "Operator": ".model.tasks",
    "Prompt": ".model.tasks",
    "Task": ".model.tasks",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


__all__ = [
    "ConfigurationError",
    "DataType",
    "FilterRow",
    "IdmsWebhooks",
    "IdmsWebhooksError",
    "JobCancelled",
    "JobContext",
    "Operator",
    "ParameterError",
    "Prompt",
    "StoreUnavailable",
    "Task",
    "TaskLoadError",
    "TransientError",
]
