"""AWS Lambda run by Dagster through Pipes (``PipesLambdaClient``, asset ``aws/lambda_transform``).

Event shape (what ``PipesLambdaClient.run`` sends: the asset's event plus the Pipes bootstrap keys):

    {"date": "2026-11-22", "DAGSTER_PIPES_CONTEXT": "<encoded>", "DAGSTER_PIPES_MESSAGES": "<encoded>"}

The function turns every transaction file of that date (``raw/transactions/date=<date>/``, else
``landing/transactions/date=<date>/``) into the date's partition of the Iceberg table ``transactions`` (one
commit, through the Glue catalog) with the same transform as the ``transactions`` asset, logs to Dagster, and
reports the materialization (records in/out/quarantined, the snapshot id, the table's location) back to the asset; the messages travel in the invocation's log tail. Errors go to the
dead-letter queue (``ECOMMERCE_DLQ_URL``) and fail the Dagster run.
"""

from __future__ import annotations

from typing import Any

from dagster_pipes import PipesMappingParamsLoader, open_dagster_pipes

from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage import zones
from ecommerce_assets.storage.iceberg import IcebergTables
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.lakes import build_lake
from lambdas.dlq import with_dead_letter_queue


@with_dead_letter_queue
def handler(
    event: dict[str, Any], context: Any = None, lake: Lake | None = None, tables: IcebergTables | None = None
) -> dict[str, Any]:
    from ecommerce_assets.storage.iceberg import build_iceberg
    from ecommerce_assets.storage.registration import current_raw_files
    from ecommerce_assets.transforms.transactions import TABLE, transform_partition

    with open_dagster_pipes(params_loader=PipesMappingParamsLoader(event)) as pipes:
        lake = lake or build_lake(get_settings())
        date = str(event["date"])
        objects = current_raw_files(lake, f"{zones.TRANSACTIONS_RAW}date={date}/") or list(
            lake.list_objects(f"{zones.TRANSACTIONS_LANDING}date={date}/")
        )
        pipes.log.info(f"{date}: transforming {len(objects)} file(s) in {lake.uri('')}")
        tables = tables or build_iceberg(get_settings())
        res = transform_partition(lake, date, objects, tables=tables, properties={"ecommerce.writer": "lambda"})
        metadata = {
            "records_out": res.records_out,
            "records_quarantined": res.records_quarantined,
            "files_quarantined": res.files_quarantined,
            "dagster/row_count": res.records_out,
            "iceberg/snapshot_id": str(res.commit.snapshot_id) if res.commit else "",
            "dagster/uri": {"raw_value": tables.location(TABLE), "type": "path"},
        }
        pipes.report_asset_materialization(metadata=metadata)
        return {"date": date, **{k: v for k, v in metadata.items() if not k.startswith("dagster/")}}
