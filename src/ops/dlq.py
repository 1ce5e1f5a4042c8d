"""The dead-letter queue: look at what is parked there, and send it back to the event queue.

SQS has no "peek": reading a message hides it for a visibility timeout. Browsing therefore receives
with a short timeout (BROWSE_VISIBILITY_SECONDS), pages until nothing new comes, and makes what it
did not consume visible again at once. On a FIFO queue the later messages of a group stay hidden
while its earlier ones are being browsed; `depth` tells how many exist in all.

A message the worker parked (one retrying cannot fix) carries why in its message attributes
(adapters.failed_events: FailureReason, FailureType); one SQS moved after maxReceiveCount tries
carries none, and the worker's log has its failures.

Redrive sends the message back to the event queue with its group id and deduplication id, then
deletes it from the DLQ. SQS FIFO drops, silently, a message whose deduplication id it has seen in
the last five minutes; the DLQ copy would then be deleted and the event lost. Messages sent less
than DEDUPLICATION_WINDOW_SECONDS ago are therefore left in the DLQ unless forced (the local
runtime's moto forgets the ids of removed messages, so forcing is safe there). A forced redrive
deletes the DLQ copy first: moto drops a send whose deduplication id a message it still holds
carries, so a worker that parks the copy again before a later delete would have it dropped and the
event lost from both queues. Should the send then fail, the message is put back in the DLQ.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.failed_events import ERROR_ATTRIBUTE, REASON_ATTRIBUTE

BROWSE_VISIBILITY_SECONDS = 30
RECEIVE_BATCH = 10
DEDUPLICATION_WINDOW_SECONDS = 300


@dataclass(frozen=True, slots=True)
class MessageAttribute:
    """One SQS message attribute as it was sent: its DataType (String, Number, Binary, or one of
    those with a custom suffix such as `Number.int`) and its value, text for String and Number, bytes
    for Binary. Kept whole so that a message put back in the DLQ carries what it carried."""

    data_type: str
    value: str | bytes = field(repr=False)

    @classmethod
    def received(cls, value: Mapping[str, Any]) -> MessageAttribute:
        """From a ReceiveMessage answer's MessageAttributeValue."""
        data_type = str(value.get("DataType", "String"))
        if data_type.startswith("Binary"):
            return cls(data_type, bytes(value.get("BinaryValue", b"")))
        return cls(data_type, str(value.get("StringValue", "")))

    def to_send(self) -> dict[str, Any]:
        """As SendMessage's MessageAttributeValue."""
        if isinstance(self.value, bytes):
            return {"DataType": self.data_type, "BinaryValue": self.value}
        return {"DataType": self.data_type, "StringValue": self.value}


@dataclass(frozen=True, slots=True)
class ParkedMessage:
    message_id: str
    receipt_handle: str = field(repr=False)
    body: str = field(repr=False)
    attributes: dict[str, str]
    message_attributes: dict[str, MessageAttribute] = field(default_factory=dict)

    @property
    def reason(self) -> str | None:
        """Why the worker parked it; None for a message SQS moved after maxReceiveCount tries."""
        return self._text(REASON_ATTRIBUTE)

    @property
    def failure_type(self) -> str | None:
        return self._text(ERROR_ATTRIBUTE)

    def _text(self, name: str) -> str | None:
        attribute = self.message_attributes.get(name)
        return attribute.value if attribute is not None and isinstance(attribute.value, str) else None

    @property
    def group_id(self) -> str | None:
        return self.attributes.get("MessageGroupId")

    @property
    def deduplication_id(self) -> str | None:
        return self.attributes.get("MessageDeduplicationId")

    @property
    def receive_count(self) -> int:
        return _int(self.attributes.get("ApproximateReceiveCount"))

    @property
    def sent_at(self) -> float | None:
        sent = _int(self.attributes.get("SentTimestamp"))
        return sent / 1000 if sent else None

    @property
    def event(self) -> dict[str, Any]:
        """The Stripe event (or reference) the message carries; {} when the body is not JSON."""
        try:
            document = json.loads(self.body)
        except ValueError:
            return {}
        return document if isinstance(document, dict) else {}

    def summary(self) -> dict[str, Any]:
        event = self.event
        return {
            "message_id": self.message_id,
            "event_id": event.get("id"),
            "event_type": event.get("type"),
            "group_id": self.group_id,
            "deduplication_id": self.deduplication_id,
            "receive_count": self.receive_count,
            "sent_at": self.sent_at,
            "reason": self.reason,
            "failure_type": self.failure_type,
        }


class RedriveRefused(RuntimeError):
    """The message stays in the DLQ; the message says why and when it can go."""


class DeadLetterQueue:
    def __init__(self, sqs: Any, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self._sqs = sqs
        self.url = url
        self._clock = clock

    def depth(self) -> int:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return _int(attributes.get("ApproximateNumberOfMessages")) + _int(
            attributes.get("ApproximateNumberOfMessagesNotVisible")
        )

    def receive(self, limit: int = RECEIVE_BATCH) -> list[ParkedMessage]:
        response = self._sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(RECEIVE_BATCH, limit)),
            VisibilityTimeout=BROWSE_VISIBILITY_SECONDS,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        return [
            ParkedMessage(
                m["MessageId"],
                m["ReceiptHandle"],
                m["Body"],
                dict(m.get("Attributes") or {}),
                {
                    name: MessageAttribute.received(value)
                    for name, value in (m.get("MessageAttributes") or {}).items()
                },
            )
            for m in response.get("Messages") or []
        ]

    def browse(self, limit: int | None = None) -> list[ParkedMessage]:
        """Every message that can be seen now, once each, up to `limit`; hidden until release()."""
        seen: set[str] = set()
        kept: list[ParkedMessage] = []
        extra: list[ParkedMessage] = []
        while limit is None or len(kept) < limit:
            fresh = [m for m in self.receive() if m.message_id not in seen]
            if not fresh:
                break
            for message in fresh:
                seen.add(message.message_id)
                (kept if limit is None or len(kept) < limit else extra).append(message)
        self.release(extra)
        return kept

    def find(self, message_id: str) -> ParkedMessage | None:
        """Browse for one message: it stays hidden (for redrive), whatever else was read is released."""
        seen: set[str] = set()
        found: ParkedMessage | None = None
        others: list[ParkedMessage] = []
        try:
            while found is None:
                fresh = [m for m in self.receive() if m.message_id not in seen]
                if not fresh:
                    break
                for message in fresh:
                    seen.add(message.message_id)
                    if message.message_id == message_id:
                        found = message
                    else:
                        others.append(message)
        finally:
            self.release(others)
        return found

    def release(self, messages: list[ParkedMessage]) -> None:
        """Make browsed messages visible again at once."""
        for start in range(0, len(messages), RECEIVE_BATCH):
            chunk = messages[start : start + RECEIVE_BATCH]
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ],
            )

    def check_redrivable(self, message: ParkedMessage) -> None:
        sent = message.sent_at
        if sent is not None and self._clock() - sent < DEDUPLICATION_WINDOW_SECONDS:
            wait = int(DEDUPLICATION_WINDOW_SECONDS - (self._clock() - sent)) + 1
            raise RedriveRefused(
                f"{message.message_id} was sent {int(self._clock() - sent)} s ago: SQS FIFO would drop "
                f"it as a duplicate of itself within its 5-minute deduplication window. Retry in {wait} s, "
                "or pass --force where that window does not apply (the local runtime)"
            )

    def redrive(self, message: ParkedMessage, queue_url: str, *, forced: bool = False) -> str:
        """Back to the event queue with the same group and deduplication ids; then out of the DLQ
        (forced: out of the DLQ first, and back into it should the send fail; module docstring)."""
        extra: dict[str, str] = {}
        if message.group_id:
            extra["MessageGroupId"] = message.group_id
        if message.deduplication_id:
            extra["MessageDeduplicationId"] = message.deduplication_id
        if forced:
            self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt_handle)
            try:
                sent = self._sqs.send_message(QueueUrl=queue_url, MessageBody=message.body, **extra)
            except BaseException:
                attributes = {name: value.to_send() for name, value in message.message_attributes.items()}
                self._sqs.send_message(
                    QueueUrl=self.url, MessageBody=message.body, MessageAttributes=attributes, **extra
                )
                raise
            return str(sent["MessageId"])
        sent = self._sqs.send_message(QueueUrl=queue_url, MessageBody=message.body, **extra)
        # Only once the event queue holds it: a failure above leaves the message in the DLQ.
        self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt_handle)
        return str(sent["MessageId"])


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
