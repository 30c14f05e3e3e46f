"""End to end: the API in its own process, a replay over HTTP, the stream sensor and its runs for real.

Replays the first 3,000 lines of the shared Online Retail sample (cancellations and blank customers
included) while the sensor ticks and its micro-batch runs are materialized; then finds every accepted
line exactly once in the raw archive, the key-value tables and ``gold.firehose_transactions``, and
processes every batch again under the same sequence numbers: nothing changes.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
import requests

from ecommerce_assets.defs.stream.assets import FIREHOSE_TABLE
from ecommerce_assets.defs.stream.sensors import StreamBatch, stream_sensor
from ecommerce_assets.dev.replay import ReplaySummary, replay_file
from ecommerce_assets.dev.stream_demo import run_batch
from ecommerce_assets.resources import build_resources
from ecommerce_assets.transforms.stream_batches import from_jsonl
from tests.conftest import RETAIL_SAMPLE_5000, free_port

LINES = 3000


def _start_api(port: int) -> subprocess.Popen:
    script = Path(sys.executable).parent / "ecommerce-assets"
    proc = subprocess.Popen([str(script), "ingest-api", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], env=os.environ.copy(), start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except requests.ConnectionError:
            pass
        assert proc.poll() is None, "the API process exited"
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the API did not answer /health within 60 s")


def _csv_rows(n: int) -> list[dict[str, str]]:
    with RETAIL_SAMPLE_5000.open(newline="", encoding="utf-8") as fh:
        return [row for _, row in zip(range(n), csv.DictReader(fh), strict=False)]


def _tick_and_run(instance: dg.DagsterInstance, resources: dict, cursor: str | None,
                  done: list[StreamBatch]) -> tuple[str | None, int]:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"stream": resources["stream"]})
    result = stream_sensor(context)
    for request in result.run_requests:
        tags = request.tags
        batch = StreamBatch(tags["ecommerce/stream_shard"], tags["ecommerce/stream_first"],
                            tags["ecommerce/stream_last"], tags["ecommerce/stream_date"],
                            int(tags["ecommerce/stream_records"]))
        assert request.run_key == batch.run_key
        assert run_batch(batch, resources, instance).success
        done.append(batch)
    return result.cursor, len(result.run_requests)


def _state(resources: dict) -> dict:
    lake, kv, wh = resources["lake"], resources["kv_store"], resources["warehouse"]
    archived = [(e["shard_id"], e["sequence_number"])
                for o in lake.list_objects("archive/stream/") for e in from_jsonl(lake.read_bytes(o.key))]
    warehouse_rows = wh.query(
        f"SELECT shard_id, sequence_number, invoiceno, stockcode, quantity, customerid, is_cancellation "  # noqa: S608
        f"FROM {FIREHOSE_TABLE}").to_pylist()
    kv_lines = [(i["shard_id"], i["sequence_number"]) for i in kv.scan_invoice_lines()]
    return {"archived": archived, "warehouse": warehouse_rows, "kv_lines": kv_lines,
            "customers": kv.scan_customers(), "archive_files": len(list(lake.list_objects("archive/stream/")))}


@pytest.mark.slow
def test_replay_through_http_then_dagster_finds_every_line_once(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOMMERCE_STREAM_BATCH_RECORDS", "400")
    resources = build_resources()
    resources["stream"].ensure()
    instance = dg.DagsterInstance.get()
    port = free_port()
    api = _start_api(port)
    try:
        summary: list[ReplaySummary] = []
        replay = threading.Thread(target=lambda: summary.append(replay_file(
            RETAIL_SAMPLE_5000, f"http://127.0.0.1:{port}", concurrency=8, limit=LINES, progress=False)))
        replay.start()
        cursor, done = None, []
        while replay.is_alive():  # the sensor ticks while the API process is still writing
            cursor, _ = _tick_and_run(instance, resources, cursor, done)
        replay.join()
        while True:
            cursor, asked = _tick_and_run(instance, resources, cursor, done)
            if not asked:
                break

        [s] = summary
        rows = _csv_rows(LINES)
        assert s.lines == LINES and s.failed == 0 and s.rejected == 0 and s.accepted == LINES
        accepted = {(r["shard_id"], r["sequence_number"]): rows[r["row"] - 1] for r in s.records}
        assert len(accepted) == LINES

        state = _state(resources)
        # every accepted line exactly once in the archive, the key-value tables and the warehouse table
        for name in ("archived", "kv_lines"):
            assert Counter(state[name]) == Counter(accepted.keys()), name
        assert Counter((w["shard_id"], w["sequence_number"]) for w in state["warehouse"]) == Counter(accepted.keys())
        for w in state["warehouse"]:
            src = accepted[(w["shard_id"], w["sequence_number"])]
            assert (w["invoiceno"], w["stockcode"], w["quantity"]) == (src["InvoiceNo"], src["StockCode"],
                                                                      int(src["Quantity"]))
            assert w["is_cancellation"] == src["InvoiceNo"].startswith("C")
            assert (w["customerid"] == "UNKNOWN") == (src["CustomerID"] == "")
        cancellations = sum(r["InvoiceNo"].startswith("C") for r in rows)
        blanks = sum(r["CustomerID"] == "" for r in rows)
        assert cancellations > 0 and blanks > 0
        assert sum(w["is_cancellation"] for w in state["warehouse"]) == cancellations
        assert sum(w["customerid"] == "UNKNOWN" for w in state["warehouse"]) == blanks
        expected_customers: dict[str, set[str]] = {}
        for r in rows:
            if r["CustomerID"]:
                expected_customers.setdefault(r["CustomerID"].removesuffix(".0"), set()).add(r["InvoiceNo"])
        assert state["customers"] == expected_customers
        assert len(done) >= 8 and len({b.run_key for b in done}) == len(done)

        # GET returns a replayed invoice (a cancellation), with all its lines
        invoice = next(r["InvoiceNo"] for r in rows if r["InvoiceNo"].startswith("C"))
        got = requests.get(f"http://127.0.0.1:{port}/invoices/{invoice}", timeout=10)
        assert got.status_code == 200
        doc = got.json()
        assert doc["cancelled"] and doc["line_count"] == sum(r["InvoiceNo"] == invoice for r in rows)

        # replaying the same records under the same sequence numbers adds nothing
        for batch in done:
            assert run_batch(batch, resources, instance).success
        again = _state(resources)
        for key in ("archived", "kv_lines", "customers", "archive_files"):
            assert (sorted(again[key]) if isinstance(again[key], list) else again[key]) == (
                sorted(state[key]) if isinstance(state[key], list) else state[key]), key
        assert len(again["warehouse"]) == len(state["warehouse"])
        assert resources["warehouse"].row_count(FIREHOSE_TABLE) == LINES
    finally:
        api.terminate()
        api.wait(timeout=30)


def test_a_bad_record_on_the_stream_goes_to_quarantine(data_dir: Path) -> None:
    resources = build_resources()
    stream = resources["stream"]
    line = {"InvoiceNo": "536365", "StockCode": "85123A", "Description": "X", "Quantity": 6,
            "InvoiceDate": "2010-12-01T08:26:00", "UnitPrice": "2.550", "CustomerID": None, "Country": "United Kingdom"}
    # another producer writes to the stream without the API's validation
    placed = stream.put_records([("536365", json.dumps(line).encode()), ("536365", b"\xff not json"),
                                 ("536365", json.dumps({**line, "Quantity": "lots"}).encode())])
    shard, first, last = placed[0][0], placed[0][1], placed[-1][1]
    instance = dg.DagsterInstance.get()
    context = dg.build_sensor_context(instance=instance, resources={"stream": stream})
    [request] = stream_sensor(context).run_requests
    date = request.tags["ecommerce/stream_date"]
    assert request.run_key == f"{shard}:{first}-{last}"
    batch = StreamBatch(shard, first, last, date, 3)
    result = run_batch(batch, resources, instance)
    assert result.success
    lake = resources["lake"]
    quarantined = from_jsonl(lake.read_bytes(f"quarantine/stream/date={date}/batch-{first}-{last}.jsonl"))
    assert [(q["row"], q["field"], q["rule"]) for q in quarantined] == [(2, "*", "bad_json"),
                                                                        (3, "Quantity", "not_integer")]
    assert quarantined[0]["data_base64"] and quarantined[1]["sequence_number"] == placed[2][1]
    assert len(from_jsonl(lake.read_bytes(f"archive/stream/date={date}/batch-{first}-{last}.jsonl"))) == 3
    assert resources["warehouse"].row_count(FIREHOSE_TABLE) == 1
    [mat] = [e for e in result.get_asset_materialization_events()
             if e.asset_key == dg.AssetKey(["stream", "order_lines"])]
    md = mat.materialization.metadata
    assert (md["rows_in"].value, md["rows_out"].value, md["rows_quarantined"].value) == (3, 1, 2)
