"""The double's in-memory state, shared by the test thread and the server's threads."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

from .control import FaultPlan, RecordedRequest, Traffic
from .entities import EntityTable
from .queries import IqaQuery

#: What the token answer says; the double's tokens last until revoked.
TOKEN_LIFETIME = 1799


@dataclass
class DoubleState:
    username: str
    password: str
    separator: str = ","
    lock: threading.RLock = field(default_factory=threading.RLock)
    tables: dict[str, EntityTable] = field(default_factory=dict)
    queries: dict[str, IqaQuery] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    plan: FaultPlan = field(default_factory=FaultPlan)
    log: list[RecordedRequest] = field(default_factory=list)
    traffic: Traffic = field(default_factory=Traffic)

    def table(self, name: str) -> EntityTable | None:
        """An entity type by name, without case (iMIS routes ignore case)."""
        with self.lock:
            found = self.tables.get(name)
            if found is None:
                found = next((t for n, t in self.tables.items() if n.lower() == name.lower()), None)
            return found

    def query(self, path: str) -> IqaQuery | None:
        with self.lock:
            found = self.queries.get(path)
            if found is None:
                found = next(
                    (q for p, q in self.queries.items() if p.lower() == path.lower()), None
                )
            return found

    def login(self, username: str, password: str) -> str | None:
        if username.casefold() != self.username.casefold() or password != self.password:
            return None
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens.add(token)
        return token

    def authorize(self, header: str) -> bool:
        """Whether an ``Authorization`` header carries a live token; a pending
        ``expire_token_once`` revokes it here, so the client must log in again."""
        scheme, _, token = header.partition(" ")
        with self.lock:
            if scheme.lower() != "bearer" or token.strip() not in self.tokens:
                return False
            if self.plan.expire_token:
                self.plan.expire_token = False
                self.tokens.discard(token.strip())
                return False
            return True
