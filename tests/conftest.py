"""Shared fixtures: Stripe events as Stripe sends them, and API Gateway requests that carry them."""

from __future__ import annotations

import copy
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from events import lambda_events

_event_numbers = itertools.count(1)

# Shapes after the fixtures of Stripe's OpenAPI spec, trimmed to what the
# ingress rules read plus personal data that must never reach a log.
_SAMPLE_OBJECTS: dict[str, dict[str, Any]] = {
    "subscription": {
        "id": "sub_1PgafuB7WZ01zgkW",
        "object": "subscription",
        "customer": "cus_QXg1o8vcGmoR32",
        "customer_account": None,
        "status": "active",
        "items": {
            "object": "list",
            "data": [
                {"id": "si_1", "object": "subscription_item", "price": {"id": "price_1", "product": "prod_1"}}
            ],
        },
    },
    "invoice": {
        "id": "in_1PgafuB7WZ01zgkW",
        "object": "invoice",
        "customer": "cus_QXg1o8vcGmoR32",
        "customer_account": None,
        "customer_email": "jenny.rosen@example.com",
        "customer_name": "Jenny Rosen",
        "customer_address": {"line1": "510 Townsend St", "city": "San Francisco", "postal_code": "94103"},
        "status": "paid",
    },
    "upcoming_invoice": {
        "object": "invoice",
        "customer": "cus_QXg1o8vcGmoR32",
        "customer_account": None,
        "status": "draft",
    },
    "dispute": {
        "id": "dp_1PgafuB7WZ01zgkW",
        "object": "dispute",
        "charge": "ch_1PgafuB7WZ01zgkW",
        "status": "needs_response",
        "evidence": {"customer_email_address": "jenny.rosen@example.com", "customer_name": "Jenny Rosen"},
    },
    "guest_checkout_session": {
        "id": "cs_test_a1b2c3",
        "object": "checkout.session",
        "customer": None,
        "customer_account": None,
        "customer_details": {
            "email": "jenny.rosen@example.com",
            "name": "Jenny Rosen",
            "address": {"line1": "510 Townsend St", "city": "San Francisco"},
        },
        "mode": "payment",
    },
    "account_subscription": {
        "id": "sub_1PgafuB7WZ01zgkX",
        "object": "subscription",
        "customer": None,
        "customer_account": "acct_1Nv0FGQ9RKHgCVdK",
        "status": "trialing",
    },
}


# Each function's settings, parsed once per container and cached (handlers.*.settings): a test is a
# new container, so that what it sets in the environment is what the handlers read.
SETTINGS_CACHES = {
    "handlers": ("log_settings",),
    "handlers.webhook": ("settings",),
    "handlers.eventbridge": ("settings",),
    "handlers.entitlements_changed": ("settings",),
    "handlers.worker": ("settings", "_applier"),
    "handlers.reconcile": ("settings",),
}


def clear_settings() -> None:
    """Forget every function's parsed settings (only of the handlers a test has imported)."""
    for module_name, names in SETTINGS_CACHES.items():
        module = sys.modules.get(module_name)
        for name in names if module is not None else ():
            getattr(module, name).cache_clear()


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    clear_settings()
    yield
    clear_settings()


@pytest.fixture
def new_container() -> Callable[[], None]:
    """Call it after changing the environment mid-test: the handlers then parse their settings again,
    as a new container would."""
    return clear_settings


@pytest.fixture(scope="session")
def stripe_sample_objects() -> Callable[[str], dict[str, Any]]:
    """A fresh copy of a sample object: subscription, invoice, upcoming_invoice, dispute,
    guest_checkout_session, account_subscription."""

    def sample(kind: str) -> dict[str, Any]:
        return copy.deepcopy(_SAMPLE_OBJECTS[kind])

    return sample


@pytest.fixture(scope="session")
def stripe_event_factory(
    stripe_sample_objects: Callable[[str], dict[str, Any]],
) -> Callable[..., dict[str, Any]]:
    """A snapshot event (`object: "event"`) with a unique id; keyword arguments override fields."""

    def event(
        event_type: str = "customer.subscription.updated", data_object: Any = None, **fields: Any
    ) -> dict[str, Any]:
        document: dict[str, Any] = {
            "id": f"evt_1Test{next(_event_numbers):08d}",
            "object": "event",
            "api_version": "2025-09-30.clover",
            "created": int(time.time()) - 5,
            "data": {
                "object": data_object if data_object is not None else stripe_sample_objects("subscription")
            },
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        document.update(fields)
        return document

    return event


@pytest.fixture(scope="session")
def stripe_thin_event_factory() -> Callable[..., dict[str, Any]]:
    """A thin event (`object: "v2.core.event"`) as event destinations send it: no data."""

    def event(**fields: Any) -> dict[str, Any]:
        document: dict[str, Any] = {
            "id": f"evt_test_65Rb{next(_event_numbers):08d}",
            "object": "v2.core.event",
            "type": "v1.billing.meter.error_report_triggered",
            "livemode": False,
            "created": "2026-11-23T17:46:22.134Z",
            "related_object": {
                "id": "mtr_test_61Rb1Y",
                "type": "billing.meter",
                "url": "/v1/billing/meters/mtr_test_61Rb1Y",
            },
        }
        document.update(fields)
        return document

    return event


@pytest.fixture(scope="session")
def stripe_signature_factory() -> Callable[..., str]:
    """Stripe-Signature for raw bytes (events/lambda_events.py, checked against the stripe SDK in
    tests/unit/test_stripe_samples.py); one v1 per secret given."""
    return lambda_events.signature_header


@pytest.fixture(scope="session")
def webhook_http_event_factory() -> Callable[..., dict[str, Any]]:
    """An API Gateway HTTP API payload 2.0 request to the webhook.

    `body` (bytes, str, or a dict sent as indented JSON) is sent as is; `secret` signs it (several
    secrets: one v1 each); `signature` sets the header verbatim instead; `header_name` picks its
    letter case; `base64_body` encodes the body as API Gateway does for binary media (a body that is
    not UTF-8 can only travel that way).
    """

    def request(
        body: bytes | str | dict[str, Any] = b"",
        *,
        secret: str | tuple[str, ...] | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
        header_name: str = "stripe-signature",
        base64_body: bool = False,
        method: str = "POST",
        path: str = "/webhooks/stripe",
    ) -> dict[str, Any]:
        if isinstance(body, dict):
            body = json.dumps(body, indent=2)
        raw = body.encode() if isinstance(body, str) else body
        headers = dict(lambda_events.STRIPE_HEADERS)
        if secret is not None:
            signature = lambda_events.signature_header(raw, secret, timestamp)
        if signature is not None:
            headers[header_name] = signature
        return lambda_events.http_api_event(
            raw, headers=headers, method=method, path=path, base64_body=base64_body
        )

    return request
