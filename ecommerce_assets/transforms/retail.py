"""Online Retail: the users' cleaning rules and the star schema, as DuckDB SQL over the lake.

Cleaning rules, applied in this order; every removed row goes to quarantine with the first rule that
removed it, so rows in = rows out + the sum of the rule counts:

1. ``duplicate_row``: an exact copy of an earlier row (all eight source columns equal);
2. ``null_<field>``: a null/blank invoiceno, stockcode, quantity or unitprice;
3. ``unparseable_<field>``: quantity not an integer, unitprice not a number;
4. ``non_positive_quantity`` / ``non_positive_unitprice`` (this removes cancellations ``C...`` too);
5. ``unparseable_invoicedate``: not ``M/D/YYYY H:MM``, ``M/D/YY H:MM`` or ``YYYY-MM-DD HH:MM:SS``.

Kept rows get: quantity BIGINT, unitprice DECIMAL(18,3), invoicedate TIMESTAMP, customerid as text
without a trailing ``.0`` (blank -> ``UNKNOWN``), ``"`` removed and ``,``/tab -> space in description and
country, ``total_sales = quantity * unitprice``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb

from ecommerce_assets.transforms.files import TextFile, standardize_column

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
    "unparseable_unitprice": "unitprice is not a number",
    "non_positive_quantity": "quantity <= 0 (returns and cancellations)",
    "non_positive_unitprice": "unitprice <= 0",
    "unparseable_invoicedate": "invoicedate is not M/D/YYYY H:MM, M/D/YY H:MM or YYYY-MM-DD HH:MM:SS",
}
UNKNOWN_CUSTOMER = "UNKNOWN"
STAR_TABLES = ("customers", "products", "sales_transactions")


@dataclass
class CleanResult:
    rows_in: int
    rows_out: int
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.rows_out + sum(self.removed.values())


def load_source(con: duckdb.DuckDBPyConnection, files: Sequence[TextFile], file_labels: Sequence[str]) -> int:
    """Read the files (all text) into the temp table ``retail_src`` with ``_file`` and ``_row``; return rows."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE retail_src (" + ", ".join(f"{c} VARCHAR" for c in SOURCE_COLUMNS)
        + ", _file VARCHAR, _row BIGINT)"
    )
    con.execute("SET preserve_insertion_order = true")
    select = ", ".join(SOURCE_COLUMNS)
    for tf, label in zip(files, file_labels, strict=True):
        names = [standardize_column(h) or f"column{i}" for i, h in enumerate(tf.header)]
        names = [n if names.index(n) == i else f"{n}_{i}" for i, n in enumerate(names)]  # de-duplicate
        con.execute(
            f"INSERT INTO retail_src SELECT {select}, ?, row_number() OVER () "  # noqa: S608
            "FROM read_csv(?, header = true, names = ?, all_varchar = true, encoding = ?, quote = '\"', "
            "escape = '\"', strict_mode = false, null_padding = true)",
            [label, str(tf.path), names, tf.encoding],
        )
    con.execute("SET preserve_insertion_order = false")
    return int(con.execute("SELECT count(*) FROM retail_src").fetchone()[0])


# a table, not a view: the rule counts, the cleaned COPY and the quarantine COPY read it, so the
# de-duplication window and the parsing run once instead of three times (about 2x faster end to end)
_RULED = """
CREATE OR REPLACE TEMP TABLE retail_ruled AS
WITH dup AS (
    SELECT *, row_number() OVER (
        PARTITION BY invoiceno, stockcode, description, quantity, invoicedate, unitprice, customerid, country
        ORDER BY _file, _row) AS _copy
    FROM retail_src
), parsed AS (
    SELECT *,
        nullif(trim(invoiceno), '') AS _inv,
        nullif(trim(stockcode), '') AS _stock,
        TRY_CAST(nullif(trim(quantity), '') AS BIGINT) AS _qty,
        TRY_CAST(nullif(trim(unitprice), '') AS DECIMAL(18, 3)) AS _price,
        CASE
            WHEN regexp_matches(trim(invoicedate), '^\\d{1,2}/\\d{1,2}/\\d{4} \\d{1,2}:\\d{2}$')
                THEN try_strptime(trim(invoicedate), '%m/%d/%Y %H:%M')
            WHEN regexp_matches(trim(invoicedate), '^\\d{1,2}/\\d{1,2}/\\d{2} \\d{1,2}:\\d{2}$')
                THEN try_strptime(trim(invoicedate), '%m/%d/%y %H:%M')
            WHEN regexp_matches(trim(invoicedate), '^\\d{4}-\\d{2}-\\d{2}[ T]\\d{2}:\\d{2}:\\d{2}$')
                THEN try_strptime(replace(trim(invoicedate), 'T', ' '), '%Y-%m-%d %H:%M:%S')
        END AS _ts
    FROM dup
)
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
    END AS _rule
FROM parsed
"""

_CLEAN_SELECT = """
SELECT
    _inv AS invoiceno,
    _stock AS stockcode,
    nullif(trim(regexp_replace(replace(description, '"', ''), '[,\\t]', ' ', 'g')), '') AS description,
    _qty AS quantity,
    _price AS unitprice,
    _ts AS invoicedate,
    coalesce(regexp_replace(nullif(trim(customerid), ''), '\\.0+$', ''), 'UNKNOWN') AS customerid,
    nullif(trim(regexp_replace(replace(country, '"', ''), '[,\\t]', ' ', 'g')), '') AS country,
    CAST(_qty * _price AS DECIMAL(18, 3)) AS total_sales,
    CAST(_ts AS DATE) AS invoice_date
FROM retail_ruled
WHERE _rule IS NULL
"""

_QUARANTINE_SELECT = """
SELECT invoiceno, stockcode, description, quantity, invoicedate, unitprice, customerid, country,
       _file AS source_file, _row AS source_row, _rule AS rule,
       CASE WHEN _rule = 'duplicate_row' THEN '*' ELSE regexp_replace(_rule, '^(null|unparseable|non_positive)_', '') END
           AS field
FROM retail_ruled
WHERE _rule IS NOT NULL
"""


def clean(con: duckdb.DuckDBPyConnection, cleaned_uri: str, quarantine_uri: str) -> CleanResult:
    """Apply the rules to ``retail_src``; write cleaned Parquet (Hive-partitioned by invoice_date) and
    the quarantined rows (with rule and field) as one Parquet file."""
    con.execute(_RULED)
    counts = dict(con.execute("SELECT coalesce(_rule, ''), count(*) FROM retail_ruled GROUP BY 1").fetchall())
    rows_out = int(counts.pop("", 0))
    removed = {rule: int(counts.get(rule, 0)) for rule in RULES}
    con.execute(
        f"COPY ({_CLEAN_SELECT}) TO ? (FORMAT parquet, PARTITION_BY (invoice_date), OVERWRITE_OR_IGNORE, "  # noqa: S608
        "FILENAME_PATTERN 'part_{i}', COMPRESSION zstd)",
        [cleaned_uri],
    )
    con.execute(f"COPY ({_QUARANTINE_SELECT}) TO ? (FORMAT parquet, COMPRESSION zstd)", [quarantine_uri])  # noqa: S608
    rows_in = int(con.execute("SELECT count(*) FROM retail_src").fetchone()[0])
    return CleanResult(rows_in=rows_in, rows_out=rows_out, removed=removed)


def register_cleaned(con: duckdb.DuckDBPyConnection, cleaned_glob: str, name: str = "cleaned") -> None:
    """Expose the cleaned zone (Parquet, Hive-partitioned by invoice_date) as the view ``name``."""
    con.read_parquet(cleaned_glob, hive_partitioning=True).create_view(name, replace=True)


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


def build_star_table(con: duckdb.DuckDBPyConnection, table: str, cleaned_glob: str, out_uri: str) -> int:
    """Compute one star-schema table from the cleaned zone into a Parquet file; return its row count."""
    register_cleaned(con, cleaned_glob)
    con.execute(f"COPY ({STAR_SQL[table]}) TO ? (FORMAT parquet, COMPRESSION zstd)", [out_uri])
    return int(con.execute("SELECT count(*) FROM read_parquet(?)", [out_uri]).fetchone()[0])
