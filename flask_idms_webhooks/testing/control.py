"""What a test sees and steers of the double: the request log and the fault plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the double received it (failed ones included). ``query`` is the raw
    query string, exactly as sent (percent-encoding and parameter order kept); ``form`` is
    set for form posts, ``json`` for JSON bodies."""

    method: str
    path: str
    query: str
    form: dict[str, str] | None
    json: Any
    headers: dict[str, str]


@dataclass(frozen=True)
class Fault:
    status: int
    retry_after: int | None = None


@dataclass
class Traffic:
    """What the double has carried: connections accepted, requests in flight now and at
    most (since the last reset), and the latency added to each entity call."""

    latency: float = 0.0
    in_flight: int = 0
    in_flight_peak: int = 0
    connections_opened: int = 0

    def began(self) -> None:
        self.in_flight += 1
        self.in_flight_peak = max(self.in_flight_peak, self.in_flight)

    def ended(self) -> None:
        self.in_flight -= 1


@dataclass
class FaultPlan:
    """Faults by request number, counted over every path (``/token`` included)."""

    seen: int = 0
    by_number: dict[int, Fault] = field(default_factory=dict)
    expire_token: bool = False
    delay: float = 0.0

    def schedule(self, nth: int, fault: Fault) -> None:
        if nth < 1:
            raise ValueError("nth counts from 1: the next request is 1")
        self.by_number[self.seen + nth] = fault

    def next_request(self) -> Fault | None:
        """Count one request; the fault planned for it, if any (each fires once)."""
        self.seen += 1
        return self.by_number.pop(self.seen, None)
