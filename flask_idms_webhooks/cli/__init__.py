"""``flask idms-webhooks ...``: the worker, the scheduler, the schedules, the tasks and the
jobs (each command in the module of its kind; ``group`` holds what they share)."""

from . import connector, jobs, schedules, tasks, workers  # noqa: F401  (they register their commands)
from .group import cli

__all__ = ["cli"]
