"""Stream micro-batch assets: the raw archive, the typed order lines, the key-value tables and the
``gold.firehose_transactions`` warehouse table.

Every run processes one micro-batch: the records of one shard between two sequence numbers, named in
the run config (``StreamBatchConfig``) by the stream sensor. All writes are keyed by the batch or by the
records' ``(shard_id, sequence_number)``, so a batch processed twice (a retry, a re-execution, a replay
under the same sequence numbers) writes the same files, the same key-value items and the same warehouse
rows again: nothing is added.
"""

import json
from typing import TYPE_CHECKING

import dagster as dg

from ecommerce_assets.lib.metadata import iceberg_commit_metadata, table_metadata, warehouse_table_metadata
from ecommerce_assets.storage.iceberg import IcebergTables
from ecommerce_assets.storage.kv_store import KeyValueStore
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.stream import Stream, StreamRecord
from ecommerce_assets.storage.warehouses.base import Warehouse
from ecommerce_assets.transforms import stream_batches as ts
from ecommerce_assets.transforms.files import parquet_bytes
from ecommerce_assets.transforms.order_lines import UNKNOWN_CUSTOMER

if TYPE_CHECKING:
    import pyarrow as pa

GROUP = "stream"
STREAM_KEY = dg.AssetKey(["stream", "orders"])
ARCHIVE_KEY = dg.AssetKey(["stream", "raw_archive"])
LINES_KEY = dg.AssetKey(["stream", "order_lines"])
KV_CUSTOMERS_KEY = dg.AssetKey(["kv", "customers"])
KV_INVOICES_KEY = dg.AssetKey(["kv", "invoices"])
FIREHOSE_KEY = dg.AssetKey(["gold", "firehose_transactions"])
FIREHOSE_TABLE = "gold.firehose_transactions"
FIREHOSE_KEYS = ("shard_id", "sequence_number")


class StreamBatchConfig(dg.Config):
    """One micro-batch: a shard's records from ``first_sequence_number`` to ``last_sequence_number``."""

    shard_id: str
    first_sequence_number: str
    last_sequence_number: str
    date: str  # UTC arrival date of the first record: the archive partition


stream_orders = dg.AssetSpec(
    key=STREAM_KEY,
    group_name=GROUP,
    kinds={"kinesis"},
    description=(
        "Order lines put on the stream by the ingestion API (`POST /orders`), partitioned by invoice number. "
        "Local: an append-only SQLite log (`<data dir>/state/stream.sqlite`); aws: a Kinesis data stream."
    ),
)


def _read_archive(lake: Lake, config: StreamBatchConfig) -> list[StreamRecord]:
    key = ts.archive_key(config.date, config.first_sequence_number, config.last_sequence_number)
    if not lake.exists(key):
        raise dg.Failure(description=f"the raw archive of this batch is missing: {lake.uri(key)}")
    return [ts.entry_record(e) for e in ts.from_jsonl(lake.read_bytes(key))]


@dg.asset(
    key=ARCHIVE_KEY,
    deps=[STREAM_KEY],
    group_name=GROUP,
    kinds={"json"},
    retry_policy=dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    description=(
        "Every record of the micro-batch exactly as it was on the stream (shard, sequence number, partition "
        "key, arrival time, data), as newline-delimited JSON in "
        "`archive/stream/date=<arrival date>/batch-<first>-<last>.jsonl`. Written once per batch; a retry "
        "rewrites the same file with the same bytes."
    ),
)
def stream_raw_archive(context: dg.AssetExecutionContext, config: StreamBatchConfig, stream: dg.ResourceParam[Stream],
                       lake: dg.ResourceParam[Lake]) -> dg.MaterializeResult:
    import pyarrow as pa

    key = ts.archive_key(config.date, config.first_sequence_number, config.last_sequence_number)
    records = stream.read_range(config.shard_id, config.first_sequence_number, config.last_sequence_number)
    if not records:
        if lake.exists(key):  # the stream no longer holds the batch (retention), but it was archived
            context.log.info(f"{key} already archived; the stream no longer holds these records")
            records = _read_archive(lake, config)
        else:
            raise dg.Failure(description=(
                f"no records between {config.first_sequence_number} and {config.last_sequence_number} in "
                f"{config.shard_id} of {stream.describe()}, and no archive at {lake.uri(key)}"))
    if records[0].sequence_number != config.first_sequence_number or records[-1].sequence_number != config.last_sequence_number:
        raise dg.Failure(description=(
            f"{stream.describe()} {config.shard_id} returned records {records[0].sequence_number}.."
            f"{records[-1].sequence_number}, not the batch {config.first_sequence_number}..{config.last_sequence_number}"))
    if ts.batch_date(records) != config.date:
        raise dg.Failure(description=f"the batch's first record arrived on {ts.batch_date(records)}, not {config.date}")
    entries = [ts.archive_entry(r) for r in records]
    uri = lake.write_bytes(key, ts.to_jsonl(entries))
    preview = pa.Table.from_pylist([{**e, "data": json.dumps(e["data"])} for e in entries[:10]])
    return dg.MaterializeResult(metadata=table_metadata(len(records), preview, uri=uri, extra={
        "shard_id": config.shard_id,
        "first_sequence_number": config.first_sequence_number,
        "last_sequence_number": config.last_sequence_number,
        "stream": stream.describe(),
    }))


@dg.asset(
    key=LINES_KEY,
    deps=[ARCHIVE_KEY],
    group_name=GROUP,
    kinds={"iceberg", "python"},
    description=(
        "The micro-batch's records validated with the API's own rules (`ecommerce_assets.transforms.order_lines`) "
        "and typed (quantity BIGINT, unitprice DECIMAL(18,3), invoicedate TIMESTAMP, customerid `UNKNOWN` "
        "when blank, is_cancellation), committed to the Iceberg table `stream_order_lines` (partitioned by "
        "`batch_date`; the batch's rows replaced in one commit, so a re-run gives the same rows). A record that fails validation (another producer, a corrupt record) goes to "
        "`quarantine/stream/date=<d>/batch-<first>-<last>.jsonl` with file, row, field and rule; records in = "
        "lines out + quarantined."
    ),
)
def stream_order_lines(context: dg.AssetExecutionContext, config: StreamBatchConfig,
                       lake: dg.ResourceParam[Lake], iceberg: dg.ResourceParam[IcebergTables]) -> dg.MaterializeResult:
    import pyarrow.compute as pc

    first, last = config.first_sequence_number, config.last_sequence_number
    archive = ts.archive_key(config.date, first, last)
    typed = ts.type_batch(_read_archive(lake, config), source_file=archive)
    if not typed.reconciles:
        raise dg.Failure(description=f"counts do not reconcile: {typed.rows_in} in, {typed.table.num_rows} out, "
                         f"{len(typed.quarantined)} quarantined")
    quarantine = ts.quarantine_key(config.date, first, last)
    if typed.quarantined:
        lake.write_bytes(quarantine, ts.to_jsonl(typed.quarantined))
        for q in typed.quarantined[:20]:
            context.log.warning(f"quarantined {q['shard_id']}/{q['sequence_number']}: {q['field']}: {q['message']}")
    elif lake.exists(quarantine):
        lake.delete_prefix(quarantine)
    rows = ts.with_batch(typed.table, config.date, first, last)
    iceberg.ensure_table(ts.TABLE, rows.schema, partition_by=["batch_date"])
    commit = iceberg.write(ts.TABLE, rows, [ts.batch_slice(config.date, first, last)],
                           properties={"dagster.run-id": context.run.run_id})
    rules: dict[str, int] = {}
    for q in typed.quarantined:
        rules[q["rule"]] = rules.get(q["rule"], 0) + 1
    return dg.MaterializeResult(metadata=table_metadata(typed.table.num_rows, typed.table,
                                                        uri=iceberg.location(ts.TABLE), extra={
        **iceberg_commit_metadata(commit),
        "rows_in": typed.rows_in,
        "rows_out": typed.table.num_rows,
        "rows_quarantined": len(typed.quarantined),
        "quarantined_by_rule": dg.MetadataValue.json(rules),
        "quarantine_uri": dg.MetadataValue.path(lake.uri(quarantine)) if typed.quarantined else "",
        "cancellation_lines": int(pc.sum(typed.table["is_cancellation"]).as_py() or 0),
        "unknown_customer_lines": int(
            pc.sum(pc.equal(typed.table["customerid"], UNKNOWN_CUSTOMER)).as_py() or 0),
    }))


def _read_typed(iceberg: IcebergTables, config: StreamBatchConfig) -> "pa.Table":
    """The batch's typed lines (``ORDER_LINE_SCHEMA``) as the Iceberg table holds them now."""
    where = ts.batch_slice(config.date, config.first_sequence_number, config.last_sequence_number)
    if not iceberg.exists(ts.TABLE):
        raise dg.Failure(description=f"no table {iceberg.identifier(ts.TABLE)}: materialize "
                         f"{LINES_KEY.to_user_string()} for this batch first")
    return iceberg.read(ts.TABLE, where=where, columns=ts.ORDER_LINE_SCHEMA.names).select(ts.ORDER_LINE_SCHEMA.names)


@dg.multi_asset(
    name="stream_kv_tables",
    specs=[
        dg.AssetSpec(KV_INVOICES_KEY, deps=[LINES_KEY], group_name=GROUP, kinds={"dynamodb"},
                     description=("Key-value table `invoices`: invoice number -> its lines by stock code (one item "
                                  "per stream record, sort key `<stock code>#<shard>#<sequence>`). Cancellations "
                                  "are flagged `cancelled`. Read by `GET /invoices/{invoice_no}`.")),
        dg.AssetSpec(KV_CUSTOMERS_KEY, deps=[LINES_KEY], group_name=GROUP, kinds={"dynamodb"},
                     description=("Key-value table `customers`: customer id -> the set of their invoice numbers "
                                  "(cancellations included). Lines without a customer are not added here.")),
    ],
    retry_policy=dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL),
)
def stream_kv_tables(context: dg.AssetExecutionContext, config: StreamBatchConfig,
                     iceberg: dg.ResourceParam[IcebergTables], kv_store: dg.ResourceParam[KeyValueStore]):
    """Upsert the micro-batch's lines into the key-value tables (local SQLite or DynamoDB)."""
    items = ts.kv_items(_read_typed(iceberg, config))
    written = kv_store.put_lines(items)
    common = {"store": kv_store.describe(), "shard_id": config.shard_id,
              "first_sequence_number": config.first_sequence_number,
              "last_sequence_number": config.last_sequence_number}
    yield dg.MaterializeResult(asset_key=KV_INVOICES_KEY, metadata={
        **common, "lines_written": written.lines, "invoices_touched": written.invoices})
    yield dg.MaterializeResult(asset_key=KV_CUSTOMERS_KEY, metadata={
        **common, "customers_touched": written.customers,
        "lines_without_customer": sum(1 for i in items if not i["customer_id"])})


@dg.asset(
    key=FIREHOSE_KEY,
    deps=[LINES_KEY],
    group_name=GROUP,
    kinds={"duckdb", "table"},
    description=(
        "Every valid order line that came through the stream, typed, one row per stream record: the "
        "micro-batch's lines, read from the Iceberg table `stream_order_lines`, loaded with an upsert keyed on "
        "`(shard_id, sequence_number)`, so loading a batch again replaces its rows instead of adding them."
    ),
)
def firehose_transactions(context: dg.AssetExecutionContext, config: StreamBatchConfig, lake: dg.ResourceParam[Lake],
                          iceberg: dg.ResourceParam[IcebergTables],
                          warehouse: dg.ResourceParam[Warehouse]) -> dg.MaterializeResult:
    lines = _read_typed(iceberg, config)
    batch_rows = lines.num_rows
    staged = ts.staged_key(config.date, config.first_sequence_number, config.last_sequence_number)
    uri = lake.write_bytes(staged, parquet_bytes(lines))
    try:
        total = warehouse.replace_rows(FIREHOSE_TABLE, [uri], FIREHOSE_KEYS)
    finally:
        lake.delete_prefix(staged)
    context.log.info(f"loaded {batch_rows} rows of {config.shard_id} {config.first_sequence_number}.."
                     f"{config.last_sequence_number}; {FIREHOSE_TABLE} has {total} rows")
    return dg.MaterializeResult(metadata=warehouse_table_metadata(warehouse, FIREHOSE_TABLE, extra={
        "batch_rows": batch_rows, "shard_id": config.shard_id,
        "first_sequence_number": config.first_sequence_number,
        "last_sequence_number": config.last_sequence_number}))


STREAM_BATCH_ASSETS = [stream_raw_archive, stream_order_lines, stream_kv_tables, firehose_transactions]

stream_batch_job = dg.define_asset_job(
    "stream_batch_job",
    selection=dg.AssetSelection.assets(*STREAM_BATCH_ASSETS),
    description="Process one stream micro-batch: archive, type, key-value tables, warehouse table.",
    tags={"ecommerce/domain": "stream"},
)


def batch_run_config(shard_id: str, first: str, last: str, date: str) -> dg.RunConfig:
    """The run config of a micro-batch: the same ``StreamBatchConfig`` for each of the batch's steps."""
    cfg = StreamBatchConfig(shard_id=shard_id, first_sequence_number=first, last_sequence_number=last, date=date)
    return dg.RunConfig(ops={a.op.name: cfg for a in STREAM_BATCH_ASSETS})
