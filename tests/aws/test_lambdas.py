"""Lambda handlers invoked with real-shaped events against moto's server (and a real Dagster webserver)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests

from lambdas import copy_raw_object, s3_arrival_start_run
from lambdas.dlq import MAX_BODY, dead_letter_body
from tests.conftest import free_port


def s3_put_event(bucket: str, key: str, etag: str = "") -> dict:
    """The shape S3 sends to Lambda for ObjectCreated:Put (keys URL-encoded, spaces as '+')."""
    from urllib.parse import quote_plus

    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T03:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "landing",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key, safe="/="), "size": 10, "eTag": etag, "sequencer": "0A1B"}},
    }]}


@pytest.fixture
def dlq(aws_env, monkeypatch):
    sqs = boto3.client("sqs")
    name = f"dlq-{aws_env['ECOMMERCE_S3_BUCKET']}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    monkeypatch.setenv("ECOMMERCE_DLQ_URL", name)  # a name is resolved to its URL
    return sqs, url


def receive(sqs, url) -> list[dict]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_copy_raw_object_registers_once_and_supersedes(aws_env, s3_client, dlq):
    bucket = aws_env["ECOMMERCE_S3_BUCKET"]
    key = "lake/landing/online_retail/date=2026-11-22/retail 1.csv"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"InvoiceNo\n1\n")
    event = s3_put_event(bucket, key)

    out = copy_raw_object.handler(event, None)
    raw = "lake/raw/online_retail/date=2026-11-22/retail 1.csv"
    assert out == {"copied": [raw], "unchanged": [], "skipped": []}
    assert s3_client.get_object(Bucket=bucket, Key=raw)["Body"].read() == b"InvoiceNo\n1\n"
    assert copy_raw_object.handler(event, None)["unchanged"] == [raw]  # redelivered event: nothing changes

    old_etag = s3_client.head_object(Bucket=bucket, Key=raw)["ETag"].strip('"')
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"InvoiceNo\n2\n")
    assert copy_raw_object.handler(event, None)["copied"] == [raw]
    assert s3_client.get_object(Bucket=bucket, Key=raw)["Body"].read() == b"InvoiceNo\n2\n"
    kept = f"lake/raw/online_retail/_superseded/date=2026-11-22/retail 1.csv.{old_etag}"
    assert s3_client.get_object(Bucket=bucket, Key=kept)["Body"].read() == b"InvoiceNo\n1\n"

    assert copy_raw_object.handler(s3_put_event(bucket, "lake/raw/x/y.csv"), None)["skipped"] == ["lake/raw/x/y.csv"]
    assert receive(*dlq) == []


def test_copy_raw_object_error_goes_to_the_dead_letter_queue(aws_env, dlq):
    bucket = aws_env["ECOMMERCE_S3_BUCKET"]
    event = s3_put_event(bucket, "lake/landing/orders/gone.csv")
    with pytest.raises(FileNotFoundError, match="gone.csv"):
        copy_raw_object.handler(event, None)
    messages = receive(*dlq)
    assert len(messages) == 1
    assert messages[0]["handler"] == "lambdas.copy_raw_object.handler"
    assert messages[0]["error_type"] == "FileNotFoundError" and messages[0]["event"] == event


def test_dead_letter_body_truncates_large_events():
    body = json.loads(dead_letter_body("h", {"blob": "x" * (MAX_BODY * 2)}, ValueError("bad"), "req-1"))
    assert body["event_truncated"] is True and len(json.dumps(body)) <= MAX_BODY
    assert body["request_id"] == "req-1" and body["error"] == "bad"


@pytest.fixture
def dagster_webserver(tmp_path):
    """A real dagster-webserver serving ``arrival_defs.py`` on a free port; stopped with its process group."""
    port = free_port()
    home = tmp_path / "webserver_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver")), "-h", "127.0.0.1", "-p", str(port),
         "-f", str(Path(__file__).with_name("arrival_defs.py"))],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:  # wait for readiness (not a timing assertion)
            try:
                if requests.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, "dagster-webserver exited"
            assert time.monotonic() < deadline, "dagster-webserver did not start"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)


@pytest.mark.slow
def test_s3_arrival_launches_one_run_per_object(aws_env, dlq, dagster_webserver, monkeypatch):
    monkeypatch.setenv("ECOMMERCE_DAGSTER_URL", dagster_webserver)
    monkeypatch.setenv("ECOMMERCE_DAGSTER_JOB", "arrival_job")
    event = s3_put_event(aws_env["ECOMMERCE_S3_BUCKET"], "lake/landing/online_retail/a.csv", etag="e1")

    first = s3_arrival_start_run.handler(event, None)
    assert len(first["launched"]) == 1
    again = s3_arrival_start_run.handler(event, None)
    assert again["launched"] == [] and len(again["already_launched"]) == 1
    tag = f"{aws_env['ECOMMERCE_S3_BUCKET']}/lake/landing/online_retail/a.csv@e1"
    assert s3_arrival_start_run.existing_runs(dagster_webserver, tag) == first["launched"]

    # an unknown job: the error goes to the DLQ and is raised
    monkeypatch.setenv("ECOMMERCE_DAGSTER_JOB", "no_such_job")
    other = s3_put_event(aws_env["ECOMMERCE_S3_BUCKET"], "lake/landing/online_retail/b.csv", etag="e2")
    with pytest.raises(Exception, match="no_such_job"):
        s3_arrival_start_run.handler(other, None)
    assert [m["event"] for m in receive(*dlq)] == [other]


@pytest.mark.slow
def test_s3_arrival_with_a_code_location_launches_there(aws_env, dlq, dagster_webserver, monkeypatch):
    """ECOMMERCE_DAGSTER_LOCATION picks the code location; a location without the job is an error naming both."""
    selector = s3_arrival_start_run.job_selector(dagster_webserver, "arrival_job", None)
    assert selector["jobName"] == "arrival_job" and selector["repositoryName"] == "__repository__"
    monkeypatch.setenv("ECOMMERCE_DAGSTER_URL", dagster_webserver)
    monkeypatch.setenv("ECOMMERCE_DAGSTER_JOB", "arrival_job")
    monkeypatch.setenv("ECOMMERCE_DAGSTER_LOCATION", selector["repositoryLocationName"])
    event = s3_put_event(aws_env["ECOMMERCE_S3_BUCKET"], "lake/landing/online_retail/c.csv", etag="e3")
    launched = s3_arrival_start_run.handler(event, None)["launched"]
    tag = f"{aws_env['ECOMMERCE_S3_BUCKET']}/lake/landing/online_retail/c.csv@e3"
    assert len(launched) == 1 and s3_arrival_start_run.existing_runs(dagster_webserver, tag) == launched

    monkeypatch.setenv("ECOMMERCE_DAGSTER_LOCATION", "nowhere")
    other = s3_put_event(aws_env["ECOMMERCE_S3_BUCKET"], "lake/landing/online_retail/d.csv", etag="e4")
    with pytest.raises(RuntimeError, match="no job named arrival_job in code location nowhere"):
        s3_arrival_start_run.handler(other, None)
    assert [m["event"] for m in receive(*dlq)] == [other]


def test_s3_arrival_does_not_import_dagster():
    """The handler's imports, run for real: GraphQL through gql, no dagster or dagster-graphql in the process."""
    probe = ("import json, sys, lambdas.s3_arrival_start_run; "
             "print(json.dumps([m for m in sys.modules if m.split('.')[0] in ('dagster', 'dagster_graphql', 'gql')]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    loaded = {m.split(".")[0] for m in json.loads(out)}
    assert loaded == {"gql"}
