"""The issue's "done when": the whole graph in aws mode (moto's server + PostgreSQL) gives the tables local mode gives.

One input, run twice through ``tests/aws/e2e.py::run_platform`` (``ecommerce-assets demo``'s first day:
seed the shipped samples, replay the Online Retail sample through the ingestion API onto the stream,
fetch the catalog pages, then ``orchestration.catch_up``): in local mode (lake folder, DuckDB warehouse,
local stream log) and with ``ECOMMERCE_ENV=aws`` (``s3://<bucket>/lake/landing/<source>/`` on moto's
server, Kinesis, DynamoDB, PostgreSQL warehouse). Both read the same catalog and products API simulators
(real HTTP servers on free ports). The input is kept small: one catalog seller, one stream shard, the
newest of the generated transactions dates. Then:

* both environments made the same runs (sensor, partition) with the same outcome, all successful, and
  materialized the same assets;
* every warehouse table of local mode exists in PostgreSQL with the same columns and the same sorted
  rows (after ``e2e.normalise``: numbers as floats rounded to 6 places, timestamps as naive UTC ISO
  text, JSON as canonical text); the ``lake`` schema's DuckDB views are Glue tables in aws mode;
* the processed zone's Parquet is in S3 and every processed table is registered in Glue;
* the run-status sensors' alerts (a success summary, a failed run) arrive in SNS (read through an SQS
  queue subscribed to the topic), the failure also in the alerts dead-letter queue;
* a Lambda handler given an event for an object that does not exist sends the event to the DLQ.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest

from ecommerce_assets.dev.catalog_sim import CatalogSimulator
from ecommerce_assets.dev.products_api_sim import start_products_api_sim
from ecommerce_assets.resources import build_resources
from ecommerce_assets.resources.catalog_api import SIMULATOR_KEY
from ecommerce_assets.runtime.catchup import execute
from ecommerce_assets.runtime.summary import warehouse_tables
from ecommerce_assets.settings import get_settings
from tests.aws.e2e import load_defs, normalised_rows, run_outcomes, run_platform

pytestmark = pytest.mark.slow

LAKE_SCHEMA = "lake"  # local mode: DuckDB views over the processed zone; aws mode: Glue tables
SELLER = "A2L77EE7U53NWQ"  # one catalog seller of the shipped sellers.yaml


def warehouse_contents(warehouse: Any) -> dict[str, tuple[list[str], list[tuple]]]:
    return {name: normalised_rows(warehouse, name) for name, _ in warehouse_tables(warehouse)
            if not name.startswith(f"{LAKE_SCHEMA}.")}


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch):
    """The catalog and products API simulators on free ports, read by both modes (``local_services`` starts
    them only in local mode); one seller and one stream shard keep the input small."""
    catalog, products = CatalogSimulator(port=0, required_key=SIMULATOR_KEY).start(), start_products_api_sim()
    monkeypatch.setenv("ECOMMERCE_CATALOG_API_URL", catalog.url)
    monkeypatch.setenv("ECOMMERCE_CATALOG_API_KEY", SIMULATOR_KEY)
    monkeypatch.setenv("ECOMMERCE_PRODUCTS_API_URL", products.url)
    monkeypatch.setenv("ECOMMERCE_SELLERS", SELLER)
    monkeypatch.setenv("ECOMMERCE_STREAM_SHARDS", "1")
    yield
    products.stop()
    catalog.stop()


@pytest.fixture
def local_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, services) -> dict[str, Any]:
    """The platform in local mode on the input; its runs, warehouse contents and lake-catalog views."""
    with monkeypatch.context() as mp:
        home = tmp_path / "local_home"
        home.mkdir()
        mp.setenv("ECOMMERCE_ENV", "local")
        mp.setenv("ECOMMERCE_DATA_DIR", str(tmp_path / "local_data"))
        mp.setenv("DAGSTER_HOME", str(home))
        resources = build_resources()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            report = run_platform(resources, instance)
        tables = warehouse_tables(resources["warehouse"])
        return {"report": report, "tables": warehouse_contents(resources["warehouse"]),
                "lake_views": sorted(n.split(".", 1)[1] for n, _ in tables if n.startswith(f"{LAKE_SCHEMA}."))}


def subscribe_queue(topic_arn: str) -> str:
    """An SQS queue subscribed to the alerts topic (raw delivery), to read what SNS published."""
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    url = sqs.create_queue(QueueName=f"alerts-tap-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return url


def drain(url: str) -> list[dict]:
    sqs, out = boto3.client("sqs"), []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return out
        out += [json.loads(m["Body"]) for m in got]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(got)])


def run_status_alerts(defs: dg.Definitions, instance: dg.DagsterInstance, run_id: str) -> None:
    """Evaluate the alert sensor for one finished run, as the daemon does."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    failed = run.status == dg.DagsterRunStatus.FAILURE
    name = "alert_on_run_failure" if failed else "summarize_successful_run"
    event_type = dg.DagsterEventType.RUN_FAILURE if failed else dg.DagsterEventType.RUN_SUCCESS
    [record] = instance.get_records_for_run(run_id, of_type=event_type).records
    sensor = defs.get_sensor_def(name)
    context = dg.build_run_status_sensor_context(
        sensor_name=name, dagster_instance=instance, dagster_run=run, dagster_event=record.event_log_entry.dagster_event,
        resources={"notifier": defs.resources["notifier"]},
    )
    if failed:
        sensor(context.for_run_failure())
    else:
        sensor(context)


def test_aws_mode_gives_the_tables_local_mode_gives(local_run, aws_env, postgres_db, monkeypatch, tmp_path):
    local = local_run
    assert local["report"].ok, f"runs failed in local mode: {[r for r in local['report'].runs if not r[1]]}"
    assert {"gold.customers", "gold.products", "gold.sales_transactions"} <= set(local["tables"])

    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "postgres")
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE_DSN", postgres_db)
    dlq_url = boto3.client("sqs").create_queue(QueueName=f"lambda-dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    monkeypatch.setenv("ECOMMERCE_DLQ_URL", dlq_url)
    tap = subscribe_queue(aws_env["ECOMMERCE_ALERTS_TOPIC_ARN"])
    settings = get_settings()
    resources = build_resources(settings)
    lake, warehouse = resources["lake"], resources["warehouse"]
    assert lake.uri("landing/online_retail/").startswith(f"s3://{aws_env['ECOMMERCE_S3_BUCKET']}/lake/landing/")

    with dg.DagsterInstance.from_config(aws_env["DAGSTER_HOME"]) as instance:
        resources["stream"].ensure()  # infrastructure the deployment creates (deploy/): the stream, the tables
        resources["kv_store"].ensure()
        aws = run_platform(resources, instance)
        assert run_outcomes(aws) == run_outcomes(local["report"])  # the same runs, each succeeding alike
        assert aws.materialized == local["report"].materialized

        # --- same tables, same rows --------------------------------------------------------------------
        tables = warehouse_contents(warehouse)
        assert sorted(tables) == sorted(local["tables"])
        differ = {}
        for name, (columns, rows) in local["tables"].items():
            assert tables[name][0] == columns, name
            if tables[name][1] != rows:
                differ[name] = [c for i, c in enumerate(columns)
                                if sorted((r[i] for r in tables[name][1]), key=repr) != sorted((r[i] for r in rows), key=repr)] or len(rows)
        assert not differ, f"tables whose rows differ between aws and local mode (differing columns): {differ}"

        # --- Parquet in S3, registered in Glue --------------------------------------------------------
        defs = load_defs(resources)
        assert execute(defs, instance, [dg.AssetKey(["aws", "glue_processed_tables"])])[0]
        s3_parquet = [o.key for o in lake.list_objects("processed/") if o.key.endswith(".parquet")]
        assert s3_parquet and all(lake.uri(k).startswith("s3://") for k in s3_parquet)
        glue = resources["table_catalog"]
        registered = {t["Name"] for page in boto3.client("glue").get_paginator("get_tables").paginate(
            DatabaseName=settings.glue_database) for t in page["TableList"]}
        from ecommerce_assets.storage.glue_table_catalog import parquet_table_roots

        roots = parquet_table_roots(lake)
        assert set(roots) <= registered and "online_retail_cleaned" not in roots
        # the processed zone's tables are Iceberg tables of the same Glue database: Athena reads them as they are
        iceberg = resources["iceberg"]
        for name in ("online_retail_cleaned", "transactions"):
            table = glue.get_table(settings.glue_database, name)
            assert table["Parameters"]["table_type"].upper() == "ICEBERG", (name, table["Parameters"])
            assert table["StorageDescriptor"]["Location"].rstrip("/") == iceberg.location(name), name
            assert table["Parameters"]["metadata_location"] == iceberg.metadata_location(name), name
        for view in local["lake_views"]:  # what local mode exposes as DuckDB views is a Glue table here
            assert view in registered, view

        # --- alerts in SNS, a failed run's alert in the alerts DLQ ------------------------------------
        last_run = instance.get_runs(limit=1)[0]
        run_status_alerts(defs, instance, last_run.run_id)
        from ecommerce_assets.resources.catalog_api import CatalogApiResource

        bad = dict(resources, catalog_api=CatalogApiResource(base_url=os.environ["ECOMMERCE_CATALOG_API_URL"],
                                                             api_key="wrong-key"))
        from ecommerce_assets.defs.catalog.assets import catalog_raw_pages

        failed = dg.materialize([catalog_raw_pages], partition_key=SELLER, resources=bad, instance=instance,
                                raise_on_error=False)
        assert not failed.success
        run_status_alerts(defs, instance, failed.run_id)
        alerts = drain(tap)
        assert [a["severity"] for a in alerts] == ["info", "error"]
        assert alerts[0]["details"]["run_id"] == last_run.run_id
        assert alerts[1]["details"]["run_id"] == failed.run_id and "catalog" in alerts[1]["details"]["failed_steps"][0]
        assert [a["details"]["run_id"] for a in drain(aws_env["ECOMMERCE_ALERTS_DLQ_URL"])] == [failed.run_id]

    # --- a Lambda's failing event in the DLQ -----------------------------------------------------------
    from lambdas import copy_raw_object

    missing = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                            "s3": {"bucket": {"name": aws_env["ECOMMERCE_S3_BUCKET"]},
                                   "object": {"key": "lake/landing/online_retail/never-landed.csv"}}}]}
    with pytest.raises(FileNotFoundError):
        copy_raw_object.handler(missing, None)
    [message] = drain(dlq_url)
    assert message["event"] == missing and message["error_type"] == "FileNotFoundError"
