"""Event-driven transactions: landed JSON -> raw (registered once) -> the Iceberg table -> seven analytics.

``transactions/raw`` and ``transactions/processed`` are partitioned by the landing date prefix
(``landing/transactions/date=YYYY-MM-DD/``); the arrival sensor asks for one run per date with new files.
The analytics are unpartitioned and refresh themselves (automation condition) after new partitions.

``transactions/processed`` replaces the date's partition of the Iceberg table ``transactions`` in one commit
(``storage.iceberg``: a SQLite catalog locally, Glue on AWS) and re-points ``lake.transactions`` at it; the
analytics read the table's current snapshot.
"""


import datetime as dt

import dagster as dg

from ecommerce_assets.lib.metadata import (
    iceberg_commit_metadata,
    registration_metadata,
    table_metadata,
    warehouse_table_metadata,
)
from ecommerce_assets.lib.time_travel import AsOfSnapshot, as_of_metadata, bind_as_of
from ecommerce_assets.resources.spark import TransformEngine
from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage import zones
from ecommerce_assets.storage.iceberg import IcebergTables, create_scan_view
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.registration import current_raw_files, register_landed
from ecommerce_assets.storage.table_catalog import TableCatalog
from ecommerce_assets.storage.warehouses.base import Warehouse
from ecommerce_assets.transforms import transactions as tx

GROUP = "transactions"
LANDING = zones.TRANSACTIONS_LANDING
RAW = zones.TRANSACTIONS_RAW
ANALYTICS_PREFIX = zones.TRANSACTIONS_ANALYTICS
START_DATE = "2020-01-01"
CATALOG_TABLE = "transactions"
RAW_KEY = dg.AssetKey(["transactions", "raw"])
PROCESSED_KEY = dg.AssetKey(["transactions", "processed"])

daily = dg.DailyPartitionsDefinition(start_date=START_DATE, end_offset=1)
_interval = get_settings().generator_interval_minutes


@dg.asset(
    key=RAW_KEY,
    group_name=GROUP,
    partitions_def=daily,
    kinds={"json", "s3" if get_settings().env == "aws" else "file"},
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(minutes=3 * _interval), warn_window=dt.timedelta(minutes=2 * _interval)
    ),
    description=(
        "Every transaction file landed in `landing/transactions/date=YYYY-MM-DD/`, registered unchanged in "
        f"`raw/transactions/date=YYYY-MM-DD/`. Files are expected every {_interval} minutes (the generator "
        "or the shop): the freshness policy warns after two intervals without a new file and fails after three. "
        "A file landed again with other content replaces the raw copy; the old copy is kept under `_superseded/`."
    ),
)
def transactions_raw(context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake]) -> dg.MaterializeResult:
    date = context.partition_key
    landing, raw = f"{LANDING}date={date}/", f"{RAW}date={date}/"
    reg = register_landed(lake, landing, raw)
    context.log.info(f"{date}: {len(reg.registered)} new file(s), {reg.unchanged} unchanged, {reg.superseded} superseded")
    return dg.MaterializeResult(metadata=registration_metadata(reg, lake, raw))


RECONCILES = dg.AssetCheckSpec(
    "counts_reconcile", asset=PROCESSED_KEY, blocking=True,
    description="records in = records out + records quarantined, and files in = files ok + files quarantined.",
)
UNIQUE_IDS = dg.AssetCheckSpec(
    "transaction_id_unique", asset=PROCESSED_KEY,
    description="No transaction_id appears twice in the partition (a producer sending a record twice).",
)
NO_BAD_FILES = dg.AssetCheckSpec(
    "no_quarantined_files", asset=PROCESSED_KEY,
    description="No file of the partition went whole to quarantine (not JSON, or empty).",
)


@dg.asset(
    key=PROCESSED_KEY,
    group_name=GROUP,
    partitions_def=daily,
    deps=[transactions_raw],
    kinds={"duckdb", "spark", "iceberg"},
    check_specs=[RECONCILES, UNIQUE_IDS, NO_BAD_FILES],
    description=(
        "Typed transactions in the Iceberg table `transactions` (files below `processed/transactions/`, "
        "identity-partitioned on `date`, the landing date): typed columns plus year, month, day, hour, "
        "day_of_week (Monday = 0), discount (" + tx.DISCOUNT_RULE + ") and final_amount. Each run replaces its "
        "date's partition in ONE commit (readers see the old rows or the new, never a mix; a re-run gives the "
        "same rows and one more snapshot). Bad records go to `quarantine/transactions/date=.../records.parquet` "
        "with file, row, field and rule; files that are not JSON go whole to "
        "`quarantine/transactions/date=.../files/`. Queryable as `lake.transactions` (a DuckDB view over the "
        "current snapshot locally, re-pointed after each commit; the Glue Iceberg table in aws mode). "
        "`ECOMMERCE_ENGINE=spark` types and rules the records in the PySpark job `transactions_process` (through "
        "Dagster Pipes: local Spark, Glue or EMR Serverless) instead of DuckDB: the same rules, rows and quarantine."
    ),
)
def transactions(
    context: dg.AssetExecutionContext,
    lake: dg.ResourceParam[Lake],
    table_catalog: dg.ResourceParam[TableCatalog],
    iceberg: dg.ResourceParam[IcebergTables],
    engine: dg.ResourceParam[TransformEngine],
) -> dg.MaterializeResult:
    date = context.partition_key
    raw = f"{RAW}date={date}/"
    objects = current_raw_files(lake, raw)
    properties = {"dagster.run-id": context.run.run_id}
    spark_checks: list[dg.AssetCheckResult] = []
    spark_metadata: dict[str, object] = {}
    if engine.spark:
        engine.check_lake(iceberg.location(tx.TABLE))

        def run_job(extras: dict[str, object]) -> dict[str, object]:
            reported = engine.run_spark_job(context, "transactions_process",
                                            {**extras, "reconcile_check": RECONCILES.name}, spark_checks)
            spark_metadata.update({"spark_version": str(reported.get("spark_version")),
                                   "spark_seconds": float(reported.get("spark_seconds") or 0.0),  # type: ignore[arg-type]
                                   "spark_platform": engine.platform})
            return reported

        result = tx.transform_partition_on_spark(lake, date, objects, run_job, tables=iceberg, properties=properties,
                                                 remote=engine.remote)
    else:
        result = tx.transform_partition(lake, date, objects, tables=iceberg, properties=properties)
    for bad in result.bad_files:
        context.log.warning(f"quarantined file {bad['file']}: {bad['rule']}: {bad['problem']}")
    for rule, n in sorted(result.by_rule.items()):
        context.log.warning(f"quarantined {n} record(s) of {date}: {rule} ({result.reason(rule)})")
    if result.commit is not None and result.commit.new_columns:
        context.log.info(
            f"schema evolved: new nullable column(s) {', '.join(result.commit.new_columns)} "
            f"(kinds: {result.extra_fields})"
        )

    commit = result.commit
    if commit is None:  # nothing readable yet and no table to empty a partition of
        import pyarrow as pa

        uri, preview, dupes, registration = lake.uri(tx.partition_prefix(tx.PROCESSED, date)), pa.table({}), [], None
    else:
        uri = iceberg.location(tx.TABLE)
        con = lake.engine()
        try:
            # the rows of this commit's snapshot (its metadata file), whatever commits come after
            create_scan_view(con, "processed", commit.metadata_location)
            preview = con.execute("SELECT * FROM processed WHERE date = ? LIMIT 10", [date]).to_arrow_table()
            dupes = con.execute(
                "SELECT transaction_id, count(*) AS n FROM processed WHERE date = ? GROUP BY 1 HAVING n > 1 "
                "ORDER BY n DESC, 1 LIMIT 5", [date]
            ).fetchall()
        finally:
            con.close()
        registration = table_catalog.register_iceberg_table(
            iceberg, tx.TABLE, table_catalog.default_database, CATALOG_TABLE
        )
    counts = result.as_metadata()
    return dg.MaterializeResult(
        metadata=table_metadata(
            result.records_out, preview, uri=uri,
            extra={
                **{k: dg.MetadataValue.json(v) if isinstance(v, list | dict) else v for k, v in counts.items()},
                **(iceberg_commit_metadata(commit) if commit is not None else {}),
                "engine": "spark" if engine.spark else "duckdb",
                **spark_metadata,
                "catalog": dg.MetadataValue.json(
                    registration if isinstance(registration, dict) else str(registration)
                ),
            },
        ),
        check_results=[
            _reconciles(result, counts, spark_checks),
            dg.AssetCheckResult(
                check_name=UNIQUE_IDS.name, passed=not dupes, severity=dg.AssetCheckSeverity.WARN,
                metadata={"duplicated_ids": dg.MetadataValue.json([list(d) for d in dupes])},
            ),
            dg.AssetCheckResult(
                check_name=NO_BAD_FILES.name, passed=not result.bad_files, severity=dg.AssetCheckSeverity.WARN,
                metadata={"bad_files": dg.MetadataValue.json(result.bad_files)},
            ),
        ],
    )


def _reconciles(
    result: tx.PartitionResult, counts: dict[str, object], spark_checks: list[dg.AssetCheckResult]
) -> dg.AssetCheckResult:
    """The counts reconcile: the partition's files and records; on Spark also the job's own check (records in = the
    rows it wrote + the records it quarantined, read back from its files)."""
    metadata: dict[str, object] = {k: counts[k] for k in ("files_in", "files_ok", "files_quarantined", "records_in",
                                                          "records_out", "records_quarantined")}
    passed = result.reconciles
    for check in spark_checks:
        if check.check_name == RECONCILES.name:
            passed = passed and check.passed
            metadata.update({f"spark_{k}": v for k, v in (check.metadata or {}).items()})
    return dg.AssetCheckResult(check_name=RECONCILES.name, passed=passed, metadata=metadata)  # type: ignore[arg-type]


# refresh after any new partition of `transactions`; unlike plain eager(), do not wait for the
# (thousands of) daily partitions that never had data
ANALYTICS_AUTOMATION = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


def _analytics_asset(name: str, description: str) -> dg.AssetsDefinition:
    table = f"analytics.transactions_{name}"

    @dg.asset(
        key=["analytics", f"transactions_{name}"],
        group_name=GROUP,
        deps=[transactions],
        kinds={"duckdb", "parquet"},
        automation_condition=ANALYTICS_AUTOMATION,
        description=(
            f"{description} Over the current snapshot of the Iceberg table `transactions` (or the run config's "
            f"`snapshot_id`: a load as of an earlier snapshot); loaded as warehouse table `{table}`."
        ),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: AsOfSnapshot,
        lake: dg.ResourceParam[Lake],
        warehouse: dg.ResourceParam[Warehouse],
        iceberg: dg.ResourceParam[IcebergTables],
    ) -> dg.MaterializeResult:
        key = f"{ANALYTICS_PREFIX}{name}.parquet"
        con = lake.engine()
        try:
            source, snapshot = bind_as_of(con, iceberg, tx.TABLE, "tx", config)
            with lake.writing(key) as uri:
                rows = tx.write_analytics(con, name, uri)
        finally:
            con.close()
        warehouse.replace_table(table, [lake.uri(key)])
        context.log.info(f"{table}: {rows} row(s) from {source}")
        return dg.MaterializeResult(
            metadata=warehouse_table_metadata(warehouse, table, extra={
                "parquet_uri": dg.MetadataValue.path(lake.uri(key)),
                **as_of_metadata(source, snapshot, config),
            })
        )

    return _asset


analytics_assets = [_analytics_asset(name, desc) for name, (desc, _sql) in tx.ANALYTICS.items()]
