"""`ecommerce-assets doctor` on real parts: a fresh local data dir, real local HTTP APIs, moto's server for
AWS and a real PostgreSQL. A good configuration exits 0; each problem (a missing setting, a wrong DSN, a
missing bucket, stream or table, a refused key) is named with its fix and exits 1; no secret is printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from ecommerce_assets.cli import main as cli_main
from ecommerce_assets.dev.catalog_sim import CatalogSimulator
from ecommerce_assets.dev.products_api_sim import start_products_api_sim
from ecommerce_assets.pipelines import PIPELINES, turn_on_hint
from ecommerce_assets.settings import declared_settings
from tests.conftest import MOTO_REGION, free_port

CONSOLE_SCRIPT = Path(sys.executable).parent / "ecommerce-assets"
API_KEY = "catkey-9f3e1c7a5b"
TOKENS = ("ingest-tok-4d2a8e61", "ingest-tok-77b0c3f9")
PG_PASSWORD = "pgpass-0c5e9a2d1b"
DSN_PASSWORD = "dsnpass-b81f4e07c6"
SECRETS = (API_KEY, *TOKENS, PG_PASSWORD, DSN_PASSWORD)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the shell that runs the tests (the AWS credentials of moto stay)."""
    for row in declared_settings():
        for name in row["env"]:
            if not name.startswith("AWS_") or name == "AWS_ENDPOINT_URL":
                monkeypatch.delenv(name, raising=False)
    for name in ("PGPASSWORD", "PGPASSFILE", "ECOMMERCE_DBT_ENV"):
        monkeypatch.delenv(name, raising=False)


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli_main(["doctor", *args])
    out, err = capsys.readouterr()
    return code, out + err


def line_of(output: str, part: str, item: str) -> str:
    """The line of ``item`` in the section of ``part``."""
    section = output.split(f"\n{part}: ", 1)[1].split("\n\n", 1)[0]
    found = [line for line in section.splitlines() if line.split(maxsplit=1)[-1].startswith(f"{item}:")]
    assert len(found) == 1, f"{part}/{item} in:\n{section}"
    return found[0]


def status_of(output: str, part: str, item: str) -> str:
    return line_of(output, part, item).split()[0]


# --- local --------------------------------------------------------------------------------------
def test_local_fresh_data_dir_is_ok_and_says_what_turns_each_pipeline_on(data_dir: Path, capsys) -> None:
    code, out = doctor(capsys)
    assert code == 0, out
    landing = f"{data_dir.resolve()}/lake/landing/"
    for p in PIPELINES:
        assert f"\n{p.name}: {p.title}\n" in out
        if p.name != "stream":
            assert status_of(out, p.name, "pipeline") == "off"
            assert turn_on_hint(p, landing) in line_of(out, p.name, "pipeline")
    assert status_of(out, "stream", "pipeline") == "ok"  # locally the stream is a log file
    assert "ecommerce-assets catalog-sim" in line_of(out, "catalog", "catalog API")
    assert status_of(out, "environment", "sensors") == "ok"
    assert status_of(out, "environment", "lake") == "ok"
    assert "not created yet" in line_of(out, "environment", "warehouse")
    dbt = line_of(out, "orders", "dbt")
    assert dbt.split()[0] == "ok" and "target duckdb" in dbt and "duckdb adapter" in dbt
    assert "missing" not in out.split() and "unreachable" not in out.split()
    assert not (data_dir / "lake").exists(), "doctor only looks: it creates nothing"


def test_local_apis_are_asked_with_their_key_and_landed_files_turn_a_pipeline_on(data_dir: Path, monkeypatch, capsys) -> None:
    (data_dir / "lake" / "landing" / "online_retail").mkdir(parents=True)
    (data_dir / "lake" / "landing" / "online_retail" / "2024.csv").write_text("InvoiceNo\n1\n")
    (data_dir / "warehouse.duckdb").parent.mkdir(exist_ok=True)
    import duckdb

    duckdb.connect(str(data_dir / "warehouse.duckdb")).execute("CREATE TABLE t AS SELECT 1 AS x").close()
    monkeypatch.setenv("ECOMMERCE_SENSORS", "off")
    with CatalogSimulator(required_key=API_KEY) as catalog, start_products_api_sim() as products:
        monkeypatch.setenv("ECOMMERCE_CATALOG_API_URL", catalog.url)
        monkeypatch.setenv("ECOMMERCE_CATALOG_API_KEY", API_KEY)
        monkeypatch.setenv("ECOMMERCE_SELLERS", "A1PA6795UKMFR9")
        monkeypatch.setenv("ECOMMERCE_PRODUCTS_API_URL", products.url)
        code, out = doctor(capsys)
        assert code == 0, out
        assert [(r.seller_id, r.page, r.status) for r in catalog.requests] == [("A1PA6795UKMFR9", 1, 200)]
        api = line_of(out, "catalog", "catalog API")
        assert api.split()[0] == "ok" and "seller_id=A1PA6795UKMFR9" in api and "answered with the key" in api
        assert "ECOMMERCE_CATALOG_API_KEY=(set, hidden)" in out
        assert status_of(out, "catalog", "pipeline") == "ok"
        assert status_of(out, "orders", "products API") == "ok" and "product(s)" in line_of(out, "orders", "products API")
        assert status_of(out, "environment", "sensors") == "off"
        assert "ECOMMERCE_SENSORS=on" in line_of(out, "environment", "sensors")
        retail = line_of(out, "retail", "pipeline")
        assert retail.split()[0] == "ok" and "1 file(s) landed" in retail
        assert "opened, 1 table(s)" in line_of(out, "environment", "warehouse")

        monkeypatch.setenv("ECOMMERCE_CATALOG_API_KEY", "wrong-" + API_KEY[::-1])
        code, out = doctor(capsys, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    catalog_part = next(p for p in report["parts"] if p["part"] == "catalog")
    api_check = next(c for c in catalog_part["checks"] if c["item"] == "catalog API")
    assert api_check["status"] == "unreachable" and "refused (HTTP 403)" in api_check["detail"]
    assert "ECOMMERCE_CATALOG_API_KEY" in api_check["fix"]
    assert "wrong-" not in out and API_KEY[::-1] not in out
    assert [p["part"] for p in report["parts"]] == ["environment", *(p.name for p in PIPELINES)]


def test_local_stream_log_with_other_shards_is_named(data_dir: Path, monkeypatch, capsys) -> None:
    from ecommerce_assets.storage.stream import LocalStream

    LocalStream(path=str(data_dir / "state" / "stream.sqlite"), shards=4).put_records([("536365", b"{}")])
    monkeypatch.setenv("ECOMMERCE_STREAM_SHARDS", "2")
    code, out = doctor(capsys)
    assert code == 1
    line = line_of(out, "stream", "stream")
    assert line.split()[0] == "unreachable" and "created with 4 shards" in line and "ECOMMERCE_STREAM_SHARDS=4" in line


# --- aws ----------------------------------------------------------------------------------------
@pytest.fixture
def aws_parts(moto_endpoint: str, postgres_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A good aws configuration on moto + PostgreSQL: the bucket, the stream, both tables and the alerts topic exist."""
    suffix = uuid.uuid4().hex[:10]
    names = {"bucket": f"lake-{suffix}", "stream": f"orders-{suffix}", "prefix": f"t{suffix}-"}

    def client(service: str):
        return boto3.client(service, endpoint_url=moto_endpoint, region_name=MOTO_REGION)

    client("s3").create_bucket(Bucket=names["bucket"])
    client("kinesis").create_stream(StreamName=names["stream"], ShardCount=1)
    ddb = client("dynamodb")
    ddb.create_table(TableName=f"{names['prefix']}invoices", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "invoice_no", "KeyType": "HASH"},
                                {"AttributeName": "line_key", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "invoice_no", "AttributeType": "S"},
                                           {"AttributeName": "line_key", "AttributeType": "S"}])
    ddb.create_table(TableName=f"{names['prefix']}customers", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "customer_id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "customer_id", "AttributeType": "S"}])
    topic = client("sns").create_topic(Name=f"alerts-{suffix}")["TopicArn"]
    (tmp_path / "dagster_home").mkdir()
    env = {
        "ECOMMERCE_ENV": "aws",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "ECOMMERCE_S3_BUCKET": names["bucket"],
        "ECOMMERCE_S3_PREFIX": "lake",
        "ECOMMERCE_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "ECOMMERCE_WAREHOUSE": "postgres",
        "ECOMMERCE_WAREHOUSE_DSN": postgres_db,
        "ECOMMERCE_STREAM_NAME": names["stream"],
        "ECOMMERCE_KV_TABLE_PREFIX": names["prefix"],
        "ECOMMERCE_ALERTS_TOPIC_ARN": topic,
        "ECOMMERCE_SENSORS": "on",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield {**env, **names}


def test_aws_good_configuration_in_the_console_script_exits_0_and_prints_no_secret(aws_parts, monkeypatch) -> None:
    """The real console script in a subprocess, with every secret set to a recognisable value."""
    with CatalogSimulator(required_key=API_KEY) as catalog:
        env = {**os.environ, "ECOMMERCE_CATALOG_API_URL": catalog.url, "ECOMMERCE_CATALOG_API_KEY": API_KEY,
               "ECOMMERCE_SELLERS": "A1PA6795UKMFR9",  # a deployment names its sellers (no demo sellers on AWS)
               "ECOMMERCE_INGEST_TOKENS": ",".join(TOKENS), "ECOMMERCE_INGEST_TOKEN": TOKENS[0],
               "PGPASSWORD": PG_PASSWORD}
        proc = subprocess.run([str(CONSOLE_SCRIPT), "doctor"], env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert [(r.page, r.status) for r in catalog.requests] == [(1, 200)]  # the key was accepted
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for secret in SECRETS:
        assert secret not in out
    assert f"bucket {aws_parts['bucket']} found" in line_of(out, "environment", "lake")
    warehouse = line_of(out, "environment", "warehouse")
    assert warehouse.split()[0] == "ok" and "select 1 answered" in warehouse and "PGPASSWORD set, hidden" in warehouse
    assert status_of(out, "environment", "alerts") == "ok"
    assert status_of(out, "stream", "stream") == "ok" and "ACTIVE" in line_of(out, "stream", "stream")
    for table in ("invoices", "customers"):
        assert status_of(out, "stream", f"table {aws_parts['prefix']}{table}") == "ok"
    assert "answered with the key" in line_of(out, "catalog", "catalog API")
    assert "ECOMMERCE_INGEST_TOKENS=(set: 2 value(s), hidden)" in out
    assert "target postgres" in line_of(out, "orders", "dbt")
    landing = f"s3://{aws_parts['bucket']}/lake/landing/online_retail/"
    assert landing in line_of(out, "retail", "pipeline")


def test_aws_problems_are_each_named_with_their_fix(aws_parts, monkeypatch, capsys) -> None:
    # 1. no bucket setting, a DSN pointing at a closed port, a stream and tables that do not exist
    monkeypatch.delenv("ECOMMERCE_S3_BUCKET")
    closed = free_port()
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE_DSN", f"postgresql://postgres@127.0.0.1:{closed}/ecommerce")
    monkeypatch.setenv("ECOMMERCE_STREAM_NAME", "no-such-stream")
    monkeypatch.setenv("ECOMMERCE_KV_TABLE_PREFIX", "nosuch-")
    code, out = doctor(capsys)
    assert code == 1, out
    lake = line_of(out, "environment", "lake")
    assert lake.split()[0] == "missing" and "set ECOMMERCE_S3_BUCKET" in lake
    warehouse = line_of(out, "environment", "warehouse")
    assert warehouse.split()[0] == "unreachable" and f"127.0.0.1:{closed}" in warehouse
    assert "ECOMMERCE_WAREHOUSE_DSN" in warehouse
    stream = line_of(out, "stream", "stream")
    assert stream.split()[0] == "missing" and "no-such-stream does not exist" in stream
    assert "deploy/cloudformation/ecommerce-assets.yaml" in stream
    assert status_of(out, "stream", "table nosuch-invoices") == "missing"
    assert status_of(out, "stream", "table nosuch-customers") == "missing"
    for p in PIPELINES:  # one failure hides nothing
        assert f"\n{p.name}: {p.title}\n" in out
    assert "the lake is not reachable" in line_of(out, "retail", "pipeline")
    summary = out.rsplit("\n\n", 1)[1].splitlines()
    assert "5 problem(s) to fix" in summary[0]
    assert summary[1:] == ["  environment: lake is missing", "  environment: warehouse is unreachable",
                           "  stream: stream is missing", "  stream: table nosuch-invoices is missing",
                           "  stream: table nosuch-customers is missing"]

    # 2. the bucket is named but does not exist; the DSN carries a password (refused, never shown)
    missing_bucket = f"gone-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("ECOMMERCE_S3_BUCKET", missing_bucket)
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE_DSN", f"postgresql://postgres:{DSN_PASSWORD}@127.0.0.1:{closed}/ecommerce")
    monkeypatch.setenv("ECOMMERCE_STREAM_NAME", aws_parts["stream"])
    monkeypatch.setenv("ECOMMERCE_KV_TABLE_PREFIX", aws_parts["prefix"])
    code, out = doctor(capsys)
    assert code == 1, out
    lake = line_of(out, "environment", "lake")
    assert lake.split()[0] == "missing" and f"bucket {missing_bucket} not found" in lake
    assert "create it with deploy/cloudformation/ecommerce-assets.yaml" in lake
    warehouse = line_of(out, "environment", "warehouse")
    assert warehouse.split()[0] == "missing" and "PGPASSWORD" in warehouse
    assert status_of(out, "orders", "dbt") == "missing"  # dbt's connection comes from the same DSN
    assert "ECOMMERCE_WAREHOUSE_DSN=postgresql://postgres:***@" in out
    assert DSN_PASSWORD not in out
    assert status_of(out, "stream", "stream") == "ok"


def test_aws_stream_off_and_missing_alerts_are_not_failures(aws_parts, monkeypatch, capsys) -> None:
    monkeypatch.delenv("ECOMMERCE_STREAM_NAME")
    monkeypatch.delenv("ECOMMERCE_ALERTS_TOPIC_ARN")
    monkeypatch.delenv("ECOMMERCE_SENSORS")
    code, out = doctor(capsys, "--json")
    assert code == 0, out
    report = json.loads(out)
    checks = {(p["part"], c["item"]): c for p in report["parts"] for c in p["checks"]}
    assert checks[("stream", "pipeline")]["status"] == "off"
    assert "ECOMMERCE_STREAM_NAME" in checks[("stream", "pipeline")]["fix"]
    assert checks[("environment", "alerts")]["status"] == "off"
    assert checks[("environment", "sensors")]["status"] == "off"
    assert checks[("environment", "sensors")]["fix"].startswith("set ECOMMERCE_SENSORS=on")


def test_aws_athena_checks_its_workgroup_and_glue_database(aws_parts, moto_endpoint, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "athena")
    monkeypatch.delenv("ECOMMERCE_WAREHOUSE_DSN")
    monkeypatch.setenv("ECOMMERCE_GLUE_DATABASE", f"db_{uuid.uuid4().hex[:8]}")
    code, out = doctor(capsys)
    assert code == 1
    assert status_of(out, "environment", "warehouse") == "ok" and "workgroup primary found" in out
    glue = line_of(out, "environment", "glue database")
    assert glue.split()[0] == "missing" and "ECOMMERCE_GLUE_DATABASE" in glue
    boto3.client("glue", endpoint_url=moto_endpoint, region_name=MOTO_REGION).create_database(
        DatabaseInput={"Name": os.environ["ECOMMERCE_GLUE_DATABASE"]})
    code, out = doctor(capsys)
    assert code == 0, out
    assert status_of(out, "environment", "glue database") == "ok"


def test_invalid_settings_exit_2_with_one_line_each(data_dir: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ECOMMERCE_SENSORS", "sometimes")
    code, out = doctor(capsys)
    assert code == 2
    assert out.strip().startswith("error: ECOMMERCE_SENSORS:") and "sometimes" in out


def test_the_engine_line_says_whether_local_spark_can_start(
    data_dir: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = doctor(capsys)
    assert status_of(out, "environment", "engine") == "ok" and "duckdb" in line_of(out, "environment", "engine")
    monkeypatch.setenv("ECOMMERCE_ENGINE", "spark")
    code, out = doctor(capsys)
    assert code == 0 and status_of(out, "environment", "engine") == "ok", out
    assert "Dagster Pipes on local[*]" in line_of(out, "environment", "engine")
    monkeypatch.setenv("ECOMMERCE_SPARK_PLATFORM", "glue")  # Glue with a local lake: refused, with the fix
    code, out = doctor(capsys)
    assert status_of(out, "environment", "engine") == "missing" and "need the S3 lake" in out, out
    monkeypatch.delenv("ECOMMERCE_SPARK_PLATFORM")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no java to be found
    code, out = doctor(capsys)
    assert status_of(out, "environment", "engine") == "missing" and "no Java runtime" in out, out
