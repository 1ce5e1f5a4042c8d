"""A test AWS account under moto: fake credentials in us-east-1 and no endpoint override, so no
request the code under test makes can leave the process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from moto import mock_aws

from adapters import event_bus, failed_events, fetched_queue, stripe_credentials
from adapters.event_queue import queue_client

FAKE_CREDENTIALS = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def isolate_aws(monkeypatch: pytest.MonkeyPatch, *unset: str) -> None:
    """Fake credentials, and none of the operator's profile, session or endpoint: whatever the shell
    running the tests holds, a client reaches moto or nothing. `unset` names further variables the
    test must not inherit (the functions' own settings)."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", *unset):
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def forget_aws_clients() -> None:
    """The functions' AWS clients and the Stripe secrets they read are cached per process (per
    container in Lambda): a test that starts moto needs clients made inside it."""
    for clear in (
        queue_client.cache_clear,
        fetched_queue.sqs_client.cache_clear,
        failed_events.sqs_client.cache_clear,
        event_bus.events_client.cache_clear,
        event_bus.sqs_client.cache_clear,
        stripe_credentials.clear_cache,
    ):
        clear()


@contextmanager
def moto_account() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        isolate_aws(patch)
        with mock_aws():
            yield
