"""Orders ELT: landed orders.csv / customers.json / products.csv and the products API JSON -> cleaned Parquet.

Every source is read as text by DuckDB (IDs stay TEXT: ``O1001`` is never cast to a number), then typed
and ruled in SQL. The rules, applied in this order (the first that matches names the row's rule):

* file level: a file that is empty, not CSV/JSON, or lacks a required column is rejected whole
  (``BadFileError``; the asset moves it to ``quarantine/<source>/files/`` with the reason);
* ``null_<key>``: a blank business key (or a blank required field);
* ``unparseable_<field>``: a value that does not parse (order_date not ``YYYY-MM-DD``, quantity not a
  whole number, amount/price not a decimal, updated_at not a timestamp, email without ``@``);
* ``superseded``: an older version of a business key. Latest wins: for orders the highest
  ``updated_at`` (a version without ``updated_at`` loses to one with it), then the later file, then the
  later row; for customers, products and API products the later file, then the later row. Files are
  ordered by their raw key (``raw/<source>/date=YYYY-MM-DD/<arrival stamp>-<name>``: date, then arrival).

Rows of the first two kinds go to quarantine with (source_file, source_row, field, rule); superseded
rows are counted, not quarantined. So rows in = rows out + quarantined + superseded (``CleanResult``).
Emails are trimmed and lower-cased; API fields are renamed ``id -> product_id``, ``title ->
product_name``, ``image -> image_url``, ``rating.rate/count -> rating_rate/rating_count``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ecommerce_assets.transforms.files import BadFileError, open_csv, standardize_column


@dataclass(frozen=True)
class SourceFile:
    """One registered raw file: its lake key (the label in quarantine), a local path and its arrival time."""

    key: str
    path: Path
    ingested_at: str  # ISO timestamp (UTC) of the file's arrival


@dataclass(frozen=True)
class SourceSpec:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    key: str
    parsed: str  # extra typed columns computed from the text columns
    rules: tuple[tuple[str, str, str], ...]  # (rule, field, SQL condition)
    latest_first: str  # ORDER BY of the versions of one key, latest first
    output: str  # SELECT list of the cleaned table

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


def _blank(col: str) -> str:
    return f"nullif(trim({col}), '') IS NULL"


ORDERS = SourceSpec(
    name="orders",
    required=("order_id", "customer_id", "product_id", "order_date", "quantity", "amount"),
    optional=("status", "updated_at"),
    key="order_id",
    parsed="""
        TRY_CAST(trim(order_date) AS DATE) AS _order_date,
        CASE WHEN regexp_matches(trim(quantity), '^[+-]?[0-9]+$') THEN TRY_CAST(trim(quantity) AS BIGINT) END AS _quantity,
        TRY_CAST(trim(amount) AS DECIMAL(18, 2)) AS _amount,
        TRY_CAST(nullif(trim(updated_at), '') AS TIMESTAMP) AS _updated_at
    """,
    rules=(
        ("null_order_id", "order_id", _blank("order_id")),
        ("null_customer_id", "customer_id", _blank("customer_id")),
        ("null_product_id", "product_id", _blank("product_id")),
        ("null_order_date", "order_date", _blank("order_date")),
        ("null_quantity", "quantity", _blank("quantity")),
        ("null_amount", "amount", _blank("amount")),
        ("unparseable_order_date", "order_date", "_order_date IS NULL"),
        ("unparseable_quantity", "quantity", "_quantity IS NULL"),
        ("unparseable_amount", "amount", "_amount IS NULL"),
        ("unparseable_updated_at", "updated_at", "nullif(trim(updated_at), '') IS NOT NULL AND _updated_at IS NULL"),
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
    required=("customer_id", "customer_name", "email", "city"),
    optional=(),
    key="customer_id",
    parsed="lower(nullif(trim(email), '')) AS _email",
    rules=(
        ("null_customer_id", "customer_id", _blank("customer_id")),
        ("unparseable_email", "email", "_email IS NOT NULL AND NOT regexp_matches(_email, '^[^@\\s]+@[^@\\s]+$')"),
    ),
    latest_first="_file_seq DESC, _row DESC",
    output="""
        trim(customer_id) AS customer_id, nullif(trim(customer_name), '') AS customer_name,
        _email AS email, nullif(trim(city), '') AS city
    """,
)

PRODUCTS = SourceSpec(
    name="products",
    required=("product_id", "product_name", "category", "price"),
    optional=(),
    key="product_id",
    parsed="TRY_CAST(trim(price) AS DECIMAL(18, 2)) AS _price",
    rules=(
        ("null_product_id", "product_id", _blank("product_id")),
        ("null_price", "price", _blank("price")),
        ("unparseable_price", "price", "_price IS NULL"),
    ),
    latest_first="_file_seq DESC, _row DESC",
    output="""
        trim(product_id) AS product_id, nullif(trim(product_name), '') AS product_name,
        nullif(trim(category), '') AS category, _price AS price
    """,
)

API_PRODUCTS = SourceSpec(
    name="api_products",
    required=("id", "title", "price"),
    optional=("description", "category", "image", "rating_rate", "rating_count"),
    key="id",
    parsed="""
        TRY_CAST(trim(price) AS DECIMAL(18, 2)) AS _price,
        TRY_CAST(rating_rate AS DOUBLE) AS _rating_rate,
        TRY_CAST(rating_count AS BIGINT) AS _rating_count
    """,
    rules=(
        ("null_id", "id", _blank("id")),
        ("null_title", "title", _blank("title")),
        ("null_price", "price", _blank("price")),
        ("unparseable_price", "price", "_price IS NULL"),
        ("negative_price", "price", "_price < 0"),
        ("unparseable_rating", "rating", "(rating_rate IS NOT NULL AND _rating_rate IS NULL) "
                                         "OR (rating_count IS NOT NULL AND _rating_count IS NULL)"),
    ),
    latest_first="_file_seq DESC, _row DESC",
    output="""
        trim(id) AS product_id, trim(title) AS product_name, nullif(trim(description), '') AS description,
        nullif(trim(category), '') AS category, _price AS price, nullif(trim(image), '') AS image_url,
        _rating_rate AS rating_rate, _rating_count AS rating_count
    """,
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
        }


def _qi(name: str) -> str:
    """Quote a column name found in a landed file's header (identifiers cannot be bound)."""
    return '"' + name.replace('"', '""') + '"'


def _create_src(con: duckdb.DuckDBPyConnection, spec: SourceSpec) -> None:
    cols = ", ".join(f"{c} VARCHAR" for c in spec.columns)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {spec.name}_src ({cols}, _file VARCHAR, _row BIGINT, "
        "_file_seq INTEGER, _ingested_at TIMESTAMP)"
    )


def _insert_csv(con: duckdb.DuckDBPyConnection, spec: SourceSpec, f: SourceFile, seq: int) -> None:
    try:
        tf = open_csv(f.path, list(spec.required))
    except BadFileError as exc:  # name the file by its lake key, not the local copy
        raise BadFileError(f.key, exc.problem, exc.rule) from exc
    by_std = {standardize_column(h): h for h in tf.header}
    select = ", ".join(
        f"{_qi(by_std[c])}" if c in by_std else "CAST(NULL AS VARCHAR)" for c in spec.columns
    )
    try:
        con.execute(
            f"INSERT INTO {spec.name}_src SELECT {select}, ?, row_number() OVER (), ?, CAST(? AS TIMESTAMP) "  # noqa: S608
            "FROM read_csv(?, header = true, all_varchar = true, encoding = ?, quote = '\"', escape = '\"', "
            "strict_mode = false, null_padding = true)",
            [f.key, seq, f.ingested_at, str(f.path), tf.encoding],
        )
    except duckdb.Error as exc:
        raise BadFileError(f.key, f"not a readable CSV file: {str(exc).splitlines()[0]}", "not_csv") from exc


def _json_format(path: Path, key: str) -> str:
    """``array`` for a JSON array, ``newline_delimited`` for JSON lines; else ``BadFileError``."""
    if not path.is_file() or path.stat().st_size == 0:
        raise BadFileError(key, "empty file", "empty_file")
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] == b"[":
        return "array"
    if head[:1] == b"{":
        return "newline_delimited"
    raise BadFileError(key, f"not JSON: expected a JSON array or JSON lines of objects; starts with {head[:30]!r}",
                       "not_json")


def _insert_json(con: duckdb.DuckDBPyConnection, spec: SourceSpec, f: SourceFile, seq: int,
                 flatten_rating: bool = False) -> None:
    fmt = _json_format(f.path, f.key)
    try:
        found = {r[0] for r in con.execute("DESCRIBE SELECT * FROM read_json(?, format = ?)", [str(f.path), fmt]).fetchall()}
    except duckdb.Error as exc:
        raise BadFileError(f.key, f"not valid JSON: {str(exc).splitlines()[0]}", "not_json") from exc
    missing = [c for c in spec.required if c not in found]
    if missing:
        raise BadFileError(
            f.key, f"missing field(s): expected {', '.join(spec.required)}; missing {', '.join(missing)}; "
            f"found {', '.join(sorted(found)[:12]) or '(none)'}", "missing_column",
        )
    names = [c for c in spec.columns if not c.startswith("rating_")]
    types = {c: "VARCHAR" for c in names}
    if flatten_rating:
        types["rating"] = "STRUCT(rate VARCHAR, count VARCHAR)" if "rating" in found else "VARCHAR"
    columns_sql = "{" + ", ".join(f"'{c}': '{t}'" for c, t in types.items()) + "}"
    select = ", ".join(_qi(c) for c in names)
    if flatten_rating:
        select += (", rating.rate, rating.count" if "rating" in found
                   else ", CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR)")
    try:
        con.execute(
            f"INSERT INTO {spec.name}_src SELECT {select}, ?, row_number() OVER (), ?, CAST(? AS TIMESTAMP) "  # noqa: S608
            f"FROM read_json(?, format = ?, columns = {columns_sql})",
            [f.key, seq, f.ingested_at, str(f.path), fmt],
        )
    except duckdb.Error as exc:
        raise BadFileError(f.key, f"not valid JSON for {spec.name}: {str(exc).splitlines()[0]}", "not_json") from exc


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
                if source in ("orders", "products"):
                    _insert_csv(con, spec, f, seq)
                else:
                    _insert_json(con, spec, f, seq, flatten_rating=source == "api_products")
            except BadFileError as exc:
                result.rejected_files.append(exc)
    finally:
        con.execute("SET preserve_insertion_order = false")
    result.rows_in = int(con.execute(f"SELECT count(*) FROM {spec.name}_src").fetchone()[0])  # noqa: S608
    return result


def _ruled_sql(spec: SourceSpec) -> str:
    cases = "\n".join(f"WHEN {cond} THEN '{rule}'" for rule, _, cond in spec.rules)
    fields = "\n".join(f"WHEN '{rule}' THEN '{fld}'" for rule, fld, _ in spec.rules)
    return f"""
    CREATE OR REPLACE TEMP VIEW {spec.name}_ruled AS
    WITH parsed AS (SELECT *, {spec.parsed} FROM {spec.name}_src),
    ruled AS (SELECT *, CASE {cases} END AS _bad FROM parsed),
    ranked AS (
        SELECT *, row_number() OVER (PARTITION BY _bad IS NULL, trim({spec.key}) ORDER BY {spec.latest_first}) AS _version
        FROM ruled
    )
    SELECT *, coalesce(_bad, CASE WHEN _version > 1 THEN '{SUPERSEDED}' END) AS _rule,
           CASE _bad {fields} END AS _field
    FROM ranked
    """  # noqa: S608


def clean(con: duckdb.DuckDBPyConnection, result: CleanResult, cleaned_path: Path, quarantine_path: Path) -> CleanResult:
    """Apply the rules to ``<source>_src`` (filled by ``load_files``); write the cleaned rows and the
    quarantined rows (with source_file, source_row, field, rule) as Parquet files."""
    spec = SPECS[result.source]
    con.execute(_ruled_sql(spec))
    counts = dict(con.execute(f"SELECT coalesce(_rule, ''), count(*) FROM {spec.name}_ruled GROUP BY 1").fetchall())  # noqa: S608
    result.rows_out = int(counts.pop("", 0))
    result.superseded = int(counts.pop(SUPERSEDED, 0))
    result.quarantined = {rule: int(counts.get(rule, 0)) for rule, _, _ in spec.rules}
    cleaned_path.parent.mkdir(parents=True, exist_ok=True)
    quarantine_path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(
        f"COPY (SELECT {spec.output}, _file AS _source_file, _row AS _source_row, _ingested_at "  # noqa: S608
        f"FROM {spec.name}_ruled WHERE _rule IS NULL ORDER BY trim({spec.key})) TO ? (FORMAT parquet, COMPRESSION zstd)",
        [str(cleaned_path)],
    )
    src_cols = ", ".join(spec.columns)
    con.execute(
        f"COPY (SELECT {src_cols}, _file AS source_file, _row AS source_row, _field AS field, _rule AS rule "  # noqa: S608
        f"FROM {spec.name}_ruled WHERE _bad IS NOT NULL ORDER BY _file, _row) TO ? (FORMAT parquet, COMPRESSION zstd)",
        [str(quarantine_path)],
    )
    if not result.reconciles:  # a bug, never bad data: every row is kept, quarantined or superseded
        raise AssertionError(f"{spec.name}: counts do not reconcile: {result.as_metadata()}")
    return result


def clean_source(con: duckdb.DuckDBPyConnection, source: str, files: Sequence[SourceFile], cleaned_path: Path,
                 quarantine_path: Path) -> CleanResult:
    """``load_files`` then ``clean``: the whole cleaning of one source."""
    return clean(con, load_files(con, source, files), cleaned_path, quarantine_path)
