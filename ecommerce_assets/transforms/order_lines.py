"""One Online Retail order line: its fields, the validation rules shared by the API, the assets and the
lambdas, and its canonical record on the stream.

An order line is the Online Retail shape (``InvoiceNo, StockCode, Description, Quantity, InvoiceDate,
UnitPrice, CustomerID, Country``). ``validate_line`` checks one JSON object and returns either the typed
``OrderLine`` or every problem found, each naming its field and rule. The API refuses a request with any
bad line (nothing is put on the stream); the consumers validate again every record they read (a record
written by another producer, or a corrupt one, goes to quarantine instead of crashing a batch).

Rules (``rule`` values in the error answers and quarantine files):

* ``not_object`` - the line is not a JSON object; ``unknown_field`` - a key that is not one of the eight;
* ``duplicate_field`` - a key given twice (``{"InvoiceNo": .., "InvoiceNo": ..}``), or twice under two
  spellings (``InvoiceNo`` and ``invoice_no``): no "last one wins";
* ``missing`` - InvoiceNo, StockCode, Quantity, InvoiceDate, UnitPrice or Country absent/blank;
* ``control_character`` - a text with a control character (NUL, ESC, tab, ...), a bidirectional
  override/isolate (U+202E ...), a lone surrogate or a BOM;
* ``bad_format`` - InvoiceNo not ``[letter]digits`` (``C`` = cancellation, ``A`` = adjustment), an
  identifier with characters outside ``A-Z a-z 0-9 _ - . / space``, a text given as an object/array;
* ``too_long`` - a text longer than its limit; ``not_integer`` - Quantity; ``zero_quantity``;
* ``not_number`` / ``too_many_decimals`` (more than 3) / ``out_of_range`` - UnitPrice (and Quantity,
  bounded by magnitude *before* any conversion, so ``1e1000000`` is refused at once);
* ``negative_price`` - UnitPrice < 0 on an ordinary or cancellation invoice; only an adjustment
  invoice (``A...``, "Adjust bad debt" in the Online Retail data) may carry a negative price. A
  cancellation takes items back with a negative Quantity at the item's (positive) price, as in the data;
  the retail warehouse removes both kinds (``non_positive_quantity`` / ``non_positive_unitprice``);
* ``bad_date`` - InvoiceDate not ``M/D/YYYY H:MM``, ``M/D/YY H:MM`` or ``YYYY-MM-DD[ T]HH:MM[:SS]``;
  ``out_of_range`` - an InvoiceDate before 2000-01-01 or from 2100-01-01 on;
* ``cancellation_positive_quantity`` - a ``C`` invoice must take items back (Quantity < 0).

Blank CustomerID is an anonymous customer (``None``; ``UNKNOWN`` in the warehouse, as in
``gold.sales_transactions``); ``17850.0`` is read as ``17850``.

JSON is read with ``loads_json``: UTF-8 only (a leading BOM is ignored), every number as an exact
``Decimal`` (never a float, never Python's int parser and its 4,300-digit limit), ``NaN``/``Infinity``
kept as non-finite values that the field rules refuse, duplicate keys recorded. Messages never echo more
than a short, escaped excerpt of a value.

On the stream a line is its *canonical* JSON (``encode_record``): the eight keys, Quantity an integer,
UnitPrice a decimal string, InvoiceDate ``YYYY-MM-DDTHH:MM:SS``, CustomerID a string or null. Validating
a canonical record gives back the same line.

Records read from the stream, micro-batches, archive keys and key-value items are in
``ecommerce_assets.transforms.stream_batches``.
"""

from __future__ import annotations

import codecs
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

FIELDS: tuple[str, ...] = (
    "InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country",
)
REQUIRED: tuple[str, ...] = ("InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "Country")
# also accepted: the lower-case/snake spelling of each field (``invoiceno``, ``invoice_no``)
HEADER_ALIASES: dict[str, str] = {}
for _f in FIELDS:
    HEADER_ALIASES[_f.lower()] = _f
HEADER_ALIASES.update({"invoice_no": "InvoiceNo", "stock_code": "StockCode", "invoice_date": "InvoiceDate",
                 "unit_price": "UnitPrice", "customer_id": "CustomerID"})

MAX_LINES_PER_REQUEST = 500  # one Kinesis PutRecords call
MAX_BODY_BYTES = 1_000_000
MAX_LEN = {"InvoiceNo": 20, "StockCode": 32, "Description": 300, "CustomerID": 32, "Country": 64}
MAX_NUMBER_TEXT = 64  # characters of a Quantity/UnitPrice/InvoiceDate given as text
MAX_ERRORS_PER_LINE = 20
UNKNOWN_CUSTOMER = "UNKNOWN"
PRICE_LIMIT = Decimal("1e12")
QUANTITY_LIMIT = 2**53  # exact in a JSON double, and in DynamoDB/Athena numbers
MIN_INVOICE_DATE = dt.datetime(2000, 1, 1)
MAX_INVOICE_DATE = dt.datetime(2100, 1, 1)  # exclusive

_INVOICE = re.compile(r"^[A-Z]?\d{1,18}$")
_IDENT = re.compile(r"^[A-Za-z0-9_\-./ ]+$")
# C0/C1 controls and DEL; Arabic letter mark, LRM/RLM, line/paragraph separators, bidi embeddings and
# overrides (U+202A-U+202E) and isolates (U+2066-U+2069); lone surrogates (cannot be UTF-8); BOM/ZWNBSP
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff\ufeff]")
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
    """A request body that is not an order line or an array of them.

    ``status`` is the HTTP answer: 400 (not usable JSON), 413 (too large), 422 (nested too deep)."""

    def __init__(self, rule: str, message: str, status: int = 400):
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.status = status


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


# --- reading JSON safely ------------------------------------------------------------------------


class JsonObject(dict):  # type: ignore[type-arg]
    """A decoded JSON object that remembers the keys it was given more than once (the last value kept)."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> JsonObject:
    obj = JsonObject()
    duplicates: list[str] = []
    for key, value in pairs:
        if key in obj:
            duplicates.append(key)
        obj[key] = value
    if duplicates:
        obj.duplicates = tuple(duplicates)
    return obj


def loads_json(data: bytes) -> Any:
    """Decode UTF-8 JSON (a leading BOM ignored) with exact numbers; raise ``RequestError`` when unusable.

    Numbers become ``Decimal`` (parsing ``1e1000000`` or a 100,000-digit integer costs microseconds and no
    conversion happens here); ``NaN``/``Infinity``/``-Infinity`` become non-finite ``Decimal`` values that
    the field rules refuse; objects are ``JsonObject`` with their duplicate keys. Nesting deeper than the
    interpreter's recursion limit is ``too_deep`` (422), never a ``RecursionError``."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:4]:
        raise RequestError("bad_encoding", "the body must be UTF-8 JSON (this looks like UTF-16 or UTF-32)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError("bad_encoding", f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_float=Decimal, parse_int=Decimal, parse_constant=Decimal,
                          object_pairs_hook=_object_pairs)
    except RecursionError:
        raise RequestError("too_deep", "the JSON is nested too deeply; an order line is one flat object",
                           status=422) from None
    except ValueError as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise RequestError("bad_json", f"the body is not valid JSON: {msg}{where}") from None


def show(value: Any, limit: int = 40) -> str:
    """A short, escaped excerpt of a value for a message (never a huge number or string, never a raw control
    character or lone surrogate)."""
    if isinstance(value, str):
        cut = value[:limit]
        return repr(cut) + (f"... ({len(value)} characters)" if len(value) > limit else "")
    if isinstance(value, Decimal):
        digits = value.as_tuple().digits
        if not value.is_finite() or len(digits) <= limit:
            return str(value)  # short: str() writes a large exponent as 1E+1000000
        return f"a {len(digits)}-digit number with exponent {value.adjusted()}"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return show(Decimal(str(value)) if isinstance(value, float) else Decimal(value), limit)
    return _json_type(value)


def safe_name(key: Any, limit: int = 64) -> str:
    """A key as it can be shown in an answer: itself when printable and short, else quoted, escaped and cut
    (``''`` for an empty key, ``'\\x00'``, ``' InvoiceNo'``)."""
    text = str(key)
    if text and text.isprintable() and text.strip() == text and len(text) <= limit:
        return text
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


# --- field rules --------------------------------------------------------------------------------


def _control_character(value: str) -> str | None:
    found = _FORBIDDEN.search(value)
    if found is None:
        return None
    return f"U+{ord(found.group()):04X} at position {found.start()}"


def _is_number(raw: Any) -> bool:
    return isinstance(raw, (int, Decimal, float)) and not isinstance(raw, bool)


def _finite(raw: Any) -> bool:
    if isinstance(raw, Decimal):
        return raw.is_finite()
    if isinstance(raw, float):
        return raw == raw and raw not in (float("inf"), float("-inf"))
    return True


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
        errors.append(FieldError(name, "bad_format", f"{name} must be text, got {_json_type(raw)}"))
        return None
    if _is_number(raw) and not _finite(raw):
        errors.append(FieldError(name, "bad_format", f"{name} must be text, got {show(raw)}"))
        return None
    if _is_number(raw) and isinstance(raw, Decimal) and len(raw.as_tuple().digits) > MAX_LEN.get(name, 10_000):
        errors.append(FieldError(name, "too_long", f"{name} is longer than {MAX_LEN.get(name, 10_000)} characters"))
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
        errors.append(FieldError(name, "bad_format", f"{name} {show(value)} has characters outside A-Z a-z 0-9 _-./"))
        return None
    return value


def _check_invoice(raw: Any, errors: list[FieldError]) -> str | None:
    value = _check_text("InvoiceNo", raw, errors)
    if value is None:
        return None
    value = value.upper()
    if not _INVOICE.match(value):
        errors.append(FieldError("InvoiceNo", "bad_format",
                                 f"InvoiceNo {show(value)} is not digits with an optional letter prefix (C536379)"))
        return None
    return value


def _number(raw: Any) -> Decimal | None:
    """``raw`` as a Decimal without any costly conversion (text longer than ``MAX_NUMBER_TEXT`` is refused)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, Decimal):
        return raw
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        return Decimal(str(raw))
    if isinstance(raw, str):
        text = raw.strip()
        if len(text) > MAX_NUMBER_TEXT:
            return None
        try:
            return Decimal(text)
        except InvalidOperation:
            return None
    return None


def _check_quantity(raw: Any, errors: list[FieldError]) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        errors.append(FieldError("Quantity", "missing", "Quantity is required"))
        return None
    if isinstance(raw, bool):
        errors.append(FieldError("Quantity", "not_integer", "Quantity must be a whole number, got a boolean"))
        return None
    number = _number(raw)
    if number is None or not number.is_finite():
        errors.append(FieldError("Quantity", "not_integer", f"Quantity must be a whole number, got {show(raw)}"))
        return None
    # bound the magnitude BEFORE any conversion: int(Decimal("1e1000000")) would take minutes
    if not number.is_zero() and number.adjusted() >= 16:
        errors.append(FieldError("Quantity", "out_of_range",
                                 f"Quantity {show(raw)} is out of range (at most {QUANTITY_LIMIT - 1} in absolute value)"))
        return None
    if number != number.to_integral_value():
        errors.append(FieldError("Quantity", "not_integer", f"Quantity must be a whole number, got {show(raw)}"))
        return None
    value = int(number)
    if value == 0:
        errors.append(FieldError("Quantity", "zero_quantity", "Quantity must not be 0"))
        return None
    if abs(value) >= QUANTITY_LIMIT:
        errors.append(FieldError("Quantity", "out_of_range",
                                 f"Quantity {value} is out of range (at most {QUANTITY_LIMIT - 1} in absolute value)"))
        return None
    return value


def _check_price(raw: Any, errors: list[FieldError]) -> Decimal | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        errors.append(FieldError("UnitPrice", "missing", "UnitPrice is required"))
        return None
    number = _number(raw)
    if number is None:
        errors.append(FieldError("UnitPrice", "not_number", f"UnitPrice must be a number, got {show(raw)}"))
        return None
    if not number.is_finite():
        errors.append(FieldError("UnitPrice", "not_number", f"UnitPrice must be a finite number, got {show(raw)}"))
        return None
    if not number.is_zero() and number.adjusted() >= 12:  # |x| >= 1e12, decided on the exponent alone
        errors.append(FieldError("UnitPrice", "out_of_range", f"UnitPrice {show(raw)} is out of range (below {PRICE_LIMIT:,.0f})"))
        return None
    if _decimals(number) > 3:
        errors.append(FieldError("UnitPrice", "too_many_decimals", f"UnitPrice {show(raw)} has more than 3 decimals"))
        return None
    if number.is_zero():
        number = abs(number)  # -0.0 is 0
    return number.quantize(Decimal("0.001"))


def _decimals(number: Decimal) -> int:
    """Decimal places of a finite number once trailing zeros are dropped (exact: no rounding to 28 digits)."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if exponent >= 0:
        return 0
    end = len(digits)
    while end > 1 and digits[end - 1] == 0 and exponent + (len(digits) - end) < 0:
        end -= 1
    return max(0, -(exponent + (len(digits) - end)))


def parse_invoice_date(raw: Any) -> dt.datetime | None:
    """A naive timestamp from the accepted formats, or ``None``."""
    if not isinstance(raw, str) or len(raw) > MAX_NUMBER_TEXT:
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
                                 f"InvoiceDate {show(raw)} is not M/D/YYYY H:MM, M/D/YY H:MM or YYYY-MM-DD HH:MM:SS"))
        return None
    if not MIN_INVOICE_DATE <= value < MAX_INVOICE_DATE:
        errors.append(FieldError("InvoiceDate", "out_of_range",
                                 f"InvoiceDate {value.isoformat(sep=' ', timespec='minutes')} is outside "
                                 f"{MIN_INVOICE_DATE.date()} .. {MAX_INVOICE_DATE.date()} (exclusive)"))
        return None
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
    given_as: dict[str, str] = {}
    refused: set[str] = set()
    unknown = 0
    for key in getattr(obj, "duplicates", ()):
        errors.append(FieldError(safe_name(key), "duplicate_field", f"the key {show(key)} is given more than once"))
    for key, value in obj.items():
        name = key if key in FIELDS else HEADER_ALIASES.get(str(key).strip().lower())
        if name is None:
            unknown += 1
            if unknown <= 5:
                errors.append(FieldError(safe_name(key), "unknown_field",
                                         f"unknown field {show(key)}; the fields are {', '.join(FIELDS)}"))
            continue
        if name in given_as:
            errors.append(FieldError(name, "duplicate_field",
                                     f"{name} is given twice, as {show(given_as[name])} and {show(key)}"))
            continue
        given_as[name] = str(key)
        if isinstance(value, str) and (where := _control_character(value)) is not None:
            errors.append(FieldError(name, "control_character",
                                     f"{name} contains a control or bidirectional-formatting character ({where})"))
            refused.add(name)
        values[name] = value
    if unknown > 5:
        errors.append(FieldError("*", "unknown_field", f"{unknown} unknown fields in all"))

    def value_of(name: str) -> Any:
        return _SKIP if name in refused else values.get(name)

    invoice_no = _skip_or(value_of("InvoiceNo"), _check_invoice, errors)
    stock_code = _skip_or(value_of("StockCode"), lambda v, e: _check_text("StockCode", v, e, pattern=_IDENT), errors)
    description = _skip_or(value_of("Description"), lambda v, e: _check_text("Description", v, e), errors)
    quantity = _skip_or(value_of("Quantity"), _check_quantity, errors)
    invoice_date = _skip_or(value_of("InvoiceDate"), _check_date, errors)
    unit_price = _skip_or(value_of("UnitPrice"), _check_price, errors)
    customer_id = _skip_or(value_of("CustomerID"), _check_customer, errors)
    country = _skip_or(value_of("Country"), lambda v, e: _check_text("Country", v, e), errors)
    if invoice_no and invoice_no.startswith("C") and quantity is not None and quantity > 0:
        errors.append(FieldError("Quantity", "cancellation_positive_quantity",
                                 f"cancellation {invoice_no} must have a negative Quantity, got {quantity}"))
    if invoice_no and unit_price is not None and unit_price < 0 and not invoice_no.startswith("A"):
        kind = "a cancellation" if invoice_no.startswith("C") else "an ordinary invoice"
        errors.append(FieldError("UnitPrice", "negative_price",
                                 f"UnitPrice {unit_price} is negative on {kind} ({invoice_no}); only an adjustment "
                                 "invoice (A...) may carry a negative price"))
    if errors:
        return None, errors[:MAX_ERRORS_PER_LINE]
    return OrderLine(
        invoice_no=invoice_no, stock_code=stock_code, description=description, quantity=quantity,  # type: ignore[arg-type]
        invoice_date=invoice_date, unit_price=unit_price, customer_id=customer_id, country=country,  # type: ignore[arg-type]
    ), []


_SKIP = object()


def _skip_or(value: Any, check: Any, errors: list[FieldError]) -> Any:
    """``check(value, errors)``, unless the value was already refused (a control character)."""
    if value is _SKIP:
        return None
    return check(value, errors)


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
        raise RequestError("body_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes", status=413)
    if not body.strip() or body.strip() == codecs.BOM_UTF8:
        raise RequestError("empty_body", "the body is empty; send an order line or a JSON array of them")
    parsed = loads_json(body)
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


def decode_record(data: bytes) -> tuple[OrderLine | None, list[FieldError]]:
    """Validate a record's bytes exactly as the API validates a request line."""
    try:
        obj = loads_json(data)
    except RequestError as exc:
        # one rule for every unreadable record (``bad_json``); the message says which way it is bad
        return None, [FieldError("*", "bad_json", f"the record is not usable UTF-8 JSON ({exc.rule}): {exc.message}")]
    return validate_line(obj)
