"""A task's schedule: when it runs on its own (UTC crontabs, or once), with which
QueryParameters, and what happens after downtime or failures. Pure arithmetic: the claim
of a due time and the counters live in Redis (``jobs/schedules.py``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from croniter import CroniterError, croniter

#: A due time older than this when a scheduler first sees it was missed (``catch_up =
#: "none"`` skips it): a scheduler that took over late, or none was running.
LATE_AFTER = 60.0


class CatchUp(StrEnum):
    LATEST = "latest"  # after downtime: one run for the missed due times
    NONE = "none"  # after downtime: the missed due times are skipped


def cron_problem(expression: object, *, seconds: bool = False) -> str | None:
    """Why ``expression`` is not a cron expression we run, if it is not: five fields
    (minute hour day month weekday), evaluated in UTC; six with a leading seconds field
    only where ``seconds`` (tests and demos)."""
    if not isinstance(expression, str):
        return f"a cron expression is a string, got {expression!r}"
    fields = expression.split()
    expected = "5 fields (minute hour day-of-month month day-of-week)"
    if len(fields) == 6 and not seconds:
        return (
            f"{expression!r} has 6 fields: a schedule has {expected}; a leading seconds "
            "field needs IDMS_WEBHOOKS_SCHEDULE_SECONDS (tests and demos)"
        )
    if len(fields) not in ((5, 6) if seconds else (5,)):
        return f"{expression!r} is not a cron expression: it needs {expected}"
    if not croniter.is_valid(expression, second_at_beginning=len(fields) == 6):
        return f"{expression!r} is not a valid cron expression ({expected}, in UTC)"
    try:  # valid fields may still name no date at all (30 February)
        iterator = _iterator(expression, datetime(2026, 1, 1, tzinfo=UTC).timestamp())
        iterator.get_next()
        iterator.get_prev()
    except CroniterError:
        return f"{expression!r} is never due (no date matches it)"
    return None


def _iterator(expression: str, start: float) -> croniter:
    return croniter(
        expression,
        datetime.fromtimestamp(start, tz=UTC),
        ret_type=float,
        second_at_beginning=len(expression.split()) == 6,
    )


def parse_utc(value: object) -> datetime:
    """An ISO 8601 date-time in UTC (``Z`` or ``+00:00``); ``ValueError`` otherwise."""
    if not isinstance(value, str | datetime):
        raise ValueError(f"not an ISO 8601 date-time: {value!r}")
    try:
        moment = (
            value
            if isinstance(value, datetime)
            else datetime.fromisoformat(value.replace("Z", "+00:00"))
        )
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time: {value!r}") from None
    if moment.utcoffset() is None or moment.utcoffset().total_seconds() != 0:  # type: ignore[union-attr]
        raise ValueError(f"must be in UTC (end it with Z): {value!r}")
    return moment.astimezone(UTC)


def iso_utc(epoch: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with ``Z`` (the job documents' form)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Schedule:
    """When a task runs on its own. ``cron``: UTC crontabs (any of them due runs it), or
    ``run_at``: once."""

    cron: tuple[str, ...] = ()
    run_at: datetime | None = None
    #: The QueryParameters of scheduled runs (their values' Source is "schedule").
    parameters: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True  # the starting value; Redis holds the live one
    max_failures: int = 0  # consecutive failed runs before it disables itself; 0: never
    catch_up: CatchUp = CatchUp.LATEST

    def problem(self, *, seconds: bool = False) -> tuple[str, str] | None:
        """(key, message) of what is wrong with this schedule, if anything."""
        if self.cron and self.run_at is not None:
            return "run_at", "give either `schedule` (recurring) or `run_at` (once), not both"
        if not self.cron and self.run_at is None:
            return "schedule", "a schedule needs a cron expression or a `run_at`"
        for expression in self.cron:
            problem = cron_problem(expression, seconds=seconds)
            if problem is not None:
                return "schedule", problem
        if isinstance(self.max_failures, bool) or not isinstance(self.max_failures, int):
            return "max_failures", f"must be a whole number from 0, got {self.max_failures!r}"
        if self.max_failures < 0:
            return "max_failures", f"must be a whole number from 0, got {self.max_failures!r}"
        return None

    def latest_due(self, now: float) -> float | None:
        """The latest due time at or before ``now`` (epoch seconds), if there is one."""
        if self.run_at is not None:
            at = self.run_at.timestamp()
            return at if at <= now else None
        after = math.floor(now) + 1  # croniter's previous is strictly before its start
        return max(_iterator(expression, after).get_prev() for expression in self.cron)

    def next_due(self, after: float) -> float | None:
        """The first due time strictly after ``after``, if there is one."""
        if self.run_at is not None:
            at = self.run_at.timestamp()
            return at if at > after else None
        return min(_iterator(expression, after).get_next() for expression in self.cron)

    def due_count(self, after: float, until: float, limit: int = 1000) -> int:
        """How many due times fall in (``after``, ``until``], up to ``limit``."""
        count, moment = 0, after
        while count < limit:
            due = self.next_due(moment)
            if due is None or due > until:
                break
            count, moment = count + 1, due
        return count


#: The task-file keys of a schedule.
SCHEDULE_KEYS = (
    "schedule", "run_at", "schedule_parameters", "enabled", "max_failures", "catch_up",
)  # fmt: skip


def read_schedule(table: Mapping[str, Any]) -> Schedule | None:
    """A task table's schedule, if it has one (``schedule`` or ``run_at``); raises
    ``ValueError(message, key)`` naming the key at fault."""
    given = [key for key in SCHEDULE_KEYS if key in table]
    if "schedule" not in table and "run_at" not in table:
        if given:
            raise ValueError("needs a `schedule` (cron) or a `run_at` to apply to", given[0])
        return None
    cron = table.get("schedule", [])
    cron = [cron] if isinstance(cron, str) else cron
    if not isinstance(cron, list) or ("schedule" in table and not cron):
        raise ValueError('must be a cron expression or a list of them, e.g. "0 2 * * *"',
                         "schedule")  # fmt: skip
    run_at = None
    if "run_at" in table:
        try:
            run_at = parse_utc(table["run_at"])
        except ValueError as error:
            raise ValueError(f"{error} (e.g. 2026-12-24T02:00:00Z)", "run_at") from None
    parameters = table.get("schedule_parameters", {})
    if not isinstance(parameters, dict):
        raise ValueError("must be a table of QueryParameters", "schedule_parameters")
    max_failures = table.get("max_failures", 0)
    if isinstance(max_failures, bool) or not isinstance(max_failures, int):
        raise ValueError(f"must be a whole number from 0, got {max_failures!r}", "max_failures")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"must be true or false, got {enabled!r}", "enabled")
    catch_up = table.get("catch_up", CatchUp.LATEST)
    if catch_up not in set(CatchUp):
        valid = ", ".join(member.value for member in CatchUp)
        raise ValueError(f"{catch_up!r} is not one of {valid}", "catch_up")
    return Schedule(
        cron=tuple(cron),
        run_at=run_at,
        parameters=parameters,
        enabled=enabled,
        max_failures=max_failures,
        catch_up=CatchUp(catch_up),
    )
