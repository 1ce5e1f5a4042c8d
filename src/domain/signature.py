"""Stripe webhook signatures: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`.

Each `v1` is the hex HMAC-SHA256 of `"{t}.{raw body}"` keyed with an endpoint secret (the whole
`whsec_…` string). While a secret is being rolled Stripe signs with the old and the new one, so a
header may carry several `v1` values and several secrets may be configured. Pure: the caller passes
the clock (`now`), the tolerance and the secrets.

Anything accepted here is also accepted by `stripe.WebhookSignature.verify_header` (tests check it);
this side is stricter: `t` must be plain digits, and a timestamp too far in the future is refused too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from domain.credentials import WebhookSecret

DEFAULT_TOLERANCE_SECONDS = 300
SIGNATURE_SCHEME = "v1"
_HEX_SIGNATURE_LENGTH = 64
# Twelve digits reach the year 33658; longer values are not timestamps, and int() of a huge string is slow.
_MAX_TIMESTAMP_DIGITS = 12


class SignatureError(ValueError):
    """The body is not signed by a configured secret; the message is a short reason safe to return."""


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: Sequence[WebhookSecret],
    *,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> tuple[WebhookSecret, ...]:
    """The configured secrets that signed `payload`; raises SignatureError when none did.

    All of them are returned, not the first, because whether the event's mode suits a secret is
    decided after parsing: the event is accepted if any signer accepts its mode.
    """
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp, signatures = parse_signature_header(header)
    # Stripe signs the timestamp as a formatted integer, so `t=0123` means "123." (as its SDK does).
    signed_payload = b"%d." % timestamp + payload
    signers = tuple(secret for secret in secrets if _signed_with(secret.value, signed_payload, signatures))
    if not signers:
        raise SignatureError("no signature matches")
    # Checked after the match, as Stripe does: only an authentic request learns that it is late.
    if abs(now - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance")
    return signers


def parse_signature_header(header: str) -> tuple[int, tuple[bytes, ...]]:
    """`t=…,v1=…,v1=…,v0=…` -> (timestamp, v1 signatures); other schemes are ignored."""
    timestamp: int | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise SignatureError("malformed Stripe-Signature header")
        if key == "t":
            if timestamp is None:  # the first one counts, as in Stripe's SDK
                if not (value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS):
                    raise SignatureError("malformed Stripe-Signature timestamp")
                timestamp = int(value)
        elif key == SIGNATURE_SCHEME and len(value) == _HEX_SIGNATURE_LENGTH and value.isascii():
            # Anything else cannot equal a hex digest; its length is public, so skipping it leaks nothing.
            signatures.append(value.encode())
    if timestamp is None:
        raise SignatureError("malformed Stripe-Signature header")
    if not signatures:
        raise SignatureError("no v1 signature in Stripe-Signature header")
    return timestamp, tuple(signatures)


def signature_tolerance(setting: str | None) -> int:
    """SIGNATURE_TOLERANCE_SECONDS -> seconds (default 300); ValueError unless a positive whole number."""
    if setting is None or not setting.strip():
        return DEFAULT_TOLERANCE_SECONDS
    text = setting.strip()
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError("SIGNATURE_TOLERANCE_SECONDS must be a whole number of seconds, at least 1")
    return int(text)


def _signed_with(key: bytes, signed_payload: bytes, signatures: tuple[bytes, ...]) -> bool:
    expected = hmac.digest(key, signed_payload, hashlib.sha256).hex().encode()
    # Compare with every candidate (no early exit), each in constant time.
    return sum(hmac.compare_digest(expected, candidate) for candidate in signatures) > 0
