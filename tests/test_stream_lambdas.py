"""The Kinesis Lambdas (raw archive, key-value tables) on a real Kinesis-shaped event built from stream records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ecommerce_assets.resources import build_resources
from ecommerce_assets.transforms.stream_batches import (
    archive_key,
    batch_date,
    from_jsonl,
    kinesis_event,
    quarantine_key,
    records_from_kinesis_event,
)

LINE = {"InvoiceNo": "C536379", "StockCode": "D", "Description": "Discount", "Quantity": -1,
        "InvoiceDate": "2010-12-01T09:41:00", "UnitPrice": "27.500", "CustomerID": "14527", "Country": "United Kingdom"}


def _lambda(name: str):
    path = Path(__file__).resolve().parents[1] / "lambdas" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"lambda_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_kinesis_lambdas_archive_and_fill_the_kv_tables_idempotently(data_dir: Path) -> None:
    resources = build_resources()
    stream, lake, kv = resources["stream"], resources["lake"], resources["kv_store"]
    stream.put_records([("C536379", json.dumps(LINE).encode()),
                        ("536380", json.dumps({**LINE, "InvoiceNo": "536380", "Quantity": 3, "CustomerID": ""}).encode()),
                        ("536381", b'{"InvoiceNo": "536381"}')])
    records = [r for s in stream.shard_ids() for r in stream.read_after(s, None, 10)]
    event = kinesis_event(records)
    by_shard = records_from_kinesis_event(json.loads(json.dumps(event)))
    assert sorted(r.sequence_number for v in by_shard.values() for r in v) == sorted(r.sequence_number for r in records)

    archive, to_kv = _lambda("stream_to_archive").handler, _lambda("stream_to_kv").handler
    for _ in range(2):  # a retried invocation changes nothing
        out = archive(event)
        assert out["records"] == 3 and len(out["archived"]) == len(by_shard)
        assert to_kv(event) == {"lines": 2, "quarantined": 1}
        assert len(list(lake.list_objects("archive/stream/"))) == len(by_shard)
        assert sorted(i["invoice_no"] for i in kv.scan_invoice_lines()) == ["536380", "C536379"]
        assert kv.scan_customers() == {"14527": {"C536379"}}
    for shard_records in by_shard.values():
        first, last = shard_records[0].sequence_number, shard_records[-1].sequence_number
        key = archive_key(batch_date(shard_records), first, last)
        assert [e["sequence_number"] for e in from_jsonl(lake.read_bytes(key))] == [r.sequence_number for r in shard_records]
    [bad_shard] = [v for v in by_shard.values() if any(r.partition_key == "536381" for r in v)]
    quarantined = from_jsonl(lake.read_bytes(quarantine_key(batch_date(bad_shard), bad_shard[0].sequence_number,
                                                            bad_shard[-1].sequence_number)))
    assert quarantined[0]["partition_key"] == "536381" and quarantined[0]["rule"] == "missing"
