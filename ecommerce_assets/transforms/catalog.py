"""Cleaning seller catalog pages: one page in, typed rows + quarantine out (no Dagster, Lambda-ready).

``clean_page(body, seller_id, snapshot_date, page=, source=)`` validates the envelope and turns each
product into the columns our users keep:

``asin, product_title, product_price, product_original_price, currency, product_star_rating,
product_num_ratings, product_url, product_photo, product_num_offers, is_best_seller, is_prime,
sales_volume, delivery, has_variations`` + ``seller_id``, ``snapshot_date`` + ``product_gtin`` (our one
addition: the product's UPC/EAN/GTIN as a validated GTIN-14 when the answer carries one, for matching).

Rules (stated, and tested):

* Page: not JSON -> ``malformed_json``; not ``{"status": "OK", "data": {...}}`` -> ``bad_envelope``;
  ``data.products`` missing or not a list -> ``missing_products``. A bad page is quarantined whole.
* Product: not an object -> ``not_an_object``; no ASIN -> ``missing_asin``; an ASIN that is not 10
  letters/digits -> ``invalid_asin``. These rows are quarantined; the page's other rows go on.
* Prices: ``"$1,299.99"`` -> 1299.99 (currency symbol/code and thousands separators dropped). A range
  ``"$10.99 - $15.99"`` -> its LOWER bound (the price a buyer sees first; conservative for margins).
  Missing/null/blank -> NULL, never 0. Anything else -> NULL and a ``unparseable_price`` issue
  (the row is kept; the issue names file, row and field).
* Rating: ``"4.5"`` -> DECIMAL(2,1) in [0, 5]; otherwise NULL (+ ``unparseable_rating`` when present).
* Counts: integers (``"1,234"`` accepted); booleans: JSON booleans or ``"true"/"false"``.
* Dedupe (per seller snapshot, in ``build_snapshot``): one row per ASIN; the kept row is the first
  occurrence by page and position among those with a price, else the first occurrence.

Counts reconcile: products in = rows out + quarantined rows + ``duplicate_asin`` removals.

The cleaned snapshots are the Iceberg table ``catalog_snapshots`` (``TABLE``), identity-partitioned by
``seller_id`` and ``snapshot_date``: ``commit_snapshot`` replaces one seller/date partition in one commit.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecommerce_assets.transforms import matching
from ecommerce_assets.transforms.files import (
    ENGINE_MAX_LINE_SIZE,
    BadFileError,
    engine_file,
    open_csv,
    parquet_bytes,
    standardize_column,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from ecommerce_assets.storage.iceberg import IcebergCommit, IcebergTables

KEPT_COLUMNS = [
    "asin", "product_title", "product_price", "product_original_price", "currency", "product_star_rating",
    "product_num_ratings", "product_url", "product_photo", "product_num_offers", "is_best_seller", "is_prime",
    "sales_volume", "delivery", "has_variations",
]
OUTPUT_COLUMNS = [*KEPT_COLUMNS, "seller_id", "snapshot_date", "product_gtin"]
TABLE = "catalog_snapshots"  # the Iceberg table of the cleaned seller snapshots (files in processed/catalog_snapshots/)
PARTITION_BY = ("seller_id", "snapshot_date")  # identity partitions: one per seller and snapshot date


@functools.cache
def _schema() -> pa.Schema:
    """``SCHEMA``: the output columns' Arrow types (built on first use, so that importing this module does not
    import pyarrow)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("asin", pa.string()),
            ("product_title", pa.string()),
            ("product_price", pa.decimal128(12, 2)),
            ("product_original_price", pa.decimal128(12, 2)),
            ("currency", pa.string()),
            ("product_star_rating", pa.decimal128(2, 1)),
            ("product_num_ratings", pa.int64()),
            ("product_url", pa.string()),
            ("product_photo", pa.string()),
            ("product_num_offers", pa.int32()),
            ("is_best_seller", pa.bool_()),
            ("is_prime", pa.bool_()),
            ("sales_volume", pa.string()),
            ("delivery", pa.string()),
            ("has_variations", pa.bool_()),
            ("seller_id", pa.string()),
            ("snapshot_date", pa.date32()),
            ("product_gtin", pa.string()),
        ]
    )


@functools.cache
def _source_schema() -> pa.Schema:
    """``SOURCE_SCHEMA``: ``SCHEMA`` plus where each row came from, used to dedupe (not written to the
    outputs)."""
    import pyarrow as pa

    return _schema().append(pa.field("source_page", pa.int32())).append(
        pa.field("source_position", pa.int32())
    )


def __getattr__(name: str) -> Any:
    """The module's Arrow schemas ``SCHEMA`` and ``SOURCE_SCHEMA``, built on first access (PEP 562)."""
    if name == "SCHEMA":
        return _schema()
    if name == "SOURCE_SCHEMA":
        return _source_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PAGE_RULES = {
    "malformed_json": "the page is not valid JSON",
    "bad_envelope": 'the page is not {"status": "OK", "data": {...}}',
    "missing_products": "data.products is missing or not a list",
}
ROW_RULES = {
    "not_an_object": "a product is not a JSON object",
    "missing_asin": "a product has no asin",
    "invalid_asin": "asin is not 10 letters/digits",
}
FIELD_RULES = {
    "unparseable_price": "a price that is not $N, $N,NNN.NN or a range; kept as NULL",
    "unparseable_rating": "a star rating that is not a number in [0, 5]; kept as NULL",
    "unparseable_count": "a count that is not a whole number; kept as NULL",
    "invalid_gtin": "a UPC/EAN/GTIN with a bad length or check digit; kept as NULL",
}
REMOVAL_RULES = {"duplicate_asin": "the same ASIN again in one seller snapshot (first priced occurrence kept)"}

_ASIN = re.compile(r"^[A-Z0-9]{10}$")
_AMOUNT = re.compile(r"^(?:[A-Z]{3}\s*)?[$€£]?\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d{1,2})?$")
_RANGE = re.compile(r"\s+[-–]\s+|\s*[–]\s*")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Issue:
    """A machine-readable reason: which file, row (1-based product position) and field broke which rule."""

    file: str
    row: int | None
    field: str | None
    rule: str
    problem: str
    value: str | None = None


@dataclass
class PageResult:
    """The outcome of cleaning one page."""

    source: str
    seller_id: str
    snapshot_date: dt.date
    page: int | None
    total_products: int | None = None
    products_in: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[Issue] = field(default_factory=list)  # rows removed
    field_issues: list[Issue] = field(default_factory=list)  # rows kept, one field nulled
    page_error: Issue | None = None

    @property
    def ok(self) -> bool:
        return self.page_error is None

    def table(self) -> pa.Table:
        """The kept rows as Arrow (``SOURCE_SCHEMA``: the output columns + source page/position)."""
        import pyarrow as pa

        return pa.Table.from_pylist(self.rows, schema=_source_schema())

    def issues(self) -> list[dict[str, Any]]:
        """Every issue of the page as plain dicts (the quarantine reason file)."""
        found = ([self.page_error] if self.page_error else []) + self.quarantined + self.field_issues
        return [asdict(i) for i in found]


def parse_price(value: Any) -> tuple[Decimal | None, bool]:
    """(price, ok): ``"$1,299.99"`` -> 1299.99; a range -> its lower bound; null/blank -> (None, True)."""
    if value is None:
        return None, True
    if isinstance(value, bool):
        return None, False
    if isinstance(value, int | float):
        return (Decimal(str(value)).quantize(_CENT, ROUND_HALF_UP), True) if value >= 0 else (None, False)
    if not isinstance(value, str):
        return None, False
    text = value.strip()
    if not text:
        return None, True
    parts = _RANGE.split(text)
    if len(parts) > 2:
        return None, False
    amounts = []
    for part in parts:
        m = _AMOUNT.match(part.strip().upper())
        if not m:
            return None, False
        amounts.append(Decimal(m.group(1).replace(",", "") + (m.group(2) or "")))
    return min(amounts).quantize(_CENT, ROUND_HALF_UP), True


def parse_rating(value: Any) -> tuple[Decimal | None, bool]:
    """(rating, ok) as DECIMAL(2,1) in [0, 5]; null/blank -> (None, True)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, True
    if isinstance(value, bool):
        return None, False
    try:
        rating = Decimal(str(value).strip()).quantize(Decimal("0.1"), ROUND_HALF_UP)
    except InvalidOperation:
        return None, False
    return (rating, True) if Decimal(0) <= rating <= Decimal(5) else (None, False)


def parse_count(value: Any) -> tuple[int | None, bool]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, True
    if isinstance(value, bool):
        return None, False
    if isinstance(value, int):
        return value, True
    if isinstance(value, float) and value.is_integer():
        return int(value), True
    if isinstance(value, str) and re.fullmatch(r"\d{1,3}(,\d{3})+|\d+", value.strip()):
        return int(value.strip().replace(",", "")), True
    return None, False


def parse_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def gtin14(code: Any) -> str | None:
    """A UPC-A (12), EAN-13, EAN-8 or GTIN-14 code as a GTIN-14 string, or None if the check digit fails.

    The same rule as the SQL macro ``gtin14`` in ``transforms.matching`` (the tests hold them together).
    """
    if code is None:
        return None
    digits = re.sub(r"[^0-9]", "", str(code))
    if len(digits) not in (8, 12, 13, 14) or set(digits) == {"0"}:
        return None
    padded = digits.zfill(14)
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(padded[:13]))
    return padded if (10 - total % 10) % 10 == int(padded[13]) else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def clean_page(
    body: bytes, seller_id: str, snapshot_date: dt.date | str, *, page: int | None = None, source: str = "(page)"
) -> PageResult:
    """Validate one page's envelope and clean its products (see the module docstring for the rules)."""
    date = dt.date.fromisoformat(snapshot_date) if isinstance(snapshot_date, str) else snapshot_date
    result = PageResult(source=source, seller_id=seller_id, snapshot_date=date, page=page)
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        result.page_error = Issue(source, None, None, "malformed_json", f"not valid JSON: {exc}")
        return result
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or str(doc.get("status", "")).upper() != "OK" or not isinstance(data, dict):
        status = doc.get("status") if isinstance(doc, dict) else type(doc).__name__
        result.page_error = Issue(source, None, "status", "bad_envelope", f"envelope status={status!r} or no data object")
        return result
    products = data.get("products")
    total, _ = parse_count(data.get("total_products"))
    result.total_products = total
    if not isinstance(products, list):
        result.page_error = Issue(source, None, "data.products", "missing_products", "data.products is missing or not a list")
        return result
    result.products_in = len(products)
    for position, product in enumerate(products, start=1):
        if not isinstance(product, dict):
            result.quarantined.append(Issue(source, position, None, "not_an_object", f"a {type(product).__name__}"))
            continue
        asin = _text(product.get("asin"))
        if asin is None:
            result.quarantined.append(Issue(source, position, "asin", "missing_asin", "no asin"))
            continue
        asin = asin.upper()
        if not _ASIN.match(asin):
            result.quarantined.append(Issue(source, position, "asin", "invalid_asin", "not 10 letters/digits", asin[:40]))
            continue
        row: dict[str, Any] = {"asin": asin}

        def issue(field_name: str, rule: str, value: Any, position: int = position) -> None:
            result.field_issues.append(Issue(source, position, field_name, rule, FIELD_RULES[rule], str(value)[:80]))

        for name in ("product_price", "product_original_price"):
            row[name], ok = parse_price(product.get(name))
            if not ok:
                issue(name, "unparseable_price", product.get(name))
        row["product_star_rating"], ok = parse_rating(product.get("product_star_rating"))
        if not ok:
            issue("product_star_rating", "unparseable_rating", product.get("product_star_rating"))
        for name in ("product_num_ratings", "product_num_offers"):
            row[name], ok = parse_count(product.get(name))
            if not ok:
                issue(name, "unparseable_count", product.get(name))
        for name in ("product_title", "currency", "product_url", "product_photo", "sales_volume", "delivery"):
            row[name] = _text(product.get(name))
        for name in ("is_best_seller", "is_prime", "has_variations"):
            row[name] = parse_bool(product.get(name))
        code = next((product[k] for k in ("gtin", "upc", "ean") if _text(product.get(k))), None)
        row["product_gtin"] = gtin14(code)
        if code is not None and row["product_gtin"] is None:
            issue("product_gtin", "invalid_gtin", code)
        row.update(seller_id=seller_id, snapshot_date=date, source_page=page, source_position=position)
        result.rows.append(row)
    return result


def empty_table() -> pa.Table:
    return _source_schema().empty_table()


def to_csv_bytes(table: pa.Table) -> bytes:
    """CSV that Redshift ``COPY ... FORMAT CSV IGNOREHEADER 1`` loads: header row, NULL as an empty field."""
    import pyarrow.csv as pacsv

    table = table.select([c for c in OUTPUT_COLUMNS if c in table.column_names])
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=True, quoting_style="needed"))
    return buf.getvalue()


def to_parquet_bytes(table: pa.Table) -> bytes:
    """The output columns of ``table`` as one Parquet file."""
    return parquet_bytes(table.select([c for c in OUTPUT_COLUMNS if c in table.column_names]))


# --- one seller snapshot (all its pages) ----------------------------------------------------------------


@dataclass
class SnapshotResult:
    seller_id: str
    snapshot_date: dt.date
    pages: int
    bad_pages: int
    total_products: int | None  # what the API said
    products_in: int  # products on readable pages
    rows_out: int
    quarantined_rows: int
    removed: dict[str, int]
    field_issues: dict[str, int]
    issues: list[dict[str, Any]]
    duplicate_asins_after_dedupe: int
    table: pa.Table | None = None  # the snapshot's rows (``SCHEMA``), one per ASIN

    @property
    def reconciles(self) -> bool:
        return self.products_in == self.rows_out + self.quarantined_rows + sum(self.removed.values())

    def partition(self) -> dict[str, Any]:
        """The snapshot's partition of ``TABLE``: ``{"seller_id": ..., "snapshot_date": ...}``."""
        return {"seller_id": self.seller_id, "snapshot_date": self.snapshot_date}


_DEDUPE_SQL = """
SELECT {cols} FROM (
    SELECT *, row_number() OVER (
        PARTITION BY seller_id, snapshot_date, asin
        ORDER BY (product_price IS NULL), source_page NULLS LAST, source_position) AS _n
    FROM snap_src
) WHERE _n = 1
ORDER BY source_page NULLS LAST, source_position
"""


def build_snapshot(
    con: Any, results: list[PageResult], csv_uri: str | None = None, parquet_uri: str | None = None
) -> SnapshotResult:
    """Dedupe the pages' rows by ASIN with DuckDB; the rows are ``SnapshotResult.table`` (``SCHEMA``).

    ``con`` is a DuckDB connection (``lake.engine()``). When given, the rows are also written as CSV to ``csv_uri``
    (``write_csv``) and as one Parquet file to ``parquet_uri``; the URIs may be local paths or ``s3://``. The
    asset commits the rows to the Iceberg table instead of a Parquet file (``commit_snapshot``).
    """
    import pyarrow as pa

    if not results:
        raise ValueError("build_snapshot needs at least one page")
    tables = [r.table() for r in results if r.ok]
    snap_src = pa.concat_tables(tables) if tables else empty_table()  # noqa: F841 - read by DuckDB below
    con.register("snap_src", snap_src)
    try:
        sql = _DEDUPE_SQL.format(cols=", ".join(OUTPUT_COLUMNS))
        out = con.execute(sql).to_arrow_table().cast(_schema())  # noqa: S608 - column names are constants
    finally:
        con.unregister("snap_src")
    if csv_uri is not None:
        write_csv(con, out, csv_uri)
    if parquet_uri is not None:
        con.register("snap_out", out)
        try:
            con.execute("COPY snap_out TO ? (FORMAT parquet, COMPRESSION zstd)", [parquet_uri])
        finally:
            con.unregister("snap_out")
    rows_out = out.num_rows
    kept = sum(len(r.rows) for r in results)
    field_counts: dict[str, int] = {}
    for r in results:
        for i in r.field_issues:
            field_counts[i.rule] = field_counts.get(i.rule, 0) + 1
    totals = [r.total_products for r in results if r.total_products is not None]
    return SnapshotResult(
        seller_id=results[0].seller_id,
        snapshot_date=results[0].snapshot_date,
        pages=len(results),
        bad_pages=sum(1 for r in results if not r.ok),
        total_products=max(totals) if totals else None,
        products_in=sum(r.products_in for r in results),
        rows_out=rows_out,
        quarantined_rows=sum(len(r.quarantined) for r in results),
        removed={"duplicate_asin": kept - rows_out},
        field_issues=field_counts,
        issues=[i for r in results for i in r.issues()],
        duplicate_asins_after_dedupe=duplicate_asins(out),
        table=out,
    )


def duplicate_asins(table: pa.Table) -> int:
    """Rows of ``table`` whose ASIN an earlier row already has (0 for a snapshot deduped by ASIN)."""
    return table.num_rows - len(set(table.column("asin").to_pylist()))


def write_csv(con: Any, table: pa.Table, csv_uri: str) -> None:
    """The snapshot's rows as CSV at ``csv_uri`` (header row, NULL as an empty field: what Redshift
    ``COPY ... FORMAT CSV IGNOREHEADER 1 EMPTYASNULL`` loads), with DuckDB (``con``: ``lake.engine()``)."""
    con.register("snap_csv", table.select(OUTPUT_COLUMNS))
    try:
        con.execute("COPY snap_csv TO ? (FORMAT csv, HEADER true)", [csv_uri])
    finally:
        con.unregister("snap_csv")


def commit_snapshot(
    tables: IcebergTables, snapshot: SnapshotResult, properties: dict[str, str] | None = None
) -> IcebergCommit:
    """Replace the snapshot's seller/date partition of ``TABLE`` with its rows, in ONE commit.

    The table is created (``SCHEMA``, partitioned by ``PARTITION_BY``) when it does not exist. A snapshot with no
    row empties its partition; the other partitions are untouched. Re-running gives the same rows (one more
    commit). ``properties`` go into the snapshot summary (e.g. the run id).
    """
    if snapshot.table is None:
        raise ValueError("commit_snapshot needs the rows of build_snapshot")
    tables.ensure_table(TABLE, _schema(), PARTITION_BY)
    part = snapshot.partition()
    label = f"seller_id={part['seller_id']},snapshot_date={part['snapshot_date'].isoformat()}"
    return tables.write(
        TABLE,
        snapshot.table,
        partition_values=[part],
        properties={"ecommerce.partition": label, **(properties or {})},
    )


def expected_pages(total_products: int | None, page_size: int = 48) -> int | None:
    """Pages that should hold products for ``total_products`` (ceil division), or None if unknown."""
    if total_products is None:
        return None
    return -(-total_products // page_size)


# --- the distributor inventory: landed CSVs -> typed rows + quarantine -----------------------------------


@dataclass(frozen=True)
class DistributorFile:
    """One landed distributor CSV: its lake key (its name in quarantine), a local file with its bytes, and its
    arrival time (for a SKU in several files the newest file's row wins)."""

    key: str
    path: Path
    mtime: float


DISTRIBUTOR_RULES: dict[str, str] = {
    **matching.INVENTORY_RULES,
    "control_character": "a control or bidirectional-override character (NUL, ESC, U+202E...) in a field",
}
# a character no field may hold (SQL regex): C0 controls but tab/LF/CR, DEL, C1, bidi embeddings/overrides/isolates
CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x{9f}\x{202a}-\x{202e}\x{2066}-\x{2069}]"
# in the codes (sku, asin, upc, ean, gtin) and the numbers a tab or a line break is a control character too
CONTROL_CHARACTERS_IN_CODES = CONTROL_CHARACTERS[:-1] + r"\t\r\n]"
_TEXT_COLUMNS = ("title", "brand")


@dataclass
class InventoryResult:
    """What reading and cleaning the distributor files did; rows in = out + quarantined + superseded."""

    files_in: int
    rows_in: int = 0
    rows_out: int = 0
    removed: dict[str, int] = field(default_factory=dict)  # quarantined rows per rule
    superseded: int = 0  # older rows of a SKU (another file or row wins)
    invalid_gtin: int = 0  # rows kept whose UPC/EAN/GTIN is ignored (bad length or check digit)
    rejected_files: list[BadFileError] = field(default_factory=list)

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.rows_out + sum(self.removed.values()) + self.superseded


def load_distributor_files(con: Any, files: Sequence[DistributorFile]) -> InventoryResult:
    """Read every distributor CSV (all text) into the temp table ``inv_src`` (the inventory columns, NULL where
    a file lacks one, + ``_file``, ``_row``, ``_mtime``). A file that cannot be read as CSV with the required
    columns (``open_csv``'s rules, or the engine refusing it: ``unreadable_csv``) is rejected whole into
    ``InventoryResult.rejected_files`` and the others go on. Of two columns with the same standardized name
    the first is read."""
    import duckdb

    matching.install_macros(con)
    cols = matching.DISTRIBUTOR_COLUMNS + matching.ID_COLUMNS
    con.execute("CREATE OR REPLACE TEMP TABLE inv_src (" + ", ".join(f"{c} VARCHAR" for c in cols)
                + ", _file VARCHAR, _row BIGINT, _mtime DOUBLE)")
    result = InventoryResult(files_in=len(files))
    con.execute("SET preserve_insertion_order = true")  # row_number() = the row's position in its file
    try:
        for f in files:
            try:
                text_file = open_csv(f.path, required=matching.DISTRIBUTOR_COLUMNS)
            except BadFileError as exc:  # named by its lake key, not the local copy
                result.rejected_files.append(BadFileError(f.key, exc.problem, exc.rule))
                continue
            names = [standardize_column(h) or f"column{i}" for i, h in enumerate(text_file.header)]
            names = [n if names.index(n) == i else f"{n}_{i}" for i, n in enumerate(names)]  # the first wins
            select = ", ".join(c if c in names else "CAST(NULL AS VARCHAR)" for c in cols)
            sql = (
                f"INSERT INTO inv_src SELECT {select}, ?, row_number() OVER (), ? "  # noqa: S608 - known names
                "FROM read_csv(?, header = true, names = ?, all_varchar = true, encoding = ?, delim = ',', "
                "quote = '\"', escape = '\"', strict_mode = false, null_padding = true, max_line_size = ?, "
                "parallel = ?)"
            )
            try:
                with engine_file(text_file) as (path, encoding):
                    params = [f.key, f.mtime, str(path), names, encoding, ENGINE_MAX_LINE_SIZE]
                    try:
                        con.execute(sql, [*params, True])
                    except (duckdb.OutOfMemoryException, duckdb.InterruptException):
                        raise
                    except duckdb.Error:  # the parallel reader cannot pad rows of a file with quoted line breaks
                        con.execute(sql, [*params, False])
            except (duckdb.OutOfMemoryException, duckdb.InterruptException):
                raise  # the engine's limits, not the file's fault
            except duckdb.Error as exc:
                first = str(exc).split("\n", 1)[0][:300]  # the engine's next lines quote the file's content
                result.rejected_files.append(
                    BadFileError(f.key, f"the engine cannot read it as CSV: {first}", "unreadable_csv")
                )
    finally:
        con.execute("SET preserve_insertion_order = false")
    result.rows_in = int(con.execute("SELECT count(*) FROM inv_src").fetchone()[0])
    return result


_CODE_COLUMNS = ("sku", "cost", "quantity_available", *matching.ID_COLUMNS)
_DISTRIBUTOR_CONTROL = (
    "UPDATE inv_ruled SET _rule = 'control_character', _ctrl_field = CASE "  # noqa: S608 - constant names
    + " ".join(f"WHEN regexp_matches({c}, $codes) THEN '{c}'" for c in _CODE_COLUMNS)
    + " " + " ".join(f"WHEN regexp_matches({c}, $text) THEN '{c}'" for c in _TEXT_COLUMNS)
    + " END WHERE _rule IS NULL AND ("
    + " OR ".join([*(f"regexp_matches({c}, $codes)" for c in _CODE_COLUMNS),
                   *(f"regexp_matches({c}, $text)" for c in _TEXT_COLUMNS)])
    + ")"
)
# a line break or tab inside a quoted title or brand is layout, not data: a space (before the rules run)
_DISTRIBUTOR_LAYOUT = (
    "UPDATE inv_src SET "  # noqa: S608 - constant names
    + ", ".join(f"{c} = regexp_replace({c}, '[\\t\\r\\n]+', ' ', 'g')" for c in _TEXT_COLUMNS)
    + " WHERE " + " OR ".join(f"regexp_matches({c}, '[\\t\\r\\n]')" for c in _TEXT_COLUMNS)
)

_DISTRIBUTOR_QUARANTINE = """
SELECT sku, title, brand, cost, quantity_available, _file AS source_file, _row AS source_row, _rule AS rule,
       coalesce(_ctrl_field, regexp_replace(_rule, '^(null|unparseable)_', '')) AS field
FROM inv_ruled WHERE _rule IS NOT NULL
ORDER BY _file, _row
"""


def clean_distributor(con: Any, result: InventoryResult, inventory_uri: str, quarantine_uri: str) -> InventoryResult:
    """Apply the inventory rules (``matching.INVENTORY_RULED``, then ``control_character``) to ``inv_src``;
    write the inventory (``matching.INVENTORY_CLEAN``: one row per SKU, the newest file's) to
    ``inventory_uri`` and, when a row was removed, the quarantined rows (source_file, source_row, field,
    rule) to ``quarantine_uri``. Title and brand keep their text (a leading ``=`` is data); line breaks and
    tabs in them become spaces."""
    con.execute(_DISTRIBUTOR_LAYOUT)
    con.execute(matching.INVENTORY_RULED)
    con.execute("ALTER TABLE inv_ruled ADD COLUMN _ctrl_field VARCHAR")
    con.execute(_DISTRIBUTOR_CONTROL, {"codes": CONTROL_CHARACTERS_IN_CODES, "text": CONTROL_CHARACTERS})
    con.execute(f"CREATE OR REPLACE TEMP TABLE inv_out AS {matching.INVENTORY_CLEAN}")  # noqa: S608
    con.execute("COPY inv_out TO ? (FORMAT parquet, COMPRESSION zstd)", [inventory_uri])
    counts = dict(con.execute("SELECT _rule, count(*) FROM inv_ruled WHERE _rule IS NOT NULL GROUP BY 1").fetchall())
    result.removed = {rule: int(counts.get(rule, 0)) for rule in DISTRIBUTOR_RULES}
    if counts:
        con.execute(f"COPY ({_DISTRIBUTOR_QUARANTINE}) TO ? (FORMAT parquet)", [quarantine_uri])  # noqa: S608
    result.rows_out = int(con.execute("SELECT count(*) FROM inv_out").fetchone()[0])
    result.invalid_gtin = int(con.execute("SELECT count(*) FROM inv_out WHERE gtin_invalid").fetchone()[0])
    result.superseded = result.rows_in - result.rows_out - sum(result.removed.values())
    return result


# gold.amazon_data: for each seller and ASIN, the row of the latest snapshot that listed it (parameter: the
# Parquet data files of the seller's partitions of the Iceberg table ``TABLE``, ``IcebergTables.data_files``).
LATEST_SNAPSHOT_SQL = """
SELECT * EXCLUDE (_n) FROM (
    SELECT *, row_number() OVER (PARTITION BY seller_id, asin ORDER BY snapshot_date DESC) AS _n
    FROM read_parquet(?, union_by_name = true)
) WHERE _n = 1 ORDER BY asin
"""

# Availability per snapshot date: every ASIN the seller ever listed, on every snapshot date since it first
# appeared: listed or not, its price then, and the change from the previous snapshot.
HISTORY_SQL = """
WITH snaps AS (SELECT * FROM read_parquet(?, union_by_name = true)),
dates AS (SELECT DISTINCT snapshot_date FROM snaps),
firsts AS (SELECT asin, min(snapshot_date) AS first_seen FROM snaps GROUP BY asin),
grid AS (SELECT f.asin, d.snapshot_date FROM firsts f JOIN dates d ON d.snapshot_date >= f.first_seen),
joined AS (
    SELECT ? AS seller_id, g.asin, g.snapshot_date, s.asin IS NOT NULL AS listed,
           s.product_price, s.product_num_offers, s.is_prime, s.sales_volume, s.delivery
    FROM grid g LEFT JOIN snaps s ON s.asin = g.asin AND s.snapshot_date = g.snapshot_date
)
SELECT *,
    lag(product_price) OVER w AS previous_price,
    product_price - lag(product_price) OVER w AS price_change,
    CASE WHEN lag(listed) OVER w IS NULL THEN 'new'
         WHEN listed AND NOT lag(listed) OVER w THEN 'relisted'
         WHEN NOT listed AND lag(listed) OVER w THEN 'delisted'
         WHEN listed THEN 'listed' ELSE 'not_listed' END AS availability_change
FROM joined
WINDOW w AS (PARTITION BY asin ORDER BY snapshot_date)
ORDER BY asin, snapshot_date
"""
