"""The benchmark harness starts every scenario and produces a row for each (no timing
assertions: CI does not run the benchmark, and its figures here mean nothing).

The harness runs as a separate process in its tiny mode (``python -m bench --smoke``),
with its own private Redis and gunicorn servers, writing its JSON to a temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: scenario name -> the row prefixes each must produce
EXPECTED = {
    "trigger": ("trigger: polling POST", "trigger vs plain enqueue"),
    "poll": ("poll running job", "poll finished job"),
    "growth": ("growth: trigger", "growth: poll finished"),
    "worker": ("worker:", "reference: bare RQ SimpleWorker"),
    "engine": ("engine:",),
    "memory": ("memory:",),
}


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` from the project root; fails the test if it fails."""
    completed = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=85,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


@pytest.mark.timeout(90)
def test_every_scenario_produces_a_row(tmp_path: Path) -> None:
    completed = run_module("bench", "--smoke", "--out", str(tmp_path))
    assert "scenario" in completed.stdout and "ratio to baseline" in completed.stdout
    document = json.loads((tmp_path / "latest.json").read_text())
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "latest.png").stat().st_size > 0
    names = [row["scenario"].strip() for row in document["rows"]]
    for scenario, prefixes in EXPECTED.items():
        for prefix in prefixes:
            assert any(name.startswith(prefix) for name in names), (scenario, prefix, names)
    for row in document["rows"]:
        rate = row["rate"]["median"]
        assert isinstance(rate, float) and math.isfinite(rate) and rate > 0, row["scenario"]
        if row["baseline"]:
            assert isinstance(row["ratio"], float) and math.isfinite(row["ratio"]), row["scenario"]
        if row["unit"] == "req/s":
            assert row["p50_ms"]["median"] >= 0 and row["p99_ms"]["median"] >= 0
            assert row["commands_per_request"]["median"] >= 1, row["scenario"]
            for sample in row["samples"]:
                assert sample["extra"]["non2xx"] == 0 and sample["extra"]["errors"] == 0


@pytest.mark.timeout(90)
def test_the_in_process_ladders_run_and_print_every_rung() -> None:
    """``python -m bench.inprocess`` (the attribution of a trigger's and a poll's cost)
    runs against its own Redis and prints every rung of both ladders."""
    completed = run_module("bench.inprocess", "--rounds", "1", "--calls", "5")
    for rung in ("bare pipelined enqueue (baseline)", "= the polling webhook",
                 "bare Redis GET (baseline)", "= the poll (202, running)"):  # fmt: skip
        assert rung in completed.stdout, completed.stdout
