"""``python -m bench [scenario ...]``: run the benchmark and print one table.

Scenarios: trigger, poll, growth, worker, engine, engine-imis, engine-sql, memory (default:
all). ``--smoke`` runs every scenario in a tiny mode (for the smoke test; its figures mean
nothing).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .harness import DEFAULT_GUNICORN_ARGS, RESULTS, SCENARIOS, Bench, Options
from .load import have_wrk
from .report import machine, table, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], metavar="scenario",
                        help=f"any of {', '.join(SCENARIOS)} (default: all)")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="tiny durations and counts")
    parser.add_argument(
        "--duration", type=float, help="seconds per HTTP run (default 4; growth runs: 3)"
    )
    parser.add_argument("--reps", type=int, help="A/B repetitions (default 3)")
    parser.add_argument("--connections", type=int, help="concurrent connections (default 8)")
    parser.add_argument("--max-requests", type=int, help="request cap per run (default 100000)")
    parser.add_argument(
        "--gunicorn-args",
        default=os.environ.get("BENCH_GUNICORN_ARGS"),
        help=f"gunicorn worker arguments (default {DEFAULT_GUNICORN_ARGS!r}, "
        "or $BENCH_GUNICORN_ARGS); "
        "--no-control-socket and a 127.0.0.1 bind are always added",
    )
    parser.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--worker-jobs", type=int, help="jobs per worker run (default 2000)")
    parser.add_argument("--engine-rows", type=int, help="rows per engine run (default 100000)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where JSON and PNG go")
    args = parser.parse_args(argv)

    options = Options.smoke() if args.smoke else Options()
    if args.scenarios:
        options.scenarios = tuple(dict.fromkeys(args.scenarios))
    for name in ("duration", "reps", "connections", "max_requests", "gunicorn_args",
                 "worker_jobs", "engine_rows"):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            setattr(options, name, value)
    options.loader = args.loader
    options.out = args.out
    if args.loader == "wrk" and not have_wrk():
        parser.error("wrk is not installed")

    about = machine()
    loader = "wrk" if args.loader != "python" and have_wrk() else "python load generator"
    print(f"flask-idms-webhooks benchmark: {about['nproc']} CPU, Python {about['python']}, "
          f"load by {loader}, gunicorn {options.gunicorn_args}", flush=True)  # fmt: skip
    started = time.monotonic()
    bench = Bench(options, log=lambda text: print(text, file=sys.stderr, flush=True))
    with bench.running():
        rows = bench.run()
    seconds = time.monotonic() - started
    print()
    print(table(rows))
    json_path, png_path = write(rows, options, seconds)
    if png_path is None:
        print(f"\n{seconds:.0f} s; wrote {json_path} (no chart: pip install matplotlib)")
    else:
        print(f"\n{seconds:.0f} s; wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
