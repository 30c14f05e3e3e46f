"""Dead-letter queue for every Lambda handler: a failed event goes to SQS with its error, then re-raises.

    from lambdas.dlq import with_dead_letter_queue

    @with_dead_letter_queue
    def handler(event, context): ...

The queue is ``ECOMMERCE_DLQ_URL`` (a queue URL, or a queue name resolved with ``GetQueueUrl``). The
message body is JSON: ``{"handler", "error", "error_type", "traceback", "request_id", "event"}``; an
event too large for SQS (256 KiB) is cut and marked ``"event_truncated": true``. Re-raising keeps
Lambda's own retry and failure metrics; the message lets an operator replay the event. Without a
configured queue the error is only re-raised (and logged by Lambda).
"""

from __future__ import annotations

import functools
import json
import traceback
from collections.abc import Callable
from typing import Any

import boto3

from ecommerce_assets.settings import get_settings

MAX_BODY = 250_000  # SQS accepts 262,144 bytes per message; keep room for the envelope


def queue_url(sqs: Any, name_or_url: str) -> str:
    if name_or_url.startswith(("https://", "http://")):
        return name_or_url
    return sqs.get_queue_url(QueueName=name_or_url)["QueueUrl"]


def dead_letter_body(handler: str, event: Any, error: BaseException, request_id: str | None) -> str:
    """The JSON message for one failed event (pure; tested directly)."""
    body = {
        "handler": handler,
        "error": str(error),
        "error_type": type(error).__name__,
        "traceback": "".join(traceback.format_exception(error))[-20_000:],
        "request_id": request_id,
        "event": event,
    }
    text = json.dumps(body, default=str)
    if len(text.encode()) > MAX_BODY:
        body["event"] = json.dumps(event, default=str)[: MAX_BODY // 2]
        body["event_truncated"] = True
        text = json.dumps(body, default=str)
    return text


def send_to_dead_letter_queue(handler: str, event: Any, error: BaseException, context: Any = None) -> str | None:
    """Send the failed event to the configured queue; return the SQS message id (None without a queue)."""
    target = get_settings().dlq_url
    if not target:
        return None
    sqs = boto3.client("sqs")
    request_id = getattr(context, "aws_request_id", None)
    sent = sqs.send_message(QueueUrl=queue_url(sqs, target), MessageBody=dead_letter_body(handler, event, error, request_id),
                            MessageAttributes={"handler": {"DataType": "String", "StringValue": handler}})
    return sent["MessageId"]


def with_dead_letter_queue(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Lambda handler: on any exception, send the event to the DLQ and re-raise."""

    @functools.wraps(fn)
    def wrapper(event: Any, context: Any = None, **kwargs: Any) -> Any:
        try:  # keyword arguments (e.g. ``lake=`` in tests and benchmarks) pass through unchanged
            return fn(event, context, **kwargs)
        except Exception as error:
            try:
                send_to_dead_letter_queue(f"{fn.__module__}.{fn.__name__}", event, error, context)
            except Exception as dlq_error:  # the original error matters more; keep both visible
                error.add_note(f"sending the event to the dead-letter queue failed too: {dlq_error!r}")
            raise

    return wrapper
