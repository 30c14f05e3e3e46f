"""A live daemon in aws mode: an S3 upload reaches PostgreSQL with no click (issue 11, "Sensors on S3 arrivals").

A retail-only AWS deployment, configured with only the settings docs/aws.md lists for it: the lake (bucket,
prefix, endpoint, credentials, region), the warehouse (``ECOMMERCE_WAREHOUSE=postgres`` and its DSN) and
``ECOMMERCE_SENSORS=on``. No alerts topic, no stream, no catalog or products API. moto's server stands in
for S3 and a real PostgreSQL server is the warehouse.

* ``ecommerce-assets ui`` (webserver + daemon) runs on a fresh ``DAGSTER_HOME``; the Online Retail sample
  is uploaded to ``s3://<bucket>/lake/landing/online_retail/`` with boto3. Nothing is clicked and no
  GraphQL mutation is sent: the test only reads (``runsOrError``, ``sensorOrError``) until the arrival
  sensor's run has succeeded, then checks ``gold.*`` in PostgreSQL against the users' rules re-derived
  from the CSV. SIGTERM to the command's process group then stops everything it started within 15 s.
* Without ``ECOMMERCE_SENSORS``, aws mode keeps the arrival and automation sensors STOPPED
  (``dagster sensor list``), so a deployment starts them only by choice.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest
from psycopg import sql

from ecommerce_assets.samples import retail_sample_path
from tests.conftest import MOTO_REGION
from tests.daemon import LiveDagster, dagster_cli, env_for
from tests.test_retail_pipeline import expected_from_csv

pytestmark = [pytest.mark.slow, pytest.mark.timeout(330)]

RETAIL_SENSOR = "online_retail_arrival_sensor"
AUTOMATION_SENSOR = "default_automation_condition_sensor"
PREFIX = "lake"
STOP_BOUND_SECONDS = 15.0
WAIT_SECONDS = 210  # from the upload to the sensor's run succeeded


@pytest.fixture
def retail_settings(moto_endpoint: str, postgres_db: str, tmp_path: Path) -> dict[str, str]:
    """The settings of a retail-only aws deployment on a new bucket and database; a fresh ``DAGSTER_HOME``."""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name=MOTO_REGION).create_bucket(Bucket=bucket)
    return {
        "ECOMMERCE_ENV": "aws",
        "ECOMMERCE_S3_BUCKET": bucket,
        "ECOMMERCE_S3_PREFIX": PREFIX,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": MOTO_REGION,  # only AWS_REGION: every client must honour it
        "ECOMMERCE_WAREHOUSE": "postgres",
        "ECOMMERCE_WAREHOUSE_DSN": postgres_db,
        "ECOMMERCE_GLUE_DATABASE": bucket.replace("-", "_"),  # its own: moto's Glue is shared by every test
        "ECOMMERCE_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),  # does not exist yet: the command creates it
        "ECOMMERCE_DUCKDB_THREADS": "1",
    }


@pytest.fixture
def live(retail_settings: dict[str, str], tmp_path: Path) -> Iterator[LiveDagster]:
    """``ecommerce-assets ui`` with the sensors on and a 5 s sensor interval (started by the test)."""
    env = env_for({**retail_settings, "ECOMMERCE_SENSORS": "on", "ECOMMERCE_SENSOR_INTERVAL_SECONDS": "5"})
    server = LiveDagster(env, tmp_path / "ui.log")
    try:
        yield server
    finally:
        server.kill_everything()


def _gold(dsn: str) -> dict[str, object]:
    """Row counts, total sales and UNKNOWN-customer lines of the ``gold`` star schema in PostgreSQL."""
    with psycopg.connect(dsn) as con:
        got: dict[str, object] = {
            table: con.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("gold", table))).fetchone()[0]
            for table in ("sales_transactions", "customers", "products")
        }
        got["total_sales"] = con.execute("SELECT sum(total_sales) FROM gold.sales_transactions").fetchone()[0]
        got["unknown_lines"] = con.execute(
            "SELECT count(*) FROM gold.sales_transactions WHERE customerid = %s", ["UNKNOWN"]
        ).fetchone()[0]
    return got


def test_an_s3_upload_reaches_postgres_with_no_click(live: LiveDagster, retail_settings: dict[str, str]) -> None:
    began = time.monotonic()
    startup = live.start()
    assert live.sensor_state(RETAIL_SENSOR)["status"] == "RUNNING"
    assert live.sensor_state(AUTOMATION_SENSOR)["status"] == "RUNNING"
    assert live.runs() == []  # a fresh instance: any run from here on was asked for by a sensor

    sample = retail_sample_path()
    s3 = boto3.client("s3", endpoint_url=retail_settings["AWS_ENDPOINT_URL"], region_name=MOTO_REGION,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.put_object(Bucket=retail_settings["ECOMMERCE_S3_BUCKET"],
                  Key=f"{PREFIX}/landing/online_retail/{sample.name}", Body=sample.read_bytes())
    uploaded = time.monotonic()

    def sensor_run_succeeded() -> dict | None:
        runs = live.sensor_runs(RETAIL_SENSOR)
        live.fail_on_failed_runs(runs)
        return next((r for r in runs if r["status"] == "SUCCESS"), None)

    run = live.wait_until(sensor_run_succeeded, WAIT_SECONDS, f"a successful run of {RETAIL_SENSOR}")
    processed = time.monotonic() - uploaded
    assert run["tags"]["ecommerce/arrival_objects"] == "1"
    assert {"online_retail/raw", "online_retail/cleaned", "gold/sales_transactions"} <= live.materialized(run["runId"])
    assert len(live.sensor_runs(RETAIL_SENSOR)) == 1  # one upload, one run

    expected = expected_from_csv(sample)
    assert _gold(retail_settings["ECOMMERCE_WAREHOUSE_DSN"]) == {
        k: expected[k] for k in ("sales_transactions", "customers", "products", "total_sales", "unknown_lines")
    }
    live.fail_on_failed_runs(live.runs())  # nothing else the daemon started failed either

    stopped = live.stop(STOP_BOUND_SECONDS)
    print(f"\nstart-up {startup:.1f} s; upload -> run succeeded {processed:.1f} s; stop {stopped:.1f} s; "
          f"test {time.monotonic() - began:.1f} s")


def _sensor_statuses(output: str) -> dict[str, str]:
    return dict(re.findall(r"^Sensor: (\S+) \[(RUNNING|STOPPED)\]$", output, flags=re.MULTILINE))


def test_aws_mode_starts_the_arrival_sensors_stopped_unless_turned_on(retail_settings: dict[str, str]) -> None:
    Path(retail_settings["DAGSTER_HOME"]).mkdir(parents=True)
    listed = dagster_cli(env_for(retail_settings), "sensor", "list")  # ECOMMERCE_SENSORS unset
    assert listed.returncode == 0, listed.stdout + listed.stderr
    statuses = _sensor_statuses(listed.stdout)
    arrival = {name for name in statuses if name.endswith(("_arrival", "_arrival_sensor"))}
    assert RETAIL_SENSOR in arrival and len(arrival) >= 4, statuses
    assert {name: statuses[name] for name in [*sorted(arrival), AUTOMATION_SENSOR, "stream_sensor"]} == {
        name: "STOPPED" for name in [*sorted(arrival), AUTOMATION_SENSOR, "stream_sensor"]
    }
