"""AWS Lambda behind API Gateway (REST API proxy integration, or HTTP API payload 2.0): the ingestion API.

Same routes, checks, validation and answers as ``ecommerce-assets ingest-api`` (both call
``ecommerce_assets.services.ingest_api``): ``POST /orders``, ``GET /invoices/{invoice_no}``, ``GET /health``.
With ``ECOMMERCE_INGEST_TOKENS`` set, ``POST /orders`` and ``GET /invoices/...`` need
``Authorization: Bearer <token>`` (401 otherwise, nothing put on the stream); ``POST /orders`` needs
``Content-Type: application/json`` (415) and a body of at most 1,000,000 bytes (413). The token check here
is the application's own; API Gateway can add its own authorizer in front (``deploy/``).
Environment: ``ECOMMERCE_ENV=aws``, ``ECOMMERCE_STREAM_NAME`` (Kinesis), ``ECOMMERCE_KV_TABLE_PREFIX`` (DynamoDB),
``ECOMMERCE_INGEST_TOKENS``.

Event (REST proxy): ``{"httpMethod": "POST", "path": "/orders", "headers": {"Content-Type": "application/json",
"Authorization": "Bearer ..."}, "body": "...", "isBase64Encoded": false}``;
(HTTP API 2.0): ``{"rawPath": "/orders", "requestContext": {"http": {"method": "POST"}}, "headers": {...}, "body": "..."}``.
Answer: ``{"statusCode": 202, "headers": {"Content-Type": "application/json"}, "body": "<json>"}``.

The ``Authorization`` header is blanked in the event once read, so a failed event sent to the
dead-letter queue never carries a token.
"""

from __future__ import annotations

import base64
import binascii
import json
from functools import cache
from typing import Any

from ecommerce_assets.services import ingest_api
from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.kv_store import KeyValueStore, build_kv_store
from ecommerce_assets.storage.stream import Stream, build_stream
from ecommerce_assets.transforms.order_lines import show
from lambdas.dlq import with_dead_letter_queue


@cache
def _resources() -> tuple[Stream, KeyValueStore]:  # built once per Lambda container
    settings = get_settings()
    return build_stream(settings), build_kv_store(settings)


def _answer(status: int, payload: dict[str, Any]) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = ingest_api.AUTHENTICATE
    return {"statusCode": status, "headers": headers, "body": json.dumps(payload)}


def _headers(event: dict[str, Any]) -> dict[str, str]:
    """The request headers (lower-case names); the token is then blanked in the event itself."""
    headers = ingest_api.header_map(event.get("headers"))
    for key in ("headers", "multiValueHeaders"):
        raw = event.get(key)
        if isinstance(raw, dict):
            for name in list(raw):
                if str(name).lower() == "authorization":
                    raw[name] = "<redacted>" if key == "headers" else ["<redacted>"]
    return headers


@with_dead_letter_queue
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    method = (event.get("httpMethod") or event.get("requestContext", {}).get("http", {}).get("method") or "").upper()
    path = (event.get("path") or event.get("rawPath") or "/").rstrip("/") or "/"
    headers = _headers(event)
    tokens = get_settings().ingest_tokens
    if path == "/orders" and method == "POST":
        denied = ingest_api.check_post(headers, tokens)
        if denied is not None:
            return _answer(*denied)
        body = event.get("body") or ""
        try:
            raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else \
                body.encode("utf-8", "surrogatepass")
        except (binascii.Error, ValueError):
            return _answer(400, {"error": "the body is not valid base64", "rule": "bad_encoding", "field": "body"})
        stream, _ = _resources()
        return _answer(*ingest_api.handle_post(headers, raw, stream, tokens))
    if path.startswith("/invoices/") and method == "GET":
        denied = ingest_api.authorize(headers.get("authorization"), tokens)
        if denied is not None:
            return _answer(*denied)
        invoice_no = (event.get("pathParameters") or {}).get("invoice_no") or path.split("/", 2)[2]
        return _answer(*ingest_api.get_invoice(invoice_no, _resources()[1]))
    if path == "/health" and method == "GET":
        return _answer(*ingest_api.health(*_resources(), tokens))
    return _answer(404, {"error": f"no route {method} {show(path)}"})
