"""Glue registration and the Athena warehouse against moto's server.

moto does not execute SQL: Athena tests check what we register in Glue, the Parquet versions we write,
and the shape of our Athena API calls; query results are results moto is told to return (its
``/moto-api/static/athena/query-results`` endpoint), which exercises our parsing and typing of them.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import boto3
import pyarrow as pa
import pytest
import requests

from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.build import build_glue_catalog, build_warehouse
from ecommerce_assets.storage.warehouses.athena import AthenaWarehouse, athena_literal
from ecommerce_assets.storage.warehouses.base import sql_literal


def write_sales(lake, prefix: str, days: list[str], rows_per_day: int = 5, offset: int = 0) -> None:
    con = lake.engine()
    con.execute(
        "COPY (SELECT d.day AS date, i + ? AS invoiceno, (i % 7)::INTEGER AS quantity, (i * 0.25)::DOUBLE AS price, "  # noqa: S608
        "TIMESTAMP '2011-01-01 10:00:00' AS invoicedate FROM range(?) r(i), unnest(?::VARCHAR[]) d(day)) "
        f"TO {sql_literal(lake.uri(prefix))} (FORMAT parquet, PARTITION_BY (date), OVERWRITE_OR_IGNORE)",
        [offset, rows_per_day, days],
    )
    con.close()


def test_register_lake_prefix_is_idempotent_and_adds_new_partitions(s3_lake, aws_env):
    glue = build_glue_catalog(get_settings())
    write_sales(s3_lake, "processed/retail/sales", ["2011-01-01", "2011-01-02"])
    first = glue.register_lake_prefix(s3_lake, "processed/retail/sales", "ecommerce", "sales")
    assert (first.action, first.partitions_added, first.partitions_total) == ("created", 2, 2)

    table = glue.get_table("ecommerce", "sales")
    sd = table["StorageDescriptor"]
    assert sd["Location"] == s3_lake.uri("processed/retail/sales/")
    assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == [
        ("invoiceno", "bigint"),
        ("quantity", "int"),
        ("price", "double"),
        ("invoicedate", "timestamp"),
    ]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["date"]
    assert sd["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")

    again = glue.register_lake_prefix(s3_lake, "processed/retail/sales", "ecommerce", "sales")
    assert (again.action, again.partitions_added, again.partitions_total) == ("unchanged", 0, 2)

    write_sales(s3_lake, "processed/retail/sales", ["2011-01-03"])
    third = glue.register_lake_prefix(s3_lake, "processed/retail/sales", "ecommerce", "sales")
    assert (third.action, third.partitions_added) == ("unchanged", 1)
    assert glue.partitions("ecommerce", "sales") == [["2011-01-01"], ["2011-01-02"], ["2011-01-03"]]
    parts = boto3.client("glue").get_partitions(DatabaseName="ecommerce", TableName="sales")["Partitions"]
    assert {p["StorageDescriptor"]["Location"] for p in parts} == {
        s3_lake.uri(f"processed/retail/sales/date={d}/") for d in ["2011-01-01", "2011-01-02", "2011-01-03"]
    }

    # an unpartitioned prefix; then a schema change updates the table
    s3_lake.engine().execute(f"COPY (SELECT 1 AS a) TO '{s3_lake.uri('processed/dim/x.parquet')}'")
    assert glue.register_lake_prefix(s3_lake, "processed/dim", "ecommerce", "dim").action == "created"
    s3_lake.engine().execute(f"COPY (SELECT 1 AS a, 'b' AS b) TO '{s3_lake.uri('processed/dim/x.parquet')}'")
    assert glue.register_lake_prefix(s3_lake, "processed/dim", "ecommerce", "dim").action == "updated"
    assert [c["Name"] for c in glue.get_table("ecommerce", "dim")["StorageDescriptor"]["Columns"]] == ["a", "b"]


def test_athena_replace_table_and_rows_write_versions_and_swap_glue(s3_lake, aws_env, monkeypatch):
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "athena")
    wh = build_warehouse(get_settings(), s3_lake)
    assert isinstance(wh, AthenaWarehouse)
    write_sales(s3_lake, "processed/in1", ["2011-01-01", "2011-01-02"], rows_per_day=3)
    uris = [s3_lake.uri(o.key) for o in s3_lake.list_objects("processed/in1/")]
    assert wh.replace_table("gold.sales", uris) == 6
    assert wh.replace_table("gold.sales", uris) == 6  # idempotent
    assert wh.table_exists("gold.sales") and wh.row_count("gold.sales") == 6
    versions = s3_lake.list_prefixes("warehouse/gold/sales/")
    assert len(versions) == 1  # the older version was removed after the swap
    location = boto3.client("glue").get_table(DatabaseName="gold", Name="sales")["Table"]["StorageDescriptor"][
        "Location"
    ]
    assert location == s3_lake.uri(versions[0])

    # upsert: invoice 1 and 2 of 2011-01-02 change, 2011-01-03 is new
    write_sales(s3_lake, "processed/in2", ["2011-01-02"], rows_per_day=2, offset=1)
    write_sales(s3_lake, "processed/in2", ["2011-01-03"], rows_per_day=1)
    new = [s3_lake.uri(o.key) for o in s3_lake.list_objects("processed/in2/")]
    assert wh.replace_rows("gold.sales", new, ["date", "invoiceno"]) == 6 - 2 + 3
    assert wh.replace_rows("gold.sales", new, ["date", "invoiceno"]) == 7
    con = s3_lake.engine()
    got = con.execute(
        "SELECT date::VARCHAR, invoiceno FROM read_parquet(?, hive_partitioning = true) ORDER BY ALL",
        [s3_lake.uri(s3_lake.list_prefixes("warehouse/gold/sales/")[0] + "*/*.parquet")],
    ).fetchall()
    want = sorted([("2011-01-01", i) for i in range(3)] + [("2011-01-02", i) for i in range(3)] + [("2011-01-03", 0)])
    assert got == want
    assert build_glue_catalog(get_settings()).partitions("gold", "sales") == [
        ["2011-01-01"],
        ["2011-01-02"],
        ["2011-01-03"],
    ]


def column_info(name: str, athena_type: str, precision: int, scale: int = 0) -> dict:
    """A result column's metadata as Athena's GetQueryResults gives it (every field, as the real service does)."""
    return {
        "CatalogName": "hive",
        "SchemaName": "",
        "TableName": "",
        "Name": name,
        "Label": name,
        "Type": athena_type,
        "Precision": precision,
        "Scale": scale,
        "Nullable": "UNKNOWN",
        "CaseSensitive": False,
    }


def seed_results(moto_endpoint: str, columns: list[dict], rows: list[list[str | None]]) -> None:
    """Queue one result set on moto's server: the next query's GetQueryResults answers it (header row first)."""

    def row(values: list[str | None]) -> dict:
        return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}

    body = {
        "region": "us-east-1",
        "results": [{"rows": [row([c["Name"] for c in columns]), *map(row, rows)], "column_info": columns}],
    }
    response = requests.post(f"{moto_endpoint}/moto-api/static/athena/query-results", json=body, timeout=10)
    assert response.status_code == 201


def test_athena_query_calls_the_api_and_types_results(s3_lake, aws_env, moto_endpoint, monkeypatch):
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "athena")
    monkeypatch.setenv("ECOMMERCE_ATHENA_WORKGROUP", "analytics")
    athena = boto3.client("athena")
    athena.create_work_group(Name="analytics")
    wh = build_warehouse(get_settings(), s3_lake)
    header = {"Data": [{"VarCharValue": "country"}, {"VarCharValue": "n"}, {"VarCharValue": "revenue"}]}
    rows = [
        {"Data": [{"VarCharValue": "UK"}, {"VarCharValue": "12"}, {"VarCharValue": "3.5"}]},
        {"Data": [{"VarCharValue": "FR"}, {"VarCharValue": "1"}, {}]},
    ]
    info = [
        column_info("country", "varchar", 2147483647),
        column_info("n", "bigint", 19),
        column_info("revenue", "double", 17),
    ]
    response = requests.post(
        f"{moto_endpoint}/moto-api/static/athena/query-results",
        json={"region": "us-east-1", "results": [{"rows": [header, *rows], "column_info": info}]},
        timeout=10,
    )
    assert response.status_code == 201

    sql = "SELECT country, count(*) AS n, sum(price) AS revenue FROM gold.sales WHERE day >= ? AND country <> ?"
    result = wh.query(sql, ["2011-01-01", "O'Hare"])
    assert result.schema == pa.schema([("country", pa.string()), ("n", pa.int64()), ("revenue", pa.float64())])
    assert result.to_pylist() == [
        {"country": "UK", "n": 12, "revenue": 3.5},
        {"country": "FR", "n": 1, "revenue": None},
    ]

    executions = athena.list_query_executions(WorkGroup="analytics")["QueryExecutionIds"]
    assert len(executions) == 1
    ex = athena.get_query_execution(QueryExecutionId=executions[0])["QueryExecution"]
    assert ex["Query"] == sql
    assert ex["ExecutionParameters"] == ["'2011-01-01'", "'O''Hare'"]
    assert ex["QueryExecutionContext"]["Database"] == aws_env["ECOMMERCE_GLUE_DATABASE"]
    # like Athena, moto appends <query id>.csv to the output location we passed
    assert ex["ResultConfiguration"]["OutputLocation"] == s3_lake.uri(f"athena-results/{executions[0]}.csv")
    assert athena_literal(None) == "NULL" and athena_literal(3) == "3"


def test_athena_results_keep_athena_types_nulls_and_empty_strings(s3_lake, aws_env, moto_endpoint, monkeypatch):
    """PyAthena converts each value by its column's Athena type; the Arrow table keeps those types, NULL apart
    from '' in text, a column of NULLs typed, decimals exact with their precision and scale."""
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "athena")
    wh = build_warehouse(get_settings(), s3_lake)
    columns = [
        column_info("name", "varchar", 2147483647),
        column_info("qty", "integer", 10),
        column_info("price", "decimal", 10, 2),
        column_info("day", "date", 0),
        column_info("at", "timestamp", 3),
        column_info("ok", "boolean", 0),
        column_info("missing", "double", 17),
    ]
    seed_results(
        moto_endpoint,
        columns,
        [
            ["a", "1", "1.50", "2011-01-02", "2011-01-02 10:00:00.000", "true", None],
            ["", None, None, None, None, "false", None],
            [None, "-3", "-2.25", "2011-01-03", "2011-01-03 23:59:59.123", None, None],
        ],
    )
    result = wh.query("SELECT * FROM gold.lines WHERE qty > ?", [0])
    assert result.schema == pa.schema(
        [
            ("name", pa.string()),
            ("qty", pa.int32()),
            ("price", pa.decimal128(10, 2)),
            ("day", pa.date32()),
            ("at", pa.timestamp("ms")),
            ("ok", pa.bool_()),
            ("missing", pa.float64()),
        ]
    )
    assert result.to_pylist() == [
        {
            "name": "a",
            "qty": 1,
            "price": Decimal("1.50"),
            "day": dt.date(2011, 1, 2),
            "at": dt.datetime(2011, 1, 2, 10),
            "ok": True,
            "missing": None,
        },
        {"name": "", "qty": None, "price": None, "day": None, "at": None, "ok": False, "missing": None},
        {
            "name": None,
            "qty": -3,
            "price": Decimal("-2.25"),
            "day": dt.date(2011, 1, 3),
            "at": dt.datetime(2011, 1, 3, 23, 59, 59, 123000),
            "ok": None,
            "missing": None,
        },
    ]

    # a statement without a result set (moto has nothing queued for it) runs and returns nothing
    assert wh.execute("MSCK REPAIR TABLE gold.lines") is None
    assert wh.query("SELECT 1 WHERE false").num_rows == 0


def _set_athena_progression(moto_endpoint: str, config: dict | None) -> None:
    """How moto's server advances a query's state (QUEUED -> RUNNING -> SUCCEEDED); None restores the default."""
    if config is None:
        r = requests.post(
            f"{moto_endpoint}/moto-api/state-manager/unset-transition",
            json={"model_name": "athena::execution"},
            timeout=10,
        )
    else:
        r = requests.post(
            f"{moto_endpoint}/moto-api/state-manager/set-transition",
            json={"model_name": "athena::execution", "transition": config},
            timeout=10,
        )
    assert r.status_code in (200, 201), r.text


def test_athena_query_is_polled_to_its_end_and_stopped_at_the_timeout(s3_lake, aws_env, moto_endpoint, monkeypatch):
    """A query that stays QUEUED, then RUNNING for a few polls is waited for; one that never finishes is stopped
    (StopQueryExecution: CANCELLED) and raises TimeoutError after ``timeout_seconds``."""
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "athena")
    wh = build_warehouse(get_settings(), s3_lake).model_copy(update={"poll_seconds": 0.05, "timeout_seconds": 1.5})
    athena = boto3.client("athena")
    seed_results(moto_endpoint, [column_info("n", "bigint", 19)], [["7"]])
    try:
        _set_athena_progression(moto_endpoint, {"progression": "manual", "times": 3})  # 3 polls per state
        assert wh.query("SELECT count(*) AS n FROM gold.sales").to_pylist() == [{"n": 7}]

        _set_athena_progression(moto_endpoint, {"progression": "manual", "times": 10**6})  # never leaves QUEUED
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"Athena query \S+ still QUEUED after 1.5s"):
            wh.query("SELECT 1")
        assert 1.5 <= time.monotonic() - started < 30
    finally:
        _set_athena_progression(moto_endpoint, None)
    ids = athena.list_query_executions(WorkGroup="primary")["QueryExecutionIds"]
    states = {
        athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]["Query"]: athena.get_query_execution(
            QueryExecutionId=i
        )["QueryExecution"]["Status"]["State"]
        for i in ids
    }
    assert states["SELECT 1"] == "CANCELLED"
    assert states["SELECT count(*) AS n FROM gold.sales"] == "SUCCEEDED"


def test_a_cancelled_athena_query_raises_with_its_id_state_and_text(s3_lake, aws_env, moto_endpoint, monkeypatch):
    """A query stopped from outside while it waits (StopQueryExecution by someone else) ends our call with
    RuntimeError naming the query id, the state and the SQL."""
    import threading

    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "athena")
    wh = build_warehouse(get_settings(), s3_lake).model_copy(update={"poll_seconds": 0.05, "timeout_seconds": 60})
    athena = boto3.client("athena")
    sql = "SELECT * FROM gold.sales AS stopped_from_outside"
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            wh.query(sql)
            outcome.append(None)
        except BaseException as err:  # handed to the test thread
            outcome.append(err)

    try:
        _set_athena_progression(moto_endpoint, {"progression": "manual", "times": 10**6})  # never leaves QUEUED
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        deadline = time.monotonic() + 30
        query_id = None
        while query_id is None and time.monotonic() < deadline:
            for i in athena.list_query_executions(WorkGroup="primary")["QueryExecutionIds"]:
                if athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]["Query"] == sql:
                    query_id = i
            time.sleep(0.05)
        assert query_id is not None, "the query was never started"
        athena.stop_query_execution(QueryExecutionId=query_id)
        worker.join(30)
    finally:
        _set_athena_progression(moto_endpoint, None)
    assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError), outcome
    assert str(outcome[0]).startswith(f"Athena query {query_id} CANCELLED") and sql in str(outcome[0])
