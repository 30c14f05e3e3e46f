"""AWS-mode fixtures: one moto server (real HTTP, ``ThreadedMotoServer``) per session, a fresh bucket per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import free_port

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on a free port of 127.0.0.1; fake credentials for the whole session."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_REGION", REGION)
        yield f"http://127.0.0.1:{port}"
    server.stop()


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
        "ECOMMERCE_GLUE_DATABASE": "ecommerce",
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
    from ecommerce_assets.resources.aws import build_s3_lake
    from ecommerce_assets.settings import get_settings

    return build_s3_lake(get_settings())


@pytest.fixture
def s3_client(moto_endpoint: str):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
