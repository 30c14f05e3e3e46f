"""New files in ``landing/transactions/date=YYYY-MM-DD/`` -> one run per date (raw + processed).

The seven analytics refresh through their automation condition, evaluated by this domain's
automation sensor (running by default in local mode, like the arrival sensor).
"""


import datetime as dt

import dagster as dg

from ecommerce_assets.defs.transactions.assets import LANDING, START_DATE, transactions, transactions_raw
from ecommerce_assets.lib.arrival import Arrivals, arrival_sensor


def transactions_request(batch: Arrivals) -> dg.RunRequest | None:
    """One run of raw + processed for the batch's date; dates outside the partitions wait (deferred)."""
    date = batch.date
    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    if date is None or not (START_DATE <= date <= tomorrow):
        return None
    return dg.RunRequest(partition_key=date, tags={"ecommerce/source": "transactions"})


transactions_arrival_sensor = arrival_sensor(
    name="transactions_arrival_sensor",
    source_prefix=LANDING,
    target=dg.AssetSelection.assets(transactions_raw, transactions),
    build_request=transactions_request,
    suffixes=(".json", ".jsonl", ".ndjson"),
    description=(
        "New or changed JSON files in landing/transactions/date=YYYY-MM-DD/ -> one run per date of "
        "transactions/raw + transactions/processed (lists only recent/new date prefixes, sweeps older ones in turn)."
    ),
)
