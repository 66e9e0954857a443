"""``python -m s3tstream.sandbox serve --port N --latency instant|realistic [--delivery chaos --seed N]``"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from s3tstream.sandbox.latency import LATENCIES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s3tstream.sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the sandbox endpoint in the foreground")
    serve.add_argument("--host", default="127.0.0.1", help="a loopback address (the sandbox refuses others)")
    serve.add_argument("--port", type=int, default=4566)
    serve.add_argument("--latency", choices=LATENCIES, default="instant")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    serve.add_argument("--delivery", choices=("ordered", "chaos"), default="ordered",
                       help="chaos: Firehose duplicates, reorders and writes merge-on-read (dataplane/chaos.py)")
    serve.add_argument("--seed", type=int, default=0, help="the chaos delivery's random seed")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from s3tstream.sandbox.server import SandboxServer

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        logging.getLogger("s3tstream.sandbox").info("signal %s: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = SandboxServer(host=args.host, port=args.port, latency=args.latency, verbose=args.verbose,
                               delivery=args.delivery, seed=args.seed, kind="serve")
        server.start()
    except ValueError as err:  # a host that is not loopback
        print(f"s3tstream sandbox: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"s3tstream sandbox: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    except RuntimeError as err:
        print(f"s3tstream sandbox: {err}", file=sys.stderr)
        return 1
    print(f"s3tstream sandbox listening on {server.endpoint_url} (latency {args.latency}, delivery {args.delivery})", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
