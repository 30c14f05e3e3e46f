"""The engine of the heavy transforms (``ECOMMERCE_ENGINE``) and, for ``spark``, the launcher of its jobs.

A Spark job is a standalone PySpark script in ``ecommerce_assets/spark_jobs/`` (no Dagster import); Dagster launches
it through Pipes, hands it the rules and paths as extras, and reads back its metadata and logs. Locally the
script runs under ``PipesSubprocessClient`` on local PySpark (``ECOMMERCE_SPARK_MASTER``, default ``local[*]``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import dagster as dg

JOBS_DIR = Path(__file__).resolve().parents[1] / "spark_jobs"


class TransformEngine(dg.ConfigurableResource):
    """Which engine runs the heavy transforms: ``duckdb`` (in the run worker) or ``spark`` (a PySpark job through
    Dagster Pipes). Every materialization it makes records ``engine`` in its metadata."""

    kind: str = "duckdb"
    spark_master: str = "local[*]"

    @property
    def spark(self) -> bool:
        return self.kind == "spark"

    def run_spark_job(
        self, context: dg.AssetExecutionContext, job: str, extras: dict[str, Any]
    ) -> dict[str, Any]:
        """Run the Spark job ``job`` (``spark_jobs/<job>.py``) with ``extras``; return the metadata it reported (plain
        values). Its log lines are the step's; a failure of the job fails the step with the job's exit code."""
        script = JOBS_DIR / f"{job}.py"
        if not script.is_file():
            raise dg.Failure(description=f"no Spark job {job!r} ({script})")
        problem = local_spark_problem()
        if problem:
            raise dg.Failure(description=f"ECOMMERCE_ENGINE=spark: {problem}")
        client = dg.PipesSubprocessClient(env={"PYSPARK_PYTHON": sys.executable,
                                               "PYSPARK_DRIVER_PYTHON": sys.executable})
        invocation = client.run(context=context, command=[sys.executable, str(script)],
                                extras={**extras, "master": self.spark_master})
        reported = invocation.get_materialize_result().metadata or {}
        return {key: getattr(value, "value", value) for key, value in reported.items()}


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
