"""The Python load generator (when ``wrk`` is not installed): threads, each with its own
connection, until the duration or the request cap is reached. Run as a separate process:
``python -m bench.pyload SPEC_JSON``; prints one ``BENCHJSON {...}`` line like the wrk
script does."""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def main(spec: dict) -> None:  # type: ignore[type-arg]
    parts = urlsplit(spec["url"])
    if parts.hostname != "127.0.0.1":
        raise SystemExit("load is only driven at 127.0.0.1")
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    body = spec["body"].encode() if spec["body"] else None
    deadline = time.monotonic() + spec["duration"]
    lock = threading.Lock()
    latencies: list[float] = []
    counters = {"sent": 0, "non2xx": 0, "errors": 0}

    def worker() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        mine: list[float] = []
        while time.monotonic() < deadline:
            with lock:
                if counters["sent"] >= spec["max_requests"]:
                    break
                counters["sent"] += 1
            started = time.perf_counter()
            try:
                connection.request(spec["method"], target, body=body, headers=spec["headers"])
                answer = connection.getresponse()
                answer.read()
                if not 200 <= answer.status < 300:
                    with lock:
                        counters["non2xx"] += 1
                if answer.getheader("Connection", "").lower() == "close":
                    connection.close()
            except (OSError, http.client.HTTPException):
                connection.close()
                with lock:
                    counters["errors"] += 1
                continue
            mine.append(time.perf_counter() - started)
        connection.close()
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(spec["connections"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()

    def percentile(p: float) -> int:
        if not latencies:
            return 0
        return int(latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1e6)

    result = {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "p50_us": percentile(50),
        "p99_us": percentile(99),
        "non2xx": counters["non2xx"],
        "errors": counters["errors"],
    }
    print("BENCHJSON " + json.dumps(result))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
