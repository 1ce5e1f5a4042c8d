"""Fault injection at the layers the project talks through, never inside the project's own code.

* `AwsWire` stands between a botocore client and moto, where the network would be: moto's request
  handler is detached from that client and called only for the requests the wire lets through. A fault
  is what the network or the service would do to one HTTP attempt: refuse the connection, answer an
  error without applying the request, apply it and lose the answer, or apply it and have the Lambda
  runtime end the invocation there. botocore's own retry policy (and so its backoff) sees all of it.
  An `adapters.aws_json` client (the webhook's, no botocore) is wired the same way, through its
  transport: its own retry policy sees the same faults.
* `moto_transport` is aws_json's transport under mock_aws: moto's in-process handler (the one botocore
  clients reach through moto's `botocore_stubber`), where the network would be.
* Stripe's side is `harness.fake_stripe.FakeStripe` (the one fake Stripe API: 429, 5xx and dropped
  connections on demand).
* `EventSourceMapping` is Lambda's SQS poller over moto, as tests need it: batches of up to 10 with
  every system attribute, delete what succeeded, and make what failed visible again at once (the
  visibility timeout passing), so that SQS counts receives and moves a message to the DLQ after
  maxReceiveCount.
* `table_state` is the table as readers see it, minus what legitimately depends on the number and time
  of writes, so that a run with faults can be compared with a fault-free run of the same events.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse, HTTPHeaders
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from moto.core.models import botocore_stubber

from adapters.aws_json import AwsJsonClient, HttpRequest, HttpResponse, Transport
from domain.ingress import StripeEvent, queue_message
from events.scenarios import render
from local_runtime.event_source import sqs_event
from local_runtime.lambda_context import LocalLambdaContext
from local_runtime.resources import LocalResources
from local_runtime.template import read_template

# --------------------------------------------------------------------------------------------------
# AWS: the wire between a botocore client and moto
# --------------------------------------------------------------------------------------------------


class LambdaKilled(BaseException):
    """The Lambda runtime ended the invocation here (timeout, out of memory): nothing after it runs,
    no response is returned, and SQS sees none of the batch acknowledged.

    A BaseException, as the runtime's kill is not an error the function's code could catch."""


@dataclass(frozen=True, slots=True)
class ServiceError:
    """The service answers this error and applies nothing. botocore retries it when its policy says
    so (throttling, 5xx); with `exhausted`, it surfaces at once, as botocore raises it once every
    attempt was answered so (without spending the backoff sleeps of those attempts)."""

    code: str
    status: int = 400
    message: str = "injected fault"
    # TransactionCanceledException: one code per item of the transaction (None for the others).
    cancellation: Mapping[int, str] = field(default_factory=dict)
    exhausted: bool = False


@dataclass(frozen=True, slots=True)
class Unreachable:
    """The connection fails before the request reaches the service (botocore retries it)."""


@dataclass(frozen=True, slots=True)
class ResponseLost:
    """The service applies the request; its answer never arrives (a read timeout; botocore retries,
    sending the request again)."""


@dataclass(frozen=True, slots=True)
class KilledAfterApplied:
    """The service applies the request; the Lambda invocation ends before the answer is used."""


type Fault = ServiceError | Unreachable | ResponseLost | KilledAfterApplied

THROTTLED = ServiceError("ProvisionedThroughputExceededException", message="Throughput exceeds the limit")
THROTTLED_EXHAUSTED = dataclasses.replace(THROTTLED, exhausted=True)
REQUEST_THROTTLED_EXHAUSTED = ServiceError("ThrottlingException", message="Rate exceeded", exhausted=True)


def transaction_conflict(item: int = 1) -> ServiceError:
    """Another transaction was writing one of our items (DynamoDB cancels ours; botocore never retries)."""
    return ServiceError(
        "TransactionCanceledException",
        message="Transaction cancelled, please refer cancellation reasons for specific reasons",
        cancellation={item: "TransactionConflict"},
    )


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One HTTP attempt as the wire saw it."""

    service: str
    operation: str
    body: str
    attempt: int  # 1-based, per operation, over the wire's life

    def mentions(self, text: str) -> bool:
        return text in self.body

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body) if self.body else {}


@dataclass(frozen=True, slots=True)
class WireAnswer:
    request: WireRequest
    status: str  # what the service answered ("200", "400 <code>" …), or "unreachable"
    received: bool = True  # False when the answer never reached the client (lost, or the Lambda died)


@dataclass(slots=True)
class _Rule:
    operation: str
    fault: Fault
    when: Callable[[WireRequest], bool]
    remaining: int


class _Body(io.BytesIO):
    """A response body botocore can stream."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()


def _prepared(request: HttpRequest) -> AWSPreparedRequest:
    headers = HTTPHeaders()
    for name, value in request.headers.items():
        headers[name] = value
    return AWSPreparedRequest(request.method, request.url, headers, request.body, stream_output=False)


def _event_name(service: str, request: HttpRequest) -> str:
    operation = request.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
    return f"before-send.{service}.{operation}"


def _http_response(response: AWSResponse | None, url: str) -> HttpResponse:
    if response is None:
        raise ConnectionRefusedError(f"nothing serves {url} under mock_aws")
    return HttpResponse(
        response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content
    )


def _service(client: AwsJsonClient) -> str:
    """botocore's name for the service in event names ("sqs", "secrets-manager")."""
    return client.service_id.lower().replace(" ", "-")


class _MotoTransport:
    """One HTTP attempt of an aws_json client, answered by moto's in-process handler."""

    def send(self, request: HttpRequest) -> HttpResponse:
        service = request.headers["Authorization"].split("/")[3]  # Credential=key/date/region/service/…
        event_name = _event_name(service, request)
        return _http_response(botocore_stubber(event_name, _prepared(request)), request.url)


def moto_transport(endpoint: str, connect_timeout: float, read_timeout: float) -> Transport:
    """Stands in for aws_json.open_transport under mock_aws (monkeypatch it in)."""
    return _MotoTransport()


class _WireTransport:
    """An aws_json client's HTTP attempts, through the wire."""

    def __init__(self, wire: AwsWire, service: str) -> None:
        self._wire = wire
        self._service = service

    def send(self, request: HttpRequest) -> HttpResponse:
        try:
            response = self._wire._send(_prepared(request), _event_name(self._service, request), raw=True)
        except EndpointConnectionError as error:
            raise ConnectionRefusedError(str(error)) from error
        except ReadTimeoutError as error:
            raise TimeoutError(str(error)) from error
        return _http_response(response, request.url)


class AwsWire:
    """The HTTP layer of one or more botocore clients (or aws_json clients), with moto as the service
    behind it."""

    def __init__(self, *clients: Any) -> None:
        # pynamodb keeps one client per model class: the same client may be named several times.
        unique: dict[int, Any] = {id(client): client for client in clients}
        self._clients = list(unique.values())
        self._rules: list[_Rule] = []
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._transports: dict[int, Transport | None] = {}
        self.answers: list[WireAnswer] = []

    def __enter__(self) -> AwsWire:
        for client in self._clients:
            if isinstance(client, AwsJsonClient):
                self._transports[id(client)] = client.transport
                client.transport = _WireTransport(self, _service(client))
                continue
            events = client.meta.events
            events.unregister("before-send", botocore_stubber)
            events.register("before-send", self._send, unique_id=f"fault-wire-{id(self)}")
        return self

    def __exit__(self, *_: object) -> None:
        for client in self._clients:
            if isinstance(client, AwsJsonClient):
                client.transport = self._transports.pop(id(client))
                continue
            events = client.meta.events
            events.unregister("before-send", unique_id=f"fault-wire-{id(self)}")
            events.register("before-send", botocore_stubber)

    def inject(
        self,
        operation: str,
        fault: Fault,
        *,
        when: Callable[[WireRequest], bool] | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` attempts of `operation` that satisfy `when` meet `fault`."""
        self._rules.append(_Rule(operation, fault, when or (lambda _: True), times))

    def pending(self) -> int:
        """Faults injected but not yet met: a test whose fault never fired proves nothing."""
        return sum(rule.remaining for rule in self._rules)

    def recover(self) -> None:
        """The service is healthy again: faults not yet met are dropped."""
        with self._lock:
            self._rules.clear()

    def answered(self, operation: str, status: str = "200") -> list[WireRequest]:
        """The attempts of `operation` the service answered with `status` (received or not)."""
        return [a.request for a in self.answers if a.request.operation == operation and a.status == status]

    def statuses(self, operation: str, when: Callable[[WireRequest], bool]) -> list[str]:
        """The service's answers to the matching attempts, in order; `(lost)` when never received."""
        return [
            a.status + ("" if a.received else " (lost)")
            for a in self.answers
            if a.request.operation == operation and when(a.request)
        ]

    def _send(
        self, request: AWSPreparedRequest, event_name: str, *, raw: bool = False, **kwargs: Any
    ) -> AWSResponse | None:
        """One attempt. `raw`: for an aws_json client, which gets every answer over HTTP (an
        `exhausted` error is then answered to each attempt, and its own retries spend them)."""
        _, service, operation = event_name.split(".", 2)
        body = request.body
        text = body.decode() if isinstance(body, bytes) else str(body or "")
        with self._lock:
            self._attempts[operation] = self._attempts.get(operation, 0) + 1
            wire_request = WireRequest(service, operation, text, self._attempts[operation])
            fault = self._take_fault(wire_request)
        if fault is None:
            return self._deliver(wire_request, request, event_name, **kwargs)
        match fault:
            case Unreachable():
                self.answers.append(WireAnswer(wire_request, "unreachable"))
                raise EndpointConnectionError(endpoint_url=request.url)
            case ServiceError(exhausted=True) if not raw:
                self.answers.append(WireAnswer(wire_request, f"{fault.status} {fault.code}"))
                raise ClientError(_error_document(fault, wire_request), operation)
            case ServiceError():
                self.answers.append(WireAnswer(wire_request, f"{fault.status} {fault.code}"))
                return _error_response(request.url, fault, wire_request)
            case ResponseLost():
                self._deliver(wire_request, request, event_name, received=False, **kwargs)
                raise ReadTimeoutError(endpoint_url=request.url)
            case KilledAfterApplied():
                self._deliver(wire_request, request, event_name, received=False, **kwargs)
                raise LambdaKilled(f"invocation ended after {operation} was applied")

    def _take_fault(self, wire_request: WireRequest) -> Fault | None:
        for rule in self._rules:
            if rule.remaining > 0 and rule.operation == wire_request.operation and rule.when(wire_request):
                rule.remaining -= 1
                return rule.fault
        return None

    def _deliver(
        self,
        wire_request: WireRequest,
        request: AWSPreparedRequest,
        event_name: str,
        *,
        received: bool = True,
        **kwargs: Any,
    ) -> AWSResponse | None:
        """Hand the request to moto, the service behind the wire."""
        response: AWSResponse | None = botocore_stubber(event_name, request, **kwargs)
        status = str(response.status_code) if response is not None else "none"
        self.answers.append(WireAnswer(wire_request, status, received))
        return response


def _error_document(fault: ServiceError, request: WireRequest) -> dict[str, Any]:
    document: dict[str, Any] = {
        "Error": {"Code": fault.code, "Message": fault.message},
        "ResponseMetadata": {"HTTPStatusCode": fault.status, "HTTPHeaders": {}},
    }
    if fault.code == "TransactionCanceledException":
        document["CancellationReasons"] = _cancellation_reasons(fault, request)
    return document


def _cancellation_reasons(fault: ServiceError, request: WireRequest) -> list[dict[str, str]]:
    items = request.document.get("TransactItems", [])
    return [
        {"Code": fault.cancellation[i], "Message": fault.message}
        if i in fault.cancellation
        else {"Code": "None"}
        for i in range(len(items))
    ]


def _error_response(url: str, fault: ServiceError, request: WireRequest) -> AWSResponse:
    """The error as the service's JSON protocol sends it (DynamoDB; SQS, which is query-compatible)."""
    body: dict[str, Any] = {
        "__type": f"com.amazonaws.{request.service}#{fault.code}",
        "message": fault.message,
    }
    if fault.code == "TransactionCanceledException":
        body["CancellationReasons"] = _cancellation_reasons(fault, request)
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "x-amzn-RequestId": f"fault-{request.operation}-{request.attempt}",
        "x-amzn-query-error": f"{fault.code};{'Sender' if fault.status < 500 else 'Receiver'}",
    }
    return AWSResponse(url, fault.status, headers, _Body(json.dumps(body).encode()))


# The write that applies an event is the write of its record: a PutItem, or - when a user lookup
# moves with it - a TransactWriteItems. The record's stamp names the event.
RECORD_WRITES = ("PutItem", "TransactWriteItems")


def _stamped_items(request: WireRequest) -> list[dict[str, Any]]:
    document = request.document
    items = [document.get("Item", {})]
    items += [entry.get("Put", {}).get("Item", {}) for entry in document.get("TransactItems", [])]
    return [item for item in items if "stamp_event" in item]


def record_write_of(event_id: str) -> Callable[[WireRequest], bool]:
    """Matches the write of the record that `event_id` produced (its stamp names the event)."""
    return lambda request: any(item["stamp_event"].get("S") == event_id for item in _stamped_items(request))


def state_write_of(customer_id: str) -> Callable[[WireRequest], bool]:
    """Matches a write of the customer's state item (the one every writer of the customer conditions on)."""
    return lambda request: (
        request.document.get("Item", {}).get("sk", {}).get("S") == "STATE"
        and (request.document["Item"]["pk"]["S"] == f"CUSTOMER#{customer_id}")
    )


def entitlements_write_of(customer_id: str) -> Callable[[WireRequest], bool]:
    return lambda request: (
        request.document.get("Item", {}).get("sk", {}).get("S") == "ENTITLEMENTS"
        and (request.document["Item"]["pk"]["S"] == f"CUSTOMER#{customer_id}")
    )


def after(
    first: Callable[[WireRequest], bool], then: Callable[[WireRequest], bool]
) -> Callable[[WireRequest], bool]:
    """Matches the first request matching `then` once a request matching `first` went by."""
    seen = False

    def matches(request: WireRequest) -> bool:
        nonlocal seen
        if first(request):
            seen = True
            return False
        if seen and then(request):
            seen = False
            return True
        return False

    return matches


STATE_CONFLICT = ServiceError("ConditionalCheckFailedException", message="The conditional request failed")


def committed_events(wire: AwsWire) -> list[str]:
    """The event ids of every record write the table accepted, in order, repeats included."""
    return [
        item["stamp_event"]["S"]
        for answer in wire.answers
        if answer.request.operation in RECORD_WRITES and answer.status == "200"
        for item in _stamped_items(answer.request)
    ]


# --------------------------------------------------------------------------------------------------
# SQS -> worker: the event source mapping
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Invocation:
    message_ids: list[str]
    event_ids: list[str]
    receive_counts: list[int]
    failed: set[str]  # message ids reported in batchItemFailures (all of them when killed or raised)
    killed: bool = False
    error: Exception | None = None  # the handler raised: Lambda retries the whole batch

    def failed_events(self) -> list[str]:
        return [e for m, e in zip(self.message_ids, self.event_ids, strict=True) if m in self.failed]


class EventSourceMapping:
    """Lambda's SQS poller with ReportBatchItemFailures, as far as these tests need it."""

    def __init__(
        self,
        sqs: Any,
        resources: LocalResources,
        handler: Callable[[dict[str, Any], Any], Any],
        *,
        function_name: str = "worker",
    ) -> None:
        self._sqs = sqs
        self._resources = resources
        self._handler = handler
        self._function_name = function_name
        self.invocations: list[Invocation] = []

    def poll(self) -> Invocation | None:
        """One ReceiveMessage and, when it returned messages, one invocation of the handler."""
        messages = self._sqs.receive_message(
            QueueUrl=self._resources.queue_url,
            MaxNumberOfMessages=self._resources.batch_size,
            MessageSystemAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            return None
        event = sqs_event(messages, self._resources.queue_arn, "us-east-1")
        ids = [m["MessageId"] for m in messages]
        invocation = Invocation(
            ids,
            [str(_event_id(m["Body"])) for m in messages],
            [int(m["Attributes"]["ApproximateReceiveCount"]) for m in messages],
            set(),
        )
        # The worker's Timeout from the template: its time budget starts records only while enough is left.
        worker = read_template().worker
        context = LocalLambdaContext(self._function_name, worker.memory_mb, worker.timeout)
        try:
            response = self._handler(event, context)
        except LambdaKilled:
            invocation.killed = True
            invocation.failed = set(ids)
        except Exception as error:  # e.g. Powertools' BatchProcessingError when every record failed
            invocation.error = error
            invocation.failed = set(ids)
        else:
            invocation.failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures") or []}
        self._acknowledge([m for m in messages if m["MessageId"] not in invocation.failed])
        self._visibility_timeout_passes([m for m in messages if m["MessageId"] in invocation.failed])
        self.invocations.append(invocation)
        return invocation

    def drain(self, max_invocations: int = 100) -> list[Invocation]:
        """Poll until the queue returns nothing (what failed too often is then in the DLQ)."""
        done: list[Invocation] = []
        for _ in range(max_invocations):
            invocation = self.poll()
            if invocation is None:
                return done
            done.append(invocation)
        raise AssertionError(f"queue not drained after {max_invocations} invocations")

    def _acknowledge(self, messages: Sequence[Mapping[str, Any]]) -> None:
        if messages:
            response = self._sqs.delete_message_batch(
                QueueUrl=self._resources.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
            assert not response.get("Failed"), response

    def _visibility_timeout_passes(self, messages: Sequence[Mapping[str, Any]]) -> None:
        if messages:
            self._sqs.change_message_visibility_batch(
                QueueUrl=self._resources.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(messages)
                ],
            )


def _event_id(body: str) -> object:
    try:
        return json.loads(body).get("id")
    except (ValueError, AttributeError):
        return None


def send_events(sqs: Any, queue_url: str, events: Sequence[Mapping[str, Any]]) -> None:
    """Queue events as the webhook does (body as sent, group by customer, deduplicated by event id)."""
    for event in events:
        text = render(event).decode()
        message = queue_message(
            StripeEvent(
                str(event["id"]),
                str(event["type"]),
                bool(event.get("livemode")),
                event.get("account"),
                False,
                dict(event),
                text,
            )
        )
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=message.body,
            MessageGroupId=message.group_id,
            MessageDeduplicationId=message.deduplication_id,
        )


def queue_depth(sqs: Any, queue_url: str) -> int:
    """ApproximateNumberOfMessages: the queue attribute behind CloudWatch's
    ApproximateNumberOfMessagesVisible, the metric the template's DeadLetterQueueAlarm watches."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


# --------------------------------------------------------------------------------------------------
# The table, comparable across runs
# --------------------------------------------------------------------------------------------------

VOLATILE = frozenset({"version", "updated_at", "records_version", "expires_at", "applied_at"})
# What the entitlements item's last access change knew (for its "entitlements changed" event): the item
# is not rewritten when only these would change, so they depend on the delivery order.
AS_OF_LAST_CHANGE = frozenset({"cause_event_id", "user_id", "account"})


def table_items(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def table_state(client: Any, table: str) -> dict[tuple[str, str], str]:
    """Every item but the ledger and the reconciler's own, minus versions and write times. A record
    fetched from Stripe (by the worker, `fetch_…`, or by the reconciler, `sync_…`) is stamped with the
    fetch time (and an invoice judged as of it): those become `<fetched>`, since two runs fetch at
    different times."""
    state = {}
    for item in table_items(client, table):
        if item["pk"]["S"].startswith(("EVENT#", "RECONCILE")):
            continue
        dropped = VOLATILE | AS_OF_LAST_CHANGE if item["sk"]["S"] == "ENTITLEMENTS" else VOLATILE
        kept = {k: v for k, v in item.items() if k not in dropped}
        if kept.get("stamp_event", {}).get("S", "").startswith(("fetch_", "sync_")):
            kept["stamp_event"] = {"S": "<fetched>"}
            kept["stamp_created"] = {"N": "<fetched>"}
            body = json.loads(kept["body"]["S"])
            if "as_of" in body:
                body["as_of"] = "<fetched>"
            kept["body"] = {"S": json.dumps(body, sort_keys=True)}
        if item["sk"]["S"] == "STATE":
            kept["records"] = {"B": _state_records(item["records"]["B"])}
        if item["pk"]["S"].startswith("USER#") and item["sk"]["S"] == "ENTITLEMENTS":
            # A user item: its write count and each customer's state version depend on the run.
            kept.pop("revision", None)
            parts = json.loads(item["parts"]["S"])
            kept["parts"] = {customer: raw["entitlements"] for customer, raw in parts.items()}
        state[(item["pk"]["S"], item["sk"]["S"])] = json.dumps(kept, sort_keys=True)
    return state


def _state_records(compressed: bytes) -> list[Any]:
    """The state item's live records, with fetched stamps normalised as record items' are."""
    records = json.loads(zlib.decompress(compressed))
    for record in records:
        if str(record[5]).startswith(("fetch_", "sync_")):
            record[3] = record[5] = "<fetched>"
            if "as_of" in record[6]:
                record[6]["as_of"] = "<fetched>"
    return records


def ledger(client: Any, table: str) -> list[str]:
    """The events the table holds as applied to customers: the stamps of the customers' records (a
    stamp replaced the EVENT# ledger, which only customer events wrote; a fetched snapshot's stamp
    names the fetch time, `<fetched>` as in `table_state`)."""
    return sorted(
        "<fetched>" if stamp.startswith(("fetch_", "sync_")) else stamp
        for item in table_items(client, table)
        if item["pk"]["S"].startswith("CUSTOMER#") and (stamp := item.get("stamp_event", {}).get("S"))
    )


def entitlement_versions(client: Any, table: str) -> dict[str, int]:
    return {
        item["pk"]["S"]: int(item["version"]["N"])
        for item in table_items(client, table)
        if item["sk"]["S"] == "ENTITLEMENTS"
    }
