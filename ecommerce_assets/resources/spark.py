"""The engine of the heavy transforms (``ECOMMERCE_ENGINE``) and, for ``spark``, the launcher of its jobs.

A Spark job is a standalone PySpark script in ``ecommerce_assets/spark_jobs/`` (no Dagster import); Dagster launches
it through Pipes, hands it the rules and paths as extras, and reads back its metadata and logs. Where it runs is
``ECOMMERCE_SPARK_PLATFORM``:

* ``local``: ``PipesSubprocessClient`` runs the script on local PySpark (``ECOMMERCE_SPARK_MASTER``, default
  ``local[*]``), the Pipes context and messages through temporary files;
* ``glue``: the script is uploaded to the lake's ``code/spark_jobs/``, the lake's Glue job
  ``ecommerce-assets-<bucket>[-<prefix>]-<job>`` (Glue 5, ``ECOMMERCE_SPARK_ROLE_ARN``) is created or pointed at it, and ``PipesGlueClient`` starts a run, the Pipes
  context and messages through the lake's bucket (``pipes/``);
* ``emr-serverless``: the same upload, and ``PipesEMRServerlessClient`` starts a run on the application
  ``ECOMMERCE_EMR_APPLICATION_ID`` as ``ECOMMERCE_SPARK_ROLE_ARN``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import dagster as dg

JOBS_DIR = Path(__file__).resolve().parents[1] / "spark_jobs"
SHARED_MODULE = JOBS_DIR / "spark_common.py"  # imported by every job: shipped beside its script
GLUE_VERSION = "5.0"
# what a Glue or EMR job installs beside the script: the Pipes protocol (no Dagster)
PIPES_MODULE = "dagster-pipes==1.13.27"
PLATFORMS = ("local", "glue", "emr-serverless")


class TransformEngine(dg.ConfigurableResource):
    """Which engine runs the heavy transforms: ``duckdb`` (in the run worker) or ``spark`` (a PySpark job through
    Dagster Pipes, on ``platform``). Every materialization it makes records ``engine`` in its metadata."""

    kind: str = "duckdb"
    spark_master: str = "local[*]"
    spark_driver_memory: str = "2g"
    platform: str = "local"
    s3_bucket: str | None = None  # the lake's bucket (glue, emr-serverless): the script and the Pipes messages
    s3_prefix: str = ""
    region_name: str | None = None
    endpoint_url: str | None = None
    role_arn: str | None = None  # the role the Glue job / EMR Serverless job runs as
    emr_application_id: str | None = None
    poll_interval_seconds: float = 10.0  # how often the status of a Glue / EMR run is asked

    @property
    def spark(self) -> bool:
        return self.kind == "spark"

    @property
    def remote(self) -> bool:
        """Whether the Spark jobs run on AWS (Glue, EMR Serverless), reading and writing S3."""
        return self.platform != "local"

    def run_spark_job(
        self, context: dg.AssetExecutionContext, job: str, extras: dict[str, Any],
        checks: list[dg.AssetCheckResult] | None = None,
    ) -> dict[str, Any]:
        """Run the Spark job ``job`` (``spark_jobs/<job>.py``) with ``extras`` on the platform; return the metadata it
        reported (plain values), and append the asset check results it reported to ``checks``. Its log lines are
        the step's; a failed job fails the step with its reason."""
        script = JOBS_DIR / f"{job}.py"
        if not script.is_file():
            raise dg.Failure(description=f"no Spark job {job!r} ({script})")
        if self.platform == "local":
            invocation = self._run_local(context, script, extras)
        elif self.platform in ("glue", "emr-serverless"):
            invocation = self._run_on_aws(context, script, job, extras)
        else:
            raise dg.Failure(description=f"ECOMMERCE_SPARK_PLATFORM={self.platform!r}: one of {', '.join(PLATFORMS)}")
        if checks is not None:
            checks.extend(r for r in invocation.get_results() if isinstance(r, dg.AssetCheckResult))
        reported = invocation.get_materialize_result().metadata or {}
        return {key: getattr(value, "value", value) for key, value in reported.items()}

    def check_lake(self, location: str) -> None:
        """Refuse a lake the platform cannot reach: local Spark writes a local lake only, Glue and EMR the S3 lake
        (``location``: where the job's table lives)."""
        on_s3 = not location.startswith("file:")
        if on_s3 != self.remote:
            raise dg.Failure(description=(
                "ECOMMERCE_ENGINE=spark: local Spark (ECOMMERCE_SPARK_PLATFORM=local) writes to a local lake only; "
                "with the S3 lake set ECOMMERCE_SPARK_PLATFORM=glue or emr-serverless, or ECOMMERCE_ENGINE=duckdb"
                if on_s3 else
                f"ECOMMERCE_SPARK_PLATFORM={self.platform} runs on AWS and needs the S3 lake (ECOMMERCE_ENV=aws)"
            ))

    # --- local ----------------------------------------------------------------------------------------------------
    def _run_local(
        self, context: dg.AssetExecutionContext, script: Path, extras: dict[str, Any]
    ) -> dg.PipesClientCompletedInvocation:
        problem = local_spark_problem()
        if problem:
            raise dg.Failure(description=f"ECOMMERCE_ENGINE=spark: {problem}")
        client = dg.PipesSubprocessClient(env={"PYSPARK_PYTHON": sys.executable,
                                               "PYSPARK_DRIVER_PYTHON": sys.executable})
        return client.run(context=context, command=[sys.executable, str(script)],
                          extras={**extras, "master": self.spark_master, "driver_memory": self.spark_driver_memory})

    # --- AWS: Glue, EMR Serverless --------------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.s3_prefix, *parts) if p.strip("/"))

    def _client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.region_name, endpoint_url=self.endpoint_url)

    def upload_script(self, script: Path) -> str:
        """Upload a job's script (or the module the jobs share) to the lake's ``code/spark_jobs/``; its ``s3://``
        URI."""
        if not self.s3_bucket:
            raise dg.Failure(description="ECOMMERCE_SPARK_PLATFORM on AWS needs the lake's bucket (ECOMMERCE_S3_BUCKET)")
        key = self._key("code", "spark_jobs", script.name)
        self._client("s3").upload_file(str(script), self.s3_bucket, key)
        return f"s3://{self.s3_bucket}/{key}"

    def glue_job_name(self, job: str) -> str:
        """The Glue job of ``job`` for this lake: ``ecommerce-assets-<bucket>[-<prefix>]-<job>`` (two lakes in one
        account, dev and prod say, never share a job)."""
        lake = "-".join(p for p in (self.s3_bucket or "", self.s3_prefix.strip("/")) if p)
        return re.sub(r"[^A-Za-z0-9_-]+", "-", f"ecommerce-assets-{lake}-{job.replace('_', '-')}")[:255]

    def ensure_glue_job(self, name: str, script_uri: str, shared_uri: str = "") -> None:
        """The Glue job ``name`` running ``script_uri`` (Glue 5, Python 3, the Pipes module installed beside it, the
        jobs' shared module ``shared_uri`` on its path): created when missing, its script and role updated when they
        differ."""
        if not self.role_arn:
            raise dg.Failure(description="ECOMMERCE_SPARK_PLATFORM=glue needs ECOMMERCE_SPARK_ROLE_ARN (the job's role)")
        glue = self._client("glue")
        definition = {
            "Role": self.role_arn,
            "Command": {"Name": "glueetl", "ScriptLocation": script_uri, "PythonVersion": "3"},
            "GlueVersion": GLUE_VERSION,
            "DefaultArguments": {"--additional-python-modules": PIPES_MODULE, "--enable-metrics": "true",
                                  **({"--extra-py-files": shared_uri} if shared_uri else {})},
        }
        try:
            current = glue.get_job(JobName=name)["Job"]
        except glue.exceptions.EntityNotFoundException:
            glue.create_job(Name=name, Description="ecommerce-assets Spark job (launched through Dagster Pipes)",
                            **definition)
            return
        now = (current.get("Command", {}).get("ScriptLocation"), current.get("Role"),
               current.get("DefaultArguments", {}).get("--extra-py-files", ""))
        if now != (script_uri, self.role_arn, shared_uri):
            glue.update_job(JobName=name, JobUpdate=definition)

    def _pipes_io(self) -> tuple[Any, Any]:
        """The Pipes context and messages through the lake's bucket, both below ``<prefix>/pipes/`` (so the job's
        role needs no access outside the lake's prefix)."""
        from contextlib import contextmanager

        from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader

        prefix = self._key("pipes", "messages")

        class LakeS3MessageReader(PipesS3MessageReader):
            @contextmanager
            def get_params(self):  # noqa: ANN202 (dagster's)
                with super().get_params() as params:
                    yield {**params, "key_prefix": f"{prefix}/{params['key_prefix']}"}

        s3 = self._client("s3")
        return (PipesS3ContextInjector(bucket=self.s3_bucket or "", client=s3, key_prefix=self._key("pipes", "context")),
                LakeS3MessageReader(bucket=self.s3_bucket or "", client=s3, interval=self.poll_interval_seconds))

    def _run_on_aws(
        self, context: dg.AssetExecutionContext, script: Path, job: str, extras: dict[str, Any]
    ) -> dg.PipesClientCompletedInvocation:
        script_uri, shared_uri = self.upload_script(script), self.upload_script(SHARED_MODULE)
        injector, reader = self._pipes_io()
        if self.platform == "glue":
            from dagster_aws.pipes import PipesGlueClient

            name = self.glue_job_name(job)
            self.ensure_glue_job(name, script_uri, shared_uri)
            return PipesGlueClient(client=self._client("glue"), context_injector=injector, message_reader=reader).run(
                context=context, start_job_run_params={"JobName": name}, extras=extras
            )
        from dagster_aws.pipes import PipesEMRServerlessClient

        if not (self.emr_application_id and self.role_arn):
            raise dg.Failure(description=(
                "ECOMMERCE_SPARK_PLATFORM=emr-serverless needs ECOMMERCE_EMR_APPLICATION_ID and ECOMMERCE_SPARK_ROLE_ARN"
            ))
        return PipesEMRServerlessClient(
            client=self._client("emr-serverless"), context_injector=injector, message_reader=reader,
            poll_interval=self.poll_interval_seconds,
        ).run(context=context, extras=extras, start_job_run_params={
            "applicationId": self.emr_application_id,
            "executionRoleArn": self.role_arn,
            "name": f"ecommerce-assets {job} {context.run.run_id[:8]}",
            "jobDriver": {"sparkSubmit": {"entryPoint": script_uri, "sparkSubmitParameters": f"--py-files {shared_uri}"}},
        })


def local_spark_problem() -> str | None:
    """Why a local Spark job cannot start here (no PySpark, no Java), or None."""
    if not _pyspark_installed():
        return "PySpark is not installed: pip install 'ecommerce-assets[spark]'"
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and (Path(java_home) / "bin" / "java").exists()) and shutil.which("java") is None:
        return "no Java runtime (set JAVA_HOME or put `java` on PATH; Spark 4 needs a JDK 17 or 21)"
    return None


def _pyspark_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyspark") is not None
