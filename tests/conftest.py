"""Shared fixtures: Stripe events as Stripe sends them (rendered by events.stripe.objects), and API
Gateway requests that carry them."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from events import lambda_events
from events.stripe import objects as samples

# One id factory for the session: every event a factory below makes has an id of its own.
_ids = samples.IdFactory("tests")
_CUSTOMER = "cus_QXg1o8vcGmoR32"
_PRICE = samples.PriceSpec("price_1", "prod_1")
_CREATED = 1_767_225_600  # 2026-01-01
# Personal data that must never reach a log: the invoice's and the guest's address.
_ADDRESS = {
    "city": "San Francisco",
    "country": "US",
    "line1": "510 Townsend St",
    "line2": None,
    "postal_code": "94103",
    "state": "CA",
}
_PERIOD = {"created": _CREATED, "period_start": _CREATED, "period_end": _CREATED + 30 * 86_400}


def _sample_object(kind: str) -> dict[str, Any]:
    """The sample objects the ingress tests group and log, rendered by events.stripe.objects."""
    item = samples.ItemSpec(_PRICE)
    if kind in ("subscription", "account_subscription"):
        connected = kind == "account_subscription"
        return samples.subscription(
            _ids,
            id="sub_1PgafuB7WZ01zgkX" if connected else "sub_1PgafuB7WZ01zgkW",
            customer=None if connected else _CUSTOMER,
            customer_account="acct_1Nv0FGQ9RKHgCVdK" if connected else None,
            items=[item],
            status="trialing" if connected else "active",
            **_PERIOD,
        )
    if kind in ("invoice", "upcoming_invoice"):
        upcoming = kind == "upcoming_invoice"
        return samples.invoice(
            _ids,
            id="in_1PgafuB7WZ01zgkW",
            customer=_CUSTOMER,
            subscription="sub_1PgafuB7WZ01zgkW",
            items=[item],
            status="draft" if upcoming else "paid",
            billing_reason="upcoming" if upcoming else "subscription_cycle",
            upcoming=upcoming,
            customer_address=_ADDRESS,
            **_PERIOD,
        )
    if kind == "dispute":
        return samples.dispute(
            _ids,
            id="dp_1PgafuB7WZ01zgkW",
            charge="ch_1PgafuB7WZ01zgkW",
            payment_intent="pi_1PgafuB7WZ01zgkW",
            amount=2000,
            status="needs_response",
            created=_CREATED,
        )
    if kind == "guest_checkout_session":
        return samples.checkout_session(
            _ids,
            id="cs_test_a1b2c3",
            mode="payment",
            status="complete",
            payment_status="paid",
            customer=None,
            buyer_address=_ADDRESS,
            amount_total=2000,
            created=_CREATED,
        )
    raise KeyError(kind)


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
    """A fresh sample object: subscription, invoice, upcoming_invoice, dispute,
    guest_checkout_session, account_subscription."""
    return _sample_object


@pytest.fixture(scope="session")
def stripe_event_factory(
    stripe_sample_objects: Callable[[str], dict[str, Any]],
) -> Callable[..., dict[str, Any]]:
    """A snapshot event (`object: "event"`) with a unique id; keyword arguments override fields."""

    def event(
        event_type: str = "customer.subscription.updated", data_object: Any = None, **fields: Any
    ) -> dict[str, Any]:
        obj = data_object if data_object is not None else stripe_sample_objects("subscription")
        document = samples.event(
            _ids,
            event_type,
            obj,
            created=int(time.time()) - 5,
            livemode=False,
            api_version="2025-09-30.clover",
        )
        document.update(fields)
        return document

    return event


@pytest.fixture(scope="session")
def stripe_thin_event_factory() -> Callable[..., dict[str, Any]]:
    """A thin event (`object: "v2.core.event"`) as event destinations send it: no data."""

    def event(**fields: Any) -> dict[str, Any]:
        document = samples.thin_event(
            _ids,
            "v1.billing.meter.error_report_triggered",
            created=1_795_455_982,  # 2026-11-23T17:46:22Z
            related_object=("billing.meter", "mtr_test_61Rb1Y"),
        )
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
