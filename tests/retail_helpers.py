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
    out.mkdir(exist_ok=True)
    result = retail.clean(con, str(out), str(tmp_path / "quarantine.parquet"))
    cleaned = con.execute(
        "SELECT * FROM read_parquet(?, hive_partitioning = true) ORDER BY invoicedate, invoiceno, stockcode",
        [str(out / "*/*.parquet")],
    ).to_arrow_table().to_pylist() if result.rows_out else []
    quarantined = con.execute(
        "SELECT * FROM read_parquet(?) ORDER BY source_file, source_row", [str(tmp_path / "quarantine.parquet")]
    ).to_arrow_table().to_pylist()
    return result, cleaned, quarantined
