"""Load on the ingestion API (issue 13): 10,000 order lines at concurrency 50, then every accepted line in
``gold.firehose_transactions`` exactly once.

1. Starts ``ecommerce-assets ingest-api`` on 127.0.0.1 in its own process (uvicorn, one worker) over a
   fresh data dir, with a bearer token configured (the token check is part of what is measured).
2. POSTs ``--lines`` order lines (default 10,000: the first rows of the full Online Retail data set, or
   the 5,000-line sample repeated when the full set is absent), one line per request, from ``--concurrency``
   (default 50) asyncio workers, each over its own keep-alive connection (a minimal HTTP/1.1 client, so that
   the client's cost stays well below the server's). The loop is bounded: each line is
   sent once (a request that fails is counted, never retried), each request has a 30 s timeout.
   Figures: latency p50 / p99 / max per request, accepted lines per second over the wall time, statuses.
3. Stops the API (SIGTERM) and runs the stream consumer in this process, as ``stream_sensor`` and its
   runs do: plan micro-batches after a per-shard cursor, materialize each with ``run_batch``
   (``dg.materialize`` of the stream batch assets and checks) until the stream is drained.
4. Reads ``gold.firehose_transactions`` and checks that every accepted (shard, sequence number) is there
   exactly once and nothing else is.

Prints the figures and writes them to ``bench/results/ingest_load.json``. Exit code 1 when a line was
lost or duplicated, or a request failed.

Usage: ``.venv/bin/python -m bench.ingest_load [--lines 10000] [--concurrency 50]``
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import io
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "online_retail"
RESULTS = ROOT / "bench" / "results" / "ingest_load.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def order_lines(n: int) -> tuple[list[dict[str, str]], str]:
    """``n`` order lines as the API takes them, and where they came from."""
    full = SHARED / "online_retail.csv.gz"
    if full.exists():
        with gzip.open(full, "rt", encoding="utf-8", newline="") as fh:
            rows = [row for _, row in zip(range(n), csv.DictReader(fh), strict=False)]
        source = f"{full.name}, first {len(rows):,} rows"
    else:
        sample = SHARED / "online_retail_sample_5000.csv"
        if not sample.exists():
            from ecommerce_assets.samples import retail_sample_path

            sample = retail_sample_path()
        base = list(csv.DictReader(io.StringIO(sample.read_text(encoding="utf-8"))))
        rows = [base[i % len(base)] for i in range(n)]
        source = f"{sample.name} repeated to {n:,} rows"
    return rows, source


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class _Connection:
    """One keep-alive HTTP/1.1 connection, written by hand: a general client (httpx) spends ~5 ms of CPU per
    request at 50 in flight on this machine, four times the server's own cost, and would be what is measured."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n" + \
            "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.writer.write(head.encode("latin-1") + body)
        try:
            status_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            self.close()
            raise
        lines = status_line.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:"))
        payload = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        if any(line.lower() == b"connection: close" for line in lines[1:]):
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def post_all(url: str, token: str, lines: list[dict[str, str]], concurrency: int) -> dict[str, Any]:
    """Each line POSTed once by ``concurrency`` workers, one keep-alive connection each; latencies, statuses
    and the accepted records."""
    host, port = url.removeprefix("http://").split(":")
    queue: asyncio.Queue[tuple[int, dict[str, str]]] = asyncio.Queue()
    for item in enumerate(lines):
        queue.put_nowait(item)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    accepted: dict[tuple[str, str], int] = {}
    reasons: Counter[str] = Counter()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    async def worker() -> None:
        connection = _Connection(host, int(port))
        while True:
            try:
                i, line = queue.get_nowait()
            except asyncio.QueueEmpty:
                connection.close()
                return
            started = time.perf_counter()
            try:
                status, payload = await connection.post("/orders", json.dumps(line).encode(), headers, 30.0)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                statuses[f"error: {type(exc).__name__}"] += 1
                continue
            latencies.append(time.perf_counter() - started)
            statuses[str(status)] += 1
            body = json.loads(payload)
            if status == 202:
                [rec] = body["records"]
                accepted[(rec["shard_id"], rec["sequence_number"])] = i
            else:
                first = body["lines"][0]["errors"][0] if "lines" in body else body
                reasons[f"{status} {first.get('field')}: {first.get('rule')}"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "accepted": accepted, "wall": wall, "reasons": reasons}


def start_api(env: dict[str, str], port: int) -> subprocess.Popen:
    import requests

    proc = subprocess.Popen([str(Path(sys.executable).parent / "ecommerce-assets"), "ingest-api", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"], env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with code {proc.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the API did not answer /health within 60 s")


def consume(batch_records: int) -> tuple[int, float]:
    """Drain the stream into the warehouse as the sensor's runs would; (runs, seconds)."""
    import dagster as dg

    from ecommerce_assets.defs.stream.sensors import plan_batches
    from ecommerce_assets.dev.stream_demo import run_batch
    from ecommerce_assets.resources import build_resources

    resources = build_resources()
    instance = dg.DagsterInstance.ephemeral()
    cursor: dict[str, str] = {}
    runs = 0
    started = time.perf_counter()
    while True:
        batches, cursor = plan_batches(resources["stream"], cursor, batch_records)
        if not batches:
            break
        for batch in batches:
            if not run_batch(batch, resources, instance).success:
                raise RuntimeError(f"the stream batch run failed: {batch}")
            runs += 1
    return runs, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--batch-records", type=int, default=2500, help="records per micro-batch of the consumer")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir (default: removed)")
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="ingest-load-"))
    token = secrets.token_urlsafe(24)
    os.environ.update({"ECOMMERCE_ENV": "local", "ECOMMERCE_DATA_DIR": str(data / "data"),
                       "DAGSTER_HOME": str(data / "dagster_home"), "ECOMMERCE_INGEST_TOKENS": token,
                       "ECOMMERCE_STREAM_BATCH_RECORDS": str(args.batch_records)})
    (data / "dagster_home").mkdir(parents=True)
    lines, source = order_lines(args.lines)
    load_at_start = os.getloadavg()[0]

    port = _free_port()
    api = start_api(dict(os.environ), port)
    try:
        posted = asyncio.run(post_all(f"http://127.0.0.1:{port}", token, lines, args.concurrency))
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)
    runs, consume_seconds = consume(args.batch_records)

    from ecommerce_assets.defs.stream.assets import FIREHOSE_TABLE
    from ecommerce_assets.resources import build_resources

    rows = build_resources()["warehouse"].query(f"SELECT shard_id, sequence_number FROM {FIREHOSE_TABLE}").to_pylist()  # noqa: S608
    in_table = Counter((r["shard_id"], r["sequence_number"]) for r in rows)
    accepted = posted["accepted"]
    missing = [k for k in accepted if in_table[k] == 0]
    duplicated = [k for k, n in in_table.items() if n > 1]
    unexpected = [k for k in in_table if k not in accepted]
    lat = posted["latencies"]
    failed = sum(n for s, n in posted["statuses"].items() if not s.isdigit() or int(s) >= 500)
    result = {
        "what": "POST /orders, one line per request, to ecommerce-assets ingest-api on 127.0.0.1 (uvicorn, 1 worker, "
                "bearer token); then the stream consumer into gold.firehose_transactions",
        "source": source,
        "lines": len(lines),
        "concurrency": args.concurrency,
        "statuses": dict(posted["statuses"]),
        "rejections": dict(posted["reasons"]),
        "accepted": len(accepted),
        "failed_requests": failed,
        "wall_seconds": round(posted["wall"], 2),
        "throughput_lines_per_second": round(len(accepted) / posted["wall"], 1),
        "latency_ms": {"p50": round(statistics.median(lat) * 1000, 1), "p99": round(_percentile(lat, 0.99) * 1000, 1),
                       "max": round(max(lat) * 1000, 1), "mean": round(statistics.fmean(lat) * 1000, 1)},
        "consumer": {"runs": runs, "batch_records": args.batch_records, "seconds": round(consume_seconds, 1)},
        "firehose_rows": len(rows),
        "accepted_lines_in_firehose_exactly_once": len(accepted) - len(missing) - len(duplicated),
        "missing": len(missing), "duplicated": len(duplicated), "unexpected": len(unexpected),
        "machine": {"cpus": os.cpu_count(), "load_average_1m_at_start": round(load_at_start, 2),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"\n{len(accepted):,} of {len(lines):,} lines accepted at concurrency {args.concurrency}: "
          f"{result['throughput_lines_per_second']:,} lines/s, p50 {result['latency_ms']['p50']} ms, "
          f"p99 {result['latency_ms']['p99']} ms; in {FIREHOSE_TABLE}: {result['accepted_lines_in_firehose_exactly_once']:,} "
          f"exactly once, {len(missing)} missing, {len(duplicated)} duplicated, {len(unexpected)} unexpected "
          f"({runs} consumer runs, {consume_seconds:.1f} s). Written to {args.out}")
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)
    ok = not missing and not duplicated and not unexpected and failed == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
