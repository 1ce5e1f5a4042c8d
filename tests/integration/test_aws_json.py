"""adapters.aws_json against its references: botocore's SigV4Auth for signatures, moto's server for
SendMessage and GetSecretValue, and a local faulting HTTP server for retries and timeouts."""

from __future__ import annotations

import datetime
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials
from moto.server import ThreadedMotoServer

from adapters import aws_json, event_queue, stripe_credentials
from adapters.aws_json import AwsCallFailed, AwsJsonClient, Credentials, HttpRequest, sign
from adapters.event_queue import QueueUnavailable, enqueue, queue_client
from adapters.stripe_credentials import SecretsUnavailable, StripeCredentialSource, webhook_secrets
from domain.ingress import QueueMessage
from ops.targets import AwsAccess, ClientFactory, operator_secret_reader

AT = 1_764_620_000.0  # 2025-12-01T20:13:20Z


def spare_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    queue_client.cache_clear()
    stripe_credentials.clear_cache()


# --- signature: botocore's SigV4Auth is the reference -----------------------------------------------


@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzEJr//////////wEaDOc1"])
@pytest.mark.parametrize(
    ("service", "target", "content_type", "url"),
    [
        (
            "sqs",
            "AmazonSQS.SendMessage",
            "application/x-amz-json-1.0",
            "https://sqs.eu-west-1.amazonaws.com/",
        ),
        (
            "secretsmanager",
            "secretsmanager.GetSecretValue",
            "application/x-amz-json-1.1",
            "http://127.0.0.1:4566/",
        ),
    ],
)
def test_the_signature_is_botocores(
    monkeypatch: pytest.MonkeyPatch,
    *,
    service: str,
    target: str,
    content_type: str,
    url: str,
    token: str | None,
) -> None:
    body = json.dumps({"QueueUrl": "https://q/1/x.fifo", "MessageBody": '{"id": "évt  1"}'}).encode()
    host = url.split("/")[2]
    headers = {"Host": host, "Content-Type": content_type, "X-Amz-Target": target}
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)

    ours = sign(HttpRequest(url, headers, body), credentials, service=service, region="eu-west-1", at=AT)

    reference = AWSRequest("POST", url, headers=dict(headers), data=body)
    monkeypatch.setattr(
        botocore.auth, "get_current_datetime", lambda: datetime.datetime.fromtimestamp(AT, datetime.UTC)
    )
    botocore.auth.SigV4Auth(
        BotocoreCredentials(credentials.access_key, credentials.secret_key, token), service, "eu-west-1"
    ).add_auth(reference)
    assert ours.headers["Authorization"] == reference.headers["Authorization"]
    assert ours.headers["X-Amz-Date"] == reference.headers["X-Amz-Date"]
    assert ours.headers.get("X-Amz-Security-Token") == reference.headers.get("X-Amz-Security-Token")


def test_the_endpoint_and_region_come_from_the_environment(
    environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def client() -> AwsJsonClient:
        return AwsJsonClient("Secrets Manager", "secretsmanager", "secretsmanager", "1.1")

    assert client().endpoint == "https://secretsmanager.us-east-1.amazonaws.com"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert client().endpoint == "https://secretsmanager.eu-central-1.amazonaws.com"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000/")
    assert client().endpoint == "http://127.0.0.1:5000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:5001")
    assert client().endpoint == "http://127.0.0.1:5001"
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(AwsCallFailed, match="no AWS region"):
        client()


def test_missing_credentials_fail_the_call_clearly(
    environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(QueueUnavailable, match="no AWS credentials"):
        enqueue("https://q", QueueMessage("{}", "cus_1", "evt_1", False))


# --- moto's server: the real protocol -----------------------------------------------------------------


@pytest.fixture
def moto_server(environment: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = spare_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    yield endpoint
    server.stop()


def test_send_message_reaches_sqs(moto_server: str) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_server)
    url = sqs.create_queue(QueueName="events.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]

    ids = [enqueue(url, QueueMessage(f'{{"id": "evt_{n}"}}', "cus_1", f"evt_{n}", False)) for n in range(3)]
    enqueue(url, QueueMessage('{"id": "evt_0"}', "cus_1", "evt_0", False))  # deduplicated by id

    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert [m["MessageId"] for m in received] == ids
    assert [m["Body"] for m in received] == [f'{{"id": "evt_{n}"}}' for n in range(3)]
    assert {m["Attributes"]["MessageGroupId"] for m in received} == {"cus_1"}


def test_the_trace_header_reaches_the_worker_as_the_aws_trace_header_attribute(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", trace)
    sqs = boto3.client("sqs", endpoint_url=moto_server)
    # moto's state outlives one server: a queue of its own, away from the other tests' messages.
    url = sqs.create_queue(QueueName="traced.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]

    enqueue(url, QueueMessage('{"id": "evt_1"}', "cus_1", "evt_1", False))

    [received] = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["All"])["Messages"]
    assert received["Attributes"]["AWSTraceHeader"] == trace


def test_concurrent_sends_from_threads_each_reach_sqs(moto_server: str) -> None:
    """The local runtime serves eight posters from threads through one process-wide client: an
    http.client connection shared between them interleaves requests and answers."""
    sqs = boto3.client("sqs", endpoint_url=moto_server)
    url = sqs.create_queue(QueueName="concurrent.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]

    def send(n: int) -> str:
        return enqueue(url, QueueMessage(f'{{"id": "evt_{n}"}}', f"cus_{n % 8}", f"evt_{n}", False))

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(send, range(80)))

    assert len(set(ids)) == 80
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "80"


def test_an_sqs_client_error_is_queue_unavailable_and_not_retried(moto_server: str) -> None:
    with pytest.raises(QueueUnavailable, match=r"NonExistentQueue|QueueDoesNotExist") as raised:
        enqueue(f"{moto_server}/123456789012/missing.fifo", QueueMessage("{}", "cus_1", "evt_1", False))
    assert "after" not in str(raised.value), "a 4xx is not retried"


def test_get_secret_value_reads_the_webhook_secrets(moto_server: str) -> None:
    secrets = boto3.client("secretsmanager", endpoint_url=moto_server)
    arn = secrets.create_secret(
        Name="stripe-sync/stripe",
        SecretString=json.dumps({"STRIPE_WEBHOOK_SECRET": "test:whsec_1,live:whsec_2"}),
    )["ARN"]
    read = webhook_secrets(StripeCredentialSource(secret_id=arn))
    assert [(s.mode, s.value) for s in read] == [("test", b"whsec_1"), ("live", b"whsec_2")]

    with pytest.raises(SecretsUnavailable, match="ResourceNotFoundException"):
        webhook_secrets(StripeCredentialSource(secret_id="stripe-sync/absent"))


def test_the_one_secret_reader_reads_what_boto3_reads(moto_server: str) -> None:
    """stripe_credentials.read_secret replaced boto3's GetSecretValue for the worker and the reconciler:
    the same SecretString for the same secret, by name or ARN, none for a binary secret, and a missing
    secret fails both."""
    secrets = boto3.client("secretsmanager", endpoint_url=moto_server)
    document = json.dumps({"STRIPE_API_KEY": "sk_test_1,rk_live_2", "STRIPE_WEBHOOK_SECRET": "whsec_1"})
    arn = secrets.create_secret(Name="stripe-sync/both", SecretString=document)["ARN"]
    for secret_id in ("stripe-sync/both", arn):
        assert (
            stripe_credentials.read_secret(secret_id)
            == secrets.get_secret_value(SecretId=secret_id)["SecretString"]
        )
    assert stripe_credentials.api_keys(StripeCredentialSource(secret_id=arn)) == {
        "test": "sk_test_1",
        "live": "rk_live_2",
    }

    secrets.create_secret(Name="stripe-sync/binary", SecretBinary=b"\x00whsec")
    assert "SecretString" not in secrets.get_secret_value(SecretId="stripe-sync/binary")
    assert stripe_credentials.read_secret("stripe-sync/binary") is None

    with pytest.raises(secrets.exceptions.ResourceNotFoundException):
        secrets.get_secret_value(SecretId="stripe-sync/absent")
    with pytest.raises(SecretsUnavailable, match="ResourceNotFoundException"):
        stripe_credentials.read_secret("stripe-sync/absent")


# --- faults: a local HTTP server that misbehaves ----------------------------------------------------


SLOW_ANSWER_SECONDS = 10.0


class FaultyService:
    """Answers each request with the next planned behaviour: a status (with a JSON error code), "lose"
    (reads the request, closes without an answer), "slow" (answers only when the test is over, or after
    SLOW_ANSWER_SECONDS: long after any read timeout, so a call that returns did not wait for it)."""

    def __init__(self, plan: list[Any]) -> None:
        self.plan = list(plan)
        self.seen: list[str] = []
        self.connections: set[tuple[str, int]] = set()
        self.released = threading.Event()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                service.seen.append(self.headers["X-Amz-Target"])
                service.connections.add(self.client_address)
                step = service.plan.pop(0) if service.plan else (200, None)
                if step == "lose":
                    self.close_connection = True
                    return
                if step == "slow":
                    service.released.wait(SLOW_ANSWER_SECONDS)
                    step = (200, None)
                status, code = step
                body = json.dumps(
                    {"MessageId": "m-1"} if code is None else {"__type": f"x#{code}", "message": "no"}
                )
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def faulty(environment: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyService]:
    service = FaultyService([])
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", service.endpoint)
    monkeypatch.setattr(event_queue, "READ_TIMEOUT_SECONDS", 0.2)
    yield service
    service.close()


MESSAGE = QueueMessage("{}", "cus_1", "evt_1", False)


def test_one_connection_serves_every_invocation_and_is_reopened_once_closed(faulty: FaultyService) -> None:
    for _ in range(3):
        enqueue("https://q", MESSAGE)
    assert len(faulty.connections) == 1, "kept alive across invocations"

    transport = queue_client().transport
    assert isinstance(transport, aws_json.PersistentConnection)
    assert transport._connection is not None
    assert transport._connection.sock is not None
    transport._connection.sock.shutdown(socket.SHUT_RDWR)  # as a server closing an idle connection
    enqueue("https://q", MESSAGE)
    assert len(faulty.seen) == 4, "the closed connection was noticed before use: no attempt lost"
    assert len(faulty.connections) == 2


@pytest.mark.parametrize(
    "first",
    [
        (500, "InternalError"),
        (503, "ServiceUnavailable"),
        (400, "ThrottlingException"),
        (400, "RequestThrottled"),
        "lose",
        "slow",
    ],
    ids=["500", "503", "throttling", "sqs-throttled", "answer-lost", "slow-answer"],
)
def test_transient_failures_are_retried(faulty: FaultyService, first: Any) -> None:
    faulty.plan = [first, first]
    assert enqueue("https://q", MESSAGE) == "m-1"
    assert faulty.seen == ["AmazonSQS.SendMessage"] * 3


def test_every_attempt_failing_is_queue_unavailable_after_max_attempts(faulty: FaultyService) -> None:
    faulty.plan = [(500, "InternalError")] * 5
    with pytest.raises(QueueUnavailable, match=r"500 InternalError.*after 3 attempts"):
        enqueue("https://q", MESSAGE)
    assert len(faulty.seen) == event_queue.MAX_ATTEMPTS


@pytest.mark.parametrize("code", ["InvalidParameterValue", "AccessDenied", "InvalidClientTokenId"])
def test_a_client_error_is_not_retried(faulty: FaultyService, code: str) -> None:
    faulty.plan = [(400, code)]
    with pytest.raises(QueueUnavailable, match=code):
        enqueue("https://q", MESSAGE)
    assert len(faulty.seen) == 1


def test_a_refused_connection_is_retried_then_queue_unavailable(
    environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{spare_port()}")  # nothing listens
    attempts: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(aws_json.time, "sleep", lambda s: (attempts.append(s), real_sleep(s)))
    with pytest.raises(QueueUnavailable, match=r"ConnectionRefusedError.*after 3 attempts"):
        enqueue("https://q", MESSAGE)
    assert len(attempts) == event_queue.MAX_ATTEMPTS - 1, "a backoff between attempts, none after the last"
    assert all(0 <= s <= aws_json.BACKOFF_BASE_SECONDS * 2**i for i, s in enumerate(attempts))


def test_a_slow_answer_every_time_gives_up_after_the_read_timeouts(faulty: FaultyService) -> None:
    # No answer comes while the call runs: it can only end by timing out each of its three attempts.
    faulty.plan = ["slow"] * 3
    with pytest.raises(QueueUnavailable, match=r"TimeoutError|timed out"):
        enqueue("https://q", MESSAGE)
    assert len(faulty.seen) == 3


def test_secret_read_failures_are_secrets_unavailable(
    faulty: FaultyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", faulty.endpoint)
    faulty.plan = [(400, "AccessDeniedException")]
    with pytest.raises(SecretsUnavailable, match="AccessDeniedException"):
        webhook_secrets(StripeCredentialSource(secret_id="stripe-sync/stripe"))
    assert faulty.seen == ["secretsmanager.GetSecretValue"]


def test_a_denied_read_fails_boto3_and_the_one_reader_alike(
    faulty: FaultyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Access denied (the role lacks secretsmanager:GetSecretValue) is one answer, not retried, for
    boto3, for read_secret and for the ops CLI's boto3 reader (the seam's other side)."""
    faulty.plan = [(400, "AccessDeniedException")] * 3
    secrets = boto3.client("secretsmanager", endpoint_url=faulty.endpoint)
    with pytest.raises(secrets.exceptions.ClientError) as denied:
        secrets.get_secret_value(SecretId="stripe-sync/stripe")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"

    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", faulty.endpoint)
    with pytest.raises(SecretsUnavailable, match="AccessDeniedException"):
        stripe_credentials.read_secret("stripe-sync/stripe")
    operator_reader = operator_secret_reader(ClientFactory(AwsAccess(faulty.endpoint, "us-east-1")))
    with pytest.raises(SecretsUnavailable, match="AccessDeniedException"):
        operator_reader("stripe-sync/stripe")
    assert faulty.seen == ["secretsmanager.GetSecretValue"] * 3


# --- one time budget for every call of an invocation ------------------------------------------------
# The faulty service's SQS client: 1 s connect + 0.2 s read timeout, so an attempt's worst case is 1.2 s.


def test_no_attempt_starts_that_the_time_budget_cannot_hold(faulty: FaultyService) -> None:
    faulty.plan = ["slow"] * 3
    with aws_json.time_budget(1.3), pytest.raises(QueueUnavailable, match=r"time budget spent.*1 attempts"):
        enqueue("https://q", MESSAGE)
    assert len(faulty.seen) == 1, "after one timed-out attempt, a second one no longer fits"


def test_a_spent_budget_sends_nothing_and_ends_with_its_block(faulty: FaultyService) -> None:
    with aws_json.time_budget(1.0), pytest.raises(QueueUnavailable, match="time budget spent"):
        enqueue("https://q", MESSAGE)
    assert faulty.seen == []
    assert enqueue("https://q", MESSAGE) == "m-1", "outside the block the call has no budget"


class RemainingTime:
    aws_request_id = "req-budget"

    def __init__(self, milliseconds: int) -> None:
        self.milliseconds = milliseconds

    def get_remaining_time_in_millis(self) -> int:
        return self.milliseconds


@pytest.mark.parametrize(
    ("context", "budget"),
    [(RemainingTime(20_000), 7.0), (RemainingTime(5_000), 3.5), (RemainingTime(1_000), 0.0), (object(), 7.0)],
    ids=["long-invocation", "short-invocation", "nearly-over", "no-context"],
)
def test_the_webhooks_budget_is_the_smaller_of_its_own_and_the_invocations(
    context: Any, budget: float
) -> None:
    from handlers.webhook import aws_budget

    assert aws_budget(context) == pytest.approx(budget)


def test_a_slow_sqs_answers_503_within_the_invocations_time(
    faulty: FaultyService,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    webhook_http_event_factory: Any,
    stripe_event_factory: Any,
) -> None:
    from handlers.webhook import AWS_BUDGET_MARGIN_SECONDS, lambda_handler

    monkeypatch.setenv("QUEUE_URL", "https://q")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_budget")
    request = webhook_http_event_factory(stripe_event_factory(), secret="whsec_budget")
    faulty.plan = ["slow"] * 3
    # 1.3 s for AWS: one slow attempt, and no second one that could run past the invocation's end.
    context = RemainingTime(int((1.3 + AWS_BUDGET_MARGIN_SECONDS) * 1000))

    response = lambda_handler(request, context)

    assert response["statusCode"] == 503
    assert len(faulty.seen) == 1
    assert "time budget spent" in capsys.readouterr().out
