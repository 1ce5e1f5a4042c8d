"""Queues what the reconciler (or an operator) read from Stripe into the event queue, as the webhook
would: fetched objects as synthetic `sync.fetched` events, and events Stripe could not deliver as they
are (the messages are built by domain.reconcile.repairs: fetched_message, event_message). Group and deduplication ids follow the webhook's rules (domain.ingress); messages go out in
SendMessageBatch calls of up to 10.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from adapters.event_queue import QueueUnavailable
from domain.ingress import SQS_MESSAGE_LIMIT, QueueMessage
from domain.reconcile.repairs import ObjectTooLarge, event_message, fetched_message

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_ENTRIES",
    "FetchedQueue",
    "ObjectTooLarge",
    "event_message",
    "fetched_message",
]

MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = SQS_MESSAGE_LIMIT  # SQS limits a whole batch to the size of one message
SEND_ATTEMPTS = 3  # per entry SQS reports as failed; the client retries throttling on top


@functools.cache
def sqs_client() -> SQSClient:
    """The process's boto3 SQS client, for SendMessageBatch (the reconciler and the ops CLI; the
    webhook's SendMessage goes through adapters.event_queue without boto3)."""
    import boto3  # noqa: PLC0415

    return boto3.client("sqs", config=Config(retries={"mode": "standard", "total_max_attempts": 3}))


class FetchedQueue:
    """The event queue (QUEUE_URL), for batches of messages."""

    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self._queue_url = queue_url
        self._client = client

    def send(self, messages: Sequence[QueueMessage]) -> None:
        """Send every message, or raise QueueUnavailable (then some may have been sent: they are
        deduplicated by id for five minutes, and applying one twice changes nothing)."""
        for batch in _batches(messages):
            self._send_batch(batch)

    def _send_batch(self, batch: list[QueueMessage]) -> None:
        pending = {str(index): message for index, message in enumerate(batch)}
        failure = ""
        for _attempt in range(SEND_ATTEMPTS):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {
                    "Id": entry_id,
                    "MessageBody": message.body,
                    "MessageGroupId": message.group_id,
                    "MessageDeduplicationId": message.deduplication_id,
                }
                for entry_id, message in pending.items()
            ]
            try:
                response = (self._client or sqs_client()).send_message_batch(
                    QueueUrl=self._queue_url, Entries=entries
                )
            except (BotoCoreError, ClientError) as error:
                raise QueueUnavailable(f"{type(error).__name__}: {error}") from error
            failed = response.get("Failed", [])
            if not failed:
                return
            pending = {f["Id"]: pending[f["Id"]] for f in failed}
            failure = "; ".join(f"{f.get('Code')}: {f.get('Message', '')}" for f in failed)
            if any(f.get("SenderFault") for f in failed):
                break  # SQS refuses these messages as they are: retrying cannot help
        raise QueueUnavailable(f"{len(pending)} message(s) not queued: {failure}")


def _batches(messages: Sequence[QueueMessage]) -> list[list[QueueMessage]]:
    batches: list[list[QueueMessage]] = []
    current: list[QueueMessage] = []
    size = 0
    for message in messages:
        length = len(message.body.encode("utf-8"))
        if current and (len(current) == MAX_BATCH_ENTRIES or size + length > MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(message)
        size += length
    if current:
        batches.append(current)
    return batches
