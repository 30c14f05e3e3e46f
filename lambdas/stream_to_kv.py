"""AWS Lambda on the Kinesis stream: each invocation's records -> the key-value tables (DynamoDB).

Validates every record with the API's rules; valid lines are upserted into ``invoices`` and
``customers`` (keys derived from shard and sequence number, so a retried invocation changes nothing);
a bad record is written to ``quarantine/stream/date=<d>/batch-<first>-<last>.jsonl`` with its field and
rule instead of failing the batch (the old consumer crashed on cancellations and blank customers).
Event shape: see ``ecommerce_assets.transforms.stream_batches.records_from_kinesis_event``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.kv_store import build_kv_store
from ecommerce_assets.storage.lakes import build_lake
from ecommerce_assets.transforms import stream_batches as ts
from lambdas.dlq import with_dead_letter_queue


@cache
def _resources() -> dict[str, Any]:
    """The lake and the key-value store of the environment, built once per Lambda container."""
    settings = get_settings()
    return {"lake": build_lake(settings), "kv_store": build_kv_store(settings)}


@with_dead_letter_queue
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    lake, kv_store = _resources()["lake"], _resources()["kv_store"]
    lines = quarantined = 0
    for records in ts.records_from_kinesis_event(event).values():
        first, last, date = records[0].sequence_number, records[-1].sequence_number, ts.batch_date(records)
        typed = ts.type_batch(records, source_file=f"kinesis:{records[0].shard_id}:{first}-{last}")
        if typed.quarantined:
            lake.write_bytes(ts.quarantine_key(date, first, last), ts.to_jsonl(typed.quarantined))
        kv_store.put_lines(ts.kv_items(typed.table))
        lines += typed.table.num_rows
        quarantined += len(typed.quarantined)
    return {"lines": lines, "quarantined": quarantined}
