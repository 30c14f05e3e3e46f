"""AWS Lambda: a file landed in ``landing/<source>/`` is registered unchanged in ``raw/<source>/``.

Trigger: S3 ``ObjectCreated:*`` notifications on ``<prefix>/landing/``. Event shape (the standard S3
notification; every record is handled):

    {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                  "s3": {"bucket": {"name": "my-bucket"},
                         "object": {"key": "lake/landing/online_retail/2026-11-22/retail.csv", "eTag": "..."}}}]}

``<root>landing/<source>/<rest>`` is copied (server side, multipart above 8 MB) to
``<root>raw/<source>/<rest>``, the same key mapping as the ``online_retail/raw`` asset. An object already
in raw copied from the same landing ETag is left alone (S3 delivers events at least once); one with other content is
first kept under ``raw/<source>/_superseded/<rest>.<old etag>``. Keys outside ``landing/`` are skipped.
Returns ``{"copied": [...], "unchanged": [...], "skipped": [...]}``; errors go to the dead-letter queue.
Needs only boto3 (in the Lambda runtime); ``<root>`` is ``ECOMMERCE_S3_PREFIX``.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import unquote_plus

import boto3
from botocore.exceptions import ClientError

from ecommerce_assets.settings import get_settings
from lambdas.dlq import with_dead_letter_queue

SOURCE_ETAG = "landing-etag"


def raw_key(key: str, root: str) -> tuple[str, str] | None:
    """(raw key, superseded key stem) for a landing key under ``root``; None when it is not a landing file."""
    root = f"{root.strip('/')}/" if root.strip("/") else ""
    if not key.startswith(f"{root}landing/") or key.endswith("/"):
        return None
    rest = key[len(f"{root}landing/") :]
    source, _, tail = rest.partition("/")
    if not source or not tail:
        return None
    return f"{root}raw/{source}/{tail}", f"{root}raw/{source}/_superseded/{tail}"


@cache
def _s3() -> Any:
    return boto3.client("s3")  # AWS_ENDPOINT_URL is honoured by boto3 itself


def _head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


@with_dead_letter_queue
def handler(event: dict[str, Any], context: Any = None) -> dict[str, list[str]]:
    s3 = _s3()
    root = get_settings().s3_prefix
    result: dict[str, list[str]] = {"copied": [], "unchanged": [], "skipped": []}
    for record in event.get("Records", []):
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        target = raw_key(key, root)
        if target is None:
            result["skipped"].append(key)
            continue
        dst, superseded = target
        source = _head(s3, bucket, key)
        if source is None:
            raise FileNotFoundError(f"s3://{bucket}/{key} named in the event does not exist")
        source_etag = source["ETag"].strip('"')
        current = _head(s3, bucket, dst)
        # a multipart copy gets a new ETag: remember the landing ETag in the raw object's metadata
        if current is not None and current.get("Metadata", {}).get(SOURCE_ETAG) == source_etag:
            result["unchanged"].append(dst)
            continue
        if current is not None:
            s3.copy({"Bucket": bucket, "Key": dst}, bucket, f"{superseded}.{current['ETag'].strip(chr(34))}")
        s3.copy({"Bucket": bucket, "Key": key}, bucket, dst,
                ExtraArgs={"Metadata": {SOURCE_ETAG: source_etag}, "MetadataDirective": "REPLACE"})
        result["copied"].append(dst)
    return result
