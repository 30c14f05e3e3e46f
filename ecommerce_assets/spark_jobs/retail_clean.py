"""Online Retail cleaning as a PySpark job (``ECOMMERCE_ENGINE=spark``), launched and observed through Dagster Pipes.

Standalone: it imports PySpark, ``dagster_pipes`` and the standard library (and boto3 on AWS), never Dagster or this
package, so the same file runs under ``PipesSubprocessClient`` on local PySpark and as a Glue / EMR Serverless job
(the Pipes context and messages then go through S3, named by the job's arguments). What it applies
comes from the asset through the Pipes extras, rendered from ``ecommerce_assets.transforms.retail`` (the rules
written once: the DuckDB path runs the same SQL), so the two engines cannot drift:

* ``sources``: the CSV files, each ``{label, path, encoding, names}`` (``names``: the standardized header);
* ``ruled_sql`` / ``clean_sql`` / ``quarantine_sql`` and ``parameters``: the rules in Spark SQL over the view
  ``retail_src`` (the eight text columns, ``_file``, ``_row``: the row's place in its file, from 1), then the kept
  rows in the cleaned table's columns and the removed ones with rule and field;
* ``rules``: the rule names, in order (each gets a count, zero included);
* ``cleaned_dir``: where the kept rows go, Parquet in one folder per ``invoice_month`` (``_month=YYYY-MM``) with
  ``invoice_month`` kept in the files, so the asset can commit them to the Iceberg table as they are
  (``add_files``: an identity partition's value is read from the file's statistics);
* ``quarantine_dir``: the removed rows, one Parquet file;
* ``master`` and ``driver_memory``: the Spark master and the driver's heap of a local run (``local[*]``, ``2g``);
  absent where the platform provides the session.

It reports through Pipes: the rows in, out and removed per rule as the materialization's metadata (with
``engine: spark``) and its log lines.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

# the jobs' shared module lies beside this script (shipped with it): importable however the script is loaded
sys.path.insert(0, str(Path(__file__).resolve().parent))
from spark_common import open_pipes, run_in_session  # noqa: E402

SOURCE_COLUMNS = [
    "invoiceno", "stockcode", "description", "quantity", "invoicedate", "unitprice", "customerid", "country",
]
# Spark reads ISO-8859-1 under this name; the product's file checks say latin-1
SPARK_ENCODINGS = {"latin-1": "ISO-8859-1", "utf-8": "UTF-8"}


def read_sources(spark: Any, sources: list[dict[str, Any]]) -> Any:
    """The files as one DataFrame of the eight text columns, ``_file`` (the label) and ``_row`` (the row's place in
    its file, from 1): every value text, a blank unquoted field NULL, line breaks inside quoted values kept."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    frames = []
    for source in sources:
        frame = (spark.read.option("header", True).option("multiLine", True).option("quote", '"')
                 .option("escape", '"').option("mode", "PERMISSIVE")
                 .option("encoding", SPARK_ENCODINGS.get(source["encoding"], source["encoding"]))
                 .csv(source["path"]))
        frame = frame.toDF(*source["names"][: len(frame.columns)])
        for column in SOURCE_COLUMNS:
            if column not in frame.columns:  # the file checks refuse a file without one; a short row pads NULL
                frame = frame.withColumn(column, F.lit(None).cast("string"))
        # the row's place in its file: monotonically_increasing_id grows with the file's order, across partitions
        order = Window.orderBy(F.monotonically_increasing_id())
        frames.append(frame.select(*SOURCE_COLUMNS, F.lit(source["label"]).alias("_file"),
                                   F.row_number().over(order).cast("bigint").alias("_row")))
    if not frames:
        schema = ", ".join(f"{c} string" for c in SOURCE_COLUMNS) + ", _file string, _row bigint"
        return spark.createDataFrame([], schema)
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def clean(spark: Any, extras: dict[str, Any], log: Any = None) -> dict[str, Any]:
    """Apply the rules to the sources and write the kept and the removed rows; return the counts."""
    started = time.monotonic()
    read_sources(spark, extras["sources"]).createOrReplaceTempView("retail_src")
    ruled = spark.sql(extras["ruled_sql"], args=extras["parameters"]).persist()
    ruled.createOrReplaceTempView("retail_ruled")
    counts = {(rule or ""): n for rule, n in
              spark.sql("SELECT _rule, count(*) AS n FROM retail_ruled GROUP BY _rule").collect()}
    rows_in = sum(counts.values())
    rows_out = counts.pop("", 0)
    unknown = set(counts) - set(extras["rules"])
    if unknown:
        raise ValueError(f"the rules named no such rule(s): {sorted(unknown)}")
    removed = {rule: int(counts.get(rule, 0)) for rule in extras["rules"]}
    if log:
        log.info(f"spark {spark.version}: {rows_in:,} rows read from {len(extras['sources'])} file(s), "
                 f"{rows_out:,} kept, {rows_in - rows_out:,} removed")
    from pyspark.sql import functions as F

    cleaned = spark.sql(extras["clean_sql"])
    (cleaned.withColumn("_month", F.col("invoice_month")).repartition("_month").sortWithinPartitions("invoicedate")
     .write.mode("overwrite").partitionBy("_month").option("compression", "zstd").parquet(extras["cleaned_dir"]))
    (spark.sql(extras["quarantine_sql"]).coalesce(1).sortWithinPartitions("source_file", "source_row")
     .write.mode("overwrite").option("compression", "zstd").parquet(extras["quarantine_dir"]))
    months = sorted(r[0] for r in spark.sql(
        f"SELECT DISTINCT invoice_month FROM ({extras['clean_sql']})"  # noqa: S608 (the asset's SQL, no values)
    ).collect())
    ruled.unpersist()
    return {"rows_in": int(rows_in), "rows_out": int(rows_out), "removed": removed, "months": months,
            "spark_version": spark.version, "seconds": round(time.monotonic() - started, 3)}


def main() -> None:
    with open_pipes() as pipes:
        result = run_in_session(pipes, "retail_clean", clean)
        pipes.report_asset_materialization(metadata={
            "engine": "spark",
            "spark_version": result["spark_version"],
            "rows_in": result["rows_in"],
            "rows_out": result["rows_out"],
            "removed": {"raw_value": result["removed"], "type": "json"},
            "months": {"raw_value": result["months"], "type": "json"},
            "spark_seconds": {"raw_value": result["seconds"], "type": "float"},
        })


if __name__ == "__main__":
    main()
