"""The example's membership database: SQLite, created and seeded once."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from pathlib import Path

MEMBERS = 5000
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS member (
        id INTEGER PRIMARY KEY,
        first_name TEXT NOT NULL,
        last_name TEXT NOT NULL,
        email TEXT,
        phone TEXT,
        member_type TEXT NOT NULL,      -- REG, STU, HON (honorary)
        status TEXT NOT NULL,           -- A active, I inactive, M merged
        paid_through TEXT NOT NULL,     -- ISO date
        merged_into INTEGER,
        updated_on TEXT
    )""",
    # A business rule the database enforces: a renewal needs a valid e-mail. The engine
    # counts a row the database refuses as a row error, with this message.
    """CREATE TRIGGER IF NOT EXISTS renewal_needs_email
    BEFORE UPDATE OF paid_through ON member
    WHEN NEW.email IS NULL OR NEW.email NOT LIKE '%_@_%'
    BEGIN
        SELECT RAISE(ABORT, 'a renewal needs a valid e-mail');
    END""",
    # Written by the task chained after a renewal: one row per member type.
    """CREATE TABLE IF NOT EXISTS dues_summary (
        member_type TEXT PRIMARY KEY,
        active_members INTEGER NOT NULL,
        latest_paid_through TEXT,
        refreshed_on TEXT
    )""",
)
FIRST = ["Ann", "Bob", "Carla", "Dev", "Elif", "Femi", "Gus", "Hana", "Ivo", "Jun", "Kofi", "Lea"]
LAST = [
    "Adams",
    "Baker",
    "Clark",
    "Diaz",
    "Evans",
    "Fox",
    "Garcia",
    "Hughes",
    "Ito",
    "Jones",
    "Khan",
    "Lopez",
    "Meyer",
    "Nash",
    "Okafor",
    "Patel",
    "Quinn",
    "Rossi",
    "Smith",
    "Tanaka",
]


def connect(path: str | Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    return connection


def ensure_database(path: str | Path) -> None:
    """Create and seed the database unless it exists; safe when several processes race."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = connect(path)
    try:
        connection.execute("BEGIN IMMEDIATE")  # one writer seeds; the others wait, then see rows
        for statement in SCHEMA:
            connection.execute(statement)
        if connection.execute("SELECT COUNT(*) FROM member").fetchone()[0] == 0:
            connection.executemany(
                "INSERT INTO member (id, first_name, last_name, email, phone, member_type, status,"
                " paid_through) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                seed_rows(MEMBERS),
            )
        connection.execute("COMMIT")
    finally:
        connection.close()


def seed_rows(count: int) -> list[tuple[object, ...]]:
    generator = random.Random(2026)  # the same database on every machine
    start = dt.date(2025, 1, 1)
    rows: list[tuple[object, ...]] = []
    for member_id in range(1, count + 1):
        first, last = generator.choice(FIRST), generator.choice(LAST)
        email = f"{first}.{last}{member_id}@example.org".lower()
        if member_id % 97 == 0:
            email = "not-an-email"  # rows the renewal refuses, so the example shows row errors
        member_type = "HON" if member_id % 41 == 0 else generator.choice(["REG", "REG", "STU"])
        status = "I" if member_id % 13 == 0 else "A"
        paid = start + dt.timedelta(days=generator.randrange(0, 730))
        phone = None if member_id % 5 else f"+1-555-{member_id:04d}"
        rows.append((member_id, first, last, email, phone, member_type, status, paid.isoformat()))
    return rows
