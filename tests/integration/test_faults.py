"""Fault injection (issue 7, part 1): the pipeline under the failures AWS and Stripe really produce.

Faults are injected at the layers the project talks through (tests/support/faults.py): on the
wire between a botocore client and moto, and on a local Stripe API the SDK reaches through
STRIPE_API_BASE. The project's own functions are never patched. Every case ends by comparing the
table with the table of a fault-free run of the same events (minus versions, write times and fetch
times): nothing lost, nothing applied twice, no wrong record.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import stripe._http_client
from moto import mock_aws

from adapters import aws_json, table_items
from adapters.event_queue import MAX_ATTEMPTS, queue_client
from adapters.fetched_queue import FetchedQueue, sqs_client
from adapters.reconcile_cursor import CursorStore
from adapters.reconciler import Reconciler, bind_table
from adapters.stripe_api import MAX_NETWORK_RETRIES, StripeApi
from domain.reconcile import Everything, ReconcileReport
from domain.sync import MAX_CONFLICT_RETRIES
from events.scenarios import Scenario, ScenarioParams, build, render
from events.stripe import objects as samples
from handlers import webhook, worker
from harness.fake_stripe import FakeStripe
from harness.fake_stripe import Fault as StripeFault
from local_runtime.resources import LocalResources, create_resources
from local_runtime.template import read_template
from ops.dlq import DEDUPLICATION_WINDOW_SECONDS, DeadLetterQueue
from tests.support.faults import (
    REQUEST_THROTTLED_EXHAUSTED,
    STATE_CONFLICT,
    THROTTLED,
    THROTTLED_EXHAUSTED,
    AwsWire,
    EventSourceMapping,
    Fault,
    KilledAfterApplied,
    ResponseLost,
    ServiceError,
    Unreachable,
    WireRequest,
    after,
    committed_events,
    entitlement_versions,
    entitlements_write_of,
    ledger,
    moto_transport,
    queue_depth,
    record_write_of,
    send_events,
    state_write_of,
    table_state,
)
from tests.support.moto_account import forget_aws_clients, isolate_aws

WEBHOOK_SECRET = "whsec_faults_0123456789abcdef"
API_KEY = "sk_test_faults0123456789"
SETTLED = {"applied", "stale", "duplicate", "ignored", "guest", "unmatched"}


# --------------------------------------------------------------------------------------------------
# The stack: template resources in moto, the worker pointed at them, runs to compare
# --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """What a run left in the table."""

    state: dict[tuple[str, str], str]
    ledger: list[str]
    versions: dict[str, int]


@dataclass
class Stack:
    aws: Aws
    resources: LocalResources
    esm: EventSourceMapping

    @property
    def table(self) -> str:
        return self.resources.table_name

    def wire(self, *more_clients: Any) -> AwsWire:
        """The wire under every client the table's models use (pynamodb keeps one per model class:
        the worker's, the reconciler's cursor), and under `more_clients`."""
        return AwsWire(
            *more_clients, *(model._get_connection().connection.client for model in table_models())
        )

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        send_events(self.aws.sqs, self.resources.queue_url, events)

    def run(self) -> Run:
        return Run(
            table_state(self.aws.dynamodb, self.table),
            ledger(self.aws.dynamodb, self.table),
            entitlement_versions(self.aws.dynamodb, self.table),
        )

    def dlq_depth(self) -> int:
        return queue_depth(self.aws.sqs, self.resources.dead_letter_queue_url)

    def queue_depth(self) -> int:
        return queue_depth(self.aws.sqs, self.resources.queue_url)


@dataclass
class Aws:
    sqs: Any
    dynamodb: Any
    monkeypatch: pytest.MonkeyPatch
    stacks: int = 0

    def stack(self) -> Stack:
        """A fresh copy of the template's queue, DLQ and table; the webhook and the worker use it."""
        self.stacks += 1
        resources = create_resources(
            read_template(stack_name=f"faults{self.stacks}"), self.sqs, self.dynamodb
        )
        self.monkeypatch.setenv("TABLE_NAME", resources.table_name)
        self.monkeypatch.setenv("QUEUE_URL", resources.queue_url)
        self.monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", resources.dead_letter_queue_url)
        worker.settings.cache_clear()
        worker._applier.cache_clear()
        forget_table_connections()
        worker.settings()  # binds the table models (new botocore clients) before any wire is laid
        return Stack(self, resources, EventSourceMapping(self.sqs, resources, worker.lambda_handler))

    def fault_free(self, events: Sequence[dict[str, Any]]) -> Run:
        """The reference: the same events through a fresh stack without faults (once per module for
        the same events and Stripe settings; a run is pure data)."""
        import os

        key = (tuple(e["id"] for e in events), os.environ.get("STRIPE_API_KEY"))
        if key not in REFERENCE_RUNS:
            stack = self.stack()
            stack.send(events)
            invocations = stack.esm.drain()
            assert all(not i.failed for i in invocations), "the reference run must not fail"
            REFERENCE_RUNS[key] = stack.run()
        return REFERENCE_RUNS[key]


REFERENCE_RUNS: dict[tuple[tuple[str, ...], str | None], Run] = {}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    isolate_aws(
        monkeypatch,
        "STRIPE_SECRET_ID",
        "STRIPE_API_KEY",
        "STRIPE_API_BASE",
        "SIGNATURE_TOLERANCE_SECONDS",
        "LOG_LEVEL",
    )
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    # The webhook's client (adapters.aws_json) reaches moto's in-process handler through its transport.
    monkeypatch.setattr(aws_json, "open_transport", moto_transport)
    forget_aws_clients()
    with mock_aws():
        yield Aws(boto3.client("sqs"), boto3.client("dynamodb"), monkeypatch)
    forget_aws_clients()
    forget_table_connections()


def table_models() -> list[type[table_items.SyncItem]]:
    """SyncItem and every model derived from it (the reconciler's cursor items included)."""
    models: list[type[table_items.SyncItem]] = []
    pending = [table_items.SyncItem]
    while pending:
        model = pending.pop()
        models.append(model)
        pending += model.__subclasses__()
    return models


def forget_table_connections() -> None:
    """Drop pynamodb's cached connection of every model (table_items.configure() resets only the
    worker's), so that each model's botocore client is created anew for the stack now bound, where a
    wire can be laid under all of them."""
    for model in table_models():
        model._connection = None


@pytest.fixture
def outcomes(caplog: pytest.LogCaptureFixture) -> Callable[[], list[tuple[str, str]]]:
    """(event id, outcome) of every event the worker settled, from its log, in order."""
    caplog.set_level(logging.INFO, logger=worker.logger.name)

    def read() -> list[tuple[str, str]]:
        return [
            (record.event_id, record.outcome)
            for record in caplog.records
            if record.name == worker.logger.name and hasattr(record, "outcome")
        ]

    return read


def customers(count: int, events_each: int) -> list[Scenario]:
    """`count` customers signing up (the first `events_each` events of each)."""
    scenarios = [
        build("signup_paid", ScenarioParams(customer_id=f"cus_Fault{i:02d}", user_id=f"user_{i:02d}"))
        for i in range(count)
    ]
    return [dataclasses.replace(s, events=s.events[:events_each]) for s in scenarios]


def round_robin(scenarios: Sequence[Scenario]) -> list[dict[str, Any]]:
    """Each customer's events in order, interleaved: every batch of 10 holds one event per customer,
    and SQS FIFO keeps a customer's later events back while an earlier one is in flight."""
    longest = max(len(s.events) for s in scenarios)
    return [s.events[i] for i in range(longest) for s in scenarios if i < len(s.events)]


def assert_nothing_applied_twice(wire: AwsWire) -> None:
    repeats = [event for event, n in Counter(committed_events(wire)).items() if n > 1]
    assert repeats == [], "a transaction the table accepted twice for one event"


def assert_every_event_settled(events: Sequence[dict[str, Any]], settled: list[tuple[str, str]]) -> None:
    """None lost: every event ended applied, stale, duplicate (or ignored), as the worker logged."""
    final = dict(settled)
    assert {e["id"] for e in events} <= final.keys()
    assert set(final.values()) <= SETTLED


# --------------------------------------------------------------------------------------------------
# 1. Ingress: SQS failing under the webhook
# --------------------------------------------------------------------------------------------------


class WebhookContext:
    aws_request_id = "faults-webhook"


def post(request_factory: Callable[..., dict[str, Any]], event: dict[str, Any]) -> int:
    """Stripe delivering `event` (each retry is signed afresh over the same bytes)."""
    response = webhook.lambda_handler(request_factory(render(event), secret=WEBHOOK_SECRET), WebhookContext())
    return int(response["statusCode"])


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(ServiceError("RequestThrottled", exhausted=True), id="throttled"),
        pytest.param(ServiceError("InternalError", status=500, exhausted=True), id="500"),
        pytest.param(Unreachable(), id="unreachable"),
        pytest.param(ResponseLost(), id="stored-but-answer-lost"),
    ],
)
def test_sqs_failing_at_ingress_gives_5xx_and_stripes_retry_is_queued_once(
    aws: Aws, webhook_http_event_factory: Callable[..., dict[str, Any]], fault: Fault
) -> None:
    events = build("signup_paid").events
    reference = aws.fault_free(events)
    stack = aws.stack()
    victim = events[4]["id"]

    with AwsWire(queue_client()) as wire:
        # SQS fails this event's request through every attempt the client makes: connection errors,
        # lost answers, throttling and 500 all go through its retries.
        wire.inject("SendMessage", fault, when=lambda r: r.mentions(victim), times=100)
        statuses = [post(webhook_http_event_factory, event) for event in events]
        assert statuses == [200] * 4 + [503] + [200] * 4, "never 2xx for an event SQS did not confirm"
        stored = 9 if isinstance(fault, ResponseLost) else 8
        assert stack.queue_depth() == stored

        wire.recover()  # SQS answers again; Stripe retries with the same body.
        assert post(webhook_http_event_factory, events[4]) == 200
    assert stack.queue_depth() == 9, "SQS FIFO deduplicated the retry of a message it had stored"

    invocations = stack.esm.drain()
    received = [event for i in invocations for event in i.event_ids]
    assert sorted(received) == sorted(e["id"] for e in events), "each event queued exactly once"
    assert stack.run().state == reference.state


class TooManyTries(AssertionError):
    """The webhook spent more SQS attempts than adapters.event_queue means it to."""


def test_the_webhook_tries_sqs_at_most_max_attempts_times(
    aws: Aws, webhook_http_event_factory: Callable[..., dict[str, Any]]
) -> None:
    aws.stack()
    with AwsWire(queue_client()) as wire:
        wire.inject("SendMessage", Unreachable(), times=100)
        assert post(webhook_http_event_factory, build("signup_paid").events[0]) == 503
    if len(wire.answers) != MAX_ATTEMPTS:
        raise TooManyTries(f"{len(wire.answers)} tries, MAX_ATTEMPTS = {MAX_ATTEMPTS}")


def test_a_throttle_that_clears_within_the_clients_retries_is_queued_once(
    aws: Aws, webhook_http_event_factory: Callable[..., dict[str, Any]]
) -> None:
    stack = aws.stack()
    event = build("signup_paid").events[0]
    with AwsWire(queue_client()) as wire:
        wire.inject("SendMessage", ServiceError("RequestThrottled"))
        assert post(webhook_http_event_factory, event) == 200
    assert [a.status for a in wire.answers] == ["400 RequestThrottled", "200"]
    assert stack.queue_depth() == 1


# --------------------------------------------------------------------------------------------------
# 2. DynamoDB throttling and transaction conflicts under the worker
# --------------------------------------------------------------------------------------------------


def test_throttles_and_conflicts_in_a_batch_fail_only_their_messages_and_redelivery_loses_nothing(
    aws: Aws, outcomes: Callable[[], list[tuple[str, str]]]
) -> None:
    scenarios = customers(10, events_each=2)
    events = round_robin(scenarios)
    reference = aws.fault_free(events)
    stack = aws.stack()
    stack.send(events)
    throttled_write = scenarios[2].events[0]["id"]
    throttled_read = scenarios[5].events[0]["id"]
    conflicted = scenarios[7].events[0]["id"]

    with stack.wire() as wire:
        # As botocore raises them once its attempts are spent (the next test spends them for real).
        wire.inject("PutItem", THROTTLED_EXHAUSTED, when=record_write_of(throttled_write))
        wire.inject(
            "BatchGetItem", REQUEST_THROTTLED_EXHAUSTED, when=lambda r: r.mentions('"CUSTOMER#cus_Fault05"')
        )
        # Another writer moves the customer's state at every try the worker makes in this delivery.
        wire.inject(
            "PutItem",
            STATE_CONFLICT,
            when=state_write_of(str(scenarios[7].customer_id)),
            times=MAX_CONFLICT_RETRIES,
        )
        # ... and once only: the worker reloads the customer and writes again in the same delivery.
        wire.inject("PutItem", STATE_CONFLICT, when=state_write_of(str(scenarios[8].customer_id)))

        first = stack.esm.poll()
        assert first is not None
        assert len(first.event_ids) == 10
        assert sorted(first.failed_events()) == sorted([throttled_write, throttled_read, conflicted])
        later = stack.esm.drain()
        assert wire.pending() == 0

    assert all(not i.failed for i in later)
    assert stack.dlq_depth() == 0
    # The failed three came back first, ahead of their customers' later events (FIFO), once each.
    redelivered = later[0]
    assert redelivered.event_ids[:3] == [throttled_write, throttled_read, conflicted]
    assert redelivered.receive_counts[:3] == [2, 2, 2]
    assert_nothing_applied_twice(wire)
    assert_every_event_settled(events, outcomes())
    run = stack.run()
    assert run.ledger == reference.ledger, "every event applied once, as without faults"
    assert run.versions == reference.versions, "access changed as many times as without faults"
    assert run.state == reference.state


def test_a_throttle_is_retried_by_botocore_and_fails_the_message_only_once_its_attempts_are_spent(
    aws: Aws,
) -> None:
    events = build("signup_paid").events[:3]
    reference = aws.fault_free(events)
    stack = aws.stack()
    stack.send(events)
    once, always = events[1]["id"], events[2]["id"]
    pynamodb_attempts = 1 + 3  # pynamodb's default max_retry_attempts, as botocore's total_max_attempts

    with stack.wire() as wire:
        wire.inject("PutItem", THROTTLED, when=record_write_of(once))
        wire.inject("PutItem", THROTTLED, when=record_write_of(always), times=pynamodb_attempts)
        first = stack.esm.poll()
        assert first is not None
        assert first.failed_events() == [always]
        stack.esm.drain()
        assert wire.pending() == 0

    tries = {event: wire.statuses("PutItem", record_write_of(event)) for event in (once, always)}
    throttled = "400 ProvisionedThroughputExceededException"
    assert tries == {once: [throttled, "200"], always: [throttled] * pynamodb_attempts + ["200"]}
    assert_nothing_applied_twice(wire)
    assert stack.run().state == reference.state


def test_a_message_retried_after_its_customers_later_events_ends_stale_never_over_them(
    aws: Aws, outcomes: Callable[[], list[tuple[str, str]]]
) -> None:
    """One customer's burst arrives in one batch; a throttle fails one message in the middle; the
    others are acknowledged; the retry is older than what is stored and changes nothing."""
    events = build("signup_paid").events
    reference = aws.fault_free(events)
    stack = aws.stack()
    stack.send(events)
    finalized = next(e["id"] for e in events if e["type"] == "invoice.finalized")

    with stack.wire() as wire:
        wire.inject("PutItem", THROTTLED_EXHAUSTED, when=record_write_of(finalized))
        invocations = stack.esm.drain()
        assert wire.pending() == 0

    assert [i.failed_events() for i in invocations] == [[finalized], []]
    assert invocations[1].event_ids == [finalized]
    assert outcomes()[-1] == (finalized, "stale")
    assert_nothing_applied_twice(wire)
    assert_every_event_settled(events, outcomes())
    run = stack.run()
    assert run.ledger == sorted(set(reference.ledger) - {finalized})
    assert run.state == reference.state


# --------------------------------------------------------------------------------------------------
# 3. The worker dying after the write, before SQS hears of it
# --------------------------------------------------------------------------------------------------


# An event's writes come in order (record, state, entitlements); the invocation may die after any.
KILL_POINTS = {
    "record": lambda event, customer: record_write_of(event),
    "state": lambda event, customer: after(record_write_of(event), state_write_of(customer)),
    "entitlements": lambda event, customer: after(record_write_of(event), entitlements_write_of(customer)),
}


def _index_of(events: Sequence[dict[str, Any]], event_type: str) -> int:
    return next(i for i, event in enumerate(events) if event["type"] == event_type)


@pytest.mark.parametrize("written", sorted(KILL_POINTS))
def test_an_invocation_killed_after_a_write_is_redelivered_whole_and_the_retry_changes_nothing(
    aws: Aws, outcomes: Callable[[], list[tuple[str, str]]], written: str
) -> None:
    scenario = build("signup_paid")
    events = scenario.events
    reference = aws.fault_free(events)
    stack = aws.stack()
    stack.send(events)
    # The state is written only when a live record changes (here the invoice being paid), the
    # entitlements item only when access changes (here the subscription turning active).
    killed_at = {
        "record": 4,
        "state": _index_of(events, "invoice.paid"),
        "entitlements": _index_of(events, "customer.subscription.updated"),
    }[written]

    with stack.wire() as wire:
        killed = KILL_POINTS[written](events[killed_at]["id"], str(scenario.customer_id))
        wire.inject("PutItem", KilledAfterApplied(), when=killed)
        invocations = stack.esm.drain()
        assert wire.pending() == 0
        state_after_kill_and_retry = stack.run()

    first, retry = invocations
    assert first.killed
    assert retry.event_ids == [e["id"] for e in events], "the whole batch comes back, in order"
    assert retry.receive_counts == [2] * len(events)
    assert not retry.failed
    retried = outcomes()[-len(events) :]
    assert [event for event, _ in retried] == retry.event_ids
    # Already applied: a no-op, "duplicate" (the record is still its own) or "stale" (a later event of
    # the batch had replaced it before the kill); the killed write itself had landed.
    assert {outcome for _, outcome in retried[: killed_at + 1]} <= {"duplicate", "stale"}
    assert retried[killed_at] == (events[killed_at]["id"], "duplicate")
    assert {outcome for _, outcome in retried[killed_at + 1 :]} == {"applied"}
    assert_nothing_applied_twice(wire)
    assert state_after_kill_and_retry.ledger == reference.ledger
    assert state_after_kill_and_retry.versions == reference.versions
    assert state_after_kill_and_retry.state == reference.state


def test_a_write_whose_answer_is_lost_is_resent_by_botocore_and_cancelled_as_a_duplicate(
    aws: Aws, outcomes: Callable[[], list[tuple[str, str]]]
) -> None:
    events = build("signup_paid").events
    reference = aws.fault_free(events)
    stack = aws.stack()
    stack.send(events)
    lost = events[5]["id"]

    with stack.wire() as wire:
        wire.inject("PutItem", ResponseLost(), when=record_write_of(lost))
        invocations = stack.esm.drain()

    assert [i.failed for i in invocations] == [set()]
    resent = wire.statuses("PutItem", record_write_of(lost))
    assert resent == ["200 (lost)", "400"], (
        "applied, answer lost; the resend is refused by the record's stamp"
    )
    assert (lost, "duplicate") in outcomes()
    assert_nothing_applied_twice(wire)
    run = stack.run()
    assert run.versions == reference.versions
    assert run.state == reference.state


def user_id_change() -> list[dict[str, Any]]:
    """A customer whose metadata moves from one application user to another."""
    t0 = 1_767_225_600
    first, second = samples.IdFactory("faults-user-1"), samples.IdFactory("faults-user-2")
    created = samples.customer(first, id="cus_FaultUser", created=t0, metadata={"user_id": "user_old"})
    updated = samples.customer(second, id="cus_FaultUser", created=t0, metadata={"user_id": "user_new"})
    return [
        samples.event(first, "customer.created", created, created=t0),
        samples.event(second, "customer.updated", updated, created=t0 + 60),
    ]


class OldUserStillLinked(AssertionError):
    """USER#<old user> still points at the customer after its metadata named another user."""


@pytest.mark.parametrize(
    ("operation", "fault"),
    [
        pytest.param("TransactWriteItems", KilledAfterApplied(), id="killed-after-write"),
        pytest.param("TransactWriteItems", ResponseLost(), id="write-answer-lost"),
        pytest.param("GetItem", THROTTLED_EXHAUSTED, id="lookup-read-throttled"),
    ],
)
def test_a_user_id_change_interrupted_after_its_write_still_unlinks_the_old_user(
    aws: Aws, operation: str, fault: Fault
) -> None:
    events = user_id_change()
    reference = aws.fault_free(events)
    assert ("USER#test#user_old", "CUSTOMER") not in reference.state
    stack = aws.stack()
    stack.send(events)
    matches: Callable[[WireRequest], bool] = (
        record_write_of(events[1]["id"]) if operation == "TransactWriteItems" else lambda _: True
    )

    with stack.wire() as wire:
        wire.inject(operation, fault, when=matches)
        stack.esm.drain()
        assert wire.pending() == 0

    state = stack.run().state
    if ("USER#test#user_old", "CUSTOMER") in state:
        raise OldUserStillLinked("the old user still finds the customer")
    assert state == reference.state


# --------------------------------------------------------------------------------------------------
# 4. Stripe failing while the worker settles ties
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fast_sdk_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stripe SDK waits 0.5 s and more between its retries of 5xx and dropped connections; the
    retry logic (which failures, how many times) is the same with shorter waits."""
    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.001)
    monkeypatch.setattr(stripe._http_client.HTTPClient, "MAX_DELAY", 0.002)


@pytest.fixture
def signup_burst(fast_sdk_retries: None) -> Iterator[tuple[Scenario, FakeStripe]]:
    scenario = build("signup_burst")
    with FakeStripe() as stripe_api:
        stripe_api.load(scenario.api_objects, scenario.api_lists)
        yield scenario, stripe_api


def use_stripe(aws: Aws, stripe_api: FakeStripe) -> None:
    aws.monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    aws.monkeypatch.setenv("STRIPE_API_BASE", stripe_api.url)


def statuses(run: Run) -> dict[str, str]:
    """The stored status of the subscription and of the invoice."""
    found = {}
    for (_, sk), item in run.state.items():
        kind = sk.partition("#")[0]
        if kind in ("SUBSCRIPTION", "INVOICE"):
            found[kind] = json.loads(json.loads(item)["body"]["S"])["status"]
    return found


def assert_the_truth_won(run: Run) -> None:
    """The records say what the Stripe API says now, not what some event of the burst said."""
    assert statuses(run) == {"SUBSCRIPTION": "active", "INVOICE": "paid"}


@pytest.mark.parametrize(
    ("faults", "message_fails"),
    [
        pytest.param([500, 500], False, id="500-retried-by-the-sdk"),
        pytest.param(["drop"], False, id="connection-dropped-retried-by-the-sdk"),
        pytest.param([429], True, id="429-fails-the-message"),
        pytest.param([503] * (1 + MAX_NETWORK_RETRIES), True, id="503-beyond-the-sdks-retries"),
    ],
)
def test_stripe_failing_during_a_tie_is_retried_and_never_settles_on_a_guess(
    aws: Aws,
    signup_burst: tuple[Scenario, FakeStripe],
    outcomes: Callable[[], list[tuple[str, str]]],
    faults: list[StripeFault],
    message_fails: bool,
) -> None:
    scenario, stripe_api = signup_burst
    use_stripe(aws, stripe_api)
    reference = aws.fault_free(scenario.events)
    stripe_api.requests.clear()
    stack = aws.stack()
    stack.send(scenario.events)

    for fault in faults:
        stripe_api.fail(fault)
    invocations = stack.esm.drain()

    assert stripe_api.pending() == 0
    # Two ties cost one fetch each (the invoice's, the subscription's), whatever failed on the way.
    assert stripe_api.outcomes() == [str(f) for f in faults] + ["200", "200"]
    tie = next(e["id"] for e in scenario.events if e["type"] == "invoice.finalized")
    if message_fails:
        assert [i.failed_events() for i in invocations] == [[tie], []]
    else:
        assert [i.failed for i in invocations] == [set()]
    assert_every_event_settled(scenario.events, outcomes())
    run = stack.run()
    assert_the_truth_won(run)
    assert run.state == reference.state


def test_stripe_rate_limiting_for_long_parks_the_ties_in_the_dlq_and_their_redrive_lands_right(
    aws: Aws, signup_burst: tuple[Scenario, FakeStripe]
) -> None:
    scenario, stripe_api = signup_burst
    use_stripe(aws, stripe_api)
    reference = aws.fault_free(scenario.events)
    stack = aws.stack()
    stack.send(scenario.events)
    # Each of these finds a stored snapshot of the same second: a tie only the API can settle.
    ties = [
        e["id"]
        for e in scenario.events
        if e["type"]
        in ("invoice.finalized", "invoice.paid", "invoice.payment_succeeded", "customer.subscription.updated")
    ]

    stripe_api.fail(429, times=1000)
    invocations = stack.esm.drain()
    assert {event for i in invocations for event in i.failed_events()} == set(ties)
    assert stack.dlq_depth() == len(ties), "the ties went to the DLQ rather than being guessed"
    # Meanwhile the table keeps the first snapshots: nothing the ranking would have guessed.
    assert statuses(stack.run()) == {"SUBSCRIPTION": "incomplete", "INVOICE": "draft"}

    stripe_api.recover()
    redrive = DeadLetterQueue(aws.sqs, stack.resources.dead_letter_queue_url, clock=later)
    for message in redrive.browse():
        redrive.check_redrivable(message)
        redrive.redrive(message, stack.resources.queue_url)
    stack.esm.drain()
    assert stack.dlq_depth() == 0
    run = stack.run()
    assert_the_truth_won(run)
    assert run.state == reference.state


def later() -> float:
    """The operator redrives once SQS's 5-minute deduplication window has passed (the DLQ keeps each
    message's original SentTimestamp)."""
    return time.time() + DEDUPLICATION_WINDOW_SECONDS + 1


# --------------------------------------------------------------------------------------------------
# 5. Poison messages: parked at once, the DLQ and its alarm, redrive
# --------------------------------------------------------------------------------------------------


def test_a_poison_message_is_parked_at_its_first_try_and_a_corrected_redrive_applies_once(
    aws: Aws, outcomes: Callable[[], list[tuple[str, str]]]
) -> None:
    events = build("signup_paid").events
    reference = aws.fault_free(events)
    stack = aws.stack()
    poison_index = next(i for i, e in enumerate(events) if e["type"] == "customer.subscription.updated")
    poison = json.loads(json.dumps(events[poison_index]))
    del poison["data"]["object"]["status"]
    stack.send([*events[:poison_index], poison, *events[poison_index + 1 :]])

    with stack.wire() as wire:
        invocations = stack.esm.drain()
    # Retrying cannot fix an unreadable payload: the worker parks it at once, reported as done, and
    # its customer's later events flow on (issue 17).
    tries = [i for i in invocations if poison["id"] in i.event_ids]
    assert [i.failed_events() for i in tries] == [[]]
    assert [i.receive_counts[i.event_ids.index(poison["id"])] for i in tries] == [1]
    assert stack.queue_depth() == 0
    # The condition of template.yaml's DeadLetterQueueAlarm: ApproximateNumberOfMessagesVisible > 0.
    assert stack.dlq_depth() == 1
    assert poison["id"] not in committed_events(wire)

    # Fixed: the operator sends the event back with its body corrected, under the same event id.
    dlq = DeadLetterQueue(aws.sqs, stack.resources.dead_letter_queue_url, clock=later)
    [parked] = dlq.browse()
    assert parked.event["id"] == poison["id"]
    corrected = dataclasses.replace(parked, body=render(events[poison_index]).decode())
    dlq.check_redrivable(corrected)
    dlq.redrive(corrected, stack.resources.queue_url)
    assert stack.dlq_depth() == 0

    with stack.wire() as wire:
        stack.esm.drain()
    assert committed_events(wire) == [poison["id"]], "applied once"
    assert (poison["id"], "applied") in outcomes()
    run = stack.run()
    assert run.ledger == reference.ledger
    assert run.state == reference.state


def test_a_dispute_before_its_payment_is_stored_never_dead_lettered_and_applied_with_the_payment(
    aws: Aws, outcomes: Callable[[], list[tuple[str, str]]]
) -> None:
    """Without an API key a dispute cannot find its customer until the payment is known: it is stored
    unmatched at once (no retry, nothing in the DLQ) and the payment's arrival applies it."""
    events = build("purchase_dispute_lost").events
    reference = aws.fault_free(events)
    stack = aws.stack()
    disputes = [e for e in events if e["type"].startswith("charge.dispute.")]
    others = [e for e in events if e not in disputes]
    seen = len(outcomes())  # the fault-free reference run logged its own
    stack.send(disputes)

    invocations = stack.esm.drain()
    assert len(invocations) == 1
    assert not any(i.failed_events() for i in invocations)
    assert stack.dlq_depth() == 0
    assert [outcome for _, outcome in outcomes()[seen:]] == ["unmatched"] * len(disputes)

    stack.send(others)
    stack.esm.drain()
    assert stack.dlq_depth() == 0
    run = stack.run()
    # The adopted dispute carries its own event's stamp, as when applied in order (stamps replaced
    # the ledger; a redelivery is stale against the stored copy either way).
    assert sorted(run.ledger) == sorted(reference.ledger)
    assert run.state == reference.state


# --------------------------------------------------------------------------------------------------
# 4b. Stripe and AWS failing while the reconciler repairs drift
# --------------------------------------------------------------------------------------------------

RECONCILE_START = 1_767_312_000  # the reconciler runs a day after the signups below


@dataclass
class ReconcileClock:
    """The reconciler's clock and sleep (its own parameters): 429 backoff passes without waiting."""

    now: float = RECONCILE_START

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def drifted_account() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Five signups. The table heard only the start of three (their subscriptions still incomplete),
    all of one, nothing of one; Stripe has every subscription active."""
    scenarios = [
        build("signup_paid", ScenarioParams(customer_id=f"cus_Drift{i:02d}", user_id=f"user_d{i:02d}"))
        for i in range(5)
    ]
    heard = [3, 3, 3, len(scenarios[3].events), 0]
    delivered = [e for sc, count in zip(scenarios, heard, strict=True) for e in sc.events[:count]]
    subscriptions = [
        o for sc in scenarios for o in sc.api_objects.values() if o.get("object") == "subscription"
    ]
    return delivered, subscriptions


def reconciler(fake: FakeStripe, stack: Stack, clock: ReconcileClock) -> Reconciler:
    return Reconciler(
        StripeApi({"test": API_KEY}, fake.url),
        FetchedQueue(stack.resources.queue_url),
        clock=clock,
        sleep=clock.sleep,
        jitter=lambda: 0.5,
    )


def drifted_stack(aws: Aws, delivered: list[dict[str, Any]]) -> Stack:
    stack = aws.stack()
    stack.send(delivered)
    assert all(not i.failed for i in stack.esm.drain())
    bind_table(stack.table)  # as reconcile() does; the worker's models share the binding
    return stack


@pytest.mark.usefixtures("fast_sdk_retries")
def test_the_reconciler_survives_stripe_and_aws_failures_keeps_its_cursor_and_repairs_the_same(
    aws: Aws,
) -> None:
    delivered, subscriptions = drifted_account()
    aws.monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    with FakeStripe() as fake:
        fake.put_subscriptions(subscriptions)
        aws.monkeypatch.setenv("STRIPE_API_BASE", fake.url)

        reference_stack = drifted_stack(aws, delivered)
        clean = reconciler(fake, reference_stack, ReconcileClock()).run(
            Everything(), dry_run=False, time_budget_seconds=600
        )
        assert clean.complete
        assert (clean.counts.stale, clean.counts.missing, clean.counts.repaired) == (3, 1, 4)
        reference_stack.esm.drain()
        reference = reference_stack.run()
        fake.requests.clear()

        stack = drifted_stack(aws, delivered)
        clock = ReconcileClock()
        reports: list[ReconcileReport] = []

        def run() -> ReconcileReport:
            reports.append(
                reconciler(fake, stack, clock).run(Everything(), dry_run=False, time_budget_seconds=600)
            )
            return reports[-1]

        def cursor() -> tuple[str, str | None, int] | None:
            saved = CursorStore().load()
            return None if saved is None else (saved.pass_id, saved.phase, saved.pages)

        with stack.wire(sqs_client()) as wire:
            # 1. Stripe rate-limits the list (the reconciler backs off and goes on); then SQS refuses
            #    the repairs at every attempt: the run stops before its cursor moves past the page.
            fake.fail_next(3, 429)
            wire.inject("SendMessageBatch", Unreachable(), times=100)
            first = run()
            assert not first.complete
            assert first.rate_limited == 3
            assert "QueueUnavailable" in str(first.stopped)
            pass_id, phase, pages = cursor() or ("", "", -1)
            assert (phase, pages) == ("subscriptions:test", 0)
            assert stack.queue_depth() == 0
            wire.recover()

            # 2. Stripe answers 500 twice (the SDK retries); the cursor's save is applied but its answer
            #    lost: botocore resends it, the version check refuses the resend, the run stops as if
            #    another run had moved the cursor, which moved exactly one page.
            fake.fail_next(2, 500)
            wire.inject("PutItem", ResponseLost(), when=lambda r: r.mentions('"CURSOR"'))
            second = run()
            assert not second.complete
            assert "another reconcile run" in str(second.stopped)
            assert cursor() == (pass_id, "events:test", 1)
            assert stack.queue_depth() == 4

            # 3. DynamoDB throttles the records phase's scan past botocore's retries: the run stops
            #    where it stands (after the two event lists).
            wire.inject("Scan", THROTTLED_EXHAUSTED)
            third = run()
            assert not third.complete
            assert cursor() == (pass_id, "records", 3)

            # 4. Healthy again: the same pass finishes.
            last = run()
            assert last.complete
            assert wire.pending() == 0
            assert fake.count("/", 429) == 3
            assert fake.count("/", 500) == 2
            # The page whose repairs were not queued was listed again; none after the cursor passed it.
            assert fake.count("/v1/subscriptions", 200) == 2

        stack.esm.drain()
        assert stack.dlq_depth() == 0
        run_after = stack.run()
        assert run_after.state == reference.state
