"""Serve the ingestion API: POST /orders onto the stream, GET /invoices/{invoice_no}, GET /health.

Uses the environment's stream and key-value store (local: ``<ECOMMERCE_DATA_DIR>/state/stream.sqlite``
and ``kv.sqlite``; aws: Kinesis and DynamoDB). Requests must carry ``Authorization: Bearer <token>`` with
a token from ``ECOMMERCE_INGEST_TOKENS`` (comma-separated) when it is set. Without tokens the API is open,
so it listens only on a loopback address (127.0.0.1, ::1, localhost): any other ``--host`` is refused with
exit code 2 unless ``--insecure`` is given. ``--docs`` serves the interactive documentation at ``/docs``.
SIGTERM or SIGINT stops the server (in-flight requests get up to 3 s); the process then ends at once with
exit code 0.

Example: ``ecommerce-assets ingest-api --host 127.0.0.1 --port 8000``
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
from types import FrameType

NAME = "ingest-api"
HELP = "serve the order-line ingestion HTTP API (POST /orders, GET /invoices/{invoice_no}, GET /health)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback --host without ECOMMERCE_INGEST_TOKENS (anyone who can reach it "
                             "can post orders and read invoices)")
    parser.add_argument("--docs", action="store_true", help="serve /docs, /redoc and /openapi.json (off by default)")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``); any other name is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(args: argparse.Namespace) -> int:
    from ecommerce_assets.settings import get_settings

    settings = get_settings()
    if not settings.ingest_tokens and not is_loopback(args.host):
        if not args.insecure:
            print(f"ecommerce-assets ingest-api: refusing to listen on {args.host} without ECOMMERCE_INGEST_TOKENS "
                  "(set bearer tokens, use --host 127.0.0.1, or pass --insecure)", file=sys.stderr)
            return 2
        print(f"ecommerce-assets ingest-api: WARNING: --insecure: listening on {args.host} with no token; anyone "
              "who can reach it can post orders and read invoices", file=sys.stderr)

    # a stop signal before uvicorn takes over (while the app is built) ends the process at once; after
    # uvicorn's graceful shutdown it re-raises the signal it caught, which lands here too: exit code 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)

    import uvicorn

    from ecommerce_assets.services.ingest_api import create_app

    config = uvicorn.Config(create_app(settings=settings, docs=args.docs), host=args.host, port=args.port,
                            log_level=args.log_level, ws="none", timeout_graceful_shutdown=3,
                            server_header=False)
    code: int | str | None = 0
    try:
        uvicorn.Server(config).run()  # returns after a graceful shutdown (SIGTERM/SIGINT)
    except SystemExit as exc:  # the stop signal, re-raised by uvicorn once it has shut down
        code = exc.code
    # every accepted line is already committed to the stream; end now rather than spend seconds tearing
    # down the libraries loaded in this process (dagster, pyarrow, duckdb)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
