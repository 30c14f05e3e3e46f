"""Quality gates of the Online Retail pipeline.

The checks on the cleaned zone are blocking: when one fails, the star schema is not built in that run.
"""


import json

import dagster as dg
import duckdb

from ecommerce_assets.defs.retail.assets import (
    CLEANED_KEY,
    CLEANED_MANIFEST,
    GOLD,
    QUARANTINE_ROWS,
    cleaned_glob,
)
from ecommerce_assets.lib import quality
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.transforms import retail

UNKNOWN_SHARE_WARN = 0.30


def _cleaned(lake: Lake) -> duckdb.DuckDBPyConnection:
    con = lake.engine()
    retail.register_cleaned(con, cleaned_glob(lake))
    return con


@dg.asset_check(asset=CLEANED_KEY, blocking=True, description="No cleaned line has a null invoiceno.")
def no_null_invoiceno(lake: dg.ResourceParam[Lake]) -> dg.AssetCheckResult:
    return quality.no_nulls(_cleaned(lake), "cleaned", "invoiceno")


@dg.asset_check(asset=CLEANED_KEY, blocking=True, description="Every cleaned line has quantity > 0.")
def positive_quantity(lake: dg.ResourceParam[Lake]) -> dg.AssetCheckResult:
    return quality.all_positive(_cleaned(lake), "cleaned", "quantity", "invoiceno")


@dg.asset_check(asset=CLEANED_KEY, blocking=True, description="Every cleaned line has unitprice > 0.")
def positive_unitprice(lake: dg.ResourceParam[Lake]) -> dg.AssetCheckResult:
    return quality.all_positive(_cleaned(lake), "cleaned", "unitprice", "invoiceno")


def reconcile(con: duckdb.DuckDBPyConnection, manifest: dict, cleaned: str, quarantine: str) -> dg.AssetCheckResult:
    """Rows in (from the manifest) = rows in the cleaned zone + quarantined rows, and per rule."""
    rows_out = con.execute(f"SELECT count(*) FROM {cleaned}").fetchone()[0]  # noqa: S608
    by_rule = dict(con.execute(f"SELECT rule, count(*) FROM {quarantine} GROUP BY rule").fetchall())  # noqa: S608
    expected = {k: v for k, v in manifest["removed"].items() if v}
    ok = manifest["rows_in"] == rows_out + sum(by_rule.values()) and by_rule == expected
    return dg.AssetCheckResult(
        passed=ok,
        description=(
            f"rows in {manifest['rows_in']:,} = rows out {rows_out:,} + quarantined {sum(by_rule.values()):,}"
            if ok else f"does not reconcile: manifest {manifest}, cleaned {rows_out}, quarantine {by_rule}"
        ),
        metadata={"rows_in": manifest["rows_in"], "rows_out": int(rows_out),
                  "quarantined_by_rule": dg.MetadataValue.json(by_rule)},
    )


@dg.asset_check(
    asset=CLEANED_KEY,
    blocking=True,
    description="Rows in = rows out + rows quarantined, rule by rule, read back from the files themselves.",
)
def counts_reconcile(lake: dg.ResourceParam[Lake]) -> dg.AssetCheckResult:
    con = _cleaned(lake)
    con.read_parquet(lake.uri(QUARANTINE_ROWS)).create_view("quarantined")
    return reconcile(con, json.loads(lake.read_bytes(CLEANED_MANIFEST)), "cleaned", "quarantined")


@dg.asset_check(
    asset=CLEANED_KEY,
    description=f"Warns when more than {UNKNOWN_SHARE_WARN:.0%} of the lines have no customer (UNKNOWN).",
)
def unknown_customer_share(lake: dg.ResourceParam[Lake]) -> dg.AssetCheckResult:
    return quality.share_at_most(_cleaned(lake), "cleaned", "customerid", retail.UNKNOWN_CUSTOMER, UNKNOWN_SHARE_WARN)


def _gold(lake: Lake) -> duckdb.DuckDBPyConnection:
    con = lake.engine()
    for table in retail.STAR_TABLES:
        con.read_parquet(lake.uri(f"{GOLD}{table}.parquet")).create_view(table)
    return con


@dg.asset_check(asset=dg.AssetKey(["gold", "customers"]), description="customerid is unique in gold.customers.")
def customers_key_unique(lake: dg.ResourceParam[Lake]) -> dg.AssetCheckResult:
    return quality.unique_key(_gold(lake), "customers", ["customerid"])


@dg.asset_check(asset=dg.AssetKey(["gold", "products"]), description="stockcode is unique in gold.products.")
def products_key_unique(lake: dg.ResourceParam[Lake]) -> dg.AssetCheckResult:
    return quality.unique_key(_gold(lake), "products", ["stockcode"])


@dg.asset_check(
    asset=dg.AssetKey(["gold", "sales_transactions"]),
    additional_deps=[dg.AssetKey(["gold", "customers"])],
    description="Every sales_transactions.customerid is in gold.customers.",
)
def sales_customer_exists(lake: dg.ResourceParam[Lake]) -> dg.AssetCheckResult:
    return quality.references(_gold(lake), "sales_transactions", "customerid", "customers", "customerid")


@dg.asset_check(
    asset=dg.AssetKey(["gold", "sales_transactions"]),
    additional_deps=[dg.AssetKey(["gold", "products"])],
    description="Every sales_transactions.stockcode is in gold.products.",
)
def sales_product_exists(lake: dg.ResourceParam[Lake]) -> dg.AssetCheckResult:
    return quality.references(_gold(lake), "sales_transactions", "stockcode", "products", "stockcode")
