"""Benchmark of the streaming path (local mode): API throughput and POST -> warehouse-row latency.

1. Throughput: the API served by ``ecommerce-assets ingest-api`` in its own process; the replay client
   POSTs the Online Retail sample (one line per POST, then 100 lines per POST) with 8 requests in flight.
   Figure: accepted lines per second.
2. Latency: lines POSTed one at a time at a steady rate while a consumer in this process does what the
   stream sensor and its runs do (plan micro-batches after a per-shard cursor, materialize each batch with
   ``dg.materialize``) in a loop. Figure: time from a line's POST to the end of the run that loaded its
   row into ``gold.firehose_transactions`` (p50 / p95 / max). Under the daemon add the sensor interval
   (10 s minimum) and the run launcher's process start.

Usage: ``.venv/bin/python bench/bench_stream.py [--lines 5000] [--latency-seconds 20] [--rate 25]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail_sample_5000.csv"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_api(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([str(Path(sys.executable).parent / "ecommerce-assets"), "ingest-api", "--port", str(port),
                             "--log-level", "warning"], env=os.environ.copy(), start_new_session=True)
    for _ in range(600):
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("the API did not start")


def throughput(sample: Path, lines: int) -> list[str]:
    from ecommerce_assets.dev.replay import replay_file

    port = _free_port()
    api = _start_api(port)
    out = []
    try:
        for batch in (1, 100):
            s = replay_file(sample, f"http://127.0.0.1:{port}", concurrency=8, batch=batch, limit=lines, progress=False)
            out.append(f"| POST /orders, {batch} line(s) per request, 8 in flight | {s.accepted} accepted, "
                       f"{s.rejected} rejected, {s.failed} failed | {s.seconds:.1f} s | **{s.lines_per_second:,.0f} lines/s** |")
    finally:
        api.terminate()
        api.wait(timeout=30)
    return out


def latency(sample: Path, seconds: float, rate: float) -> list[str]:
    import dagster as dg

    from ecommerce_assets.defs.stream.sensors import plan_batches
    from ecommerce_assets.dev.replay import read_lines
    from ecommerce_assets.dev.stream_demo import run_batch
    from ecommerce_assets.resources import build_resources
    from ecommerce_assets.services.ingest_api import ApiServer, create_app
    from ecommerce_assets.settings import get_settings

    settings = get_settings()
    resources = build_resources(settings)
    instance = dg.DagsterInstance.ephemeral()
    posted: dict[tuple[str, str], float] = {}
    loaded: dict[tuple[str, str], float] = {}
    stop = threading.Event()
    cursor: dict[str, str] = {}
    # start from the end of the stream (the throughput phase filled it)
    for shard in resources["stream"].shard_ids():
        while recs := resources["stream"].read_after(shard, cursor.get(shard), 10_000):
            cursor[shard] = recs[-1].sequence_number

    def consume() -> None:
        nonlocal cursor
        while not stop.is_set() or len(loaded) < len(posted):
            batches, cursor = plan_batches(resources["stream"], cursor, settings.stream_batch_records)
            for b in batches:
                run_batch(b, resources, instance)
                done = time.time()
                for r in resources["stream"].read_range(b.shard_id, b.first, b.last):
                    loaded[(r.shard_id, r.sequence_number)] = done
            if not batches:
                time.sleep(0.05)

    consumer = threading.Thread(target=consume)
    consumer.start()
    with ApiServer(create_app(resources["stream"], resources["kv_store"], settings)) as server, requests.Session() as http:
        lines = read_lines(sample)
        end = time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < end:
            _, line = next(lines)
            t = time.time()
            r = http.post(f"{server.url}/orders", data=json.dumps(line), timeout=10,
                          headers={"Content-Type": "application/json"})
            if r.status_code == 202:
                rec = r.json()["records"][0]
                posted[(rec["shard_id"], rec["sequence_number"])] = t
            next_at += 1 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        stop.set()
        consumer.join()
    lat = sorted(loaded[k] - posted[k] for k in posted)
    p95 = lat[int(0.95 * (len(lat) - 1))]
    return [f"| POST -> row in gold.firehose_transactions, {len(lat)} lines at {rate:g} lines/s, in-process "
            f"consumer loop | p50 {statistics.median(lat):.2f} s | p95 {p95:.2f} s | max {lat[-1]:.2f} s |"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--sample", type=Path, default=None)
    args = parser.parse_args()
    from ecommerce_assets.samples import retail_sample_path

    sample = args.sample or (SHARED_SAMPLE if SHARED_SAMPLE.exists() else retail_sample_path())
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"ECOMMERCE_ENV": "local", "ECOMMERCE_DATA_DIR": tmp, "DAGSTER_HOME": tmp})
        Path(tmp, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        print(f"sample: {sample} ; {os.cpu_count()} CPUs")
        for row in throughput(sample, args.lines):
            print(row)
        for row in latency(sample, args.latency_seconds, args.rate):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
