"""The notifier: where alerts go (run failures, run summaries).

* ``LocalNotifier``: one JSON line per alert appended to ``<state_dir>/alerts.log`` and the same alert
  written to the ``ecommerce_assets.alerts`` logger (the console);
* ``AwsNotifier``: ``sns:Publish`` to a topic; a failure alert is also sent to an SQS dead-letter queue
  (the failed event, for replay or inspection). ``endpoint_url`` (``AWS_ENDPOINT_URL``) points it at a
  moto server in tests.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import dagster as dg

from ecommerce_assets.settings import Settings

Severity = Literal["info", "warning", "error"]
logger = logging.getLogger("ecommerce_assets.alerts")


@dataclass(frozen=True)
class Alert:
    subject: str
    message: str
    severity: Severity = "info"
    details: Mapping[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, sort_keys=True)


class Notifier(dg.ConfigurableResource):
    """Interface: ``notify(alert)``; ``failure(...)`` and ``summary(...)`` build the two alerts we send."""

    def notify(self, alert: Alert) -> None:
        raise NotImplementedError

    def failure(self, subject: str, message: str, details: Mapping[str, Any]) -> Alert:
        alert = Alert(subject=subject, message=message, severity="error", details=dict(details))
        self.notify(alert)
        return alert

    def summary(self, subject: str, message: str, details: Mapping[str, Any]) -> Alert:
        alert = Alert(subject=subject, message=message, severity="info", details=dict(details))
        self.notify(alert)
        return alert


class LocalNotifier(Notifier):
    """Alerts appended as JSON lines to ``alerts_path`` (default ``<state_dir>/alerts.log``) and logged."""

    alerts_path: str

    def notify(self, alert: Alert) -> None:
        path = Path(self.alerts_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # several processes (daemon, runs) append to one file
            fh.write(alert.to_json() + "\n")
            fcntl.flock(fh, fcntl.LOCK_UN)
        level = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}[alert.severity]
        logger.log(level, "[%s] %s: %s", alert.severity.upper(), alert.subject, alert.message)

    def read_alerts(self) -> list[dict[str, Any]]:
        path = Path(self.alerts_path)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class AwsNotifier(Notifier):
    """SNS for every alert; SQS dead-letter queue for failures."""

    topic_arn: str
    dlq_url: str | None = None
    region_name: str = "us-east-1"
    endpoint_url: str | None = None

    def _client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.region_name, endpoint_url=self.endpoint_url or None)

    def notify(self, alert: Alert) -> None:
        self._client("sns").publish(
            TopicArn=self.topic_arn,
            Subject=f"[{alert.severity}] {alert.subject}"[:100],  # SNS: at most 100 characters
            Message=alert.to_json(),
            MessageAttributes={"severity": {"DataType": "String", "StringValue": alert.severity}},
        )
        if alert.severity == "error" and self.dlq_url:
            self._client("sqs").send_message(
                QueueUrl=self.dlq_url,
                MessageBody=alert.to_json(),
                MessageAttributes={"subject": {"DataType": "String", "StringValue": alert.subject[:256]}},
            )
        logger.info("published %s alert %r to %s", alert.severity, alert.subject, self.topic_arn)


class LogNotifier(Notifier):
    """Alerts to the log only: aws mode with no SNS topic configured (alerts are optional)."""

    def notify(self, alert: Alert) -> None:
        level = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}[alert.severity]
        logger.log(level, "[%s] %s: %s", alert.severity.upper(), alert.subject, alert.message)


ALERTS_TO_LOG_WARNING = "alerts go to the log only: set ECOMMERCE_ALERTS_TOPIC_ARN to publish them to SNS"


def build_notifier(settings: Settings) -> Notifier:
    """``LocalNotifier`` locally; in aws mode ``AwsNotifier`` when ``ECOMMERCE_ALERTS_TOPIC_ARN`` is set,
    else ``LogNotifier`` (alerts are optional; ``startup_warnings`` says so once)."""
    if settings.env == "aws":
        if not settings.alerts_topic_arn:
            return LogNotifier()
        region = settings.alerts_topic_arn.split(":")[3] if settings.alerts_topic_arn.count(":") >= 5 else settings.aws_region
        return AwsNotifier(
            topic_arn=settings.alerts_topic_arn,
            dlq_url=settings.alerts_dlq_url,
            region_name=region,
            endpoint_url=settings.aws_endpoint_url,
        )
    return LocalNotifier(alerts_path=str(settings.state_dir / "alerts.log"))
