"""The FIFO queue the webhook sends to, as the integration fixtures create it under moto."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from local_runtime.template import read_template


def create_event_queue(sqs: Any, name: str) -> str:
    """EventQueue under `name` with the attributes template.yaml gives it (FIFO, deduplication and
    throughput per message group, no content-based deduplication), without its dead-letter queue."""
    return str(
        sqs.create_queue(QueueName=name, Attributes=read_template().event_queue.attributes)["QueueUrl"]
    )


@dataclass
class WebhookFifoQueue:
    """The queue the webhook sends to, and what it holds."""

    sqs: Any
    url: str

    def drain(self) -> list[dict[str, Any]]:
        """Every message now in the queue (deleted once read), with its system attributes."""
        messages: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages"):
            for message in batch:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
            messages += batch
        return messages
