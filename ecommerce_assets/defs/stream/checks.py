"""The stream's blocking checks on the warehouse table every micro-batch loads."""

import dagster as dg

from ecommerce_assets.defs.stream.assets import FIREHOSE_KEY, FIREHOSE_TABLE
from ecommerce_assets.storage.warehouses.base import Warehouse, quote_ident


@dg.asset_check(asset=FIREHOSE_KEY, blocking=True,
                description="Each stream record (shard_id, sequence_number) is in the table at most once.")
def firehose_transactions_one_row_per_record(warehouse: dg.ResourceParam[Warehouse]) -> dg.AssetCheckResult:
    t = quote_ident(FIREHOSE_TABLE)
    dups = warehouse.query(
        f"SELECT shard_id, sequence_number, count(*) AS n FROM {t} "  # noqa: S608 - quoted identifier
        "GROUP BY shard_id, sequence_number HAVING count(*) > 1 ORDER BY n DESC LIMIT 5"
    ).to_pylist()
    return dg.AssetCheckResult(passed=not dups, metadata={
        "duplicated_records_sample": dg.MetadataValue.json([{k: str(v) for k, v in d.items()} for d in dups])})


@dg.asset_check(asset=FIREHOSE_KEY, blocking=True,
                description="Typed columns are filled: invoice, stock code, non-zero quantity, date, customer.")
def firehose_transactions_required_columns(warehouse: dg.ResourceParam[Warehouse]) -> dg.AssetCheckResult:
    t = quote_ident(FIREHOSE_TABLE)
    bad = warehouse.query(
        f"SELECT shard_id, sequence_number, invoiceno, stockcode, quantity FROM {t} "  # noqa: S608
        "WHERE invoiceno IS NULL OR stockcode IS NULL OR quantity IS NULL OR quantity = 0 "
        "OR invoicedate IS NULL OR customerid IS NULL OR unitprice IS NULL LIMIT 5"
    ).to_pylist()
    return dg.AssetCheckResult(passed=not bad, metadata={
        "offending_rows_sample": dg.MetadataValue.json([{k: str(v) for k, v in b.items()} for b in bad])})


STREAM_BATCH_CHECKS = [firehose_transactions_one_row_per_record, firehose_transactions_required_columns]
