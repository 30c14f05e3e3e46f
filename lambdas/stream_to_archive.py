"""AWS Lambda on the Kinesis stream: each invocation's records -> the raw archive in the lake.

Writes one ``archive/stream/date=<d>/batch-<first>-<last>.jsonl`` per shard in the event (the same
file the Dagster asset ``stream/raw_archive`` writes for the same records: a retried invocation rewrites
the same key with the same bytes). Event shape: see
``ecommerce_assets.transforms.stream_batches.records_from_kinesis_event``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.lakes import build_lake
from ecommerce_assets.transforms import stream_batches as ts
from lambdas.dlq import with_dead_letter_queue


@cache
def _lake() -> Lake:
    return build_lake(get_settings())


@with_dead_letter_queue
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    lake = _lake()
    written = []
    by_shard = ts.records_from_kinesis_event(event)
    for records in by_shard.values():
        key = ts.archive_key(ts.batch_date(records), records[0].sequence_number, records[-1].sequence_number)
        lake.write_bytes(key, ts.to_jsonl(ts.archive_entry(r) for r in records))
        written.append(key)
    return {"archived": written, "records": sum(len(v) for v in by_shard.values())}
