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

from ecommerce_assets.arrival import arrival_sensor
from ecommerce_assets.metadata import table_metadata, warehouse_table_metadata
from ecommerce_assets.registration import rejected_prefix
from ecommerce_assets.resources.lake import Lake, UnsafeObjectError
from ecommerce_assets.resources.products_api import ProductsApi, ProductsPayloadError
from ecommerce_assets.resources.warehouse import Warehouse
from ecommerce_assets.transforms import orders as T
from ecommerce_assets.transforms.files import BadFileError

GROUP = "orders"
FILE_SOURCES = ("orders", "customers", "products")
SOURCES = (*FILE_SOURCES, "api_products")
WAREHOUSE_SCHEMA = "raw_orders"
API_RAW = "raw/api/products/"
STAMP = "%Y%m%dT%H%M%S%fZ"
# the business key of each cleaned table (the API's id is renamed product_id by the cleaning)
KEYS = {"orders": "order_id", "customers": "customer_id", "products": "product_id", "api_products": "product_id"}
# sources a mart never waits for: products come from products.csv, the API, or both
OPTIONAL_SOURCES = ("products", "api_products")
OPTIONAL_SOURCE_TAGS = {"ecommerce/optional_source": "true"}


def source_tags(source: str) -> dict[str, str]:
    """The tags of every asset of ``source``: ``ecommerce/optional_source`` for an optional one."""
    return dict(OPTIONAL_SOURCE_TAGS) if source in OPTIONAL_SOURCES else {}


def raw_prefix(source: str) -> str:
    return API_RAW if source == "api_products" else f"raw/{source}/"


def landing_prefix(source: str) -> str:
    return f"landing/{source}/"


def cleaned_key(source: str) -> str:
    return f"processed/orders/{source}/cleaned.parquet"


def quarantine_rows_key(source: str) -> str:
    return f"quarantine/{source}/rows.parquet"


def quarantine_files_prefix(source: str) -> str:
    return f"quarantine/{source}/files/"


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
def _identity(key: str, version: str) -> str:
    return hashlib.sha256(f"{key}@{version}".encode()).hexdigest()[:12]


def landing_reason_key(source: str, landing_key: str) -> str:
    """Where the reason of a landed entry refused at registration goes: ``quarantine/<source>/landing/<rest>.reason.json``
    (the place every source uses, ``registration.rejected_prefix``)."""
    landing = landing_prefix(source)
    return f"{rejected_prefix(landing)}{landing_key[len(landing):]}.reason.json"


def _refuse_landed(lake: Lake, source: str, key: str, rule: str, problem: str) -> dict[str, str]:
    """Write the reason of a landed entry that was not registered (the entry itself was not read or copied)."""
    reason_key = landing_reason_key(source, key)
    reason = {"file": key, "rule": rule, "problem": problem, "copied": False}
    lake.write_bytes(reason_key, json.dumps(reason, indent=2).encode())
    return {"file": key, "rule": rule, "problem": problem, "reason_key": reason_key}


def register_landed(
    lake: Lake, source: str, now: dt.datetime | None = None, rejected: list[dict[str, str]] | None = None
) -> list[str]:
    """Copy every landed object of ``source`` not registered yet to ``raw/<source>/``; return the new raw keys.

    Raw key: ``raw/<source>/<sub-folders of the landing key>/<arrival stamp>-<identity>-<name>``. The
    identity hashes the landing key and version (etag / mtime), so a file is registered once; the stamp
    (registration time, UTC, microseconds, increasing in landing-key order) gives the file order that
    "latest wins" uses and the ``_ingested_at`` that the incremental fact uses.

    A landed entry that must not or cannot be read never stops the batch: a symbolic link or a special
    file (FIFO, socket, device) is never opened, a file that cannot be read (permissions, an I/O error) is
    skipped until it can be; each gets a reason (``landing_reason_key``), appended to ``rejected`` when
    given, and the other files are registered. Nothing of a link's target is read, copied or logged.
    """
    landing, raw = landing_prefix(source), raw_prefix(source)
    refused = rejected if rejected is not None else []
    for bad in lake.list_rejected(landing):
        refused.append(_refuse_landed(lake, source, bad.key, bad.rule, bad.problem))
    seen = {o.name.split("-", 2)[1] for o in lake.list_objects(raw) if o.name.count("-") >= 2}
    now = now or dt.datetime.now(dt.UTC)
    new: list[str] = []
    for obj in lake.list_objects(landing):
        if obj.name.startswith("."):
            continue
        ident = _identity(obj.key, obj.version)
        if ident in seen:
            continue
        rel_dir = obj.key[len(landing) : len(obj.key) - len(obj.name)]
        stamp = (now + dt.timedelta(microseconds=len(new))).strftime(STAMP)
        raw_key = f"{raw}{rel_dir}{stamp}-{ident}-{obj.name}"
        try:
            lake.copy(obj.key, raw_key)
        except UnsafeObjectError as exc:  # swapped for a link or a FIFO since the listing: still never read
            rule = "symlink" if "symbolic link" in str(exc) else "not_a_regular_file"
            refused.append(_refuse_landed(lake, source, obj.key, rule, str(exc)))
            continue
        except OSError as exc:  # unreadable (permissions, an I/O error): this file waits, the batch goes on
            problem = f"cannot be read: {exc.strerror or type(exc).__name__}; fix the file and land it again"
            refused.append(_refuse_landed(lake, source, obj.key, "unreadable_file", problem))
            continue
        stale = landing_reason_key(source, obj.key)
        if lake.exists(stale):  # refused before, readable now: its old reason goes
            lake.delete_prefix(stale)
        seen.add(ident)
        new.append(raw_key)
    return new


def ingested_at(raw_key: str) -> str:
    """The arrival stamp in a raw key's name as an ISO timestamp (UTC, naive)."""
    stamp = raw_key.rsplit("/", 1)[-1].split("-", 1)[0]
    try:
        return dt.datetime.strptime(stamp, STAMP).isoformat(sep=" ")
    except ValueError as exc:
        raise ValueError(f"{raw_key}: not a registered raw key (expected <{STAMP}>-<id>-<name>)") from exc


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
    def _asset(context: dg.AssetExecutionContext, lake: Lake) -> dg.MaterializeResult:
        refused: list[dict[str, str]] = []
        new = register_landed(lake, source, rejected=refused)
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
def orders_raw_api_products(context: dg.AssetExecutionContext, lake: Lake, products_api: ProductsApi) -> dg.MaterializeResult:
    now = dt.datetime.now(dt.UTC)
    name = f"{now.strftime(STAMP)}-{hashlib.sha256(now.isoformat().encode()).hexdigest()[:12]}-products.json"
    raw_key = f"{API_RAW}date={now.date().isoformat()}/{name}"
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
            files.append(T.SourceFile(key=o.key, path=lake.open_local(o.key), ingested_at=ingested_at(o.key)))
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
    def _asset(context: dg.AssetExecutionContext, lake: Lake) -> dg.MaterializeResult:
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
    def _asset(lake: Lake, warehouse: Warehouse) -> dg.MaterializeResult:
        warehouse.replace_rows(table, [lake.uri(cleaned_key(source))], [KEYS[source]])
        return dg.MaterializeResult(metadata=warehouse_table_metadata(warehouse, table))

    _asset.__name__ = f"raw_orders_{source}"
    return _asset


load_orders, load_customers, load_products, load_api_products = (_load_asset(s) for s in SOURCES)


# --- sensors and schedule ----------------------------------------------------------------------
def _arrival(source: str) -> dg.SensorDefinition:
    return arrival_sensor(
        name=f"orders_{source}_arrival",
        source_prefix=landing_prefix(source),
        target=[raw_asset_key(source), cleaned_asset_key(source), warehouse_asset_key(source)],
        description=(
            f"New files in `landing/{source}/` -> register, clean and load them (dbt models follow by "
            "their eager automation condition)."
        ),
        build_request=lambda batch: dg.RunRequest(),  # the assets are not partitioned: one run per batch
    )


orders_arrival_sensor, customers_arrival_sensor, products_arrival_sensor = (_arrival(s) for s in FILE_SOURCES)

API_SOURCES = [raw_asset_key("api_products"), cleaned_asset_key("api_products"), warehouse_asset_key("api_products")]

products_api_daily = dg.ScheduleDefinition(
    name="orders_products_api_daily",
    target=API_SOURCES,
    cron_schedule="0 6 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Fetch the products API every day at 06:00 and load it (start it once the API URL is set).",
)
