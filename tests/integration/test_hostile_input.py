"""Hostile input to the webhook handler (moto SQS), and what the worker logs of personal data.

test_webhook_handler.py covers the ordinary refusals and a property over arbitrary bodies and headers;
this adds what an attacker or a broken client would try: replayed requests, a signature moved to
another body, mode confusion, parser bombs (deep nesting, huge numbers), sizes at the 6 MB limit,
encodings, malformed headers and Lambda events, and a fuzz run that mutates a validly signed request.
Throughout: never 2xx without a valid signature, never an exception or a 5xx for bad input, nothing
queued for it, and nothing secret or personal in any log line or answer (checked after every test).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import itertools
import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.ingress import LAMBDA_PAYLOAD_LIMIT
from events import lambda_events, scenarios
from events.stripe import objects as samples
from handlers import webhook as webhook_module
from handlers import worker
from harness.lambda_context import FakeLambdaContext
from harness.sync_table_fixture import create_sync_table
from local_runtime.event_source import sqs_event

SECRET = "whsec_hostile_0123456789abcdef0123456789"
TEST_SECRET = "whsec_hostile_test_mode_00112233445566"
LIVE_SECRET = "whsec_hostile_live_mode_99887766554433"
EMAIL = "jenny.rosen@example.com"
PHONE = "+1 415 555 0123"
CARD = "4242424242424242"
ADDRESS = {
    "city": "San Francisco",
    "country": "US",
    "line1": "510 Townsend St",
    "line2": "Apt 7",
    "postal_code": "94103",
    "state": "CA",
}
PERSONAL = (
    EMAIL,
    "jenny.rosen",
    "Jenny",
    "Rosen",
    PHONE,
    "555 0123",
    CARD,
    "510 Townsend",
    "San Francisco",
    "94103",
)
SECRETS = (SECRET, TEST_SECRET, LIVE_SECRET, "whsec_")
NOT_SIGNED = "no signature matches"
NOT_JSON = "body is not JSON"
NOT_UTF8 = "body is not UTF-8"
TOO_LARGE = "body larger than 6 MB"
OTHER_MODE = "a live-mode event signed by a secret for the other mode"

RequestFactory = Callable[..., dict[str, Any]]
WebhookFifoQueue = Any  # tests/integration/conftest.py: .sqs, .url, .drain()

_event_numbers = itertools.count(1)


class LambdaContext:
    aws_request_id = "1d3b0c2a-hostile-input"


def sign(raw: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    """Stripe-Signature over raw bytes (scheme v1), as Stripe computes it."""
    return lambda_events.signature_header(raw, secret, timestamp)


v1 = lambda_events.v1_signature


def personal_customer(**fields: Any) -> dict[str, Any]:
    """A customer as Stripe sends it, full of personal data that must never reach a log."""
    obj = samples.customer(samples.IdFactory("hostile"), id="cus_HostileInput01", created=1_767_225_600)
    obj.update(
        address=ADDRESS,
        phone=PHONE,
        description=f"card {CARD}",
        shipping={"address": ADDRESS, "name": "Jenny Rosen"},
    )
    obj.update(fields)
    return obj


def personal_event(
    event_type: str = "customer.updated", *, livemode: bool = False, **fields: Any
) -> dict[str, Any]:
    """A snapshot event about `personal_customer()`, with a fresh id (FIFO deduplication must not hide
    a message) and a current `created`."""
    document = samples.event(
        samples.IdFactory("hostile-events"),
        event_type,
        personal_customer(livemode=livemode),
        created=int(time.time()) - 5,
        livemode=livemode,
        id=f"evt_1Hostile{next(_event_numbers):010d}",
    )
    document.update(fields)
    return document


def render(document: dict[str, Any]) -> bytes:
    return scenarios.render(document)


@dataclass
class Webhook:
    """The handler with its queue; remembers every signature it sent, to look for them in the logs."""

    queue: WebhookFifoQueue
    factory: RequestFactory
    sensitive: set[str] = field(default_factory=lambda: {*SECRETS, *PERSONAL})

    def request(self, body: bytes | str = b"", **options: Any) -> dict[str, Any]:
        return self.factory(body, **options)

    def signed(
        self, raw: bytes, secret: str = SECRET, timestamp: int | None = None, **options: Any
    ) -> dict[str, Any]:
        return self.factory(raw, signature=sign(raw, secret, timestamp), **options)

    def post(self, request: Any) -> tuple[int, str | None]:
        """(status, the error reason or None); the answer must echo nothing sensitive."""
        headers = request.get("headers") if isinstance(request, dict) else None
        if isinstance(headers, dict):
            for value in headers.values():
                if isinstance(value, str) and "v1=" in value:
                    self.sensitive.add(value)
                    self.sensitive.update(re.findall(r"[0-9a-f]{64}", value))
        response = webhook_module.lambda_handler(request, LambdaContext())
        assert response["headers"]["content-type"] == "application/json"
        body = json.loads(response["body"])
        for secret in self.sensitive:
            assert secret not in response["body"]
        return response["statusCode"], body.get("error")

    def drain(self) -> list[dict[str, Any]]:
        return self.queue.drain()


@pytest.fixture
def webhook(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Webhook]:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")  # every line the handler can write
    handler = Webhook(webhook_fifo_queue, webhook_http_event_factory)
    yield handler
    output = capsys.readouterr()
    assert_nothing_sensitive(output.out + output.err, handler.sensitive)


def assert_nothing_sensitive(output: str, sensitive: Iterable[str]) -> None:
    leaked = sorted({value[:40] for value in sensitive if value and value in output})
    assert not leaked, f"found in the logs: {leaked}"
    assert "v1=" not in output


# --- replays ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("age", [301, 86_400, 30 * 86_400])
def test_a_request_replayed_after_the_tolerance_is_refused(
    webhook: Webhook, monkeypatch: pytest.MonkeyPatch, age: int
) -> None:
    request = webhook.signed(render(personal_event()))
    assert webhook.post(request) == (200, None)
    assert len(webhook.drain()) == 1

    later = time.time() + age
    monkeypatch.setattr(webhook_module, "time", SimpleNamespace(time=lambda: later))

    assert webhook.post(copy.deepcopy(request)) == (400, "timestamp outside the tolerance")
    assert webhook.drain() == []


def test_an_old_signature_does_not_come_back_with_a_fresh_timestamp(webhook: Webhook) -> None:
    raw = render(personal_event())
    old, now = int(time.time()) - 3600, int(time.time())
    signature = v1(raw, SECRET, old)
    forgeries = [
        f"t={now},v1={signature}",  # the timestamp replaced
        f"t={now},t={old},v1={signature}",  # a fresh one first: the first t counts
        f"t={old},v1={signature},t={now}",  # the old one first: stale
        f"t={now},v1={v1(raw, 'whsec_attacker', now)},t={old},v1={signature}",  # two headers joined
    ]
    for header in forgeries:
        status, reason = webhook.post(webhook.request(raw, signature=header))
        assert status == 400, header
        assert reason in (NOT_SIGNED, "timestamp outside the tolerance")
    assert webhook.drain() == []


# --- a signature moved to another body --------------------------------------------------------------


def _with(document: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


BODY_SWAPS: dict[str, Callable[[dict[str, Any], bytes], bytes]] = {
    "another event": lambda d, raw: render(personal_event()),
    "livemode flipped": lambda d, raw: render(_with(d, ("livemode",), True)),
    "customer swapped": lambda d, raw: render(_with(d, ("data", "object", "id"), "cus_Attacker00001")),
    "event type swapped": lambda d, raw: render(_with(d, ("type",), "customer.deleted")),
    "re-serialised compactly": lambda d, raw: json.dumps(d, separators=(",", ":")).encode(),
    "keys reordered": lambda d, raw: json.dumps(dict(reversed(d.items())), indent=2).encode(),
    "unicode escaped": lambda d, raw: json.dumps(d, indent=2, ensure_ascii=True).encode(),
    "trailing newline": lambda d, raw: raw + b"\n",
    "UTF-8 BOM": lambda d, raw: b"\xef\xbb\xbf" + raw,
    "duplicate key appended": lambda d, raw: raw.rstrip()[:-1] + b',\n  "livemode": true\n}',
    "truncated": lambda d, raw: raw[:-1],
}


@pytest.mark.parametrize("swap", BODY_SWAPS)
def test_a_signature_over_one_body_does_not_cover_another(webhook: Webhook, swap: str) -> None:
    document = personal_event(description="Zoë")
    raw = render(document)
    other = BODY_SWAPS[swap](document, raw)
    assert other != raw

    assert webhook.post(webhook.request(other, signature=sign(raw))) == (400, NOT_SIGNED)
    # The same swap in base64 (API Gateway's binary transport) changes nothing.
    assert webhook.post(webhook.request(other, signature=sign(raw), base64_body=True)) == (400, NOT_SIGNED)
    assert webhook.drain() == []


# --- mode confusion -----------------------------------------------------------------------------------


def _duplicate_livemode(raw: bytes, value: bytes) -> bytes:
    return raw.rstrip()[:-1] + b',\n  "livemode": ' + value + b"\n}"


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("live event signed by the test secret", 400, OTHER_MODE),
        ("live event signed by the test secret and a forged v1", 400, OTHER_MODE),
        ("live event signed by both secrets", 200, None),
        ("livemode as a string", 400, "event has no livemode"),
        ("livemode as a number", 400, "event has no livemode"),
        ("livemode null", 400, "event has no livemode"),
        ("livemode said twice, live last", 400, OTHER_MODE),
        ("test object in a live event", 400, OTHER_MODE),
    ],
)
def test_a_test_mode_secret_never_lets_a_live_event_in(
    webhook: Webhook, monkeypatch: pytest.MonkeyPatch, case: str, status: int, reason: str | None
) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"test:{TEST_SECRET},live:{LIVE_SECRET}")
    now = int(time.time())
    live = personal_event(livemode=True)
    test = personal_event()
    raw = {
        "livemode as a string": render(test | {"livemode": "true"}),
        "livemode as a number": render(test | {"livemode": 1}),
        "livemode null": render(test | {"livemode": None}),
        "livemode said twice, live last": _duplicate_livemode(render(test), b"true"),
        "test object in a live event": render(_with(test, ("livemode",), True)),
    }.get(case, render(live))
    header = f"t={now},v1={v1(raw, TEST_SECRET, now)}"
    if case == "live event signed by the test secret and a forged v1":
        header += f",v1={v1(raw, 'whsec_forged', now)}"
    elif case == "live event signed by both secrets":
        header += f",v1={v1(raw, LIVE_SECRET, now)}"

    assert webhook.post(webhook.request(raw, signature=header)) == (status, reason)
    assert len(webhook.drain()) == (1 if status == 200 else 0)


# --- parser bombs ---------------------------------------------------------------------------------------


def _envelope(inner: str) -> bytes:
    """A valid event whose data.object carries `inner` (JSON text) in its metadata."""
    document = personal_event()
    text = json.dumps(document)
    return text.replace('"metadata": {}', f'"metadata": {{"deep": {inner}}}', 1).encode()


NESTING_BOMBS: dict[str, Callable[[], bytes]] = {
    "100,000 nested arrays": lambda: b"[" * 100_000 + b"]" * 100_000,
    "100,000 nested objects": lambda: b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "50,000 nested arrays inside an event": lambda: _envelope("[" * 50_000 + "]" * 50_000),
    "6 MB of opening brackets": lambda: b"[" * LAMBDA_PAYLOAD_LIMIT,
    "a 5,000-digit number": lambda: _envelope("1" * 5000),
}


@pytest.mark.parametrize("bomb", NESTING_BOMBS)
def test_a_signed_parser_bomb_is_bad_json_not_a_crash(webhook: Webhook, bomb: str) -> None:
    raw = NESTING_BOMBS[bomb]()
    assert webhook.post(webhook.signed(raw)) == (400, NOT_JSON)
    assert webhook.drain() == []


def test_deep_but_parseable_json_in_a_signed_event_is_queued_as_sent(webhook: Webhook) -> None:
    raw = _envelope("[" * 5000 + "]" * 5000)
    assert webhook.post(webhook.signed(raw)) == (200, None)
    [message] = webhook.drain()
    assert message["Body"].encode() == raw


@pytest.mark.parametrize(
    ("created", "reason"),
    [("1e400", "event has no valid created time"), ("-1", "event has no valid created time")],
)
def test_numbers_that_are_not_times_are_refused(webhook: Webhook, created: str, reason: str) -> None:
    document = personal_event()
    raw = (
        json.dumps(document).replace(f'"created": {document["created"]}', f'"created": {created}', 1).encode()
    )
    assert webhook.post(webhook.signed(raw)) == (400, reason)
    assert webhook.drain() == []


# --- sizes at the 6 MB limit ----------------------------------------------------------------------------


def _padded(size: int, *, padding: str = " ") -> bytes:
    """A valid event of exactly `size` bytes (JSON whitespace, or `padding` in a string field)."""
    document = personal_event()
    raw = render(document)
    if padding == " ":
        return raw[:-1] + b" " * (size - len(raw)) + b"}"
    filler = (size - len(raw) - len(',\n  "note": ""')) // len(padding.encode())
    document["note"] = padding * filler
    return render(document)


def test_a_valid_event_of_exactly_6_mb_is_queued_by_reference(webhook: Webhook) -> None:
    raw = _padded(LAMBDA_PAYLOAD_LIMIT)
    assert len(raw) == LAMBDA_PAYLOAD_LIMIT

    assert webhook.post(webhook.signed(raw)) == (200, None)
    [message] = webhook.drain()
    assert json.loads(message["Body"])["by_reference"] is True


@pytest.mark.parametrize(
    "oversized",
    [
        "one byte over",
        "under 6 M characters, over 6 MB in UTF-8",
        "base64 over 6 MB, decoded under",
    ],
)
def test_a_body_over_6_mb_is_413_and_nothing_is_queued(webhook: Webhook, oversized: str) -> None:
    if oversized == "one byte over":
        raw = _padded(LAMBDA_PAYLOAD_LIMIT + 1)
        request = webhook.signed(raw)
    elif oversized == "base64 over 6 MB, decoded under":
        raw = _padded(LAMBDA_PAYLOAD_LIMIT * 3 // 4 + 3)  # encoded: just over the limit
        request = webhook.signed(raw, base64_body=True)
        assert len(raw) < LAMBDA_PAYLOAD_LIMIT < len(request["body"])
    else:
        raw = _padded(LAMBDA_PAYLOAD_LIMIT + 4096, padding="é")
        request = webhook.signed(raw)
        assert len(request["body"]) < LAMBDA_PAYLOAD_LIMIT < len(raw)

    assert webhook.post(request) == (413, TOO_LARGE)
    assert webhook.drain() == []


def test_a_base64_body_under_the_limit_is_accepted(webhook: Webhook) -> None:
    raw = _padded(LAMBDA_PAYLOAD_LIMIT * 3 // 4 - 3)
    request = webhook.signed(raw, base64_body=True)
    assert len(request["body"]) <= LAMBDA_PAYLOAD_LIMIT

    assert webhook.post(request) == (200, None)
    assert len(webhook.drain()) == 1


# --- encodings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoded", ["e30", "e30=\n", " e30=", "e3 0=", "-_-_", "e30=e30=", "é30=", "e30=" + "\x00"]
)
def test_invalid_base64_is_refused(webhook: Webhook, encoded: str) -> None:
    request = webhook.signed(b"{}", base64_body=True) | {"body": encoded}
    assert webhook.post(request) == (400, "body is not valid base64")
    assert webhook.drain() == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "caf\xe9"}',  # Latin-1
        '{"id": "evt_1"}'.encode("utf-16"),  # UTF-16 with its BOM
        b'{"id": "\xc0\xaf"}',  # overlong encoding of "/"
        b'{"id": "\xed\xa0\x80"}',  # CESU-8: an encoded surrogate
        b'{"id": "evt_\xe2\x82',  # cut inside a character
        b"\xff" * 64,
    ],
    ids=["latin-1", "utf-16", "overlong", "cesu-8", "cut", "0xff"],
)
def test_a_signed_body_that_is_not_utf8_is_refused(webhook: Webhook, raw: bytes) -> None:
    assert webhook.post(webhook.signed(raw, base64_body=True)) == (400, NOT_UTF8)
    assert webhook.drain() == []


def test_a_lone_surrogate_in_a_text_body_is_refused(webhook: Webhook) -> None:
    text = json.dumps(personal_event(), ensure_ascii=False).replace("Jenny", "J\ud800nny")
    raw = text.encode("utf-8", "surrogatepass")
    request = webhook.request(b"", signature=sign(raw)) | {"body": text}

    assert webhook.post(request) == (400, NOT_UTF8)
    assert webhook.drain() == []


@pytest.mark.parametrize("raw", [b'{"id": "evt\x00"}', b'{"id": "evt\x01", "object": "event"}', b"\x00" * 32])
def test_raw_control_characters_are_bad_json(webhook: Webhook, raw: bytes) -> None:
    assert webhook.post(webhook.signed(raw)) == (400, NOT_JSON)
    assert webhook.drain() == []


@pytest.mark.parametrize("flag", ["false", "true", 1, 0, None, [], {}])
def test_an_odd_base64_flag_never_queues_what_was_not_signed(webhook: Webhook, flag: object) -> None:
    raw = render(personal_event())
    request = webhook.signed(raw) | {"isBase64Encoded": flag}

    status, reason = webhook.post(request)

    assert status in (200, 400), reason
    messages = webhook.drain()
    assert len(messages) == (1 if status == 200 else 0)
    if status == 200:
        assert messages[0]["Body"].encode() == raw


# --- headers and Lambda events ----------------------------------------------------------------------------


def _headers(raw: bytes) -> dict[str, object]:
    now = int(time.time())
    valid = f"t={now},v1={v1(raw, SECRET, now)}"
    return {
        "20,000 forged v1": ",".join([f"t={now}"] + ["v1=" + "ab" * 32] * 20_000),
        "1 MB of commas": "," * 1_000_000,
        "fullwidth digits": f"t={''.join(chr(0xFF10 + int(d)) for d in str(now))},v1={v1(raw, SECRET, now)}",
        "thirteen digits": f"t={now:013d},v1={v1(raw, SECRET, now)}",
        "signed t": f"t=+{now},v1={v1(raw, SECRET, now)}",
        "spaces": f"t={now}, v1={v1(raw, SECRET, now)}",
        "upper case keys": f"T={now},V1={v1(raw, SECRET, now)}",
        "uppercase hex": f"t={now},v1={v1(raw, SECRET, now).upper()}",
        "v0 only": f"t={now},v0={v1(raw, SECRET, now)}",
        "a list": [valid],
        "a number": now,
        "null": None,
    }


@pytest.mark.parametrize("case", list(_headers(b"")))
def test_a_malformed_signature_header_is_400(webhook: Webhook, case: str) -> None:
    raw = render(personal_event())
    request = webhook.request(raw)
    request["headers"]["stripe-signature"] = _headers(raw)[case]

    status, _ = webhook.post(request)

    assert status == 400
    assert webhook.drain() == []


def test_of_two_signature_headers_in_different_case_the_lower_case_one_counts(webhook: Webhook) -> None:
    raw = render(personal_event())
    valid = sign(raw)
    assert (
        webhook.post(
            webhook.request(raw, signature=valid)
            | {"headers": {"stripe-signature": "t=1,v1=00", "Stripe-Signature": valid}}
        )[0]
        == 400
    )
    assert webhook.drain() == []
    assert (
        webhook.post(
            webhook.request(raw, signature=valid)
            | {"headers": {"stripe-signature": valid, "Stripe-Signature": "t=1,v1=00"}}
        )[0]
        == 200
    )
    assert len(webhook.drain()) == 1


MALFORMED_LAMBDA_EVENTS: dict[str, Callable[[dict[str, Any]], object]] = {
    "not an object": lambda r: [r],
    "null": lambda r: None,
    "the event as JSON text": lambda r: json.dumps(r, indent=1),
    "body as bytes": lambda r: r | {"body": r["body"].encode()},
    "body as an object": lambda r: r | {"body": json.loads(r["body"])},
    "body as a number": lambda r: r | {"body": 42},
    "headers as a list": lambda r: r | {"headers": list(r["headers"].items())},
    "headers null": lambda r: r | {"headers": None},
    "no requestContext": lambda r: {k: v for k, v in r.items() if k != "requestContext"},
    "method not a string": lambda r: r | {"requestContext": {"http": {"method": ["POST"]}}},
    "path not a string": lambda r: (
        r
        | {
            "rawPath": ["/webhooks/stripe"],
            "requestContext": r["requestContext"] | {"http": {"method": "POST", "path": None}},
        }
    ),
}


@pytest.mark.parametrize("case", MALFORMED_LAMBDA_EVENTS)
def test_a_malformed_lambda_event_is_4xx_never_an_exception(webhook: Webhook, case: str) -> None:
    request = webhook.signed(render(personal_event()))

    status, _ = webhook.post(MALFORMED_LAMBDA_EVENTS[case](request))

    assert 400 <= status < 500
    assert webhook.drain() == []


# --- fuzz: mutations of a validly signed request -------------------------------------------------------


def _shift_timestamp(header: str, shift: int) -> str:
    return re.sub(r"^t=(\d+)", lambda m: f"t={int(m.group(1)) + shift}", header)


def _change_first_v1(header: str, position: int) -> str:
    index = header.index("v1=") + 3 + position % 64
    return header[:index] + ("0" if header[index] != "0" else "1") + header[index + 1 :]


# name -> (keeps the signature valid, header -> header)
HEADER_MUTATIONS: dict[str, tuple[bool, Callable[[str, int], str]]] = {
    "shift t": (False, lambda h, n: _shift_timestamp(h, n % 10**6 + 1)),
    "change a v1 digit": (False, _change_first_v1),
    "drop every v1": (False, lambda h, n: re.sub(r",v1=[0-9a-f]{64}", "", h)),
    "add a forged v1": (True, lambda h, n: h + ",v1=" + hashlib.sha256(b"%d" % n).hexdigest()),
    "add a v0": (True, lambda h, n: h + ",v0=" + hashlib.sha256(b"v0%d" % n).hexdigest()),
}


def _mutate_body(raw: bytes, mutation: str, position: int, junk: bytes) -> bytes:
    index = position % len(raw)
    if mutation == "flip a byte":
        return raw[:index] + bytes([raw[index] ^ (junk[0] or 1)]) + raw[index + 1 :]
    if mutation == "insert bytes":
        return raw[:index] + junk + raw[index:]
    if mutation == "truncate":
        return raw[:index]
    return raw


# Mostly small bodies; sparingly at and just over the 6 MB limit.
_SIZES = st.one_of(
    *[st.integers(0, 20_000)] * 7,
    st.sampled_from([300_000, LAMBDA_PAYLOAD_LIMIT - 1, LAMBDA_PAYLOAD_LIMIT, LAMBDA_PAYLOAD_LIMIT + 1]),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    size=_SIZES,
    # Weighted towards requests that keep a valid signature, so that both answers are exercised.
    body_mutation=st.sampled_from([None, None, None, None, "flip a byte", "insert bytes", "truncate"]),
    transport=st.sampled_from(
        [
            "text",
            "text",
            "text",
            "base64",
            "base64",
            "base64",
            "base64 text sent as the body",
            "text flagged base64",
        ]
    ),
    header_mutations=st.lists(st.sampled_from(sorted(HEADER_MUTATIONS)), unique=True, max_size=2),
    header_name=st.sampled_from(["stripe-signature", "Stripe-Signature", "STRIPE-SIGNATURE"]),
    position=st.integers(0, 2**32),
    junk=st.binary(min_size=1, max_size=8),
)
def test_fuzz_mutations_of_a_signed_request(
    webhook: Webhook,
    *,
    size: int,
    body_mutation: str | None,
    transport: str,
    header_mutations: list[str],
    header_name: str,
    position: int,
    junk: bytes,
) -> None:
    raw = render(personal_event())
    if size > len(raw):
        raw = raw[:-1] + b" " * (size - len(raw)) + b"}"
    header = sign(raw)
    for name in sorted(header_mutations):  # a fixed order: "change" meets the valid v1 first
        header = HEADER_MUTATIONS[name][1](header, position)
    sent = _mutate_body(raw, body_mutation, position, junk) if body_mutation else raw
    encoded = base64.b64encode(sent).decode()
    body, flag = {
        "text": (sent.decode("utf-8", "replace"), False),
        "base64": (encoded, True),
        "base64 text sent as the body": (encoded, False),
        "text flagged base64": (sent.decode("utf-8", "replace"), True),
    }[transport]
    request = webhook.request(b"") | {"body": body, "isBase64Encoded": flag}
    request["headers"][header_name] = header

    status, reason = webhook.post(request)
    messages = webhook.drain()

    assert status < 500, reason
    assert len(messages) == (1 if status == 200 else 0)
    valid = (
        body_mutation is None
        and transport in ("text", "base64")
        and all(HEADER_MUTATIONS[name][0] for name in header_mutations)
    )
    if not valid:
        assert 400 <= status < 500, reason
    elif max(len(raw), len(body)) > LAMBDA_PAYLOAD_LIMIT:
        assert (status, reason) == (413, TOO_LARGE)
    else:
        assert status == 200, reason
        body_sent = json.loads(messages[0]["Body"])
        assert body_sent.get("by_reference") or messages[0]["Body"].encode() == raw


# --- the worker's logs ---------------------------------------------------------------------------------


class _CurrentStdout(io.TextIOBase):
    """Whatever sys.stdout is at each write: capsys swaps its buffer between the phases of a test."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def worker_logs(
    webhook_environment: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Callable[[], str]]:
    """The worker on a moto table, its Powertools logger at DEBUG writing into capsys; what it and the
    other loggers (Powertools' tracer logs failures through the standard library) wrote so far."""
    import boto3

    monkeypatch.setenv("TABLE_NAME", "hostile-sync")
    create_sync_table(boto3.client("dynamodb"), "hostile-sync")
    worker.settings.cache_clear()
    worker._applier.cache_clear()
    level = worker.logger.log_level
    monkeypatch.setattr(worker.logger.registered_handler, "stream", _CurrentStdout())
    worker.logger.setLevel("DEBUG")
    # Other loggers as Lambda's runtime sets them up: warnings and errors (libraries' debug output of
    # the requests they send is not the worker's logging).
    caplog.set_level(logging.WARNING)

    def output() -> str:
        captured = capsys.readouterr()
        return captured.out + captured.err + caplog.text

    try:
        yield output
    finally:
        worker.logger.setLevel(level)
        worker.settings.cache_clear()
        worker._applier.cache_clear()


def run_worker(events: list[dict[str, Any]], receive_count: int = 1) -> list[str]:
    """The events through the handler in SQS batches of 10; the ids of the messages that failed.

    A batch that fails entirely makes the handler raise (Powertools' BatchProcessingError); Lambda's
    runtime then logs the error with its traceback, so that is printed here to be scanned too."""
    failed: list[str] = []
    for start in range(0, len(events), 10):
        messages = [
            {
                "MessageId": f"msg-{start + n}",
                "ReceiptHandle": f"rh-{start + n}",
                "Body": json.dumps(event),
                "Attributes": {"ApproximateReceiveCount": str(receive_count), "MessageGroupId": "g"},
                "MD5OfBody": hashlib.md5(json.dumps(event).encode()).hexdigest(),  # noqa: S324 - as SQS
            }
            for n, event in enumerate(events[start : start + 10])
        ]
        try:
            response = worker.lambda_handler(
                sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:events.fifo", "us-east-1"),
                FakeLambdaContext(
                    function_name="stripe-sync-worker",
                    memory_limit_in_mb=512,
                    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:stripe-sync-worker",
                    aws_request_id="worker-hostile-input",
                ),
            )
        except BatchProcessingError as error:
            traceback.print_exception(error, file=sys.stderr)
            failed += [message["MessageId"] for message in messages]
        else:
            failed += [item["itemIdentifier"] for item in response["batchItemFailures"]]
    return failed


def _fill_personal_data(value: Any) -> Any:
    """Every address, phone, name and email field of a Stripe object filled in, and a card number in
    its description: what a log must never show."""
    if isinstance(value, list):
        return [_fill_personal_data(v) for v in value]
    if not isinstance(value, dict):
        return value
    filled = {k: _fill_personal_data(v) for k, v in value.items()}
    for key in filled:
        if key in ("address", "customer_address", "billing_address"):
            filled[key] = dict(ADDRESS)
        elif key in ("phone", "customer_phone"):
            filled[key] = PHONE
        elif key in ("email", "customer_email", "receipt_email", "customer_email_address"):
            filled[key] = EMAIL
        elif key in ("customer_name",):
            filled[key] = "Jenny Rosen"
    return filled


# Between them every kind of object the worker reads: customers, subscriptions, invoices, Checkout
# sessions (guest too), payment intents, charges, refunds, disputes, entitlement summaries, Accounts v2.
PERSONAL_SCENARIOS = (
    "trial_converts",
    "payment_failed_then_recovered",
    "one_time_purchase_delayed",
    "purchase_refunded",
    "purchase_dispute_lost",
    "guest_checkout",
    "customer_deleted",
    "entitlements_summary_updated",
    "accounts_v2_signup_paid",
)


def personal_scenarios() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for index, name in enumerate(PERSONAL_SCENARIOS):
        params = scenarios.ScenarioParams(
            customer_id=f"cus_Hostile{index:05d}",
            user_id=f"user_hostile_{index}",
            accounts_v2_customer=f"acct_Hostile{index:06d}",
        )
        for event in scenarios.build(name, params).events:
            filled = _fill_personal_data(event)
            filled["data"]["object"]["description"] = f"card {CARD}, Jenny Rosen, {EMAIL}, {PHONE}"
            events.append(filled)
    return events


def test_the_worker_logs_no_personal_data(worker_logs: Callable[[], str]) -> None:
    events = personal_scenarios()
    assert sum(EMAIL in json.dumps(e) for e in events) == len(events)

    failed = run_worker(events)
    output = worker_logs()

    applied = [line for line in output.splitlines() if '"outcome":"applied"' in line]
    assert len(applied) > len(events) // 2, "the worker's log lines were captured"
    assert failed == [], "disputes before their purchase are stored, never failed"
    assert_nothing_sensitive(output, [*PERSONAL, *SECRETS])


def test_the_worker_logs_no_personal_data_when_an_event_fails(worker_logs: Callable[[], str]) -> None:
    signup = scenarios.build("signup_paid", scenarios.ScenarioParams(customer_id="cus_HostileFail01"))
    created = _fill_personal_data(
        next(e for e in signup.events if e["type"] == "customer.subscription.created")
    )
    no_status = copy.deepcopy(created)
    no_status["id"] = "evt_HostileNoStatus01"
    del no_status["data"]["object"]["status"]
    not_an_object = copy.deepcopy(created)
    not_an_object["id"] = "evt_HostileNotAnObject"
    not_an_object["data"]["object"] = f"{EMAIL} {CARD} {PHONE}"
    no_customer = copy.deepcopy(created)
    no_customer["id"] = "evt_HostileNoCustomer1"
    no_customer["data"]["object"]["customer"] = None

    failed = run_worker([no_status, not_an_object, no_customer], receive_count=5)
    output = worker_logs()

    assert failed == ["msg-0", "msg-1", "msg-2"]
    assert output.count('"level":"WARNING"') + output.count('"level":"ERROR"') >= 3
    assert_nothing_sensitive(output, [*PERSONAL, *SECRETS])


def test_a_value_the_worker_cannot_read_is_not_quoted_in_its_log(worker_logs: Callable[[], str]) -> None:
    """A time field holding an email: the reason logged names the problem, never the value (it used
    to quote it: int()'s ValueError went into MalformedEvent's message, and the worker logs that)."""
    signup = scenarios.build("signup_paid", scenarios.ScenarioParams(customer_id="cus_HostileFail03"))
    created = copy.deepcopy(next(e for e in signup.events if e["type"] == "customer.subscription.created"))
    created["data"]["object"]["trial_end"] = EMAIL

    assert run_worker([created]) == ["msg-0"]
    output = worker_logs()
    assert "event not applied" in output
    assert EMAIL not in output
