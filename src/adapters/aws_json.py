"""AWS's JSON protocol (SQS, Secrets Manager) on the standard library: SigV4, retries, one connection.

The webhook's cold path calls two AWS operations (SQS SendMessage, Secrets Manager GetSecretValue).
With boto3 it paid ~160 ms of CPU to import boto3/botocore and ~90 ms to create each client, about
85% of its whole cold path (bench/cold_start.py, built packages). This module is what those two calls
need of botocore, and nothing else:

* SigV4 signing of a POST to `/` (tests check it against botocore's own SigV4Auth).
* Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, read per call: in
  Lambda the runtime sets them for the execution role and they outlive the execution environment, so
  no IMDS or container-credentials lookup and no refresh is needed. Elsewhere (an operator's profile,
  SSO) use boto3: the worker, the reconciler and the ops CLI do.
* Region from AWS_REGION / AWS_DEFAULT_REGION; endpoint from AWS_ENDPOINT_URL_<SERVICE>, then
  AWS_ENDPOINT_URL, else the regional https endpoint (what botocore resolves for these services).
* Retries as botocore's standard mode: at most MAX_ATTEMPTS, jittered exponential backoff, retrying
  throttling codes, transient codes, 5xx, connection errors and timeouts, never other 4xx.
* One persistent connection per client, reused across invocations; a connection the server closed
  while the sandbox was frozen is noticed before it is used (as urllib3 does) and reopened.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import random
import select
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

# botocore/retries/standard.py: the codes its standard mode retries, besides 5xx and connection errors.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
MAX_ATTEMPTS = 3
# botocore waits random() * 2**(attempt-1) s (up to 1 s, then 2 s). The webhook answers on Stripe's
# clock within a 10 s timeout and Stripe retries for days: a tenth of that keeps 3 attempts of
# connect 1 s + read 2 s (9 s) plus the waits (at most 0.3 s) inside the timeout.
BACKOFF_BASE_SECONDS = 0.1
ALGORITHM = "AWS4-HMAC-SHA256"
CONNECT_TIMEOUT_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 2.0


# The monotonic time by which every call made inside `time_budget` must have answered (None: no budget).
_deadline: ContextVar[float | None] = ContextVar("aws_json_deadline", default=None)


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """One time budget shared by every call made inside the block (the webhook's secret read and
    SendMessage together): an attempt starts only if its worst case (connect + read timeout) fits in
    what is left, so the block ends within `seconds` plus one backoff wait, and a call that cannot
    fit fails with AwsCallFailed instead of running past the function's timeout."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


class AwsCallFailed(RuntimeError):
    """The call failed: an answer that is not retried, or every attempt spent. `code` is the AWS
    error code (None for a connection error or timeout), `status` the HTTP status (None likewise)."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


class Transport(Protocol):
    """One HTTP attempt. Raises OSError (refused, reset, timed out) or http.client.HTTPException
    (a broken answer) when no complete answer arrived."""

    def send(self, request: HttpRequest) -> HttpResponse: ...


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


def environment_credentials() -> Credentials:
    access_key = os.environ.get("AWS_ACCESS_KEY_ID")
    secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret_key:
        raise AwsCallFailed("no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set")
    return Credentials(access_key, secret_key, os.environ.get("AWS_SESSION_TOKEN") or None)


def sign(
    request: HttpRequest, credentials: Credentials, *, service: str, region: str, at: float
) -> HttpRequest:
    """`request` with X-Amz-Date, X-Amz-Security-Token and Authorization (SigV4) added; every header
    it carries is signed. Its URL has no query string."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
    headers = dict(request.headers)
    headers["X-Amz-Date"] = stamp
    if credentials.token:
        headers["X-Amz-Security-Token"] = credentials.token
    canonical = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    signed_headers = ";".join(sorted(canonical))
    path = urllib.parse.urlsplit(request.url).path or "/"
    canonical_request = "\n".join(
        [
            request.method,
            urllib.parse.quote(path, safe="/~"),
            "",
            "".join(f"{name}:{canonical[name]}\n" for name in sorted(canonical)),
            signed_headers,
            hashlib.sha256(request.body).hexdigest(),
        ]
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = f"AWS4{credentials.secret_key}".encode()
    for part in (stamp[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return HttpRequest(request.url, headers, request.body, request.method)


class PersistentConnection:
    """The default transport: one keep-alive HTTP(S) connection to the endpoint per thread. Lambda
    runs one request at a time (one connection); the local runtime serves concurrent posters from
    threads, and an http.client connection must not be shared between them."""

    def __init__(self, endpoint: str, connect_timeout: float, read_timeout: float) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AwsCallFailed(f"endpoint {endpoint!r} is not an http(s) URL")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._per_thread = threading.local()

    @property
    def _connection(self) -> http.client.HTTPConnection | None:
        connection: http.client.HTTPConnection | None = getattr(self._per_thread, "connection", None)
        return connection

    @_connection.setter
    def _connection(self, connection: http.client.HTTPConnection | None) -> None:
        self._per_thread.connection = connection

    def send(self, request: HttpRequest) -> HttpResponse:
        connection = self._open()
        try:
            path = urllib.parse.urlsplit(request.url).path or "/"
            connection.request(request.method, path, body=request.body, headers=request.headers)
            answer = connection.getresponse()
            body = answer.read()
        except BaseException:
            self.close()
            raise
        headers = {name.lower(): value for name, value in answer.getheaders()}
        if answer.will_close:
            self.close()
        return HttpResponse(answer.status, headers, body)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _open(self) -> http.client.HTTPConnection:
        if self._connection is not None and _dropped(self._connection):
            self.close()
        if self._connection is None:
            connection: http.client.HTTPConnection
            if self._https:
                import ssl  # noqa: PLC0415 - only https endpoints pay for it (not a local moto)

                connection = http.client.HTTPSConnection(
                    self._host,
                    self._port,
                    timeout=self._connect_timeout,
                    context=ssl.create_default_context(),
                )
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)
            try:
                connection.connect()
            except BaseException:
                connection.close()
                raise
            assert connection.sock is not None
            connection.sock.settimeout(self._read_timeout)
            self._connection = connection
        return self._connection


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that is readable has been closed by the server (or holds garbage)."""
    if connection.sock is None:
        return True
    try:
        readable, _, _ = select.select([connection.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def open_transport(endpoint: str, connect_timeout: float, read_timeout: float) -> Transport:
    """The transport a client opens on first use (tests route it elsewhere, e.g. to moto)."""
    return PersistentConnection(endpoint, connect_timeout, read_timeout)


def endpoint_url(service_id: str, endpoint_prefix: str, region: str) -> str:
    """AWS_ENDPOINT_URL_<SERVICE ID> (e.g. _SQS, _SECRETS_MANAGER), else AWS_ENDPOINT_URL, else AWS's."""
    variable = "AWS_ENDPOINT_URL_" + service_id.upper().replace(" ", "_")
    configured = os.environ.get(variable) or os.environ.get("AWS_ENDPOINT_URL")
    if configured:
        return configured.rstrip("/")
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{endpoint_prefix}.{region}.{domain}"


@dataclass
class AwsJsonClient:
    """Calls one service's JSON-protocol operations (`X-Amz-Target: <target_prefix>.<Operation>`)."""

    service_id: str  # as in AWS_ENDPOINT_URL_<SERVICE ID>: "SQS", "Secrets Manager"
    signing_name: str  # the SigV4 service name and endpoint prefix: "sqs", "secretsmanager"
    target_prefix: str  # "AmazonSQS", "secretsmanager"
    json_version: str  # "1.0", "1.1"
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS
    read_timeout: float = READ_TIMEOUT_SECONDS
    max_attempts: int = MAX_ATTEMPTS
    region: str = field(default="")
    endpoint: str = field(default="")
    transport: Transport | None = None

    def __post_init__(self) -> None:
        if not self.region:
            self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
        if not self.region:
            raise AwsCallFailed("no AWS region: AWS_REGION and AWS_DEFAULT_REGION are not set")
        if not self.endpoint:
            self.endpoint = endpoint_url(self.service_id, self.signing_name, self.region)

    def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The operation's answer, decoded; AwsCallFailed once it cannot succeed."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        unsigned = HttpRequest(
            self.endpoint + "/",
            {
                "Host": urllib.parse.urlsplit(self.endpoint).netloc,
                "Content-Type": f"application/x-amz-json-{self.json_version}",
                "X-Amz-Target": f"{self.target_prefix}.{operation}",
            },
            body,
        )
        deadline = _deadline.get()
        failure = AwsCallFailed(f"{operation}: not attempted")
        for attempt in range(1, self.max_attempts + 1):
            if (
                deadline is not None
                and time.monotonic() + self.connect_timeout + self.read_timeout > deadline
            ):
                raise AwsCallFailed(
                    f"{operation}: time budget spent (after {attempt - 1} attempts; last: {failure})",
                    code=failure.code,
                    status=failure.status,
                )
            request = sign(
                unsigned,
                environment_credentials(),
                service=self.signing_name,
                region=self.region,
                at=time.time(),
            )
            try:
                response = self._transport().send(request)
            except (OSError, http.client.HTTPException) as error:
                failure = AwsCallFailed(f"{operation}: {type(error).__name__}: {error or 'no answer'}")
            else:
                if 200 <= response.status < 300:
                    return _document(response.body, operation)
                failure = _error(operation, response)
                if not _retryable(failure):
                    raise failure
            if attempt < self.max_attempts:
                time.sleep(random.random() * BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))  # noqa: S311  # nosec B311 - backoff jitter, not a secret
        raise AwsCallFailed(
            f"{failure} (after {self.max_attempts} attempts)", code=failure.code, status=failure.status
        )

    def _transport(self) -> Transport:
        if self.transport is None:
            self.transport = open_transport(self.endpoint, self.connect_timeout, self.read_timeout)
        return self.transport


@dataclass(frozen=True, slots=True)
class AwsJsonService:
    """How one service speaks the JSON protocol (what botocore reads from its service model), so that
    each function's client of it differs only in its timeouts."""

    service_id: str
    signing_name: str
    target_prefix: str
    json_version: str

    def client(
        self, *, connect_timeout: float = CONNECT_TIMEOUT_SECONDS, read_timeout: float = READ_TIMEOUT_SECONDS
    ) -> AwsJsonClient:
        return AwsJsonClient(
            service_id=self.service_id,
            signing_name=self.signing_name,
            target_prefix=self.target_prefix,
            json_version=self.json_version,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )


SQS = AwsJsonService("SQS", "sqs", "AmazonSQS", "1.0")
EVENTBRIDGE = AwsJsonService("EventBridge", "events", "AWSEvents", "1.1")
SECRETS_MANAGER = AwsJsonService("Secrets Manager", "secretsmanager", "secretsmanager", "1.1")


def _retryable(failure: AwsCallFailed) -> bool:
    return (
        failure.status in RETRYABLE_STATUSES
        or failure.code in THROTTLING_CODES
        or failure.code in TRANSIENT_CODES
    )


def _document(body: bytes, operation: str) -> dict[str, Any]:
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        raise AwsCallFailed(f"{operation}: the answer is not JSON") from None
    if not isinstance(document, dict):
        raise AwsCallFailed(f"{operation}: the answer is not a JSON object")
    return document


def _error(operation: str, response: HttpResponse) -> AwsCallFailed:
    """The error as botocore reads it: `__type` (after its `#`), else `code`; a query-compatible
    service (SQS) also names its legacy code in x-amzn-query-error, which botocore prefers."""
    try:
        document = json.loads(response.body) if response.body else {}
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    code = str(document.get("__type") or document.get("code") or "").rsplit("#", 1)[-1] or None
    query_code = response.headers.get("x-amzn-query-error", "").split(";", 1)[0]
    if query_code:
        code = query_code
    message = document.get("message") or document.get("Message") or ""
    return AwsCallFailed(
        f"{operation}: {response.status} {code or 'error'}: {message}".rstrip(": "),
        code=code,
        status=response.status,
    )
