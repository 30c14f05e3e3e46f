"""PostgresWarehouse and RedshiftWarehouse on a real PostgreSQL server, loading Parquet from S3 (moto).

Redshift-only statements (DISTKEY/SORTKEY DDL, COPY ... IAM_ROLE ... FORMAT AS PARQUET) cannot run on
PostgreSQL: they are checked with sqlglot's Redshift parser; the rest of the Redshift path (staging,
merge, transactions) runs for real.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from ecommerce_assets.storage.warehouses.postgres import PostgresWarehouse, postgres_type, to_pyformat
from ecommerce_assets.storage.warehouses.redshift import RedshiftWarehouse

ROLE = "arn:aws:iam::123456789012:role/ecommerce-redshift-copy"


def put_parquet(lake, key: str, table: pa.Table) -> str:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return lake.write_bytes(key, buf.getvalue())


def typed_table() -> pa.Table:
    return pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),
        "small": pa.array([1, None, 3], pa.int16()),
        "name": pa.array(["a", "", None], pa.string()),
        "price": pa.array([Decimal("1.50"), Decimal("-2.25"), None], pa.decimal128(10, 2)),
        "ratio": pa.array([0.5, None, 2.0], pa.float64()),
        "flag": pa.array([True, False, None], pa.bool_()),
        "day": pa.array([dt.date(2010, 12, 1), None, dt.date(2011, 1, 2)], pa.date32()),
        "at": pa.array([dt.datetime(2010, 12, 1, 8, 26), None, dt.datetime(2011, 1, 2, 23, 59, 59)],
                       pa.timestamp("us")),
        "tags": pa.array([["x", "y"], [], None], pa.list_(pa.string())),
        "blob": pa.array([b"\x00\x01", None, b"ab"], pa.binary()),
    })


def test_placeholders_become_pyformat_outside_quotes():
    assert to_pyformat("SELECT * FROM t WHERE a = ? AND b LIKE '%?%' AND c = ?") == \
        "SELECT * FROM t WHERE a = %s AND b LIKE '%%?%%' AND c = %s"


def test_replace_table_maps_arrow_types_and_values(s3_lake, postgres_db):
    source = typed_table()
    uri = put_parquet(s3_lake, "processed/typed/part-0.parquet", source)
    wh = PostgresWarehouse(dsn=postgres_db, lake=s3_lake)
    assert wh.replace_table("gold.typed", [uri]) == 3
    assert wh.table_exists("gold.typed") and not wh.table_exists("gold.nothing")

    with psycopg.connect(postgres_db) as con:
        types = dict(con.execute(
            "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c "
            "JOIN pg_attribute a ON a.attrelid = 'gold.typed'::regclass AND a.attname = c.column_name "
            "WHERE table_schema = 'gold' AND table_name = 'typed'").fetchall())
        rows = con.execute("SELECT id, small, name, price, ratio, flag, day, at, tags, blob FROM gold.typed "
                           "ORDER BY id").fetchall()
    assert types == {f.name: postgres_type(f.type) for f in source.schema} | {"at": "timestamp without time zone"}
    assert types["price"] == "numeric(10,2)" and types["tags"] == "jsonb" and types["small"] == "smallint"
    expected = source.to_pylist()
    for row, want in zip(rows, expected, strict=True):
        assert row[:8] == tuple(want[c] for c in ["id", "small", "name", "price", "ratio", "flag", "day", "at"])
        assert row[8] == want["tags"]  # jsonb array comes back as a list
        assert (bytes(row[9]) if row[9] is not None else None) == want["blob"]
    assert rows[1][2] == "" and rows[2][2] is None  # empty string and NULL stay distinct

    # replacing again gives the new rows only, in one transaction
    uri2 = put_parquet(s3_lake, "processed/typed2/part-0.parquet", source.slice(0, 1))
    assert wh.replace_table("gold.typed", [uri2]) == 1
    assert wh.query("SELECT id FROM gold.typed").column("id").to_pylist() == [1]


def test_replace_rows_is_an_idempotent_upsert(s3_lake, postgres_db):
    wh = PostgresWarehouse(dsn=postgres_db, lake=s3_lake)
    first = pa.table({"k": [1, 2, 3], "day": ["d1", "d1", "d1"], "v": [10, 20, 30]})
    u1 = put_parquet(s3_lake, "processed/facts/date=d1/part-0.parquet", first)
    assert wh.replace_rows("gold.facts", [u1], ["k", "day"]) == 3
    assert wh.replace_rows("gold.facts", [u1], ["k", "day"]) == 3  # re-run: same rows, no duplicates

    second = pa.table({"v": [200, 40], "day": ["d1", "d1"], "k": [2, 4]})  # columns in another order
    u2 = put_parquet(s3_lake, "processed/facts/date=d2/part-0.parquet", second)
    assert wh.replace_rows("gold.facts", [u2], ["k", "day"]) == 4
    got = wh.query("SELECT k, v FROM gold.facts WHERE v > ? ORDER BY k", [0])
    assert list(zip(got.column("k").to_pylist(), got.column("v").to_pylist(), strict=True)) == [(1, 10), (2, 200), (3, 30), (4, 40)]
    assert wh.row_count("gold.facts") == 4

    with pytest.raises(ValueError, match="key column"):
        wh.replace_rows("gold.facts", [u2], ["missing"])


def test_failed_load_rolls_back(s3_lake, postgres_db):
    wh = PostgresWarehouse(dsn=postgres_db, lake=s3_lake)
    good = put_parquet(s3_lake, "processed/r/good.parquet", pa.table({"k": [1], "v": ["ok"]}))
    wh.replace_table("gold.r", [good])
    # PostgreSQL refuses NUL in text: the COPY fails after the DROP TABLE, inside the transaction
    bad = put_parquet(s3_lake, "processed/r/bad.parquet", pa.table({"k": [1, 2], "v": ["a", "b\x00c"]}))
    with pytest.raises(psycopg.Error):
        wh.replace_table("gold.r", [bad])
    with pytest.raises(psycopg.Error):
        wh.replace_rows("gold.r", [bad], ["k"])
    assert wh.query("SELECT k, v FROM gold.r").to_pylist() == [{"k": 1, "v": "ok"}]


def _parse(sql: str) -> exp.Expression:
    tree = sqlglot.parse_one(sql, read="redshift")
    assert not isinstance(tree, exp.Command), f"sqlglot did not understand: {sql}"
    return tree


def star_schema_tables() -> dict[str, pa.Table]:
    return {
        "customers": pa.table({"customerid": [1, 2], "country": ["UK", "FR"]}),
        "products": pa.table({"stockcode": ["A1", "B2"], "description": ["cup", "mug"]}),
        "sales_transactions": pa.table({
            "invoiceno": ["1", "2"], "stockcode": ["A1", "B2"], "customerid": [1, 2],
            "invoicedate": pa.array([dt.datetime(2011, 1, 1), dt.datetime(2011, 1, 2)], pa.timestamp("us")),
            "quantity": [3, 4]}),
    }


def test_redshift_ddl_and_copy_validated_and_merge_runs_on_postgres(s3_lake, postgres_db):
    wh = RedshiftWarehouse(dsn=postgres_db, lake=s3_lake, iam_role=ROLE, postgres_compat=True)
    for name, table in star_schema_tables().items():
        uri = put_parquet(s3_lake, f"processed/star/{name}/part-0.parquet", table)
        assert wh.replace_table(f"gold.{name}", [uri]) == 2
        assert wh.replace_rows(f"gold.{name}", [uri], [table.column_names[0]]) == 2  # idempotent merge

    creates = [_parse(s) for s in wh.redshift_statements if s.startswith("CREATE")]
    copies = [_parse(s) for s in wh.redshift_statements if s.startswith("COPY")]
    assert len(creates) == 3 and len(copies) == 6  # one COPY per replace and per merge
    keys = {}
    for tree in creates:
        assert isinstance(tree, exp.Create)
        dist = tree.find(exp.DistKeyProperty)
        sort = tree.find(exp.SortKeyProperty)
        keys[tree.this.this.name] = (dist.this.name if dist else None,
                                     [c.name for c in sort.this] if sort else None)
    assert keys == {"customers": ("customerid", None), "products": (None, ["stockcode"]),
                    "sales_transactions": ("customerid", ["invoicedate"])}
    for tree in copies:
        assert isinstance(tree, exp.Copy)
        assert tree.find(exp.Credentials).args["iam_role"].this == ROLE
        sql = tree.sql("redshift")
        assert "FORMAT PARQUET" in sql and "MANIFEST" in sql
        manifest_uri = tree.args["files"][0].this
        entries = json.loads(s3_lake.read_bytes(s3_lake.key_of(manifest_uri)))["entries"]
        assert all(e["mandatory"] and e["meta"]["content_length"] == s3_lake.stat(s3_lake.key_of(e["url"])).size
                   for e in entries)

    got = wh.query("SELECT customerid, quantity FROM gold.sales_transactions ORDER BY customerid")
    assert got.column("quantity").to_pylist() == [3, 4]


def test_redshift_rejects_a_key_column_the_table_lacks(s3_lake, postgres_db):
    wh = RedshiftWarehouse(dsn=postgres_db, lake=s3_lake, iam_role=ROLE, postgres_compat=True)
    uri = put_parquet(s3_lake, "processed/bad/part-0.parquet", pa.table({"id": [1]}))
    with pytest.raises(ValueError, match="customerid"):
        wh.replace_table("gold.customers", [uri])
