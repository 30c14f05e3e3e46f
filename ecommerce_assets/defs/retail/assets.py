"""Online Retail assets: raw registration, cleaning with quarantine, and the ``gold`` star schema."""


import json
from collections.abc import Iterator

import dagster as dg

from ecommerce_assets.lib.metadata import registration_metadata, table_metadata, warehouse_table_metadata
from ecommerce_assets.storage import zones
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.registration import current_raw_files, register_landed
from ecommerce_assets.storage.warehouses.base import Warehouse
from ecommerce_assets.transforms import retail
from ecommerce_assets.transforms.files import BadFileError, open_csv

GROUP = "online_retail"
LANDING = zones.RETAIL_LANDING
RAW = zones.RETAIL_RAW
CLEANED = zones.RETAIL_CLEANED
CLEANED_MANIFEST = zones.RETAIL_CLEANED_MANIFEST
GOLD = zones.RETAIL_GOLD
QUARANTINE_ROWS = zones.RETAIL_QUARANTINE_ROWS
QUARANTINE_FILES = zones.RETAIL_QUARANTINE_FILES
SUFFIXES = (".csv", ".txt", ".csv.gz")

RAW_KEY = dg.AssetKey(["online_retail", "raw"])
CLEANED_KEY = dg.AssetKey(["online_retail", "cleaned"])


def cleaned_glob(lake: Lake) -> str:
    return lake.uri(CLEANED + "*/*.parquet")


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
    kinds={"duckdb", "parquet"},
    description=(
        "The raw files cleaned by the users' rules (see `ecommerce_assets.transforms.retail`), as Parquet in "
        "`processed/online_retail/cleaned/`, Hive-partitioned by `invoice_month` (`YYYY-MM`). Every removed row is in "
        "`quarantine/online_retail/rows/` with its rule, file and row; a file that cannot be read (not CSV, "
        "missing column, unknown encoding) is copied whole to `quarantine/online_retail/files/` with its reason "
        "and the other files go on. Rows in = rows out + rows removed per rule."
    ),
)
def online_retail_cleaned(context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake]) -> dg.MaterializeResult:
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
    retail.load_source(con, good, labels, rejected=rejected)
    bad += [{"file": err.file, "rule": err.rule, "problem": err.problem} for err in rejected]
    labels = [label for label in labels if label not in {err.file for err in rejected}]
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

    # written aside and published whole: a reader (or a crash) never sees a half-written zone
    with lake.writing(CLEANED) as cleaned_uri, lake.writing(QUARANTINE_ROWS) as quarantine_uri:
        result = retail.clean(con, cleaned_uri, quarantine_uri)
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
    retail.register_cleaned(con, cleaned_glob(lake))
    preview = con.execute("SELECT * FROM cleaned ORDER BY invoicedate, invoiceno LIMIT 10").to_arrow_table()
    if not result.reconciles:
        raise dg.Failure(description=f"counts do not reconcile: {manifest}")
    return dg.MaterializeResult(
        metadata=table_metadata(
            result.rows_out,
            preview,
            uri=lake.uri(CLEANED),
            extra={
                "rows_in": result.rows_in,
                "rows_out": result.rows_out,
                "rows_removed": sum(result.removed.values()),
                "removed_by_rule": dg.MetadataValue.json(result.removed),
                "files_read": len(good),
                "files_quarantined": dg.MetadataValue.json(bad),
                "quarantine_uri": dg.MetadataValue.path(lake.uri(QUARANTINE_ROWS)),
            },
        )
    )


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
    context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake], warehouse: dg.ResourceParam[Warehouse]
) -> Iterator[dg.MaterializeResult]:
    """The star schema from the cleaned zone, one step: the cleaned zone is opened once, each selected table is
    written as Parquet (published whole) and loaded into ``gold.<table>``, and its row count is checked."""
    con = lake.engine()
    try:
        retail.register_cleaned(con, cleaned_glob(lake))
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
                    warehouse, f"gold.{table}", extra={"parquet_uri": dg.MetadataValue.path(out)}
                ),
            )
    finally:
        con.close()
