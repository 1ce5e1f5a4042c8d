"""Signature verification against Stripe's reference implementation (the stripe SDK)."""

from __future__ import annotations

import json
import string
import time
from collections.abc import Callable

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.credentials import WebhookSecret, parse_webhook_secrets
from domain.signature import (
    DEFAULT_TOLERANCE_SECONDS,
    SignatureError,
    parse_signature_header,
    signature_tolerance,
    verify_signature,
)

NOW = 1_795_454_662
OLD_SECRET = "whsec_old_0123456789abcdef"
NEW_SECRET = "whsec_new_fedcba9876543210"
BODY = json.dumps({"id": "evt_1", "object": "event", "type": "invoice.paid"}, indent=2).encode()

SignatureFactory = Callable[..., str]


def secrets(*values: str) -> tuple[WebhookSecret, ...]:
    return parse_webhook_secrets(",".join(values))


def verify(
    header: str | None,
    configured: tuple[WebhookSecret, ...],
    body: bytes = BODY,
    now: float = NOW,
    tolerance: int = 300,
) -> tuple[WebhookSecret, ...]:
    return verify_signature(body, header, configured, now=now, tolerance=tolerance)


def test_a_header_signed_by_the_sdk_is_accepted(stripe_signature_factory: SignatureFactory) -> None:
    header = stripe_signature_factory(BODY, NEW_SECRET, NOW)

    assert verify(header, secrets(NEW_SECRET)) == secrets(NEW_SECRET)


def test_any_of_several_configured_secrets_may_have_signed(
    stripe_signature_factory: SignatureFactory,
) -> None:
    configured = secrets("test:whsec_test_endpoint", "live:whsec_live_endpoint", NEW_SECRET)

    signers = verify(stripe_signature_factory(BODY, "whsec_live_endpoint", NOW), configured)

    assert [s.mode for s in signers] == ["live"]


@pytest.mark.parametrize("configured", [(OLD_SECRET,), (NEW_SECRET,), (OLD_SECRET, NEW_SECRET)])
def test_rotation_header_with_two_v1_values_matches_the_old_or_the_new_secret(
    stripe_signature_factory: SignatureFactory, configured: tuple[str, ...]
) -> None:
    header = stripe_signature_factory(BODY, (OLD_SECRET, NEW_SECRET), NOW)
    assert header.count("v1=") == 2

    assert verify(header, secrets(*configured)) == secrets(*configured)


def test_every_matching_secret_is_returned_so_mode_can_be_decided_later(
    stripe_signature_factory: SignatureFactory,
) -> None:
    header = stripe_signature_factory(BODY, (OLD_SECRET, NEW_SECRET), NOW)

    signers = verify(header, secrets(f"test:{OLD_SECRET}", f"live:{NEW_SECRET}"))

    assert [s.mode for s in signers] == ["test", "live"]


def test_a_header_signed_with_a_secret_not_configured_is_refused(
    stripe_signature_factory: SignatureFactory,
) -> None:
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(stripe_signature_factory(BODY, OLD_SECRET, NOW), secrets(NEW_SECRET))


def test_a_changed_byte_or_a_reserialised_body_no_longer_matches(
    stripe_signature_factory: SignatureFactory,
) -> None:
    header = stripe_signature_factory(BODY, NEW_SECRET, NOW)
    reserialised = json.dumps(json.loads(BODY)).encode()

    for body in (BODY.replace(b"paid", b"void"), reserialised, BODY + b"\n"):
        with pytest.raises(SignatureError, match="no signature matches"):
            verify(header, secrets(NEW_SECRET), body=body)


def test_the_signature_covers_the_exact_bytes_even_when_not_utf8(
    stripe_signature_factory: SignatureFactory,
) -> None:
    body = b'{"id": "\xff\xfe"}'

    assert verify(stripe_signature_factory(body, NEW_SECRET, NOW), secrets(NEW_SECRET), body=body)


@pytest.mark.parametrize(
    ("age", "accepted"),
    [(0, True), (300, True), (301, False), (86_400, False), (-300, True), (-301, False), (-86_400, False)],
)
def test_timestamp_must_be_within_the_tolerance_either_way(
    stripe_signature_factory: SignatureFactory, age: int, accepted: bool
) -> None:
    header = stripe_signature_factory(BODY, NEW_SECRET, NOW - age)

    if accepted:
        assert verify(header, secrets(NEW_SECRET))
    else:
        with pytest.raises(SignatureError, match="timestamp outside the tolerance"):
            verify(header, secrets(NEW_SECRET))


def test_the_tolerance_is_a_parameter(stripe_signature_factory: SignatureFactory) -> None:
    header = stripe_signature_factory(BODY, NEW_SECRET, NOW - 60)

    assert verify(header, secrets(NEW_SECRET), tolerance=60)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(header, secrets(NEW_SECRET), tolerance=59)


def test_a_forged_signature_is_refused_as_unsigned_even_when_stale(
    stripe_signature_factory: SignatureFactory,
) -> None:
    header = stripe_signature_factory(BODY, OLD_SECRET, NOW - 10_000)

    with pytest.raises(SignatureError, match="no signature matches"):
        verify(header, secrets(NEW_SECRET))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing Stripe-Signature header"),
        ("", "missing Stripe-Signature header"),
        ("v1=" + "a" * 64, "malformed Stripe-Signature header"),
        (f"t={NOW}", "no v1 signature"),
        (f"t={NOW},v0=" + "a" * 64, "no v1 signature"),
        (f"t={NOW},v1=abc", "no v1 signature"),
        (f"t={NOW},v1=" + "é" * 64, "no v1 signature"),
        (f"t={NOW},garbage,v1=" + "a" * 64, "malformed Stripe-Signature header"),
        ("t=,v1=" + "a" * 64, "malformed Stripe-Signature timestamp"),
        ("t=+1795454662,v1=" + "a" * 64, "malformed Stripe-Signature timestamp"),
        ("t=1_795_454_662,v1=" + "a" * 64, "malformed Stripe-Signature timestamp"),
        ("t= 1795454662,v1=" + "a" * 64, "malformed Stripe-Signature timestamp"),
        ("t=١٧٩٥,v1=" + "a" * 64, "malformed Stripe-Signature timestamp"),
        ("t=" + "9" * 5000 + ",v1=" + "a" * 64, "malformed Stripe-Signature timestamp"),
        (f"t={NOW},v1=" + "a" * 64, "no signature matches"),
    ],
)
def test_malformed_or_wrong_headers_are_refused_with_a_reason(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify(header, secrets(NEW_SECRET))


def test_the_first_timestamp_counts_as_in_stripes_sdk(stripe_signature_factory: SignatureFactory) -> None:
    header = stripe_signature_factory(BODY, NEW_SECRET, NOW)

    assert verify(header + f",t={NOW + 5}", secrets(NEW_SECRET))
    with pytest.raises(SignatureError):
        verify(f"t={NOW + 5}," + header, secrets(NEW_SECRET))


def test_a_zero_padded_timestamp_is_signed_as_the_number(stripe_signature_factory: SignatureFactory) -> None:
    header = stripe_signature_factory(BODY, NEW_SECRET, NOW).replace(f"t={NOW}", f"t=0{NOW}")

    assert verify(header, secrets(NEW_SECRET))
    # The SDK reads its own clock: a tolerance reaching back to NOW.
    stripe.WebhookSignature.verify_header(BODY, header, NEW_SECRET, abs(int(time.time()) - NOW) + 300)


def test_parse_signature_header_keeps_only_v1_values() -> None:
    timestamp, signatures = parse_signature_header(f"t={NOW},v1={'a' * 64},v0={'b' * 64},v1={'c' * 64}")

    assert timestamp == NOW
    assert signatures == (b"a" * 64, b"c" * 64)


@pytest.mark.parametrize(("setting", "seconds"), [(None, 300), ("", 300), (" 600 ", 600), ("1", 1)])
def test_signature_tolerance_setting(setting: str | None, seconds: int) -> None:
    assert signature_tolerance(setting) == seconds


@pytest.mark.parametrize("setting", ["0", "-5", "5m", "1.5", "\uff13\uff10\uff10"])
def test_a_bad_signature_tolerance_setting_is_an_error(setting: str) -> None:
    with pytest.raises(ValueError, match="SIGNATURE_TOLERANCE_SECONDS"):
        signature_tolerance(setting)


# Cross-check with the reference: whatever this verifier accepts, Stripe's SDK accepts too.

_hex = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_header_item = st.one_of(
    st.builds(lambda t: f"t={t}", st.integers(NOW - 400, NOW + 400)),
    st.builds(lambda v: f"v1={v}", _hex),
    st.builds(lambda v: f"v0={v}", _hex),
    st.text(alphabet=string.printable.replace(",", ""), max_size=20),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.hex())),
    before=st.lists(_header_item, max_size=3),
    after=st.lists(_header_item, max_size=3),
    age=st.integers(-400, 400),
    signed=st.booleans(),
)
def test_whatever_this_verifier_accepts_stripes_sdk_accepts(
    stripe_signature_factory: SignatureFactory,
    *,
    body: str,
    before: list[str],
    after: list[str],
    age: int,
    signed: bool,
) -> None:
    raw, now = body.encode(), time.time()
    items = [*before, stripe_signature_factory(raw, NEW_SECRET, int(now) - age) if signed else "", *after]
    header = ",".join(item for item in items if item)
    try:
        verify(header, secrets(NEW_SECRET), body=raw, now=now, tolerance=DEFAULT_TOLERANCE_SECONDS)
    except SignatureError:
        return
    # Same secret and tolerance; one second more for the SDK, whose clock is read a little later.
    stripe.WebhookSignature.verify_header(raw, header, NEW_SECRET, DEFAULT_TOLERANCE_SECONDS + 1)
