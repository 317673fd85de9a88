"""``python -m flask_idms_webhooks.testing [--host H] [--port P] [--demo] [--latency S]``:
serve a double until Ctrl-C (``--demo`` seeds the demo contacts and query, see
``demo.py``; ``--latency`` delays every entity call, as a distant iMIS would)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from .demo import QUERY, seed_demo
from .double import ImisDouble


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flask_idms_webhooks.testing", description="Serve a local iMIS REST double."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--username", default="manager")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--separator", default=",", help="packs an IQA's Between and In values")
    parser.add_argument("--demo", action="store_true", help=f"seed CsContact and {QUERY}")
    parser.add_argument(
        "--latency", type=float, default=0.0, metavar="SECONDS", help="delay of each entity call"
    )
    args = parser.parse_args(argv)
    double = ImisDouble(args.username, args.password, separator=args.separator)
    double.latency(args.latency)
    if args.demo:
        seed_demo(double)
    print(
        f"iMIS double on http://{args.host}:{args.port} (user {args.username!r}); Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        double.serve_forever(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
