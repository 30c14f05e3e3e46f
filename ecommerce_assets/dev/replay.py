"""Replay an Online Retail CSV into the ingestion API, one POST per line (or --batch lines per POST).

Reads the CSV (UTF-8 or ISO-8859-1, header checked), sends its rows to ``<url>/orders`` at ``--rate``
lines per second with ``--concurrency`` requests in flight, shows a progress bar, and ends with a summary
of accepted, rejected (the API answered 400/422: the line is bad) and failed lines (the API could not be
reached, refused the token (401) or answered 429/5xx after the retries), with the rejection reasons by field and
rule. Every request carries ``Authorization: Bearer $ECOMMERCE_INGEST_TOKEN`` when that is set (else the first
of ``ECOMMERCE_INGEST_TOKENS``, for a client on the server's own environment). When a batched
request is rejected because of some of its lines, the other lines are sent again without them (the API
accepts a request whole or not at all). Exit code 0 when nothing failed, 1 otherwise.

Example: ``ecommerce-assets replay online_retail.csv --url http://127.0.0.1:8000 --rate 200 --concurrency 8``
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ecommerce_assets.resources.http import RateLimiter, build_session, send
from ecommerce_assets.transforms.files import open_csv
from ecommerce_assets.transforms.order_lines import FIELDS, HEADER_ALIASES, MAX_LINES_PER_REQUEST

NAME = "replay"
HELP = "replay an Online Retail CSV into the ingestion API (rate, concurrency, progress, summary)"


@dataclass
class ReplaySummary:
    """What a replay did; ``accepted + rejected + failed == lines``."""

    lines: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    requests: int = 0
    seconds: float = 0.0
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    records: list[dict[str, Any]] = field(default_factory=list)  # accepted: line number, shard, sequence

    @property
    def lines_per_second(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def text(self) -> str:
        out = [
            f"lines: {self.lines}  accepted: {self.accepted}  rejected: {self.rejected}  failed: {self.failed}  "
            f"requests: {self.requests}  {self.seconds:.1f} s  ({self.lines_per_second:.0f} accepted lines/s)"
        ]
        for reason, n in self.reasons.most_common(10):
            failed = reason.startswith("failed: ")
            out.append(f"  {'failed' if failed else 'rejected':<8} {n:>6}  {reason.removeprefix('failed: ')}")
        return "\n".join(out)


def read_lines(path: Path, limit: int | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, order line with the API's field names) for each CSV row (row 1 = first data row)."""
    text = open_csv(path, required=[f.lower() for f in FIELDS])
    with path.open("r", encoding=text.encoding, newline="") as fh:
        reader = csv.reader(fh)
        header = [HEADER_ALIASES.get(h.strip().lstrip("\ufeff").lower().replace(" ", ""), h) for h in next(reader)]
        for n, row in enumerate(reader, start=1):
            if limit is not None and n > limit:
                return
            yield n, {h: v for h, v in zip(header, row, strict=False) if h in FIELDS}


def default_token() -> str | None:
    """The bearer token a client sends: ``ECOMMERCE_INGEST_TOKEN``, else the first ``ECOMMERCE_INGEST_TOKENS``."""
    from ecommerce_assets.settings import get_settings

    settings = get_settings()
    return settings.ingest_token or (settings.ingest_tokens[0] if settings.ingest_tokens else None)


class _Sender:
    """POSTs order lines to ``<url>/orders``, one ``requests`` session per thread.

    The session (``ecommerce_assets.resources.http.build_session``) retries a POST up to ``retries`` times
    on HTTP 429/500/502/503/504 and on connections that could not be made (the first retry at once, then
    0.2 s * 2**(n-1) plus jitter, capped at 2 s; Retry-After honoured up to 2 s). Those are safe to repeat: the
    API accepts a request whole or not at all. A POST that was sent and got no answer (read timeout,
    dropped connection) is not repeated, since the API may have put its lines on the stream already:
    its lines count as failed.
    """

    def __init__(self, url: str, timeout: float, retries: int, token: str | None = None):
        self.url = url.rstrip("/") + "/orders"
        self.timeout = timeout
        self.retries = retries
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = build_session(
                attempts=self.retries + 1, backoff_factor=0.2, backoff_max=2.0, retry_post=True
            )
        return session

    def post(self, lines: list[dict[str, str]]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) of one POST after the session's retries; (0, {"error": ...}) if none came."""
        body = json.dumps(lines[0] if len(lines) == 1 else lines).encode("utf-8")
        exchange = send(
            self._session(), "POST", self.url, data=body, timeout=self.timeout, headers=self.headers
        )
        reply = exchange.response
        if reply is None:
            assert exchange.last is not None  # no response: the exchange ended on a transport failure
            return 0, {"error": exchange.last.detail}
        try:
            payload = reply.json()
        except ValueError:
            payload = {"error": reply.text[:200]}
        return reply.status_code, payload


def _send_batch(sender: _Sender, batch: list[tuple[int, dict[str, str]]]) -> ReplaySummary:
    result = ReplaySummary(lines=len(batch))
    while batch:
        status, payload = sender.post([line for _, line in batch])
        result.requests += 1
        if status == 202:
            result.accepted += len(batch)
            for (row, _), rec in zip(batch, payload.get("records", []), strict=False):
                result.records.append(
                    {"row": row, "shard_id": rec["shard_id"], "sequence_number": rec["sequence_number"]}
                )
            return result
        if status == 422 and "lines" in payload:
            bad = {p["line"] for p in payload["lines"]}
            for p in payload["lines"]:
                e = p["errors"][0]
                result.reasons[f"{e['field']}: {e['rule']}"] += 1
            result.rejected += len(bad)
            batch = [b for i, b in enumerate(batch) if i not in bad]  # resend the good lines
            continue
        if status in (401, 403):  # not the lines' fault: they were not delivered
            result.failed += len(batch)
            result.reasons[
                f"failed: HTTP {status}: the API refused the token (set ECOMMERCE_INGEST_TOKEN)"
            ] += len(batch)
            return result
        if 400 <= status < 500 and status != 429:  # a 429 after the retries is not the lines' fault either
            result.rejected += len(batch)
            result.reasons[f"request: {payload.get('rule', status)}"] += len(batch)
            return result
        result.failed += len(batch)
        result.reasons[f"failed: HTTP {status or 'no answer'}: {str(payload.get('error'))[:80]}"] += len(
            batch
        )
        return result
    return result


def replay_file(
    path: Path,
    url: str,
    *,
    rate: float = 0.0,
    concurrency: int = 4,
    batch: int = 1,
    limit: int | None = None,
    timeout: float = 30.0,
    retries: int = 2,
    progress: bool = True,
    token: str | None = None,
) -> ReplaySummary:
    """POST the CSV's rows to the API; return the summary (also used by the demo and the benchmark).

    ``token`` is the bearer token sent with every request (default: ``default_token()``)."""
    from tqdm import tqdm

    if not 1 <= batch <= MAX_LINES_PER_REQUEST:
        raise ValueError(f"--batch must be between 1 and {MAX_LINES_PER_REQUEST}")
    sender = _Sender(url, timeout, retries, token if token is not None else default_token())
    limiter = RateLimiter(rate)
    total = ReplaySummary()
    started = time.monotonic()
    bar = tqdm(total=limit, unit="line", disable=not progress, desc="replay")

    def run(chunk: list[tuple[int, dict[str, str]]]) -> ReplaySummary:
        limiter.wait(len(chunk))  # --rate counts lines, whatever the batch size
        return _send_batch(sender, chunk)

    def collect(done: set[Future[ReplaySummary]]) -> None:
        for fut in done:
            r = fut.result()
            total.lines += r.lines
            total.accepted += r.accepted
            total.rejected += r.rejected
            total.failed += r.failed
            total.requests += r.requests
            total.reasons.update(r.reasons)
            total.records.extend(r.records)
            bar.update(r.lines)
            bar.set_postfix(
                accepted=total.accepted, rejected=total.rejected, failed=total.failed, refresh=False
            )

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="replay") as pool:
        in_flight: set[Future[ReplaySummary]] = set()
        chunk: list[tuple[int, dict[str, str]]] = []
        for item in read_lines(path, limit):
            chunk.append(item)
            if len(chunk) >= batch:
                in_flight.add(pool.submit(run, chunk))
                chunk = []
            if len(in_flight) >= 2 * max(1, concurrency):
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                collect(done)
        if chunk:
            in_flight.add(pool.submit(run, chunk))
        done, _ = wait(in_flight)
        collect(done)
    bar.close()
    total.seconds = time.monotonic() - started
    total.records.sort(key=lambda r: r["row"])
    return total


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ecommerce_assets.settings import get_settings

    parser.add_argument("file", type=Path, help="an Online Retail CSV (InvoiceNo, StockCode, ... Country)")
    parser.add_argument(
        "--url",
        default=None,
        help=f"the API's base URL (default: ECOMMERCE_INGEST_API_URL or {get_settings().ingest_api_url})",
    )
    parser.add_argument("--rate", type=float, default=0.0, help="lines per second (0 = as fast as possible)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument(
        "--batch", type=int, default=1, help="lines per POST, 1-500 (default 1: one POST per line)"
    )
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N rows")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from ecommerce_assets.settings import get_settings

    url = args.url or get_settings().ingest_api_url
    summary = replay_file(
        args.file,
        url,
        rate=args.rate,
        concurrency=args.concurrency,
        batch=args.batch,
        limit=args.limit,
        timeout=args.timeout,
        progress=not args.no_progress,
    )
    print(summary.text())
    return 1 if summary.failed else 0
