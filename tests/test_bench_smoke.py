"""The benchmark harness runs every scenario and writes rows that add up (no timing
targets: CI does not run the benchmark, and its figures here mean nothing; but a rate, a
ratio or a request count the bench reports must be one it measured).

The harness runs as a separate process in its tiny mode (``python -m bench --smoke``),
with its own private Redis and gunicorn servers, writing its JSON to a temporary folder;
the in-process ladders (``python -m bench.inprocess``) run with a few calls, writing
theirs.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: scenario name -> the row prefixes each must produce
EXPECTED = {
    "trigger": ("trigger: polling POST", "trigger vs plain enqueue"),
    "poll": ("poll running job", "poll finished job"),
    "growth": ("growth: trigger", "growth: poll finished"),
    "worker": ("worker:", "reference: bare RQ SimpleWorker"),
    "engine": ("engine:",),
    "engine-imis": ("engine-imis:",),
    "engine-sql": ("engine-sql:",),
    "memory": ("memory:",),
}

#: the web rows compared with a bare baseline: row prefix -> (baseline, its own row)
COMPARED = {
    "trigger: polling POST": ("bare pipelined enqueue", "baseline: bare pipelined enqueue"),
    "trigger vs plain enqueue": ("bare Queue.enqueue", "baseline: bare Queue.enqueue"),
    "poll running job": ("bare Redis GET", "baseline: bare Redis GET"),
    "poll finished job": ("bare Redis GET", "baseline: bare Redis GET"),
}

#: the in-process ladders: each rung in order, with the status its route must answer
LADDERS = {
    "trigger": [
        ("bare pipelined enqueue (baseline)", 202),
        ("+ a route with a task id", 202),
        ("+ task and key checked", 202),
        ("+ hardened body parse, schema", 202),
        ("+ QueryParameters resolved", 202),
        ("+ job document, token, answer", 202),
        ("= the polling webhook", 202),
    ],
    "poll": [
        ("bare Redis GET (baseline)", 200),
        ("+ a route with a job id", 200),
        ("+ MGET of record, seal, beat", 200),
        ("+ job token checked", 200),
        ("+ record read, status checked", 200),
        ("= the poll (202, running)", 202),
    ],
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


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], Path]:
    """One smoke run for the module: (its stdout, its JSON, its folder)."""
    out = tmp_path_factory.mktemp("bench")
    completed = run_module("bench", "--smoke", "--out", str(out))
    return completed.stdout, json.loads((out / "latest.json").read_text()), out


def rows_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["scenario"].strip(): row for row in document["rows"]}


def one(rows: dict[str, dict[str, Any]], prefix: str) -> dict[str, Any]:
    found = [row for name, row in rows.items() if name.startswith(prefix)]
    assert len(found) == 1, (prefix, list(rows))
    return found[0]


@pytest.mark.timeout(90)
def test_every_scenario_produces_its_rows_with_a_positive_rate(smoke: Any) -> None:
    stdout, document, out = smoke
    assert tuple(document["options"]["scenarios"]) == tuple(EXPECTED)
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "latest.png").stat().st_size > 0
    rows = rows_by_name(document)
    assert len(rows) == len(document["rows"]), "two rows of one name"
    for scenario, prefixes in EXPECTED.items():
        for prefix in prefixes:
            assert any(name.startswith(prefix) for name in rows), (scenario, prefix, list(rows))
    table = stdout.split("\n\n")[1]  # the table printed between the banner and the notes
    printed = [line.split(" | ")[0].strip() for line in table.splitlines()[2:]]
    assert printed == list(rows)
    for name, row in rows.items():
        assert positive(row["rate"]["median"]), name
        assert row["rate"]["min"] <= row["rate"]["median"] <= row["rate"]["max"], name
        if row["baseline"]:
            assert positive(row["ratio"]) and positive(row["baseline_rate"]["median"]), name
        else:
            assert row["ratio"] is None and row["baseline_rate"] is None, name
            assert row["baseline_samples"] == [], name
        assert (row["met"] is None) == (row["target"] == ""), name


@pytest.mark.timeout(90)
def test_each_rate_is_the_count_it_measured_over_its_time(smoke: Any) -> None:
    _, document, _ = smoke
    options = document["options"]
    for name, row in rows_by_name(document).items():
        reps = options["growth_reps"] if name.startswith("growth:") else options["reps"]
        if name.startswith("engine-imis:"):
            reps = 1 if "429 storm" in name else options["imis_reps"]
        if row["unit"] != "bytes":
            assert len(row["samples"]) == reps, name
        for sample in row["samples"] + row["baseline_samples"]:
            where = (name, sample)
            extra = sample["extra"]
            if name.startswith(("engine-imis:", "engine-sql:")):
                # a rate is rows over seconds: the job's (its rows all written, checked
                # by the bench), the bare baseline's, or the bound's
                wanted = options["imis_rows" if "imis" in name else "engine_rows"]
                assert extra["rows"] == wanted, where
                assert close(sample["rate"], wanted / sample["seconds"]), where
            elif row["unit"] == "req/s":
                # the cap stops new requests; those already in flight still count
                cap = options["max_requests"] + options["connections"]
                assert 0 < extra["requests"] <= cap, where
                assert close(sample["rate"], extra["requests"] / sample["seconds"]), where
                assert extra["non2xx"] == 0 and extra["errors"] == 0, where
                # a real request takes some time, the slowest of them at least the median's
                assert 0 < sample["p50_ms"] <= sample["p99_ms"], where
                assert sample["commands"] >= 1, where  # each request reached Redis
            elif row["unit"] == "jobs/s":
                assert extra["jobs"] == options["worker_jobs"], where
                assert close(sample["rate"], extra["jobs"] / sample["seconds"]), where
                assert sample["seconds"] <= extra["wall_seconds"], where
                assert 0 <= sample["p50_ms"] <= sample["p99_ms"], where
            elif row["unit"] == "rows/s":
                rows = options["engine_rows"]
                assert close(sample["rate"], rows / sample["seconds"]), where
                # half the staging rows are in the target already
                assert extra == {"inserted": rows // 2, "updated": rows - rows // 2}, where
            else:
                assert row["unit"] == "bytes", where
                noted = re.search(r"JSON (\d+) B", row["note"])
                assert noted is not None, where
                assert 0 < int(noted[1]) <= sample["rate"], where  # Redis holds the JSON at least


@pytest.mark.timeout(90)
def test_the_web_rows_name_their_baselines_and_the_ratio_is_recomputed(smoke: Any) -> None:
    _, document, _ = smoke
    rows = rows_by_name(document)
    for prefix, (baseline, baseline_row_name) in COMPARED.items():
        row = one(rows, prefix)
        assert row["baseline"] == baseline, prefix
        baseline_row = rows[baseline_row_name]
        # the baseline's own row is the same measurement as the one compared with
        assert row["baseline_samples"] == baseline_row["samples"], prefix
        assert row["baseline_rate"] == baseline_row["rate"], prefix
        assert close(row["ratio"], row["rate"]["median"] / baseline_row["rate"]["median"]), prefix
        pairs = zip(row["samples"], row["baseline_samples"], strict=True)
        ratios = [sample["rate"] / base["rate"] for sample, base in pairs]
        assert close(row["ratio_range"]["min"], min(ratios)), prefix
        assert close(row["ratio_range"]["max"], max(ratios)), prefix
    # both trigger rows are one measurement, compared with two baselines
    assert (
        one(rows, "trigger: polling POST")["samples"]
        == one(rows, "trigger vs plain enqueue")["samples"]
    )
    # the engine compares time: progress on over progress off
    engine = one(rows, "engine:")
    assert engine["baseline"] == "progress off"
    assert engine["baseline_samples"] == rows["baseline: engine, progress off"]["samples"]
    assert close(engine["ratio"], engine["seconds"]["median"] / (
        rows["baseline: engine, progress off"]["seconds"]["median"]
    ))  # fmt: skip
    # growth: every level but the first is compared with the first
    first, *others = document["options"]["growth_levels"]
    for kind in ("trigger", "poll finished"):
        start = rows[f"growth: {kind}, {first:,} retained"]
        assert start["baseline"] == ""
        for level in others:
            row = rows[f"growth: {kind}, {level:,} retained"]
            assert row["baseline"] == f"same @{first:,}"
            assert row["baseline_samples"] == start["samples"]
            assert close(row["ratio"], row["rate"]["median"] / start["rate"]["median"])


@pytest.mark.timeout(90)
def test_the_engine_rows_are_compared_with_their_bound_or_a_bare_baseline(smoke: Any) -> None:
    _, document, out = smoke
    rows, options = rows_by_name(document), document["options"]
    latency, count = options["imis_latency"], options["imis_rows"]
    head = f"engine-imis: {count:,} rows, {latency * 1000:g} ms, max_concurrency"
    for level, batch in [(1, False), (4, False), (8, False), (16, False), (8, True)]:
        row = rows[f"{head} {level}" + (", batch_match" if batch else "")]
        bound = level / ((1 if batch else 2) * latency)
        assert [s["rate"] for s in row["baseline_samples"]] == pytest.approx(
            [bound] * len(row["samples"])
        ), row["scenario"]
        for sample in row["samples"]:  # what the double saw: never more than allowed
            assert 1 <= sample["extra"]["peak"] <= level + 1, row["scenario"]
        assert (row["target"] != "") == (level == 8), row["scenario"]
    storm = one(rows, "engine-imis: 429 storm")
    assert storm["baseline"] == "no storm" and "lowest" in storm["note"]
    for action in ("Insert", "Update", "InsertOrUpdate"):
        for kind in ("sqlite", "postgresql"):  # CI has PostgreSQL: both are measured
            row = rows[f"engine-sql: {options['engine_rows']:,} rows, {kind}, {action}"]
            assert row["baseline"].startswith("bare ") and positive(row["ratio"])
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "engine-imis.png").stat().st_size > 0


@pytest.mark.timeout(90)
def test_the_in_process_ladders_run_every_rung_in_order(tmp_path: Path) -> None:
    """``python -m bench.inprocess`` (the attribution of a trigger's and a poll's cost)
    runs against its own Redis; each rung answers the status its route should, in the
    order of the real route's steps, and the printed steps and totals add up."""
    written = tmp_path / "ladders.json"
    completed = run_module(
        "bench.inprocess", "--rounds", "1", "--calls", "5", "--json", str(written)
    )
    found = json.loads(written.read_text())["ladders"]
    assert list(found) == list(LADDERS)
    line = re.compile(
        r"  (?P<name>.+?) +(?P<us>[\d.]+) us   step +(?P<step>[-+][\d.]+)"
        r"   total +(?P<total>[-+][\d.]+)"
    )
    printed = [match.groupdict() for match in map(line.fullmatch, completed.stdout.splitlines())
               if match]  # fmt: skip
    assert [row["name"] for row in printed] == [
        name for rungs in LADDERS.values() for name, _ in rungs
    ], completed.stdout
    at = 0
    for route, rungs in LADDERS.items():
        assert [(rung["rung"], rung["status"]) for rung in found[route]] == rungs, route
        figures = [rung["us"] for rung in found[route]]
        assert all(positive(value) for value in figures), (route, figures)
        for number, value in enumerate(figures):
            shown = printed[at + number]
            previous = figures[number - 1] if number else figures[0]
            assert float(shown["us"]) == pytest.approx(value, abs=0.051)
            assert float(shown["step"]) == pytest.approx(value - previous, abs=0.051)
            assert float(shown["total"]) == pytest.approx(value - figures[0], abs=0.051)
        at += len(rungs)
