"""The ingestion API: order lines in over HTTP, onto the stream; invoices out of the key-value store.

Routes (the same in the FastAPI app served by ``ecommerce-assets ingest-api`` and in the API Gateway
Lambda ``lambdas/ingest_api.py``; both call the framework-free handlers below):

* ``POST /orders`` - one order line (a JSON object) or a JSON array of at most 500. Every line is
  validated (``ecommerce_assets.transforms.order_lines``). Answers ``202`` with the shard and sequence number
  of every line; ``401`` without a valid bearer token (when tokens are configured); ``415`` unless the
  body is ``application/json``; ``413`` when the body is over 1,000,000 bytes (told by Content-Length
  before anything is read, or counted while a chunked body is read, which then stops); ``400`` when the
  body is not UTF-8 JSON / not an object or array / empty; ``422`` when the JSON is nested too deeply or
  any line is bad, listing each bad line with its field, rule and message - and then no line of the
  request is put on the stream. Accepted lines go on the stream with the invoice number as partition key
  (an invoice's lines stay in order on one shard; invoices spread over the shards).
* ``GET /invoices/{invoice_no}`` - the invoice from the key-value store (its lines by stock code);
  ``404`` when no line of it has been processed yet; ``401`` without a valid token.
* ``GET /health`` - ``200`` with the kinds of stream and store in use (no paths, no names); no token needed.

Access: ``ECOMMERCE_INGEST_TOKENS`` (comma-separated) lists the bearer tokens accepted in
``Authorization: Bearer <token>``, compared in constant time. Without tokens the API is open: the CLI then
listens on a loopback address only, unless ``--insecure``. The interactive documentation (``/docs``,
``/redoc``, ``/openapi.json``) is off unless asked for (``--docs``).
"""

import contextlib
import hmac
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ecommerce_assets.settings import Settings, get_settings
from ecommerce_assets.storage.kv_store import KeyValueStore, build_kv_store
from ecommerce_assets.storage.stream import LocalStream, Stream, StreamWriteError, build_stream
from ecommerce_assets.transforms.order_lines import (
    MAX_BODY_BYTES,
    RequestError,
    encode_record,
    parse_request_body,
    show,
    validate_lines,
)
from ecommerce_assets.transforms.stream_batches import invoice_document

Answer = tuple[int, dict[str, Any]]

AUTHENTICATE = 'Bearer realm="ecommerce-assets ingestion API"'


def header_map(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """Request headers with lower-case names (API Gateway REST events keep the sender's case)."""
    return {str(k).lower(): str(v) for k, v in (headers or {}).items() if v is not None}


def authorize(authorization: str | None, tokens: Sequence[str]) -> Answer | None:
    """``None`` when the request may go on, else the 401 answer.

    With no tokens configured every request may go on. Otherwise the ``Authorization: Bearer <token>``
    header must carry one of them; every configured token is compared with ``hmac.compare_digest`` (no
    early exit), so the time taken tells nothing about how much of a token was right."""
    if not tokens:
        return None
    scheme, _, presented = (authorization or "").strip().partition(" ")
    given = presented.strip().encode("utf-8", "surrogatepass")
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given, token.encode("utf-8", "surrogatepass"))
    if scheme.lower() == "bearer" and given and matched:
        return None
    reason = "no bearer token" if not authorization else "the bearer token is not valid"
    return 401, {"error": f"{reason}: send 'Authorization: Bearer <token>' with a token from ECOMMERCE_INGEST_TOKENS",
                 "rule": "unauthorized", "field": "Authorization"}


def check_content_type(content_type: str | None) -> Answer | None:
    """``None`` for ``application/json`` (charset utf-8 or none), else the 415 answer.

    ``text/plain``, form bodies and a missing type are refused: they are what a web page can send
    cross-site without a CORS preflight."""
    media, _, params = (content_type or "").partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if media.strip().lower() == "application/json" and charset in (None, "utf-8", "utf8"):
        return None
    got = show(content_type) if content_type else "none"
    return 415, {"error": f"Content-Type must be application/json (UTF-8), got {got}",
                 "rule": "unsupported_media_type", "field": "Content-Type"}


def check_length(content_length: str | None) -> Answer | None:
    """``None`` when the declared length is within the limit (or not declared: chunked), else 413/400."""
    if content_length is None:
        return None
    try:
        declared = int(content_length.strip())
    except ValueError:
        return 400, {"error": f"Content-Length {show(content_length)} is not a number", "rule": "bad_content_length",
                     "field": "Content-Length"}
    if declared > MAX_BODY_BYTES:
        return too_large()
    return None


def too_large() -> Answer:
    return 413, {"error": f"the body is larger than {MAX_BODY_BYTES:,} bytes; send at most 500 lines per request",
                 "rule": "body_too_large", "field": "body"}


def check_post(headers: Mapping[str, str], tokens: Sequence[str]) -> Answer | None:
    """Everything decided from the headers of ``POST /orders`` before its body is read: 401, 415, 413."""
    return (authorize(headers.get("authorization"), tokens) or check_content_type(headers.get("content-type"))
            or check_length(headers.get("content-length")))


def post_orders(body: bytes, stream: Stream, write_lock: contextlib.AbstractContextManager[Any] | None = None) -> Answer:
    """Validate a request body and put its lines on the stream: all of them, or none.

    ``write_lock`` serializes the writes of one process (the local log: SQLite takes one writer at a time,
    and threads waiting in its busy handler sleep up to 100 ms each try)."""
    try:
        items = parse_request_body(body)
    except RequestError as exc:
        return exc.status, {"error": exc.message, "rule": exc.rule, "field": "body"}
    lines, problems = validate_lines(items)
    if problems:
        first = problems[0]["errors"][0]
        summary = f"line {problems[0]['line']}: {first['field']}: {first['message']}"
        return 422, {
            "error": f"{len(problems)} of {len(items)} line(s) rejected; nothing was accepted. First: {summary}",
            "rejected": len(problems),
            "lines": problems,
        }
    records = [(line.invoice_no, encode_record(line)) for line in lines]
    try:
        with write_lock or contextlib.nullcontext():
            placed = stream.put_records(records)
    except StreamWriteError as exc:
        return 503, {"error": str(exc)}
    return 202, {
        "accepted": len(lines),
        "records": [
            {"line": i, "invoice_no": line.invoice_no, "shard_id": shard, "sequence_number": seq}
            for i, (line, (shard, seq)) in enumerate(zip(lines, placed, strict=True))
        ],
    }


def handle_post(headers: Mapping[str, str], body: bytes, stream: Stream, tokens: Sequence[str]) -> Answer:
    """``POST /orders`` from headers and a body already in memory (the Lambda): the same checks, in order."""
    denied = check_post(headers, tokens)
    if denied is not None:
        return denied
    if len(body) > MAX_BODY_BYTES:
        return too_large()
    return post_orders(body, stream)


def get_invoice(invoice_no: str, kv_store: KeyValueStore) -> Answer:
    """The invoice's document from the key-value store, or 404."""
    key = invoice_no.strip().upper()
    items = kv_store.get_invoice_lines(key) if key and len(key) <= 64 else []
    if not items:
        return 404, {"error": f"invoice {show(invoice_no)} not found (unknown, or its lines are not processed yet)"}
    return 200, invoice_document(key, items)


def _kind(description: str) -> str:
    scheme = description.split("://", 1)[0]
    return {"sqlite": "local"}.get(scheme, scheme)


def health(stream: Stream, kv_store: KeyValueStore, tokens: Sequence[str] = ()) -> Answer:
    """Liveness: the kinds of stream and store (``local``, ``kinesis``, ``dynamodb``), never a path or a name."""
    return 200, {"status": "ok", "stream": _kind(stream.describe()), "shards": len(stream.shard_ids()),
                 "kv_store": _kind(kv_store.describe()), "auth": "bearer" if tokens else "none"}


def create_app(stream: Stream | None = None, kv_store: KeyValueStore | None = None,
               settings: Settings | None = None, *, docs: bool = False,
               tokens: Sequence[str] | None = None) -> Any:
    """The FastAPI app over ``stream`` and ``kv_store`` (default: the environment's).

    ``tokens`` default to ``settings.ingest_tokens``; ``docs=True`` serves ``/docs``, ``/redoc`` and
    ``/openapi.json`` (off by default: they describe the API to anyone who can reach it)."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse
    from starlette.requests import ClientDisconnect

    settings = settings or get_settings()
    stream = stream or build_stream(settings)
    kv_store = kv_store or build_kv_store(settings)
    accepted_tokens = tuple(settings.ingest_tokens if tokens is None else tokens)
    write_lock = threading.Lock() if isinstance(stream, LocalStream) else None  # Kinesis takes parallel puts

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
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )

    def reply(answer: Answer, close: bool = False) -> JSONResponse:
        status, payload = answer
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
        if status == 401:
            headers["WWW-Authenticate"] = AUTHENTICATE
        if close:  # the rest of the body is not read: end the connection rather than drain it
            headers["Connection"] = "close"
        return JSONResponse(payload, status_code=status, headers=headers)

    async def read_limited(request: Request) -> bytes | None:
        """The body, or ``None`` as soon as more than ``MAX_BODY_BYTES`` have arrived (chunked bodies)."""
        size, parts = 0, []
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None
            parts.append(chunk)
        return b"".join(parts)

    def gone() -> Answer:
        return 400, {"error": "the client closed the connection before the body was complete",
                     "rule": "incomplete_body", "field": "body"}

    @app.post("/orders", status_code=202, summary="Put one order line or an array of them on the stream")
    async def orders(request: Request) -> JSONResponse:
        denied = check_post(request.headers, accepted_tokens)
        if denied is not None:
            return reply(denied, close=denied[0] == 413)
        try:
            body = await read_limited(request)
        except ClientDisconnect:  # nobody is left to answer; nothing was put on the stream
            return reply(gone(), close=True)
        if body is None:
            return reply(too_large(), close=True)
        return reply(await run_in_threadpool(post_orders, body, stream, write_lock))

    @app.get("/invoices/{invoice_no}", summary="An invoice and its lines by stock code")
    def invoice(invoice_no: str, request: Request) -> JSONResponse:
        denied = authorize(request.headers.get("authorization"), accepted_tokens)
        if denied is not None:
            return reply(denied)
        return reply(get_invoice(invoice_no, kv_store))

    @app.get("/health", summary="Liveness and the kinds of stream/store in use")
    def healthz() -> JSONResponse:
        return reply(health(stream, kv_store, accepted_tokens))

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
                                                     access_log=False, timeout_graceful_shutdown=3))
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
