"""Memory stays flat whatever the row count: the engine over 100,000 rows peaks where it
peaks over 10,000, and a deliberately leaky run (every row kept) fails the same check.

Each run is a process of its own (``tests/engine_memory_run.py``: a SQLite source into a
SQLite table through the task's ``IUpdate`` handler and a real ``JobContext`` on Redis),
which reports its peak resident set size (``VmHWM``) when done. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from flask_idms_webhooks.testing import ImisDouble
from tests.helpers import ROOT

SMALL, LARGE = 10_000, 100_000
#: Into iMIS (the double, 8 rows in flight, one HTTP call each): few rows, each about 25 KB.
#: A leak of every row must come to tens of MB to stand out, and fewer, bigger calls carry
#: those MB in a third of the time that 10,000 rows of 4 KB took.
IMIS_SMALL, IMIS_LARGE = 200, 2_000
PASSWORD = "secret"
#: The flat check: the large run's peak within this factor, plus this slack, of the small one's.
FACTOR, SLACK_KB = 1.15, 6 * 1024


def make_database(path: Path, rows: int, note: int = 80) -> Path:
    """A SQLite file: ``staging`` with ``rows`` rows of about ``note`` x 7 bytes,
    ``contact`` empty."""
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute(
                "CREATE TABLE staging (seq INTEGER PRIMARY KEY, ext_id TEXT, email TEXT, note TEXT)"
            )
            connection.execute(
                "CREATE TABLE contact (id INTEGER PRIMARY KEY, ext_id TEXT, email TEXT, note TEXT)"
            )
            connection.executemany(
                "INSERT INTO staging (ext_id, email, note) VALUES (?, ?, ?)",
                ((f"E{i:07d}", f"member{i}@example.org", f"{i:07d}" * note) for i in range(rows)),
            )
    finally:
        connection.close()
    return path


class Run:
    """One engine run in a child process; ``finish`` answers its counters and peak RSS."""

    def __init__(
        self, tmp_path: Path, redis_url: str, mode: str, rows: int, imis: ImisDouble | None
    ) -> None:
        self.name = f"{mode}-{rows}"
        note = 80 if imis is None else 3600  # fewer iMIS rows: bigger ones
        self.database = make_database(tmp_path / f"{self.name}.db", rows, note)
        self.stderr = (tmp_path / f"{self.name}.log").open("wb")
        target = [] if imis is None else [imis.base_url, f"Contact{mode.title()}{rows}"]
        command = [sys.executable, "-m", "tests.engine_memory_run", str(self.database)]
        self.process = subprocess.Popen(
            [*command, redis_url, mode, *target],
            cwd=ROOT,
            env=dict(os.environ, ENGINE_MEMORY_IMIS_PASSWORD=PASSWORD),
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )

    def finish(self) -> tuple[dict[str, Any], int]:
        output, _ = self.process.communicate(timeout=120)
        self.stderr.close()
        log = Path(self.stderr.name).read_text(errors="replace")
        assert self.process.returncode == 0, f"{self.name} failed:\n{log}"
        found = json.loads(output)
        return found, found.pop("PeakKiB")

    def close(self) -> None:
        """Stop the child if a failure left it running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        self.stderr.close()


def measure(
    tmp_path: Path, redis_url: str, rows: int, imis: ImisDouble | None = None
) -> dict[str, int]:
    """Peak RSS (KiB) of a flat and a leaky run over ``rows`` rows, run side by side."""
    if imis is not None:
        for mode in ("flat", "leaky"):
            imis.add_entities(f"Contact{mode.title()}{rows}", [])
    runs = [Run(tmp_path, redis_url, mode, rows, imis) for mode in ("flat", "leaky")]
    try:
        results = [run.finish() for run in runs]
    finally:
        for run in runs:
            run.close()
    peaks = {}
    for (document, peak), mode in zip(results, ("flat", "leaky"), strict=True):
        assert document == {
            "RowCount": rows,
            "ProcessedCount": rows,
            "InsertedCount": rows,
            "ErrorCount": 0,
            "Kept": rows if mode == "leaky" else 0,
        }
        peaks[mode] = peak
    return peaks


def flat(small_kb: int, large_kb: int) -> bool:
    return large_kb < small_kb * FACTOR + SLACK_KB


def test_memory_is_flat_from_10k_to_100k_rows_and_a_leak_is_caught(tmp_path, redis_url):
    small = measure(tmp_path, redis_url, SMALL)
    large = measure(tmp_path, redis_url, LARGE)
    figures = {mode: (small[mode] // 1024, large[mode] // 1024) for mode in small}
    print(f"peak RSS MiB (10k, 100k): {figures}")
    assert flat(small["flat"], large["flat"]), figures
    # The control: keeping every row is caught by the very same check, with room to spare.
    assert not flat(small["leaky"], large["leaky"]), figures
    assert large["leaky"] > small["leaky"] * FACTOR + SLACK_KB + 16 * 1024, figures


def test_memory_is_flat_with_8_rows_in_flight_into_imis_and_a_leak_is_caught(tmp_path, redis_url):
    double = ImisDouble("manager", PASSWORD)
    with double.serve(keep_alive=True):
        small = measure(tmp_path, redis_url, IMIS_SMALL, double)
        large = measure(tmp_path, redis_url, IMIS_LARGE, double)
        assert len(double.entities(f"ContactFlat{IMIS_LARGE}")) == IMIS_LARGE
    figures = {mode: (small[mode] // 1024, large[mode] // 1024) for mode in small}
    print(f"peak RSS MiB into iMIS (200, 2,000): {figures}")
    assert flat(small["flat"], large["flat"]), figures
    assert not flat(small["leaky"], large["leaky"]), figures
    assert large["leaky"] > small["leaky"] * FACTOR + SLACK_KB + 16 * 1024, figures
