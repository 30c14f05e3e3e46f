"""Path 1: Online Retail CSV -> cleaned Parquet (+ quarantine) -> star schema (customers, products, facts).

Three implementations of the same rules (``ecommerce_assets.transforms.retail``), each timed from the
CSV on disk to the five Parquet outputs on disk:

* ``product``: the product's own functions, as the assets call them (``open_csv`` checks, ``load_source``,
  ``clean``, then one engine for the star tables, reading the cleaned zone back like the gold step does);
* ``pandas``: a straightforward pandas implementation (``read_csv`` all text, vectorized rules);
* ``floor``: the rules as hand-written DuckDB SQL: one statement reading the CSV into the ruled rows,
  then the COPYs of the outputs straight from it (no file checks, no re-read of the cleaned zone).

Inputs: the full data set (541,909 rows) and a 1,083,818-row version (the data set plus a copy shifted
by two years with suffixed invoice numbers, so that the copy adds no duplicates).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from bench.common import CACHE, SHARED_RETAIL, timed

SOURCE_COLUMNS = [
    "invoiceno", "stockcode", "description", "quantity", "invoicedate", "unitprice", "customerid", "country",
]


def prepare(size: str) -> Path:
    """The CSV for ``size`` ("full" or "1m"), made once in the cache."""
    CACHE.mkdir(parents=True, exist_ok=True)
    full = CACHE / "online_retail_full.csv"
    if not full.exists():
        if not SHARED_RETAIL.exists():
            raise FileNotFoundError(f"the Online Retail data set is missing: {SHARED_RETAIL}")
        tmp = full.with_suffix(".tmp")
        with gzip.open(SHARED_RETAIL, "rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.replace(full)
    if size == "full":
        return full
    doubled = CACHE / "online_retail_1m.csv"
    if not doubled.exists():
        import duckdb

        from ecommerce_assets.transforms.files import detect_encoding

        enc = detect_encoding(full)
        lines = full.read_text(encoding=enc).splitlines(keepends=True)
        header, body = lines[0], lines[1:]
        con = duckdb.connect()
        # the copy: invoice numbers suffixed, years +2 (so that it adds no duplicate rows)
        shifted = con.execute(
            "SELECT regexp_replace(regexp_replace(l, '^([^,]*),', '\\1-2,'), '/(20)1([01]) ', '/\\12\\2 ', 'g') "
            "FROM (SELECT unnest(?) AS l)", [body]
        ).fetchall()
        tmp = doubled.with_suffix(".tmp")
        with tmp.open("w", encoding=enc, newline="") as out:
            out.write(header)
            out.writelines(body)
            out.writelines(r[0] for r in shifted)
        tmp.replace(doubled)
    return doubled


# --- product -------------------------------------------------------------------------------------------

def product(params: dict, work: Path) -> dict:
    from ecommerce_assets.storage.lake import LocalLake
    from ecommerce_assets.transforms import retail
    from ecommerce_assets.transforms.files import open_csv

    csv = Path(params["csv"]) if params.get("csv") else prepare(params["size"])
    lake = LocalLake(base_dir=str(work / "lake"))
    cleaned, quarantine = "processed/online_retail/cleaned/", "quarantine/online_retail/rows/quarantined_rows.parquet"

    def run() -> dict:
        con = lake.engine()
        tf = open_csv(csv, retail.SOURCE_COLUMNS)
        retail.load_source(con, [tf], ["raw/online_retail/" + csv.name])
        result = retail.clean(con, lake.output_uri(cleaned), lake.output_uri(quarantine))
        con.close()
        con = lake.engine()  # one engine for the star schema, as the gold step does
        retail.register_cleaned(con, lake.uri(cleaned + "*/*.parquet"))
        star = {table: retail.write_star_table(con, table, lake.output_uri(f"processed/gold/{table}.parquet"))
                for table in retail.STAR_TABLES}
        con.close()
        return {"rows_in": result.rows_in, "rows_out": result.rows_out, "star_rows": star}

    seconds, out = timed(run)
    return {"seconds": seconds, **out}  # type: ignore[dict-item]


# --- pandas --------------------------------------------------------------------------------------------

def pandas_impl(params: dict, work: Path) -> dict:
    import numpy as np
    import pandas as pd

    csv = Path(params["csv"]) if params.get("csv") else prepare(params["size"])

    def run() -> dict:
        try:
            df = pd.read_csv(csv, dtype=str, keep_default_na=False, encoding="utf-8")
        except UnicodeDecodeError:
            df = pd.read_csv(csv, dtype=str, keep_default_na=False, encoding="latin-1")
        df.columns = ["_".join(c.strip().lower().split(" ")) for c in df.columns]
        df = df[SOURCE_COLUMNS]
        rows_in = len(df)
        s = {c: df[c].str.strip() for c in ("invoiceno", "stockcode", "quantity", "unitprice", "invoicedate")}
        qty_f = pd.to_numeric(s["quantity"], errors="coerce")
        qty_ok = qty_f.notna() & (qty_f == np.floor(qty_f)) & s["quantity"].str.fullmatch(r"[+-]?\d+")
        price = pd.to_numeric(s["unitprice"], errors="coerce").round(3)
        d = s["invoicedate"]
        ts = pd.to_datetime(d.where(d.str.fullmatch(r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}")),
                            format="%m/%d/%Y %H:%M", errors="coerce")
        for pattern, fmt in ((r"\d{1,2}/\d{1,2}/\d{2} \d{1,2}:\d{2}", "%m/%d/%y %H:%M"),
                             (r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}", "%Y-%m-%d %H:%M:%S")):
            todo = ts.isna() & d.str.fullmatch(pattern)
            if todo.any():
                ts[todo] = pd.to_datetime(d[todo].str.replace("T", " "), format=fmt, errors="coerce")
        conditions = [
            df.duplicated(keep="first"),
            s["invoiceno"] == "", s["stockcode"] == "", s["quantity"] == "", s["unitprice"] == "",
            ~qty_ok, price.isna(), qty_f <= 0, price <= 0, ts.isna(),
        ]
        names = ["duplicate_row", "null_invoiceno", "null_stockcode", "null_quantity", "null_unitprice",
                 "unparseable_quantity", "unparseable_unitprice", "non_positive_quantity", "non_positive_unitprice",
                 "unparseable_invoicedate"]
        rule = pd.Series(np.select(conditions, names, default=""), index=df.index)
        keep = rule == ""

        def text(col: pd.Series) -> pd.Series:
            out = col.str.replace('"', "", regex=False).str.replace(r"[,\t]", " ", regex=True).str.strip()
            return out.where(out != "")

        clean = pd.DataFrame({
            "invoiceno": s["invoiceno"][keep],
            "stockcode": s["stockcode"][keep],
            "description": text(df["description"][keep]),
            "quantity": qty_f[keep].astype("int64"),
            "unitprice": price[keep],
            "invoicedate": ts[keep],
            "customerid": df["customerid"][keep].str.strip().str.replace(r"\.0+$", "", regex=True)
                .replace("", "UNKNOWN"),
            "country": text(df["country"][keep]),
        })
        clean["total_sales"] = (clean["quantity"] * clean["unitprice"]).round(3)
        clean["invoice_date"] = clean["invoicedate"].dt.date
        clean["invoice_month"] = clean["invoicedate"].dt.strftime("%Y-%m")
        clean.to_parquet(work / "cleaned", partition_cols=["invoice_month"], index=False, compression="zstd")
        q = df[~keep].copy()
        q["source_row"] = q.index + 1
        q["rule"] = rule[~keep]
        q.to_parquet(work / "quarantine.parquet", index=False, compression="zstd")

        cl = pd.read_parquet(work / "cleaned")
        per_country = (cl.groupby(["customerid", "country"], dropna=False)
                       .agg(n=("invoiceno", "size"), last_seen=("invoicedate", "max")).reset_index())
        per_country = per_country.sort_values(["customerid", "n", "last_seen", "country"],
                                              ascending=[True, False, False, True])
        lines = cl.groupby("customerid").agg(first_invoice_date=("invoicedate", "min"),
                                             last_invoice_date=("invoicedate", "max"),
                                             invoice_count=("invoiceno", "nunique"))
        customers = (per_country.groupby("customerid")
                     .agg(country=("country", "first"), countries_seen=("country", "nunique"))
                     .join(lines).reset_index().sort_values("customerid"))
        customers.to_parquet(work / "customers.parquet", index=False)
        per_desc = (cl[cl["description"].notna()].groupby(["stockcode", "description"])
                    .agg(n=("invoiceno", "size"), last_seen=("invoicedate", "max")).reset_index()
                    .sort_values(["stockcode", "n", "last_seen", "description"], ascending=[True, False, False, True]))
        desc = per_desc.groupby("stockcode").agg(description=("description", "first"),
                                                 description_variants=("description", "size"))
        products = (cl.groupby("stockcode").agg(first_sold=("invoicedate", "min"), last_sold=("invoicedate", "max"))
                    .join(desc).reset_index().sort_values("stockcode"))
        products.to_parquet(work / "products.parquet", index=False)
        facts = cl[["invoiceno", "customerid", "stockcode", "quantity", "unitprice", "invoicedate", "total_sales"]]
        facts.sort_values(["invoicedate", "invoiceno", "stockcode"]).to_parquet(work / "sales.parquet", index=False)
        return {"rows_in": rows_in, "rows_out": int(keep.sum()),
                "star_rows": {"customers": len(customers), "products": len(products), "sales_transactions": len(facts)}}

    seconds, out = timed(run)
    return {"seconds": seconds, **out}  # type: ignore[dict-item]


# --- the DuckDB floor -------------------------------------------------------------------------------------

FLOOR_RULED = r"""
CREATE TEMP TABLE ruled AS
SELECT *,
    CASE
        WHEN row_number() OVER (PARTITION BY invoiceno, stockcode, description, quantity, invoicedate, unitprice,
                                              customerid, country) > 1 THEN 'duplicate_row'
        WHEN inv IS NULL THEN 'null_invoiceno'
        WHEN stock IS NULL THEN 'null_stockcode'
        WHEN nullif(trim(quantity), '') IS NULL THEN 'null_quantity'
        WHEN nullif(trim(unitprice), '') IS NULL THEN 'null_unitprice'
        WHEN qty IS NULL THEN 'unparseable_quantity'
        WHEN price IS NULL THEN 'unparseable_unitprice'
        WHEN qty <= 0 THEN 'non_positive_quantity'
        WHEN price <= 0 THEN 'non_positive_unitprice'
        WHEN ts IS NULL THEN 'unparseable_invoicedate'
    END AS rule
FROM (
    SELECT *, nullif(trim(invoiceno), '') AS inv, nullif(trim(stockcode), '') AS stock,
        TRY_CAST(trim(quantity) AS BIGINT) AS qty, TRY_CAST(trim(unitprice) AS DECIMAL(18, 3)) AS price,
        coalesce(try_strptime(trim(invoicedate), ['%m/%d/%Y %H:%M', '%m/%d/%y %H:%M', '%Y-%m-%d %H:%M:%S'])) AS ts
    FROM read_csv(?, header = true, all_varchar = true)
)
"""

FLOOR_COPIES = [
    r"""COPY (SELECT inv AS invoiceno, stock AS stockcode,
            nullif(trim(regexp_replace(replace(description, '"', ''), '[,\t]', ' ', 'g')), '') AS description,
            qty AS quantity, price AS unitprice, ts AS invoicedate,
            coalesce(regexp_replace(nullif(trim(customerid), ''), '\.0+$', ''), 'UNKNOWN') AS customerid,
            nullif(trim(regexp_replace(replace(country, '"', ''), '[,\t]', ' ', 'g')), '') AS country,
            CAST(qty * price AS DECIMAL(18, 3)) AS total_sales, CAST(ts AS DATE) AS invoice_date,
            strftime(ts, '%Y-%m') AS invoice_month
        FROM ruled WHERE rule IS NULL) TO '{cleaned}' (FORMAT parquet, PARTITION_BY (invoice_month), COMPRESSION zstd)""",
    """COPY (SELECT * EXCLUDE (inv, stock, qty, price, ts) FROM ruled WHERE rule IS NOT NULL)
        TO '{quarantine}' (FORMAT parquet, COMPRESSION zstd)""",
]


def floor(params: dict, work: Path) -> dict:
    import duckdb

    from ecommerce_assets.transforms.retail import STAR_SQL

    csv = Path(params["csv"]) if params.get("csv") else prepare(params["size"])

    def run() -> dict:
        con = duckdb.connect()
        con.execute("SET memory_limit = '2GB'; SET threads = 2; SET preserve_insertion_order = false")
        con.execute(FLOOR_RULED, [str(csv)])
        cleaned, quarantine = work / "cleaned", work / "quarantine.parquet"
        for sql in FLOOR_COPIES:
            con.execute(sql.format(cleaned=cleaned, quarantine=quarantine))
        con.read_parquet(str(cleaned / "*/*.parquet"), hive_partitioning=True).create_view("cleaned", replace=True)
        star = {}
        for table, sql in STAR_SQL.items():
            con.execute(f"COPY ({sql}) TO '{work / table}.parquet' (FORMAT parquet, COMPRESSION zstd)")  # noqa: S608
            star[table] = con.execute(f"SELECT count(*) FROM '{work / table}.parquet'").fetchone()[0]  # noqa: S608
        rows_in, rows_out = con.execute("SELECT count(*), count(*) FILTER (WHERE rule IS NULL) FROM ruled").fetchone()
        return {"rows_in": rows_in, "rows_out": rows_out, "star_rows": star}

    seconds, out = timed(run)
    return {"seconds": seconds, **out}  # type: ignore[dict-item]
