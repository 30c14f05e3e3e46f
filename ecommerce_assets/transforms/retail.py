"""Online Retail: the users' cleaning rules and the star schema, as DuckDB SQL over the lake.

Cleaning rules, applied in this order; every removed row goes to quarantine with the first rule that
removed it, so rows in = rows out + the sum of the rule counts:

1. ``duplicate_row``: an exact copy of an earlier row (all eight source columns equal);
2. ``null_<field>``: a null/blank invoiceno, stockcode, quantity or unitprice;
3. ``unparseable_<field>``: quantity not a whole number (``6`` or ``6.0``, not ``6.5``), unitprice not a decimal
   number (no exponent, no thousands separator), or either too large for its type;
4. ``non_positive_quantity`` / ``non_positive_unitprice`` (this removes cancellations ``C...`` too);
5. ``unparseable_invoicedate``: not ``M/D/YYYY H:MM``, ``M/D/YY H:MM`` or ``YYYY-MM-DD HH:MM:SS``;
6. ``out_of_range_invoicedate``: before 2000-01-01 or after 2100-12-31 (``0001-01-01``, ``1/1/99`` = 1999);
7. ``out_of_range_total_sales``: quantity x unitprice does not fit DECIMAL(18,3) (10^15 or more);
8. ``control_character``: a control character (NUL, ESC, DEL, C1) or a bidirectional override/isolate
   (U+202A-U+202E, U+2066-U+2069) in any field, or a tab/line break in invoiceno, stockcode or customerid
   (the quarantined row's ``field`` names the first such field).

Kept rows get: quantity BIGINT, unitprice DECIMAL(18,3), invoicedate TIMESTAMP, customerid as text
without a trailing ``.0`` (blank -> ``UNKNOWN``), ``"`` removed and ``,``/tab/line breaks -> space in
description and country, ``total_sales = quantity * unitprice``, ``invoice_date`` and ``invoice_month``
(``YYYY-MM``, the partition key). Text that starts with ``=``, ``+``, ``-``
or ``@`` is data and kept as it is; a CSV written for people neutralises it (``files.csv_for_people``).

The cleaned zone is the Apache Iceberg table ``online_retail_cleaned`` (``TABLE``, identity-partitioned on
``invoice_month``): ``clean`` with ``tables`` replaces all of its rows in one commit, one month's Arrow data at a
time; without ``tables`` (the benches, the rule tests) the kept rows go to plain Hive-partitioned Parquet. The
quarantine is one plain Parquet file either way. ``register_cleaned`` binds the view the star schema and the
checks read: the table's current snapshot (``iceberg_scan``), or a Parquet glob.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ecommerce_assets.transforms.files import (
    ENGINE_MAX_LINE_SIZE,
    BadFileError,
    TextFile,
    engine_file,
    standardize_column,
)
from ecommerce_assets.transforms.order_lines import UNKNOWN_CUSTOMER as UNKNOWN_CUSTOMER

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from ecommerce_assets.storage.iceberg import IcebergCommit, IcebergTables

SOURCE_COLUMNS = [
    "invoiceno", "stockcode", "description", "quantity", "invoicedate", "unitprice", "customerid", "country",
]
RULES: dict[str, str] = {
    "duplicate_row": "an exact duplicate of an earlier row",
    "null_invoiceno": "invoiceno is null or blank",
    "null_stockcode": "stockcode is null or blank",
    "null_quantity": "quantity is null or blank",
    "null_unitprice": "unitprice is null or blank",
    "unparseable_quantity": "quantity is not a whole number",
    "unparseable_unitprice": "unitprice is not a decimal number (digits and at most one point)",
    "non_positive_quantity": "quantity <= 0 (returns and cancellations)",
    "non_positive_unitprice": "unitprice <= 0",
    "unparseable_invoicedate": "invoicedate is not M/D/YYYY H:MM, M/D/YY H:MM or YYYY-MM-DD HH:MM:SS",
    "out_of_range_invoicedate": "invoicedate is before 2000-01-01 or after 2100-12-31",
    "out_of_range_total_sales": "quantity x unitprice is 10^15 or more (does not fit DECIMAL(18,3))",
    "control_character": "a control or bidirectional-override character (NUL, ESC, U+202E...) in a field",
}
# the sane range of an invoice date: [EARLIEST_DATE, END_DATE)
EARLIEST_DATE, END_DATE = "2000-01-01", "2101-01-01"
# a character no field may hold (SQL regex): C0 controls but tab/LF/CR, DEL, C1 controls, bidi
# embeddings/overrides/isolates
CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x{9f}\x{202a}-\x{202e}\x{2066}-\x{2069}]"
# in invoiceno, stockcode and customerid a tab or a line break is a control character too
CONTROL_CHARACTERS_IN_IDS = CONTROL_CHARACTERS[:-1] + r"\t\r\n]"
STAR_TABLES = ("customers", "products", "sales_transactions")
TABLE = "online_retail_cleaned"  # the Iceberg table of the cleaned zone (files below ``processed/<TABLE>/``)
PARTITION_BY = ("invoice_month",)  # identity partition: ``YYYY-MM``


@dataclass
class CleanResult:
    rows_in: int
    rows_out: int
    removed: dict[str, int] = field(default_factory=dict)
    commit: IcebergCommit | None = None  # the Iceberg commit that replaced the cleaned rows (``tables`` given)
    months: list[str] = field(default_factory=list)  # the invoice months the cleaned rows fall in

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.rows_out + sum(self.removed.values())


def load_source(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[TextFile],
    file_labels: Sequence[str],
    rejected: list[BadFileError] | None = None,
) -> int:
    """Read the files and apply the rules in one pass, into the temp table ``retail_ruled``; return the rows read.

    The CSV is streamed once: each row is numbered (``_row``, its place in its file, for the quarantine) as it is
    read, and no copy of the source is kept. The files have passed ``open_csv`` (which refuses a line the engine
    could not read). Should the engine still refuse one, the files are read again one at a time to find which:
    the error is a ``BadFileError`` naming that file (its label) and the engine's first message line, never the
    file's content. With ``rejected`` (a list), such a file is appended to it and the other files are read (the
    caller quarantines it); without, the error is raised."""
    import duckdb

    with ExitStack() as stack:
        sources = [_Source(label, *stack.enter_context(engine_file(tf)), column_names(tf))
                   for tf, label in zip(files, file_labels, strict=True)]
        try:
            return _rule(con, sources)
        except (duckdb.OutOfMemoryException, duckdb.InterruptException):
            raise  # the engine's limits, not a file's fault
        except duckdb.Error:
            pass  # a file the parallel reader refuses: find it, file by file, then read the others
        good = []
        for source in sources:
            try:
                good.append(_probe(con, source))
            except BadFileError as err:
                if rejected is None:
                    raise
                rejected.append(err)
        return _rule(con, good)


def column_names(tf: TextFile) -> list[str]:
    """The file's standardized header; a blank name gets ``column<i>``, a repeated one ``<name>_<i>``."""
    names = [standardize_column(h) or f"column{i}" for i, h in enumerate(tf.header)]
    return [n if names.index(n) == i else f"{n}_{i}" for i, n in enumerate(names)]


@dataclass(frozen=True)
class _Source:
    """One CSV as the engine reads it: its label (the raw key), path, encoding, column names and reader."""

    label: str
    path: Path
    encoding: str
    names: list[str]
    parallel: bool = True


def _read_csv(source: _Source, i: int) -> tuple[str, dict[str, object]]:
    """The SQL of reading ``source`` (all text, each row numbered in file order) and its parameters."""
    # the names are ours; every value is a parameter
    sql = (
        f"SELECT {', '.join(SOURCE_COLUMNS)}, $label{i} AS _file, row_number() OVER () AS _row "  # noqa: S608
        f"FROM read_csv($path{i}, header = true, names = $names{i}, all_varchar = true, encoding = $encoding{i}, "
        "delim = ',', quote = '\"', escape = '\"', strict_mode = false, null_padding = true, "
        f"max_line_size = $max_line_size, parallel = $parallel{i})"
    )
    params = {f"label{i}": source.label, f"path{i}": str(source.path), f"names{i}": source.names,
              f"encoding{i}": source.encoding, f"parallel{i}": source.parallel}
    return sql, params


def _probe(con: duckdb.DuckDBPyConnection, source: _Source) -> _Source:
    """``source`` with the reader that reads it: the parallel one, else the serial one (which can pad short rows of
    a file with line breaks inside quoted values); a ``BadFileError`` when neither can."""
    import duckdb

    try:
        return _read_whole(con, source)
    except (duckdb.OutOfMemoryException, duckdb.InterruptException):
        raise
    except duckdb.Error:
        pass
    try:
        return _read_whole(con, replace(source, parallel=False))
    except (duckdb.OutOfMemoryException, duckdb.InterruptException):
        raise
    except duckdb.Error as exc:  # the reader's "CSV Error", invalid input, conversion, I/O
        first = str(exc).split("\n", 1)[0][:300]  # the engine's next lines quote the file's content
        raise BadFileError(source.label, f"the engine cannot read it as CSV: {first}", "unreadable_csv") from exc


def _read_whole(con: duckdb.DuckDBPyConnection, source: _Source) -> _Source:
    """Read ``source`` to the end (and throw the rows away): the engine's error, if it has one, is raised."""
    sql, params = _read_csv(source, 0)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE retail_probe AS {sql}",  # noqa: S608
                    {**params, "max_line_size": ENGINE_MAX_LINE_SIZE})
    finally:
        con.execute("DROP TABLE IF EXISTS retail_probe")
    return source


def _rule(con: duckdb.DuckDBPyConnection, sources: Sequence[_Source]) -> int:
    """Read ``sources`` and rule every row into the temp table ``retail_ruled``, in one statement; return the rows."""
    reads: list[str] = []
    params: dict[str, object] = {"max_line_size": ENGINE_MAX_LINE_SIZE} if sources else {}
    for i, source in enumerate(sources):
        sql, source_params = _read_csv(source, i)
        reads.append(sql)
        params.update(source_params)
    if not reads:  # every file was refused: an empty source, ruled like any other
        reads.append("SELECT " + ", ".join(f"NULL::VARCHAR AS {c}" for c in SOURCE_COLUMNS)
                     + ", NULL::VARCHAR AS _file, NULL::BIGINT AS _row WHERE false")
    params.update(RULE_PARAMETERS)
    define_portable_functions(con)
    sql = ruled_sql("duckdb", "\n    UNION ALL\n    ".join(reads))
    con.execute("SET preserve_insertion_order = true")  # so that row_number() OVER () is the row's place in its file
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE retail_ruled AS {sql}", params)  # noqa: S608
    finally:
        con.execute("SET preserve_insertion_order = false")
    return int(con.execute("SELECT count(*) FROM retail_ruled").fetchone()[0])


# The rules, once, for both engines (``ECOMMERCE_ENGINE``): ``ruled_sql("duckdb")`` here, ``ruled_sql("spark")`` for
# the PySpark job (``ecommerce_assets/spark/retail_clean.py``), which receives the SQL and ``RULE_PARAMETERS`` through
# Pipes and so cannot drift from this. The SQL uses only what both dialects mean alike: CASE, trim, nullif,
# translate, concat_ws, regexp_extract, TRY_CAST of text that a pattern has already accepted (the engines' casts
# differ on anything else: DuckDB reads '1.5' as the BIGINT 2 and '1e3' as 1000, Spark as NULL), window
# row_number; plus ``regexp_like`` and ``make_timestamp_ntz`` (NULL for an impossible date), Spark built-ins that
# ``define_portable_functions`` gives a DuckDB connection as macros. Every pattern and bound is a named parameter
# (``$name``; ``:name`` in Spark), so no dialect's string-literal escaping is involved.
RULE_PARAMETERS: dict[str, str] = {
    "ctrl": CONTROL_CHARACTERS,
    "ctrl_id": CONTROL_CHARACTERS_IN_IDS,
    "earliest": EARLIEST_DATE,
    "end": END_DATE,
    # a whole number: digits, a sign, optionally ``.0`` (a spreadsheet's export of an integer column)
    "whole": r"^[+-]?[0-9]+(\.0*)?$",
    # a decimal number: digits with at most one point, a sign; no exponent, no thousands separator
    "decimal": r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$",
    # M/D/YYYY H:MM or M/D/YY H:MM (YY: 00-68 is 20YY, 69-99 is 19YY) | YYYY-MM-DD HH:MM:SS (or a T between)
    "us_date": r"^([0-9]{1,2})/([0-9]{1,2})/([0-9]{4}|[0-9]{2}) ([0-9]{1,2}):([0-9]{2})$",
    "iso_date": r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})$",
    "trailing_zeros": r"\.0+$",
}

# a table, not a view: the rule counts, the cleaned write and the quarantine write read it, so the
# de-duplication window and the parsing run once instead of three times (about 2x faster end to end)
_RULED = """
WITH retail_src AS (
    {source}
), dup AS (
    SELECT *, row_number() OVER (
        PARTITION BY invoiceno, stockcode, description, quantity, invoicedate, unitprice, customerid, country
        ORDER BY _file, _row) AS _copy
    FROM retail_src
), dated AS (
    SELECT *,
        CASE WHEN regexp_like(_d, $us_date) THEN 'us' WHEN regexp_like(_d, $iso_date) THEN 'iso' END AS _date_form
    FROM (SELECT *, trim(invoicedate) AS _d FROM dup) d0
), date_parts AS (
    SELECT *,
        CASE _date_form WHEN 'us' THEN TRY_CAST(regexp_extract(_d, $us_date, 3) AS INT)
                        WHEN 'iso' THEN TRY_CAST(regexp_extract(_d, $iso_date, 1) AS INT) END AS _y0,
        CASE _date_form WHEN 'us' THEN TRY_CAST(regexp_extract(_d, $us_date, 1) AS INT)
                        WHEN 'iso' THEN TRY_CAST(regexp_extract(_d, $iso_date, 2) AS INT) END AS _mo,
        CASE _date_form WHEN 'us' THEN TRY_CAST(regexp_extract(_d, $us_date, 2) AS INT)
                        WHEN 'iso' THEN TRY_CAST(regexp_extract(_d, $iso_date, 3) AS INT) END AS _dd,
        CASE _date_form WHEN 'us' THEN TRY_CAST(regexp_extract(_d, $us_date, 4) AS INT)
                        WHEN 'iso' THEN TRY_CAST(regexp_extract(_d, $iso_date, 4) AS INT) END AS _hh,
        CASE _date_form WHEN 'us' THEN TRY_CAST(regexp_extract(_d, $us_date, 5) AS INT)
                        WHEN 'iso' THEN TRY_CAST(regexp_extract(_d, $iso_date, 5) AS INT) END AS _mi,
        CASE _date_form WHEN 'us' THEN 0
                        WHEN 'iso' THEN TRY_CAST(regexp_extract(_d, $iso_date, 6) AS INT) END AS _ss,
        CASE WHEN _date_form = 'us' THEN length(regexp_extract(_d, $us_date, 3)) = 2 ELSE false END AS _two_digit
    FROM dated
), parsed AS (
    SELECT *,
        nullif(trim(invoiceno), '') AS _inv,
        nullif(trim(stockcode), '') AS _stock,
        CASE WHEN regexp_like(trim(quantity), $whole)
             THEN TRY_CAST(regexp_extract(trim(quantity), '^([^.]*)', 1) AS BIGINT) END AS _qty,
        CASE WHEN regexp_like(trim(unitprice), $decimal) THEN TRY_CAST(trim(unitprice) AS DECIMAL(18, 3)) END AS _price,
        CASE WHEN _mo BETWEEN 1 AND 12 AND _dd BETWEEN 1 AND 31 AND _hh BETWEEN 0 AND 23 AND _mi BETWEEN 0 AND 59
                  AND _ss BETWEEN 0 AND 59
             THEN make_timestamp_ntz(
                 CASE WHEN NOT _two_digit THEN _y0 WHEN _y0 < 69 THEN 2000 + _y0 ELSE 1900 + _y0 END,
                 _mo, _dd, _hh, _mi, _ss) END AS _ts,
        CASE
            -- two scans of the row's text find most rows clean; only a row with a hit looks field by field
            WHEN NOT regexp_like(concat_ws('', invoiceno, stockcode, customerid), $ctrl_id)
                 AND NOT regexp_like(concat_ws('', description, quantity, invoicedate, unitprice, country), $ctrl)
                THEN NULL
            WHEN regexp_like(invoiceno, $ctrl_id) THEN 'invoiceno'
            WHEN regexp_like(stockcode, $ctrl_id) THEN 'stockcode'
            WHEN regexp_like(description, $ctrl) THEN 'description'
            WHEN regexp_like(quantity, $ctrl) THEN 'quantity'
            WHEN regexp_like(invoicedate, $ctrl) THEN 'invoicedate'
            WHEN regexp_like(unitprice, $ctrl) THEN 'unitprice'
            WHEN regexp_like(customerid, $ctrl_id) THEN 'customerid'
            WHEN regexp_like(country, $ctrl) THEN 'country'
        END AS _ctrl_field
    FROM date_parts
), typed AS (
    SELECT *, TRY_CAST(_qty * _price AS DECIMAL(18, 3)) AS _total FROM parsed
), ruled AS (
    SELECT *,
        CASE
            WHEN _copy > 1 THEN 'duplicate_row'
            WHEN _inv IS NULL THEN 'null_invoiceno'
            WHEN _stock IS NULL THEN 'null_stockcode'
            WHEN nullif(trim(quantity), '') IS NULL THEN 'null_quantity'
            WHEN nullif(trim(unitprice), '') IS NULL THEN 'null_unitprice'
            WHEN _qty IS NULL THEN 'unparseable_quantity'
            WHEN _price IS NULL THEN 'unparseable_unitprice'
            WHEN _qty <= 0 THEN 'non_positive_quantity'
            WHEN _price <= 0 THEN 'non_positive_unitprice'
            WHEN _ts IS NULL THEN 'unparseable_invoicedate'
            WHEN _ts < CAST($earliest AS TIMESTAMP) OR _ts >= CAST($end AS TIMESTAMP) THEN 'out_of_range_invoicedate'
            WHEN _total IS NULL THEN 'out_of_range_total_sales'
            WHEN _ctrl_field IS NOT NULL THEN 'control_character'
        END AS _rule
    FROM typed
)
-- a removed row keeps its source text (the quarantine's columns); a kept row only its cleaned values: the table
-- holds each row once, not its text and its values side by side
SELECT _file, _row, _rule,
    CASE _rule WHEN 'duplicate_row' THEN '*' WHEN 'control_character' THEN _ctrl_field
               ELSE regexp_extract(_rule, '^(null|unparseable|non_positive|out_of_range)_(.*)$', 2) END AS _field,
    CASE WHEN _rule IS NOT NULL THEN invoiceno END AS invoiceno,
    CASE WHEN _rule IS NOT NULL THEN stockcode END AS stockcode,
    CASE WHEN _rule IS NOT NULL THEN description END AS description,
    CASE WHEN _rule IS NOT NULL THEN quantity END AS quantity,
    CASE WHEN _rule IS NOT NULL THEN invoicedate END AS invoicedate,
    CASE WHEN _rule IS NOT NULL THEN unitprice END AS unitprice,
    CASE WHEN _rule IS NOT NULL THEN customerid END AS customerid,
    CASE WHEN _rule IS NOT NULL THEN country END AS country,
    CASE WHEN _rule IS NULL THEN _inv END AS _inv,
    CASE WHEN _rule IS NULL THEN _stock END AS _stock,
    CASE WHEN _rule IS NULL THEN nullif(trim(translate(description, $to_space, '    ')), '') END AS _description,
    CASE WHEN _rule IS NULL THEN _qty END AS _qty,
    CASE WHEN _rule IS NULL THEN _price END AS _price,
    CASE WHEN _rule IS NULL THEN _ts END AS _ts,
    CASE WHEN _rule IS NULL THEN
        coalesce(regexp_replace(nullif(trim(customerid), ''), $trailing_zeros, ''), 'UNKNOWN') END AS _customerid,
    CASE WHEN _rule IS NULL THEN nullif(trim(translate(country, $to_space, '    ')), '') END AS _country,
    CASE WHEN _rule IS NULL THEN _total END AS _total
FROM ruled
"""
# ``,``, tab and line breaks become a space, ``"`` goes (translate drops a character it has no replacement for)
RULE_PARAMETERS["to_space"] = ',\t\r\n"'

# the kept rows of ``retail_ruled`` in the cleaned table's columns (both dialects)
CLEAN_SELECT = """
SELECT
    _inv AS invoiceno,
    _stock AS stockcode,
    _description AS description,
    _qty AS quantity,
    _price AS unitprice,
    _ts AS invoicedate,
    _customerid AS customerid,
    _country AS country,
    _total AS total_sales,
    CAST(_ts AS DATE) AS invoice_date,
    substr(CAST(CAST(_ts AS DATE) AS STRING), 1, 7) AS invoice_month
FROM retail_ruled
WHERE _rule IS NULL
"""

DIALECTS = ("duckdb", "spark")


def ruled_sql(dialect: str, source: str) -> str:
    """The rules as one SELECT in ``dialect`` (``duckdb`` or ``spark``) over ``source`` (a SELECT or a view name
    yielding the eight text columns, ``_file`` and ``_row``); parameters ``RULE_PARAMETERS``."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}: one of {', '.join(DIALECTS)}")
    sql = _RULED.replace("{source}", source)
    return sql if dialect == "duckdb" else re.sub(r"\$([a-z_]+)", r":\1", sql)


def spark_job_extras(
    sources: Sequence[tuple[str, Path, str, list[str]]], cleaned_dir: str, quarantine_dir: str, master: str | None
) -> dict[str, object]:
    """What the PySpark job (``ecommerce_assets/spark_jobs/retail_clean.py``) needs, as its Pipes extras: the
    ``sources`` (label, path, encoding, standardized column names), the rules in Spark SQL with their parameters,
    and where to write."""
    return {
        "sources": [{"label": label, "path": str(path), "encoding": encoding, "names": list(names)}
                    for label, path, encoding, names in sources],
        "ruled_sql": ruled_sql("spark", "SELECT * FROM retail_src"),
        "clean_sql": CLEAN_SELECT,
        "quarantine_sql": QUARANTINE_SELECT,
        "parameters": dict(RULE_PARAMETERS),
        "rules": list(RULES),
        "cleaned_dir": cleaned_dir,
        "quarantine_dir": quarantine_dir,
        **({"master": master} if master else {}),
    }


def define_portable_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Give ``con`` the Spark built-ins the rules use, as DuckDB macros (same arguments, same results)."""
    con.execute("CREATE OR REPLACE TEMP MACRO regexp_like(s, p) AS regexp_matches(s, p)")
    con.execute(
        "CREATE OR REPLACE TEMP MACRO make_timestamp_ntz(y, mo, d, h, mi, s) AS try(make_timestamp(y, mo, d, h, mi, s))"
    )


QUARANTINE_SELECT = """
SELECT invoiceno, stockcode, description, quantity, invoicedate, unitprice, customerid, country,
       _file AS source_file, _row AS source_row, _rule AS rule, _field AS field
FROM retail_ruled
WHERE _rule IS NOT NULL
"""


def clean(
    con: duckdb.DuckDBPyConnection,
    cleaned_uri: str | None,
    quarantine_uri: str,
    *,
    tables: IcebergTables | None = None,
    properties: dict[str, str] | None = None,
) -> CleanResult:
    """Write the rows ``load_source`` ruled: the kept rows and the quarantined ones (with rule and field, one
    Parquet file at ``quarantine_uri``).

    With ``tables`` the kept rows replace ALL rows of the Iceberg table ``online_retail_cleaned`` in one commit
    (``replace_all_rows``: the zone is rebuilt whole from raw, so a month no longer in the source is dropped and a
    re-run gives the same rows); each month is fetched as Arrow and written before the next, so the rows are never
    held twice (the engine's ruled table plus one month). ``properties`` go into the snapshot summary;
    ``result.commit`` says what the commit did. Without ``tables`` they go to Parquet below ``cleaned_uri``,
    Hive-partitioned by ``invoice_month`` (``YYYY-MM``: files of tens of MB at the data's scale rather than one
    folder a day)."""
    rows_in = int(con.execute("SELECT count(*) FROM retail_ruled").fetchone()[0])
    counts = dict(con.execute("SELECT coalesce(_rule, ''), count(*) FROM retail_ruled GROUP BY 1").fetchall())
    rows_out = int(counts.pop("", 0))
    removed = {rule: int(counts.get(rule, 0)) for rule in RULES}
    result = CleanResult(rows_in=rows_in, rows_out=rows_out, removed=removed)
    result.months = [m for (m,) in con.execute(
        f"SELECT DISTINCT invoice_month FROM ({CLEAN_SELECT}) ORDER BY 1"  # noqa: S608
    ).fetchall()]
    if tables is not None:
        result.commit = _commit_cleaned(con, tables, result.months, properties or {})
    elif cleaned_uri is not None:
        con.execute(
            f"COPY ({CLEAN_SELECT}) TO ? (FORMAT parquet, PARTITION_BY (invoice_month), OVERWRITE_OR_IGNORE, "  # noqa: S608
            "FILENAME_PATTERN 'part_{i}', COMPRESSION zstd)",
            [cleaned_uri],
        )
    else:
        raise ValueError("clean needs the Iceberg tables or a Parquet folder for the cleaned rows")
    con.execute(f"COPY ({QUARANTINE_SELECT}) TO ? (FORMAT parquet, COMPRESSION zstd)", [quarantine_uri])  # noqa: S608
    con.execute("DROP TABLE retail_ruled")
    return result


def _commit_cleaned(
    con: duckdb.DuckDBPyConnection, tables: IcebergTables, months: Sequence[str], properties: dict[str, str]
) -> IcebergCommit:
    """Replace every row of the Iceberg table with the kept rows of ``retail_ruled``, one month at a time."""
    from ecommerce_assets.storage.iceberg import replace_all_rows

    schema = con.execute(f"SELECT * FROM ({CLEAN_SELECT}) LIMIT 0").to_arrow_table().schema  # noqa: S608
    month_sql = f"SELECT * FROM ({CLEAN_SELECT}) WHERE invoice_month = ?"  # noqa: S608

    def parts() -> Iterator[pa.Table]:
        for month in months:
            yield con.execute(month_sql, [month]).to_arrow_table()

    return replace_all_rows(
        tables, TABLE, schema, parts, PARTITION_BY,
        properties={"ecommerce.months": ",".join(months), **properties},
    )


def cleaned_schema(con: duckdb.DuckDBPyConnection) -> pa.Schema:
    """The cleaned table's columns and types as the rules make them (ruled from an empty source): the schema both
    engines' rows are committed under."""
    _rule(con, [])
    try:
        return con.execute(f"SELECT * FROM ({CLEAN_SELECT}) LIMIT 0").to_arrow_table().schema  # noqa: S608
    finally:
        con.execute("DROP TABLE retail_ruled")


def commit_cleaned_files(
    con: duckdb.DuckDBPyConnection, tables: IcebergTables, files: Sequence[str], months: Sequence[str],
    properties: dict[str, str],
) -> IcebergCommit:
    """Replace every row of the Iceberg table with the rows of the Parquet ``files`` another engine wrote (one
    invoice month a file, below the table's location), in one commit, without rewriting them."""
    from ecommerce_assets.storage.iceberg import replace_rows_with_files

    return replace_rows_with_files(
        tables, TABLE, cleaned_schema(con), files, PARTITION_BY,
        properties={"ecommerce.months": ",".join(months), **properties},
    )


def register_cleaned(
    con: duckdb.DuckDBPyConnection, source: IcebergTables | str, name: str = "cleaned"
) -> str:
    """Expose the cleaned zone as the view ``name``; return what it reads.

    ``source`` is one of: the Iceberg tables (the view reads ``online_retail_cleaned`` at its current snapshot,
    through ``iceberg_scan`` of its current ``metadata.json``, which is returned); one ``*.metadata.json`` of that
    table (that snapshot, whatever commits come after); a glob of plain Parquet, Hive-partitioned by
    ``invoice_month`` (``clean`` without tables). ``con`` is the lake's engine (for an S3 lake it reads S3)."""
    if isinstance(source, str) and not source.endswith(".metadata.json"):
        con.read_parquet(source, hive_partitioning=True).create_view(name, replace=True)
        return source
    from ecommerce_assets.storage.iceberg import create_scan_view

    location = source if isinstance(source, str) else source.metadata_location(TABLE)
    create_scan_view(con, name, location)
    return location


STAR_SQL: dict[str, str] = {
    # One row per customer. Stated rule for a customer seen in several countries: the country of most
    # of their lines; a tie goes to the country of their latest line, then alphabetical.
    "customers": """
        WITH lines AS (SELECT * FROM cleaned),
        per_country AS (
            SELECT customerid, country, count(*) AS n, max(invoicedate) AS last_seen
            FROM lines GROUP BY customerid, country
        )
        SELECT p.customerid,
               first(p.country ORDER BY p.n DESC, p.last_seen DESC, p.country) AS country,
               count(DISTINCT p.country)::INTEGER AS countries_seen,
               min(l.first_invoice_date) AS first_invoice_date,
               max(l.last_invoice_date) AS last_invoice_date,
               max(l.invoices)::INTEGER AS invoice_count
        FROM per_country p
        JOIN (SELECT customerid, min(invoicedate) AS first_invoice_date, max(invoicedate) AS last_invoice_date,
                     count(DISTINCT invoiceno) AS invoices FROM lines GROUP BY customerid) l USING (customerid)
        GROUP BY p.customerid
        ORDER BY p.customerid
    """,
    # One row per stock code. Stated rule for the description: the most frequent non-blank one; a tie
    # goes to the latest seen, then alphabetical. Price lives on the fact.
    "products": """
        WITH lines AS (SELECT * FROM cleaned),
        per_desc AS (
            SELECT stockcode, description, count(*) AS n, max(invoicedate) AS last_seen
            FROM lines WHERE description IS NOT NULL GROUP BY stockcode, description
        ),
        codes AS (SELECT stockcode, min(invoicedate) AS first_sold, max(invoicedate) AS last_sold
                  FROM lines GROUP BY stockcode)
        SELECT c.stockcode,
               first(d.description ORDER BY d.n DESC, d.last_seen DESC, d.description) AS description,
               count(d.description)::INTEGER AS description_variants,
               c.first_sold, c.last_sold
        FROM codes c LEFT JOIN per_desc d USING (stockcode)
        GROUP BY c.stockcode, c.first_sold, c.last_sold
        ORDER BY c.stockcode
    """,
    "sales_transactions": """
        SELECT invoiceno, customerid, stockcode, quantity, unitprice, invoicedate, total_sales
        FROM cleaned
        ORDER BY invoicedate, invoiceno, stockcode
    """,
}


def write_star_table(con: duckdb.DuckDBPyConnection, table: str, out_uri: str) -> int:
    """Compute one star-schema table from the view ``cleaned`` (``register_cleaned``) into a Parquet file; return
    its row count (from the file's footer)."""
    con.execute(f"COPY ({STAR_SQL[table]}) TO ? (FORMAT parquet, COMPRESSION zstd)", [out_uri])
    return int(con.execute("SELECT sum(num_rows) FROM parquet_file_metadata(?)", [out_uri]).fetchone()[0])

