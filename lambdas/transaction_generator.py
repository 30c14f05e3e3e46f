"""AWS Lambda: land generated transactions (an EventBridge schedule, e.g. ``rate(5 minutes)``).

Event shape (every field optional):

    {"count": 5, "per_file": 1, "format": "object" | "array" | "lines", "seed": 42, "date": "YYYY-MM-DD"}

Without ``date`` the transactions fall in the five minutes before now (what the schedule lands every tick);
with it they are spread over that day (a backfill).

Writes ``landing/transactions/date=<today>/transactions_<epoch>.json`` into the lake
(``s3://$ECOMMERCE_S3_BUCKET/$ECOMMERCE_S3_PREFIX`` in aws mode) with the same seeded generator as
``ecommerce-assets generate``. Returns ``{"files": n, "records": n, "keys": [...]}``.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from ecommerce_assets.services.transactions_generator import generate_files, land
from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.lakes import build_lake
from lambdas.dlq import with_dead_letter_queue


@with_dead_letter_queue
def handler(event: dict[str, Any] | None, context: Any = None, lake: Lake | None = None) -> dict[str, Any]:
    event = event or {}
    fmt = str(event.get("format", "object"))
    per_file = 1 if fmt == "object" else int(event.get("per_file", 1))
    seed = int(event["seed"]) if event.get("seed") is not None else int(time.time())
    day = dt.date.fromisoformat(str(event["date"])) if event.get("date") else None
    files, records, keys = land(
        lake or build_lake(get_settings()),
        generate_files(int(event.get("count", 5)), per_file=per_file, fmt=fmt, seed=seed, end_date=day),
    )
    return {"files": files, "records": records, "keys": keys}
