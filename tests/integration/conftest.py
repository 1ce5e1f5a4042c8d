"""moto fixtures for the webhook: an isolated AWS environment and the FIFO event queue."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from adapters import aws_json, stripe_credentials
from adapters.event_queue import queue_client
from tests.support.faults import moto_transport
from tests.support.webhook_queue import WebhookFifoQueue


@pytest.fixture
def webhook_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A clean environment under moto (no real AWS reachable, no Stripe settings): tests add what they need."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "QUEUE_URL", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    for name in (
        "STRIPE_SECRET_ID",
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_API_KEY",
        "SIGNATURE_TOLERANCE_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # The handler's clients (adapters.aws_json, no botocore: moto's in-process handler answers them
    # through their transport) and the cached secrets are per process: start each test afresh.
    monkeypatch.setattr(aws_json, "open_transport", moto_transport)
    queue_client.cache_clear()
    stripe_credentials.clear_cache()
    with mock_aws():
        yield
    queue_client.cache_clear()
    stripe_credentials.clear_cache()


@pytest.fixture
def webhook_fifo_queue(webhook_environment: None, monkeypatch: pytest.MonkeyPatch) -> WebhookFifoQueue:
    """EventQueue as the template declares it: FIFO, high throughput, no content-based deduplication."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(
        QueueName="stripe-sync-events.fifo",
        Attributes={
            "FifoQueue": "true",
            "ContentBasedDeduplication": "false",
            "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId",
        },
    )["QueueUrl"]
    monkeypatch.setenv("QUEUE_URL", url)
    return WebhookFifoQueue(sqs, url)
