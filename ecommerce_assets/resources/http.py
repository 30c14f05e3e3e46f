"""The one way this package makes HTTP requests with retries: a ``requests.Session`` with urllib3's ``Retry``.

``build_session`` mounts a ``urllib3.util.Retry`` policy on an ``HTTPAdapter`` for http:// and https://:

* ``attempts`` tries in all (``Retry(total=attempts - 1)``), on HTTP 429/500/502/503/504, timeouts and
  connection errors; any other status is handed back at once (the caller decides what a 4xx means);
* exponential backoff (urllib3's formula: the first retry at once, retry n >= 2 after
  ``backoff_factor * 2**(n - 1)`` seconds), plus a random jitter of up to ``backoff_jitter`` seconds where the installed urllib3 has it, each wait
  capped at ``backoff_max``;
* a ``Retry-After`` header (seconds or an HTTP date) is honoured instead of the backoff, capped at
  ``retry_after_max``;
* only idempotent methods are retried, plus POST when the caller says so (``retry_post``): then a POST is
  retried after a retryable status or a connection that could not be made, but never once it was sent and
  no answer came (a read timeout, a dropped connection): the server may have acted on it.

``send`` runs one request through such a session and returns an ``Exchange``: the final response (or the
error that ended it) and one ``Try`` per failed try, with what urllib3 waited before the next one. urllib3
keeps only the causes (``Retry.history``); ``RecordingRetry`` also notes each wait and Retry-After, per
thread, so a caller can report its attempts. ``RateLimiter`` spaces request starts; given to
``build_session`` it gates every try, retries included.

This module imports no Dagster (importing it does run ``ecommerce_assets/resources/__init__.py``, which
imports the Dagster resources).
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from urllib3.exceptions import InvalidHeader, MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import RequestHistory, Retry

if TYPE_CHECKING:
    import requests

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
HAS_BACKOFF_JITTER = "backoff_jitter" in inspect.signature(Retry).parameters  # urllib3 >= 2.0


class RateLimiter:
    """At most ``per_second`` units (requests, lines, ...) per second, spaced evenly, shared across threads.

    ``per_second`` of 0 (or less) means unlimited. ``wait(n)`` blocks until ``n`` more units may start.
    """

    def __init__(self, per_second: float, sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep

    def wait(self, units: float = 1.0) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + units * self.interval
        if start > now:
            self._sleep(start - now)


@dataclass
class Try:
    """One failed try: what went wrong, and what the policy did about it."""

    outcome: str  # "http_503", "timeout", "connection_error"
    detail: str  # "HTTP 503", "ReadTimeoutError: ..." (for messages)
    wait_seconds: float = 0.0  # waited before the next try (0 for the last one)
    retry_after: float | None = None  # the server's Retry-After, in seconds (capped), if it sent one
    gave_up: bool = False  # the policy did not try again after this one (out of tries, or not retryable)


def _cause(error: BaseException) -> BaseException:
    """The urllib3 error inside a requests exception (``ConnectionError(MaxRetryError(reason=...))``)."""
    import requests

    inner = error.args[0] if isinstance(error, requests.RequestException) and error.args else error
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        inner = inner.reason
    return inner if isinstance(inner, BaseException) else error


def describe_error(error: BaseException) -> tuple[str, str]:
    """(outcome, detail) of a transport error: ``timeout`` or ``connection_error``, and its type and text."""
    import requests

    cause = _cause(error)
    timed_out = isinstance(error, requests.Timeout) or (
        isinstance(cause, Urllib3TimeoutError | TimeoutError) and not isinstance(cause, NewConnectionError)
    )  # urllib3's NewConnectionError (refused, unresolvable) is a ConnectTimeoutError for old callers' sake
    return ("timeout" if timed_out else "connection_error"), f"{type(cause).__name__}: {cause}"


class _Journal(threading.local):
    tries: list[Try] | None = None


class RecordingRetry(Retry):
    """urllib3's ``Retry`` that also records every failed try (cause, wait, Retry-After) for the calling thread.

    The policy mounted on an adapter is shared by every request of the session; urllib3 derives a new
    ``Retry`` per failure (``increment`` -> ``new``). Every copy shares this thread-local journal, so
    ``send`` can start a record before a request and read it after, however the request ended. Before each
    retry it also waits for the ``limiter`` (if any), and it caps Retry-After at ``retry_after_cap``.
    """

    def __init__(
        self,
        *args: Any,
        retry_after_cap: float | None = None,
        limiter: RateLimiter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after_cap = retry_after_cap
        self.limiter = limiter
        self._journal = _Journal()

    def new(self, **kw: Any) -> Self:
        copy = super().new(**kw)
        copy.retry_after_cap = self.retry_after_cap
        copy.limiter = self.limiter
        copy._journal = self._journal
        return copy

    def begin(self) -> None:
        """Start recording the calling thread's next request."""
        self._journal.tries = []

    def finish(self) -> list[Try]:
        """The failed tries of the calling thread's request since ``begin``; stops recording."""
        tries, self._journal.tries = self._journal.tries or [], None
        return tries

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Self:
        tries = self._journal.tries
        entry: Try | None = None
        if tries is not None:
            if error is not None:
                entry = Try(*describe_error(error))
            else:
                status = response.status if response is not None else 0
                entry = Try(f"http_{status}", f"HTTP {status}")
            tries.append(entry)
        try:
            return super().increment(method, url, response, error, *args, **kwargs)
        except BaseException:
            if entry is not None:
                entry.gave_up = True
            raise

    def backoff_after(self, failures: int) -> float:
        """The policy's backoff (jitter included) after ``failures`` failures in a row, e.g. for a caller's retry."""
        history = (RequestHistory("GET", None, None, None, None),) * failures
        return self.new(history=history).get_backoff_time()

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        """As ``Retry.sleep`` (Retry-After if given, else the backoff), capped, recorded, then the rate limit."""
        retry_after = None
        if self.respect_retry_after_header and response is not None:
            try:
                retry_after = self.get_retry_after(response)
            except InvalidHeader:  # an unreadable Retry-After: use the backoff
                retry_after = None
            if retry_after is not None and self.retry_after_cap is not None:
                retry_after = min(retry_after, self.retry_after_cap)
        wait = retry_after if retry_after else self.get_backoff_time()
        tries = self._journal.tries
        if tries:
            tries[-1].wait_seconds, tries[-1].retry_after = wait, retry_after
        if wait > 0:
            time.sleep(wait)
        if self.limiter is not None:
            self.limiter.wait()


def retry_policy(
    *,
    attempts: int,
    backoff_factor: float,
    backoff_max: float,
    backoff_jitter: float | None = None,
    retry_after_max: float | None = None,
    retry_post: bool = False,
    status_forcelist: Collection[int] = RETRY_STATUSES,
    limiter: RateLimiter | None = None,
) -> RecordingRetry:
    """The retry policy ``build_session`` mounts (see the module docstring); ``attempts`` >= 1 tries in all.

    ``retry_post`` adds POST to the retried methods and stops retrying read errors (for every method of
    the session): a request that was sent and got no answer may have been acted on.

    ``backoff_jitter`` defaults to ``backoff_factor``; ``retry_after_max`` defaults to ``backoff_max``.
    """
    methods = Retry.DEFAULT_ALLOWED_METHODS | ({"POST"} if retry_post else set())
    jitter = backoff_factor if backoff_jitter is None else backoff_jitter
    return RecordingRetry(
        total=max(0, attempts - 1),
        read=0 if retry_post else None,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        **({"backoff_jitter": jitter} if HAS_BACKOFF_JITTER else {}),
        status_forcelist=frozenset(status_forcelist),
        allowed_methods=frozenset(methods),
        respect_retry_after_header=True,
        raise_on_status=False,  # out of tries on a status: hand back the last response, the caller names it
        retry_after_cap=backoff_max if retry_after_max is None else retry_after_max,
        limiter=limiter,
    )


def build_session(
    *,
    attempts: int,
    backoff_factor: float,
    backoff_max: float,
    backoff_jitter: float | None = None,
    retry_after_max: float | None = None,
    retry_post: bool = False,
    status_forcelist: Collection[int] = RETRY_STATUSES,
    limiter: RateLimiter | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Session:
    """A ``requests.Session`` whose http:// and https:// adapters retry with ``retry_policy(...)``."""
    import requests
    from requests.adapters import HTTPAdapter

    policy = retry_policy(
        attempts=attempts,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        backoff_jitter=backoff_jitter,
        retry_after_max=retry_after_max,
        retry_post=retry_post,
        status_forcelist=status_forcelist,
        limiter=limiter,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if headers:
        session.headers.update(headers)
    return session


def policy_of(session: requests.Session, url: str) -> RecordingRetry:
    """The ``RecordingRetry`` mounted for ``url`` on a session from ``build_session``."""
    policy = session.get_adapter(url).max_retries
    if not isinstance(policy, RecordingRetry):
        raise TypeError("the session was not made by ecommerce_assets.resources.http.build_session")
    return policy


@dataclass
class Exchange:
    """How one ``send`` ended: the final response, or the error that ended it, and every failed try."""

    url: str
    response: requests.Response | None
    error: requests.RequestException | None
    failures: list[Try] = field(default_factory=list)

    @property
    def gave_up(self) -> bool:
        """True when the policy stopped on a failure (out of tries, or an error it must not retry)."""
        return bool(self.failures) and self.failures[-1].gave_up

    @property
    def attempts(self) -> int:
        """Tries made in all: the failed ones, plus the final response when it was not one of them."""
        return len(self.failures) + (0 if self.gave_up else 1)

    @property
    def last(self) -> Try | None:
        """The failure that ended the exchange (None when it ended on a response the policy accepted)."""
        return self.failures[-1] if self.gave_up else None


def send(session: requests.Session, method: str, url: str, **kwargs: Any) -> Exchange:
    """One request through ``session`` (from ``build_session``), its retries included; never raises for HTTP.

    Transport errors after the last try (connection refused, timeouts, a connection dropped mid-body)
    come back as ``Exchange.error`` with a last ``Try`` that says so; a retryable status after the last try
    comes back as ``Exchange.response`` with ``gave_up`` set.
    """
    import requests

    policy = policy_of(session, url)
    policy.begin()
    response: requests.Response | None = None
    error: requests.RequestException | None = None
    if policy.limiter is not None:
        policy.limiter.wait()
    try:
        response = session.request(method, url, **kwargs)
    except requests.RequestException as exc:
        error = exc
    finally:
        failures = policy.finish()
    if error is not None and not (failures and failures[-1].gave_up):
        # an error urllib3 never saw (e.g. the body cut off after the headers): the last try failed all the same
        failures.append(Try(*describe_error(error), gave_up=True))
    return Exchange(url=url, response=response, error=error, failures=failures)
