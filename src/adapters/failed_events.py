"""What the worker does with a message it could not apply: try it again soon, or park it.

* `retry_in`: ChangeMessageVisibility on the event queue, so that the message comes back after the
  delay `domain.retry_schedule` gives (the event source mapping leaves a failed message in the queue;
  without this it would wait for the queue's whole visibility timeout).
* `park`: SendMessage to the dead-letter queue with the message's own MessageGroupId and
  MessageDeduplicationId, the body untouched and the reason in message attributes. The worker then
  reports the message as done, so the event source mapping deletes it from the event queue: sent
  first, deleted second, so a failure in between leaves a copy in both (the event queue retries it,
  and the dead-letter queue drops the second send as a duplicate within SQS's five minutes), never in
  neither. `stripe-sync dlq` shows the reason; a redrive sends the body back as it came.

boto3 (which the Lambda runtime provides) is imported and its client created only on the first
failure: a healthy invocation pays nothing for this.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

# Message attributes of a parked message (`stripe-sync dlq show` prints them).
REASON_ATTRIBUTE = "FailureReason"
ERROR_ATTRIBUTE = "FailureType"
PARKED_AT_ATTRIBUTE = "ParkedAt"
RECEIVE_COUNT_ATTRIBUTE = "ReceiveCountWhenParked"
# SQS allows 256 KB for body and attributes together; a reason is a sentence, keep it one.
MAX_REASON_CHARS = 1000


@dataclass(frozen=True, slots=True)
class FailedMessage:
    """What the worker knows of the SQS message it could not apply."""

    message_id: str
    receipt_handle: str
    body: str
    attributes: Mapping[str, str]

    @property
    def receive_count(self) -> int:
        try:
            return int(self.attributes.get("ApproximateReceiveCount", "1"))
        except ValueError:
            return 1


class ParkingFailed(RuntimeError):
    """The dead-letter queue did not take the message: it stays in the event queue and is retried."""


@functools.cache
def sqs_client() -> SQSClient:
    import boto3  # noqa: PLC0415 - only on a failure (see the module docstring)
    from botocore.config import Config  # noqa: PLC0415

    return boto3.client("sqs", config=Config(retries={"mode": "standard", "total_max_attempts": 3}))


def retry_in(queue_url: str, message: FailedMessage, seconds: int) -> None:
    """Make the message visible again in `seconds` (raises botocore's errors: the caller logs them and
    the queue's visibility timeout applies instead)."""
    sqs_client().change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=seconds
    )


def park(dead_letter_queue_url: str, message: FailedMessage, reason: str, error_type: str) -> str:
    """Send the message to the dead-letter queue with why; returns its id there."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    attributes: dict[str, MessageAttributeValueTypeDef] = {
        REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason[:MAX_REASON_CHARS] or error_type},
        ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": error_type},
        PARKED_AT_ATTRIBUTE: {"DataType": "Number", "StringValue": str(int(time.time()))},
        RECEIVE_COUNT_ATTRIBUTE: {"DataType": "Number", "StringValue": str(message.receive_count)},
    }
    extra: dict[str, Any] = {
        "MessageGroupId": message.attributes.get("MessageGroupId") or message.message_id,
        # Never absent on a FIFO queue; the message id keeps a hand-sent one parkable all the same.
        "MessageDeduplicationId": message.attributes.get("MessageDeduplicationId") or message.message_id,
    }
    try:
        sent = sqs_client().send_message(
            QueueUrl=dead_letter_queue_url, MessageBody=message.body, MessageAttributes=attributes, **extra
        )
    except (BotoCoreError, ClientError) as failure:
        raise ParkingFailed(
            f"the dead-letter queue did not take message {message.message_id}: {failure}"
        ) from failure
    return str(sent["MessageId"])
