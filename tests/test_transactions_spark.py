"""``ECOMMERCE_ENGINE=spark`` for transactions JSON -> processed: the rules rendered in Spark SQL, run by the PySpark
job ``transactions_process`` through Dagster Pipes, must give exactly the DuckDB path's partition.

* The hostile records of the fast-path tests (every rule broken many ways, good records that only look odd, extra
  fields, keys that cannot become columns), in JSON lines, JSON arrays, a pretty-printed object, a file that is not
  JSON and an empty one: the same rows in the Iceberg partition (every column), the same quarantined records (file,
  row, field, rule, reason, and the same JSON value), the same bad files and counts.
* Through ``ecommerce-assets run`` with ``ECOMMERCE_ENGINE=spark`` on generated days: the same table and analytics as
  the default engine; the materialization says ``engine: spark`` and the job's reconciliation check passed.
"""


import json
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from ecommerce_assets.resources.spark import TransformEngine, local_spark_problem
from ecommerce_assets.storage.iceberg import IcebergTables, create_scan_view
from ecommerce_assets.storage.lake import LocalLake
from ecommerce_assets.transforms import transactions as tx
from tests.pipeline_inputs import _connect as warehouse_connection
from tests.pipeline_inputs import cli_env, run_cli
from tests.test_pipelines_alone import ANALYTICS, GENERATE, TRANSACTION_DATES
from tests.test_transactions_fast_path import _land, _records

pytestmark = [pytest.mark.slow, pytest.mark.skipif(local_spark_problem() is not None,
                                                   reason="needs PySpark and Java (make setup installs both)")]
DATE = "2024-03-05"
LANDING = f"landing/transactions/date={DATE}/"


def _spark_runner(engine: TransformEngine) -> tx.SparkRunner:
    """Run the job as the asset does: through ``TransformEngine.run_spark_job`` inside a materialization."""

    def run_job(extras: dict[str, object]) -> dict[str, object]:
        reported: dict[str, Any] = {}

        @dg.asset
        def transactions_on_spark(context: dg.AssetExecutionContext, engine: TransformEngine) -> dg.MaterializeResult:
            reported.update(engine.run_spark_job(context, "transactions_process", extras))
            return dg.MaterializeResult()

        assert dg.materialize([transactions_on_spark], resources={"engine": engine}).success
        return reported

    return run_job


def _tables(base: Path) -> IcebergTables:
    return IcebergTables(catalog_kind="sql", sqlite_path=str(base / "catalog.db"), warehouse=(base / "lake").as_uri())


def _partition(lake: LocalLake, tables: IcebergTables) -> tuple[list[str], list[tuple], list[tuple]]:
    con = lake.engine()
    try:
        create_scan_view(con, "t", tables.metadata_location(tx.TABLE))
        rows = con.execute("SELECT * EXCLUDE (source_file), source_file FROM t ORDER BY ALL").fetchall()
        cols = [d[0] for d in con.description]
        q_key = f"quarantine/transactions/date={DATE}/records.parquet"
        q = con.execute("SELECT file, row, field, rule, reason, record FROM read_parquet(?) ORDER BY file, row",
                        [lake.uri(q_key)]).fetchall() if lake.exists(q_key) else []
    finally:
        con.close()
    return cols, rows, [(*r[:5], json.loads(r[5])) for r in q]


def _in_lake(metadata: dict[str, Any], base: Path) -> str:
    return json.dumps(metadata, sort_keys=True).replace(str(base), "<lake>")


def _land_hostile(lake: LocalLake, seed: int) -> None:
    records = _records(seed, 1500, json_looking=True)
    for i, rec in enumerate(records[:60]):  # extra fields: a new column of each kind, and keys that cannot be one
        rec["channel"] = ["web", "app", 7, None][i % 4]
        rec["score"] = [1, 2.5, "x", True][i % 4]
        if i % 9 == 0:
            rec["bad key"] = 1
    _land(lake, records, seed)
    lake.write_bytes(LANDING + "pretty.json", json.dumps(records[0], indent=2).encode())
    lake.write_bytes(LANDING + "two_documents.json", (json.dumps(records[1], indent=2) + "\n" +
                                                      json.dumps(records[2], indent=2)).encode())
    lake.write_bytes(LANDING + "not_json.json", b"id;quantity\n1;2\n")
    lake.write_bytes(LANDING + "empty.json", b"")
    lake.write_bytes(LANDING + "blank_lines.json", b"\n" + json.dumps(records[3]).encode() + b"\r\n\n  \n"
                     + json.dumps(records[4]).encode())
    lake.write_bytes(LANDING + "not_objects.json", b'[{"transaction_id": "A"}, 5, "x", null]')


@pytest.mark.parametrize("seed", [1, 2])
def test_spark_gives_the_duckdb_paths_partition_record_for_record(tmp_path: Path, seed: int) -> None:
    results, outputs = {}, {}
    engine = TransformEngine(kind="spark", spark_master="local[2]", spark_driver_memory="1g")
    for name in ("duckdb", "spark"):
        lake, tables = LocalLake(base_dir=str(tmp_path / name / "lake")), _tables(tmp_path / name)
        _land_hostile(lake, seed)
        objects = list(lake.list_objects(LANDING))
        if name == "duckdb":
            results[name] = tx.transform_partition(lake, DATE, objects, tables=tables)
        else:
            results[name] = tx.transform_partition_on_spark(lake, DATE, objects, _spark_runner(engine), tables=tables)
        outputs[name] = _partition(lake, tables)
    duck, spark = results["duckdb"], results["spark"]
    assert spark.reconciles and duck.reconciles
    # (a bad file's problem is the same DuckDB parser's message, which names the file in its own lake)
    assert _in_lake(spark.as_metadata(), tmp_path / "spark") == _in_lake(duck.as_metadata(), tmp_path / "duckdb")
    # every kind of rule was met, the extra fields became columns, and plenty of records are good
    assert {r.split("_")[0] for r in duck.by_rule} >= {"missing", "wrong", "non", "out", "control", "not", "unsupported"}
    assert duck.extra_fields == {"channel": "string", "extra": "string", "score": "integer"} and duck.records_out > 500
    (d_cols, d_rows, d_q), (s_cols, s_rows, s_q) = outputs["duckdb"], outputs["spark"]
    assert s_cols == d_cols
    assert len(s_rows) == duck.records_out
    for d_row, s_row in zip(d_rows, s_rows, strict=True):
        assert s_row == d_row
    assert len(s_q) == duck.records_quarantined
    for d_rec, s_rec in zip(d_q, s_q, strict=True):
        assert s_rec == d_rec


def _warehouse_rows(path: Path, names: tuple[str, ...]) -> dict[str, list[tuple]]:
    """Every row of each table (any schema), sorted."""
    con = warehouse_connection(path)
    try:
        where = dict(con.execute("SELECT table_name, table_schema FROM information_schema.tables").fetchall())
        return {n: con.execute(f'SELECT * FROM "{where[n]}"."{n}" ORDER BY ALL').fetchall()  # noqa: S608
                for n in names}
    finally:
        con.close()


def _last_materialization(home: Path) -> tuple[dict[str, object], list[bool]]:
    """The metadata of the last ``transactions/processed`` materialization, and the passed flags of its
    reconciliation check's evaluations that carry the Spark job's own figures."""
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        key = dg.AssetKey(["transactions", "processed"])
        event = instance.get_latest_materialization_event(key)
        assert event is not None and event.asset_materialization is not None
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(key, "counts_reconcile"), limit=10)
        evaluations = [r.evaluation for r in history if isinstance(r.evaluation, dg.AssetCheckEvaluation)]
        passed = [e.passed for e in evaluations if "spark_records_written" in e.metadata]
        return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}, passed


def test_ecommerce_assets_run_on_spark_gives_the_default_engines_tables(tmp_path: Path) -> None:
    """A user's two generated days, one holding their own odd file, from a fresh data dir through the product's
    commands: the Spark engine's warehouse tables (the transactions and every analytic) and quarantine are the
    DuckDB engine's."""
    outputs = {}
    for name, settings in (("duckdb", {}), ("spark", {"ECOMMERCE_ENGINE": "spark", "ECOMMERCE_SPARK_MASTER": "local[2]",
                                                      "ECOMMERCE_SPARK_DRIVER_MEMORY": "1g"})):
        env = cli_env(tmp_path / name, settings)
        generated = run_cli(GENERATE, env, tmp_path)
        assert generated.returncode == 0, generated.show()
        day = Path(env["ECOMMERCE_DATA_DIR"]) / "lake" / "landing" / "transactions" / f"date={TRANSACTION_DATES[0]}"
        records = _records(3, 200, json_looking=True)
        (day / "theirs.json").write_text("\n".join(json.dumps(r) for r in records))
        result = run_cli(["run"], env, tmp_path)
        assert result.returncode == 0, result.show()
        data = Path(env["ECOMMERCE_DATA_DIR"])
        quarantine = sorted((data / "lake" / "quarantine" / "transactions").glob("date=*/records.parquet"))
        assert len(quarantine) == 1
        outputs[name] = (
            _warehouse_rows(data / "warehouse.duckdb", ("transactions", *ANALYTICS)),
            duckdb.sql(f"SELECT file, row, field, rule, reason FROM '{quarantine[0]}' ORDER BY ALL").fetchall(),  # noqa: S608
            _last_materialization(Path(env["DAGSTER_HOME"])),
        )
    (d_tables, d_quarantine, (d_md, _)), (s_tables, s_quarantine, (s_md, s_passed)) = outputs["duckdb"], outputs["spark"]
    assert len(d_tables["transactions"]) > 100 and len(d_quarantine) > 20
    for table, rows in d_tables.items():
        assert s_tables[table] == rows, table
    assert s_quarantine == d_quarantine
    assert (d_md["engine"], s_md["engine"]) == ("duckdb", "spark") and s_md["spark_platform"] == "local"
    # the job's own reconciliation (read back from the files it wrote) came through Pipes into the check
    assert s_passed and all(s_passed)
