"""The event queue (SQS FIFO, its URL from the caller's settings): sends what domain.ingress decided.

SendMessage goes through adapters.aws_json, not boto3: importing boto3/botocore and creating an SQS
client cost ~250 ms of CPU on the webhook's cold path (bench/cold_start.py), several times the rest
of it. One client per process, created on first use; its connection is reused across invocations.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from adapters.aws_json import MAX_ATTEMPTS, SQS, AwsCallFailed, AwsJsonClient
from domain.ingress import QueueMessage

__all__ = ["MAX_ATTEMPTS", "QueueUnavailable", "enqueue", "queue_client"]

# The webhook answers on Stripe's clock: fail fast and let Stripe retry rather than hang; three tries
# of 1 + 2 s (and aws_json's short backoff) stay under the function's 10 s timeout (template.yaml).
CONNECT_TIMEOUT_SECONDS = 1
READ_TIMEOUT_SECONDS = 2


class QueueUnavailable(RuntimeError):
    """SendMessage failed (or the client could not be created): nothing was queued."""


@functools.cache
def queue_client() -> AwsJsonClient:
    """The process's SQS client (region, endpoint and credentials from the environment)."""
    return SQS.client(connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS)


def enqueue(queue_url: str, message: QueueMessage) -> str:
    """Send `message`; returns the SQS message id once SQS has stored it, else raises QueueUnavailable."""
    request: dict[str, Any] = {
        "QueueUrl": queue_url,
        "MessageBody": message.body,
        "MessageGroupId": message.group_id,
        "MessageDeduplicationId": message.deduplication_id,
    }
    # With active tracing Lambda sets _X_AMZN_TRACE_ID; SQS hands AWSTraceHeader on to the worker's
    # invocation, so one trace follows the event through the queue (botocore would add it; we must).
    trace_header = os.environ.get("_X_AMZN_TRACE_ID")
    if trace_header:
        request["MessageSystemAttributes"] = {
            "AWSTraceHeader": {"DataType": "String", "StringValue": trace_header}
        }
    try:
        response = queue_client().call("SendMessage", request)
    except AwsCallFailed as error:
        raise QueueUnavailable(str(error)) from error
    message_id = response.get("MessageId")
    if not isinstance(message_id, str):
        raise QueueUnavailable("SendMessage answered without a MessageId")
    return message_id
