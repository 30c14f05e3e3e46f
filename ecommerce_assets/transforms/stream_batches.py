"""The stream side of order lines: records, micro-batches and what the consumers write for them.

* ``StreamRecord`` - one record read from the stream (the local log or Kinesis), ``sequence_int`` to order
  sequence numbers; ``records_from_kinesis_event`` / ``kinesis_event`` - a Lambda Kinesis event and back.
* A batch's date (``batch_date``), name and lake keys: the raw archive, the quarantine; its slice of the Iceberg
  table ``stream_order_lines`` (``batch_slice``, ``with_batch``) and its staged Parquet for the warehouse.
* ``archive_entry`` / ``entry_record`` - a record as its raw-archive line and back; ``to_jsonl`` / ``from_jsonl``.
* ``type_batch`` - a batch validated with the order-line rules (``transforms.order_lines.decode_record``)
  into an Arrow table (``ORDER_LINE_SCHEMA``) plus one quarantine row per bad record.
* ``kv_items`` - the key-value store's invoice-line items of a typed batch; ``invoice_document`` - the
  ``GET /invoices/{invoice_no}`` answer built from them.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ecommerce_assets.storage import zones
from ecommerce_assets.storage.stream import StreamRecord, sequence_int
from ecommerce_assets.transforms.order_lines import UNKNOWN_CUSTOMER, decode_record

if TYPE_CHECKING:
    import pyarrow as pa

# --- records read from the stream --------------------------------------------------------------


def archive_entry(record: StreamRecord) -> dict[str, Any]:
    """The raw-archive line of a record: where it came from and exactly what it carried."""
    entry: dict[str, Any] = {
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "partition_key": record.partition_key,
        "arrived_at": _iso(record.arrived_at),
    }
    try:
        entry["data"] = json.loads(record.data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        entry["data"] = None
        entry["data_base64"] = base64.b64encode(record.data).decode("ascii")
    return entry


def entry_record(entry: Mapping[str, Any]) -> StreamRecord:
    """The record back from its raw-archive line (inverse of ``archive_entry`` for the data's meaning)."""
    if entry.get("data_base64") is not None:
        data = base64.b64decode(entry["data_base64"])
    else:
        data = json.dumps(entry["data"], separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    arrived = dt.datetime.fromisoformat(entry["arrived_at"]).replace(tzinfo=dt.UTC).timestamp()
    return StreamRecord(entry["shard_id"], entry["sequence_number"], entry["partition_key"], data, arrived)


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


def batch_date(records: Sequence[StreamRecord]) -> str:
    """The archive date of a batch: the UTC arrival date of its first record (stable across retries)."""
    return dt.datetime.fromtimestamp(records[0].arrived_at, tz=dt.UTC).date().isoformat()


def batch_name(first: str, last: str) -> str:
    return f"batch-{first}-{last}"


def archive_key(date: str, first: str, last: str) -> str:
    return f"{zones.STREAM_ARCHIVE}date={date}/{batch_name(first, last)}.jsonl"


def quarantine_key(date: str, first: str, last: str) -> str:
    return f"{zones.STREAM_QUARANTINE}date={date}/{batch_name(first, last)}.jsonl"


TABLE = "stream_order_lines"  # the Iceberg table of typed lines (processed/stream_order_lines/), by batch_date
BATCH_COLUMNS = ("batch_date", "batch")  # what the table adds to ORDER_LINE_SCHEMA: a batch's slice of the table


def batch_slice(date: str, first: str, last: str) -> dict[str, Any]:
    """The table's slice holding one batch: its date partition and its name (what a re-run replaces)."""
    return {"batch_date": dt.date.fromisoformat(date), "batch": batch_name(first, last)}


def with_batch(table: pa.Table, date: str, first: str, last: str) -> pa.Table:
    """A typed batch with the columns that place it in the Iceberg table (``BATCH_COLUMNS``)."""
    import pyarrow as pa

    where = batch_slice(date, first, last)
    n = table.num_rows
    return table.append_column(pa.field("batch_date", pa.date32(), nullable=False),
                               pa.array([where["batch_date"]] * n, pa.date32())).append_column(
        pa.field("batch", pa.string(), nullable=False), pa.array([where["batch"]] * n, pa.string()))


def staged_key(date: str, first: str, last: str) -> str:
    """The batch's typed lines as one Parquet file in the intermediate zone, for a warehouse to load."""
    return f"{zones.INTERMEDIATE}stream/{date}/{batch_name(first, last)}.parquet"


def to_jsonl(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n" for r in rows)


def from_jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


# --- typing a batch -------------------------------------------------------------------------

@functools.cache
def _order_line_schema() -> pa.Schema:
    """``ORDER_LINE_SCHEMA``: a typed batch's columns (built on first use, so that importing this module does
    not import pyarrow)."""
    import pyarrow as pa

    return pa.schema([
        ("shard_id", pa.string()),
        ("sequence_number", pa.string()),
        ("partition_key", pa.string()),
        ("arrived_at", pa.timestamp("ms")),
        ("invoiceno", pa.string()),
        ("stockcode", pa.string()),
        ("description", pa.string()),
        ("quantity", pa.int64()),
        ("unitprice", pa.decimal128(18, 3)),
        ("invoicedate", pa.timestamp("s")),
        ("invoice_date", pa.date32()),
        ("customerid", pa.string()),
        ("country", pa.string()),
        ("is_cancellation", pa.bool_()),
        ("total_sales", pa.decimal128(18, 3)),
    ])


def __getattr__(name: str) -> Any:
    """``ORDER_LINE_SCHEMA``, built on first access (PEP 562)."""
    if name == "ORDER_LINE_SCHEMA":
        return _order_line_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class TypedBatch:
    """A batch's valid lines as Arrow (``ORDER_LINE_SCHEMA``) and its quarantined records."""

    rows_in: int
    table: pa.Table
    quarantined: list[dict[str, Any]]

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.table.num_rows + len(self.quarantined)


def type_batch(records: Sequence[StreamRecord], source_file: str) -> TypedBatch:
    """Validate every record; typed rows for the good ones, a machine-readable reason for each bad one."""
    import pyarrow as pa

    columns: dict[str, list[Any]] = {f.name: [] for f in _order_line_schema()}
    quarantined: list[dict[str, Any]] = []
    for row, record in enumerate(records, start=1):
        line, errors = decode_record(record.data)
        if line is None:
            entry = archive_entry(record)
            for error in errors:
                quarantined_row = {"file": source_file, "row": row, **error.to_dict(), **entry}
                quarantined.append(quarantined_row)
                break  # one reason per record (the first), so counts reconcile
            continue
        total = (line.unit_price * line.quantity).quantize(Decimal("0.001"))
        for name, value in (
            ("shard_id", record.shard_id), ("sequence_number", record.sequence_number),
            ("partition_key", record.partition_key),
            ("arrived_at", dt.datetime.fromtimestamp(record.arrived_at, tz=dt.UTC).replace(tzinfo=None)),
            ("invoiceno", line.invoice_no), ("stockcode", line.stock_code), ("description", line.description),
            ("quantity", line.quantity), ("unitprice", line.unit_price.quantize(Decimal("0.001"))),
            ("invoicedate", line.invoice_date), ("invoice_date", line.invoice_date.date()),
            ("customerid", line.customer_or_unknown), ("country", line.country),
            ("is_cancellation", line.cancelled), ("total_sales", total),
        ):
            columns[name].append(value)
    table = pa.table(columns, schema=_order_line_schema())
    return TypedBatch(rows_in=len(records), table=table, quarantined=quarantined)


# --- key-value items ------------------------------------------------------------------------


def kv_items(table: pa.Table) -> list[dict[str, Any]]:
    """The invoice-line items of a typed batch for the key-value store (one per stream record)."""
    items = []
    for row in table.to_pylist():
        items.append({
            "invoice_no": row["invoiceno"],
            "line_key": f"{row['stockcode']}#{row['shard_id']}#{row['sequence_number']}",
            "stock_code": row["stockcode"],
            "description": row["description"],
            "quantity": int(row["quantity"]),
            "unit_price": str(row["unitprice"]),
            "invoice_date": row["invoicedate"].strftime("%Y-%m-%dT%H:%M:%S"),
            "customer_id": None if row["customerid"] == UNKNOWN_CUSTOMER else row["customerid"],
            "country": row["country"],
            "cancelled": bool(row["is_cancellation"]),
            "shard_id": row["shard_id"],
            "sequence_number": row["sequence_number"],
        })
    return items


def invoice_document(invoice_no: str, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The answer of ``GET /invoices/{invoice_no}``: header, lines grouped by stock code, total."""
    by_stock: dict[str, list[dict[str, Any]]] = {}
    total = Decimal("0")
    for item in sorted(items, key=lambda i: (i["stock_code"], sequence_int(i["sequence_number"]))):
        by_stock.setdefault(item["stock_code"], []).append({
            "description": item.get("description"),
            "quantity": int(item["quantity"]),
            "unit_price": str(item["unit_price"]),
            "shard_id": item["shard_id"],
            "sequence_number": item["sequence_number"],
        })
        total += Decimal(str(item["unit_price"])) * int(item["quantity"])
    first = items[0]
    customers = sorted({i.get("customer_id") or UNKNOWN_CUSTOMER for i in items})
    return {
        "invoice_no": invoice_no,
        "cancelled": invoice_no.startswith("C"),
        "customer_id": None if customers == [UNKNOWN_CUSTOMER] else customers[0],
        "country": first.get("country"),
        "invoice_date": min(i["invoice_date"] for i in items),
        "line_count": len(items),
        "total": str(total.quantize(Decimal("0.001"))),
        "lines_by_stock_code": by_stock,
    }


# --- AWS Lambda events ------------------------------------------------------------------------


def records_from_kinesis_event(event: Mapping[str, Any]) -> dict[str, list[StreamRecord]]:
    """The records of a Lambda Kinesis event, per shard, in sequence order.

    Event shape (one entry per record)::

        {"Records": [{"eventSource": "aws:kinesis",
                      "eventID": "shardId-000000000000:49590338271490256608559692538361571095921575989136588898",
                      "kinesis": {"partitionKey": "536365", "sequenceNumber": "4959...", "data": "<base64>",
                                  "approximateArrivalTimestamp": 1545084650.987}}]}
    """
    by_shard: dict[str, list[StreamRecord]] = {}
    for entry in event.get("Records", []):
        k = entry["kinesis"]
        shard = entry["eventID"].split(":", 1)[0]
        by_shard.setdefault(shard, []).append(StreamRecord(
            shard_id=shard,
            sequence_number=k["sequenceNumber"],
            partition_key=k["partitionKey"],
            data=base64.b64decode(k["data"]),
            arrived_at=float(k["approximateArrivalTimestamp"]),
        ))
    for records in by_shard.values():
        records.sort(key=lambda r: sequence_int(r.sequence_number))
    return by_shard


def kinesis_event(records: Sequence[StreamRecord], stream_arn: str = "arn:aws:kinesis:local:000000000000:stream/orders") -> dict[str, Any]:
    """A Lambda Kinesis event carrying ``records`` (the inverse of ``records_from_kinesis_event``)."""
    return {"Records": [{
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventName": "aws:kinesis:record",
        "eventSourceARN": stream_arn, "eventID": f"{r.shard_id}:{r.sequence_number}",
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number, "data": base64.b64encode(r.data).decode("ascii"),
                    "approximateArrivalTimestamp": r.arrived_at},
    } for r in records]}
