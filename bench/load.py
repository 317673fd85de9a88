"""Load generators, run in a separate process, at 127.0.0.1 only, bounded in requests
and time: ``wrk`` (with a Lua script for the method, body, headers, the request cap and
the percentiles) when it is installed, else :mod:`bench.pyload`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

LUA = r"""
wrk.method = %(method)s
wrk.body = %(body)s
%(headers)s
local cap = %(cap)d
local seen = 0
response = function(status, headers, body)
  seen = seen + 1
  if seen >= cap then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,'
    .. '"non2xx":%%d,"errors":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def check_local(url: str) -> None:
    if urlsplit(url).hostname != "127.0.0.1":
        raise ValueError(f"load is only driven at 127.0.0.1, not {url}")


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_load(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    duration: float = 5.0,
    max_requests: int = 200_000,
    connections: int = 8,
    loader: str = "auto",
) -> LoadResult:
    check_local(url)
    if loader == "wrk" or (loader == "auto" and have_wrk()):
        return _wrk(url, method, body, headers or {}, duration, max_requests, connections)
    return _python(url, method, body, headers or {}, duration, max_requests, connections)


def _parse(stdout: str) -> dict[str, float]:
    for line in stdout.splitlines():
        if line.startswith("BENCHJSON "):
            parsed: dict[str, float] = json.loads(line.removeprefix("BENCHJSON "))
            return parsed
    raise RuntimeError(f"load generator printed no result:\n{stdout[-2000:]}")


def _wrk(
    url: str,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    duration: float,
    max_requests: int,
    connections: int,
) -> LoadResult:
    threads = 1
    header_lines = "\n".join(
        f"wrk.headers[{lua_string(name)}] = {lua_string(value)}" for name, value in headers.items()
    )
    script = LUA % {
        "method": lua_string(method),
        "body": lua_string(body.decode()) if body else "nil",
        "headers": header_lines,
        "cap": max(1, max_requests // threads),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        path = Path(handle.name)
    try:
        completed = subprocess.run(
            [
                "wrk", "-t", str(threads), "-c", str(connections),
                "-d", f"{max(1, round(duration))}s", "--timeout", "5s",
                "-s", str(path), url,
            ],
            capture_output=True, text=True, timeout=duration + 30, check=True,
        )  # fmt: skip
    finally:
        path.unlink()
    found = _parse(completed.stdout)
    return LoadResult(
        requests=int(found["requests"]),
        seconds=found["duration_us"] / 1e6,
        p50_ms=found["p50_us"] / 1000,
        p99_ms=found["p99_us"] / 1000,
        non2xx=int(found["non2xx"]),
        errors=int(found["errors"]),
    )


def _python(
    url: str,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    duration: float,
    max_requests: int,
    connections: int,
) -> LoadResult:
    spec = {
        "url": url,
        "method": method,
        "body": body.decode() if body else None,
        "headers": headers,
        "duration": duration,
        "max_requests": max_requests,
        "connections": connections,
    }
    completed = subprocess.run(
        [sys.executable, "-m", "bench.pyload", json.dumps(spec)],
        capture_output=True, text=True, timeout=duration + 60, check=True,
    )  # fmt: skip
    found = _parse(completed.stdout)
    return LoadResult(
        requests=int(found["requests"]),
        seconds=found["duration_us"] / 1e6,
        p50_ms=found["p50_us"] / 1000,
        p99_ms=found["p99_us"] / 1000,
        non2xx=int(found["non2xx"]),
        errors=int(found["errors"]),
    )
