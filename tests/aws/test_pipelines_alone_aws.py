"""Issue 11's "done when" in aws mode: retail, transactions and orders each adopted alone.

Every case gives the real console script (``<venv>/bin/ecommerce-assets run``, a subprocess with an
environment built from scratch and a minimal PATH) ONLY the lake and warehouse settings: ``ECOMMERCE_ENV=aws``,
a new bucket and the prefix ``lake`` on the session's moto server (real HTTP), ``AWS_ENDPOINT_URL``, fake
credentials, ``AWS_REGION`` (not ``AWS_DEFAULT_REGION``), ``ECOMMERCE_WAREHOUSE=postgres`` and the DSN of a
fresh database on the real PostgreSQL server; plus a data dir and ``DAGSTER_HOME`` for local state. No
alerts topic, no catalog key, no stream name, no key-value table prefix. The pipeline's files are uploaded
to ``s3://<bucket>/lake/landing/<source>/`` with boto3. The run must exit 0 and PostgreSQL must hold the
expected rows, derived from the inputs without the product (``tests/pipeline_inputs.py``).

And with ``ECOMMERCE_STREAM_NAME`` naming a stream that does not exist, a retail run prints one FAILED
line for the stream sensor, retail still completes, the summary is printed and the exit code is 1.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import uuid
from pathlib import Path

import boto3
import pytest

from tests.conftest import MOTO_REGION, SEED_SAMPLES
from tests.pipeline_inputs import (
    ORDERS_FILES,
    RETAIL_SAMPLE,
    CliResult,
    cli_env,
    postgres_column,
    postgres_tables,
    retail_expected,
    run_cli,
    transaction_records,
    transactions_expected,
)

pytestmark = pytest.mark.slow

PREFIX = "lake"
ANALYTICS = ("transactions_sales_by_category", "transactions_hourly_pattern", "transactions_top_customers",
             "transactions_product_performance", "transactions_daily_trend", "transactions_day_of_week_pattern",
             "transactions_large_transactions")
LANDING = {"retail": "online_retail", "catalog": "distributor", "orders": "orders", "transactions": "transactions"}


@pytest.fixture
def aws_alone(moto_endpoint: str, postgres_db: str, tmp_path: Path) -> dict[str, str]:
    """The only settings of a retail/transactions/orders deployment: the lake and the warehouse."""
    bucket = f"alone-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name=MOTO_REGION).create_bucket(Bucket=bucket)
    return cli_env(tmp_path, {
        "ECOMMERCE_ENV": "aws",
        "ECOMMERCE_S3_BUCKET": bucket,
        "ECOMMERCE_S3_PREFIX": PREFIX,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": MOTO_REGION,
        "ECOMMERCE_WAREHOUSE": "postgres",
        "ECOMMERCE_WAREHOUSE_DSN": postgres_db,
        # its own Glue database: moto's Glue is shared by every test, and the Iceberg tables keep their names
        "ECOMMERCE_GLUE_DATABASE": bucket.replace("-", "_"),
    })


def upload(env: dict[str, str], source: str, name: str, body: bytes) -> None:
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=MOTO_REGION)
    s3.put_object(Bucket=env["ECOMMERCE_S3_BUCKET"], Key=f"{PREFIX}/landing/{source}/{name}", Body=body)


def assert_ran_alone(result: CliResult, env: dict[str, str], pipeline: str) -> None:
    """Exit 0; every run line of ``pipeline`` and ok; the other pipelines skipped with the S3 landing prefix
    or the stream setting named; the summary agreeing; one warning (alerts go to the log); no traceback."""
    assert result.returncode == 0, result.show()
    assert result.runs and {ln.pipeline for ln in result.runs} == {pipeline}, result.show()
    assert all(ln.status == "ok" for ln in result.runs), result.show()
    assert not result.sensor_failures, result.show()
    assert result.summary == {"runs": len(result.runs), "failed": 0, "sensors": 0}, result.show()
    assert "Traceback" not in result.stdout + result.stderr, result.show()
    landing = f"s3://{env['ECOMMERCE_S3_BUCKET']}/{PREFIX}/landing/"
    for name, source in LANDING.items():
        if name == pipeline:
            continue
        lines = [ln for ln in result.of("skip", name) if "nothing landed" in ln.text]
        assert len(lines) == 1 and f"{landing}{source}/" in lines[0].text, f"{name}\n{result.show()}"
    [stream] = result.of("skip", "stream")
    assert "ECOMMERCE_STREAM_NAME" in stream.text, result.show()
    warnings = [ln for ln in result.stdout.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "ECOMMERCE_ALERTS_TOPIC_ARN" in warnings[0], result.show()  # alerts: log only


def test_retail_alone_on_aws(aws_alone: dict[str, str], tmp_path: Path) -> None:
    upload(aws_alone, "online_retail", RETAIL_SAMPLE.name, RETAIL_SAMPLE.read_bytes())
    expected = retail_expected(RETAIL_SAMPLE)

    result = run_cli(["run"], aws_alone, tmp_path)

    assert_ran_alone(result, aws_alone, "retail")
    dsn = aws_alone["ECOMMERCE_WAREHOUSE_DSN"]
    assert postgres_tables(dsn, ["gold.sales_transactions", "gold.customers", "gold.products"]) == {
        "gold.sales_transactions": expected.sales, "gold.customers": len(expected.customers),
        "gold.products": len(expected.products)}
    assert set(postgres_column(dsn, "gold.customers", "customerid")) == expected.customers
    assert set(postgres_column(dsn, "gold.products", "stockcode")) == expected.products


def test_transactions_alone_on_aws(aws_alone: dict[str, str], tmp_path: Path) -> None:
    by_date = transaction_records(40, [dt.date(2024, 3, 1), dt.date(2024, 3, 2)])
    for date, records in by_date.items():
        for record in records:
            upload(aws_alone, "transactions", f"date={date}/{record['transaction_id']}.json",
                   json.dumps(record).encode())
    expected = transactions_expected([r for records in by_date.values() for r in records])

    result = run_cli(["run"], aws_alone, tmp_path)

    assert_ran_alone(result, aws_alone, "transactions")
    assert {d for d in by_date if any(f"[{d}]" in ln.text for ln in result.runs)} == set(by_date), result.show()
    assert sum(ln.rows.get("transactions/processed", 0) for ln in result.runs) == expected["transactions"], result.show()
    got = postgres_tables(aws_alone["ECOMMERCE_WAREHOUSE_DSN"], ANALYTICS)
    assert got == {name: n for name, n in expected.items() if name in ANALYTICS}


def test_orders_files_alone_on_aws(aws_alone: dict[str, str], tmp_path: Path) -> None:
    for source, name in ORDERS_FILES.items():
        upload(aws_alone, source, name, (SEED_SAMPLES / name).read_bytes())
    with (SEED_SAMPLES / "orders.csv").open(newline="", encoding="utf-8") as fh:
        orders = {row["order_id"] for row in csv.DictReader(fh)}
    with (SEED_SAMPLES / "products.csv").open(newline="", encoding="utf-8") as fh:
        products = {row["product_id"] for row in csv.DictReader(fh)}
    customers = {c["customer_id"] for c in json.loads((SEED_SAMPLES / "customers.json").read_text(encoding="utf-8"))}

    result = run_cli(["run"], aws_alone, tmp_path)

    assert_ran_alone(result, aws_alone, "orders")
    got = postgres_tables(aws_alone["ECOMMERCE_WAREHOUSE_DSN"], ["dim_customers", "dim_products", "fct_orders"])
    assert got == {"dim_customers": len(customers), "dim_products": len(products), "fct_orders": len(orders)}


def test_a_missing_stream_fails_its_sensor_only(aws_alone: dict[str, str], tmp_path: Path) -> None:
    stream = f"alone-missing-{uuid.uuid4().hex[:8]}"
    env = {**aws_alone, "ECOMMERCE_STREAM_NAME": stream}
    upload(env, "online_retail", RETAIL_SAMPLE.name, RETAIL_SAMPLE.read_bytes())
    expected = retail_expected(RETAIL_SAMPLE)

    result = run_cli(["run"], env, tmp_path)

    assert result.returncode == 1, result.show()
    [failed] = result.sensor_failures
    assert failed.pipeline == "stream", result.show()
    assert "Traceback" not in result.stdout + result.stderr, result.show()
    assert result.runs and {ln.pipeline for ln in result.runs} == {"retail"}, result.show()
    assert all(ln.status == "ok" for ln in result.runs), result.show()
    assert result.summary == {"runs": len(result.runs), "failed": 0, "sensors": 1}, result.show()
    assert stream in failed.text, failed.text  # the reason names the stream
    summary_lines = [ln for ln in result.stdout.splitlines() if ln.startswith("  FAILED")]
    assert len(summary_lines) == 1 and "stream_sensor" in summary_lines[0], result.show()
    assert postgres_tables(env["ECOMMERCE_WAREHOUSE_DSN"], ["gold.sales_transactions"]) == {
        "gold.sales_transactions": expected.sales}
