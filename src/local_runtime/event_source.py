"""An SQS event source mapping, emulated: what Lambda's poller does between the queue and the worker.

moto's own emulation ignores `batchItemFailures` (ARCHITECTURE.md, "Pitfalls"), so the local runtime polls:

* receive up to BatchSize messages with every system attribute (ApproximateReceiveCount,
  MessageGroupId, MessageDeduplicationId, ...), as the event source mapping does;
* hand them to the handler as the SQS event Lambda builds (`Records` with messageId, receiptHandle,
  body, attributes, messageAttributes, md5OfBody, eventSource, eventSourceARN, awsRegion);
* delete the messages the response does not list in `batchItemFailures` (ReportBatchItemFailures);
  a handler that raises, or answers something Lambda would refuse, fails the whole batch;
* run several of these pollers at once (the event source's MaximumConcurrency, at most
  runtime.MAX_LOCAL_POLLERS), as Lambda runs concurrent batches: SQS FIFO hands a message group to one
  receiver at a time (their ReceiveMessage calls take turns: moto's is not atomic across threads),
  so one customer's events are still applied one batch after another;
* leave failures in the queue: they come back after the visibility timeout, and SQS moves a
  message to the DLQ once it has been received maxReceiveCount times. moto 5 does that itself on
  receive; a message that arrives with a higher receive count (a moto that did not) is moved here.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from local_runtime.template import LOCAL_REGION

MAX_DELETE_BATCH = 10
IDLE_WAIT_SECONDS = 1  # long polling, short enough for a prompt shutdown
ERROR_BACKOFF_SECONDS = 1.0
DLQ_CHECK_EVERY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class QueueBinding:
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str
    batch_size: int
    max_receive_count: int
    visibility_timeout: int
    region: str = LOCAL_REGION


class EventSourceObserver(Protocol):
    """What the console shows of the poller's work."""

    def batch_failed(self, size: int, error: BaseException) -> None: ...

    def deletes_failed(self, count: int, reason: str) -> None: ...

    def moved_to_dead_letter_queue(self, message_id: str, receive_count: int) -> None: ...

    def dead_letter_queue_depth(self, depth: int) -> None: ...

    def poll_failed(self, error: BaseException) -> None: ...


type BatchHandler = Callable[[dict[str, Any], Any], Any]


class InvalidBatchResponse(ValueError):
    """The handler's answer is one Lambda treats as a failure of the whole batch."""


def sqs_event(messages: Iterable[Mapping[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    return {"Records": [sqs_record(message, queue_arn, region) for message in messages]}


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One ReceiveMessage result as Lambda puts it into the event (its field names and shapes)."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {
            name: _lambda_message_attribute(value)
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_message_ids(response: object, message_ids: Sequence[str]) -> set[str]:
    """The messages to keep, per Lambda's rules for ReportBatchItemFailures.

    Success: no response, an empty one, or an empty / null `batchItemFailures`. Whole-batch failure
    (InvalidBatchResponse): an identifier that is empty, null, or not a message of this batch.
    """
    if response is None:
        return set()
    if not isinstance(response, Mapping):
        raise InvalidBatchResponse("the handler's response is not a JSON object")
    failures = response.get("batchItemFailures")
    if not failures:
        return set()
    if not isinstance(failures, list):
        raise InvalidBatchResponse("batchItemFailures is not a list")
    known = set(message_ids)
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not isinstance(identifier, str) or identifier not in known:
            raise InvalidBatchResponse(f"batchItemFailures names no message of the batch: {identifier!r}")
        failed.add(identifier)
    return failed


class EventSourceMapping:
    def __init__(
        self,
        sqs: Any,
        binding: QueueBinding,
        handler: BatchHandler,
        context: Callable[[], Any],
        observer: EventSourceObserver,
        *,
        wait_seconds: int = IDLE_WAIT_SECONDS,
        watch_dead_letter_queue: bool = True,
        receiving: threading.Lock | None = None,
    ) -> None:
        self._sqs = sqs
        self._binding = binding
        self._handler = handler
        self._context = context
        self._observer = observer
        self._wait_seconds = wait_seconds
        self._dlq_depth = 0
        self._dlq_checked = 0.0
        self._watch_dlq = watch_dead_letter_queue
        # Shared by the pollers of one queue: moto's FIFO ReceiveMessage is not atomic across threads
        # (two at once can take one message group), where SQS's is.
        self._receiving = receiving or threading.Lock()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
                self._watch_dead_letter_queue()
            except Exception as error:  # the poller must outlive any one failure, as Lambda's does
                self._observer.poll_failed(error)
                stop.wait(ERROR_BACKOFF_SECONDS)

    def poll_once(self) -> int:
        """One ReceiveMessage and, when it returned messages, one invocation. Returns their number."""
        binding = self._binding
        with self._receiving:
            response = self._sqs.receive_message(
                QueueUrl=binding.queue_url,
                MaxNumberOfMessages=binding.batch_size,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=self._wait_seconds,
            )
        messages: list[dict[str, Any]] = response.get("Messages") or []
        if not messages:
            return 0
        batch = []
        for message in messages:
            count = _receive_count(message)
            if count > binding.max_receive_count:
                self._move_to_dead_letter_queue(message)
                self._observer.moved_to_dead_letter_queue(message["MessageId"], count)
            else:
                batch.append(message)
        if batch:
            self._invoke(batch)
        return len(messages)

    def _invoke(self, batch: list[dict[str, Any]]) -> None:
        event = sqs_event(batch, self._binding.queue_arn, self._binding.region)
        ids = [message["MessageId"] for message in batch]
        try:
            failed = failed_message_ids(self._handler(event, self._context()), ids)
        except Exception as error:
            self._observer.batch_failed(len(batch), error)
            return  # nothing deleted: every message comes back after the visibility timeout
        done = [message for message in batch if message["MessageId"] not in failed]
        self._delete(done)

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), MAX_DELETE_BATCH):
            chunk = messages[start : start + MAX_DELETE_BATCH]
            response = self._sqs.delete_message_batch(
                QueueUrl=self._binding.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(chunk)
                ],
            )
            failed = response.get("Failed") or []
            if failed:
                reasons = sorted({str(entry.get("Code") or entry.get("Message")) for entry in failed})
                self._observer.deletes_failed(len(failed), ", ".join(reasons))

    def _move_to_dead_letter_queue(self, message: Mapping[str, Any]) -> None:
        attributes = message.get("Attributes") or {}
        extra: dict[str, str] = {}
        if "MessageGroupId" in attributes:
            extra["MessageGroupId"] = attributes["MessageGroupId"]
        if "MessageDeduplicationId" in attributes:
            extra["MessageDeduplicationId"] = attributes["MessageDeduplicationId"]
        self._sqs.send_message(
            QueueUrl=self._binding.dead_letter_queue_url, MessageBody=message["Body"], **extra
        )
        self._sqs.delete_message(QueueUrl=self._binding.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _watch_dead_letter_queue(self) -> None:
        if not self._watch_dlq:
            return
        now = time.monotonic()
        if now - self._dlq_checked < DLQ_CHECK_EVERY_SECONDS:
            return
        self._dlq_checked = now
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self._binding.dead_letter_queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        depth = int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
        )
        if depth != self._dlq_depth:
            self._dlq_depth = depth
            self._observer.dead_letter_queue_depth(depth)


def _receive_count(message: Mapping[str, Any]) -> int:
    try:
        return int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 1))
    except ValueError:
        return 1


def _lambda_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """SQS API attribute (StringValue, BinaryValue bytes) -> Lambda event (stringValue, base64 text)."""
    converted: dict[str, Any] = {
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        raw = value["BinaryValue"]
        converted["binaryValue"] = base64.b64encode(raw if isinstance(raw, bytes) else bytes(raw)).decode()
    return converted
