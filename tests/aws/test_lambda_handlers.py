"""The domain Lambda handlers in aws mode against moto's server: real-shaped events, and failures sent to the DLQ."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from lambdas import (
    catalog_page_to_csv,
    ingest_api,
    stream_to_archive,
    stream_to_kv,
    transaction_generator,
    transaction_json_to_parquet,
)
from tests.aws.test_lambdas import receive, s3_put_event


@pytest.fixture
def dlq(aws_env, monkeypatch):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"dlq-h-{aws_env['ECOMMERCE_S3_BUCKET']}")["QueueUrl"]
    monkeypatch.setenv("ECOMMERCE_DLQ_URL", url)
    return sqs, url


def test_generator_then_json_to_parquet_on_s3(aws_env, s3_lake, dlq):
    out = transaction_generator.handler({"count": 6, "format": "array", "per_file": 3, "seed": 11})
    assert out["files"] == 2 and out["records"] == 6
    assert all(s3_lake.exists(k) for k in out["keys"])
    event = s3_put_event(aws_env["ECOMMERCE_S3_BUCKET"], f"lake/{out['keys'][0]}")
    res = transaction_json_to_parquet.handler(event, None)
    [done] = res["processed"]
    assert done["records_out"] + done["records_quarantined"] == 3
    assert s3_lake.exists(done["output"]) and s3_lake.uri(done["output"]).startswith("s3://")
    con = s3_lake.engine()
    assert con.execute("SELECT count(*) FROM read_parquet(?)", [s3_lake.uri(done["output"])]).fetchone()[0] == \
        done["records_out"]
    assert receive(*dlq) == []


FAILING_EVENTS = {
    # a raw catalog page named in the event that is not in the bucket
    "catalog_page_to_csv": lambda b: s3_put_event(b, "lake/raw/catalog/seller=S1/date=2026-11-22/page=1.json"),
    # a landed transactions file that is not in the bucket
    "transaction_json_to_parquet": lambda b: s3_put_event(b, "lake/landing/transactions/date=2026-11-22/t.json"),
    # Kinesis records without their data
    "stream_to_archive": lambda b: {"Records": [{"eventSource": "aws:kinesis", "kinesis": {"partitionKey": "1"}}]},
    "stream_to_kv": lambda b: {"Records": [{"eventSource": "aws:kinesis", "kinesis": {"partitionKey": "1"}}]},
    # a count that is not a number
    "transaction_generator": lambda b: {"count": "many"},
    # POST /orders while the Kinesis stream does not exist (it is infrastructure, created by the deploy)
    "ingest_api": lambda b: {"httpMethod": "POST", "path": "/orders", "isBase64Encoded": False,
                             "headers": {"Content-Type": "application/json"},
                             "body": json.dumps({"InvoiceNo": "536365", "StockCode": "85123A", "Quantity": 6,
                                                 "InvoiceDate": "2010-12-01T08:26:00", "UnitPrice": "2.55",
                                                 "CustomerID": "17850", "Country": "United Kingdom"})},
}
# what each failing event raises, exactly (type and message), so a handler failing for another reason fails the test
EXPECTED_ERRORS: dict[str, tuple[type[BaseException], str]] = {
    "catalog_page_to_csv": (ClientError, r"GetObject operation: The specified key does not exist"),
    "transaction_json_to_parquet": (FileNotFoundError, r"/lake/landing/transactions/date=2026-11-22/t\.json$"),
    "stream_to_archive": (KeyError, r"eventID"),
    "stream_to_kv": (KeyError, r"eventID"),
    "transaction_generator": (ValueError, r"invalid literal for int\(\) with base 10: 'many'"),
    "ingest_api": (ClientError, r"PutRecords operation: Stream orders-\w+ under account \d+ not found"),
}
AWS_ERROR_CODES = {"catalog_page_to_csv": "NoSuchKey", "ingest_api": "ResourceNotFoundException"}
HANDLERS = {m.__name__.rsplit(".", 1)[1]: m for m in (catalog_page_to_csv, ingest_api, stream_to_archive, stream_to_kv,
                                                      transaction_generator, transaction_json_to_parquet)}


@pytest.mark.parametrize("name", sorted(FAILING_EVENTS))
def test_a_failing_event_goes_to_the_dead_letter_queue(name, aws_env, dlq):
    for cached in ("_s3", "_lake", "_resources"):  # per-container caches: rebuild them for this test's bucket
        fn = getattr(HANDLERS[name], cached, None)
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()
    event = FAILING_EVENTS[name](aws_env["ECOMMERCE_S3_BUCKET"])
    error_type, match = EXPECTED_ERRORS[name]
    with pytest.raises(error_type, match=match) as info:
        HANDLERS[name].handler(event, None)
    if isinstance(info.value, ClientError):  # the AWS error code, not just "some client error"
        assert info.value.response["Error"]["Code"] == AWS_ERROR_CODES[name]
    [message] = receive(*dlq)
    assert message["handler"] == f"lambdas.{name}.handler"
    assert message["event"] == event and message["traceback"]
    assert message["error_type"] == type(info.value).__name__
