"""Ingress rules: request -> verified event -> SQS FIFO message (ids, size, by reference)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from domain.credentials import WebhookSecret, parse_webhook_secrets
from domain.ingress import (
    LAMBDA_PAYLOAD_LIMIT,
    SQS_MESSAGE_LIMIT,
    RejectedRequest,
    StripeEvent,
    WebhookRequest,
    parse_event,
    queue_message,
    sqs_id,
    verified_event,
    webhook_request,
)
from events.stripe import objects as samples

SECRET = "whsec_unit_0123456789"
TEST_SECRET = "whsec_test_endpoint_0123"
LIVE_SECRET = "whsec_live_endpoint_0123"

EventFactory = Callable[..., dict[str, Any]]
RequestFactory = Callable[..., dict[str, Any]]
Objects = Callable[[str], dict[str, Any]]


def rejection(call: Callable[[], object]) -> RejectedRequest:
    with pytest.raises(RejectedRequest) as caught:
        call()
    return caught.value


def verify(request: dict[str, Any], configured: str = SECRET) -> StripeEvent:
    secrets: tuple[WebhookSecret, ...] = parse_webhook_secrets(configured)
    return verified_event(webhook_request(request), secrets, now=time.time(), tolerance=300)


def event_text(document: dict[str, Any]) -> StripeEvent:
    return parse_event(json.dumps(document))


# --- the request ---------------------------------------------------------------------------------


def test_the_body_is_read_as_sent_and_the_header_found(webhook_http_event_factory: RequestFactory) -> None:
    body = b'{\n  "id": "evt_1",  "object":"event" }'

    request = webhook_request(webhook_http_event_factory(body, signature="t=1,v1=x"))

    assert request == WebhookRequest(body, "t=1,v1=x")


def test_a_base64_body_is_decoded_to_the_exact_bytes(webhook_http_event_factory: RequestFactory) -> None:
    body = '{"name": "Zoë — 東京"}'.encode() + b"\xff"

    assert webhook_request(webhook_http_event_factory(body, base64_body=True)).body == body


@pytest.mark.parametrize("encoded", ["not base64!", "QUJD=", "QUJDRA", "QUJD\nRA==", "ÀÁ=="])
def test_invalid_base64_is_refused(webhook_http_event_factory: RequestFactory, encoded: str) -> None:
    request = webhook_http_event_factory(b"", base64_body=True) | {"body": encoded}

    error = rejection(lambda: webhook_request(request))

    assert (error.status, error.reason) == (400, "body is not valid base64")


@pytest.mark.parametrize(
    "name", ["stripe-signature", "Stripe-Signature", "STRIPE-SIGNATURE", "sTrIpE-sIgNaTuRe"]
)
def test_the_signature_header_is_found_in_any_letter_case(
    webhook_http_event_factory: RequestFactory, name: str
) -> None:
    request = webhook_http_event_factory(b"{}", signature="t=1,v1=ab", header_name=name)

    assert webhook_request(request).signature == "t=1,v1=ab"


def test_no_headers_at_all_means_no_signature(webhook_http_event_factory: RequestFactory) -> None:
    request = webhook_http_event_factory(b"{}") | {"headers": None}

    assert webhook_request(request).signature is None


def test_a_missing_body_is_empty(webhook_http_event_factory: RequestFactory) -> None:
    request = webhook_http_event_factory() | {"body": None}

    assert webhook_request(request).body == b""


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "OPTIONS"])
def test_other_methods_get_405(webhook_http_event_factory: RequestFactory, method: str) -> None:
    assert rejection(lambda: webhook_request(webhook_http_event_factory(method=method))).status == 405


@pytest.mark.parametrize("path", ["/", "/health", "/webhooks", "/webhooks/stripe/extra", "/webhooks/Stripe"])
def test_other_paths_get_404(webhook_http_event_factory: RequestFactory, path: str) -> None:
    assert rejection(lambda: webhook_request(webhook_http_event_factory(path=path))).status == 404


def test_a_named_stage_prefix_is_not_part_of_the_route(webhook_http_event_factory: RequestFactory) -> None:
    request = webhook_http_event_factory(b"{}", path="/prod/webhooks/stripe")
    request["requestContext"]["stage"] = "prod"

    assert webhook_request(request).body == b"{}"


@pytest.mark.parametrize("event", [None, [], "POST", {"body": "{}"}, {"requestContext": {"http": {}}}])
def test_something_else_than_an_http_api_request_is_refused(event: object) -> None:
    error = rejection(lambda: webhook_request(event))

    assert (error.status, error.reason) == (400, "not an API Gateway HTTP API (payload 2.0) request")


def test_a_body_of_exactly_6_mb_is_accepted(webhook_http_event_factory: RequestFactory) -> None:
    body = b"x" * LAMBDA_PAYLOAD_LIMIT

    assert len(webhook_request(webhook_http_event_factory(body)).body) == LAMBDA_PAYLOAD_LIMIT


@pytest.mark.parametrize("base64_body", [False, True])
def test_a_body_over_6_mb_gets_413(webhook_http_event_factory: RequestFactory, base64_body: bool) -> None:
    request = webhook_http_event_factory(b"x" * (LAMBDA_PAYLOAD_LIMIT + 1), base64_body=base64_body)

    assert rejection(lambda: webhook_request(request)).status == 413


def test_the_decoded_size_counts_utf8_bytes_not_characters(
    webhook_http_event_factory: RequestFactory,
) -> None:
    request = webhook_http_event_factory("é" * (LAMBDA_PAYLOAD_LIMIT // 2 + 1))

    assert len(request["body"]) <= LAMBDA_PAYLOAD_LIMIT
    assert rejection(lambda: webhook_request(request)).status == 413


def test_the_raw_event_is_refused_before_decoding_when_already_too_large(
    webhook_http_event_factory: RequestFactory,
) -> None:
    request = webhook_http_event_factory(b"", base64_body=True) | {"body": "!" * (LAMBDA_PAYLOAD_LIMIT + 1)}

    assert rejection(lambda: webhook_request(request)).status == 413


# --- the verified event --------------------------------------------------------------------------


def test_a_signed_event_is_verified_and_parsed(
    webhook_http_event_factory: RequestFactory, stripe_event_factory: EventFactory
) -> None:
    document = stripe_event_factory("invoice.paid", account="acct_1Connect")

    event = verify(webhook_http_event_factory(document, secret=SECRET))

    assert (event.id, event.type, event.livemode, event.account, event.thin) == (
        document["id"],
        "invoice.paid",
        False,
        "acct_1Connect",
        False,
    )
    assert event.document == document


def test_an_unsigned_request_is_refused(
    webhook_http_event_factory: RequestFactory, stripe_event_factory: EventFactory
) -> None:
    error = rejection(lambda: verify(webhook_http_event_factory(stripe_event_factory())))

    assert (error.status, error.reason) == (400, "missing Stripe-Signature header")
    assert not error.unverified, "an anonymous request is no sign of a wrong signing secret"


def test_a_request_signed_with_another_secret_counts_as_unverified(
    webhook_http_event_factory: RequestFactory, stripe_event_factory: EventFactory
) -> None:
    error = rejection(
        lambda: verify(webhook_http_event_factory(stripe_event_factory(), secret="whsec_other"))
    )

    assert error.status == 400
    assert error.unverified


def test_a_stale_signature_is_refused(
    webhook_http_event_factory: RequestFactory, stripe_event_factory: EventFactory
) -> None:
    request = webhook_http_event_factory(
        stripe_event_factory(), secret=SECRET, timestamp=int(time.time()) - 301
    )

    assert rejection(lambda: verify(request)).reason == "timestamp outside the tolerance"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"id": "evt_1", \xff}', "body is not UTF-8"),
        (b"\xef\xbb\xbf{}", "body is not JSON"),
        (b"", "body is not JSON"),
        (b"{'id': 'evt_1'}", "body is not JSON"),
        (b'{"id": "evt_1"', "body is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body is not JSON"),
        (b"1" * 5000, "body is not JSON"),
        (b'[{"id": "evt_1", "object": "event"}]', "body is not a Stripe event"),
        (b'"event"', "body is not a Stripe event"),
        (b"null", "body is not a Stripe event"),
        (
            b'{"id": "cus_1", "object": "customer", "type": "x", "created": 1, "livemode": false}',
            "not a Stripe event",
        ),
        (b'{"object": "event", "type": "invoice.paid", "created": 1, "livemode": false}', "event has no id"),
        (
            b'{"id": "", "object": "event", "type": "invoice.paid", "created": 1, "livemode": false}',
            "event has no id",
        ),
        (
            b'{"id": 42, "object": "event", "type": "invoice.paid", "created": 1, "livemode": false}',
            "event has no id",
        ),
        (b'{"id": "evt_1", "object": "event", "created": 1, "livemode": false}', "event has no type"),
        (b'{"id": "evt_1", "object": "event", "type": "x", "livemode": false}', "no valid created"),
        (
            b'{"id": "evt_1", "object": "event", "type": "x", "created": "1", "livemode": false}',
            "no valid created",
        ),
        (
            b'{"id": "evt_1", "object": "event", "type": "x", "created": true, "livemode": false}',
            "no valid created",
        ),
        (
            b'{"id": "evt_1", "object": "event", "type": "x", "created": 1.5, "livemode": false}',
            "no valid created",
        ),
        (b'{"id": "evt_1", "object": "event", "type": "x", "created": 1}', "event has no livemode"),
        (
            b'{"id": "evt_1", "object": "event", "type": "x", "created": 1, "livemode": "false"}',
            "no livemode",
        ),
        (
            b'{"id": "evt_1", "object": "v2.core.event", "type": "x", "created": 1, "livemode": false}',
            "no valid created",
        ),
        (
            b'{"id": "evt_1", "object": "v2.core.event", "type": "x", "created": "soon", "livemode": false}',
            "created",
        ),
    ],
)
def test_a_signed_body_that_is_not_an_event_is_refused(
    webhook_http_event_factory: RequestFactory, body: bytes, reason: str
) -> None:
    error = rejection(lambda: verify(webhook_http_event_factory(body, secret=SECRET, base64_body=True)))

    assert error.status == 400
    assert reason in error.reason


def test_a_thin_event_is_accepted(
    webhook_http_event_factory: RequestFactory, stripe_thin_event_factory: EventFactory
) -> None:
    document = stripe_thin_event_factory(context="acct_1Connect")

    event = verify(webhook_http_event_factory(document, secret=SECRET))

    assert (event.id, event.thin, event.livemode) == (document["id"], True, False)


@pytest.mark.parametrize(
    ("configured", "signed_by", "livemode", "accepted"),
    [
        (f"test:{TEST_SECRET}", (TEST_SECRET,), False, True),
        (f"test:{TEST_SECRET}", (TEST_SECRET,), True, False),
        (f"live:{LIVE_SECRET}", (LIVE_SECRET,), True, True),
        (f"live:{LIVE_SECRET}", (LIVE_SECRET,), False, False),
        (SECRET, (SECRET,), True, True),
        (SECRET, (SECRET,), False, True),
        # A live event signed only by the test endpoint's secret: the live secret did not sign it.
        (f"test:{TEST_SECRET},live:{LIVE_SECRET}", (TEST_SECRET,), True, False),
        # Both signed (one header, two v1): the live one accepts a live event.
        (f"test:{TEST_SECRET},live:{LIVE_SECRET}", (TEST_SECRET, LIVE_SECRET), True, True),
        (f"test:{TEST_SECRET},live:{LIVE_SECRET}", (TEST_SECRET, LIVE_SECRET), False, True),
    ],
)
def test_the_event_mode_must_suit_a_secret_that_signed_it(
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    *,
    configured: str,
    signed_by: tuple[str, ...],
    livemode: bool,
    accepted: bool,
) -> None:
    document = stripe_event_factory(livemode=livemode)
    request = webhook_http_event_factory(document, secret=signed_by)

    if accepted:
        assert verify(request, configured).livemode is livemode
    else:
        error = rejection(lambda: verify(request, configured))
        assert (error.status, error.event_id) == (400, document["id"])
        assert "signed by a secret for the other mode" in error.reason


# --- the queue message ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "group"),
    [
        ("subscription", "cus_QXg1o8vcGmoR32"),
        ("invoice", "cus_QXg1o8vcGmoR32"),
        ("upcoming_invoice", "cus_QXg1o8vcGmoR32"),
        ("dispute", "dp_1PgafuB7WZ01zgkW"),
        ("guest_checkout_session", "cs_test_a1b2c3"),
        ("account_subscription", "acct_1Nv0FGQ9RKHgCVdK"),
    ],
)
def test_the_group_is_the_customer_else_customer_account_else_the_object(
    stripe_event_factory: EventFactory, stripe_sample_objects: Objects, kind: str, group: str
) -> None:
    message = queue_message(event_text(stripe_event_factory(data_object=stripe_sample_objects(kind))))

    assert message.group_id == group


def test_an_expanded_customer_groups_by_its_id(stripe_event_factory: EventFactory) -> None:
    grant = {
        "id": "credgr_1",
        "object": "billing.credit_grant",
        "customer": samples.customer(samples.IdFactory("expanded"), id="cus_Expanded", created=1),
    }

    assert queue_message(event_text(stripe_event_factory(data_object=grant))).group_id == "cus_Expanded"


def test_an_object_naming_nothing_groups_by_the_event(
    stripe_event_factory: EventFactory, stripe_sample_objects: Objects
) -> None:
    preview = stripe_sample_objects("upcoming_invoice") | {"customer": None}
    for document in (
        stripe_event_factory("invoice.upcoming", data_object=preview),
        stripe_event_factory() | {"data": {}},
        {key: value for key, value in stripe_event_factory().items() if key != "data"},
    ):
        assert queue_message(event_text(document)).group_id == document["id"]


def test_a_thin_event_groups_by_its_related_object(stripe_thin_event_factory: EventFactory) -> None:
    assert queue_message(event_text(stripe_thin_event_factory())).group_id == "mtr_test_61Rb1Y"
    orphan = stripe_thin_event_factory(related_object=None)
    assert queue_message(event_text(orphan)).group_id == orphan["id"]


def test_deduplication_is_the_event_id_with_the_connect_account(stripe_event_factory: EventFactory) -> None:
    plain = stripe_event_factory()
    connect = stripe_event_factory(account="acct_1Connect")

    assert queue_message(event_text(plain)).deduplication_id == plain["id"]
    assert queue_message(event_text(connect)).deduplication_id == f"{connect['id']}:acct_1Connect"
    assert queue_message(event_text(plain | {"account": None})).deduplication_id == plain["id"]


@pytest.mark.parametrize("value", ["cus_1", "a" * 128, "evt_1:acct_1", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"])
def test_valid_sqs_ids_are_kept(value: str) -> None:
    assert sqs_id(value) == value


@pytest.mark.parametrize("value", ["", "a" * 129, "cus 1", "cus_é", "cus_\t1", "cus_\ud800", "東京"])
def test_other_ids_are_hashed_deterministically_into_valid_ones(value: str) -> None:
    hashed = sqs_id(value)

    assert hashed == sqs_id(value) != value
    assert hashed.startswith("sha256:")
    assert sqs_id(hashed) == hashed
    assert sqs_id(value + "x") != hashed


def test_a_customer_id_sqs_cannot_take_is_hashed(
    stripe_event_factory: EventFactory, stripe_sample_objects: Objects
) -> None:
    document = stripe_event_factory(
        data_object=stripe_sample_objects("subscription") | {"customer": "c" * 200}
    )

    assert queue_message(event_text(document)).group_id == sqs_id("c" * 200)


def test_the_body_is_the_event_text_exactly(stripe_event_factory: EventFactory) -> None:
    text = json.dumps(stripe_event_factory(), indent=3, ensure_ascii=False) + "\n"

    message = queue_message(parse_event(text))

    assert (message.body, message.by_reference) == (text, False)


def padded_event(document: dict[str, Any], size: int) -> str:
    """`document` as text of exactly `size` UTF-8 bytes (padding in a metadata value)."""
    document["data"]["object"]["metadata"] = {"note": ""}
    base = len(json.dumps(document).encode())
    document["data"]["object"]["metadata"]["note"] = "x" * (size - base)
    text = json.dumps(document)
    assert len(text.encode()) == size
    return text


def test_an_event_of_exactly_256_kib_is_queued_inline(stripe_event_factory: EventFactory) -> None:
    text = padded_event(stripe_event_factory(), SQS_MESSAGE_LIMIT)

    assert queue_message(parse_event(text)).by_reference is False


def test_an_event_over_256_kib_is_queued_by_reference(stripe_event_factory: EventFactory) -> None:
    document = stripe_event_factory(account="acct_1Connect", livemode=True)
    event = parse_event(padded_event(document, SQS_MESSAGE_LIMIT + 1))

    message = queue_message(event)

    assert message.by_reference is True
    assert json.loads(message.body) == {
        "object": "event",
        "id": document["id"],
        "type": "customer.subscription.updated",
        "created": document["created"],
        "livemode": True,
        "account": "acct_1Connect",
        "api_version": "2025-09-30.clover",
        "by_reference": True,
    }
    assert (message.group_id, message.deduplication_id) == (
        "cus_QXg1o8vcGmoR32",
        f"{document['id']}:acct_1Connect",
    )


def test_multibyte_text_is_measured_in_utf8_bytes(stripe_event_factory: EventFactory) -> None:
    document = stripe_event_factory()
    document["data"]["object"]["metadata"] = {"note": "é" * (SQS_MESSAGE_LIMIT // 2)}
    text = json.dumps(document, ensure_ascii=False)
    assert len(text) < SQS_MESSAGE_LIMIT < len(text.encode())

    assert queue_message(parse_event(text)).by_reference is True


@pytest.mark.parametrize("character", ["\ufffe", "\uffff"])
def test_characters_sqs_refuses_send_the_event_by_reference(
    stripe_event_factory: EventFactory, character: str
) -> None:
    document = stripe_event_factory()
    document["data"]["object"]["description"] = f"plan {character}"

    message = queue_message(parse_event(json.dumps(document, ensure_ascii=False)))

    assert message.by_reference is True
    assert message.body.isascii()


def test_a_large_thin_event_keeps_what_points_at_its_object(stripe_thin_event_factory: EventFactory) -> None:
    document = stripe_thin_event_factory(context="acct_1Connect", reason={"padding": "x" * SQS_MESSAGE_LIMIT})

    reference = json.loads(queue_message(parse_event(json.dumps(document))).body)

    assert reference == {key: document[key] for key in document if key != "reason"} | {"by_reference": True}


def test_the_reference_body_is_compact(stripe_event_factory: EventFactory) -> None:
    event = parse_event(padded_event(stripe_event_factory(), SQS_MESSAGE_LIMIT + 1))

    assert ", " not in queue_message(event).body
