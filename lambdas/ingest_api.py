"""AWS Lambda behind API Gateway (REST API proxy integration, or HTTP API payload 2.0): the ingestion API.

Same routes, validation and answers as ``ecommerce-assets ingest-api`` (both call
``ecommerce_assets.ingest_api``): ``POST /orders``, ``GET /invoices/{invoice_no}``, ``GET /health``.
Environment: ``ECOMMERCE_ENV=aws``, ``ECOMMERCE_STREAM_NAME`` (Kinesis), ``ECOMMERCE_KV_TABLE_PREFIX`` (DynamoDB).

Event (REST proxy): ``{"httpMethod": "POST", "path": "/orders", "body": "...", "isBase64Encoded": false}``;
(HTTP API 2.0): ``{"rawPath": "/orders", "requestContext": {"http": {"method": "POST"}}, "body": "..."}``.
Answer: ``{"statusCode": 202, "headers": {"Content-Type": "application/json"}, "body": "<json>"}``.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any

from ecommerce_assets import ingest_api
from ecommerce_assets.resources.kv_store import KeyValueStore, build_kv_store
from ecommerce_assets.resources.stream import Stream, build_stream
from ecommerce_assets.settings import get_settings
from lambdas.dlq import with_dead_letter_queue


@cache
def _resources() -> tuple[Stream, KeyValueStore]:  # built once per Lambda container
    settings = get_settings()
    return build_stream(settings), build_kv_store(settings)


def _answer(status: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(payload)}


@with_dead_letter_queue
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    method = (event.get("httpMethod") or event.get("requestContext", {}).get("http", {}).get("method") or "").upper()
    path = (event.get("path") or event.get("rawPath") or "/").rstrip("/") or "/"
    stream, kv_store = _resources()
    if path == "/orders" and method == "POST":
        body = event.get("body") or ""
        raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")
        return _answer(*ingest_api.post_orders(raw, stream))
    if path.startswith("/invoices/") and method == "GET":
        invoice_no = (event.get("pathParameters") or {}).get("invoice_no") or path.split("/", 2)[2]
        return _answer(*ingest_api.get_invoice(invoice_no, kv_store))
    if path == "/health" and method == "GET":
        return _answer(*ingest_api.health(stream, kv_store))
    return _answer(404, {"error": f"no route {method} {path}"})
