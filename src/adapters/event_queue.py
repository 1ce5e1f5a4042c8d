"""The event queue (SQS FIFO, env QUEUE_URL): sends what domain.ingress decided.

One SQS client per process, created on first use and reused across invocations. boto3 is imported
only then: importing it costs ~160-220 ms on the dev machine (bench/webhook.py measures it beside
`handlers.webhook`), about ten times the rest of the webhook's imports, and a request refused with
a 4xx never needs it. Creating the client costs another ~90 ms, so it is created once.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from domain.ingress import QueueMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

# The webhook answers on Stripe's clock: fail fast and let Stripe retry rather than hang; three tries
# of 1 + 2 s stay under the function's 10 s timeout (template.yaml).
CONNECT_TIMEOUT_SECONDS = 1
READ_TIMEOUT_SECONDS = 2
MAX_ATTEMPTS = 3


class QueueUnavailable(RuntimeError):
    """SendMessage failed (or the client could not be created): nothing was queued."""


@functools.cache
def sqs_client() -> SQSClient:
    """The process's SQS client (region and endpoint from the environment, as boto3 reads them)."""
    import boto3  # noqa: PLC0415 - deferred on purpose, see the module docstring
    from botocore.config import Config  # noqa: PLC0415

    return boto3.client(
        "sqs",
        config=Config(
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        ),
    )


def enqueue(queue_url: str, message: QueueMessage) -> str:
    """Send `message`; returns the SQS message id once SQS has stored it, else raises QueueUnavailable."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        response = sqs_client().send_message(
            QueueUrl=queue_url,
            MessageBody=message.body,
            MessageGroupId=message.group_id,
            MessageDeduplicationId=message.deduplication_id,
        )
    except (BotoCoreError, ClientError) as error:
        raise QueueUnavailable(f"{type(error).__name__}: {error}") from error
    return response["MessageId"]
