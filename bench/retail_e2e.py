"""Path 1e: Online Retail end to end, as a user waits for it: the CSV landed in a fresh data dir, then
``ecommerce-assets run``, until ``gold.customers``, ``gold.products`` and ``gold.sales_transactions`` are in the
warehouse and the cleaned zone is on disk.

* ``product``: ``ecommerce-assets run`` in a fresh process on a fresh data dir (its Dagster instance made on the
  way), the CSV hard-linked into ``landing/online_retail/``: the whole process is timed, startup included.
* ``floor``: one fresh Python process with DuckDB doing the same work the plainest way: the users' rules
  (the seed scripts' ``select distinct`` for duplicates), the cleaned Parquet partitioned by month, and the three
  gold tables (``arg_max`` for the most frequent country and description) in a DuckDB file.

Sizes: ``1x`` is the UCI file (541,909 rows); ``10x`` is the file repeated ten times with new invoice numbers
(5,419,090 rows, no copy a duplicate of another), which is where the engine's time, not startup, dominates;
``30x`` (16,257,270 rows) for the engine comparison (``python -m bench.run --engines``: ``product`` with
``ECOMMERCE_ENGINE=duckdb`` and ``spark``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from bench.common import CACHE, run_product, timed

SCALES = {"1x": 1, "10x": 10, "30x": 30}


def prepare(scale: str) -> Path:
    """The Online Retail CSV at ``scale`` (made once in the cache, UTF-8)."""
    from bench import retail

    full = retail.prepare("full")
    copies = SCALES[scale]
    if copies == 1:
        return full
    out = CACHE / f"online_retail_{scale}.csv"
    if out.exists():
        return out
    import duckdb

    from ecommerce_assets.transforms.files import detect_encoding

    tmp = out.with_suffix(".tmp")
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    # copy k: invoice numbers suffixed "-k" (k > 0), every other field as it is
    con.execute(
        "COPY (SELECT CASE WHEN k = 0 THEN InvoiceNo ELSE InvoiceNo || '-' || k END AS InvoiceNo, "
        "StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country "
        "FROM read_csv($csv, header = true, all_varchar = true, encoding = $encoding), range($copies) AS r(k) "
        "ORDER BY k) TO $out (FORMAT csv, HEADER true)",
        {"csv": str(full), "encoding": detect_encoding(full), "copies": copies, "out": str(tmp)},
    )
    con.close()
    tmp.replace(out)
    return out


def product(params: dict, work: Path) -> dict:
    csv = Path(params["csv"]) if params.get("csv") else prepare(params["scale"])
    data_dir = work / "data"
    landing = data_dir / "lake" / "landing" / "online_retail"
    landing.mkdir(parents=True)
    (landing / "online_retail.csv").hardlink_to(csv)
    args = ["run", "--quiet", *(["--profile"] if params.get("profile") else [])]
    seconds, output = run_product(args, data_dir, {"ECOMMERCE_ENGINE": params.get("engine", "duckdb")})
    return {"seconds": seconds, **_figures(data_dir / "warehouse.duckdb", data_dir / "lake" / "processed"),
            "output": output[-3000:] if params.get("profile") else ""}


FLOOR = textwrap.dedent(r"""
    import sys
    import duckdb

    csv, cleaned, db = sys.argv[1:4]
    con = duckdb.connect(db)
    con.execute("SET preserve_insertion_order = false")
    con.execute(r'''
        CREATE TEMP TABLE clean AS
        SELECT invoiceno, stockcode,
               nullif(trim(regexp_replace(replace(description, '"', ''), '[,\t\r\n]', ' ', 'g')), '') AS description,
               qty AS quantity, price AS unitprice, ts AS invoicedate,
               coalesce(regexp_replace(nullif(trim(customerid), ''), '\.0+$', ''), 'UNKNOWN') AS customerid,
               nullif(trim(regexp_replace(replace(country, '"', ''), '[,\t\r\n]', ' ', 'g')), '') AS country,
               CAST(qty * price AS DECIMAL(18, 3)) AS total_sales, CAST(ts AS DATE) AS invoice_date,
               strftime(ts, '%Y-%m') AS invoice_month
        FROM (
            SELECT *, TRY_CAST(trim(quantity) AS BIGINT) AS qty, TRY_CAST(trim(unitprice) AS DECIMAL(18, 3)) AS price,
                   try_strptime(trim(invoicedate), ['%m/%d/%Y %H:%M', '%m/%d/%y %H:%M', '%Y-%m-%d %H:%M:%S']) AS ts
            FROM (SELECT DISTINCT * FROM read_csv(?, header = true, all_varchar = true,
                                                  normalize_names = true))
        )
        WHERE nullif(trim(invoiceno), '') IS NOT NULL AND nullif(trim(stockcode), '') IS NOT NULL
          AND qty > 0 AND price > 0 AND ts IS NOT NULL
    ''', [csv])
    con.execute("COPY clean TO ? (FORMAT parquet, PARTITION_BY (invoice_month), COMPRESSION zstd)", [cleaned])
    con.execute("CREATE SCHEMA gold")
    con.execute('''
        CREATE TABLE gold.customers AS
        SELECT customerid, arg_max(country, n) AS country, count(*)::INTEGER AS countries_seen,
               min(first_seen) AS first_invoice_date, max(last_seen) AS last_invoice_date
        FROM (SELECT customerid, country, count(*) AS n, min(invoicedate) AS first_seen, max(invoicedate) AS last_seen
              FROM clean GROUP BY ALL)
        GROUP BY customerid''')
    con.execute('''
        CREATE TABLE gold.products AS
        SELECT stockcode, arg_max(description, n) AS description, min(first_sold) AS first_sold,
               max(last_sold) AS last_sold
        FROM (SELECT stockcode, description, count(*) AS n, min(invoicedate) AS first_sold,
                     max(invoicedate) AS last_sold FROM clean GROUP BY ALL)
        GROUP BY stockcode''')
    con.execute('''
        CREATE TABLE gold.sales_transactions AS
        SELECT invoiceno, customerid, stockcode, quantity, unitprice, invoicedate, total_sales FROM clean''')
    con.close()
""")


def floor(params: dict, work: Path) -> dict:
    csv = Path(params["csv"]) if params.get("csv") else prepare(params["scale"])
    db, cleaned = work / "floor.duckdb", work / "cleaned"

    def run() -> None:
        subprocess.run([sys.executable, "-c", FLOOR, str(csv), str(cleaned), str(db)], check=True)

    seconds, _ = timed(run)
    return {"seconds": seconds, **_figures(db, cleaned.parent)}


def _figures(db: Path, processed: Path) -> dict:
    """The gold tables' row counts and the cleaned zone's files: what both implementations must produce."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = {t: int(con.execute(f"SELECT count(*) FROM gold.{t}").fetchone()[0])  # noqa: S608
                for t in ("customers", "products", "sales_transactions")}
    finally:
        con.close()
    files = [p for p in processed.rglob("*.parquet") if "invoice_month=" in p.as_posix()]
    return {"gold_rows": rows, "cleaned_files": len(files),
            "cleaned_mb": round(sum(p.stat().st_size for p in files) / 1e6, 1)}
