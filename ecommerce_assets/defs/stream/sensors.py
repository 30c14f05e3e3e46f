"""The stream sensor: a per-shard cursor of sequence numbers, new records -> micro-batch runs.

Each tick reads, per shard, up to ``ECOMMERCE_STREAM_BATCH_RECORDS`` records after the cursor's sequence
number (``AFTER_SEQUENCE_NUMBER``; from the oldest record when the shard has no cursor yet), up to
``MAX_BATCHES_PER_SHARD`` times, and asks for one run of ``stream_batch_job`` per batch. The run config
carries the shard and the batch's first and last sequence numbers; the run key is
``<shard>:<first>-<last>``, so a tick evaluated twice asks for nothing new, and the cursor moves to the
last sequence number asked for. A run that fails can be re-executed as is: every write is idempotent.
"""

import json
from dataclasses import dataclass

import dagster as dg

from ecommerce_assets.defs.stream.assets import batch_run_config, stream_batch_job
from ecommerce_assets.lib.arrival import sensor_default_status
from ecommerce_assets.storage.stream import Stream
from ecommerce_assets.transforms.stream_batches import batch_date

MAX_BATCHES_PER_SHARD = 20


@dataclass(frozen=True)
class StreamBatch:
    """One micro-batch: a shard's records from ``first`` to ``last`` (sequence numbers, inclusive)."""

    shard_id: str
    first: str
    last: str
    date: str
    records: int

    @property
    def run_key(self) -> str:
        return f"{self.shard_id}:{self.first}-{self.last}"

    def run_request(self) -> dg.RunRequest:
        return dg.RunRequest(
            run_key=self.run_key,
            run_config=batch_run_config(self.shard_id, self.first, self.last, self.date),
            tags={"ecommerce/stream_shard": self.shard_id, "ecommerce/stream_first": self.first,
                  "ecommerce/stream_last": self.last, "ecommerce/stream_date": self.date,
                  "ecommerce/stream_records": str(self.records)},
        )


def plan_batches(
    stream: Stream, cursor: dict[str, str], batch_records: int, max_batches_per_shard: int = MAX_BATCHES_PER_SHARD
) -> "tuple[list[StreamBatch], dict[str, str]]":
    """The micro-batches after ``cursor`` (shard -> last sequence number) and the cursor after them."""
    batches: list[StreamBatch] = []
    next_cursor = dict(cursor)
    for shard in stream.shard_ids():
        for _ in range(max_batches_per_shard):
            records = stream.read_after(shard, next_cursor.get(shard), batch_records)
            if not records:
                break
            batches.append(StreamBatch(shard, records[0].sequence_number, records[-1].sequence_number,
                                       batch_date(records), len(records)))
            next_cursor[shard] = records[-1].sequence_number
            if len(records) < batch_records:
                break
    return batches, next_cursor


@dg.sensor(
    name="stream_sensor",
    job=stream_batch_job,
    tags={"ecommerce/catch_up": "true"},
    minimum_interval_seconds=10,
    default_status=sensor_default_status(),
    description=(
        "Turns new stream records into micro-batch runs of `stream_batch_job` (one per shard and sequence "
        "range, at most ECOMMERCE_STREAM_BATCH_RECORDS records each). The cursor is the last sequence number "
        "asked for in each shard."
    ),
)
def stream_sensor(context: dg.SensorEvaluationContext, stream: dg.ResourceParam[Stream]) -> dg.SensorResult:
    from ecommerce_assets.settings import get_settings

    if not get_settings().stream_configured:
        return dg.SensorResult(skip_reason="the stream pipeline is off: set ECOMMERCE_STREAM_NAME to turn it on")
    cursor = json.loads(context.cursor) if context.cursor else {}
    batches, next_cursor = plan_batches(stream, cursor, get_settings().stream_batch_records)
    return dg.SensorResult(
        run_requests=[b.run_request() for b in batches],
        cursor=json.dumps(next_cursor, sort_keys=True),
        skip_reason=None if batches else f"no new records in {stream.describe()}",
    )
