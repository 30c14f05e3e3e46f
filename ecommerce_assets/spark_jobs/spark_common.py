"""What the Spark jobs share: the Spark session of a local or a platform run, its JVM log, and the Pipes connection.

Standalone like the jobs: PySpark, ``dagster_pipes`` and the standard library (and boto3 on AWS), never Dagster or
the ``ecommerce_assets`` package. The launcher ships this file beside a job's script (on the local Python path; on
Glue ``--extra-py-files``, on EMR Serverless ``--py-files``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_QUIET_LOG4J = """status = error
rootLogger.level = error
logger.shell.name = org.apache.spark.api.python.PythonGatewayServer
logger.shell.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} spark %p %c{1}: %m%n
"""


def spark_session(
    master: str | None, app_name: str = "ecommerce-assets", driver_memory: str | None = None
) -> Any:
    """The session: ``master`` (``local[*]``) for a local run, quiet (the console is for people, the run's story
    is in Dagster's event log): the JVM's own output goes to ``spark.log`` beside its log4j settings (errors
    only; ``spark_log`` says where); the platform's own session when ``master`` is None.
    Timestamps without a time zone (``TIMESTAMP`` means ``TIMESTAMP_NTZ``), as the cleaned table's; ANSI mode off
    so that ``make_timestamp_ntz`` is NULL for an impossible date, as the rules expect."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        folder = Path(tempfile.mkdtemp(prefix="ecommerce-spark-"))
        (folder / "log4j2.properties").write_text(_QUIET_LOG4J)
        memory = f"--driver-memory {driver_memory} " if driver_memory else ""
        os.environ["PYSPARK_SUBMIT_ARGS"] = (
            f'{memory}--driver-java-options "-Dlog4j.configurationFile={(folder / "log4j2.properties").as_uri()}" '
            "pyspark-shell"
        )
        builder = (builder.master(master).config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "8"))
    builder = (builder.config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.timestampType", "TIMESTAMP_NTZ")
               .config("spark.sql.ansi.enabled", "false")
               .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS"))
    if not master:
        return builder.getOrCreate()
    # the JVM inherits this process's stderr when it starts: hand it the log file instead, for its whole life
    spark_log = folder / "spark.log"
    saved = os.dup(2)
    log_fd = os.open(spark_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(log_fd, 2)
        session = builder.getOrCreate()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(log_fd)
    session.conf.set("ecommerce.spark_log", str(spark_log))
    return session


def spark_log_tail(spark: Any, lines: int = 20) -> str:
    """The last ``lines`` of the local JVM's log (empty on a platform's session)."""
    try:
        path = Path(spark.conf.get("ecommerce.spark_log"))
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except Exception:  # noqa: BLE001 (no log: the platform's session)
        return ""


def open_pipes() -> Any:
    """The Pipes connection. Launched by Glue, the parameters are the job's arguments; by EMR Serverless, the
    driver's environment; by the local launcher, the environment too. When they name a bucket (Glue, EMR
    Serverless), the context is read from and the messages written to S3; else the launcher's files."""
    from dagster_pipes import (
        PipesCliArgsParamsLoader,
        PipesEnvVarParamsLoader,
        PipesS3ContextLoader,
        PipesS3MessageWriter,
        open_dagster_pipes,
    )

    cli = PipesCliArgsParamsLoader()
    params = cli if cli.is_dagster_pipes_process() else PipesEnvVarParamsLoader()
    if "bucket" not in params.load_context_params():
        return open_dagster_pipes(params_loader=params)
    import boto3  # on Glue and EMR, beside PySpark

    s3 = boto3.client("s3")
    return open_dagster_pipes(params_loader=params, context_loader=PipesS3ContextLoader(client=s3),
                              message_writer=PipesS3MessageWriter(client=s3))


def run_in_session(pipes: Any, job: str, work: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Run ``work(spark, extras, log=...)`` in the job's Spark session (its extras, its log the step's) and return its
    result; on a failure the step logs the end of the JVM's log. A local session is stopped at the end."""
    extras = dict(pipes.extras)
    spark = spark_session(extras.get("master"), f"ecommerce-assets {job}", extras.get("driver_memory"))
    try:
        return work(spark, extras, log=pipes.log)
    except Exception:
        tail = spark_log_tail(spark)
        if tail:
            pipes.log.error(f"the Spark job failed; the end of its JVM log:\n{tail}")
        raise
    finally:
        if extras.get("master"):
            spark.stop()
