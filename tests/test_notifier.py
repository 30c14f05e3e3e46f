"""The notifier: local alerts file + console, AWS SNS + SQS dead-letter queue on a moto server, and the
run-status sensors that use it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import boto3
import dagster as dg
import pytest

from ecommerce_assets.defs.alerts.sensors import alert_on_run_failure, run_summary, summarize_successful_run
from ecommerce_assets.resources.notifier import AwsNotifier, LocalNotifier, build_notifier
from ecommerce_assets.settings import get_settings


def test_local_notifier_appends_json_lines_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = LocalNotifier(alerts_path=str(tmp_path / "state" / "alerts.log"))
    with caplog.at_level(logging.INFO, logger="ecommerce_assets.alerts"):
        n.failure("run failed: x", "boom", {"run_id": "r1"})
        n.summary("run succeeded: y", "ok", {"run_id": "r2"})
    alerts = n.read_alerts()
    assert [(a["severity"], a["subject"], a["details"]["run_id"]) for a in alerts] == [
        ("error", "run failed: x", "r1"), ("info", "run succeeded: y", "r2")]
    assert any("run failed: x" in r.message and r.levelno == logging.ERROR for r in caplog.records)


def test_build_notifier_local_uses_state_dir(data_dir: Path) -> None:
    n = build_notifier(get_settings())
    assert isinstance(n, LocalNotifier) and Path(n.alerts_path) == data_dir / "state" / "alerts.log"


def test_aws_notifier_publishes_to_sns_and_failures_to_the_dlq(moto_endpoint: str) -> None:
    sns = boto3.client("sns", region_name="us-east-1", endpoint_url=moto_endpoint)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_endpoint)
    topic = sns.create_topic(Name="ecommerce-alerts")["TopicArn"]
    sub_q = sqs.create_queue(QueueName="alerts-subscriber")["QueueUrl"]
    sub_arn = sqs.get_queue_attributes(QueueUrl=sub_q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=sub_arn, Attributes={"RawMessageDelivery": "true"})
    dlq = sqs.create_queue(QueueName="ecommerce-dlq")["QueueUrl"]

    n = AwsNotifier(topic_arn=topic, dlq_url=dlq, endpoint_url=moto_endpoint)
    n.summary("run succeeded: a", "fine", {"run_id": "r0"})
    n.failure("run failed: b", "boom", {"run_id": "r1"})

    published = sqs.receive_message(QueueUrl=sub_q, MaxNumberOfMessages=10)["Messages"]
    assert sorted(json.loads(m["Body"])["subject"] for m in published) == ["run failed: b", "run succeeded: a"]
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    assert len(dead) == 1
    body = json.loads(dead[0]["Body"])
    assert body["severity"] == "error" and body["details"]["run_id"] == "r1"


@dg.asset
def fine_asset() -> int:
    return 1


@dg.asset
def broken_asset() -> int:
    raise ValueError("the source file is missing")


def _event(result: dg.ExecuteInProcessResult, event_type: dg.DagsterEventType) -> dg.DagsterEvent:
    return next(e for e in result.all_events if e.event_type == event_type)


def test_failure_sensor_and_success_summary_write_alerts(tmp_path: Path) -> None:
    n = LocalNotifier(alerts_path=str(tmp_path / "alerts.log"))
    instance = dg.DagsterInstance.ephemeral()
    ok = dg.materialize([fine_asset], instance=instance)
    bad = dg.materialize([broken_asset], instance=instance, raise_on_error=False)

    summary = run_summary(instance, ok.dagster_run)
    assert summary["assets_materialized"] == ["fine_asset"] and summary["failed_steps"] == []

    ctx = dg.build_run_status_sensor_context(
        sensor_name="summarize_successful_run", dagster_event=_event(ok, dg.DagsterEventType.RUN_SUCCESS),
        dagster_instance=instance, dagster_run=ok.dagster_run, resources={"notifier": n},
    )
    summarize_successful_run(ctx)
    fctx = dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure", dagster_event=_event(bad, dg.DagsterEventType.RUN_FAILURE),
        dagster_instance=instance, dagster_run=bad.dagster_run, resources={"notifier": n},
    ).for_run_failure()
    alert_on_run_failure(fctx)

    alerts = n.read_alerts()
    assert [a["severity"] for a in alerts] == ["info", "error"]
    assert alerts[0]["details"]["assets_materialized"] == ["fine_asset"]
    assert alerts[1]["details"]["run_id"] == bad.run_id
    assert alerts[1]["details"]["failed_steps"] == ["broken_asset"]
