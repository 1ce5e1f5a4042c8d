"""moto fixtures for the webhook: an isolated AWS environment and the FIFO event queue."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from adapters import aws_json
from tests.support.faults import moto_transport
from tests.support.moto_account import forget_aws_clients, isolate_aws
from tests.support.webhook_queue import WebhookFifoQueue, create_event_queue


@pytest.fixture
def webhook_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A clean environment under moto (no real AWS reachable, no Stripe settings): tests add what they need."""
    isolate_aws(
        monkeypatch,
        "QUEUE_URL",
        "LOG_LEVEL",
        "STRIPE_SECRET_ID",
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_API_KEY",
        "SIGNATURE_TOLERANCE_SECONDS",
    )
    # The handler's clients (adapters.aws_json, no botocore: moto's in-process handler answers them
    # through their transport) and the cached secrets are per process: start each test afresh.
    monkeypatch.setattr(aws_json, "open_transport", moto_transport)
    forget_aws_clients()
    with mock_aws():
        yield
    forget_aws_clients()


@pytest.fixture
def webhook_fifo_queue(webhook_environment: None, monkeypatch: pytest.MonkeyPatch) -> WebhookFifoQueue:
    """EventQueue as the template declares it: FIFO, high throughput, no content-based deduplication."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = create_event_queue(sqs, "stripe-sync-events.fifo")
    monkeypatch.setenv("QUEUE_URL", url)
    return WebhookFifoQueue(sqs, url)
