"""Online Retail assets: raw registration, cleaning with quarantine, and the ``gold`` star schema.

``online_retail/cleaned`` replaces every row of the Iceberg table ``online_retail_cleaned`` (identity-partitioned
on ``invoice_month``; ``storage.iceberg``: a SQLite catalog locally, Glue on AWS) in one commit and re-points
``lake.online_retail_cleaned`` at it; the star schema and the cleaned checks read the table's current snapshot.
"""


import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import dagster as dg

from ecommerce_assets.lib.metadata import (
    iceberg_commit_metadata,
    registration_metadata,
    table_metadata,
    warehouse_table_metadata,
)
from ecommerce_assets.lib.time_travel import AsOfSnapshot, as_of_metadata, bind_as_of
from ecommerce_assets.resources.spark import TransformEngine
from ecommerce_assets.storage import zones
from ecommerce_assets.storage.iceberg import IcebergTables
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.registration import current_raw_files, register_landed
from ecommerce_assets.storage.table_catalog import TableCatalog
from ecommerce_assets.storage.warehouses.base import Warehouse
from ecommerce_assets.transforms import retail
from ecommerce_assets.transforms.files import BadFileError, TextFile, engine_file, open_csv

if TYPE_CHECKING:
    import duckdb

GROUP = "online_retail"
LANDING = zones.RETAIL_LANDING
RAW = zones.RETAIL_RAW
CLEANED = zones.LEGACY_RETAIL_CLEANED  # the plain Parquet layout before Iceberg: removed by the next cleaning run
CLEANED_MANIFEST = zones.RETAIL_CLEANED_MANIFEST
GOLD = zones.RETAIL_GOLD
QUARANTINE_ROWS = zones.RETAIL_QUARANTINE_ROWS
QUARANTINE_FILES = zones.RETAIL_QUARANTINE_FILES
SUFFIXES = (".csv", ".txt", ".csv.gz")

RAW_KEY = dg.AssetKey(["online_retail", "raw"])
CLEANED_KEY = dg.AssetKey(["online_retail", "cleaned"])
CATALOG_TABLE = retail.TABLE  # lake.online_retail_cleaned locally; on AWS the Glue Iceberg table of that name


def bind_cleaned(con: "duckdb.DuckDBPyConnection", iceberg: IcebergTables) -> str:
    """The view ``cleaned`` of ``con`` over the Iceberg table's current snapshot; return its metadata file.

    ``dg.Failure`` when the table does not exist or has never been written (the cleaning step has not run)."""
    if iceberg.current_snapshot_id(retail.TABLE) is None:
        raise dg.Failure(description=f"no cleaned Online Retail rows yet: the Iceberg table {retail.TABLE} is empty")
    return retail.register_cleaned(con, iceberg)


@dg.asset(
    key=RAW_KEY,
    group_name=GROUP,
    kinds={"file", "csv"},
    description=(
        "Every file landed in `landing/online_retail/`, registered unchanged in `raw/online_retail/`. "
        "A file landed again with other content replaces the raw copy; the old copy is kept under `_superseded/`."
    ),
)
def online_retail_raw(context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake]) -> dg.MaterializeResult:
    reg = register_landed(
        lake, LANDING, RAW, accept=lambda o: o.key.lower().endswith(SUFFIXES), log=context.log.info
    )
    return dg.MaterializeResult(metadata=registration_metadata(reg, lake, RAW))


@dg.asset(
    key=CLEANED_KEY,
    deps=[RAW_KEY],
    group_name=GROUP,
    kinds={"duckdb", "iceberg"},
    description=(
        "The raw files cleaned by the users' rules (see `ecommerce_assets.transforms.retail`), as the Iceberg table "
        "`online_retail_cleaned` (files below `processed/online_retail_cleaned/`, identity-partitioned on "
        "`invoice_month`, `YYYY-MM`). The zone is rebuilt whole from raw: each run replaces ALL of the table's rows "
        "in ONE commit (every month present; a month no longer in the source is dropped; a re-run gives the same "
        "rows and one more snapshot). Every removed row is in `quarantine/online_retail/rows/` with its rule, file "
        "and row; a file that cannot be read (not CSV, missing column, unknown encoding) is copied whole to "
        "`quarantine/online_retail/files/` with its reason and the other files go on. Rows in = rows out + rows "
        "removed per rule. Queryable as `lake.online_retail_cleaned` (a DuckDB view over the current snapshot "
        "locally, re-pointed after each commit; the Glue Iceberg table in aws mode)."
    ),
)
def online_retail_cleaned(
    context: dg.AssetExecutionContext,
    lake: dg.ResourceParam[Lake],
    table_catalog: dg.ResourceParam[TableCatalog],
    iceberg: dg.ResourceParam[IcebergTables],
    engine: dg.ResourceParam[TransformEngine],
) -> dg.MaterializeResult:
    raw_files = current_raw_files(lake, RAW)
    good, labels, bad = [], [], []
    for obj in raw_files:
        try:
            good.append(open_csv(lake.open_local(obj.key), retail.SOURCE_COLUMNS))
            labels.append(obj.key)
        except BadFileError as err:
            bad.append({"file": obj.key, "rule": err.rule, "problem": err.problem})
    con = lake.engine()
    rejected: list[BadFileError] = []  # files the engine refused after the checks: quarantined, the others go on
    if not engine.spark:
        retail.load_source(con, good, labels, rejected=rejected)
    bad += [{"file": err.file, "rule": err.rule, "problem": err.problem} for err in rejected]
    refused = {err.file for err in rejected}
    kept = [(tf, label) for tf, label in zip(good, labels, strict=True) if label not in refused]
    good, labels = [tf for tf, _ in kept], [label for _, label in kept]
    for item in bad:
        context.log.error(f"quarantined {item['file']}: {item['problem']}")
    lake.delete_prefix(QUARANTINE_FILES)
    for item in bad:
        name = item["file"][len(RAW):]
        lake.copy(item["file"], QUARANTINE_FILES + name)
        lake.write_bytes(QUARANTINE_FILES + name + ".reason.json", json.dumps(item, indent=2).encode())
    if not labels:
        raise dg.Failure(
            description=f"no readable Online Retail file in {lake.uri(RAW)}",
            metadata={"quarantined_files": dg.MetadataValue.json(bad)},
        )

    # the cleaned rows: one Iceberg commit (readers see the old rows or the new, never a mix); the quarantine is
    # written aside and published whole
    properties = {"dagster.run-id": context.run.run_id}
    spark_metadata: dict[str, Any] = {}
    if engine.spark:
        result, spark_metadata = _clean_with_spark(context, lake, iceberg, engine, con, good, labels, properties)
    else:
        with lake.writing(QUARANTINE_ROWS) as quarantine_uri:
            result = retail.clean(con, None, quarantine_uri, tables=iceberg, properties=properties)
    commit = result.commit
    assert commit is not None  # clean with tables always commits
    lake.delete_prefix(CLEANED)  # plain Parquet of the layout before Iceberg: no reader looks there any more
    manifest = {
        "rows_in": result.rows_in,
        "rows_out": result.rows_out,
        "removed": result.removed,
        "files": labels,
        "quarantined_files": bad,
    }
    lake.write_bytes(CLEANED_MANIFEST, json.dumps(manifest, indent=2).encode())
    con.close()  # read back on a fresh connection: a listing on the writer's connection can stall on S3
    con = lake.engine()
    try:
        # the rows of this commit's snapshot (its metadata file), whatever commits come after
        retail.register_cleaned(con, commit.metadata_location)
        preview = con.execute("SELECT * FROM cleaned ORDER BY invoicedate, invoiceno LIMIT 10").to_arrow_table()
    finally:
        con.close()
    registration = table_catalog.register_iceberg_table(
        iceberg, retail.TABLE, table_catalog.default_database, CATALOG_TABLE
    )
    if not result.reconciles:
        raise dg.Failure(description=f"counts do not reconcile: {manifest}")
    return dg.MaterializeResult(
        metadata=table_metadata(
            result.rows_out,
            preview,
            uri=iceberg.location(retail.TABLE),
            extra={
                **iceberg_commit_metadata(commit),
                "invoice_months": dg.MetadataValue.json(result.months),
                "catalog": dg.MetadataValue.json(registration),
                "rows_in": result.rows_in,
                "rows_out": result.rows_out,
                "rows_removed": sum(result.removed.values()),
                "removed_by_rule": dg.MetadataValue.json(result.removed),
                "files_read": len(good),
                "files_quarantined": dg.MetadataValue.json(bad),
                "quarantine_uri": dg.MetadataValue.path(lake.uri(QUARANTINE_ROWS)),
                "engine": "spark" if engine.spark else "duckdb",
                **spark_metadata,
            },
        )
    )


def _clean_with_spark(
    context: dg.AssetExecutionContext,
    lake: Lake,
    iceberg: IcebergTables,
    engine: TransformEngine,
    con: "duckdb.DuckDBPyConnection",
    files: Sequence[TextFile],
    labels: Sequence[str],
    properties: dict[str, str],
) -> tuple[retail.CleanResult, dict[str, Any]]:
    """The cleaning as the Spark job ``retail_clean`` (``ECOMMERCE_ENGINE=spark``): the same rules (rendered in Spark
    SQL from ``transforms.retail``), its kept rows written as Parquet below the table's location and committed to
    the Iceberg table as they are (one commit), its removed rows published whole to the quarantine. Returns what
    ``clean`` returns, and the job's own metadata.

    Locally the job reads the files the checks opened (a Windows-1252 file through its UTF-8 copy); on Glue or EMR
    it reads the raw objects in S3 (such a copy is uploaded beside them first)."""
    engine.check_lake(iceberg.location(retail.TABLE))
    tag = f"spark-{context.run.run_id}"
    staged = f"{zones.PROCESSED}{retail.TABLE}/data/{tag}/"  # below the table's location: added as they are
    quarantine = f"{zones.quarantine('online_retail')}spark-staging/{context.run.run_id}/"  # published whole below
    lake.delete_prefix(staged)  # a retry of this run starts afresh
    lake.delete_prefix(quarantine)
    committed = False
    try:
        with ExitStack() as stack:
            sources = []
            for i, (tf, label) in enumerate(zip(files, labels, strict=True)):
                path, encoding = stack.enter_context(engine_file(tf))
                if engine.remote:
                    if path != tf.path:  # a transcoded copy: where the job can read it
                        copy_key = f"{quarantine}sources/{i}-{path.name}"
                        lake.write_bytes(copy_key, path.read_bytes())
                        sources.append((label, lake.uri(copy_key), encoding, retail.column_names(tf)))
                        continue
                    sources.append((label, lake.uri(label), encoding, retail.column_names(tf)))
                else:
                    sources.append((label, str(path), encoding, retail.column_names(tf)))
            extras = retail.spark_job_extras(sources, lake.uri(staged), lake.uri(quarantine + "rows/"), None)
            reported = engine.run_spark_job(context, "retail_clean", extras)
        parts = [o.key for o in lake.list_objects(quarantine + "rows/") if o.key.endswith(".parquet")]
        if len(parts) != 1:
            raise dg.Failure(description=f"the Spark job wrote {len(parts)} quarantine files, expected one")
        data_files = sorted(lake.uri(o.key) for o in lake.list_objects(staged) if o.key.endswith(".parquet"))
        result = retail.CleanResult(rows_in=int(reported["rows_in"]), rows_out=int(reported["rows_out"]),
                                    removed={k: int(v) for k, v in dict(reported["removed"]).items()},
                                    months=list(reported["months"]))
        result.commit = retail.commit_cleaned_files(con, iceberg, data_files, result.months, properties)
        committed = True
        lake.copy(parts[0], QUARANTINE_ROWS)
    except BaseException as exc:
        from pyiceberg.exceptions import CommitStateUnknownException

        # nothing of a failed attempt is referenced by the table: its files go (unless the catalog may hold the
        # commit, or it was made); the weekly orphan sweep takes what a crash leaves
        if not committed and not isinstance(exc, CommitStateUnknownException):
            lake.delete_prefix(staged)
        raise
    finally:
        lake.delete_prefix(quarantine)
    context.log.info(f"spark {reported.get('spark_version')} on {engine.platform}: {result.rows_in:,} rows in, "
                     f"{result.rows_out:,} out, {len(data_files)} file(s) committed to {retail.TABLE} as they are")
    return result, {"spark_version": str(reported.get("spark_version")),
                    "spark_seconds": float(reported.get("spark_seconds") or 0.0),
                    "spark_platform": engine.platform}


GOLD_DESCRIPTIONS = {
    "customers": (
        "One row per customer (`UNKNOWN` included, for lines without a customer). A customer seen in several "
        "countries gets the country of most of their lines; a tie goes to the country of their latest line."
    ),
    "products": (
        "One row per stock code; the description is the most frequent non-blank one (a tie goes to the latest "
        "seen). Prices live on the fact table."
    ),
    "sales_transactions": (
        "The fact table: one row per cleaned invoice line (invoiceno, customerid, stockcode, quantity, unitprice, "
        "invoicedate, total_sales)."
    ),
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(["gold", table], deps=[CLEANED_KEY], group_name=GROUP, kinds={"duckdb", "parquet", "table"},
                     description=text)
        for table, text in GOLD_DESCRIPTIONS.items()
    ],
    can_subset=True,
    name="gold_star_schema",
)
def gold_star_schema(
    context: dg.AssetExecutionContext,
    config: AsOfSnapshot,
    lake: dg.ResourceParam[Lake],
    warehouse: dg.ResourceParam[Warehouse],
    iceberg: dg.ResourceParam[IcebergTables],
) -> Iterator[dg.MaterializeResult]:
    """The star schema from the cleaned zone, one step: the Iceberg table's current snapshot (or the configured
    ``snapshot_id``: a load "as of" an earlier snapshot) is opened once, each selected table is written as Parquet
    (published whole) and loaded into ``gold.<table>``, and its row count is checked."""
    con = lake.engine()
    try:
        source, snapshot = bind_as_of(con, iceberg, retail.TABLE, "cleaned", config)
        for table in GOLD_DESCRIPTIONS:  # dimensions first, the fact table last
            key = dg.AssetKey(["gold", table])
            if key not in context.selected_asset_keys:
                continue
            out = lake.uri(f"{GOLD}{table}.parquet")
            with lake.writing(f"{GOLD}{table}.parquet") as staged:
                n = retail.write_star_table(con, table, staged)
            loaded = warehouse.replace_table(f"gold.{table}", [out])
            if loaded != n:
                raise dg.Failure(description=f"gold.{table}: wrote {n} rows to {out} but the warehouse holds {loaded}")
            context.log.info(f"gold.{table}: {loaded:,} rows")
            yield dg.MaterializeResult(
                asset_key=key,
                metadata=warehouse_table_metadata(
                    warehouse, f"gold.{table}", extra={
                        "parquet_uri": dg.MetadataValue.path(out),
                        **as_of_metadata(source, snapshot, config),
                    }
                ),
            )
    finally:
        con.close()
