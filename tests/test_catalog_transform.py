"""Cleaning catalog pages: envelope, the kept columns, prices, ratings, quarantine, dedupe, CSV/Parquet."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecommerce_assets.dev.catalog_sim import CatalogSimulator, gtin_check_digit
from ecommerce_assets.transforms import catalog as tf
from ecommerce_assets.transforms.matching import install_macros

DATE = "2024-05-01"


def page(products, total=None, status="OK") -> bytes:
    return json.dumps({"status": status, "request_id": "r", "parameters": {},
                       "data": {"total_products": total if total is not None else len(products), "country": "US",
                                "domain": "www.amazon.com", "products": products}}).encode()


def product(asin: str, **fields) -> dict:
    base = {"asin": asin, "product_title": f"Title {asin}", "product_price": "$10.00", "currency": "USD",
            "product_star_rating": "4.5", "product_num_ratings": 10, "is_prime": True, "has_variations": False}
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("raw", "expected", "ok"),
    [
        ("$1,299.99", Decimal("1299.99"), True),
        ("$10.99 - $15.99", Decimal("10.99"), True),  # a range -> its lower bound
        ("$15.99 – $10.99", Decimal("10.99"), True),
        ("$5", Decimal("5.00"), True),
        ("USD 1,000", Decimal("1000.00"), True),
        (12.5, Decimal("12.50"), True),
        ("$0.00", Decimal("0.00"), True),  # a real zero stays zero
        (None, None, True),  # missing -> NULL, never 0
        ("", None, True),
        ("Currently unavailable", None, False),
        ("$1,29.99", None, False),
        ("$1 - $2 - $3", None, False),
        (True, None, False),
        (-3, None, False),
    ],
)
def test_parse_price(raw, expected, ok) -> None:
    assert tf.parse_price(raw) == (expected, ok)


@pytest.mark.parametrize(
    ("raw", "expected", "ok"),
    [("4.5", Decimal("4.5"), True), ("4.56", Decimal("4.6"), True), (3, Decimal("3.0"), True),
     (None, None, True), ("6.0", None, False), ("great", None, False), ("-1", None, False)],
)
def test_parse_rating(raw, expected, ok) -> None:
    assert tf.parse_rating(raw) == (expected, ok)


def test_gtin14_python_and_sql_agree() -> None:
    rng = random.Random(5)
    codes: list[str | None] = [None, "", "000000000000", "abc", "4006381333931", "96385074", "12345"]
    for _ in range(60):
        body = "".join(str(rng.randint(0, 9)) for _ in range(11))
        upc = body + gtin_check_digit(body)
        codes += [upc, "0" + upc, "00" + upc, upc[:-1] + str((int(upc[-1]) + 1) % 10), f"{upc[:6]}-{upc[6:]}"]
    con = duckdb.connect()
    install_macros(con)
    sql_values = [con.execute("SELECT gtin14(?)", [c]).fetchone()[0] for c in codes]
    assert sql_values == [tf.gtin14(c) for c in codes]
    assert tf.gtin14("4006381333931") == "04006381333931"  # a real EAN-13
    assert tf.gtin14("4006381333932") is None  # wrong check digit
    assert sum(v is not None for v in sql_values) > 100


def test_bad_pages_are_named_by_rule() -> None:
    assert tf.clean_page(b'{"status": "OK", "data": {', "S", DATE, page=1).page_error.rule == "malformed_json"
    err = tf.clean_page(page([], status="ERROR"), "S", DATE, page=1).page_error
    assert err.rule == "bad_envelope"
    missing = json.dumps({"status": "OK", "data": {"total_products": 10}}).encode()
    res = tf.clean_page(missing, "S", DATE, page=2, source="raw/x/page=2.json")
    assert res.page_error.rule == "missing_products" and res.page_error.field == "data.products"
    assert res.page_error.file == "raw/x/page=2.json" and res.total_products == 10
    assert not res.ok and res.rows == [] and res.issues()[0]["rule"] == "missing_products"


def test_products_missing_fields_bad_rows_and_field_issues() -> None:
    products = [
        {"asin": "B000000001"},  # every other field missing
        "not an object",
        {"product_title": "no asin"},
        {"asin": "short"},
        product("b000000002", product_price="call for price", product_star_rating="n/a", product_num_ratings="1,234"),
        product("B000000003", extra_field={"nested": 1}, upc="036000291452"),
    ]
    res = tf.clean_page(page(products), "SELLER1", DATE, page=3, source="p3.json")
    assert res.ok and res.products_in == 6
    assert [(i.row, i.rule) for i in res.quarantined] == [(2, "not_an_object"), (3, "missing_asin"), (4, "invalid_asin")]
    rows = {r["asin"]: r for r in res.rows}
    assert set(rows) == {"B000000001", "B000000002", "B000000003"}  # asin upper-cased
    bare = rows["B000000001"]
    assert all(bare[c] is None for c in tf.KEPT_COLUMNS if c != "asin")
    assert bare["seller_id"] == "SELLER1" and str(bare["snapshot_date"]) == DATE
    issues = {(i.row, i.field, i.rule) for i in res.field_issues}
    assert issues == {(5, "product_price", "unparseable_price"), (5, "product_star_rating", "unparseable_rating")}
    assert rows["B000000002"]["product_price"] is None and rows["B000000002"]["product_num_ratings"] == 1234
    assert rows["B000000003"]["product_gtin"] == "00036000291452"
    table = res.table()
    assert table.schema.field("product_star_rating").type == pa.decimal128(2, 1)
    assert table.num_rows == 3


def test_snapshot_dedupes_by_asin_and_reconciles(tmp_path: Path) -> None:
    p1 = tf.clean_page(page([product("B000000001", product_price=None), product("B000000002"), "junk"]),
                       "S", DATE, page=1, source="p1")
    p2 = tf.clean_page(page([product("B000000001", product_price="$1,299.99"), product("B000000002", product_price="$3")]),
                       "S", DATE, page=2, source="p2")
    bad = tf.clean_page(b"<html>oops", "S", DATE, page=3, source="p3")
    con = duckdb.connect()
    res = tf.build_snapshot(con, [p1, p2, bad], str(tmp_path / "s.csv"), str(tmp_path / "s.parquet"))
    assert res.pages == 3 and res.bad_pages == 1
    assert (res.products_in, res.rows_out, res.quarantined_rows, res.removed) == (5, 2, 1, {"duplicate_asin": 2})
    assert res.reconciles and res.duplicate_asins_after_dedupe == 0
    out = pq.read_table(tmp_path / "s.parquet")
    assert out.column_names == tf.OUTPUT_COLUMNS
    # the rows the asset commits to the Iceberg table: the same rows, typed as tf.SCHEMA
    assert res.table.schema.equals(tf.SCHEMA) and res.table.to_pylist() == out.to_pylist()
    assert res.partition() == {"seller_id": "S", "snapshot_date": dt.date.fromisoformat(DATE)}
    prices = dict(zip(out.column("asin").to_pylist(), out.column("product_price").to_pylist(), strict=True))
    # B..1: the priced copy (page 2) wins over the unpriced one; B..2: the first occurrence (page 1)
    assert prices == {"B000000001": Decimal("1299.99"), "B000000002": Decimal("10.00")}
    with open(tmp_path / "s.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == tf.OUTPUT_COLUMNS and len(rows) == 3
    assert {r[0]: r[2] for r in rows[1:]} == {"B000000001": "1299.99", "B000000002": "10.00"}
    assert {r.get("rule") for r in res.issues} == {"not_an_object", "malformed_json"}


def test_csv_and_parquet_bytes_for_the_lambda() -> None:
    res = tf.clean_page(page([product("B000000001", product_price=None, delivery="Fri, \"fast\", free")]), "S", DATE, page=1)
    table = res.table()
    rows = list(csv.reader(io.StringIO(tf.to_csv_bytes(table).decode())))
    assert rows[0] == tf.OUTPUT_COLUMNS
    record = dict(zip(rows[0], rows[1], strict=True))
    assert record["product_price"] == "" and record["delivery"] == 'Fri, "fast", free'  # NULL -> empty field
    back = pq.read_table(io.BytesIO(tf.to_parquet_bytes(table)))
    assert back.column_names == tf.OUTPUT_COLUMNS and back.column("product_price").to_pylist() == [None]


def test_every_simulator_page_cleans_and_reconciles(tmp_path: Path) -> None:
    """Pages fetched over HTTP from the simulator: nulls, ranges, extras, duplicates across pages."""
    import requests

    with CatalogSimulator(port=0) as sim:
        results = []
        for seller in sim.catalog.sellers:
            for n in range(1, 4):
                body = requests.get(f"{sim.url}/search", params={"seller_id": seller, "page": n},
                                    headers={"x-rapidapi-key": "k"}, timeout=10).content
                results.append(tf.clean_page(body, seller, DATE, page=n, source=f"{seller}/{n}"))
    con = duckdb.connect()
    for seller in {r.seller_id for r in results}:
        mine = [r for r in results if r.seller_id == seller]
        res = tf.build_snapshot(con, mine, str(tmp_path / f"{seller}.csv"), str(tmp_path / f"{seller}.parquet"))
        distinct = len({r["asin"] for p in mine for r in p.rows})
        assert res.reconciles and res.rows_out == distinct and res.removed["duplicate_asin"] > 0
        assert res.total_products == res.products_in and res.bad_pages == 0
        out = pq.read_table(tmp_path / f"{seller}.parquet")
        assert out.column("product_price").null_count > 0  # missing prices stay NULL
        assert min(v for v in out.column("product_price").to_pylist() if v is not None) > 0  # never a silent 0
        assert out.column("product_gtin").null_count < out.num_rows
