"""Glue registration and the Athena warehouse against moto's server.

moto does not execute SQL: Athena tests check what we register in Glue, the Parquet versions we write,
and the shape of our Athena API calls; query results are results moto is told to return (its
``/moto-api/static/athena/query-results`` endpoint), which exercises our parsing and typing of them.
"""

from __future__ import annotations

import boto3
import pyarrow as pa
import requests

from ecommerce_assets.resources.aws import build_aws_warehouse, build_glue_catalog
from ecommerce_assets.resources.aws_warehouse import AthenaWarehouse, athena_literal
from ecommerce_assets.resources.s3_lake import sql_literal
from ecommerce_assets.settings import get_settings


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
        ("invoiceno", "bigint"), ("quantity", "int"), ("price", "double"), ("invoicedate", "timestamp")]
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
        s3_lake.uri(f"processed/retail/sales/date={d}/") for d in ["2011-01-01", "2011-01-02", "2011-01-03"]}

    # an unpartitioned prefix; then a schema change updates the table
    s3_lake.engine().execute(f"COPY (SELECT 1 AS a) TO '{s3_lake.uri('processed/dim/x.parquet')}'")
    assert glue.register_lake_prefix(s3_lake, "processed/dim", "ecommerce", "dim").action == "created"
    s3_lake.engine().execute(f"COPY (SELECT 1 AS a, 'b' AS b) TO '{s3_lake.uri('processed/dim/x.parquet')}'")
    assert glue.register_lake_prefix(s3_lake, "processed/dim", "ecommerce", "dim").action == "updated"
    assert [c["Name"] for c in glue.get_table("ecommerce", "dim")["StorageDescriptor"]["Columns"]] == ["a", "b"]


def test_athena_replace_table_and_rows_write_versions_and_swap_glue(s3_lake, aws_env, monkeypatch):
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "athena")
    wh = build_aws_warehouse(get_settings(), s3_lake)
    assert isinstance(wh, AthenaWarehouse)
    write_sales(s3_lake, "processed/in1", ["2011-01-01", "2011-01-02"], rows_per_day=3)
    uris = [s3_lake.uri(o.key) for o in s3_lake.list_objects("processed/in1/")]
    assert wh.replace_table("gold.sales", uris) == 6
    assert wh.replace_table("gold.sales", uris) == 6  # idempotent
    assert wh.table_exists("gold.sales") and wh.row_count("gold.sales") == 6
    versions = s3_lake.list_prefixes("warehouse/gold/sales/")
    assert len(versions) == 1  # the older version was removed after the swap
    location = boto3.client("glue").get_table(DatabaseName="gold", Name="sales")["Table"]["StorageDescriptor"]["Location"]
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
    want = sorted([("2011-01-01", i) for i in range(3)] + [("2011-01-02", i) for i in range(3)]
                  + [("2011-01-03", 0)])
    assert got == want
    assert build_glue_catalog(get_settings()).partitions("gold", "sales") == [["2011-01-01"], ["2011-01-02"],
                                                                              ["2011-01-03"]]


def test_athena_query_calls_the_api_and_types_results(s3_lake, aws_env, moto_endpoint, monkeypatch):
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "athena")
    monkeypatch.setenv("ECOMMERCE_ATHENA_WORKGROUP", "analytics")
    athena = boto3.client("athena")
    athena.create_work_group(Name="analytics")
    wh = build_aws_warehouse(get_settings(), s3_lake)
    header = {"Data": [{"VarCharValue": "country"}, {"VarCharValue": "n"}, {"VarCharValue": "revenue"}]}
    rows = [{"Data": [{"VarCharValue": "UK"}, {"VarCharValue": "12"}, {"VarCharValue": "3.5"}]},
            {"Data": [{"VarCharValue": "FR"}, {"VarCharValue": "1"}, {}]}]
    info = [{"Name": "country", "Type": "varchar"}, {"Name": "n", "Type": "bigint"},
            {"Name": "revenue", "Type": "double"}]
    response = requests.post(f"{moto_endpoint}/moto-api/static/athena/query-results", json={
        "region": "us-east-1", "results": [{"rows": [header, *rows], "column_info": info}]}, timeout=10)
    assert response.status_code == 201

    sql = "SELECT country, count(*) AS n, sum(price) AS revenue FROM gold.sales WHERE day >= ? AND country <> ?"
    result = wh.query(sql, ["2011-01-01", "O'Hare"])
    assert result.schema == pa.schema([("country", pa.string()), ("n", pa.int64()), ("revenue", pa.float64())])
    assert result.to_pylist() == [{"country": "UK", "n": 12, "revenue": 3.5},
                                  {"country": "FR", "n": 1, "revenue": None}]

    executions = athena.list_query_executions(WorkGroup="analytics")["QueryExecutionIds"]
    assert len(executions) == 1
    ex = athena.get_query_execution(QueryExecutionId=executions[0])["QueryExecution"]
    assert ex["Query"] == sql
    assert ex["ExecutionParameters"] == ["'2011-01-01'", "'O''Hare'"]
    assert ex["QueryExecutionContext"]["Database"] == "ecommerce"
    # like Athena, moto appends <query id>.csv to the output location we passed
    assert ex["ResultConfiguration"]["OutputLocation"] == s3_lake.uri(f"athena-results/{executions[0]}.csv")
    assert athena_literal(None) == "NULL" and athena_literal(3) == "3"
