"""The buyer's sourcing report: every seller product, the supplied ones ranked by estimated margin, then the
ones the distributor cannot supply, as an Arrow table (``REPORT_SQL`` over the matches' Parquet) and an HTML page.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

# parameters: the matches' Parquet URI, then the unmatched products' Parquet URI
REPORT_SQL = """
SELECT 'supplied' AS status, seller_id, asin, product_title, seller_price, match_method, match_score,
       distributor_sku, distributor_title, distributor_cost, quantity_available, marketplace_fee,
       estimated_margin, margin_pct, roi
FROM read_parquet(?)
UNION ALL
SELECT 'not_supplied', seller_id, asin, product_title, seller_price, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL
FROM read_parquet(?)
ORDER BY status DESC, estimated_margin DESC NULLS LAST, seller_id, asin
"""
HTML_ROWS = 500


def render_html(table: pa.Table, fee_rate: float, date: str) -> str:
    """The buyer's HTML page: supplied products ranked by margin, then the unsupplied ones."""
    rows = table.to_pylist()
    supplied = [r for r in rows if r["status"] == "supplied"]
    unsupplied = [r for r in rows if r["status"] != "supplied"]

    def cell(v: object) -> str:
        return "" if v is None else html.escape(str(v))

    def tbl(items: list[dict], cols: list[str]) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{cell(r[c])}</td>" for c in cols) + "</tr>" for r in items[:HTML_ROWS])
        more = f"<p>{len(items) - HTML_ROWS} more in the CSV.</p>" if len(items) > HTML_ROWS else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"

    sup_cols = ["seller_id", "asin", "product_title", "seller_price", "distributor_sku", "distributor_cost",
                "quantity_available", "estimated_margin", "margin_pct", "roi", "match_method", "match_score"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sourcing report</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#eee}</style></head><body>"
        f"<h1>Sourcing report {html.escape(date)}</h1>"
        f"<p>{len(supplied)} of {len(rows)} seller products can be supplied by the distributor. Margin = price "
        f"- {fee_rate:.0%} marketplace fee - distributor cost; ROI = margin / cost.</p>"
        f"<h2>Supplied, ranked by estimated margin</h2>{tbl(supplied, sup_cols)}"
        f"<h2>Not supplied</h2>{tbl(unsupplied, ['seller_id', 'asin', 'product_title', 'seller_price'])}"
        "</body></html>"
    )
