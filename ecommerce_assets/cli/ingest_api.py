"""Serve the ingestion API: POST /orders onto the stream, GET /invoices/{invoice_no}, GET /health.

Uses the environment's stream and key-value store (local: ``<ECOMMERCE_DATA_DIR>/state/stream.sqlite``
and ``kv.sqlite``; aws: Kinesis and DynamoDB). Interactive documentation at ``/docs``.

Example: ``ecommerce-assets ingest-api --host 127.0.0.1 --port 8000``
"""

from __future__ import annotations

import argparse

NAME = "ingest-api"
HELP = "serve the order-line ingestion HTTP API (POST /orders, GET /invoices/{invoice_no}, GET /health)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")


def main(args: argparse.Namespace) -> int:
    import uvicorn

    from ecommerce_assets.ingest_api import create_app

    uvicorn.run(create_app(), host=args.host, port=args.port, log_level=args.log_level, ws="none")
    return 0
