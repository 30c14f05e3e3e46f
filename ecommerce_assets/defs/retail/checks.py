"""Quality gates of the Online Retail pipeline.

The checks on the cleaned zone read the Iceberg table ``online_retail_cleaned`` at its current snapshot and are
blocking: when one fails, the star schema is not built in that run. Each
group of checks is one step over one engine (``dg.multi_asset_check``): the cleaned zone and the gold tables are
opened once, not once per check, and a catch-up pays one step's overhead for the gates, not five.
"""

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import dagster as dg

from ecommerce_assets.defs.retail.assets import (
    CLEANED_KEY,
    CLEANED_MANIFEST,
    GOLD,
    QUARANTINE_ROWS,
    bind_cleaned,
)
from ecommerce_assets.lib import quality
from ecommerce_assets.storage.iceberg import IcebergTables
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.transforms import retail

if TYPE_CHECKING:
    import duckdb

UNKNOWN_SHARE_WARN = 0.30


CLEANED_CHECKS: dict[str, tuple[str, bool]] = {  # name: (description, blocking)
    "no_null_invoiceno": ("No cleaned line has a null invoiceno.", True),
    "positive_quantity": ("Every cleaned line has quantity > 0.", True),
    "positive_unitprice": ("Every cleaned line has unitprice > 0.", True),
    "counts_reconcile": ("Rows in = rows out + rows quarantined, rule by rule, read back from the files themselves.",
                         True),
    "unknown_customer_share": (f"Warns when more than {UNKNOWN_SHARE_WARN:.0%} of the lines have no customer "
                               "(UNKNOWN).", False),
}
CUSTOMERS, PRODUCTS, SALES = (dg.AssetKey(["gold", t]) for t in retail.STAR_TABLES)
GOLD_CHECKS: dict[str, tuple[dg.AssetKey, str, list[dg.AssetKey]]] = {  # name: (asset, description, also reads)
    "customers_key_unique": (CUSTOMERS, "customerid is unique in gold.customers.", []),
    "products_key_unique": (PRODUCTS, "stockcode is unique in gold.products.", []),
    "sales_customer_exists": (SALES, "Every sales_transactions.customerid is in gold.customers.", [CUSTOMERS]),
    "sales_product_exists": (SALES, "Every sales_transactions.stockcode is in gold.products.", [PRODUCTS]),
}


def _selected(
    context: dg.AssetCheckExecutionContext, checks: dict[str, Callable[[], dg.AssetCheckResult]],
    asset_of: Callable[[str], dg.AssetKey],
) -> Iterator[dg.AssetCheckResult]:
    """The results of the checks this run selected, each named for its check."""
    selected = {key.name for key in context.selected_asset_check_keys}
    for name, evaluate in checks.items():
        if name in selected:
            yield evaluate()._replace(check_name=name, asset_key=asset_of(name))


def reconcile(con: "duckdb.DuckDBPyConnection", manifest: dict, cleaned: str, quarantine: str) -> dg.AssetCheckResult:
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


def _counts_reconcile(lake: Lake, con: "duckdb.DuckDBPyConnection") -> dg.AssetCheckResult:
    if not lake.exists(CLEANED_MANIFEST) or not lake.exists(QUARANTINE_ROWS):
        return dg.AssetCheckResult(passed=False, description=f"no manifest ({CLEANED_MANIFEST}) or quarantine "
                                   f"({QUARANTINE_ROWS}) beside the cleaned zone: nothing to reconcile against")
    con.read_parquet(lake.uri(QUARANTINE_ROWS)).create_view("quarantined")
    return reconcile(con, json.loads(lake.read_bytes(CLEANED_MANIFEST)), "cleaned", "quarantined")


@dg.multi_asset_check(
    specs=[dg.AssetCheckSpec(name, asset=CLEANED_KEY, description=text, blocking=blocking)
           for name, (text, blocking) in CLEANED_CHECKS.items()],
    can_subset=True,
    description="The gates of the cleaned zone, in one pass over it.",
)
def cleaned_checks(
    context: dg.AssetCheckExecutionContext, lake: dg.ResourceParam[Lake], iceberg: dg.ResourceParam[IcebergTables]
) -> Iterator[dg.AssetCheckResult]:
    con = lake.engine()
    try:
        bind_cleaned(con, iceberg)
        yield from _selected(context, {
            "no_null_invoiceno": lambda: quality.no_nulls(con, "cleaned", "invoiceno"),
            "positive_quantity": lambda: quality.all_positive(con, "cleaned", "quantity", "invoiceno"),
            "positive_unitprice": lambda: quality.all_positive(con, "cleaned", "unitprice", "invoiceno"),
            "counts_reconcile": lambda: _counts_reconcile(lake, con),
            "unknown_customer_share": lambda: quality.share_at_most(
                con, "cleaned", "customerid", retail.UNKNOWN_CUSTOMER, UNKNOWN_SHARE_WARN),
        }, lambda _name: CLEANED_KEY)
    finally:
        con.close()


@dg.multi_asset_check(
    specs=[dg.AssetCheckSpec(name, asset=asset, description=text, additional_deps=reads)
           for name, (asset, text, reads) in GOLD_CHECKS.items()],
    can_subset=True,
    description="The keys and references of the star schema, in one step over the three gold tables.",
)
def gold_checks(context: dg.AssetCheckExecutionContext, lake: dg.ResourceParam[Lake]) -> Iterator[dg.AssetCheckResult]:
    con = lake.engine()
    try:
        for table in retail.STAR_TABLES:
            con.read_parquet(lake.uri(f"{GOLD}{table}.parquet")).create_view(table)
        yield from _selected(context, {
            "customers_key_unique": lambda: quality.unique_key(con, "customers", ["customerid"]),
            "products_key_unique": lambda: quality.unique_key(con, "products", ["stockcode"]),
            "sales_customer_exists": lambda: quality.references(con, "sales_transactions", "customerid", "customers",
                                                                "customerid"),
            "sales_product_exists": lambda: quality.references(con, "sales_transactions", "stockcode", "products",
                                                               "stockcode"),
        }, lambda name: GOLD_CHECKS[name][0])
    finally:
        con.close()
