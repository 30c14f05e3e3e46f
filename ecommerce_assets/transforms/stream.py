"""Order lines on the stream: the one validation and typing shared by the API, the assets and the lambdas.

An order line is the Online Retail shape (``InvoiceNo, StockCode, Description, Quantity, InvoiceDate,
UnitPrice, CustomerID, Country``). ``validate_line`` checks one JSON object and returns either the typed
``OrderLine`` or every problem found, each naming its field and rule. The API refuses a request with any
bad line (nothing is put on the stream); the consumers validate again every record they read (a record
written by another producer, or a corrupt one, goes to quarantine instead of crashing a batch).

Rules (``rule`` values in the error answers and quarantine files):

* ``not_object`` - the line is not a JSON object; ``unknown_field`` - a key that is not one of the eight;
* ``missing`` - InvoiceNo, StockCode, Quantity, InvoiceDate, UnitPrice or Country absent/blank;
* ``bad_format`` - InvoiceNo not ``[letter]digits`` (``C`` = cancellation, ``A`` = adjustment), an
  identifier with characters outside ``A-Z a-z 0-9 _ - . / space``;
* ``too_long`` - a text longer than its limit; ``not_integer`` - Quantity; ``zero_quantity``;
* ``not_number`` / ``too_many_decimals`` (more than 3) / ``out_of_range`` - UnitPrice;
* ``bad_date`` - InvoiceDate not ``M/D/YYYY H:MM``, ``M/D/YY H:MM`` or ``YYYY-MM-DD[ T]HH:MM[:SS]``;
* ``cancellation_positive_quantity`` - a ``C`` invoice must take items back (Quantity < 0).

Blank CustomerID is an anonymous customer (``None``; ``UNKNOWN`` in the warehouse, as in
``gold.sales_transactions``); ``17850.0`` is read as ``17850``.

On the stream a line is its *canonical* JSON (``encode_record``): the eight keys, Quantity an integer,
UnitPrice a decimal string, InvoiceDate ``YYYY-MM-DDTHH:MM:SS``, CustomerID a string or null. Validating
a canonical record gives back the same line.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

FIELDS: tuple[str, ...] = (
    "InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country",
)
REQUIRED: tuple[str, ...] = ("InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "Country")
# also accepted: the lower-case/snake spelling of each field (``invoiceno``, ``invoice_no``)
_ALIASES: dict[str, str] = {}
for _f in FIELDS:
    _ALIASES[_f.lower()] = _f
_ALIASES.update({"invoice_no": "InvoiceNo", "stock_code": "StockCode", "invoice_date": "InvoiceDate",
                 "unit_price": "UnitPrice", "customer_id": "CustomerID"})

MAX_LINES_PER_REQUEST = 500  # one Kinesis PutRecords call
MAX_BODY_BYTES = 1_000_000
MAX_LEN = {"InvoiceNo": 20, "StockCode": 32, "Description": 300, "CustomerID": 32, "Country": 64}
UNKNOWN_CUSTOMER = "UNKNOWN"
PRICE_LIMIT = Decimal("1e12")

_INVOICE = re.compile(r"^[A-Z]?\d{1,18}$")
_IDENT = re.compile(r"^[A-Za-z0-9_\-./ ]+$")
_DATE_FORMATS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}$"), "%m/%d/%Y %H:%M"),
    (re.compile(r"^\d{1,2}/\d{1,2}/\d{2} \d{1,2}:\d{2}$"), "%m/%d/%y %H:%M"),
    (re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}$"), "%Y-%m-%d{T}%H:%M:%S"),
    (re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}$"), "%Y-%m-%d{T}%H:%M"),
)


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of one line."""

    field: str
    rule: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


class RequestError(ValueError):
    """A request body that is not an order line or an array of them (HTTP 400)."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class OrderLine:
    """One validated, typed order line."""

    invoice_no: str
    stock_code: str
    description: str | None
    quantity: int
    invoice_date: dt.datetime
    unit_price: Decimal
    customer_id: str | None
    country: str

    @property
    def cancelled(self) -> bool:
        return self.invoice_no.startswith("C")

    @property
    def customer_or_unknown(self) -> str:
        return self.customer_id or UNKNOWN_CUSTOMER

    def to_record(self) -> dict[str, Any]:
        """The canonical JSON object put on the stream."""
        return {
            "InvoiceNo": self.invoice_no,
            "StockCode": self.stock_code,
            "Description": self.description,
            "Quantity": self.quantity,
            "InvoiceDate": self.invoice_date.strftime("%Y-%m-%dT%H:%M:%S"),
            "UnitPrice": str(self.unit_price),
            "CustomerID": self.customer_id,
            "Country": self.country,
        }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, Decimal, float)):
        return str(value)
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return None


def _check_text(name: str, raw: Any, errors: list[FieldError], *, pattern: re.Pattern[str] | None = None) -> str | None:
    if isinstance(raw, bool) or (raw is not None and not isinstance(raw, (str, int, Decimal, float))):
        errors.append(FieldError(name, "bad_format", f"{name} must be text, got {type(raw).__name__}"))
        return None
    value = _text(raw)
    if value is None:
        if name in REQUIRED:
            errors.append(FieldError(name, "missing", f"{name} is required"))
        return None
    if len(value) > MAX_LEN.get(name, 10_000):
        errors.append(FieldError(name, "too_long", f"{name} is longer than {MAX_LEN[name]} characters"))
        return None
    if pattern is not None and not pattern.match(value):
        errors.append(FieldError(name, "bad_format", f"{name} {value!r} has characters outside A-Z a-z 0-9 _-./"))
        return None
    return value


def _check_invoice(raw: Any, errors: list[FieldError]) -> str | None:
    value = _check_text("InvoiceNo", raw, errors)
    if value is None:
        return None
    value = value.upper()
    if not _INVOICE.match(value):
        errors.append(FieldError("InvoiceNo", "bad_format",
                                 f"InvoiceNo {value!r} is not digits with an optional letter prefix (C536379)"))
        return None
    return value


def _check_quantity(raw: Any, errors: list[FieldError]) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        errors.append(FieldError("Quantity", "missing", "Quantity is required"))
        return None
    if isinstance(raw, bool):
        errors.append(FieldError("Quantity", "not_integer", "Quantity must be a whole number, got a boolean"))
        return None
    try:
        number = Decimal(raw.strip()) if isinstance(raw, str) else Decimal(raw)
    except (InvalidOperation, TypeError, ValueError):
        number = None
    if number is None or not number.is_finite() or number != number.to_integral_value():
        errors.append(FieldError("Quantity", "not_integer", f"Quantity must be a whole number, got {raw!r}"))
        return None
    value = int(number)
    if value == 0:
        errors.append(FieldError("Quantity", "zero_quantity", "Quantity must not be 0"))
        return None
    if abs(value) >= 2**53:
        errors.append(FieldError("Quantity", "out_of_range", f"Quantity {value} is out of range"))
        return None
    return value


def _check_price(raw: Any, errors: list[FieldError]) -> Decimal | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        errors.append(FieldError("UnitPrice", "missing", "UnitPrice is required"))
        return None
    try:
        if isinstance(raw, bool):
            raise TypeError
        number = Decimal(raw.strip()) if isinstance(raw, str) else Decimal(str(raw))
    except (InvalidOperation, TypeError, ValueError):
        errors.append(FieldError("UnitPrice", "not_number", f"UnitPrice must be a number, got {raw!r}"))
        return None
    if not number.is_finite():
        errors.append(FieldError("UnitPrice", "not_number", f"UnitPrice must be a finite number, got {raw!r}"))
        return None
    if abs(number) >= PRICE_LIMIT:
        errors.append(FieldError("UnitPrice", "out_of_range", f"UnitPrice {raw!r} is out of range"))
        return None
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -3:
        errors.append(FieldError("UnitPrice", "too_many_decimals", f"UnitPrice {raw!r} has more than 3 decimals"))
        return None
    return number.quantize(Decimal("0.001"))


def parse_invoice_date(raw: Any) -> dt.datetime | None:
    """A naive timestamp from the accepted formats, or ``None``."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    for pattern, fmt in _DATE_FORMATS:
        if pattern.match(text):
            try:
                return dt.datetime.strptime(text, fmt.replace("{T}", "T" if "T" in text else " "))
            except ValueError:
                return None
    return None


def _check_date(raw: Any, errors: list[FieldError]) -> dt.datetime | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        errors.append(FieldError("InvoiceDate", "missing", "InvoiceDate is required"))
        return None
    value = parse_invoice_date(raw)
    if value is None:
        errors.append(FieldError("InvoiceDate", "bad_date",
                                 f"InvoiceDate {raw!r} is not M/D/YYYY H:MM, M/D/YY H:MM or YYYY-MM-DD HH:MM:SS"))
    return value


def _check_customer(raw: Any, errors: list[FieldError]) -> str | None:
    value = _check_text("CustomerID", raw, errors, pattern=_IDENT)
    if value is None:
        return None
    return re.sub(r"\.0+$", "", value)


def validate_line(obj: Any) -> tuple[OrderLine | None, list[FieldError]]:
    """Check one order line (a JSON object); return the typed line, or ``None`` and every problem."""
    if not isinstance(obj, Mapping):
        return None, [FieldError("*", "not_object", f"an order line must be a JSON object, got {_json_type(obj)}")]
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    for key, value in obj.items():
        name = key if key in FIELDS else _ALIASES.get(str(key).strip().lower())
        if name is None:
            errors.append(FieldError(str(key), "unknown_field",
                                     f"unknown field {key!r}; the fields are {', '.join(FIELDS)}"))
            continue
        values[name] = value
    invoice_no = _check_invoice(values.get("InvoiceNo"), errors)
    stock_code = _check_text("StockCode", values.get("StockCode"), errors, pattern=_IDENT)
    description = _check_text("Description", values.get("Description"), errors)
    quantity = _check_quantity(values.get("Quantity"), errors)
    invoice_date = _check_date(values.get("InvoiceDate"), errors)
    unit_price = _check_price(values.get("UnitPrice"), errors)
    customer_id = _check_customer(values.get("CustomerID"), errors)
    country = _check_text("Country", values.get("Country"), errors)
    if invoice_no and invoice_no.startswith("C") and quantity is not None and quantity > 0:
        errors.append(FieldError("Quantity", "cancellation_positive_quantity",
                                 f"cancellation {invoice_no} must have a negative Quantity, got {quantity}"))
    if errors:
        return None, errors
    return OrderLine(
        invoice_no=invoice_no, stock_code=stock_code, description=description, quantity=quantity,  # type: ignore[arg-type]
        invoice_date=invoice_date, unit_price=unit_price, customer_id=customer_id, country=country,  # type: ignore[arg-type]
    ), []


def _json_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def parse_request_body(body: bytes) -> list[Any]:
    """The order lines of a request body: one JSON object or a non-empty array of at most 500."""
    if len(body) > MAX_BODY_BYTES:
        raise RequestError("body_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise RequestError("empty_body", "the body is empty; send an order line or a JSON array of them")
    try:
        parsed = json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError("bad_json", f"the body is not valid JSON: {exc}") from exc
    if isinstance(parsed, Mapping):
        return [parsed]
    if isinstance(parsed, list):
        if not parsed:
            raise RequestError("empty_array", "the array has no order lines")
        if len(parsed) > MAX_LINES_PER_REQUEST:
            raise RequestError("too_many_lines",
                               f"the array has {len(parsed)} lines; send at most {MAX_LINES_PER_REQUEST} per request")
        return parsed
    raise RequestError("not_object", f"the body must be an order line object or an array of them, got {_json_type(parsed)}")


def validate_lines(items: Sequence[Any]) -> tuple[list[OrderLine], list[dict[str, Any]]]:
    """Validate every line; return the typed lines and, per bad line, ``{"line": i, "errors": [...]}``."""
    lines: list[OrderLine] = []
    problems: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        line, errors = validate_line(item)
        if line is None:
            problems.append({"line": i, "errors": [e.to_dict() for e in errors]})
        else:
            lines.append(line)
    return lines, problems


def encode_record(line: OrderLine) -> bytes:
    """The bytes put on the stream for a line."""
    return json.dumps(line.to_record(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- records read from the stream --------------------------------------------------------------


@dataclass(frozen=True)
class StreamRecord:
    """One record read from the stream (local log or Kinesis)."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrived_at: float  # epoch seconds (Kinesis ApproximateArrivalTimestamp)


def sequence_int(sequence_number: str) -> int:
    """Sequence numbers are decimal strings (Kinesis: up to 128 bits); compare them as integers."""
    return int(sequence_number)


def decode_record(data: bytes) -> tuple[OrderLine | None, list[FieldError]]:
    """Validate a record's bytes exactly as the API validates a request line."""
    try:
        obj = json.loads(data.decode("utf-8"), parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, [FieldError("*", "bad_json", f"the record is not UTF-8 JSON: {exc}")]
    return validate_line(obj)


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
    return f"archive/stream/date={date}/{batch_name(first, last)}.jsonl"


def quarantine_key(date: str, first: str, last: str) -> str:
    return f"quarantine/stream/date={date}/{batch_name(first, last)}.jsonl"


def typed_key(date: str, first: str, last: str) -> str:
    # no ``date=`` segment: readers that detect Hive partitions would add a column the table does not have
    return f"processed/stream/order_lines/{date}/{batch_name(first, last)}.parquet"


def to_jsonl(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n" for r in rows)


def from_jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


# --- typing a batch -------------------------------------------------------------------------

ORDER_LINE_SCHEMA = pa.schema([
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
    columns: dict[str, list[Any]] = {f.name: [] for f in ORDER_LINE_SCHEMA}
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
    table = pa.table(columns, schema=ORDER_LINE_SCHEMA)
    return TypedBatch(rows_in=len(records), table=table, quarantined=quarantined)


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
