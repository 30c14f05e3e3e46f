"""AWS Lambda: one landed transaction JSON file -> Parquet in its date partition (the Lambda way).

Trigger: S3 ``ObjectCreated:*`` notifications on ``<prefix>/landing/transactions/`` (or
``<prefix>/raw/transactions/``). Event shape (the standard S3 notification; every record is handled):

    {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                  "s3": {"bucket": {"name": "my-bucket"},
                         "object": {"key": "lake/landing/transactions/date=2026-11-22/transactions_1790000000.json"}}}]}

Each file goes through the same transform as the Dagster sensor path
(``ecommerce_assets.transforms.transactions.transform_partition``) with ``part=<file stem>``: its good
records become ``intermediate/transactions/lambda/date=<date>/part-<stem>.parquet`` (staged: the next partition
run commits the whole day to the Iceberg table ``transactions``), its bad records
``quarantine/transactions/date=<date>/records-<stem>.parquet``, and a file that is not JSON goes whole to
``quarantine/transactions/date=<date>/files/``. Keys that are not ``.../transactions/date=YYYY-MM-DD/<file>``
are skipped. Returns ``{"processed": [{"file", "records_out", "records_quarantined", "output"}], "skipped": [...]}``.
The lake is ``s3://$ECOMMERCE_S3_BUCKET/$ECOMMERCE_S3_PREFIX`` (``AWS_ENDPOINT_URL`` honoured); in local
mode (``ECOMMERCE_ENV=local``) the same handler works on the local lake folder, which the benchmark uses.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.lakes import build_lake
from ecommerce_assets.transforms.transactions import transform_partition
from lambdas.dlq import with_dead_letter_queue

KEY = re.compile(r"(?:^|/)((?:landing|raw)/transactions/date=(\d{4}-\d{2}-\d{2})/([^/]+))$")


def _lake() -> Lake:
    """The lake of the environment (S3 in aws mode), built from the settings."""
    return build_lake(get_settings())


@with_dead_letter_queue
def handler(event: dict[str, Any], context: Any = None, lake: Lake | None = None) -> dict[str, list]:
    lake = lake or _lake()
    root = get_settings().s3_prefix.strip("/")
    result: dict[str, list] = {"processed": [], "skipped": []}
    for record in event.get("Records", []):
        full_key = unquote_plus(record["s3"]["object"]["key"])
        key = full_key[len(root) + 1 :] if root and full_key.startswith(root + "/") else full_key
        m = KEY.search(key)
        if not m or m.group(1) != key:
            result["skipped"].append(full_key)
            continue
        date, name = m.group(2), m.group(3)
        stem = name.rsplit(".", 1)[0]
        res = transform_partition(lake, date, [lake.stat(key)], part=stem)
        result["processed"].append(
            {"file": key, "records_out": res.records_out, "records_quarantined": res.records_quarantined,
             "files_quarantined": res.files_quarantined, "output": res.output_key}
        )
    return result
