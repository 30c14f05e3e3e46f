"""AWS-mode fixtures: a fresh bucket per test on the session's moto server (``tests/conftest.py``)."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest

from tests.conftest import MOTO_REGION as REGION


@pytest.fixture
def aws_env(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``ECOMMERCE_ENV=aws`` against moto: a new bucket, lake prefix ``lake``, temp data and Dagster home."""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION).create_bucket(Bucket=bucket)
    topic = boto3.client("sns", endpoint_url=moto_endpoint, region_name=REGION).create_topic(Name=f"alerts-{bucket}")
    alerts_dlq = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION).create_queue(
        QueueName=f"alerts-dlq-{bucket}")
    (tmp_path / "dagster_home").mkdir()
    env = {
        "ECOMMERCE_ENV": "aws",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "ECOMMERCE_S3_BUCKET": bucket,
        "ECOMMERCE_S3_PREFIX": "lake",
        "ECOMMERCE_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        # a database of its own: moto's Glue is shared by every test, and the Iceberg tables keep their names
        "ECOMMERCE_GLUE_DATABASE": bucket.replace("-", "_"),
        "ECOMMERCE_ALERTS_TOPIC_ARN": topic["TopicArn"],
        "ECOMMERCE_ALERTS_DLQ_URL": alerts_dlq["QueueUrl"],
        "ECOMMERCE_KV_TABLE_PREFIX": f"t{uuid.uuid4().hex[:8]}-",
        "ECOMMERCE_STREAM_NAME": f"orders-{uuid.uuid4().hex[:8]}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_lake(aws_env: dict[str, str]):
    from ecommerce_assets.settings import get_settings
    from ecommerce_assets.storage.lakes import build_lake

    return build_lake(get_settings())


@pytest.fixture
def s3_client(moto_endpoint: str):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
