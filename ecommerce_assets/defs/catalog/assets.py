"""Catalog sourcing assets: API pages -> cleaned snapshot -> gold tables -> distributor matches -> report.

The cleaned snapshots are the Iceberg table ``catalog_snapshots`` (identity-partitioned by ``seller_id`` and
``snapshot_date``; a SQLite catalog locally, Glue on AWS): ``catalog/snapshot`` replaces its seller/date partition
in one commit, and the gold tables read the seller's data files of the table's current snapshot.
"""

import datetime as dt
import json
import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field

from ecommerce_assets.defs.catalog.partitions import seller_query, sellers_partitions
from ecommerce_assets.lib.metadata import iceberg_commit_metadata, table_metadata, warehouse_table_metadata
from ecommerce_assets.resources.catalog_api import CatalogApiError, CatalogApiResource, CatalogAuthError
from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage import registration, zones
from ecommerce_assets.storage.iceberg import IcebergTables
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.table_catalog import TableCatalog
from ecommerce_assets.storage.warehouses.base import Warehouse
from ecommerce_assets.transforms import catalog as catalog_tf
from ecommerce_assets.transforms import matching, report
from ecommerce_assets.transforms.files import csv_for_people

GROUP = "catalog"
RAW = zones.CATALOG_RAW
SNAPSHOTS = zones.CATALOG_SNAPSHOTS  # now only the CSV exports: the rows are the Iceberg table SNAPSHOTS_TABLE
SNAPSHOTS_TABLE = catalog_tf.TABLE
AMAZON_DATA = zones.CATALOG_AMAZON_DATA
HISTORY = zones.CATALOG_HISTORY
MATCHES = zones.CATALOG_MATCHES
REPORTS = zones.CATALOG_REPORTS
QUARANTINE = zones.CATALOG_QUARANTINE
DISTRIBUTOR_LANDING = zones.DISTRIBUTOR_LANDING
DISTRIBUTOR_RAW = zones.DISTRIBUTOR_RAW
DISTRIBUTOR_PROCESSED = zones.DISTRIBUTOR_PROCESSED
DISTRIBUTOR_MATCHING = zones.DISTRIBUTOR_MATCHING
DISTRIBUTOR_QUARANTINE = zones.DISTRIBUTOR_QUARANTINE

RAW_PAGES_KEY = dg.AssetKey(["catalog", "raw_pages"])
SNAPSHOT_KEY = dg.AssetKey(["catalog", "snapshot"])
AMAZON_DATA_KEY = dg.AssetKey(["gold", "amazon_data"])
HISTORY_KEY = dg.AssetKey(["gold", "amazon_data_history"])
INVENTORY_KEY = dg.AssetKey(["gold", "distributor_inventory"])
MATCHES_KEY = dg.AssetKey(["gold", "distributor_availability_matches"])
REPORT_KEY = dg.AssetKey(["catalog", "sourcing_report"])


class SnapshotConfig(dg.Config):
    snapshot_date: str = Field(
        default="",
        description="YYYY-MM-DD. Fetch: the date the pages are filed under (empty: today, UTC). "
        "Cleaning: which raw date to clean (empty: the seller's latest).",
    )


def _date(value: str) -> str:
    return dt.date.fromisoformat(value).isoformat() if value else dt.datetime.now(dt.UTC).date().isoformat()


def seller_date_prefix(root: str, seller_id: str, date: str) -> str:
    return f"{root}seller={seller_id}/date={date}/"


def latest_raw_date(lake: Lake, seller_id: str) -> str | None:
    dates = [p.rstrip("/").rsplit("date=", 1)[-1] for p in lake.list_prefixes(f"{RAW}seller={seller_id}/")]
    return max(dates) if dates else None


@dg.asset(
    key=RAW_PAGES_KEY,
    partitions_def=sellers_partitions,
    group_name=GROUP,
    kinds={"api", "json"},
    retry_policy=dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
    check_specs=[
        dg.AssetCheckSpec(
            "pages_vs_total_products", asset=RAW_PAGES_KEY,
            description="The pages holding products cover the API's data.total_products (48 a page).",
        )
    ],
    description=(
        "Every page of the seller's catalog listing, fetched from the catalog API (paged until an empty "
        "`data.products`, rate-limited, retried with backoff + jitter honouring Retry-After) and kept exactly "
        "as received in `raw/catalog/seller=<id>/date=<d>/page=<n>.json`. Re-running a date replaces its pages."
    ),
)
def catalog_raw_pages(
    context: dg.AssetExecutionContext, config: SnapshotConfig, catalog_api: CatalogApiResource, lake: dg.ResourceParam[Lake]
) -> dg.MaterializeResult:
    seller_id = context.partition_key
    date = _date(config.snapshot_date)
    try:
        pages = catalog_api.fetch_seller(seller_id, seller_query(seller_id), log=context.log.warning)
    except CatalogAuthError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except CatalogApiError as exc:
        # the client has already retried with backoff (honouring Retry-After): one retry layer for HTTP, so the
        # step's RetryPolicy (for anything else: the lake, a dropped connection mid-body) does not repeat them
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    prefix = seller_date_prefix(RAW, seller_id, date)
    with lake.writing(prefix) as staged:  # a re-run of the date replaces its pages whole (never mixes two fetches)
        staged_prefix = lake.key_of(staged).rstrip("/") + "/"
        for p in pages:
            lake.write_bytes(f"{staged_prefix}page={p.page}.json", p.body)
    keys = [lake.uri(f"{prefix}page={p.page}.json") for p in pages]
    totals = [p.total_products for p in pages if p.total_products is not None]
    total = max(totals) if totals else None
    with_products = sum(1 for p in pages if p.products)
    expected = catalog_tf.expected_pages(total)
    unreadable = [p.page for p in pages if not p.is_readable]
    retries = sum(len(p.attempts) - 1 for p in pages)
    ok = expected is not None and with_products >= expected and not unreadable
    check = dg.AssetCheckResult(
        check_name="pages_vs_total_products",
        passed=ok,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if ok else "fewer readable product pages than total_products implies",
        metadata={"total_products": total if total is not None else -1, "expected_pages": expected or 0,
                  "pages_with_products": with_products, "unreadable_pages": dg.MetadataValue.json(unreadable)},
    )
    return dg.MaterializeResult(
        metadata={
            "seller_id": seller_id,
            "snapshot_date": date,
            "pages": len(pages),
            "pages_with_products": with_products,
            "products_listed": sum(p.products or 0 for p in pages),
            "total_products": total if total is not None else -1,
            "retries": retries,
            "unreadable_pages": dg.MetadataValue.json(unreadable),
            "dagster/uri": dg.MetadataValue.path(lake.uri(prefix)),
            "raw_keys": dg.MetadataValue.json(keys[:50]),
        },
        check_results=[check],
    )


@dg.asset(
    key=SNAPSHOT_KEY,
    deps=[RAW_PAGES_KEY],
    partitions_def=sellers_partitions,
    group_name=GROUP,
    kinds={"python", "duckdb", "iceberg", "csv"},
    check_specs=[
        dg.AssetCheckSpec("no_duplicate_asins", asset=SNAPSHOT_KEY, blocking=True,
                          description="One row per ASIN in the seller snapshot."),
        dg.AssetCheckSpec("price_parse_failures", asset=SNAPSHOT_KEY,
                          description="Prices that were present but not parseable (kept as NULL)."),
    ],
    description=(
        "The seller's pages of one date cleaned (see `ecommerce_assets.transforms.catalog`): the 15 kept columns "
        "+ seller_id, snapshot_date, product_gtin; prices parsed, ratings DECIMAL(2,1), one row per ASIN. "
        "The rows are the seller/date partition of the Iceberg table `catalog_snapshots` (files below "
        "`processed/catalog_snapshots/`, identity-partitioned on seller_id and snapshot_date), replaced in ONE "
        "commit: readers see the old rows or the new, a re-run gives the same rows, a snapshot with no good row "
        "empties its partition, other sellers and dates are untouched. Queryable as `lake.catalog_snapshots` "
        "(the Glue Iceberg table in aws mode). Also exported as CSV (Redshift COPY) to "
        "`processed/catalog/snapshots/seller=<id>/date=<d>/products.csv`. A bad page goes whole to "
        "`quarantine/catalog/` with its reason; the other pages go on."
    ),
)
def catalog_snapshot(
    context: dg.AssetExecutionContext,
    config: SnapshotConfig,
    lake: dg.ResourceParam[Lake],
    iceberg: dg.ResourceParam[IcebergTables],
    table_catalog: dg.ResourceParam[TableCatalog],
) -> dg.MaterializeResult:
    seller_id = context.partition_key
    date = config.snapshot_date or latest_raw_date(lake, seller_id)
    if not date:
        raise dg.Failure(f"no raw pages for seller {seller_id} under {RAW}seller={seller_id}/: materialize "
                         f"{RAW_PAGES_KEY.to_user_string()} for this seller first")
    date = _date(date)
    raw_prefix = seller_date_prefix(RAW, seller_id, date)
    objects = [o for o in lake.list_objects(raw_prefix) if o.key.endswith(".json")]
    if not objects:
        raise dg.Failure(f"no raw pages under {raw_prefix}")
    results = []
    for obj in objects:
        page = int(obj.name.removeprefix("page=").removesuffix(".json")) if obj.name.startswith("page=") else None
        results.append(catalog_tf.clean_page(lake.read_bytes(obj.key), seller_id, date, page=page, source=obj.key))
    results.sort(key=lambda r: r.page or 0)
    quarantine_prefix = seller_date_prefix(QUARANTINE, seller_id, date)
    lake.delete_prefix(quarantine_prefix)
    for r in results:
        if not r.ok:
            lake.copy(r.source, quarantine_prefix + r.source.rsplit("/", 1)[-1])
            context.log.warning(f"quarantined {r.source}: {r.page_error.rule}: {r.page_error.problem}")
    csv_key = seller_date_prefix(SNAPSHOTS, seller_id, date) + "products.csv"
    con = lake.engine()
    try:
        res = catalog_tf.build_snapshot(con, results)
        # the partition's rows in one commit (the table is the snapshot), then the CSV export of the same rows
        commit = catalog_tf.commit_snapshot(iceberg, res, properties={"dagster.run-id": context.run.run_id})
        with lake.writing(csv_key) as csv_uri:
            catalog_tf.write_csv(con, res.table, csv_uri)
    finally:
        con.close()
    # what the commit's snapshot holds for this seller and date (whatever commits come after)
    committed = iceberg.read(SNAPSHOTS_TABLE, snapshot_id=commit.snapshot_id, where=res.partition())
    committed_dups = catalog_tf.duplicate_asins(committed)
    registration = table_catalog.register_iceberg_table(
        iceberg, SNAPSHOTS_TABLE, table_catalog.default_database, SNAPSHOTS_TABLE
    )
    if res.issues:
        lake.write_bytes(quarantine_prefix + "reasons.json", json.dumps(res.issues, indent=1, default=str).encode())
    price_issues = [i for i in res.issues if i["rule"] == "unparseable_price"]
    checks = [
        dg.AssetCheckResult(
            check_name="no_duplicate_asins", passed=committed_dups == 0,
            metadata={"duplicate_asins": committed_dups, "duplicates_removed": res.removed["duplicate_asin"]},
        ),
        dg.AssetCheckResult(
            check_name="price_parse_failures", passed=not price_issues, severity=dg.AssetCheckSeverity.WARN,
            metadata={"failures": len(price_issues),
                      "samples": dg.MetadataValue.json([{k: i[k] for k in ("file", "row", "field", "value")}
                                                        for i in price_issues[:10]])},
        ),
    ]
    return dg.MaterializeResult(
        metadata=table_metadata(
            committed.num_rows, committed.slice(0, 10), uri=iceberg.location(SNAPSHOTS_TABLE),
            extra={
                "seller_id": seller_id, "snapshot_date": date, "pages": res.pages, "bad_pages": res.bad_pages,
                "products_in": res.products_in, "rows_out": res.rows_out, "quarantined_rows": res.quarantined_rows,
                "removed": dg.MetadataValue.json(res.removed), "field_issues": dg.MetadataValue.json(res.field_issues),
                "reconciles": res.reconciles and committed.num_rows == res.rows_out,
                "csv_uri": dg.MetadataValue.path(lake.uri(csv_key)),
                **iceberg_commit_metadata(commit),
                "catalog": dg.MetadataValue.json(registration),
            },
        ),
        check_results=checks,
    )


def _seller_table(context: dg.AssetExecutionContext, lake: Lake, warehouse: Warehouse, iceberg: IcebergTables,
                  table: str, root: str, sql: str, with_seller_param: bool) -> dg.MaterializeResult:
    """Load ``table``'s rows of the seller from ``sql`` over the seller's partitions of ``catalog_snapshots``.

    The table's current snapshot is read once: its data files of the seller (copy-on-write: the files ARE the
    rows) are the ``read_parquet`` list of ``sql``. A seller whose partitions hold no row (every snapshot had no
    good row) loads no row; a table never written fails, naming the asset to materialize first.
    """
    seller_id = context.partition_key
    snapshot = iceberg.current_snapshot_id(SNAPSHOTS_TABLE)
    if snapshot is None:
        raise dg.Failure(f"no cleaned snapshots yet (the Iceberg table {SNAPSHOTS_TABLE} has none): materialize "
                         f"{SNAPSHOT_KEY.to_user_string()} for seller {seller_id} first")
    files = iceberg.data_files(SNAPSHOTS_TABLE, snapshot_id=snapshot, partition={"seller_id": seller_id})
    if not files:
        context.log.warning(f"{SNAPSHOTS_TABLE} holds no row of seller {seller_id} at snapshot {snapshot}: "
                            f"its rows in {table} are replaced by none")
    out = f"{root}seller={seller_id}/part.parquet"
    con = lake.engine()
    try:
        with tempfile.TemporaryDirectory(prefix="catalog-snapshots-") as tmp:
            sources = list(files)
            if not sources:  # the SQL over no row (an empty file of the snapshot columns) gives its empty result
                empty = Path(tmp) / "no_rows.parquet"
                empty.write_bytes(catalog_tf.to_parquet_bytes(catalog_tf.SCHEMA.empty_table()))
                sources = [str(empty)]
            params: list = [sources] + ([seller_id] if with_seller_param else [])
            con.execute(f"CREATE TEMP TABLE t AS {sql}", params)  # noqa: S608 - constant SQL
            dates = con.execute("SELECT count(DISTINCT snapshot_date) FROM read_parquet(?)", [sources]).fetchone()[0]
        loaded = int(con.execute("SELECT count(*) FROM t").fetchone()[0])
        with lake.writing(out) as uri:
            con.execute("COPY t TO ? (FORMAT parquet, COMPRESSION zstd)", [uri])
    finally:
        con.close()
    rows = warehouse.replace_rows(table, [lake.uri(out)], key_columns=["seller_id"])
    if not loaded:  # an upsert of no row deletes none: the seller's rows go explicitly
        warehouse.execute(f"DELETE FROM {table} WHERE seller_id = ?", [seller_id])  # noqa: S608 - constant name
        rows = warehouse.row_count(table)
    seller_rows = warehouse.query(f"SELECT count(*) AS n FROM {table} WHERE seller_id = ?", [seller_id])  # noqa: S608
    return dg.MaterializeResult(
        metadata=warehouse_table_metadata(
            warehouse, table,
            extra={"seller_id": seller_id, "seller_rows": int(seller_rows.column("n")[0].as_py()),
                   "table_rows": rows, "snapshots": int(dates), "snapshot_files": len(files),
                   "iceberg/table": dg.MetadataValue.text(iceberg.identifier(SNAPSHOTS_TABLE)),
                   # the snapshot read (a 64-bit number: as text, so that no JSON reader rounds it)
                   "iceberg/snapshot_id": dg.MetadataValue.text(str(snapshot))},
        )
    )


@dg.asset(
    key=AMAZON_DATA_KEY,
    deps=[SNAPSHOT_KEY],
    partitions_def=sellers_partitions,
    group_name=GROUP,
    kinds={"duckdb", "table"},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "`gold.amazon_data`: for each seller and ASIN, the row of the latest snapshot that listed it, read from "
        "the seller's partitions of the Iceberg table `catalog_snapshots` at its current snapshot (its id in the "
        "metadata). Loaded per seller (the seller's rows are replaced), so re-runs are idempotent."
    ),
)
def amazon_data(context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake],
                warehouse: dg.ResourceParam[Warehouse], iceberg: dg.ResourceParam[IcebergTables]) -> dg.MaterializeResult:
    return _seller_table(context, lake, warehouse, iceberg, "gold.amazon_data", AMAZON_DATA,
                         catalog_tf.LATEST_SNAPSHOT_SQL, False)


@dg.asset(
    key=HISTORY_KEY,
    deps=[SNAPSHOT_KEY],
    partitions_def=sellers_partitions,
    group_name=GROUP,
    kinds={"duckdb", "table"},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "`gold.amazon_data_history`: price and availability of every ASIN a seller ever listed, per snapshot "
        "date (listed or not, previous price, price change, new/delisted/relisted), from the seller's partitions "
        "of the Iceberg table `catalog_snapshots` at its current snapshot (its id in the metadata)."
    ),
)
def amazon_data_history(context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake],
                        warehouse: dg.ResourceParam[Warehouse],
                        iceberg: dg.ResourceParam[IcebergTables]) -> dg.MaterializeResult:
    return _seller_table(context, lake, warehouse, iceberg, "gold.amazon_data_history", HISTORY,
                         catalog_tf.HISTORY_SQL, True)


@dg.asset(
    key=INVENTORY_KEY,
    group_name=GROUP,
    kinds={"duckdb", "csv", "table"},
    description=(
        "`gold.distributor_inventory`: every CSV landed in `landing/distributor/`, registered unchanged in "
        "`raw/distributor/` (sku, title, brand, cost, "
        "quantity_available and any of asin/upc/ean/gtin; codes normalised to a check-digit-valid GTIN-14). "
        "A SKU in several files: the newest file wins. Bad files and rows go to `quarantine/distributor/`."
    ),
)
def distributor_inventory(context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake], warehouse: dg.ResourceParam[Warehouse]) -> dg.MaterializeResult:
    lake.delete_prefix(DISTRIBUTOR_QUARANTINE)
    # landing -> raw, the way every source is registered (links and special files are never read)
    reg = registration.register_landed(lake, DISTRIBUTOR_LANDING, DISTRIBUTOR_RAW,
                                       accept=lambda o: o.key.lower().endswith(".csv"), log=context.log.info)
    objects = [o for o in reg.raw_files if o.key.lower().endswith(".csv")]
    if not objects:
        raise dg.Failure(f"no distributor files: drop CSVs in {lake.uri(DISTRIBUTOR_LANDING)}")
    bad_files: list[dict] = [{"file": r["file"], "row": None, "field": None, "rule": r["rule"],
                              "problem": r["problem"], "copied": False} for r in reg.rejected]

    def quarantine_file(key: str, rule: str, problem: str, copy: bool = True) -> None:
        name = key[len(DISTRIBUTOR_RAW):]
        if copy:
            try:
                lake.copy(key, f"{DISTRIBUTOR_QUARANTINE}files/{name}")
            except OSError:  # a file that cannot be read cannot be copied: its reason is written all the same
                copy = False
        landed = DISTRIBUTOR_LANDING + name  # the file as the user dropped it
        reason = {"file": landed, "row": None, "field": None, "rule": rule, "problem": problem, "copied": copy}
        lake.write_bytes(f"{DISTRIBUTOR_QUARANTINE}files/{name}.reason.json", json.dumps(reason).encode())
        bad_files.append(reason)
        context.log.warning(f"quarantined {landed}: {rule}: {problem}")

    files = []
    for obj in objects:
        try:
            files.append(catalog_tf.DistributorFile(obj.key, lake.open_local(obj.key), obj.last_modified))
        except OSError as exc:  # replaced by a link since it was listed, or gone
            quarantine_file(obj.key, "unreadable_file", str(exc), copy=False)
    con = lake.engine()
    try:
        result = catalog_tf.load_distributor_files(con, files)
        for err in result.rejected_files:
            quarantine_file(err.file, err.rule, err.problem)
        with lake.writing(DISTRIBUTOR_PROCESSED) as processed_uri, \
                lake.writing(DISTRIBUTOR_QUARANTINE + "rows/quarantined_rows.parquet") as quarantine_uri:
            catalog_tf.clean_distributor(con, result, processed_uri, quarantine_uri)
        # the tokenised inventory is kept while the inventory's rows are unchanged (its fingerprint says so)
        inventory_uri = lake.uri(DISTRIBUTOR_PROCESSED)
        if matching.find_prepared(con, inventory_uri, lake.uri(DISTRIBUTOR_MATCHING)) is None:
            with lake.writing(DISTRIBUTOR_MATCHING) as matching_uri:
                matching.prepare_inventory(con, inventory_uri, matching_uri, reuse=False)
    finally:
        con.close()
    if not result.reconciles:
        raise dg.Failure(description=f"distributor inventory: counts do not reconcile: {result}")
    rows = warehouse.replace_table("gold.distributor_inventory", [lake.uri(DISTRIBUTOR_PROCESSED)])
    return dg.MaterializeResult(
        metadata=warehouse_table_metadata(
            warehouse, "gold.distributor_inventory",
            extra={"files": len(objects), "bad_files": dg.MetadataValue.json(bad_files), "rows_in": result.rows_in,
                   "rows_out": rows,
                   "quarantined_rows": dg.MetadataValue.json({k: v for k, v in result.removed.items() if v}),
                   "superseded_sku_rows": result.superseded, "invalid_gtin_ignored": result.invalid_gtin},
        )
    )


@dg.asset(
    key=MATCHES_KEY,
    deps=[AMAZON_DATA_KEY, INVENTORY_KEY],
    group_name=GROUP,
    kinds={"duckdb", "table"},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "`gold.distributor_availability_matches`: for each seller product the distributor item that supplies it "
        "(exact ASIN, then GTIN, then title+brand similarity >= 0.75 on blocked candidates; see "
        "`ecommerce_assets.transforms.matching`), with cost, quantity, seller price, margin after the marketplace "
        "fee (ECOMMERCE_MARKETPLACE_FEE_RATE) and ROI. One best match per product."
    ),
)
def distributor_availability_matches(
    context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake], warehouse: dg.ResourceParam[Warehouse]
) -> dg.MaterializeResult:
    sellers = [o.key for o in lake.list_objects(AMAZON_DATA) if o.key.endswith("part.parquet")]
    if not sellers:  # no seller fetched yet: an empty result (with its schema), not a failure
        context.log.warning(f"no seller products yet: materialize {AMAZON_DATA_KEY.to_user_string()} for a seller")
        empty = MATCHES + "_no_seller_products.parquet"
        lake.write_bytes(empty, catalog_tf.to_parquet_bytes(catalog_tf.SCHEMA.empty_table()))
        sellers = [empty]
    if not lake.exists(DISTRIBUTOR_PROCESSED):
        raise dg.Failure(f"no distributor inventory: materialize {INVENTORY_KEY.to_user_string()} first")
    fee = get_settings().marketplace_fee_rate
    con = lake.engine()
    try:
        # a prepared (tokenised) inventory only when it was made from the inventory as it is now, never a stale one
        found = matching.find_prepared(con, lake.uri(DISTRIBUTOR_PROCESSED), lake.uri(DISTRIBUTOR_MATCHING))
        prepared = found is not None
        inventory = found or lake.uri(DISTRIBUTOR_PROCESSED)
        with lake.writing(MATCHES + "matches.parquet") as matches_uri, \
                lake.writing(MATCHES + "unmatched.parquet") as unmatched_uri:
            res = matching.match(con, [lake.uri(k) for k in sellers], inventory, matches_uri, unmatched_uri,
                                 fee_rate=fee)
        per_seller = con.execute(
            "SELECT seller_id, match_method, count(*) FROM read_parquet(?) GROUP BY ALL ORDER BY ALL",
            [lake.uri(MATCHES + "matches.parquet")],
        ).fetchall()
    finally:
        con.close()
    warehouse.replace_table("gold.distributor_availability_matches", [lake.uri(MATCHES + "matches.parquet")])
    by_seller: dict[str, dict[str, int]] = {}
    for seller, method, n in per_seller:
        by_seller.setdefault(seller, {})[method] = int(n)
    context.log.info(f"{res.matched_total} of {res.seller_products} seller products supplied: {res.matched}")
    return dg.MaterializeResult(
        metadata=warehouse_table_metadata(
            warehouse, "gold.distributor_availability_matches",
            extra={
                "seller_products": res.seller_products, "distributor_items": res.distributor_items,
                "supplied": res.matched_total, "supplied_by_method": dg.MetadataValue.json(res.matched),
                "supplied_by_seller": dg.MetadataValue.json(by_seller), "unmatched": res.unmatched,
                "title_candidate_pairs": res.candidate_pairs, "title_threshold": matching.TITLE_THRESHOLD,
                "marketplace_fee_rate": fee, "prepared_inventory": prepared,
            },
        )
    )


@dg.asset(
    key=REPORT_KEY,
    deps=[MATCHES_KEY],
    group_name=GROUP,
    kinds={"csv", "html"},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "The buyer's sourcing report: every seller product, the supplied ones ranked by estimated margin, then "
        "the ones the distributor cannot supply. CSV + HTML in `processed/catalog/reports/date=<d>/` and "
        "`processed/catalog/reports/latest/`."
    ),
)
def catalog_sourcing_report(context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake]) -> dg.MaterializeResult:
    date = dt.datetime.now(dt.UTC).date().isoformat()
    con = lake.engine()
    try:
        table = con.execute(
            report.REPORT_SQL, [lake.uri(MATCHES + "matches.parquet"), lake.uri(MATCHES + "unmatched.parquet")]
        ).to_arrow_table()
    finally:
        con.close()
    fee = get_settings().marketplace_fee_rate
    page = report.render_html(table, fee, date).encode()
    csv = csv_for_people(table)  # formula-like text neutralised (OWASP CSV injection); numbers stay numbers
    keys = {}
    for folder in (f"{REPORTS}date={date}/", f"{REPORTS}latest/"):
        keys[folder + "sourcing_report.csv"] = lake.write_bytes(folder + "sourcing_report.csv", csv)
        keys[folder + "sourcing_report.html"] = lake.write_bytes(folder + "sourcing_report.html", page)
    supplied = sum(1 for s in table.column("status").to_pylist() if s == "supplied")
    return dg.MaterializeResult(
        metadata=table_metadata(
            table.num_rows, table, uri=lake.uri(f"{REPORTS}latest/sourcing_report.html"),
            extra={"supplied": supplied, "not_supplied": table.num_rows - supplied,
                   "csv": dg.MetadataValue.path(lake.uri(f"{REPORTS}latest/sourcing_report.csv")),
                   "html": dg.MetadataValue.path(lake.uri(f"{REPORTS}latest/sourcing_report.html"))},
        )
    )
