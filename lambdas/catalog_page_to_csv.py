"""AWS Lambda on new catalog pages: one raw page JSON in S3 -> its cleaned CSV + Parquet (or quarantine).

Trigger: S3 ``ObjectCreated`` notifications on ``<prefix>/raw/catalog/`` (suffix ``.json``). Event shape
(the standard S3 notification; several records per event are handled):

    {"Records": [{"eventSource": "aws:s3",
                  "s3": {"bucket": {"name": "my-bucket"},
                         "object": {"key": "lake/raw/catalog/seller=A2L77EE7U53NWQ/date=2024-05-01/page=1.json"}}}]}

For ``<root>raw/catalog/seller=<id>/date=<d>/page=<n>.json`` it writes, in the same bucket:

* ``<root>processed/catalog/pages/seller=<id>/date=<d>/page=<n>.csv`` (Redshift ``COPY ... FORMAT CSV
  IGNOREHEADER 1 EMPTYASNULL``) and ``.parquet``: the page's rows (not yet deduplicated across pages;
  the ``catalog/snapshot`` asset dedupes the seller snapshot by ASIN);
* ``<root>quarantine/catalog/pages/seller=<id>/date=<d>/page=<n>.reason.json``: every issue of the page
  (file, row, field, rule, problem) whenever there is one, and for a bad page a copy of the page itself.

The cleaning is ``ecommerce_assets.transforms.catalog.clean_page`` (no Dagster import; needs pyarrow).
A retried invocation rewrites the same keys with the same bytes. Keys are URL-decoded as S3 sends them.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

import boto3

from ecommerce_assets.transforms import catalog
from lambdas.dlq import with_dead_letter_queue

PAGE_KEY = re.compile(
    r"^(?P<root>(?:.*/)?)raw/catalog/seller=(?P<seller>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/page=(?P<page>\d+)\.json$"
)


@cache
def _s3() -> Any:
    return boto3.client("s3")  # AWS_ENDPOINT_URL is honoured by boto3 itself


def handle_page(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    """Clean one page object; return what was written."""
    m = PAGE_KEY.match(key)
    if not m:
        return {"key": key, "skipped": "not a raw catalog page key"}
    root, seller, date, page = m["root"], m["seller"], m["date"], int(m["page"])
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    result = catalog.clean_page(body, seller, date, page=page, source=f"s3://{bucket}/{key}")
    stem = f"seller={seller}/date={date}/page={page}"
    written: list[str] = []
    if result.ok:
        table = result.table()
        for suffix, data in ((".csv", catalog.to_csv_bytes(table)), (".parquet", catalog.to_parquet_bytes(table))):
            out = f"{root}processed/catalog/pages/{stem}{suffix}"
            s3.put_object(Bucket=bucket, Key=out, Body=data)
            written.append(out)
    else:
        out = f"{root}quarantine/catalog/pages/{stem}.json"
        s3.copy_object(Bucket=bucket, Key=out, CopySource={"Bucket": bucket, "Key": key})
        written.append(out)
    if result.issues():
        out = f"{root}quarantine/catalog/pages/{stem}.reason.json"
        s3.put_object(Bucket=bucket, Key=out, Body=json.dumps(result.issues(), default=str).encode())
        written.append(out)
    return {"key": key, "ok": result.ok, "rows": len(result.rows), "quarantined_rows": len(result.quarantined),
            "written": written}


@with_dead_letter_queue
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    s3 = _s3()
    pages = []
    for record in event.get("Records", []):
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        pages.append(handle_page(s3, bucket, key))
    return {"pages": pages}
