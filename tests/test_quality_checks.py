"""The quality rules behind the asset checks, called on small tables with known defects."""

from __future__ import annotations

import dagster as dg
import duckdb
import pandas as pd
import pytest

from ecommerce_assets.defs.retail.checks import reconcile
from ecommerce_assets.lib import quality


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    lines = pd.DataFrame({  # noqa: F841 - registered by name below
        "invoiceno": ["1", None, "3", " ", "5"],
        "quantity": [1, 2, -3, 0, 5],
        "unitprice": [1.0, 0.0, 2.0, 2.0, None],
        "customerid": ["A", "UNKNOWN", "UNKNOWN", "B", "A"],
        "stockcode": ["S1", "S2", "S9", "S1", "S1"],
    })
    products = pd.DataFrame({"stockcode": ["S1", "S2", "S2"]})  # noqa: F841
    c.register("lines", lines)
    c.register("products", products)
    return c


def test_no_nulls_counts_null_and_blank(con: duckdb.DuckDBPyConnection) -> None:
    result = quality.no_nulls(con, "lines", "invoiceno")
    assert not result.passed and result.metadata["failing_rows"].value == 2
    assert quality.no_nulls(con, "lines", "customerid").passed


def test_all_positive_flags_zero_negative_and_null(con: duckdb.DuckDBPyConnection) -> None:
    q = quality.all_positive(con, "lines", "quantity", "invoiceno")
    assert not q.passed and q.metadata["failing_rows"].value == 2
    p = quality.all_positive(con, "lines", "unitprice", "invoiceno")
    assert p.metadata["failing_rows"].value == 2  # 0.0 and NULL
    assert sorted(s[0] or "" for s in p.metadata["samples"].value) == ["", "5"]


def test_unique_key(con: duckdb.DuckDBPyConnection) -> None:
    r = quality.unique_key(con, "products", ["stockcode"])
    assert not r.passed and r.metadata["duplicated_keys"].value == 1
    con.execute("CREATE TABLE ok AS SELECT DISTINCT stockcode FROM products")
    assert quality.unique_key(con, "ok", ["stockcode"]).passed


def test_references_finds_orphans(con: duckdb.DuckDBPyConnection) -> None:
    r = quality.references(con, "lines", "stockcode", "products", "stockcode")
    assert not r.passed and r.metadata["samples"].value == ["S9"]


def test_share_at_most_is_a_warning(con: duckdb.DuckDBPyConnection) -> None:
    r = quality.share_at_most(con, "lines", "customerid", "UNKNOWN", 0.30)
    assert not r.passed and r.severity == dg.AssetCheckSeverity.WARN
    assert r.metadata["share"].value == pytest.approx(0.4)
    assert quality.share_at_most(con, "lines", "customerid", "UNKNOWN", 0.5).passed


def test_reconcile_detects_lost_rows(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE q AS SELECT * FROM (VALUES ('duplicate_row'), ('null_invoiceno')) t(rule)")
    good = {"rows_in": 7, "removed": {"duplicate_row": 1, "null_invoiceno": 1, "null_stockcode": 0}}
    assert reconcile(con, good, "lines", "q").passed
    lost = {"rows_in": 8, "removed": good["removed"]}
    assert not reconcile(con, lost, "lines", "q").passed
    wrong_rule = {"rows_in": 7, "removed": {"duplicate_row": 2}}
    assert not reconcile(con, wrong_rule, "lines", "q").passed
