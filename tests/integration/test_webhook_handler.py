"""The webhook lambda end to end under moto: API Gateway request in, SQS FIFO message out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import stripe_credentials
from adapters.event_queue import MAX_ATTEMPTS, queue_client
from adapters.stripe_credentials import api_keys, credential_source
from domain.ingress import SQS_MESSAGE_LIMIT
from handlers.webhook import lambda_handler
from tests.support.faults import AwsWire, ServiceError, Unreachable
from tests.support.webhook_queue import WebhookFifoQueue

EventFactory = Callable[..., dict[str, Any]]
RequestFactory = Callable[..., dict[str, Any]]
Objects = Callable[[str], dict[str, Any]]

WEBHOOK_SECRET = "whsec_integration_0123456789abcdef"

pytestmark = pytest.mark.usefixtures("webhook_fifo_queue", "webhook_secret_in_environment")


@pytest.fixture
def webhook_secret_in_environment(webhook_environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)


class LambdaContext:
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"


def invoke(request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = lambda_handler(request, LambdaContext())
    assert response["headers"]["content-type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def log_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


# --- accepted -------------------------------------------------------------------------------------


def test_a_signed_event_is_queued_as_sent(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
) -> None:
    document = stripe_event_factory("customer.subscription.created")
    request = webhook_http_event_factory(document, secret=WEBHOOK_SECRET)

    assert invoke(request) == (200, {"received": True})

    [message] = webhook_fifo_queue.drain()
    assert message["Body"].encode() == request["body"].encode()
    assert message["Attributes"]["MessageGroupId"] == "cus_QXg1o8vcGmoR32"
    assert message["Attributes"]["MessageDeduplicationId"] == document["id"]
    assert "MessageAttributes" not in message


def test_a_base64_body_is_queued_as_its_decoded_bytes(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
) -> None:
    raw = json.dumps(stripe_event_factory(description="Zoë — 東京"), ensure_ascii=False, indent=1).encode()

    status, _ = invoke(webhook_http_event_factory(raw, secret=WEBHOOK_SECRET, base64_body=True))

    assert status == 200
    assert [m["Body"].encode() for m in webhook_fifo_queue.drain()] == [raw]


@pytest.mark.parametrize("name", ["stripe-signature", "Stripe-Signature", "STRIPE-SIGNATURE"])
def test_the_header_is_read_in_any_letter_case(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    name: str,
) -> None:
    request = webhook_http_event_factory(stripe_event_factory(), secret=WEBHOOK_SECRET, header_name=name)

    assert invoke(request)[0] == 200
    assert len(webhook_fifo_queue.drain()) == 1


@pytest.mark.parametrize(
    ("configured", "signed_by"),
    [
        ("whsec_old_1,whsec_new_2", ("whsec_old_1",)),
        ("whsec_old_1,whsec_new_2", ("whsec_new_2",)),
        ("whsec_new_2", ("whsec_old_1", "whsec_new_2")),
        ("whsec_old_1", ("whsec_old_1", "whsec_new_2")),
        ("test:whsec_test_3,live:whsec_live_4", ("whsec_test_3",)),
    ],
)
def test_several_secrets_and_rolled_secrets(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    monkeypatch: pytest.MonkeyPatch,
    *,
    configured: str,
    signed_by: tuple[str, ...],
) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", configured)

    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret=signed_by))[0] == 200
    assert len(webhook_fifo_queue.drain()) == 1


@pytest.mark.parametrize(
    ("kind", "event_type", "group"),
    [
        ("subscription", "customer.subscription.updated", "cus_QXg1o8vcGmoR32"),
        ("invoice", "invoice.paid", "cus_QXg1o8vcGmoR32"),
        ("dispute", "charge.dispute.created", "dp_1PgafuB7WZ01zgkW"),
        ("guest_checkout_session", "checkout.session.completed", "cs_test_a1b2c3"),
        ("upcoming_invoice", "invoice.upcoming", "cus_QXg1o8vcGmoR32"),
        ("account_subscription", "customer.subscription.created", "acct_1Nv0FGQ9RKHgCVdK"),
    ],
)
def test_message_group_per_kind_of_object(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    stripe_sample_objects: Objects,
    *,
    kind: str,
    event_type: str,
    group: str,
) -> None:
    document = stripe_event_factory(event_type, data_object=stripe_sample_objects(kind))

    assert invoke(webhook_http_event_factory(document, secret=WEBHOOK_SECRET))[0] == 200

    [message] = webhook_fifo_queue.drain()
    assert message["Attributes"]["MessageGroupId"] == group


def test_an_upcoming_invoice_without_customer_groups_by_event(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    stripe_sample_objects: Objects,
) -> None:
    preview = stripe_sample_objects("upcoming_invoice") | {"customer": None}
    document = stripe_event_factory("invoice.upcoming", data_object=preview)

    assert invoke(webhook_http_event_factory(document, secret=WEBHOOK_SECRET))[0] == 200
    assert webhook_fifo_queue.drain()[0]["Attributes"]["MessageGroupId"] == document["id"]


def test_a_thin_event_is_queued_in_its_related_objects_group(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_thin_event_factory: EventFactory,
) -> None:
    document = stripe_thin_event_factory()
    request = webhook_http_event_factory(document, secret=WEBHOOK_SECRET)

    assert invoke(request)[0] == 200

    [message] = webhook_fifo_queue.drain()
    assert message["Body"] == request["body"]
    assert message["Attributes"]["MessageGroupId"] == "mtr_test_61Rb1Y"
    assert message["Attributes"]["MessageDeduplicationId"] == document["id"]


def test_a_connect_event_is_deduplicated_with_its_account(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
) -> None:
    document = stripe_event_factory(account="acct_1Connect")

    assert invoke(webhook_http_event_factory(document, secret=WEBHOOK_SECRET))[0] == 200
    assert (
        webhook_fifo_queue.drain()[0]["Attributes"]["MessageDeduplicationId"]
        == f"{document['id']}:acct_1Connect"
    )


def test_an_event_resent_by_stripe_is_acknowledged_and_queued_once(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
) -> None:
    document = stripe_event_factory()

    first = invoke(webhook_http_event_factory(document, secret=WEBHOOK_SECRET))
    retry = invoke(
        webhook_http_event_factory(document, secret=WEBHOOK_SECRET, timestamp=int(time.time()) + 1)
    )

    assert first[0] == retry[0] == 200
    assert len(webhook_fifo_queue.drain()) == 1


def test_an_event_over_256_kib_is_queued_by_reference(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
) -> None:
    document = stripe_event_factory("invoice.paid", account="acct_1Connect")
    document["data"]["object"]["lines"] = [{"id": f"il_{n}", "description": "x" * 900} for n in range(300)]
    request = webhook_http_event_factory(document, secret=WEBHOOK_SECRET)
    assert len(request["body"].encode()) > SQS_MESSAGE_LIMIT

    assert invoke(request)[0] == 200

    [message] = webhook_fifo_queue.drain()
    assert len(message["Body"].encode()) <= SQS_MESSAGE_LIMIT
    assert json.loads(message["Body"]) == {
        "object": "event",
        "id": document["id"],
        "type": "invoice.paid",
        "created": document["created"],
        "livemode": False,
        "account": "acct_1Connect",
        "api_version": document["api_version"],
        "by_reference": True,
    }
    assert message["Attributes"]["MessageGroupId"] == "cus_QXg1o8vcGmoR32"
    assert message["Attributes"]["MessageDeduplicationId"] == f"{document['id']}:acct_1Connect"


# --- refused: 4xx, nothing queued -----------------------------------------------------------------

Refusal = Callable[[RequestFactory, EventFactory], dict[str, Any]]

REFUSALS: dict[str, tuple[Refusal, int, str]] = {
    "unsigned": (lambda r, e: r(e()), 400, "missing Stripe-Signature header"),
    "other secret": (lambda r, e: r(e(), secret="whsec_someone_else"), 400, "no signature matches"),
    "garbage header": (lambda r, e: r(e(), signature="sha256=abc"), 400, "malformed Stripe-Signature header"),
    "stale": (
        lambda r, e: r(e(), secret=WEBHOOK_SECRET, timestamp=int(time.time()) - 301),
        400,
        "timestamp outside the tolerance",
    ),
    "future": (
        lambda r, e: r(e(), secret=WEBHOOK_SECRET, timestamp=int(time.time()) + 301),
        400,
        "timestamp outside the tolerance",
    ),
    "bad json": (lambda r, e: r(b'{"id": "evt_1",', secret=WEBHOOK_SECRET), 400, "body is not JSON"),
    "array": (lambda r, e: r(json.dumps([e()]), secret=WEBHOOK_SECRET), 400, "body is not a Stripe event"),
    "no id": (
        lambda r, e: r({k: v for k, v in e().items() if k != "id"}, secret=WEBHOOK_SECRET),
        400,
        "event has no id",
    ),
    "not utf-8": (
        lambda r, e: r(b'{"id": "evt_\xc3\x28"}', secret=WEBHOOK_SECRET, base64_body=True),
        400,
        "body is not UTF-8",
    ),
    "bad base64": (
        lambda r, e: r(e(), secret=WEBHOOK_SECRET, base64_body=True) | {"body": "e30=!"},
        400,
        "body is not valid base64",
    ),
    "too large": (lambda r, e: r(b" " * 6_291_457, secret=WEBHOOK_SECRET), 413, "body larger than 6 MB"),
    "GET": (lambda r, e: r(method="GET"), 405, "method not allowed"),
    "other path": (lambda r, e: r(e(), secret=WEBHOOK_SECRET, path="/webhooks/other"), 404, "not found"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_requests_get_4xx_and_queue_nothing(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    case: str,
) -> None:
    build, status, reason = REFUSALS[case]

    assert invoke(build(webhook_http_event_factory, stripe_event_factory)) == (status, {"error": reason})
    assert webhook_fifo_queue.drain() == []


def test_405_names_the_allowed_method(webhook_http_event_factory: RequestFactory) -> None:
    assert lambda_handler(webhook_http_event_factory(method="GET"), None)["headers"]["allow"] == "POST"


@pytest.mark.parametrize(("secret", "livemode"), [("test:whsec_t_1", True), ("live:whsec_l_1", False)])
def test_an_event_in_the_other_mode_than_its_secret_is_refused(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    monkeypatch: pytest.MonkeyPatch,
    *,
    secret: str,
    livemode: bool,
) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", secret)
    request = webhook_http_event_factory(stripe_event_factory(livemode=livemode), secret=secret.split(":")[1])

    status, body = invoke(request)

    assert status == 400
    assert "signed by a secret for the other mode" in body["error"]
    assert webhook_fifo_queue.drain() == []


# --- queuing failed: 503, so that Stripe retries ------------------------------------------------


def test_a_queue_that_does_not_exist_gives_503(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("QUEUE_URL", webhook_fifo_queue.url.replace("stripe-sync-events", "no-such-queue"))
    document = stripe_event_factory()

    assert invoke(webhook_http_event_factory(document, secret=WEBHOOK_SECRET)) == (
        503,
        {"error": "event not queued"},
    )

    assert webhook_fifo_queue.drain() == []
    [log] = log_lines(capsys.readouterr().out)
    assert (log["level"], log["outcome"], log["event_id"]) == ("ERROR", "failed", document["id"])
    assert "NonExistentQueue" in log["error"] or "QueueDoesNotExist" in log["error"]


@pytest.fixture
def unreachable_sqs(webhook_fifo_queue: WebhookFifoQueue) -> Iterator[None]:
    """SQS unreachable: every connection the client opens is refused (on the wire, no patching)."""
    with AwsWire(queue_client()) as wire:
        wire.inject("SendMessage", Unreachable(), times=100)
        yield


@pytest.mark.usefixtures("unreachable_sqs")
def test_sqs_unreachable_gives_503(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
) -> None:
    request = webhook_http_event_factory(stripe_event_factory(), secret=WEBHOOK_SECRET)

    assert invoke(request) == (503, {"error": "event not queued"})
    assert webhook_fifo_queue.drain() == []


@pytest.mark.parametrize(("code", "http_status"), [("ThrottlingException", 400), ("InternalError", 500)])
def test_an_sqs_error_gives_503(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    code: str,
    http_status: int,
) -> None:
    request = webhook_http_event_factory(stripe_event_factory(), secret=WEBHOOK_SECRET)

    with AwsWire(queue_client()) as wire:
        # Both are retried (throttling, 5xx): SQS answers the error to every attempt.
        wire.inject("SendMessage", ServiceError(code, status=http_status), times=MAX_ATTEMPTS)
        assert invoke(request) == (503, {"error": "event not queued"})
        assert wire.pending() == 0

    assert webhook_fifo_queue.drain() == []
    assert invoke(request)[0] == 200, "once SQS answers again, Stripe's retry is queued"
    assert len(webhook_fifo_queue.drain()) == 1


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "status", "reason"),
    [
        ("STRIPE_WEBHOOK_SECRET", None, 500, "webhook secret not configured"),
        ("STRIPE_WEBHOOK_SECRET", " , ", 500, "webhook secret not configured"),
        ("STRIPE_WEBHOOK_SECRET", "sk_test_not_a_webhook_secret", 500, "webhook secret misconfigured"),
        ("STRIPE_WEBHOOK_SECRET", "prod:whsec_1", 500, "webhook secret misconfigured"),
        ("QUEUE_URL", None, 500, "queue not configured"),
        ("SIGNATURE_TOLERANCE_SECONDS", "five minutes", 500, "signature tolerance misconfigured"),
    ],
)
def test_misconfiguration_gives_500_and_says_so_in_the_log(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *,
    variable: str,
    value: str | None,
    status: int,
    reason: str,
) -> None:
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)

    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret=WEBHOOK_SECRET)) == (
        status,
        {"error": reason},
    )

    assert webhook_fifo_queue.drain() == []
    [log] = log_lines(capsys.readouterr().out)
    assert (log["level"], log["reason"]) == ("ERROR", reason)
    assert log["error"]
    assert "sk_test_not_a_webhook_secret" not in json.dumps(log)


def test_a_larger_tolerance_setting_is_honoured(
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIGNATURE_TOLERANCE_SECONDS", "900")

    request = webhook_http_event_factory(
        stripe_event_factory(), secret=WEBHOOK_SECRET, timestamp=int(time.time()) - 600
    )

    assert invoke(request)[0] == 200


# --- Secrets Manager (STRIPE_SECRET_ID) -----------------------------------------------------------


@pytest.fixture
def stripe_secret(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Creates the StripeSecret under moto and points STRIPE_SECRET_ID at it; returns its id."""
    secrets_manager = boto3.client("secretsmanager", region_name="us-east-1")
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET")

    def create(secret_string: str) -> str:
        arn = secrets_manager.create_secret(Name="stripe-sync/stripe", SecretString=secret_string)["ARN"]
        monkeypatch.setenv("STRIPE_SECRET_ID", arn)
        return arn

    return create


def test_secrets_come_from_secrets_manager_and_are_cached(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    stripe_secret: Callable[[str], str],
) -> None:
    arn = stripe_secret(
        json.dumps({"STRIPE_WEBHOOK_SECRET": "test:whsec_from_aws", "STRIPE_API_KEY": "sk_test_1"})
    )

    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret="whsec_from_aws"))[0] == 200
    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret=WEBHOOK_SECRET))[0] == 400

    boto3.client("secretsmanager").put_secret_value(
        SecretId=arn, SecretString='{"STRIPE_WEBHOOK_SECRET": ""}'
    )
    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret="whsec_from_aws"))[0] == 200, (
        "cached"
    )
    assert len(webhook_fifo_queue.drain()) == 2


@pytest.mark.parametrize(
    ("secret_string", "status", "reason"),
    [
        ('{"STRIPE_API_KEY": "sk_test_1"}', 500, "webhook secret not configured"),
        ('{"STRIPE_WEBHOOK_SECRET": ""}', 500, "webhook secret not configured"),
        ('{"STRIPE_WEBHOOK_SECRET": ["whsec_1"]}', 500, "webhook secret misconfigured"),
        ('["whsec_1"]', 500, "webhook secret misconfigured"),
        ("whsec_not_json_at_all", 500, "webhook secret misconfigured"),
    ],
)
def test_a_badly_filled_secret_gives_500(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    stripe_secret: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
    *,
    secret_string: str,
    status: int,
    reason: str,
) -> None:
    stripe_secret(secret_string)

    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret="whsec_1")) == (
        status,
        {"error": reason},
    )
    assert webhook_fifo_queue.drain() == []
    assert "whsec_not_json_at_all" not in capsys.readouterr().out


def test_an_unreadable_secret_gives_503(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_ID", "stripe-sync/deleted-secret")

    status, body = invoke(webhook_http_event_factory(stripe_event_factory(), secret=WEBHOOK_SECRET))

    assert (status, body) == (503, {"error": "webhook secrets unavailable"})
    assert webhook_fifo_queue.drain() == []
    [log] = log_lines(capsys.readouterr().out)
    assert "stripe-sync/deleted-secret" in log["error"]


def test_api_keys_are_read_the_same_way_for_the_other_functions(
    stripe_secret: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_from_env")
    assert api_keys(credential_source(os.environ)) == {"live": "sk_live_from_env"}

    stripe_secret(json.dumps({"STRIPE_API_KEY": "sk_test_aws,rk_live_aws"}))
    assert api_keys(credential_source(os.environ)) == {"test": "sk_test_aws", "live": "rk_live_aws"}


def test_a_rotated_secret_is_used_once_the_cached_one_is_too_old(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    stripe_secret: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the secret is is parsed once per container; the secret itself is read again past
    SECRET_MAX_AGE_SECONDS, so the same container picks up a rotation."""
    arn = stripe_secret(json.dumps({"STRIPE_WEBHOOK_SECRET": "whsec_before"}))
    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret="whsec_before"))[0] == 200

    boto3.client("secretsmanager").put_secret_value(
        SecretId=arn, SecretString=json.dumps({"STRIPE_WEBHOOK_SECRET": "whsec_after"})
    )
    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret="whsec_after"))[0] == 400
    monkeypatch.setattr(stripe_credentials, "SECRET_MAX_AGE_SECONDS", 0)  # the cached read is now too old
    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret="whsec_after"))[0] == 200
    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret="whsec_before"))[0] == 400
    assert len(webhook_fifo_queue.drain()) == 2


# --- logs -----------------------------------------------------------------------------------------


def test_logs_are_json_with_ids_and_outcome_and_nothing_personal_or_secret(
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    stripe_sample_objects: Objects,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    new_container: Callable[[], None],
) -> None:
    invoice = stripe_event_factory("invoice.paid", data_object=stripe_sample_objects("invoice"))
    checkout = stripe_event_factory(
        "checkout.session.completed", data_object=stripe_sample_objects("guest_checkout_session")
    )
    live = stripe_event_factory("invoice.paid", data_object=stripe_sample_objects("invoice"), livemode=True)
    requests = [
        webhook_http_event_factory(invoice, secret=WEBHOOK_SECRET),
        webhook_http_event_factory(checkout, secret=WEBHOOK_SECRET, base64_body=True),
        webhook_http_event_factory(invoice, secret="whsec_wrong"),
        webhook_http_event_factory(invoice, secret=WEBHOOK_SECRET, timestamp=1),
        webhook_http_event_factory(b"customer_email=jenny.rosen@example.com", secret=WEBHOOK_SECRET),
    ]
    for request in requests:
        invoke(request)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"test:{WEBHOOK_SECRET}")  # the live event: mode mismatch
    new_container()
    invoke(webhook_http_event_factory(live, secret=WEBHOOK_SECRET))

    output = capsys.readouterr().out
    lines = log_lines(output)
    assert [(line["outcome"], line["status"]) for line in lines] == [
        ("queued", 200),
        ("queued", 200),
        ("rejected", 400),
        ("rejected", 400),
        ("rejected", 400),
        ("rejected", 400),
    ]
    assert (lines[0]["event_id"], lines[0]["event_type"]) == (invoice["id"], "invoice.paid")
    assert (lines[1]["event_id"], lines[1]["event_type"]) == (checkout["id"], "checkout.session.completed")
    assert (lines[5]["event_id"], lines[5]["event_type"]) == (live["id"], "invoice.paid")
    assert all(line["request_id"] == LambdaContext.aws_request_id for line in lines)
    signature_values = [r["headers"]["stripe-signature"].split("v1=")[1] for r in requests]
    for forbidden in [
        "whsec_",
        "v1=",
        "jenny",
        "Jenny",
        "Rosen",
        "Townsend",
        "San Francisco",
        *signature_values,
    ]:
        assert forbidden not in output


# --- cold start -----------------------------------------------------------------------------------


def test_the_handler_imports_no_sdk_framework_or_logger_until_it_queues(
    webhook_http_event_factory: RequestFactory,
) -> None:
    script = (
        "import json, sys\n"
        "from handlers.webhook import lambda_handler\n"
        f"response = lambda_handler({webhook_http_event_factory(b'{}')!r}, None)\n"
        "heavy = ['boto3', 'botocore', 'stripe', 'aws_lambda_powertools', 'pydantic', 'logging', 'requests']\n"
        "print(json.dumps([response['statusCode'], [m for m in heavy if m in sys.modules]]))\n"
    )
    src = Path(__file__).resolve().parents[2] / "src"
    environment = {
        **os.environ,
        "PYTHONPATH": str(src),
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "QUEUE_URL": "q",
    }
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=environment
    )

    assert json.loads(result.stdout.splitlines()[-1]) == [400, []]


# --- property: no valid signature, no 2xx; never 5xx while SQS works; valid -> exactly one message --

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_ids = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
_data_objects = st.fixed_dictionaries(
    {"object": st.sampled_from(["subscription", "invoice", "dispute", "checkout.session", "customer"])},
    optional={
        "id": _ids,
        "customer": st.none() | _ids | st.fixed_dictionaries({"id": _ids}),
        "customer_account": st.none() | _ids,
        "email": st.emails(),
        "metadata": st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=3),
    },
)
_snapshot_events = st.fixed_dictionaries(
    {
        "object": st.just("event"),
        "type": _ids,
        "created": st.integers(0, 2**40),
        "livemode": st.booleans(),
        "data": st.fixed_dictionaries({"object": _data_objects}),
    },
    optional={"account": _ids, "api_version": st.text(max_size=20), "extra": _json_values},
)
_thin_events = st.fixed_dictionaries(
    {
        "object": st.just("v2.core.event"),
        "type": _ids,
        "created": st.datetimes().map(lambda d: d.isoformat() + "Z"),
        "livemode": st.booleans(),
    },
    optional={
        "related_object": st.fixed_dictionaries({"id": _ids, "type": _ids, "url": st.text(max_size=20)})
    },
)
_valid_events = st.one_of(_snapshot_events, _thin_events).map(lambda d: ("event", d))
_other_bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(["id", "object", "type", "created", "livemode", "data"]), _json_values
    ).map(lambda v: json.dumps(v).encode()),
).map(lambda b: ("bytes", b))
_hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_headers = st.one_of(
    st.just(("valid", None)),
    st.just(("none", None)),
    st.text(max_size=120).map(lambda h: ("random", h)),
    st.builds(lambda t, v: ("formatted", f"t={t},v1={v}"), st.integers(0, 2**34), _hex64),
    st.just(("other secret", "whsec_attacker_guess")),
    st.integers(301, 10**6).map(lambda age: ("stale", age)),
)
_event_numbers = iter(range(10**9))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.one_of(_valid_events, _other_bodies),
    header=_headers,
    base64_body=st.booleans(),
    header_name=st.sampled_from(["stripe-signature", "Stripe-Signature"]),
)
def test_property_only_a_valid_signature_over_a_valid_event_is_queued(
    webhook_fifo_queue: WebhookFifoQueue,
    webhook_http_event_factory: RequestFactory,
    *,
    body: tuple[str, Any],
    header: tuple[str, Any],
    base64_body: bool,
    header_name: str,
) -> None:
    kind, content = body
    if kind == "event":  # a fresh id each time: FIFO deduplication must not hide a message
        content = {"id": f"evt_prop{next(_event_numbers)}", **content}
        raw = json.dumps(content, ensure_ascii=False).encode()
    else:
        raw = content
    if not base64_body:
        raw = raw.decode("utf-8", "replace").encode()  # a text body is UTF-8 by construction
    header_kind, value = header
    options: dict[str, Any] = {"base64_body": base64_body, "header_name": header_name}
    if header_kind == "valid":
        options["secret"] = WEBHOOK_SECRET
    elif header_kind == "other secret":
        options["secret"] = value
    elif header_kind == "stale":
        options |= {"secret": WEBHOOK_SECRET, "timestamp": int(time.time()) - value}
    elif header_kind != "none":
        options["signature"] = value

    status, _ = invoke(webhook_http_event_factory(raw, **options))
    messages = webhook_fifo_queue.drain()

    assert status < 500, "SQS works, so no 5xx"
    assert (status == 200) == (len(messages) == 1)
    assert len(messages) <= 1
    if header_kind != "valid":
        assert 400 <= status < 500
    if header_kind == "valid" and kind == "event":
        assert status == 200
        if "\ufffe" in raw.decode() or "\uffff" in raw.decode():  # characters SQS refuses
            assert json.loads(messages[0]["Body"])["by_reference"] is True
        else:
            assert messages[0]["Body"].encode() == raw


# --- metrics (embedded metric format in the log line) ---------------------------------------------


def metric_counts(output: str, by: str | None = None) -> dict[str, int]:
    """Metric name -> count over the EMF documents printed, after checking each is valid EMF; with
    `by`, "name mode" -> count of the metrics published with that extra dimension."""
    counts: dict[str, int] = {}
    for document in log_lines(output):
        if "_aws" not in document:
            continue
        assert document["service"] == "stripe-sync-webhook"
        assert isinstance(document["_aws"]["Timestamp"], int)
        names = [
            metric["Name"]
            for directive in document["_aws"]["CloudWatchMetrics"]
            for metric in directive["Metrics"]
        ]
        assert len(names) == len(set(names)), "each metric in one directive"
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "StripeSync/dev/stripe-sync-test"
            assert directive["Dimensions"][0] == ["service"]
            extra = [d[1] for d in directive["Dimensions"][1:]]
            assert extra in ([], ["mode"], ["claimed_mode"])
            for metric in directive["Metrics"]:
                assert metric["Unit"] == "Count"
                name = metric["Name"]
                if by is None:
                    counts[name] = counts.get(name, 0) + document[name]
                elif extra == [by]:
                    key = f"{name} {document[by]}"
                    counts[key] = counts.get(key, 0) + document[name]
    return counts


@pytest.mark.parametrize("log_level", ["INFO", "CRITICAL"])
def test_every_answer_is_counted_by_outcome_whatever_the_log_level(
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    log_level: str,
    *,
    new_container: Callable[[], None],
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "StripeSync/dev/stripe-sync-test")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "stripe-sync-webhook")
    monkeypatch.setenv("LOG_LEVEL", log_level)
    capsys.readouterr()

    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret=WEBHOOK_SECRET))[0] == 200
    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret="whsec_wrong"))[0] == 400
    assert invoke(webhook_http_event_factory(stripe_event_factory()))[0] == 400  # anonymous: not unverified
    live = stripe_event_factory(livemode=True)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"test:{WEBHOOK_SECRET}")
    new_container()  # where the signing secrets are is a setting too
    assert invoke(webhook_http_event_factory(live, secret=WEBHOOK_SECRET))[0] == 400
    not_json = webhook_http_event_factory(stripe_event_factory(), secret=WEBHOOK_SECRET)
    assert invoke({**not_json, "requestContext": {"http": {"method": "GET", "path": "/"}}})[0] >= 400
    monkeypatch.setenv("QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/gone.fifo")
    new_container()  # the queue URL is a setting: parsed once per container
    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret=WEBHOOK_SECRET))[0] == 503

    output = capsys.readouterr().out
    assert metric_counts(output) == {
        "DeliveriesQueued": 1,
        "DeliveriesRejected": 4,
        "DeliveriesUnverified": 2,
        "DeliveriesFailed": 1,
    }
    # Per mode: the queued event's (verified), the refused ones' as their bodies claim (untrusted).
    assert metric_counts(output, by="mode") == {"DeliveriesQueued test": 1}
    assert metric_counts(output, by="claimed_mode") == {
        "DeliveriesUnverified test": 1,  # a test event signed with a wrong secret
        "DeliveriesUnverified live": 1,  # a live event signed by a test-only secret
    }


def test_refused_deliveries_are_counted_by_the_mode_their_body_claims(
    webhook_http_event_factory: RequestFactory,
    stripe_event_factory: EventFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rolled live secret: live deliveries are refused while test ones still queue. Per mode, the
    live refusals stand out; a signed body without a readable `livemode` has no mode to claim."""
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "StripeSync/dev/stripe-sync-test")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "stripe-sync-webhook")
    capsys.readouterr()
    for _ in range(3):
        live = stripe_event_factory(livemode=True)
        assert invoke(webhook_http_event_factory(live, secret="whsec_rolled_away"))[0] == 400
    assert invoke(webhook_http_event_factory(stripe_event_factory(), secret=WEBHOOK_SECRET))[0] == 200
    assert invoke(webhook_http_event_factory(b"{not json", secret="whsec_rolled_away"))[0] == 400
    assert (
        invoke(webhook_http_event_factory(stripe_event_factory(livemode="yes"), secret="whsec_x"))[0] == 400
    )

    output = capsys.readouterr().out
    assert metric_counts(output, by="claimed_mode") == {
        "DeliveriesUnverified live": 3,
        "DeliveriesUnverified unknown": 2,
    }
    assert metric_counts(output, by="mode") == {"DeliveriesQueued test": 1}
    rejected = [line for line in log_lines(output) if line.get("message") == "webhook rejected"]
    assert [line["claimed_mode"] for line in rejected] == ["live", "live", "live", "unknown", "unknown"]
