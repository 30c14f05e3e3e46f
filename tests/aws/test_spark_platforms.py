"""The Spark jobs on AWS: ``ECOMMERCE_SPARK_PLATFORM=glue`` (``PipesGlueClient``) and ``emr-serverless``
(``PipesEMRServerlessClient``), against moto's server.

Real here: the engine resource's launch path (the script uploaded to the lake's ``code/spark_jobs/``, the Glue job
created on moto's Glue and pointed at it, the run started and its status polled), dagster-aws's clients, the Pipes
context and messages through S3 on moto (``PipesS3ContextInjector``, ``PipesS3MessageReader``) and the job script's
own AWS path (parameters from the job's arguments or the driver's environment, ``PipesS3ContextLoader``,
``PipesS3MessageWriter``).

Not real: moto records a job run but executes nothing, so the one stand-in is the platform's *execution* of the
run: ``start_job_run`` goes to moto and then runs the uploaded script, as the platform would, with the run's
arguments (Glue) or its driver environment (EMR Serverless), on local PySpark; the run's state is then the
script's exit. The data the script reads and writes is local here (local Spark has no S3 connector offline);
on Glue or EMR it is the S3 lake. Not run here: Glue 5 or EMR Serverless themselves, their IAM, their S3 I/O.
"""


import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest

from ecommerce_assets.resources.spark import TransformEngine
from ecommerce_assets.storage.iceberg import IcebergTables
from ecommerce_assets.storage.lake import LocalLake
from ecommerce_assets.transforms import retail
from ecommerce_assets.transforms import transactions as tx
from ecommerce_assets.transforms.files import open_csv
from tests.conftest import MOTO_REGION
from tests.retail_helpers import GOOD, run_clean, write_csv
from tests.test_transactions_fast_path import _records

pytestmark = pytest.mark.slow
ROLE = "arn:aws:iam::123456789012:role/ecommerce-spark"
TX_DATE = "2024-03-05"
TX_LANDING = f"landing/transactions/date={TX_DATE}/"


class _Platform:
    """moto's client for the service, whose ``start_job_run`` also executes the run's script here."""

    def __init__(self, client: Any, s3: Any, env: dict[str, str]) -> None:
        self._client, self._s3, self._env, self.exits = client, s3, env, {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _execute(self, script_uri: str, args: list[str], env: dict[str, str], py_files: str) -> int:
        """Run the script with the ``py_files`` (comma-separated S3 URIs) beside it, as the platform puts them on
        the job's Python path."""
        with tempfile.TemporaryDirectory() as tmp:
            for uri in [script_uri, *filter(None, py_files.split(","))]:
                bucket, key = re.match(r"s3://([^/]+)/(.+)", uri).groups()  # type: ignore[union-attr]
                self._s3.download_file(bucket, key, str(Path(tmp) / Path(key).name))
            script = Path(tmp) / Path(script_uri).name
            proc = subprocess.run([sys.executable, str(script), *args], env={**self._env, **env}, timeout=600,
                                  check=False, capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-4000:])  # the platform's log, for the failure's message
        return proc.returncode


class GlueRuns(_Platform):
    def start_job_run(self, **params: Any) -> dict:
        response = self._client.start_job_run(**params)
        job = self._client.get_job(JobName=params["JobName"])["Job"]
        args = [item for pair in (params.get("Arguments") or {}).items() for item in pair]  # --key value, as Glue
        self.exits[response["JobRunId"]] = self._execute(job["Command"]["ScriptLocation"], args, {},
                                                         job["DefaultArguments"].get("--extra-py-files", ""))
        return response

    def get_job_run(self, **params: Any) -> dict:
        response = self._client.get_job_run(**params)
        response["JobRun"]["JobRunState"] = "SUCCEEDED" if self.exits[params["RunId"]] == 0 else "FAILED"
        return response


class EMRServerlessRuns(_Platform):
    def start_job_run(self, **params: Any) -> dict:
        response = self._client.start_job_run(**params)
        submit = params["jobDriver"]["sparkSubmit"]
        parameters = submit.get("sparkSubmitParameters", "")
        env = dict(re.findall(r"--conf spark\.emr-serverless\.driverEnv\.(\w+)=(\S+)", parameters))
        py_files = re.search(r"--py-files (\S+)", parameters)
        self.exits[response["jobRunId"]] = self._execute(submit["entryPoint"], submit.get("entryPointArguments", []),
                                                         env, py_files.group(1) if py_files else "")
        return response

    def get_job_run(self, **params: Any) -> dict:
        response = self._client.get_job_run(**params)
        response["jobRun"]["state"] = "SUCCESS" if self.exits[params["jobRunId"]] == 0 else "FAILED"
        return response


@pytest.fixture
def lake_bucket(moto_endpoint: str) -> str:
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name=MOTO_REGION).create_bucket(Bucket=bucket)
    return bucket


def _engine(platform: str, bucket: str, moto_endpoint: str, **kw: Any) -> TransformEngine:
    return TransformEngine(kind="spark", platform=platform, s3_bucket=bucket, s3_prefix="shop", region_name=MOTO_REGION,
                           endpoint_url=moto_endpoint, role_arn=ROLE, poll_interval_seconds=0.5, **kw)


def _stand_in(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, platform_cls: type[_Platform],
              service: str) -> _Platform:
    """The engine's client for ``service`` becomes the stand-in platform (moto's API, the run executed here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECOMMERCE_", "DAGSTER_"))}
    env.update({"AWS_ENDPOINT_URL": moto_endpoint, "AWS_DEFAULT_REGION": MOTO_REGION,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "PYSPARK_PYTHON": sys.executable})  # the platform's Python, for the Spark workers too
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=MOTO_REGION)
    platform = platform_cls(boto3.client(service, endpoint_url=moto_endpoint, region_name=MOTO_REGION), s3, env)
    real_client = TransformEngine._client
    monkeypatch.setattr(TransformEngine, "_client",
                        lambda self, name: platform if name == service else real_client(self, name))
    return platform


def _launch(engine: TransformEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str,
            platform_cls: type[_Platform], service: str) -> tuple[dict, retail.CleanResult, _Platform]:
    """Materialize an asset that runs the retail job through ``engine`` on a small file; what the job reported,
    what the DuckDB path gives for the same file, and the stand-in platform."""
    csv = write_csv(tmp_path / "in" / "a.csv", [GOOD, GOOD, [*GOOD[:3], "-1", *GOOD[4:]], [*GOOD[:3], "1.5", *GOOD[4:]]])
    expected, _, _ = run_clean(tmp_path / "duckdb", csv)
    platform = _stand_in(monkeypatch, moto_endpoint, platform_cls, service)
    names = retail.column_names(open_csv(csv, retail.SOURCE_COLUMNS))
    extras = retail.spark_job_extras([("a.csv", str(csv), "utf-8", names)], str(tmp_path / "cleaned"),
                                     str(tmp_path / "quarantine"), None)
    reported: dict[str, Any] = {}

    @dg.asset
    def spark_on_aws(context: dg.AssetExecutionContext, engine: TransformEngine) -> dg.MaterializeResult:
        reported.update(engine.run_spark_job(context, "retail_clean", extras))
        return dg.MaterializeResult(metadata={"engine": "spark"})

    assert dg.materialize([spark_on_aws], resources={"engine": engine}).success
    return reported, expected, platform


def test_glue_creates_the_job_runs_the_uploaded_script_and_reads_its_messages_from_s3(
    lake_bucket: str, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine("glue", lake_bucket, moto_endpoint)
    reported, expected, glue = _launch(engine, tmp_path, monkeypatch, moto_endpoint, GlueRuns, "glue")
    # what the job reported through S3 is what the DuckDB path gives for the same file
    assert (reported["rows_in"], reported["rows_out"], reported["removed"]) == (
        expected.rows_in, expected.rows_out, expected.removed)
    assert reported["engine"] == "spark"
    # the job on moto's Glue: Glue 5, the role, the uploaded script with the Pipes module beside it
    name = engine.glue_job_name("retail_clean")
    assert name == f"ecommerce-assets-{lake_bucket}-shop-retail-clean"  # the lake's own job
    job = glue.get_job(JobName=name)["Job"]
    assert job["GlueVersion"] == "5.0" and job["Role"] == ROLE
    assert job["Command"]["ScriptLocation"] == f"s3://{lake_bucket}/shop/code/spark_jobs/retail_clean.py"
    assert job["DefaultArguments"]["--additional-python-modules"].startswith("dagster-pipes==")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=MOTO_REGION)
    uploaded = s3.get_object(Bucket=lake_bucket, Key="shop/code/spark_jobs/retail_clean.py")["Body"].read()
    assert uploaded == (Path(retail.__file__).parents[1] / "spark_jobs" / "retail_clean.py").read_bytes()
    # the Pipes context and messages stayed below the lake's prefix (the job's role reaches nothing else)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=lake_bucket).get("Contents", [])]
    pipes = [k for k in keys if "/pipes/" in k]
    assert any(k.startswith("shop/pipes/messages/") for k in pipes) and all(k.startswith("shop/") for k in keys)
    runs = glue.get_job_runs(JobName=name)["JobRuns"]
    assert len(runs) == 1 and {"--dagster-pipes-context", "--dagster-pipes-messages"} <= set(runs[0]["Arguments"])
    # a second launch reuses the job (updated only when its script or role changed: moto has no UpdateJob)
    jobs = len(glue.get_jobs()["Jobs"])
    engine.ensure_glue_job(name, job["Command"]["ScriptLocation"], job["DefaultArguments"]["--extra-py-files"])
    assert len(glue.get_jobs()["Jobs"]) == jobs
    # the module the jobs share went beside the script, on the job's path
    assert job["DefaultArguments"]["--extra-py-files"] == f"s3://{lake_bucket}/shop/code/spark_jobs/spark_common.py"


def test_emr_serverless_runs_the_uploaded_script_with_pipes_in_the_driver_environment(
    lake_bucket: str, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emr = boto3.client("emr-serverless", endpoint_url=moto_endpoint, region_name=MOTO_REGION)
    app = emr.create_application(name="ecommerce", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    engine = _engine("emr-serverless", lake_bucket, moto_endpoint, emr_application_id=app)
    reported, expected, platform = _launch(engine, tmp_path, monkeypatch, moto_endpoint, EMRServerlessRuns,
                                           "emr-serverless")
    assert (reported["rows_in"], reported["rows_out"], reported["removed"]) == (
        expected.rows_in, expected.rows_out, expected.removed)
    runs = emr.list_job_runs(applicationId=app)["jobRuns"]
    assert len(runs) == 1
    run = emr.get_job_run(applicationId=app, jobRunId=runs[0]["id"])["jobRun"]
    assert run["name"].startswith("ecommerce-assets retail_clean ")  # (moto keeps no execution role to compare)
    assert run["jobDriver"]["sparkSubmit"]["entryPoint"] == f"s3://{lake_bucket}/shop/code/spark_jobs/retail_clean.py"
    assert "driverEnv.DAGSTER_PIPES_CONTEXT=" in run["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]
    assert f"--py-files s3://{lake_bucket}/shop/code/spark_jobs/spark_common.py" in (
        run["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"])


def test_a_failed_run_fails_the_step_with_the_platforms_state(
    lake_bucket: str, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine("glue", lake_bucket, moto_endpoint)
    monkeypatch.setattr(GlueRuns, "_execute", lambda self, *a: 1)  # the script exits 1 on the platform
    with pytest.raises(Exception, match="FAILED"):
        _launch(engine, tmp_path, monkeypatch, moto_endpoint, GlueRuns, "glue")


def test_the_aws_platforms_need_their_settings(lake_bucket: str, moto_endpoint: str) -> None:
    with pytest.raises(dg.Failure, match="ECOMMERCE_SPARK_ROLE_ARN"):
        TransformEngine(kind="spark", platform="glue", s3_bucket=lake_bucket, region_name=MOTO_REGION,
                        endpoint_url=moto_endpoint).ensure_glue_job("x", "s3://b/x.py")
    with pytest.raises(dg.Failure, match="ECOMMERCE_S3_BUCKET"):
        TransformEngine(kind="spark", platform="glue").upload_script(Path(retail.__file__))


def test_the_transactions_job_runs_on_glue_and_its_check_comes_back_through_s3(
    lake_bucket: str, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transactions job through ``PipesGlueClient``: its counts and its reconciliation check (an asset check
    result, not metadata) travel through the lake's ``pipes/`` prefix, and equal the DuckDB path's."""
    records = _records(4, 300, json_looking=True)
    lakes = {name: LocalLake(base_dir=str(tmp_path / name)) for name in ("duckdb", "glue")}
    for lake in lakes.values():
        lake.write_bytes(f"{TX_LANDING}a.json", "\n".join(json.dumps(r) for r in records).encode())
    expected = tx.transform_partition(lakes["duckdb"], TX_DATE, list(lakes["duckdb"].list_objects(TX_LANDING)))
    engine = _engine("glue", lake_bucket, moto_endpoint)
    _stand_in(monkeypatch, moto_endpoint, GlueRuns, "glue")
    reconciles = dg.AssetCheckSpec("counts_reconcile", asset="transactions_on_glue")
    checks: list[dg.AssetCheckResult] = []

    def run_job(extras: dict[str, object]) -> dict[str, object]:
        reported: dict[str, Any] = {}

        @dg.asset(check_specs=[reconciles])
        def transactions_on_glue(context: dg.AssetExecutionContext, engine: TransformEngine) -> dg.MaterializeResult:
            reported.update(engine.run_spark_job(context, "transactions_process",
                                                 {**extras, "reconcile_check": reconciles.name}, checks))
            return dg.MaterializeResult(check_results=checks)

        assert dg.materialize([transactions_on_glue], resources={"engine": engine}).success
        return reported

    tables = IcebergTables(catalog_kind="sql", sqlite_path=str(tmp_path / "catalog.db"),
                           warehouse=(tmp_path / "glue").as_uri())
    # (the stand-in runs the job here, so it reads the local lake: remote=False)
    got = tx.transform_partition_on_spark(lakes["glue"], TX_DATE, list(lakes["glue"].list_objects(TX_LANDING)),
                                          run_job, tables=tables)
    assert (got.records_in, got.records_out, got.by_rule) == (expected.records_in, expected.records_out,
                                                               expected.by_rule)
    assert expected.records_quarantined > 20
    assert [c.passed for c in checks] == [True]
    assert checks[0].metadata["records_written"].value == expected.records_out  # type: ignore[union-attr]
    glue = boto3.client("glue", endpoint_url=moto_endpoint, region_name=MOTO_REGION)
    assert glue.get_job(JobName=engine.glue_job_name("transactions_process"))["Job"]["Command"]["ScriptLocation"] == (
        f"s3://{lake_bucket}/shop/code/spark_jobs/transactions_process.py")
