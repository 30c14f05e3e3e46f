"""Orders ELT: landed orders.csv / customers.json / products.csv and the products API JSON -> cleaned rows.

The cleaned rows of a source replace every row of its Iceberg table ``orders_<source>`` in one commit
(``clean(..., tables=...)``; ``table_name``), or go to one Parquet file (``clean_source``, for tests and tools).

Every source is read as text by DuckDB (IDs stay TEXT: ``O1001`` is never cast to a number), then typed
and ruled in SQL. A landed file may be hostile (any encoding, any bytes, any shape): it is either read or
rejected whole with a named rule, never a crash, and every record read is either kept, quarantined with
its rule, or counted as superseded.

File level (``BadFileError``; the asset moves the file to ``quarantine/<source>/files/`` with the reason):

* CSV (``files.open_csv``): ``empty_file``, ``unknown_encoding`` (NUL bytes, UTF-16/32), ``line_too_long``,
  ``unreadable_file``, ``not_csv`` / ``missing_column`` (the header, matched after trimming and lower-casing
  its names, lacks a required column), ``unreadable_csv`` (the engine refuses it, even with its serial
  reader). UTF-8, ISO-8859-1 and Windows-1252 are read; a repeated column name: the first one wins;
* JSON (an array, JSON lines, or values separated by any white space, a lone CR included): ``empty_file``,
  ``unknown_encoding`` (not UTF-8, as RFC 8259 requires), ``not_json`` (the text does not parse),
  ``missing_column`` (no object of the file has a required field).

Record level, in this order (the first that matches names the record's rule and ``field``):

* JSON only: ``not_an_object`` (a record that is a number, string, array or null), ``repeated_field`` (an
  object naming one of our fields twice: which value is meant is unknown), ``wrong_type_<field>`` (a field
  holding a value of the wrong JSON type: an object or array where a scalar belongs, a number or boolean
  where text belongs, a fractional number as an ID);
* ``null_<field>``: a blank business key (or a blank required field);
* ``unparseable_<field>``: a value that does not parse (order_date not ``YYYY-MM-DD``, quantity not a
  whole number, amount/price not a plain decimal, updated_at not a timestamp, email without ``@``);
* ``out_of_range_<field>``: a date before 2000-01-01 or after 2100-12-31 (``0001-01-01``, ``9999-12-31``);
  ``negative_price``: a price below 0;
* ``control_character``: a control character (NUL, ESC, DEL, C1) or a bidirectional override/isolate
  (U+202A-U+202E, U+2066-U+2069) in any field, or a tab/line break in an ID (``field`` names the first);
* ``superseded``: an older version of a business key. Latest wins: for orders the highest
  ``updated_at`` (a version without ``updated_at`` loses to one with it), then the later file, then the
  later row; for customers, products and API products the later file, then the later row. Files are
  ordered by their raw key (``raw/<source>/date=YYYY-MM-DD/<arrival stamp>-<name>``: date, then arrival).

Rows of the record-level rules go to quarantine with (source_file, source_row, field, rule) and, for JSON,
the record's text; superseded rows are counted, not quarantined. So rows in = rows out + quarantined +
superseded (``CleanResult``). Emails are trimmed and lower-cased; API fields are renamed ``id -> product_id``,
``title -> product_name``, ``image -> image_url``, ``rating.rate/count -> rating_rate/rating_count``. Text
that starts with ``=``, ``+``, ``-`` or ``@`` is data and kept as it is (``files.csv_for_people`` neutralises
it in a CSV written for people).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ecommerce_assets.transforms.files import (
    CHUNK,
    ENGINE_MAX_LINE_SIZE,
    BadFileError,
    TextFile,
    detect_encoding,
    engine_file,
    open_csv,
    standardize_column,
)
from ecommerce_assets.transforms.retail import (
    CONTROL_CHARACTERS,
    CONTROL_CHARACTERS_IN_IDS,
    EARLIEST_DATE,
    END_DATE,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from ecommerce_assets.storage.iceberg import IcebergCommit, IcebergTables

# the largest JSON record read (the engine's ``maximum_object_size``); a larger one makes the file not_json
MAX_JSON_RECORD_BYTES = 16 * 1024 * 1024
# a plain decimal number as text (``1200``, ``-3.5``, ``1e3``); not ``0x10``, ``1_000``, ``NaN`` or ``inf``
PLAIN_NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
WHOLE_NUMBER = r"^[+-]?[0-9]+$"
ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# JSON types (DuckDB's ``json_type``) a field may hold; a JSON null or an absent field is always accepted
TEXT = ("VARCHAR",)
ID = ("VARCHAR", "BIGINT", "UBIGINT")
NUMBER = ("VARCHAR", "BIGINT", "UBIGINT", "DOUBLE")
TABLE_PREFIX = "orders_"  # the Iceberg table of a source's cleaned rows: orders_<source>
# rows per Arrow part written to the Iceberg table: one part (about one data file) in memory at a time
ROWS_PER_PART = 1_000_000


@dataclass(frozen=True)
class SourceFile:
    """One registered raw file: its lake key (the label in quarantine), a local path and its arrival time."""

    key: str
    path: Path
    ingested_at: str  # ISO timestamp (UTC) of the file's arrival


@dataclass(frozen=True)
class Rule:
    """A record-level rule: its name, the SQL of the field it names, the SQL condition, what it means."""

    name: str
    field_sql: str
    condition: str
    description: str


@dataclass(frozen=True)
class JsonField:
    """A column read from a JSON record: its JSON path and the JSON types it may hold."""

    column: str
    path: str
    types: tuple[str, ...]


@dataclass(frozen=True)
class SourceSpec:
    name: str
    fmt: str  # "csv" or "json"
    required: tuple[str, ...]
    optional: tuple[str, ...]
    key: str
    ids: tuple[str, ...]  # columns in which a tab or a line break is a control character too
    parsed: str  # extra typed columns computed from the text columns
    content_rules: tuple[Rule, ...]
    latest_first: str  # ORDER BY of the versions of one key, latest first
    output: str  # SELECT list of the cleaned table
    json_fields: tuple[JsonField, ...] = ()
    # JSON only: objects (other than the record) a field must be, checked like a field: (rule field, path)
    json_objects: tuple[tuple[str, str], ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every record-level rule, in the order they are tried (the control-character rule last)."""
        load: tuple[Rule, ...] = ()
        if self.fmt == "json":
            load = (
                Rule("not_an_object", "'*'", "_load_rule = 'not_an_object'",
                     "the record is not a JSON object (a number, string, array or null)"),
                Rule("repeated_field", "_load_field", "_load_rule = 'repeated_field'",
                     "the object names one of the fields twice"),
                *(Rule(f"wrong_type_{name}", "_load_field", f"_load_rule = 'wrong_type_{name}'",
                       f"{name} holds a JSON value of the wrong type")
                  for name in self.wrong_type_fields),
            )
        control = Rule("control_character", "_ctrl_field", "_ctrl_field IS NOT NULL",
                       "a control or bidirectional-override character in a field (a tab or line break in an ID)")
        return (*load, *self.content_rules, control)

    @property
    def wrong_type_fields(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.json_objects) + tuple(f.column for f in self.json_fields)

    @property
    def rule_descriptions(self) -> dict[str, str]:
        return {r.name: r.description for r in self.rules}


def _blank(col: str) -> str:
    return f"nullif(trim({col}), '') IS NULL"


def _null(col: str) -> Rule:
    return Rule(f"null_{col}", f"'{col}'", _blank(col), f"{col} is missing or blank")


def _rule(name: str, col: str, condition: str, description: str) -> Rule:
    return Rule(name, f"'{col}'", condition, description)


def _out_of_range(col: str, typed: str) -> Rule:
    return _rule(f"out_of_range_{col}", col, f"{typed} < CAST($earliest AS DATE) OR {typed} >= CAST($end AS DATE)",
                 f"{col} is before {EARLIEST_DATE} or after 2100-12-31")


ORDERS = SourceSpec(
    name="orders",
    fmt="csv",
    required=("order_id", "customer_id", "product_id", "order_date", "quantity", "amount"),
    optional=("status", "updated_at"),
    key="order_id",
    ids=("order_id", "customer_id", "product_id"),
    parsed=f"""
        CASE WHEN regexp_matches(trim(order_date), '{ISO_DATE}') THEN TRY_CAST(trim(order_date) AS DATE) END AS _order_date,
        CASE WHEN regexp_matches(trim(quantity), '{WHOLE_NUMBER}') THEN TRY_CAST(trim(quantity) AS BIGINT) END AS _quantity,
        CASE WHEN regexp_matches(trim(amount), '{PLAIN_NUMBER}') THEN TRY_CAST(trim(amount) AS DECIMAL(18, 2)) END AS _amount,
        TRY_CAST(nullif(trim(updated_at), '') AS TIMESTAMP) AS _updated_at
    """,
    content_rules=(
        _null("order_id"), _null("customer_id"), _null("product_id"), _null("order_date"), _null("quantity"),
        _null("amount"),
        _rule("unparseable_order_date", "order_date", "_order_date IS NULL", "order_date is not a YYYY-MM-DD date"),
        _rule("unparseable_quantity", "quantity", "_quantity IS NULL", "quantity is not a whole number (64 bits)"),
        _rule("unparseable_amount", "amount", "_amount IS NULL", "amount is not a decimal that fits DECIMAL(18,2)"),
        _rule("unparseable_updated_at", "updated_at", "nullif(trim(updated_at), '') IS NOT NULL AND _updated_at IS NULL",
              "updated_at is not a timestamp"),
        _out_of_range("order_date", "_order_date"),
        _out_of_range("updated_at", "_updated_at"),
    ),
    latest_first="_updated_at DESC NULLS LAST, _file_seq DESC, _row DESC",
    output="""
        trim(order_id) AS order_id, trim(customer_id) AS customer_id, trim(product_id) AS product_id,
        _order_date AS order_date, _quantity AS quantity, _amount AS amount,
        lower(nullif(trim(status), '')) AS status, _updated_at AS updated_at
    """,
)

CUSTOMERS = SourceSpec(
    name="customers",
    fmt="json",
    required=("customer_id", "customer_name", "email", "city"),
    optional=(),
    key="customer_id",
    ids=("customer_id",),
    parsed="lower(nullif(trim(email), '')) AS _email",
    content_rules=(
        _null("customer_id"),
        _rule("unparseable_email", "email", "_email IS NOT NULL AND NOT regexp_matches(_email, '^[^@\\s]+@[^@\\s]+$')",
              "email is not one address with an @"),
    ),
    latest_first="_file_seq DESC, _row DESC",
    output="""
        trim(customer_id) AS customer_id, nullif(trim(customer_name), '') AS customer_name,
        _email AS email, nullif(trim(city), '') AS city
    """,
    json_fields=(
        JsonField("customer_id", "$.customer_id", ID),
        JsonField("customer_name", "$.customer_name", TEXT),
        JsonField("email", "$.email", TEXT),
        JsonField("city", "$.city", TEXT),
    ),
)

PRODUCTS = SourceSpec(
    name="products",
    fmt="csv",
    required=("product_id", "product_name", "category", "price"),
    optional=(),
    key="product_id",
    ids=("product_id",),
    parsed=f"CASE WHEN regexp_matches(trim(price), '{PLAIN_NUMBER}') THEN TRY_CAST(trim(price) AS DECIMAL(18, 2)) END AS _price",
    content_rules=(
        _null("product_id"),
        _null("price"),
        _rule("unparseable_price", "price", "_price IS NULL", "price is not a decimal that fits DECIMAL(18,2)"),
        _rule("negative_price", "price", "_price < 0", "price is below 0"),
    ),
    latest_first="_file_seq DESC, _row DESC",
    output="""
        trim(product_id) AS product_id, nullif(trim(product_name), '') AS product_name,
        nullif(trim(category), '') AS category, _price AS price
    """,
)

API_PRODUCTS = SourceSpec(
    name="api_products",
    fmt="json",
    required=("id", "title", "price"),
    optional=("description", "category", "image", "rating_rate", "rating_count"),
    key="id",
    ids=("id",),
    parsed=f"""
        CASE WHEN regexp_matches(trim(price), '{PLAIN_NUMBER}') THEN TRY_CAST(trim(price) AS DECIMAL(18, 2)) END AS _price,
        CASE WHEN regexp_matches(trim(rating_rate), '{PLAIN_NUMBER}') THEN TRY_CAST(trim(rating_rate) AS DOUBLE) END AS _rating_rate,
        CASE WHEN regexp_matches(trim(rating_count), '{WHOLE_NUMBER}') THEN TRY_CAST(trim(rating_count) AS BIGINT) END AS _rating_count
    """,
    content_rules=(
        _null("id"),
        _null("title"),
        _null("price"),
        _rule("unparseable_price", "price", "_price IS NULL", "price is not a decimal that fits DECIMAL(18,2)"),
        _rule("negative_price", "price", "_price < 0", "price is below 0"),
        _rule("unparseable_rating", "rating",
              "(rating_rate IS NOT NULL AND (_rating_rate IS NULL OR NOT isfinite(_rating_rate))) "
              "OR (rating_count IS NOT NULL AND _rating_count IS NULL)",
              "rating.rate is not a finite number or rating.count not a whole number"),
    ),
    latest_first="_file_seq DESC, _row DESC",
    output="""
        trim(id) AS product_id, trim(title) AS product_name, nullif(trim(description), '') AS description,
        nullif(trim(category), '') AS category, _price AS price, nullif(trim(image), '') AS image_url,
        _rating_rate AS rating_rate, _rating_count AS rating_count
    """,
    json_fields=(
        JsonField("id", "$.id", ID),
        JsonField("title", "$.title", TEXT),
        JsonField("price", "$.price", NUMBER),
        JsonField("description", "$.description", TEXT),
        JsonField("category", "$.category", TEXT),
        JsonField("image", "$.image", TEXT),
        JsonField("rating_rate", "$.rating.rate", NUMBER),
        JsonField("rating_count", "$.rating.count", ID),
    ),
    json_objects=(("rating", "$.rating"),),
)

SPECS: dict[str, SourceSpec] = {s.name: s for s in (ORDERS, CUSTOMERS, PRODUCTS, API_PRODUCTS)}
SUPERSEDED = "superseded"


@dataclass
class CleanResult:
    """What one cleaning did: rows in/out, per-rule counts, rejected files (counts reconcile)."""

    source: str
    files_in: int = 0
    rows_in: int = 0
    rows_out: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    superseded: int = 0
    rejected_files: list[BadFileError] = field(default_factory=list)
    commit: IcebergCommit | None = None  # what the Iceberg commit of the cleaned rows did (``clean`` with tables)
    # fields (a CSV column, a JSON key) the files hold beyond the source's contract, not kept -> the files holding them
    unread_fields: dict[str, list[str]] = field(default_factory=dict)

    def note_unread(self, file: str, names: Sequence[str]) -> None:
        for name in names:
            self.unread_fields.setdefault(name, []).append(file)

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.rows_out + self.rows_quarantined + self.superseded

    def as_metadata(self) -> dict[str, object]:
        return {
            "files_in": self.files_in,
            "files_rejected": len(self.rejected_files),
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_quarantined": self.rows_quarantined,
            "rows_superseded": self.superseded,
            "quarantined_by_rule": {k: v for k, v in self.quarantined.items() if v},
            "reconciles": self.reconciles,
            "unread_fields": dict(sorted(self.unread_fields.items())),
        }


def _engine_message(exc: Exception) -> str:
    """The first line of an engine error, at most 300 characters (its next lines quote the file). A message
    that Python cannot decode (the engine cut a quoted UTF-8 sequence) reaches us as a UnicodeDecodeError."""
    if isinstance(exc, UnicodeDecodeError):
        return "the engine's message about the file could not be decoded"
    return str(exc).split("\n", 1)[0][:300]


def _create_src(con: duckdb.DuckDBPyConnection, spec: SourceSpec) -> None:
    cols = ", ".join(f"{c} VARCHAR" for c in spec.columns)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {spec.name}_src ({cols}, _file VARCHAR, _row BIGINT, "
        "_file_seq INTEGER, _ingested_at TIMESTAMP, _load_rule VARCHAR, _load_field VARCHAR, _record VARCHAR)"
    )


def _read_csv_sql(spec: SourceSpec, tf: TextFile) -> tuple[str, list[str]]:
    """The INSERT of one CSV file into ``<source>_src`` and the column names given to the reader: the
    header's names standardized (``' Product_ID '`` -> ``product_id``), a blank one named ``column<i>``,
    a repeated one suffixed (so the first of two equal names wins)."""
    names = [standardize_column(h) or f"column{i}" for i, h in enumerate(tf.header)]
    names = [n if names.index(n) == i else f"{n}_{i}" for i, n in enumerate(names)]
    select = ", ".join(c if c in names else "CAST(NULL AS VARCHAR)" for c in spec.columns)
    sql = (
        f"INSERT INTO {spec.name}_src SELECT {select}, ?, row_number() OVER (), ?, CAST(? AS TIMESTAMP), "  # noqa: S608
        "NULL, NULL, NULL "
        "FROM read_csv(?, header = true, names = ?, all_varchar = true, encoding = ?, delim = ',', quote = '\"', "
        "escape = '\"', strict_mode = false, null_padding = true, max_line_size = ?, parallel = ?)"
    )
    return sql, names


def _insert_csv(con: duckdb.DuckDBPyConnection, spec: SourceSpec, f: SourceFile, seq: int) -> list[str]:
    """Append one CSV file to ``<source>_src`` (one statement: all its rows or none). The parallel reader
    cannot pad short rows of a file with line breaks inside quoted values: such a file is read again by
    the serial reader before it is called unreadable (``unreadable_csv``). Returns the header's columns the
    contract does not read (standardized names)."""
    import duckdb

    try:
        tf = open_csv(f.path, list(spec.required))
    except BadFileError as exc:  # name the file by its lake key, not the local copy
        raise BadFileError(f.key, exc.problem, exc.rule) from exc
    sql, names = _read_csv_sql(spec, tf)
    try:
        with engine_file(tf) as (path, encoding):
            params = [f.key, seq, f.ingested_at, str(path), names, encoding, ENGINE_MAX_LINE_SIZE]
            try:
                con.execute(sql, [*params, True])
            except (duckdb.OutOfMemoryException, duckdb.InterruptException):
                raise
            except (duckdb.Error, UnicodeDecodeError):
                con.execute(sql, [*params, False])
    except (duckdb.OutOfMemoryException, duckdb.InterruptException):
        raise  # the engine's limits, not the file's fault
    except (duckdb.Error, UnicodeDecodeError) as exc:  # the reader's "CSV Error", invalid input, conversion
        raise BadFileError(f.key, f"the engine cannot read it as CSV: {_engine_message(exc)}", "unreadable_csv") from exc
    return [n for n in names if n not in spec.columns]


_JSON_STARTS = b'[{"-0123456789tfnNI'  # what a JSON value (or DuckDB's NaN / Infinity) starts with


def _json_format(path: Path, key: str) -> str:
    """``array`` for a JSON array, ``values`` for JSON values separated by white space (JSON lines, a lone
    CR included, or one value); else ``BadFileError`` (``empty_file``, ``unknown_encoding``: not UTF-8,
    ``not_json``: does not start like JSON, ``unreadable_file``)."""
    try:
        if path.stat().st_size == 0:
            raise BadFileError(key, "empty file", "empty_file")
        encoding = detect_encoding(path)
        with path.open("rb") as fh:
            head = fh.read(4096)
    except BadFileError as exc:
        raise BadFileError(key, exc.problem, exc.rule) from exc
    except OSError as exc:
        raise BadFileError(key, f"cannot be read: {exc.strerror or type(exc).__name__}", "unreadable_file") from exc
    if encoding != "utf-8":
        raise BadFileError(key, "not UTF-8: a JSON file must be UTF-8 (RFC 8259); save it as UTF-8 and land it again",
                           "unknown_encoding")
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    if head[:1] == b"[":
        return "array"
    if not head or head[:1] in _JSON_STARTS:  # white space only: no record
        return "values"
    raise BadFileError(key, f"not JSON: expected a JSON array or JSON lines of objects; starts with {head[:30]!r}",
                       "not_json")


@contextmanager
def _json_values_file(path: Path) -> Iterator[Path]:
    """The file of JSON values for the engine's line reader: the file itself, or, when it has a byte-order
    mark or a CR, a temporary copy without the mark and with every CR a LF (outside a string a CR is white
    space, and inside one it is not valid JSON either way), removed on exit."""
    with path.open("rb") as fh:
        head = fh.read(3)
        needs_copy = head == b"\xef\xbb\xbf"
        fh.seek(0)
        while not needs_copy and (chunk := fh.read(CHUNK)):
            needs_copy = b"\r" in chunk
    if not needs_copy:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="ecommerce-json-") as tmp:
        out = Path(tmp) / "values.json"
        with path.open("rb") as src, out.open("wb") as dst:
            first = True
            while chunk := src.read(CHUNK):
                if first:
                    chunk, first = chunk.removeprefix(b"\xef\xbb\xbf"), False
                dst.write(chunk.replace(b"\r", b"\n"))
        yield out


def _stage_json(con: duckdb.DuckDBPyConnection, f: SourceFile) -> None:
    """Every record of one JSON file into the temp table ``_json_stage`` (position, JSON, its type and keys).

    An array is read as one; other files as JSON lines, then, should that fail (a value over several lines),
    as values separated by any white space: each reader refuses a shape the other reads (the second one,
    a number followed by another value). Neither: ``not_json``, with the engine's first message line."""
    import duckdb

    stage = (
        "CREATE OR REPLACE TEMP TABLE _json_stage AS SELECT row_number() OVER () AS _row, json, "
        "json_type(json) AS _jt, json_keys(json) AS _keys "
        "FROM read_json_objects(?, format = ?, maximum_object_size = ?)"
    )
    fmt = _json_format(f.path, f.key)
    try:
        if fmt == "array":
            con.execute(stage, [str(f.path), "array", MAX_JSON_RECORD_BYTES])
            return
        with _json_values_file(f.path) as path:
            try:
                con.execute(stage, [str(path), "newline_delimited", MAX_JSON_RECORD_BYTES])
            except (duckdb.OutOfMemoryException, duckdb.InterruptException):
                raise
            except (duckdb.Error, UnicodeDecodeError):
                con.execute(stage, [str(path), "unstructured", MAX_JSON_RECORD_BYTES])
    except (duckdb.OutOfMemoryException, duckdb.InterruptException):
        raise
    except (duckdb.Error, UnicodeDecodeError) as exc:
        raise BadFileError(f.key, f"not valid JSON: {_engine_message(exc)}", "not_json") from exc
    except OSError as exc:
        raise BadFileError(f.key, f"cannot be read: {exc.strerror or type(exc).__name__}", "unreadable_file") from exc


def _json_load_sql(spec: SourceSpec) -> str:
    """The INSERT of the staged records of one JSON file (``_json_stage``) into ``<source>_src``: each field
    as text (the JSON text of a nested value, kept for the quarantine), and the load rule the record breaks
    (``not_an_object``, ``repeated_field``, ``wrong_type_<field>``) with the field it names."""
    types = {f.column: f"json_type(json, '{f.path}')" for f in spec.json_fields}
    whens = ["WHEN _jt IS DISTINCT FROM 'OBJECT' THEN 'not_an_object'"]
    fields = ["WHEN _jt IS DISTINCT FROM 'OBJECT' THEN '*'"]
    for name in dict.fromkeys(f.path.split(".")[1] for f in spec.json_fields):
        repeated = f"len(list_filter(_keys, k -> k = '{name}')) > 1"
        whens.append(f"WHEN {repeated} THEN 'repeated_field'")
        fields.append(f"WHEN {repeated} THEN '{name}'")
    for name, path in spec.json_objects:
        wrong = f"json_type(json, '{path}') NOT IN ('OBJECT', 'NULL')"
        whens.append(f"WHEN {wrong} THEN 'wrong_type_{name}'")
        fields.append(f"WHEN {wrong} THEN '{name}'")
    for f in spec.json_fields:
        accepted = ", ".join(f"'{t}'" for t in (*f.types, "NULL"))
        whens.append(f"WHEN {types[f.column]} NOT IN ({accepted}) THEN 'wrong_type_{f.column}'")
        fields.append(f"WHEN {types[f.column]} NOT IN ({accepted}) THEN '{f.column}'")
    texts = []
    for c in spec.columns:
        f = next(f for f in spec.json_fields if f.column == c)
        texts.append(
            f"CASE WHEN {types[c]} IN ('OBJECT', 'ARRAY') THEN CAST(json_extract(json, '{f.path}') AS VARCHAR) "
            f"ELSE json_extract_string(json, '{f.path}') END"
        )
    return (
        f"INSERT INTO {spec.name}_src SELECT {', '.join(texts)}, ?, _row, ?, CAST(? AS TIMESTAMP), "  # noqa: S608
        f"CASE {' '.join(whens)} END, CASE {' '.join(fields)} END, CAST(json AS VARCHAR) "
        "FROM _json_stage ORDER BY _row"
    )


def _insert_json(con: duckdb.DuckDBPyConnection, spec: SourceSpec, f: SourceFile, seq: int) -> list[str]:
    """Append every record of one JSON file to ``<source>_src``; a record that is not a good object is
    kept with its load rule (quarantined by ``clean``), so what parses is never lost. Returns the top-level
    keys of its objects that the contract does not read."""
    _stage_json(con, f)
    try:
        objects, keys = con.execute(
            "SELECT count(*) FILTER (WHERE _jt = 'OBJECT'), "
            "list_distinct(flatten(list(_keys) FILTER (WHERE _jt = 'OBJECT'))) FROM _json_stage"
        ).fetchone()
        found = set(keys or [])
        missing = [c for c in spec.required if c not in found]
        if objects and missing:
            raise BadFileError(
                f.key, f"missing field(s): expected {', '.join(spec.required)}; missing {', '.join(missing)}; "
                f"found {', '.join(sorted(found)[:12]) or '(none)'}", "missing_column",
            )
        con.execute(_json_load_sql(spec), [f.key, seq, f.ingested_at])
        read = {jf.path.split(".")[1] for jf in spec.json_fields} | {path.split(".")[1] for _, path in spec.json_objects}
        return sorted(found - read)
    finally:
        con.execute("DROP TABLE IF EXISTS _json_stage")


def load_files(con: duckdb.DuckDBPyConnection, source: str, files: Sequence[SourceFile]) -> CleanResult:
    """Read every file of ``source`` (in the given order = file order) into the temp table ``<source>_src``.

    A bad file is skipped and recorded in ``CleanResult.rejected_files``; the others are loaded.
    """
    spec = SPECS[source]
    _create_src(con, spec)
    result = CleanResult(source=source, files_in=len(files))
    con.execute("SET preserve_insertion_order = true")  # row_number() = the row's position in its file
    try:
        for seq, f in enumerate(files):
            try:
                unread = (_insert_csv if spec.fmt == "csv" else _insert_json)(con, spec, f, seq)
                result.note_unread(f.key, unread)
            except BadFileError as exc:
                result.rejected_files.append(exc)
    finally:
        con.execute("SET preserve_insertion_order = false")
    result.rows_in = int(con.execute(f"SELECT count(*) FROM {spec.name}_src").fetchone()[0])  # noqa: S608
    return result


def _control_field_sql(spec: SourceSpec) -> str:
    """The first column holding a control character (a tab or line break counts in an ID), else NULL."""
    whens = " ".join(
        f"WHEN regexp_matches({c}, {'$ctrl_id' if c in spec.ids else '$ctrl'}) THEN '{c}'" for c in spec.columns
    )
    return f"CASE {whens} END"


def _ruled_sql(spec: SourceSpec) -> str:
    """The temp table ``<source>_ruled``: every source row with its rule (``_bad``: a record-level rule,
    ``_rule``: that or ``superseded``) and the field it names. A table, not a view: the counts and the two
    writes read it."""
    cases = "\n".join(f"WHEN {r.condition} THEN '{r.name}'" for r in spec.rules)
    fields = "\n".join(f"WHEN '{r.name}' THEN {r.field_sql}" for r in spec.rules)
    return f"""
    CREATE OR REPLACE TEMP TABLE {spec.name}_ruled AS
    WITH parsed AS (SELECT *, {spec.parsed}, {_control_field_sql(spec)} AS _ctrl_field FROM {spec.name}_src),
    ruled AS (SELECT *, CASE {cases} END AS _bad FROM parsed),
    ranked AS (
        SELECT *, row_number() OVER (PARTITION BY _bad IS NULL, trim({spec.key}) ORDER BY {spec.latest_first}) AS _version
        FROM ruled
    )
    SELECT *, coalesce(_bad, CASE WHEN _version > 1 THEN '{SUPERSEDED}' END) AS _rule,
           CASE _bad {fields} END AS _field
    FROM ranked
    """  # noqa: S608


def table_name(source: str) -> str:
    """The Iceberg table holding the cleaned rows of ``source``: ``orders_<source>``."""
    if source not in SPECS:
        raise ValueError(f"unknown orders source {source!r}: expected one of {', '.join(SPECS)}")
    return f"{TABLE_PREFIX}{source}"


def _cleaned_sql(spec: SourceSpec) -> str:
    """The cleaned rows of ``<source>_ruled`` (kept, latest version of each key), ordered by the key."""
    return (
        f"SELECT {spec.output}, _file AS _source_file, _row AS _source_row, _ingested_at "  # noqa: S608
        f"FROM {spec.name}_ruled WHERE _rule IS NULL ORDER BY trim({spec.key})"
    )


def clean(
    con: duckdb.DuckDBPyConnection,
    result: CleanResult,
    cleaned_path: Path | None,
    quarantine_path: Path,
    *,
    tables: IcebergTables | None = None,
    properties: dict[str, str] | None = None,
) -> CleanResult:
    """Apply the rules to ``<source>_src`` (filled by ``load_files``); write the cleaned rows and the
    quarantined rows (with source_file, source_row, field, rule; for JSON the record; a Parquet file at
    ``quarantine_path``).

    With ``tables`` the cleaned rows replace EVERY row of the Iceberg table ``table_name(source)`` in one commit
    (``storage.iceberg.replace_all_rows``, unpartitioned: the cleaning rebuilds the source whole from raw, so a
    re-run gives the same rows and one more snapshot); ``properties`` go into the snapshot summary and
    ``result.commit`` says what the commit did. Without ``tables`` they go to the Parquet file ``cleaned_path``.
    """
    if tables is None and cleaned_path is None:
        raise ValueError("clean needs the Iceberg tables or a Parquet file for the cleaned rows")
    spec = SPECS[result.source]
    sql = _ruled_sql(spec)
    params = {"ctrl": CONTROL_CHARACTERS, "ctrl_id": CONTROL_CHARACTERS_IN_IDS, "earliest": EARLIEST_DATE, "end": END_DATE}
    con.execute(sql, {k: v for k, v in params.items() if re.search(rf"\${k}\b", sql)})  # the engine refuses unused ones
    counts = dict(con.execute(f"SELECT coalesce(_rule, ''), count(*) FROM {spec.name}_ruled GROUP BY 1").fetchall())  # noqa: S608
    result.rows_out = int(counts.pop("", 0))
    result.superseded = int(counts.pop(SUPERSEDED, 0))
    result.quarantined = {r.name: int(counts.pop(r.name, 0)) for r in spec.rules}
    if counts:  # a rule with no name in the spec: a bug
        raise AssertionError(f"{spec.name}: rows with an unknown rule: {counts}")
    if not result.reconciles:  # a bug, never bad data: every row is kept, quarantined or superseded
        raise AssertionError(f"{spec.name}: counts do not reconcile: {result.as_metadata()}")
    quarantine_path.parent.mkdir(parents=True, exist_ok=True)
    src_cols = ", ".join(spec.columns) + (", _record AS record" if spec.fmt == "json" else "")
    con.execute(
        f"COPY (SELECT {src_cols}, _file AS source_file, _row AS source_row, _field AS field, _rule AS rule "  # noqa: S608
        f"FROM {spec.name}_ruled WHERE _bad IS NOT NULL ORDER BY _file_seq, _row) TO ? (FORMAT parquet, COMPRESSION zstd)",
        [str(quarantine_path)],
    )
    if tables is not None:
        result.commit = _commit_cleaned(con, spec, tables, properties or {})
    else:
        assert cleaned_path is not None
        cleaned_path.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY ({_cleaned_sql(spec)}) TO ? (FORMAT parquet, COMPRESSION zstd)", [str(cleaned_path)])  # noqa: S608
    return result


def _commit_cleaned(
    con: duckdb.DuckDBPyConnection, spec: SourceSpec, tables: IcebergTables, properties: dict[str, str]
) -> IcebergCommit:
    """Replace every row of the source's Iceberg table with the cleaned rows of ``<source>_ruled``, in one commit,
    streamed from the engine ``ROWS_PER_PART`` rows at a time (each part's files written before the next)."""
    import pyarrow as pa

    from ecommerce_assets.storage.iceberg import replace_all_rows

    query = _cleaned_sql(spec)
    schema = con.execute(f"SELECT * FROM ({query}) LIMIT 0").to_arrow_table().schema  # noqa: S608

    def parts() -> Iterator[pa.Table]:
        reader = con.execute(query).to_arrow_reader(ROWS_PER_PART)
        for batch in reader:
            yield pa.Table.from_batches([batch])

    return replace_all_rows(
        tables, table_name(spec.name), schema, parts, properties={"ecommerce.source": spec.name, **properties}
    )


def clean_source(con: duckdb.DuckDBPyConnection, source: str, files: Sequence[SourceFile], cleaned_path: Path | None,
                 quarantine_path: Path, *, tables: IcebergTables | None = None,
                 properties: dict[str, str] | None = None) -> CleanResult:
    """``load_files`` then ``clean``: the whole cleaning of one source (into the Iceberg table with ``tables``)."""
    return clean(con, load_files(con, source, files), cleaned_path, quarantine_path, tables=tables,
                 properties=properties)
