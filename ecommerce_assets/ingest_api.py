"""The ingestion API: order lines in over HTTP, onto the stream; invoices out of the key-value store.

Routes (the same in the FastAPI app served by ``ecommerce-assets ingest-api`` and in the API Gateway
Lambda ``lambdas/ingest_api.py``; both call the framework-free handlers below):

* ``POST /orders`` - one order line (a JSON object) or a JSON array of at most 500. Every line is
  validated (``ecommerce_assets.transforms.stream``). Answers ``202`` with the shard and sequence number
  of every line; ``400`` when the body is not JSON / not an object or array / empty / too large;
  ``422`` when any line is bad, listing each bad line with its field, rule and message - and then no line
  of the request is put on the stream. Accepted lines go on the stream with the invoice number as
  partition key (an invoice's lines stay in order on one shard; invoices spread over the shards).
* ``GET /invoices/{invoice_no}`` - the invoice from the key-value store (its lines by stock code);
  ``404`` when no line of it has been processed yet.
* ``GET /health`` - ``200`` with the stream and store it uses.
"""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ecommerce_assets.resources.kv_store import KeyValueStore, build_kv_store
from ecommerce_assets.resources.stream import Stream, StreamWriteError, build_stream
from ecommerce_assets.settings import Settings, get_settings
from ecommerce_assets.transforms.stream import (
    RequestError,
    encode_record,
    invoice_document,
    parse_request_body,
    validate_lines,
)

Answer = tuple[int, dict[str, Any]]


def post_orders(body: bytes, stream: Stream) -> Answer:
    """Validate a request body and put its lines on the stream: all of them, or none."""
    try:
        items = parse_request_body(body)
    except RequestError as exc:
        return 400, {"error": exc.message, "rule": exc.rule}
    lines, problems = validate_lines(items)
    if problems:
        first = problems[0]["errors"][0]
        summary = f"line {problems[0]['line']}: {first['field']}: {first['message']}"
        return 422, {
            "error": f"{len(problems)} of {len(items)} line(s) rejected; nothing was accepted. First: {summary}",
            "rejected": len(problems),
            "lines": problems,
        }
    try:
        placed = stream.put_records([(line.invoice_no, encode_record(line)) for line in lines])
    except StreamWriteError as exc:
        return 503, {"error": str(exc)}
    return 202, {
        "accepted": len(lines),
        "records": [
            {"line": i, "invoice_no": line.invoice_no, "shard_id": shard, "sequence_number": seq}
            for i, (line, (shard, seq)) in enumerate(zip(lines, placed, strict=True))
        ],
    }


def get_invoice(invoice_no: str, kv_store: KeyValueStore) -> Answer:
    """The invoice's document from the key-value store, or 404."""
    key = invoice_no.strip().upper()
    items = kv_store.get_invoice_lines(key) if key else []
    if not items:
        return 404, {"error": f"invoice {invoice_no!r} not found (unknown, or its lines are not processed yet)"}
    return 200, invoice_document(key, items)


def health(stream: Stream, kv_store: KeyValueStore) -> Answer:
    return 200, {"status": "ok", "stream": stream.describe(), "shards": len(stream.shard_ids()),
                 "kv_store": kv_store.describe()}


def create_app(stream: Stream | None = None, kv_store: KeyValueStore | None = None,
               settings: Settings | None = None) -> Any:
    """The FastAPI app over ``stream`` and ``kv_store`` (default: the environment's)."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse

    settings = settings or get_settings()
    stream = stream or build_stream(settings)
    kv_store = kv_store or build_kv_store(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.env == "local":  # aws: the stream and tables are infrastructure, created by the deploy
            stream.ensure()
            kv_store.ensure()
        yield

    app = FastAPI(
        title="ecommerce-assets ingestion API",
        description=__doc__,
        version="1",
        lifespan=lifespan,
    )

    @app.post("/orders", status_code=202, summary="Put one order line or an array of them on the stream")
    async def orders(request: Request) -> JSONResponse:
        body = await request.body()
        status, payload = await run_in_threadpool(post_orders, body, stream)
        return JSONResponse(payload, status_code=status)

    @app.get("/invoices/{invoice_no}", summary="An invoice and its lines by stock code")
    def invoice(invoice_no: str) -> JSONResponse:
        status, payload = get_invoice(invoice_no, kv_store)
        return JSONResponse(payload, status_code=status)

    @app.get("/health", summary="Liveness and the stream/store in use")
    def healthz() -> JSONResponse:
        status, payload = health(stream, kv_store)
        return JSONResponse(payload, status_code=status)

    return app


class ApiServer:
    """The API served by uvicorn in a background thread (tests, the demo and the benchmark)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0):
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
        self.host, self.port = host, port
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", ws="none",
                                                     access_log=False))
        self._thread: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "ApiServer":
        import threading
        import time

        self._thread = threading.Thread(target=self._server.run, name="ingest-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the ingestion API did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
