"""Transactions JSON -> processed as a PySpark job (``ECOMMERCE_ENGINE=spark``), launched and observed through Pipes.

Standalone: PySpark, ``dagster_pipes``, the standard library and the jobs' shared module ``spark_common`` (shipped
beside this script), never Dagster or this package. The asset plans the partition (which files are JSON, which keys
become columns) and hands this job, as Pipes extras rendered from ``ecommerce_assets.transforms.transactions``:

* ``files``: the files, each ``{path, key}`` (``path`` what Spark reads, ``key`` the lake key the rows name);
* ``checked_sql``, ``output_sql``, ``quarantine_sql`` and ``parameters``: the rules and typed columns in Spark SQL
  over the view ``tx_records``, then the good records in the table's columns, then the quarantined ones;
* ``output_dir`` and ``quarantine_dir``: where the good records (Parquet, with the partition column ``date``, added
  to the Iceberg table as they are) and the quarantined records (one Parquet file) go;
* ``reconcile_check``: the asset check the job reports (records in = rows written + records quarantined, read back
  from what it wrote);
* ``master`` and ``driver_memory`` for a local run.

The job splits each file into records as the DuckDB reader does: a JSON array is its elements, anything else its
non-blank lines (JSON lines), and a file whose lines are not each a JSON value (a pretty-printed object) the JSON
documents it holds; each record's place in its file (``_row``, from 1) is the element's, the non-blank line's or the
document's, and its text is as written (arrays and documents are split by a Python UDF, JSON lines in Spark SQL). It reports the records in, out and quarantined per rule as Pipes metadata (with ``engine: spark``),
the check that the counts reconcile, and its log lines.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

# the jobs' shared module lies beside this script (shipped with it): importable however the script is loaded
sys.path.insert(0, str(Path(__file__).resolve().parent))
from spark_common import open_pipes, run_in_session  # noqa: E402

_LOCAL_SCHEME = re.compile(r"^file:/+")  # Spark writes a local file as file:/x or file:///x


_WHITE = " \t\r\n"


def _skip(text: str, i: int, also: str = "") -> int:
    while i < len(text) and (text[i] in _WHITE or text[i] in also):
        i += 1
    return i


def split_documents(content: str | None) -> list[str]:
    """The texts of the JSON values of a file: a JSON array's elements, else the documents one after another (white
    space between them); each as written (DuckDB's reader keeps a record's text so). Raises on anything else."""
    decoder, docs, text = json.JSONDecoder(), [], content or ""
    i = _skip(text, 0)
    array = text.startswith("[", i)
    if array:
        i = _skip(text, i + 1)
        if text.startswith("]", i):
            return docs
    while i < len(text):
        _, end = decoder.raw_decode(text, i)
        docs.append(text[i:end])
        i = _skip(text, end)
        if array:
            if text.startswith("]", i):
                return docs
            if not text.startswith(",", i):
                raise ValueError(f"a JSON array's elements are separated by commas (at character {i})")
            i = _skip(text, i + 1)
    if array:
        raise ValueError("the JSON array is not closed")
    return docs


def read_records(spark: Any, files: list[dict[str, str]]) -> Any:
    """The records of ``files`` as the view ``tx_records``: filename (the lake key), _row, json (the text), rec."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, StringType

    if not files:
        spark.sql("SELECT CAST(NULL AS STRING) AS filename, CAST(NULL AS BIGINT) AS _row, CAST(NULL AS STRING) AS json, "
                  "CAST(NULL AS VARIANT) AS rec WHERE false").createOrReplaceTempView("tx_records")
        return
    raw = spark.read.text([f["path"] for f in files], wholetext=True)
    keys = {}
    for path in raw.inputFiles():  # as Spark names them (a scheme, escapes): each ends with its lake key
        path = _LOCAL_SCHEME.sub("/", path)
        plain = unquote(path)
        matches = [f["key"] for f in files if plain.endswith("/" + f["key"]) or plain == f["key"]]
        if len(matches) != 1:
            raise ValueError(f"cannot tell which lake file {path} is")
        keys[path] = matches[0]
    key_map = spark.createDataFrame(list(keys.items()), "path string, filename string")
    path = F.regexp_replace(F.col("_metadata.file_path"), _LOCAL_SCHEME.pattern, "/")
    # (a left join: a file it could not name gets no filename, and the job stops before writing anything)
    content = (raw.select(path.alias("path"), F.col("value").alias("content"))
               .join(F.broadcast(key_map), "path", "left").drop("path"))
    content = content.withColumn("_first", F.regexp_extract("content", r"^\s*(\S)", 1))
    content.createOrReplaceTempView("tx_files")
    numbered = Window.partitionBy("filename").orderBy("pos")
    lines = (spark.sql("SELECT filename, pos, regexp_replace(line, '\\r$', '') AS json FROM tx_files "
                       "LATERAL VIEW posexplode(split(content, '\\n')) l AS pos, line WHERE _first NOT IN ('[', '')")
             .where(~F.col("json").rlike(r"^\s*$"))
             .withColumn("rec", F.expr("try_parse_json(json)")))
    lines.createOrReplaceTempView("tx_lines")
    # a JSON array, or a file whose lines are not each a JSON value (documents across lines): split into its values
    documents = [r[0] for r in spark.sql("SELECT DISTINCT filename FROM tx_lines WHERE rec IS NULL").collect()]
    records = (lines.where(~F.col("filename").isin(documents))
               .withColumn("_row", F.row_number().over(numbered).cast("bigint")).select("filename", "_row", "json", "rec"))
    split = F.udf(split_documents, ArrayType(StringType()))  # (pickled: a platform's workers need no pyarrow)
    docs = (content.where((F.col("_first") == "[") | F.col("filename").isin(documents))
            .select("filename", F.posexplode(split("content")).alias("pos", "json"))
            .select("filename", (F.col("pos") + 1).cast("bigint").alias("_row"), "json",
                    F.expr("try_parse_json(json)").alias("rec")))
    records.unionByName(docs).createOrReplaceTempView("tx_records")


def _arguments(spark: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    from pyspark.sql import functions as F

    return {k: F.array(*[F.lit(x) for x in v]) if isinstance(v, list) else v for k, v in parameters.items()}


def process(spark: Any, extras: dict[str, Any], log: Any = None) -> dict[str, Any]:
    """Type, rule and write the records of the files; return the counts."""
    started = time.monotonic()
    spark.conf.set("spark.sql.parser.escapedStringLiterals", "true")  # the rules' regular expressions, as written
    spark.conf.set("spark.sql.variant.allowDuplicateKeys", "true")  # a repeated key is data, as DuckDB reads it
    read_records(spark, extras["files"])
    args = _arguments(spark, extras["parameters"])
    checked = spark.sql(extras["checked_sql"], args=args).persist()
    checked.createOrReplaceTempView("tx_checked")
    unnamed = checked.where("filename IS NULL").count()
    if unnamed:
        raise ValueError(f"{unnamed} record(s) of a file the job could not tell the lake key of")
    counts = {rule: int(n) for rule, n in checked.groupBy("rule").count().collect()}
    records_out = counts.pop(None, 0)
    records_in = records_out + sum(counts.values())
    if log:
        log.info(f"spark {spark.version}: {records_in:,} records read from {len(extras['files'])} file(s), "
                 f"{records_out:,} good, {records_in - records_out:,} quarantined")
    (spark.sql(extras["output_sql"], args=args).sortWithinPartitions("timestamp")
     .write.mode("overwrite").option("compression", "zstd").parquet(extras["output_dir"]))
    (spark.sql(extras["quarantine_sql"]).coalesce(1).sortWithinPartitions("file", "row")
     .write.mode("overwrite").option("compression", "zstd").parquet(extras["quarantine_dir"]))
    checked.unpersist()
    # what was written, read back: the reconciliation is of the files, not of the counts above
    written_out = spark.read.parquet(extras["output_dir"]).count()
    written_quarantine = spark.read.parquet(extras["quarantine_dir"]).count()
    return {"records_in": records_in, "records_out": records_out, "by_rule": dict(sorted(counts.items())),
            "written_out": written_out, "written_quarantine": written_quarantine,
            "spark_version": spark.version, "seconds": round(time.monotonic() - started, 3)}


def main() -> None:
    with open_pipes() as pipes:
        result = run_in_session(pipes, "transactions_process", process)
        pipes.report_asset_materialization(metadata={
            "engine": "spark",
            "spark_version": result["spark_version"],
            "records_in": result["records_in"],
            "records_out": result["records_out"],
            "quarantined_by_rule": {"raw_value": result["by_rule"], "type": "json"},
            "spark_seconds": {"raw_value": result["seconds"], "type": "float"},
        })
        check = pipes.extras.get("reconcile_check")
        if check:  # records in = the rows written + the records quarantined
            pipes.report_asset_check(
                check_name=check,
                passed=(result["records_in"] == result["written_out"] + result["written_quarantine"]
                        and result["written_quarantine"] == sum(result["by_rule"].values())),
                metadata={"records_in": result["records_in"], "records_written": result["written_out"],
                          "records_quarantined": result["written_quarantine"]},
            )


if __name__ == "__main__":
    main()
