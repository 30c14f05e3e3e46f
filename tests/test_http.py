"""``ecommerce_assets.resources.http`` (urllib3 ``Retry`` on a ``requests`` session) and the replay sender built on
it, against a real HTTP server on loopback that answers from a script: statuses, Retry-After, dropped connections."""

from __future__ import annotations

import email.utils
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ecommerce_assets.dev.replay import replay_file
from ecommerce_assets.resources.http import RateLimiter, build_session, send
from ecommerce_assets.samples import retail_sample_path
from tests.conftest import free_port


@dataclass
class Script:
    """What the server answers, one step per request (then 200/202): an int status, ``(status, headers)``, or
    ``"drop"`` (read the request, close the connection without an answer)."""

    steps: list = field(default_factory=list)
    seen: list[tuple[str, float]] = field(default_factory=list)  # (method, monotonic time) per request
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            return

        def _answer(self, ok: int, body: bytes) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with script.lock:
                script.seen.append((self.command, time.monotonic()))
                step = script.steps.pop(0) if script.steps else ok
            if step == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, headers = step if isinstance(step, tuple) else (step, {})
            body = body if status == ok else b'{"error": "scripted"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            self._answer(200, b'{"ok": true}')

        def do_POST(self) -> None:  # noqa: N802 - the base class's name
            self._answer(202, b'{"records": [{"shard_id": "s-0", "sequence_number": "1"}]}')

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def session(**kw):
    opts = {"attempts": 4, "backoff_factor": 0.05, "backoff_max": 1.0}
    return build_session(**{**opts, **kw})


def test_retryable_statuses_are_retried_with_backoff_and_recorded(server) -> None:
    url, script = server
    script.steps = [503, 500, 502]
    ex = send(session(), "GET", url + "/x", timeout=5)
    assert ex.response is not None and ex.response.status_code == 200 and ex.response.json() == {"ok": True}
    assert ex.attempts == 4 and not ex.gave_up and ex.last is None
    assert [t.outcome for t in ex.failures] == ["http_503", "http_500", "http_502"]
    waits = [t.wait_seconds for t in ex.failures]
    assert (
        waits[0] == 0 and 0.1 <= waits[1] <= 0.15 and 0.2 <= waits[2] <= 0.25
    )  # retry n after factor * 2**(n - 1), plus a jitter of up to factor
    times = [t for _, t in script.seen]
    assert all(b - a >= w for a, b, w in zip(times, times[1:], waits, strict=False))  # the waits were slept


def test_out_of_attempts_hands_back_the_last_response(server) -> None:
    url, script = server
    script.steps = [500] * 10
    ex = send(session(attempts=3), "GET", url, timeout=5)
    assert (
        ex.response is not None
        and ex.response.status_code == 500
        and ex.response.json() == {"error": "scripted"}
    )
    assert ex.gave_up and ex.attempts == 3 and ex.last is not None and ex.last.outcome == "http_500"
    assert len(script.seen) == 3


def test_other_statuses_are_not_retried(server) -> None:
    url, script = server
    script.steps = [404]
    ex = send(session(), "GET", url, timeout=5)
    assert ex.response is not None and ex.response.status_code == 404
    assert ex.attempts == 1 and not ex.failures and len(script.seen) == 1


def test_retry_after_as_an_http_date_is_honoured_and_capped(server) -> None:
    url, script = server
    in_two_seconds = email.utils.formatdate(time.time() + 2, usegmt=True)
    script.steps = [(503, {"Retry-After": in_two_seconds}), (429, {"Retry-After": "3600"})]
    started = time.monotonic()
    ex = send(session(backoff_max=1.5), "GET", url, timeout=5)
    took = time.monotonic() - started
    assert ex.response is not None and ex.response.status_code == 200
    first, second = ex.failures
    assert (
        first.retry_after is not None
        and 0 < first.retry_after <= 1.5
        and first.wait_seconds == first.retry_after
    )
    assert second.retry_after == 1.5 and second.wait_seconds == 1.5  # an hour asked, the cap waited
    assert first.wait_seconds + 1.5 <= took < 10


def test_a_dropped_get_is_retried_but_a_dropped_post_is_not(server) -> None:
    url, script = server
    script.steps = ["drop", "drop"]
    ex = send(session(), "GET", url, timeout=5)
    assert ex.response is not None and ex.response.status_code == 200
    assert [t.outcome for t in ex.failures] == ["connection_error", "connection_error"]

    script.seen.clear()
    script.steps = [503, "drop"]
    ex = send(session(retry_post=True), "POST", url, data=b"{}", timeout=5)
    assert ex.response is None and ex.error is not None and ex.gave_up
    assert [t.outcome for t in ex.failures] == [
        "http_503",
        "connection_error",
    ]  # the 503 retried, the drop not
    assert [m for m, _ in script.seen] == ["POST", "POST"]

    script.seen.clear()
    script.steps = [503]
    ex = send(session(), "POST", url, data=b"{}", timeout=5)  # POST not declared safe: no retry at all
    assert ex.response is not None and ex.response.status_code == 503 and len(script.seen) == 1


def test_a_timeout_is_retried_then_reported() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts the connections; nothing answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    started = time.monotonic()
    try:
        ex = send(session(attempts=2, backoff_factor=0.01), "GET", url, timeout=0.2)
    finally:
        listener.close()
    assert time.monotonic() - started < 5
    assert ex.response is None and ex.gave_up and ex.attempts == 2
    assert [t.outcome for t in ex.failures] == ["timeout", "timeout"]
    assert "ReadTimeoutError" in ex.failures[-1].detail


def test_connection_refused_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    ex = send(session(attempts=3, backoff_factor=0.01), "GET", url, timeout=2)
    assert ex.response is None and ex.gave_up and ex.attempts == 3
    assert [t.outcome for t in ex.failures] == ["connection_error"] * 3
    assert "NewConnectionError" in ex.failures[-1].detail


def test_the_limiter_gates_every_try_retries_included(server) -> None:
    url, script = server
    script.steps = [500, 500]
    ex = send(session(limiter=RateLimiter(per_second=10), backoff_factor=0), "GET", url, timeout=5)
    assert ex.attempts == 3
    times = [t for _, t in script.seen]
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.1 - 0.01  # 10/s: 100 ms apart


def test_rate_limiter_counts_units() -> None:
    limiter = RateLimiter(per_second=100)
    started = time.monotonic()
    limiter.wait(10)  # the first batch starts at once and holds the next 100 ms
    limiter.wait(10)
    limiter.wait(1)
    assert time.monotonic() - started >= 0.2 - 0.005
    assert RateLimiter(per_second=0).interval == 0.0


def test_replay_retries_a_503_and_counts_a_lost_post_as_failed(server) -> None:
    url, script = server
    script.steps = [503]
    summary = replay_file(retail_sample_path(), url, limit=1, concurrency=1, progress=False, token="t")
    assert (summary.accepted, summary.failed, summary.requests) == (1, 0, 1)
    assert [m for m, _ in script.seen] == ["POST", "POST"]  # one replay request, two tries on the wire

    script.seen.clear()
    script.steps = ["drop"]
    summary = replay_file(retail_sample_path(), url, limit=1, concurrency=1, progress=False, token="t")
    assert (summary.accepted, summary.failed) == (0, 1)
    assert len(script.seen) == 1  # sent once: the API may have taken it, so it is not sent again
    assert any("no answer" in reason for reason in summary.reasons)

    script.seen.clear()
    script.steps = [429] * 5
    summary = replay_file(
        retail_sample_path(), url, limit=1, concurrency=1, progress=False, token="t", retries=1
    )
    assert (summary.accepted, summary.rejected, summary.failed) == (
        0,
        0,
        1,
    )  # throttled: not the line's fault
    assert len(script.seen) == 2
