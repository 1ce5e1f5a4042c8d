"""How the reconciler spends time and sends repairs: request pacing, 429 backoff, the time budget,
and queue batches (adapters.reconciler, adapters.fetched_queue) without any network."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters.event_queue import QueueUnavailable
from adapters.fetched_queue import (
    MAX_BATCH_BYTES,
    FetchedQueue,
    ObjectTooLarge,
    _batches,
    event_message,
    fetched_message,
)
from domain.ingress import QueueMessage, RejectedRequest
from domain.reconcile import (
    RATE_LIMIT_MAX_RETRIES,
    Deadline,
    RateLimitPersisted,
    StripePacer,
    TimeBudgetSpent,
    backoff_seconds,
    time_budget,
)
from domain.reconcile.ports import RateLimited, Refused
from events.stripe import objects as s
from tests.support.memory_reconcile import DAY, PRO, T0, subscription


@dataclass
class FakeClock:
    now: float = 1_000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def pacer(clock: FakeClock, per_second: float = 20, budget: float = 780) -> StripePacer:
    return StripePacer(per_second, Deadline(clock, budget), clock, clock.sleep, jitter=lambda: 0.5)


def rate_limited_then(answer: str, failures: int) -> Callable[[], str]:
    calls = iter(range(failures + 1))

    def request() -> str:
        if next(calls) < failures:
            raise RateLimited("Too many requests", http_status=429)
        return answer

    return request


def test_requests_are_spaced_to_the_configured_rate() -> None:
    clock = FakeClock()
    paced = pacer(clock, per_second=4)
    for _ in range(5):
        paced.call(lambda: None)
    assert clock.sleeps == [0.25, 0.25, 0.25, 0.25]
    assert paced.requests == 5


def test_time_spent_between_requests_counts_towards_the_spacing() -> None:
    clock = FakeClock()
    paced = pacer(clock, per_second=1)
    paced.call(lambda: clock.sleep(0.75))  # the request itself took 0.75 s
    paced.call(lambda: None)
    assert clock.sleeps == [0.75, 0.25]


def test_a_429_is_retried_after_an_exponential_backoff() -> None:
    clock = FakeClock()
    paced = pacer(clock, per_second=1000)
    assert paced.call(rate_limited_then("page", failures=3)) == "page"
    waits = [s for s in clock.sleeps if s >= 0.1]
    assert waits == [backoff_seconds(1, 0.5), backoff_seconds(2, 0.5), backoff_seconds(3, 0.5)]
    assert (paced.requests, paced.rate_limited) == (4, 3)


def test_a_429_that_persists_through_every_backoff_ends_the_run() -> None:
    clock = FakeClock()
    paced = pacer(clock, per_second=1000, budget=10_000)
    with pytest.raises(RateLimitPersisted, match="429"):
        paced.call(rate_limited_then("never", failures=RATE_LIMIT_MAX_RETRIES + 1))
    assert paced.rate_limited == RATE_LIMIT_MAX_RETRIES + 1


def test_a_backoff_that_would_outlast_the_budget_ends_the_run_instead_of_sleeping() -> None:
    clock = FakeClock()
    paced = pacer(clock, per_second=1000, budget=2.0)
    with pytest.raises(TimeBudgetSpent):
        paced.call(rate_limited_then("late", failures=3))
    assert clock.now - 1_000.0 <= 2.0


def test_other_stripe_errors_are_not_retried_here() -> None:
    paced = pacer(FakeClock())

    def fails() -> None:
        raise Refused("Invalid API Key provided", http_status=401)

    with pytest.raises(Refused):
        paced.call(fails)
    assert paced.requests == 1


def test_the_budget_keeps_a_reserve_of_the_lambdas_remaining_time() -> None:
    assert time_budget(780, None) == 780
    assert time_budget(780, 900_000) == 780
    assert time_budget(840, 900_000) == 840
    assert time_budget(900, 900_000) == 840
    assert time_budget(780, 120_000) == 108  # a tenth kept back when little time is left
    assert time_budget(780, 0) == 0


def test_a_deadline_allows_what_still_ends_in_time() -> None:
    clock = FakeClock()
    deadline = Deadline(clock, 10)
    assert deadline.allows(9.5)
    assert not deadline.allows(10)
    clock.now += 4
    assert deadline.allows(5.5)
    assert not deadline.allows(6)
    assert not Deadline(clock, 0).allows(0)


# -- the queue ------------------------------------------------------------------------------------


def test_a_fetched_object_is_grouped_by_its_customer_and_deduplicated_by_its_synthetic_id() -> None:
    message = fetched_message(subscription("cus_1", id="sub_1"), 1_767_000_000_123)
    assert message.group_id == "cus_1"
    assert message.deduplication_id == "sync_sub_1_1767000000123"
    assert json.loads(message.body)["data"]["object"]["id"] == "sub_1"
    session = s.checkout_session(
        s.IdFactory(0),
        id="cs_test_1",
        mode="payment",
        status="complete",
        payment_status="paid",
        customer=None,
        amount_total=2000,
        created=5,
    )
    guest = fetched_message(session, 5)
    assert guest.group_id == "cs_test_1"
    accounts_v2 = s.subscription(
        s.IdFactory(0),
        id="sub_2",
        customer=None,
        customer_account="acct_9",
        items=[s.ItemSpec(PRO)],
        status="active",
        created=T0,
        period_start=T0,
        period_end=T0 + 30 * DAY,
    )
    account = fetched_message(accounts_v2, 5)
    assert account.group_id == "acct_9"


def test_an_object_too_large_for_sqs_is_an_error_not_a_reference() -> None:
    huge = subscription("cus_1", id="sub_1") | {"metadata": {"x": "y" * 300_000}}
    with pytest.raises(ObjectTooLarge, match="sub_1"):
        fetched_message(huge, 1)


def test_a_failed_event_is_queued_as_the_webhook_queues_it() -> None:
    ids = s.IdFactory(1)
    invoice = s.invoice(
        ids,
        id="in_1",
        customer="cus_1",
        subscription=None,
        items=[s.ItemSpec(PRO)],
        status="paid",
        billing_reason="manual",
        created=T0,
        period_start=T0,
        period_end=T0,
        livemode=True,
    )
    event = s.event(ids, "invoice.paid", invoice, created=T0, account="acct_1", id="evt_1")
    message = event_message(event)
    assert (message.group_id, message.deduplication_id) == ("cus_1", "evt_1:acct_1")
    assert json.loads(message.body) == event
    with pytest.raises(RejectedRequest):
        event_message({"id": "evt_2", "object": "charge"})


def _message(size: int, index: int = 0) -> QueueMessage:
    return QueueMessage("x" * size, "g", f"d{index}", by_reference=False)


def test_batches_hold_at_most_ten_messages_and_one_messages_worth_of_bytes() -> None:
    assert [len(b) for b in _batches([_message(10, i) for i in range(23)])] == [10, 10, 3]
    big = [_message(100_000, i) for i in range(5)]
    batches = _batches(big)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(sum(len(m.body) for m in b) <= MAX_BATCH_BYTES for b in batches)
    assert _batches([]) == []


@dataclass
class ScriptedSqs:
    """send_message_batch answering from a script: a list of entry ids to fail, per call."""

    failures: list[list[tuple[str, bool]]]
    calls: list[list[str]] = field(default_factory=list)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append([e["MessageDeduplicationId"] for e in Entries])
        failed = self.failures.pop(0) if self.failures else []
        return {
            "Successful": [],
            "Failed": [
                {"Id": entry_id, "SenderFault": sender, "Code": "InternalError", "Message": "try again"}
                for entry_id, sender in failed
            ],
        }


def test_entries_sqs_failed_are_sent_again_alone() -> None:
    sqs = ScriptedSqs(failures=[[("1", False)], []])
    FetchedQueue("url", client=sqs).send([_message(10, 0), _message(10, 1), _message(10, 2)])  # type: ignore[arg-type]
    assert sqs.calls == [["d0", "d1", "d2"], ["d1"]]


def test_entries_that_keep_failing_raise_queue_unavailable() -> None:
    sqs = ScriptedSqs(failures=[[("0", False)]] * 3)
    with pytest.raises(QueueUnavailable, match="1 message"):
        FetchedQueue("url", client=sqs).send([_message(10, 0)])  # type: ignore[arg-type]
    assert len(sqs.calls) == 3


def test_entries_sqs_refuses_are_not_retried() -> None:
    sqs = ScriptedSqs(failures=[[("0", True)]])
    with pytest.raises(QueueUnavailable, match="try again"):
        FetchedQueue("url", client=sqs).send([_message(10, 0)])  # type: ignore[arg-type]
    assert len(sqs.calls) == 1
