"""Helpers for the Online Retail tests: write small CSV files and run the real transforms on them."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

from ecommerce_assets.transforms import retail
from ecommerce_assets.transforms.files import open_csv

HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
GOOD = ["536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "6", "12/1/2010 8:26", "2.55", "17850.0",
        "United Kingdom"]


def write_csv(path: Path, rows: list[list[str]], header: list[str] | None = None, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding=encoding) as fh:
        writer = csv.writer(fh)
        writer.writerow(header or HEADER)
        writer.writerows(rows)
    return path


def run_clean(tmp_path: Path, *files: Path) -> tuple[retail.CleanResult, list[dict], list[dict]]:
    """Clean ``files`` with the product's code; return the result, cleaned rows and quarantined rows."""
    con = duckdb.connect()
    text_files = [open_csv(f, retail.SOURCE_COLUMNS) for f in files]
    retail.load_source(con, text_files, [f.name for f in files])
    out = tmp_path / "cleaned"
    out.mkdir(parents=True, exist_ok=True)
    result = retail.clean(con, str(out), str(tmp_path / "quarantine.parquet"))
    cleaned = con.execute(
        "SELECT * FROM read_parquet(?, hive_partitioning = true) ORDER BY invoicedate, invoiceno, stockcode",
        [str(out / "*/*.parquet")],
    ).to_arrow_table().to_pylist() if result.rows_out else []
    quarantined = con.execute(
        "SELECT * FROM read_parquet(?) ORDER BY source_file, source_row", [str(tmp_path / "quarantine.parquet")]
    ).to_arrow_table().to_pylist()
    return result, cleaned, quarantined


_SPARK: list = []  # one local Spark session per test process (its JVM starts once)


def spark_session():  # noqa: ANN201 (pyspark's SparkSession)
    """The local Spark session the Spark engine's job would make (``local[2]``), started once per process."""
    if not _SPARK:
        from ecommerce_assets.spark_jobs.spark_common import spark_session as make

        _SPARK.append(make("local[2]", app_name="ecommerce-assets tests"))
    return _SPARK[0]


def run_clean_spark(tmp_path: Path, *files: Path) -> tuple[retail.CleanResult, list[dict], list[dict]]:
    """Clean ``files`` with the Spark engine's job (in this process, on local Spark), given the extras the asset
    gives it; return what ``run_clean`` returns."""
    from ecommerce_assets.spark_jobs.retail_clean import clean
    from ecommerce_assets.transforms.files import engine_file, standardize_column

    sources = []
    for f in files:
        tf = open_csv(f, retail.SOURCE_COLUMNS)
        path, encoding = engine_file(tf).__enter__()  # a temporary copy only for Windows-1252, none here
        sources.append((f.name, path, encoding, retail.column_names(tf)))
    assert standardize_column  # the names above are the product's own standardization
    extras = retail.spark_job_extras(sources, str(tmp_path / "spark_cleaned"), str(tmp_path / "spark_quarantine"),
                                     None)
    counts = clean(spark_session(), extras)
    result = retail.CleanResult(rows_in=counts["rows_in"], rows_out=counts["rows_out"], removed=counts["removed"])
    con = duckdb.connect()
    cleaned = con.execute(
        "SELECT * FROM read_parquet(?, hive_partitioning = false) ORDER BY invoicedate, invoiceno, stockcode",
        [str(tmp_path / "spark_cleaned" / "*" / "*.parquet")],
    ).to_arrow_table().to_pylist() if result.rows_out else []
    quarantined = con.execute(
        "SELECT * FROM read_parquet(?) ORDER BY source_file, source_row", [str(tmp_path / "spark_quarantine" / "*.parquet")]
    ).to_arrow_table().to_pylist()
    return result, cleaned, quarantined
