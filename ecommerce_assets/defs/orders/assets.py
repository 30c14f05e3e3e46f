"""Orders ELT assets: landed files and the products API -> raw -> cleaned Parquet -> warehouse ``raw_orders``.

Per source (``orders``, ``customers``, ``products``; ``api_products`` from the REST API):

* ``orders/raw/<source>``: registers every new landed file under ``raw/<source>/`` (never changed);
* ``orders/cleaned/<source>``: all raw files of the source -> one cleaned Parquet file (rules and
  latest-wins order in ``ecommerce_assets.transforms.orders``), bad rows/files to ``quarantine/<source>/``;
* ``raw_orders/<source>``: the warehouse table the dbt sources read (``defs/orders/dbt.py``).

Products are optional, from products.csv, the API, or both: the assets of those two sources are tagged
``ecommerce/optional_source`` (the headless catch-up never lets one block its downstream), and their dbt
staging views read an absent table as empty. ``orders`` and ``customers`` feed the marts directly.
"""


import datetime as dt
import hashlib
import json
import tempfile
from pathlib import Path

import dagster as dg

from ecommerce_assets.lib.metadata import table_metadata, warehouse_table_metadata
from ecommerce_assets.resources.products_api import ProductsApi, ProductsPayloadError
from ecommerce_assets.storage import registration, zones
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.warehouses.base import Warehouse
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


def source_tags(source: str) -> dict[str, str]:
    """The tags of every asset of ``source``: ``ecommerce/optional_source`` for an optional one."""
    return dict(OPTIONAL_SOURCE_TAGS) if source in OPTIONAL_SOURCES else {}


def raw_prefix(source: str) -> str:
    return zones.orders_raw(source)


def landing_prefix(source: str) -> str:
    return zones.landing(source)


def cleaned_key(source: str) -> str:
    return zones.orders_cleaned(source)


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


def clean_from_lake(lake: Lake, source: str, log: dg.DagsterLogManager | None = None) -> T.CleanResult:
    """Clean every raw file of ``source`` into ``cleaned_key(source)``; quarantine bad files and rows."""
    files, unusable = _source_files(lake, source)
    con = lake.engine()
    try:
        with tempfile.TemporaryDirectory(prefix=f"orders-{source}-") as tmp:
            out, quarantine = Path(tmp) / "cleaned.parquet", Path(tmp) / "rows.parquet"
            result = T.clean_source(con, source, files, out, quarantine)
            lake.write_bytes(cleaned_key(source), out.read_bytes())
            lake.write_bytes(quarantine_rows_key(source), quarantine.read_bytes())
    finally:
        con.close()
    result.files_in += len(unusable)
    result.rejected_files = [*unusable, *result.rejected_files]
    for err in result.rejected_files:
        _quarantine_raw_file(lake, source, err)
        if log:
            log.error(f"quarantined file {err.file}: {err.problem} ({err.rule})")
    return result


def _cleaned_asset(source: str) -> dg.AssetsDefinition:
    key = cleaned_asset_key(source)
    spec = T.SPECS[source]

    @dg.asset(
        key=key,
        deps=[raw_asset_key(source)],
        group_name=GROUP,
        kinds={"duckdb", "parquet"},
        tags=source_tags(source),
        check_specs=[
            dg.AssetCheckSpec("counts_reconcile", asset=key, blocking=True,
                              description="rows in = rows out + quarantined + superseded"),
            dg.AssetCheckSpec("no_rejected_input", asset=key,
                              description="no file rejected and no row quarantined (warns otherwise)"),
        ],
        description=(
            f"`{source}` typed and deduplicated on `{spec.key}` (latest wins), from every file in "
            f"`{raw_prefix(source)}`, as `{cleaned_key(source)}`. Bad rows go to `{quarantine_rows_key(source)}` "
            f"with (source_file, source_row, field, rule); unreadable files to `{quarantine_files_prefix(source)}`."
        ),
    )
    def _asset(context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake]) -> dg.MaterializeResult:
        result = clean_from_lake(lake, source, context.log)
        con = lake.engine()
        try:
            preview = con.execute("SELECT * FROM read_parquet(?) LIMIT 10", [lake.uri(cleaned_key(source))]).to_arrow_table()
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
                result.rows_out, preview, uri=lake.uri(cleaned_key(source)),
                extra={k: (dg.MetadataValue.json(v) if isinstance(v, dict) else v) for k, v in md.items()}
                | {"rejected_files": dg.MetadataValue.json(rejected)},
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
def _load_asset(source: str) -> dg.AssetsDefinition:
    table = warehouse_table(source)

    @dg.asset(
        key=warehouse_asset_key(source),
        deps=[cleaned_asset_key(source)],
        group_name=GROUP,
        kinds={"sql", "table"},
        tags=source_tags(source),
        description=(
            f"Warehouse table `{table}`: the cleaned `{source}` upserted on `{KEYS[source]}` (the cleaned file holds "
            f"every key seen, so this equals a replace; a re-run leaves the same rows, and the dbt views over the "
            f"table are never dropped). dbt reads it as source `raw_orders.{source}`."
        ),
    )
    def _asset(lake: dg.ResourceParam[Lake], warehouse: dg.ResourceParam[Warehouse]) -> dg.MaterializeResult:
        warehouse.replace_rows(table, [lake.uri(cleaned_key(source))], [KEYS[source]])
        return dg.MaterializeResult(metadata=warehouse_table_metadata(warehouse, table))

    _asset.__name__ = f"raw_orders_{source}"
    return _asset


load_orders, load_customers, load_products, load_api_products = (_load_asset(s) for s in SOURCES)
