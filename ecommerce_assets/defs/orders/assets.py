"""Orders ELT assets: landed files and the products API -> raw -> cleaned Iceberg tables -> warehouse ``raw_orders``.

Per source (``orders``, ``customers``, ``products``; ``api_products`` from the REST API):

* ``orders/raw/<source>``: registers every new landed file under ``raw/<source>/`` (never changed);
* ``orders/cleaned/<source>``: all raw files of the source -> every row of the Iceberg table ``orders_<source>``,
  replaced in ONE commit (rules and latest-wins order in ``ecommerce_assets.transforms.orders``; files below
  ``processed/orders_<source>/``), bad rows/files to ``quarantine/<source>/`` (plain files);
* ``raw_orders/<source>``: the warehouse table the dbt sources read (``defs/orders/dbt.py``), loaded from the data
  files of one snapshot of that table: the current one, or the one given as run config ``snapshot_id`` (a load
  "as of" an older snapshot undoes a bad load).

Products are optional, from products.csv, the API, or both: the assets of those two sources are tagged
``ecommerce/optional_source`` (the headless catch-up never lets one block its downstream), and their dbt
staging views read an absent table as empty. ``orders`` and ``customers`` feed the marts directly.
"""


import datetime as dt
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from ecommerce_assets.lib.metadata import iceberg_commit_metadata, table_metadata, warehouse_table_metadata
from ecommerce_assets.lib.time_travel import AsOfSnapshot
from ecommerce_assets.resources.products_api import ProductsApi, ProductsPayloadError
from ecommerce_assets.storage import registration, zones
from ecommerce_assets.storage.iceberg import IcebergTables
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.warehouses.base import Warehouse, quote_ident
from ecommerce_assets.transforms import orders as T
from ecommerce_assets.transforms.files import BadFileError

GROUP = "orders"
FILE_SOURCES = ("orders", "customers", "products")
SOURCES = (*FILE_SOURCES, "api_products")
WAREHOUSE_SCHEMA = "raw_orders"
# the business key of each cleaned table (the API's id is renamed product_id by the cleaning)
KEYS = {"orders": "order_id", "customers": "customer_id", "products": "product_id", "api_products": "product_id"}
# sources a mart never waits for: products come from products.csv, the API, or both
OPTIONAL_SOURCES = ("products", "api_products")
OPTIONAL_SOURCE_TAGS = {"ecommerce/optional_source": "true"}
DELETE_BATCH = 500  # keys per DELETE of the rows a loaded snapshot lacks


def source_tags(source: str) -> dict[str, str]:
    """The tags of every asset of ``source``: ``ecommerce/optional_source`` for an optional one."""
    return dict(OPTIONAL_SOURCE_TAGS) if source in OPTIONAL_SOURCES else {}


def raw_prefix(source: str) -> str:
    return zones.orders_raw(source)


def landing_prefix(source: str) -> str:
    return zones.landing(source)


def iceberg_table(source: str) -> str:
    """The Iceberg table of ``source``'s cleaned rows: ``orders_<source>`` (files below ``processed/orders_<source>/``)."""
    return T.table_name(source)


def legacy_cleaned_key(source: str) -> str:
    """The plain Parquet file the cleaned rows were before the Iceberg table; the cleaning removes it."""
    return zones.orders_cleaned(source)


def empty_load_key(source: str) -> str:
    """A work file: an empty Parquet file of a snapshot's columns, loaded when the snapshot has no data file."""
    return f"{zones.INTERMEDIATE}orders/{source}/empty.parquet"


def quarantine_rows_key(source: str) -> str:
    return zones.orders_quarantine_rows(source)


def quarantine_files_prefix(source: str) -> str:
    return zones.orders_quarantine_files(source)


def warehouse_table(source: str) -> str:
    return f"{WAREHOUSE_SCHEMA}.{source}"


def raw_asset_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["orders", "raw", source])


def cleaned_asset_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["orders", "cleaned", source])


def warehouse_asset_key(source: str) -> dg.AssetKey:
    """The key of a loaded warehouse table; the dbt source ``raw_orders.<source>`` maps onto it."""
    return dg.AssetKey([WAREHOUSE_SCHEMA, source])


# --- registration ------------------------------------------------------------------------------
def landing_reason_key(source: str, landing_key: str) -> str:
    """Where the reason of a landed entry refused at registration goes: ``quarantine/<source>/landing/<rest>.reason.json``."""
    return registration.reason_key(landing_prefix(source), landing_key)


def register_source(
    lake: Lake, source: str, now: dt.datetime | None = None, rejected: list[dict[str, str]] | None = None
) -> list[str]:
    """Register ``source``'s landed files (every version kept, named by arrival); return the new raw keys.

    The arrival stamp (registration time, UTC) orders the batches for "latest wins" and is the
    ``_ingested_at`` the incremental fact uses. Refused entries are appended to ``rejected`` when given.
    """
    reg = registration.register_landed(
        lake, landing_prefix(source), raw_prefix(source), accept=lambda o: not o.name.startswith("."),
        versions="keep", now=now,
    )
    if rejected is not None:
        rejected.extend(reg.rejected)
    return reg.registered


def _register_asset(source: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=raw_asset_key(source),
        group_name=GROUP,
        kinds={"file", "json" if source == "customers" else "csv"},
        tags=source_tags(source),
        description=(
            f"Every file landed in `landing/{source}/` registered once, unchanged, in `raw/{source}/` "
            "(name prefixed with its arrival stamp, which orders the batches). A symbolic link or special file "
            f"is never read and an unreadable file waits: each gets a reason in `quarantine/{source}/landing/`."
        ),
    )
    def _asset(context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake]) -> dg.MaterializeResult:
        refused: list[dict[str, str]] = []
        new = register_source(lake, source, rejected=refused)
        for key in new:
            context.log.info(f"registered {key}")
        for entry in refused:
            context.log.warning(f"quarantined {entry['file']}: {entry['problem']} ({entry['rule']})")
        total = sum(1 for _ in lake.list_objects(raw_prefix(source)))
        return dg.MaterializeResult(
            metadata={
                "newly_registered": dg.MetadataValue.json(new),
                "quarantined_at_landing": len(refused),
                "quarantined_at_landing_files": dg.MetadataValue.json(refused[:100]),
                "files_registered_total": total,
                "dagster/uri": dg.MetadataValue.path(lake.uri(raw_prefix(source))),
            }
        )

    _asset.__name__ = f"orders_raw_{source}"
    return _asset


raw_orders_files, raw_customers_files, raw_products_files = (_register_asset(s) for s in FILE_SOURCES)


@dg.asset(
    key=raw_asset_key("api_products"),
    group_name=GROUP,
    kinds={"api", "json"},
    tags=source_tags("api_products"),
    retry_policy=dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL),
    description=(
        "Products fetched from the products REST API (`GET /products`, fake-store shape) with timeout, "
        "retries and validation; the exact response body is kept in `raw/api/products/`. A body that is "
        "not a JSON list of objects goes to `quarantine/api_products/files/` and fails the run (not retried)."
    ),
)
def orders_raw_api_products(context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake], products_api: ProductsApi) -> dg.MaterializeResult:
    now = dt.datetime.now(dt.UTC)
    name = f"{now.strftime(registration.STAMP)}-{hashlib.sha256(now.isoformat().encode()).hexdigest()[:12]}-products.json"
    raw_key = f"{zones.ORDERS_API_RAW}date={now.date().isoformat()}/{name}"
    try:
        fetch = products_api.fetch_products()
    except ProductsPayloadError as exc:
        body = getattr(exc, "body", b"")
        key = _quarantine_file(lake, "api_products", name, body,
                               BadFileError(products_api.base_url, str(exc), "invalid_payload"))
        # the resource already retried transient errors; a wrong payload is not retried again
        raise dg.Failure(description=str(exc), metadata={"quarantined": dg.MetadataValue.path(lake.uri(key))},
                         allow_retries=False) from exc
    lake.write_bytes(raw_key, fetch.body)
    for p in fetch.problems:
        context.log.warning(f"{fetch.url} item {p.index}: {p.field}: {p.detail} ({p.rule})")
    return dg.MaterializeResult(
        metadata={
            "items": len(fetch.items),
            "items_with_problems": len({p.index for p in fetch.problems}),
            "problems": dg.MetadataValue.json([p.as_dict() for p in fetch.problems[:50]]),
            "attempts": fetch.attempts,
            "source_url": dg.MetadataValue.url(fetch.url),
            "dagster/uri": dg.MetadataValue.path(lake.uri(raw_key)),
        }
    )


# --- cleaning ----------------------------------------------------------------------------------
def _write_reason(lake: Lake, key: str, error: BadFileError, copied: bool) -> None:
    reason = {"file": error.file, "row": None, "field": None, "rule": error.rule, "problem": error.problem,
              "copied": copied}
    lake.write_bytes(key + ".reason.json", json.dumps(reason, indent=2).encode())


def _quarantine_file(lake: Lake, source: str, name: str, body: bytes, error: BadFileError) -> str:
    """``body`` (a payload that never was a lake file) to ``quarantine/<source>/files/<name>``, with its reason."""
    key = quarantine_files_prefix(source) + name
    lake.write_bytes(key, body)
    _write_reason(lake, key, error, copied=True)
    return key


def _quarantine_raw_file(lake: Lake, source: str, error: BadFileError) -> str:
    """A rejected raw file copied (never read into memory) to ``quarantine/<source>/files/``, with its reason;
    a file that cannot be copied (unreadable, a link) gets its reason all the same."""
    key = quarantine_files_prefix(source) + error.file.rsplit("/", 1)[-1]
    try:
        lake.copy(error.file, key)
        copied = True
    except OSError:
        copied = False
    _write_reason(lake, key, error, copied)
    return key


def _source_files(lake: Lake, source: str) -> tuple[list[T.SourceFile], list[BadFileError]]:
    """The raw files of ``source`` to clean, in raw key order, and those that cannot be (a raw file that is
    no longer a regular file, or one this asset did not register: no arrival stamp to order it by)."""
    files: list[T.SourceFile] = []
    unusable: list[BadFileError] = []
    for o in lake.list_objects(raw_prefix(source)):
        if o.name.startswith("."):
            continue
        try:
            files.append(T.SourceFile(key=o.key, path=lake.open_local(o.key), ingested_at=registration.ingested_at(o.key)))
        except ValueError as exc:
            unusable.append(BadFileError(o.key, f"{exc}; land the file in {landing_prefix(source)} instead",
                                         "not_registered"))
        except OSError as exc:
            unusable.append(BadFileError(o.key, f"cannot be read: {exc.strerror or exc}", "unreadable_file"))
    return files, unusable


def clean_from_lake(
    lake: Lake,
    source: str,
    iceberg: IcebergTables,
    log: dg.DagsterLogManager | None = None,
    properties: dict[str, str] | None = None,
) -> T.CleanResult:
    """Clean every raw file of ``source`` into the Iceberg table ``iceberg_table(source)`` (every row replaced in
    one commit, ``result.commit``; ``properties`` go into the snapshot summary); quarantine bad files and rows.

    The plain ``cleaned.parquet`` of the layout before the table (and, on AWS, its Glue entry) is removed first.
    """
    files, unusable = _source_files(lake, source)
    lake.delete_prefix(legacy_cleaned_key(source))
    con = lake.engine()
    try:
        with tempfile.TemporaryDirectory(prefix=f"orders-{source}-") as tmp:
            quarantine = Path(tmp) / "rows.parquet"
            result = T.clean_source(con, source, files, None, quarantine, tables=iceberg, properties=properties)
            lake.write_bytes(quarantine_rows_key(source), quarantine.read_bytes())
    finally:
        con.close()
    result.files_in += len(unusable)
    result.rejected_files = [*unusable, *result.rejected_files]
    for err in result.rejected_files:
        _quarantine_raw_file(lake, source, err)
        if log:
            log.error(f"quarantined file {err.file}: {err.problem} ({err.rule})")
    for name, files in sorted(result.unread_fields.items()):
        log.warning(
            f"{source}: the field {name!r} is not in the source's contract and is not kept "
            f"({len(files)} file(s), e.g. {files[0]}; the raw zone keeps the files)"
        )
    return result


def _cleaned_asset(source: str) -> dg.AssetsDefinition:
    key = cleaned_asset_key(source)
    spec = T.SPECS[source]

    @dg.asset(
        key=key,
        deps=[raw_asset_key(source)],
        group_name=GROUP,
        kinds={"duckdb", "iceberg"},
        tags=source_tags(source),
        check_specs=[
            dg.AssetCheckSpec("counts_reconcile", asset=key, blocking=True,
                              description="rows in = rows out + quarantined + superseded"),
            dg.AssetCheckSpec("no_rejected_input", asset=key,
                              description="no file rejected and no row quarantined (warns otherwise)"),
        ],
        description=(
            f"`{source}` typed and deduplicated on `{spec.key}` (latest wins), from every file in "
            f"`{raw_prefix(source)}`, as every row of the Iceberg table `{iceberg_table(source)}` (files below "
            f"`processed/{iceberg_table(source)}/`, unpartitioned), replaced in ONE commit: readers see the old rows "
            "or the new, never a mix, and a re-run gives the same rows and one more snapshot. Bad rows go to "
            f"`{quarantine_rows_key(source)}` with (source_file, source_row, field, rule); unreadable files to "
            f"`{quarantine_files_prefix(source)}`."
        ),
    )
    def _asset(
        context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake], iceberg: dg.ResourceParam[IcebergTables]
    ) -> dg.MaterializeResult:
        result = clean_from_lake(lake, source, iceberg, context.log, properties={"dagster.run-id": context.run.run_id})
        commit = result.commit
        assert commit is not None  # the cleaning with tables always commits
        # the rows of this commit's snapshot, whatever commits come after
        files = iceberg.data_files(iceberg_table(source), commit.snapshot_id)
        con = lake.engine()
        try:
            preview = (
                con.execute("SELECT * FROM read_parquet(?) LIMIT 10", [files]).to_arrow_table()
                if files
                else iceberg.read(iceberg_table(source), commit.snapshot_id)
            )
            bad = con.execute(
                "SELECT source_file, source_row, field, rule FROM read_parquet(?) LIMIT 20",
                [lake.uri(quarantine_rows_key(source))],
            ).to_arrow_table().to_pylist()
        finally:
            con.close()
        md = result.as_metadata()
        rejected = [{"file": e.file, "rule": e.rule, "problem": e.problem} for e in result.rejected_files]
        clean_input = not rejected and result.rows_quarantined == 0
        return dg.MaterializeResult(
            metadata=table_metadata(
                result.rows_out, preview, uri=iceberg.location(iceberg_table(source)),
                extra={k: (dg.MetadataValue.json(v) if isinstance(v, dict) else v) for k, v in md.items()}
                | {"rejected_files": dg.MetadataValue.json(rejected)}
                | iceberg_commit_metadata(commit),
            ),
            check_results=[
                dg.AssetCheckResult(check_name="counts_reconcile", passed=result.reconciles,
                                    metadata={k: v for k, v in md.items() if isinstance(v, int)}),
                dg.AssetCheckResult(
                    check_name="no_rejected_input", passed=clean_input, severity=dg.AssetCheckSeverity.WARN,
                    metadata={"rejected_files": dg.MetadataValue.json(rejected),
                              "quarantined_rows_sample": dg.MetadataValue.json(bad)},
                ),
            ],
        )

    _asset.__name__ = f"orders_cleaned_{source}"
    return _asset


cleaned_orders, cleaned_customers, cleaned_products, cleaned_api_products = (_cleaned_asset(s) for s in SOURCES)


# --- warehouse loads ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WarehouseLoad:
    """What one load of a cleaned snapshot into the warehouse did."""

    table: str  # the warehouse table
    iceberg_table: str
    snapshot_id: int
    current: bool  # whether that snapshot is the table's current one
    data_files: tuple[str, ...]
    snapshot_rows: int
    rows_removed: int  # warehouse rows whose key the snapshot lacks (a load as of an older snapshot)
    rows: int  # the warehouse table's rows after the load


def _empty_file(lake: Lake, iceberg: IcebergTables, source: str, snapshot_id: int) -> str:
    """An empty Parquet file of the snapshot's columns in the lake (a snapshot without rows has no data file)."""
    empty = iceberg.read(iceberg_table(source), snapshot_id)
    key = empty_load_key(source)
    con = lake.engine()
    try:
        con.register("empty_snapshot", empty)
        with lake.writing(key) as uri:
            con.execute("COPY (SELECT * FROM empty_snapshot) TO ? (FORMAT parquet)", [uri])
    finally:
        con.close()
    return lake.uri(key)


def _delete_rows_not_in(warehouse: Warehouse, table: str, key: str, keep: set[str]) -> int:
    """Delete the rows of ``table`` whose ``key`` is not in ``keep``; return how many went."""
    t, k = quote_ident(table), quote_ident(key)
    have = warehouse.query(f"SELECT {k} AS k FROM {t}").column("k").to_pylist()  # noqa: S608
    stale = sorted({str(v) for v in have if v is not None} - keep)
    for start in range(0, len(stale), DELETE_BATCH):
        chunk = stale[start:start + DELETE_BATCH]
        marks = ", ".join("?" for _ in chunk)
        warehouse.execute(f"DELETE FROM {t} WHERE {k} IN ({marks})", list(chunk))  # noqa: S608
    return len(stale)


def load_warehouse(
    lake: Lake, warehouse: Warehouse, iceberg: IcebergTables, source: str, snapshot_id: int | None = None
) -> WarehouseLoad:
    """Make the warehouse table ``raw_orders.<source>`` hold the rows of one snapshot of the Iceberg table: the
    current one, or ``snapshot_id`` (a load "as of" an older snapshot undoes a bad load).

    The snapshot's data files (copy-on-write: they ARE its rows) are upserted on the source's key, so the dbt
    views over the table are never dropped; rows whose key the snapshot lacks are then deleted (one statement per
    ``DELETE_BATCH`` keys). On Athena, whose tables cannot delete rows, the table is replaced whole (a new version under the
    same Glue name, which its views keep reading). ``ValueError`` when the table or the snapshot does not exist.
    """
    name, table, key = iceberg_table(source), warehouse_table(source), KEYS[source]
    if not iceberg.exists(name):
        raise ValueError(f"no cleaned {source} yet: the Iceberg table {iceberg.identifier(name)} does not exist "
                         f"(materialize {cleaned_asset_key(source).to_user_string()} first)")
    current = iceberg.current_snapshot_id(name)
    wanted = current if snapshot_id is None else snapshot_id
    snapshot = iceberg.load(name).snapshot_by_id(wanted) if wanted is not None else None
    if snapshot is None:
        known = [s.snapshot_id for s in iceberg.history(name)]
        raise ValueError(f"{iceberg.identifier(name)} has no snapshot {wanted}; its snapshots: {known}")
    files = iceberg.data_files(name, wanted)
    total = snapshot.summary["total-records"] if snapshot.summary is not None else None
    snapshot_rows = int(total) if total is not None else -1  # -1: unknown, the keys are compared
    uris = files or [_empty_file(lake, iceberg, source, wanted)]
    removed = 0
    if warehouse.kind == "athena":
        rows = warehouse.replace_table(table, uris)
    else:
        rows = warehouse.replace_rows(table, uris, [key])
        if rows != snapshot_rows:  # keys the snapshot lacks: loaded from a later snapshot
            keep = {str(v) for v in iceberg.read(name, wanted, columns=[key]).column(key).to_pylist()}
            removed = _delete_rows_not_in(warehouse, table, key, keep)
            rows = warehouse.row_count(table)
    if snapshot_rows < 0:
        snapshot_rows = rows
    return WarehouseLoad(table, iceberg.identifier(name), wanted, wanted == current, tuple(files), snapshot_rows,
                         removed, rows)


def _load_asset(source: str) -> dg.AssetsDefinition:
    table = warehouse_table(source)

    @dg.asset(
        key=warehouse_asset_key(source),
        deps=[cleaned_asset_key(source)],
        group_name=GROUP,
        kinds={"sql", "table", "iceberg"},
        tags=source_tags(source),
        description=(
            f"Warehouse table `{table}`: the rows of one snapshot of the Iceberg table `{iceberg_table(source)}` "
            f"(its data files), upserted on `{KEYS[source]}`, then the rows whose key the snapshot lacks deleted: the "
            "table equals the snapshot, a re-run leaves the same rows, and the dbt views over the table are never "
            "dropped. By default the current snapshot; run config `snapshot_id` loads the table as of an older one "
            "(undo a bad load, or load after `ecommerce-assets table rollback`). dbt reads it as source "
            f"`raw_orders.{source}`."
        ),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: AsOfSnapshot,
        lake: dg.ResourceParam[Lake],
        warehouse: dg.ResourceParam[Warehouse],
        iceberg: dg.ResourceParam[IcebergTables],
    ) -> dg.MaterializeResult:
        try:
            load = load_warehouse(lake, warehouse, iceberg, source, config.snapshot())
        except ValueError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        as_of = "the current snapshot" if load.current else "an older snapshot (not the table's current one)"
        context.log.info(f"{table}: {load.rows} row(s) from {load.iceberg_table} at {load.snapshot_id}, {as_of}; "
                         f"{load.rows_removed} row(s) the snapshot lacks removed")
        return dg.MaterializeResult(metadata=warehouse_table_metadata(warehouse, table, extra={
            "iceberg/table": dg.MetadataValue.text(load.iceberg_table),
            # a snapshot id is a 64-bit number: as text, so that no JSON reader rounds it
            "iceberg/snapshot_id": dg.MetadataValue.text(str(load.snapshot_id)),
            "iceberg/snapshot_is_current": load.current,
            "iceberg/data_files": dg.MetadataValue.int(len(load.data_files)),
            "snapshot_rows": load.snapshot_rows,
            "rows_removed": load.rows_removed,
        }))

    _asset.__name__ = f"raw_orders_{source}"
    return _asset


load_orders, load_customers, load_products, load_api_products = (_load_asset(s) for s in SOURCES)
