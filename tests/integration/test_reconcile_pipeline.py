"""The reconciler against a fake Stripe API (the stripe SDK pointed at harness.fake_stripe) and moto's
DynamoDB and SQS FIFO; repairs are applied by the worker Lambda from the messages read back."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import stripe._http_client

from adapters import reconcile_cursor, table_items
from adapters.fetched_queue import FetchedQueue
from adapters.reconcile_cursor import CursorItem, CursorStore
from adapters.reconciler import Reconciler, TableRecords, bind_table, mark_record_to_check
from adapters.stripe_api import StripeApi
from domain.credentials import Mode
from domain.reconcile import Backfill, Counts, DriftKind, Everything, OneCustomer, ReconcileReport, Scope
from domain.records import Snapshot
from domain.stripe_objects import parse_event, record_of, snapshot_of
from events.scenarios import Scenario, ScenarioParams, build
from events.stripe import objects as s
from handlers import worker
from harness.fake_stripe import FakeStripe
from harness.lambda_context import FakeLambdaContext
from harness.sync_table_fixture import create_sync_table
from tests.support.aws_event_shapes import received_once
from tests.support.memory_reconcile import Clock, subscription

if TYPE_CHECKING:
    from tests.support.webhook_queue import WebhookFifoQueue

T0 = 1_767_000_000
DAY = 86_400
NOW = T0 + 3600  # the reconciler's clock: an hour after the webhooks below
TABLE = "sync-reconcile-test"
KEY = "sk_test_reconcile"
PRO = s.PriceSpec("price_pro", "prod_pro")
BOOK = s.PriceSpec("price_book", "prod_book", recurring=False, unit_amount=900)


# The reconciler's whole Timeout (template.yaml) left unless a test says otherwise.
LambdaContext = functools.partial(FakeLambdaContext, remaining_millis=900_000)


def webhook(
    obj: dict[str, Any], created: int, event_type: str = "customer.subscription.updated"
) -> dict[str, Any]:
    return s.event(s.IdFactory(f"{obj['id']}:{event_type}:{created}"), event_type, obj, created=created)


@dataclass
class World:
    fake: FakeStripe
    queue: WebhookFifoQueue
    clock: Clock
    dynamodb: Any

    def reconciler(self, keys: dict[Mode, str] | None = None, **options: Any) -> Reconciler:
        return Reconciler(
            StripeApi(keys or {"test": KEY}, self.fake.url),
            FetchedQueue(self.queue.url),
            clock=self.clock,
            sleep=self.clock.sleep,
            jitter=lambda: 0.5,
            **options,
        )

    def run(
        self, scope: Scope | None = None, *, dry_run: bool = False, budget: float = 780, **options: Any
    ) -> ReconcileReport:
        return self.reconciler(**options).run(
            scope or Everything(), dry_run=dry_run, time_budget_seconds=budget
        )

    def deliver(self, *events: dict[str, Any]) -> None:
        """Webhook events applied by the worker, as if delivered (and Stripe holds the objects)."""
        self.apply([json.dumps(e) for e in events])

    def store(self, *objects: dict[str, Any], created: int = T0 + 10) -> None:
        """Records as a webhook at `created` leaves them, written directly (seeding many is faster)."""
        with table_items.RecordItem.batch_write() as batch:
            for obj in objects:
                snapshot = snapshot_of(parse_event(webhook(obj, created)))
                assert isinstance(snapshot, Snapshot)
                batch.save(
                    table_items.record_item(table_items.customer_pk(str(snapshot.customer_id)), snapshot)
                )

    def apply(self, bodies: list[str]) -> None:
        for start in range(0, len(bodies), 10):
            records = [
                received_once(f"m{start + i}", body) for i, body in enumerate(bodies[start : start + 10])
            ]
            assert worker.lambda_handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}

    def drain(self) -> list[dict[str, Any]]:
        return self.queue.drain()

    def repair_all(self) -> list[dict[str, Any]]:
        """Hand every queued message to the worker, as the event source mapping would."""
        messages = self.drain()
        self.apply([m["Body"] for m in messages])
        return messages

    def stored(self, customer: str, subscription_id: str, kind: str = "SUBSCRIPTION") -> Snapshot | None:
        try:
            item = table_items.RecordItem.get(
                table_items.customer_pk(customer), f"{kind}#{subscription_id}", consistent_read=True
            )
        except table_items.RecordItem.DoesNotExist:
            return None
        return table_items.snapshot_of_item(item)

    def assert_table_equals_stripe(self) -> None:
        for obj in self.fake.subscriptions():
            if obj.get("livemode"):
                continue
            snapshot = self.stored(obj["customer"], obj["id"])
            assert snapshot is not None, obj["id"]
            # The record carries its snapshot's time (its stamp), beside what Stripe says.
            assert snapshot.record == record_of("subscription", obj, as_of=snapshot.stamp.created), obj["id"]

    def features(self, customer: str) -> set[str]:
        item = self.dynamodb.get_item(
            TableName=TABLE,
            Key={"pk": {"S": f"CUSTOMER#{customer}"}, "sk": {"S": "ENTITLEMENTS"}},
            ConsistentRead=True,
        ).get("Item")
        return set(item["features"]["M"]) if item else set()


@pytest.fixture
def world(webhook_fifo_queue: WebhookFifoQueue, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # The SDK's own retries of 5xx wait 0.5 s and more; the retry logic is the same with shorter waits.
    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.001)
    monkeypatch.setattr(stripe._http_client.HTTPClient, "MAX_DELAY", 0.002)
    with FakeStripe() as fake:
        monkeypatch.setenv("TABLE_NAME", TABLE)
        monkeypatch.setenv("STRIPE_API_KEY", KEY)
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "StripeSync")
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "stripe-sync-test")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_sync_table(dynamodb, TABLE)
        from handlers import reconcile as reconcile_handler

        # Powertools reads its service and namespace when the module is first imported, which may
        # have been by an earlier test without these variables: give the handler's objects the values.
        monkeypatch.setattr(reconcile_handler.metrics.provider, "service", "stripe-sync-test")
        monkeypatch.setattr(reconcile_handler.metrics.provider, "namespace", "StripeSync")
        reconcile_handler.logger.append_keys(service="stripe-sync-test")

        worker.settings.cache_clear()
        worker._applier.cache_clear()
        reconcile_handler.settings.cache_clear()  # each test is a new container
        bind_table(TABLE)
        yield World(fake, webhook_fifo_queue, Clock(now=float(NOW)), dynamodb)
        worker.settings.cache_clear()
        worker._applier.cache_clear()
        reconcile_handler.settings.cache_clear()


def core(counts: Counts | None) -> Counts:
    """The object counters (what the subscription list and the records sweep found), without the
    event and per-kind counters the tests below look at on their own."""
    assert counts is not None
    names = ("checked", "missing", "stale", "extra", "repaired", "not_found", "skipped", "errors")
    return Counts(**{name: getattr(counts, name) for name in names})


def synthetic(message: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(message["Body"]))


# -- drift, found and repaired --------------------------------------------------------------------


def test_each_kind_of_drift_is_queued_and_the_worker_makes_the_table_equal_stripe(world: World) -> None:
    fake = world.fake
    in_sync = subscription("cus_ok")
    was_active = subscription("cus_stale")
    on_clock = subscription("cus_clock", test_clock="clock_1")
    on_clock_unchanged = subscription("cus_clock_ok", test_clock="clock_1")
    gone = subscription("cus_gone")
    for obj in (in_sync, was_active, on_clock, on_clock_unchanged):
        fake.put_subscription(obj)
    # One-time purchases: an async payment under way, a payment processing, a purchase settled long ago.
    lines = s.checkout_line_items(session_id="cs_test_async", prices=[(BOOK, 1)])["data"]
    session = _purchase("cus_buyer", "cs_test_async", "complete", "unpaid", payment_intent="pi_buyer")
    intent = s.payment_intent(
        s.IdFactory("pi"), id="pi_buyer", amount=900, customer="cus_buyer", status="processing", created=T0
    )
    settled = _purchase("cus_paid", "cs_test_settled", "complete", "paid")
    fake.put_session(session, lines)
    fake.put_session(settled, lines)
    fake.put_payment_intent(intent)
    world.deliver(
        webhook(in_sync, T0 + 10),
        webhook(was_active, T0 + 10),
        webhook(on_clock, T0 + 10),
        webhook(on_clock_unchanged, T0 + 10),
        webhook(gone, T0 + 10),
        webhook(session, T0 + 20, "checkout.session.completed"),
        webhook(intent, T0 + 20, "payment_intent.processing"),
        webhook(settled, T0 + 20, "checkout.session.completed"),
    )
    # Then Stripe moves on and the webhooks are lost: a cancellation, a new subscription, a
    # cancellation on a test clock, a subscription deleted with its test data, a payment that succeeded.
    fake.put_subscription(subscription("cus_stale", "canceled", canceled_at=T0 + 100, ended_at=T0 + 100))
    fake.put_subscription(subscription("cus_missing"))
    fake.put_subscription(
        subscription("cus_clock", "canceled", test_clock="clock_1", canceled_at=T0 + 100, ended_at=T0 + 100)
    )
    paid = dict(session, payment_status="paid")
    fake.put_session(paid, lines)
    fake.put_payment_intent(dict(intent, status="succeeded"))
    assert world.features("cus_stale") == {"prod_pro"}
    assert world.features("cus_buyer") == set()

    before = len(fake.requests)
    report = world.run()

    assert report.complete
    # The subscription Stripe answers 404 for is gone (deleted with its test data): it ends.
    assert core(report.counts) == Counts(checked=8, missing=1, stale=3, extra=2, repaired=6, not_found=1)
    assert {(d.kind, d.object_id) for d in report.drifts} == {
        (DriftKind.MISSING, "sub_cus_missing"),
        (DriftKind.STALE, "sub_cus_stale"),
        (DriftKind.EXTRA, "sub_cus_clock"),
        (DriftKind.EXTRA, "sub_cus_gone"),
        (DriftKind.STALE, "cs_test_async"),
        (DriftKind.STALE, "pi_buyer"),
    }
    assert any("sub_cus_gone" in m and "404" in m for m in report.messages)
    fetched = {r.path for r in fake.requests[before:]} - {"/v1/subscriptions", "/v1/events"}
    # Listed subscriptions were compared, never fetched by id; the settled purchase was left alone.
    assert fetched == {
        "/v1/subscriptions/sub_cus_clock",
        "/v1/subscriptions/sub_cus_clock_ok",
        "/v1/subscriptions/sub_cus_gone",
        "/v1/checkout/sessions/cs_test_async",
        "/v1/payment_intents/pi_buyer",
    }

    messages = world.drain()
    assert {m["Attributes"]["MessageGroupId"] for m in messages} == {
        "cus_missing",
        "cus_stale",
        "cus_clock",
        "cus_gone",
        "cus_buyer",
    }
    for message in messages:
        body = synthetic(message)
        assert body["type"] == "sync.fetched"
        assert body["fetched"] is True
        assert body["created"] == NOW  # the fetch time, on the reconciler's clock
        prefix, fetched_ms = body["id"].rsplit("_", 1)
        assert prefix == f"sync_{body['data']['object']['id']}"
        assert int(fetched_ms) // 1000 == NOW
        assert message["Attributes"]["MessageDeduplicationId"] == body["id"]

    world.apply([m["Body"] for m in messages])

    world.assert_table_equals_stripe()
    assert world.features("cus_stale") == set()
    assert world.features("cus_missing") == {"prod_pro"}
    assert world.features("cus_clock") == set()
    assert world.features("cus_buyer") == {"prod_book"}
    purchase = world.stored("cus_buyer", "cs_test_async", "PURCHASE")
    assert purchase is not None
    assert purchase.record == record_of("purchase", dict(paid, line_items={"data": lines}))
    payment = world.stored("cus_buyer", "pi_buyer", "PAYMENT")
    assert payment is not None
    assert payment.record.status == "succeeded"  # type: ignore[union-attr]
    ended = world.stored("cus_gone", "sub_cus_gone")
    assert ended is not None
    assert ended.record.status == "canceled"  # type: ignore[union-attr]
    assert world.features("cus_gone") == set()

    # The next pass finds nothing left to repair.
    again = world.run()
    assert again.counts.drift == 0
    # The gone subscription's record is final now (canceled): the pass no longer reads it, nor asks
    # Stripe for it (before the records-to-check index each pass fetched it again and got its 404).
    assert again.counts.not_found == 0
    assert world.drain() == []


def test_a_dry_run_reports_drift_and_queues_nothing(world: World) -> None:
    world.fake.put_subscription(subscription("cus_new"))
    world.fake.put_subscription(subscription("cus_old", "canceled", canceled_at=T0 + 9, ended_at=T0 + 9))
    world.store(subscription("cus_old"))

    report = world.run(dry_run=True)

    assert report.dry_run
    assert report.complete
    assert core(report.counts) == Counts(checked=2, missing=1, stale=1)
    assert {d.object_id for d in report.drifts} == {"sub_cus_new", "sub_cus_old"}
    assert world.drain() == []
    old = world.stored("cus_old", "sub_cus_old")
    assert old is not None
    assert old.record.status == "active"  # type: ignore[union-attr]
    # A dry run keeps a cursor of its own: the next real run still starts a pass of its own.
    assert CursorStore().load() is None
    assert CursorStore(dry_run=True).load() is not None
    assert world.run().counts.repaired == 2


# -- any account size: time budget and cursor -----------------------------------------------------


def _account(world: World, count: int) -> set[str]:
    """`count` subscriptions, every seventh missing from the table and every eleventh stale."""
    objects = [subscription(f"cus_{n:04d}", created=T0 + n) for n in range(count)]
    world.fake.put_subscriptions(objects)
    world.store(*[o for n, o in enumerate(objects) if n % 7 and n % 11])
    world.store(
        *[subscription(f"cus_{n:04d}", "past_due", created=T0 + n) for n in range(0, count, 11) if n % 7]
    )
    return {o["id"] for n, o in enumerate(objects) if n % 7 == 0 or n % 11 == 0}


def test_rate_limits_and_server_errors_are_survived_with_the_same_result(world: World) -> None:
    drifted = _account(world, 250)
    world.fake.fail_next(3, 429)
    faults_after_first_page = [2]

    def inject(_report: ReconcileReport) -> None:
        if faults_after_first_page:
            world.fake.fail_next(faults_after_first_page.pop(), 500)  # the SDK retries these itself

    report = world.reconciler().run(Everything(), dry_run=False, time_budget_seconds=780, progress=inject)

    assert report.complete
    assert report.rate_limited == 3
    assert world.fake.count("/", 429) == 3
    assert world.fake.count("/", 500) == 2
    assert world.clock.sleeps[:3] == [0.75, 1.5, 3.0]  # exponential backoff, jitter fixed at one half
    assert core(report.pass_counts) == Counts(checked=250, missing=36, stale=19, repaired=55)
    queued = world.drain()
    assert sorted(synthetic(m)["data"]["object"]["id"] for m in queued) == sorted(drifted)
    world.apply([m["Body"] for m in queued])
    world.assert_table_equals_stripe()


@pytest.mark.parametrize(
    ("status", "count", "reason"),
    [(500, 4, "APIError"), (429, 9, "RateLimitPersisted")],
)
def test_a_failure_past_the_sdks_and_the_pacers_retries_is_retried_in_the_run_with_the_same_result(
    world: World, status: int, count: int, reason: str
) -> None:
    # Four 500s outlast the SDK's three retries, nine 429s the pacer's eight (`reason`): before phases
    # were isolated this stopped the run; now the page is retried after a backoff inside the run.
    drifted = _account(world, 250)
    after_first_page = [count]

    def inject(_report: ReconcileReport) -> None:
        if after_first_page:
            world.fake.fail_next(after_first_page.pop(), status)

    report = world.reconciler().run(Everything(), dry_run=False, time_budget_seconds=780, progress=inject)

    assert report.complete, reason
    assert report.skipped == ()
    assert report.counts.errors == 0
    assert world.fake.count("/", status) == count
    assert 0.75 in world.clock.sleeps  # the run's own first backoff (jitter fixed at one half)
    assert core(report.pass_counts) == Counts(checked=250, missing=36, stale=19, repaired=55)
    queued = [synthetic(m)["data"]["object"]["id"] for m in world.drain()]
    assert sorted(queued) == sorted(drifted)
    lists = [r.query.get("starting_after") for r in world.fake.requests if r.path == "/v1/subscriptions"]
    assert [after for after in lists if after is not None][-1] == "sub_cus_0050"  # every page read


def test_a_phase_stripe_keeps_failing_is_skipped_and_the_next_pass_lists_it_again(world: World) -> None:
    drifted = _account(world, 250)
    # Every try of the second subscription page fails: 4 requests (the SDK's retries) for each of the
    # run's 4 tries.
    after_first_page = [16]

    def inject(_report: ReconcileReport) -> None:
        if after_first_page:
            world.fake.fail_next(after_first_page.pop(), 503, path="/v1/subscriptions")

    first = world.reconciler().run(Everything(), dry_run=False, time_budget_seconds=780, progress=inject)

    assert first.complete  # the events lists and the records phase still ran
    [skipped] = first.skipped
    assert (skipped.phase, skipped.mode, skipped.account, skipped.reason) == (
        "subscriptions:test",
        "test",
        None,
        "unavailable",
    )
    assert "503" in skipped.detail
    assert "after 3 retries" in skipped.detail
    assert first.counts.phases_skipped == 1
    assert first.counts.errors == 1
    assert any("subscriptions:test skipped" in m for m in first.messages)
    assert world.fake.count("/v1/events") == 2
    # What the skipped pages held was not compared in this pass: the next one lists it from the start.
    world.repair_all()
    world.clock.now += 3600
    before = len(world.fake.requests)

    second = world.run()

    assert second.complete
    assert second.skipped == ()
    lists = [
        r.query.get("starting_after") for r in world.fake.requests[before:] if r.path == "/v1/subscriptions"
    ]
    assert lists == [None, "sub_cus_0150", "sub_cus_0050"]
    world.repair_all()
    assert world.run().counts.drift == 0
    for obj in world.fake.subscriptions():
        assert obj["id"] not in drifted or world.stored(obj["customer"], obj["id"]) is not None


def test_a_queue_that_refuses_repairs_stops_the_run_before_the_cursor_moves(world: World) -> None:
    world.fake.put_subscription(subscription("cus_new"))
    broken = Reconciler(
        StripeApi({"test": KEY}, world.fake.url),
        FetchedQueue(world.queue.url + "-gone"),
        clock=world.clock,
        sleep=world.clock.sleep,
    )

    report = broken.run(Everything(), dry_run=False, time_budget_seconds=780)

    assert not report.complete
    assert report.stopped is not None
    assert "QueueUnavailable" in report.stopped
    assert core(report.counts) == Counts(errors=1)
    cursor = CursorStore().load()
    assert cursor is not None
    assert (cursor.phase, cursor.position, cursor.pages) == ("subscriptions:test", None, 0)
    assert world.run().counts.repaired == 1


def test_a_table_that_cannot_be_read_stops_the_run_with_the_error(world: World) -> None:
    bind_table("no-such-table")
    try:
        report = world.run()
    finally:
        bind_table(TABLE)
    assert not report.complete
    assert report.stopped is not None
    assert "no-such-table" in report.stopped or "ResourceNotFound" in report.stopped
    assert report.counts.errors == 1
    assert world.fake.count("/v1/") == 0


def test_an_unreadable_record_is_reported_and_the_scan_goes_on(world: World) -> None:
    world.store(subscription("cus_clock", test_clock="clock_1"))
    table_items.RecordItem(
        "CUSTOMER#cus_bad",
        "SUBSCRIPTION#sub_bad",
        kind="subscription",
        customer_id="cus_bad",
        livemode=False,
        stamp_created=T0,
        stamp_rank=0,
        stamp_event="evt_1",
        body="{not json",
    ).save()
    world.fake.put_subscription(subscription("cus_clock", "canceled", test_clock="clock_1"))

    report = world.run()

    assert report.complete
    assert core(report.counts) == Counts(checked=1, extra=1, repaired=1, errors=1)
    assert any("SUBSCRIPTION#sub_bad" in m for m in report.messages)


# -- a fetch racing a webhook ---------------------------------------------------------------------


def test_a_reconcile_racing_an_older_webhook_keeps_the_newer_state(world: World) -> None:
    active = subscription("cus_race")
    world.deliver(webhook(active, T0 + 10))
    canceled = subscription("cus_race", "canceled", canceled_at=T0 + 200, ended_at=T0 + 200)
    world.fake.put_subscription(canceled)

    world.run()
    world.repair_all()
    # A retry of an older update (past_due at T0 + 100) reaches the worker after the repair.
    world.deliver(webhook(subscription("cus_race", "past_due"), T0 + 100))

    stored = world.stored("cus_race", "sub_cus_race")
    assert stored is not None
    assert stored.record == record_of("subscription", canceled, as_of=NOW)
    assert stored.stamp.created == NOW
    assert world.features("cus_race") == set()


# -- failed deliveries ----------------------------------------------------------------------------


def test_failed_deliveries_are_requeued_with_the_webhooks_group_and_deduplication_ids(world: World) -> None:
    lost = webhook(subscription("cus_a"), T0 + 10)
    delivered = webhook(subscription("cus_b"), T0 + 11)
    for event, ok in ((lost, False), (delivered, True)):
        world.fake.put_event(event, delivered=ok)
    not_an_event = {"id": "evt_odd", "object": "event", "type": "x", "created": T0}  # no livemode
    world.fake.put_event(not_an_event, delivered=False)

    dry = world.run(dry_run=True)
    assert (dry.counts.failed_events, dry.counts.events_lost, dry.counts.events_requeued) == (2, 1, 0)
    assert dry.counts.errors == 1
    assert any("evt_odd" in m for m in dry.messages)
    assert world.drain() == []

    report = world.run()

    assert (report.counts.failed_events, report.counts.events_requeued) == (2, 1)
    assert report.counts.by_kind()["event"] == 1
    [message] = world.drain()
    assert message["Attributes"]["MessageDeduplicationId"] == lost["id"]
    assert message["Attributes"]["MessageGroupId"] == "cus_a"
    assert json.loads(message["Body"]) == lost
    events = [r for r in world.fake.requests if r.path == "/v1/events"]
    failed = [r for r in events if r.query.get("delivery_success") == "false"]
    assert failed
    assert all(int(r.query["created[gte]"]) == NOW - 30 * DAY for r in failed)


def test_a_failed_delivery_already_applied_is_not_queued_again(world: World) -> None:
    """Stripe keeps saying "not delivered" for an event the reconciler queued itself (our endpoint
    never answered it): the ledger shows it applied, so no pass queues it again."""
    lost = webhook(subscription("cus_a"), NOW - 60)
    world.fake.put_subscription(subscription("cus_a"))
    world.fake.put_event(lost, delivered=False)

    world.run()
    world.repair_all()
    assert world.features("cus_a") == {"prod_pro"}
    world.clock.now += 200  # the next pass's event lists start 300 s before this one started
    again = world.run()

    assert again.counts.failed_events == 1  # still listed: inside the overlap of the checkpoint
    assert (again.counts.events_applied, again.counts.events_requeued) == (1, 0)
    assert world.drain() == []


def test_failed_deliveries_are_left_alone_when_switched_off(world: World) -> None:
    world.fake.put_event(webhook(subscription("cus_a"), T0 + 10), delivered=False)
    report = world.run(requeue_failed_events=False)
    assert report.complete
    assert report.counts.failed_events == 0
    assert not [r for r in world.fake.requests if r.query.get("delivery_success") is not None]


def test_each_connected_account_with_records_is_listed_with_its_stripe_account(world: World) -> None:
    """Connect: the records phase finds the accounts that have records; from the next pass on each
    is listed with its Stripe-Account (subscriptions, undelivered events, other events)."""
    account = "acct_1Connected"
    stored = subscription("cus_c")
    world.fake.put_subscription(stored, account=account)
    world.deliver(dict(webhook(stored, T0 + 10), account=account))
    canceled = subscription("cus_c", "canceled", canceled_at=T0 + 50, ended_at=T0 + 50)
    world.fake.put_subscription(canceled, account=account)
    new = subscription("cus_d", id="sub_connected_new")
    world.fake.put_subscription(new, account=account)
    lost = dict(webhook(subscription("cus_e", id="sub_e"), T0 + 20), account=account)
    world.fake.put_event(lost, delivered=False, account=account)

    first = world.run()
    assert first.complete
    # The first pass verifies the account's record by id (with its account) and learns the account.
    assert core(first.counts) == Counts(checked=1, extra=1, repaired=1)
    assert CursorStore().accounts() == {("test", account)}
    world.repair_all()
    world.clock.now += 3600

    second = world.run()

    assert second.complete
    scoped = [(r.path, r.query.get("delivery_success")) for r in world.fake.requests if r.account == account]
    assert ("/v1/subscriptions", None) in scoped
    assert ("/v1/events", "false") in scoped
    assert core(second.counts) == Counts(checked=2, missing=1, repaired=1)
    assert second.counts.events_requeued == 1
    messages = {m["Attributes"]["MessageDeduplicationId"]: m for m in world.drain()}
    assert f"{lost['id']}:{account}" in messages
    [repair] = [m for m in messages.values() if synthetic(m)["type"] == "sync.fetched"]
    assert synthetic(repair)["account"] == account
    assert synthetic(repair)["data"]["object"]["id"] == "sub_connected_new"
    world.apply([m["Body"] for m in messages.values()])
    assert world.features("cus_c") == set()
    assert world.features("cus_d") == {"prod_pro"}
    assert world.features("cus_e") == {"prod_pro"}
    connected = world.stored("cus_d", "sub_connected_new")
    assert connected is not None
    assert connected.account == account


def test_a_forbidden_list_and_a_deauthorized_account_skip_only_what_they_touch(world: World) -> None:
    """Issue 17: a restricted key without Events read and a connected account that deauthorized the
    platform used to stop every run at the same phase; the pass now completes, and a cancellation lost
    in another connected account is repaired by the worker."""
    gone, other = "acct_1Gone", "acct_2Other"
    for account, customer in ((gone, "cus_gone"), (other, "cus_other")):
        active = subscription(customer)
        world.fake.put_subscription(active, account=account)
        world.deliver(dict(webhook(active, T0 + 10), account=account))
    world.fake.put_subscription(
        subscription("cus_other", "canceled", canceled_at=T0 + 50, ended_at=T0 + 50), account=other
    )
    assert world.run().complete  # learns the two accounts
    world.repair_all()
    world.fake.forbid("/v1/events", "rak_event_read")
    world.fake.deauthorized.add(gone)
    world.clock.now += 3600

    report = world.run()

    assert report.complete
    reasons = {(skip.phase, str(skip.reason)) for skip in report.skipped}
    assert reasons == {
        ("events:test", "permission"),
        ("changes:test", "permission"),
        (f"subscriptions:test:{gone}", "account_deauthorized"),
        (f"events:test:{gone}", "account_deauthorized"),
        (f"changes:test:{gone}", "account_deauthorized"),
        (f"events:test:{other}", "permission"),
        (f"changes:test:{other}", "permission"),
    }
    assert any("the API key lacks rak_event_read" in m for m in report.messages)
    assert CursorStore().deauthorized() == {("test", gone): int(world.clock.now)}
    assert len([r for r in world.fake.requests if r.account == gone and r.status == 403]) == 1
    world.repair_all()
    assert world.features("cus_other") == set()
    assert world.features("cus_gone") == {"prod_pro"}  # left as it was: nothing could be compared

    world.fake.deauthorized.clear()
    world.clock.now += 3600
    assert world.run().complete
    assert CursorStore().deauthorized() == {}


# -- one customer ---------------------------------------------------------------------------------


def test_one_customer_is_reconciled_alone(world: World) -> None:
    fake = world.fake
    mine_new = subscription("cus_mine", id="sub_mine_new")
    mine_old = subscription("cus_mine", "canceled", id="sub_mine_old", canceled_at=T0 + 5, ended_at=T0 + 5)
    mine_clock = subscription("cus_mine", "canceled", id="sub_mine_clock", test_clock="clock_1")
    theirs = subscription("cus_theirs")
    fake.put_subscriptions([mine_new, mine_old, mine_clock, theirs])
    world.store(
        subscription("cus_mine", id="sub_mine_old"),
        subscription("cus_mine", id="sub_mine_clock", test_clock="clock_1"),
    )

    report = world.run(OneCustomer("cus_mine"))

    assert report.scope == "cus_mine"
    assert report.complete
    assert core(report.counts) == Counts(checked=3, missing=1, stale=1, extra=1, repaired=3)
    lists = [r for r in fake.requests if r.path == "/v1/subscriptions"]
    assert [r.query.get("customer") for r in lists] == ["cus_mine"]
    messages = world.repair_all()
    assert {m["Attributes"]["MessageGroupId"] for m in messages} == {"cus_mine"}
    for obj in (mine_new, mine_old, mine_clock):
        stored = world.stored("cus_mine", obj["id"])
        assert stored is not None
        assert stored.record == record_of("subscription", obj, as_of=stored.stamp.created)
    assert world.stored("cus_theirs", "sub_cus_theirs") is None
    with pytest.raises(CursorItem.DoesNotExist):
        CursorItem.get("RECONCILE", "CURSOR")


# -- modes ----------------------------------------------------------------------------------------


LIVE_KEY = "sk_live_reconcile"


def test_one_customer_of_the_other_mode_is_not_an_error(world: World) -> None:
    world.fake.put_subscription(subscription("cus_mine"))
    world.fake.unknown_customers.add(("cus_mine", True))

    report = world.reconciler({"test": KEY, "live": LIVE_KEY}).run(
        OneCustomer("cus_mine"), dry_run=False, time_budget_seconds=780
    )

    assert report.complete
    assert core(report.counts) == Counts(checked=1, missing=1, repaired=1)
    assert world.fake.count("/v1/subscriptions", 404) == 1


# -- the Lambda handler ---------------------------------------------------------------------------


def _metrics(output: str) -> dict[str, Any]:
    """The EMF document the handler printed."""
    documents = [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]
    metrics = [d for d in documents if d.get("service") == "stripe-sync-test"]
    assert len(metrics) == 1
    assert metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "StripeSync"
    return metrics[0]


def _logged(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


def test_the_handler_reports_a_run_as_metrics_and_one_log_line(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from handlers import reconcile as handler

    world.fake.put_subscription(subscription("cus_new"))
    capsys.readouterr()

    answer = handler.lambda_handler({"dry_run": True}, LambdaContext(function_name="reconcile"))

    assert answer["dry_run"] is True
    assert (answer["missing"], answer["repaired"], answer["complete"]) == (1, 0, True)
    assert world.drain() == []
    metrics = _metrics(capsys.readouterr().out)
    assert metrics["DriftMissing"] == [1.0]
    assert metrics["ReconcileFailed"] == [0.0]  # every run: its alarm needs a data point
    assert metrics["ReconcilePassCompleted"] == [1.0]
    # Counts that are zero send no metric (each metric sent in an hour is billed for it), and the
    # counts no alarm or widget reads are log fields only.
    for quiet in (
        "DriftRepaired",
        "ReconcileErrors",
        "FailedEventsFound",
        "DriftBySubscription",
        "EventsLost",
    ):
        assert quiet not in metrics
    runs = _logged(caplog, "reconcile run")
    assert len(runs) == 1
    assert (runs[0].repaired, runs[0].errors, runs[0].failed_events, runs[0].events_lost) == (0, 0, 0, 0)
    assert runs[0].drift_by_kind["subscription"] == 1  # per kind, zeros included, in the log line
    assert (runs[0].drift_by_kind["purchase"], runs[0].drift_by_kind["event"]) == (0, 0)
    assert runs[0].drifts == [
        {
            "kind": "missing",
            "object": "subscription",
            "id": "sub_cus_new",
            "customer": "cus_new",
            "livemode": False,
        }
    ]

    scheduled = handler.lambda_handler(
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, LambdaContext()
    )
    assert (scheduled["dry_run"], scheduled["repaired"]) == (False, 1)
    assert [m["Attributes"]["MessageGroupId"] for m in world.drain()] == ["cus_new"]


def test_the_handler_runs_a_backfill_when_asked(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    from handlers import reconcile as handler

    world.fake.put_subscription(subscription("cus_old", created=T0 - 400 * DAY))
    world.fake.put_subscription(subscription("cus_new", id="sub_new"))
    capsys.readouterr()
    answer = handler.lambda_handler({"backfill": True, "since": "2025-12-01"}, LambdaContext())
    assert (answer["scope"], answer["complete"], answer["missing"], answer["repaired"]) == (
        "backfill",
        True,
        1,
        1,
    )
    assert answer["drift_by_kind"]["subscription"] == 1
    metrics = _metrics(capsys.readouterr().out)
    assert metrics["BackfillCompleted"] == [1.0]
    assert "ReconcilePassCompleted" not in metrics
    assert [synthetic(m)["data"]["object"]["id"] for m in world.drain()] == ["sub_new"]


def test_the_handler_reconciles_one_customer_when_asked(world: World) -> None:
    from handlers import reconcile as handler

    world.fake.put_subscriptions([subscription("cus_a"), subscription("cus_b")])
    answer = handler.lambda_handler({"customer": "cus_b"}, LambdaContext())
    assert (answer["scope"], answer["missing"], answer["repaired"]) == ("cus_b", 1, 1)
    assert [m["Attributes"]["MessageGroupId"] for m in world.drain()] == ["cus_b"]


def test_the_handler_stops_in_time_when_the_lambda_has_no_time_left(world: World) -> None:
    from handlers import reconcile as handler

    world.fake.put_subscription(subscription("cus_a"))
    answer = handler.lambda_handler({}, LambdaContext(remaining_millis=0))
    assert (answer["stopped"], answer["pages"], answer["complete"]) == ("time budget", 0, False)
    assert world.fake.count("/v1/") == 0


def test_the_handler_refuses_a_bad_request_and_a_missing_queue_clearly(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from adapters.reconciler import ReconcileNotConfigured
    from domain.reconcile import InvalidRequest
    from handlers import reconcile as handler

    with pytest.raises(InvalidRequest, match="customer must be"):
        handler.lambda_handler({"customer": "cus_1 OR 1=1"}, LambdaContext())
    monkeypatch.setenv("RECONCILE_MAX_REQUESTS_PER_SECOND", "fast")
    handler.settings.cache_clear()  # settings are parsed once per container: a new one reads this
    capsys.readouterr()
    with pytest.raises(InvalidRequest, match="RECONCILE_MAX_REQUESTS_PER_SECOND"):
        handler.lambda_handler({}, LambdaContext())
    failure = _metrics(capsys.readouterr().out)
    assert (failure["ReconcileErrors"], failure["ReconcileFailed"]) == ([1.0], [1.0])
    monkeypatch.delenv("RECONCILE_MAX_REQUESTS_PER_SECOND")
    monkeypatch.delenv("QUEUE_URL")
    handler.settings.cache_clear()
    with pytest.raises(ReconcileNotConfigured, match="QUEUE_URL"):
        handler.lambda_handler({}, LambdaContext())
    assert handler.lambda_handler({"dry_run": True}, LambdaContext())["complete"] is True


def test_a_stack_without_an_api_key_reports_not_configured_once_and_no_error(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from handlers import reconcile as handler

    monkeypatch.setattr(handler, "_not_configured_logged", False)  # a new container
    monkeypatch.delenv("STRIPE_API_KEY")
    capsys.readouterr()

    answers = [handler.lambda_handler({}, LambdaContext()) for _ in range(3)]

    assert [a["configured"] for a in answers] == [False, False, False]
    assert answers[0]["reason"].startswith("no STRIPE_API_KEY")
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')
    ]
    runs = [d for d in documents if d.get("service") == "stripe-sync-test"]
    assert len(runs) == 3
    for document in runs:
        names = {m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        # Nothing an alarm pages on: no error, no failed run, no pass overdue (no data at all).
        assert names == {"ReconcileNotConfigured"}
        assert document["ReconcileNotConfigured"] == [1.0]
    assert len(_logged(caplog, "reconcile not configured")) == 1
    assert _logged(caplog, "reconcile cannot run") == []
    assert world.fake.count("/v1/") == 0


# -- every kind of state, repaired within one run -------------------------------------------------


def _lost_user_id_change(params: ScenarioParams) -> Scenario:
    """A customer's `metadata.user_id` changes; its `customer.updated` is the event that gets lost."""
    base = build("signup_paid", params)
    created = next(e for e in base.events if e["type"] == "customer.created")
    customer = dict(created["data"]["object"], metadata={"user_id": f"{params.user_id}_new"})
    update = s.event(
        s.IdFactory(f"{params.customer_id}:moved"),
        "customer.updated",
        customer,
        created=base.events[-1]["created"] + 60,
        previous_attributes={"metadata": {"user_id": params.user_id}},
    )
    objects = {**base.api_objects, customer["id"]: customer}
    return dataclasses.replace(base, events=[*base.events, update], api_objects=objects)


@dataclass(frozen=True)
class Case:
    build: Callable[[ScenarioParams], Scenario]
    lost: tuple[str, ...]  # the event types whose delivery never reached us


CASES = {
    "purchase-completed-lost": Case(lambda p: build("one_time_purchase", p), ("checkout.session.completed",)),
    "refund-lost": Case(lambda p: build("purchase_refunded", p), ("charge.refunded",)),
    "lost-dispute-lost": Case(
        lambda p: build("purchase_dispute_lost", p),
        ("charge.dispute.funds_withdrawn", "charge.dispute.closed"),
    ),
    "entitlements-summary-lost": Case(
        lambda p: build("entitlements_summary_updated", p),
        ("entitlements.active_entitlement_summary.updated",),
    ),
    "customer-deleted-lost": Case(
        lambda p: build("customer_deleted", p), ("customer.subscription.deleted", "customer.deleted")
    ),
    "user-id-change-lost": Case(_lost_user_id_change, ("customer.updated",)),
}


def _access(world: World, customer: str) -> dict[str, Any]:
    """The entitlements item as readers use it: features with their ends, flags; not the sources
    (their ids differ between the two customers of a case)."""
    item = world.dynamodb.get_item(
        TableName=TABLE,
        Key={"pk": {"S": f"CUSTOMER#{customer}"}, "sk": {"S": "ENTITLEMENTS"}},
        ConsistentRead=True,
    ).get("Item")
    if item is None:
        return {}
    features = {name: value["M"].get("until", {}).get("N") for name, value in item["features"]["M"].items()}
    return {"features": features, "deleted": item["deleted"]["BOOL"], "issue": item["payment_issue"]["BOOL"]}


def _user_lookup(world: World, user_id: str) -> str | None:
    item = world.dynamodb.get_item(
        TableName=TABLE,
        Key={"pk": {"S": f"USER#test#{user_id}"}, "sk": {"S": "CUSTOMER"}},
        ConsistentRead=True,
    ).get("Item")
    return item["customer_id"]["S"] if item else None


def _stage(
    world: World, case: Case, name: str, *, stripe_says_delivered: bool, ends_at: int | None = None
) -> tuple[str, str, Scenario]:
    """Two customers living the same story: one got every webhook (the reference), the other lost
    `case.lost`; Stripe's API holds the truth and every event of both. `ends_at`: the story is moved
    in time to end then."""

    def params(prefix: str) -> ScenarioParams:
        base = ScenarioParams(customer_id=f"cus_{prefix}{name}", user_id=f"user_{prefix}{name}")
        if ends_at is None:
            return base
        last = max(e["created"] for e in case.build(base).events)
        return dataclasses.replace(base, start=base.start + ends_at - last)

    reference = case.build(params("ref"))
    story = case.build(params("lost"))
    for scenario in (reference, story):
        world.fake.load(scenario.api_objects, scenario.api_lists)
        for event in scenario.events:
            lost = scenario is story and event["type"] in case.lost
            world.fake.put_event(event, delivered=stripe_says_delivered or not lost)
            if not lost:
                world.deliver(event)
    world.clock.now = max(e["created"] for e in story.events) + 3600
    return str(reference.customer_id), str(story.customer_id), story


@pytest.mark.parametrize(
    ("name", "stripe_says_delivered"),
    [
        *((name, False) for name in CASES),
        # A creation event (checkout.session.completed) Stripe counts as delivered everywhere was
        # applied: the webhook answers 2xx only once it is queued. The others are looked for anyway.
        *((name, True) for name in CASES if name != "purchase-completed-lost"),
    ],
)
def test_each_kind_of_lost_state_is_repaired_by_one_run_and_never_twice(
    world: World, name: str, stripe_says_delivered: bool
) -> None:
    """The issue's list: a purchase whose `checkout.session.completed` never arrived, a refund or a
    lost dispute whose webhook never arrived, a lost Entitlements summary update, a deleted customer
    and a changed user id whose events were lost. Stripe lists the event as undelivered (a wrong
    secret, an outage) or as delivered (to another endpoint, or before a rolled secret): either way
    one run repairs it, and the next run finds nothing to repair."""
    case = CASES[name]
    reference, lost, story = _stage(
        world, case, name.replace("-", ""), stripe_says_delivered=stripe_says_delivered
    )
    if name == "user-id-change-lost":
        assert _user_lookup(world, "user_lostuseridchangelost_new") is None
    else:
        assert _access(world, lost) != _access(world, reference)

    report = world.run()

    assert report.complete
    assert report.counts.events_lost >= 1
    world.repair_all()
    assert _access(world, lost) == _access(world, reference)
    if name == "user-id-change-lost":
        assert _user_lookup(world, "user_lostuseridchangelost_new") == lost
        assert _user_lookup(world, "user_lostuseridchangelost") is None
    world.clock.now += 3600
    again = world.run()
    assert again.counts.drift == 0
    assert again.counts.events_lost == 0
    assert world.drain() == [], "nothing is repaired twice"
    assert story.events  # the story had events to lose


def test_a_stored_entitlements_summary_is_checked_against_the_active_entitlements(world: World) -> None:
    """The summary event arrived, but a later change's was lost and has aged out of Stripe's events:
    the records sweep asks Stripe for the customer's active entitlements (one request per customer
    with a summary) and queues the summary as it is now."""
    scenario = build("entitlements_summary_updated", ScenarioParams(customer_id="cus_summary"))
    world.fake.load(scenario.api_objects, scenario.api_lists)
    world.deliver(*scenario.events)
    before = _access(world, "cus_summary")["features"]
    assert before
    world.clock.now = scenario.events[-1]["created"] + 40 * DAY  # the events are gone from Stripe
    world.fake.put_active_entitlements("cus_summary", ["pro_reports"])

    report = world.run()

    assert report.counts.summaries_checked == 1
    assert report.counts.by_kind()["entitlement_summary"] == 1
    assert [r.query.get("customer") for r in world.fake.requests if "active_entitlements" in r.path] == [
        "cus_summary"
    ]
    world.repair_all()
    assert set(_access(world, "cus_summary")["features"]) == {"pro_reports"}
    world.clock.now += 3600
    assert world.run().counts.drift == 0
    assert world.drain() == []


def test_an_open_dispute_is_fetched_until_it_closes(world: World) -> None:
    scenario = build("purchase_dispute_lost", ScenarioParams(customer_id="cus_open"))
    world.fake.load(scenario.api_objects, scenario.api_lists)
    opened = [
        e
        for e in scenario.events
        if e["type"] not in ("charge.dispute.funds_withdrawn", "charge.dispute.closed")
    ]
    world.deliver(*opened)
    world.clock.now = scenario.events[-1]["created"] + 40 * DAY  # the closing events aged out
    assert _access(world, "cus_open")["features"]

    report = world.run()

    assert [r.path.split("/")[2] for r in world.fake.requests if r.path.count("/") == 3] == ["disputes"]
    assert report.counts.by_kind()["dispute"] == 1
    world.repair_all()
    assert _access(world, "cus_open")["features"] == {}
    world.clock.now += 3600
    before = len(world.fake.requests)
    again = world.run()
    assert again.counts.drift == 0
    assert not [r for r in world.fake.requests[before:] if r.path.startswith("/v1/disputes/")], "closed"


def test_every_case_at_once_is_repaired_within_two_runs_cut_by_the_time_budget(world: World) -> None:
    ends_at = T0 + 100 * DAY  # every story ends within the hour before the run: Stripe lists them all
    stories = [
        _stage(world, case, name.replace("-", ""), stripe_says_delivered=False, ends_at=ends_at)
        for name, case in CASES.items()
    ]
    world.clock.now = ends_at + 3600

    def two_seconds_a_request() -> None:
        world.clock.now += 2

    world.fake.on_request = two_seconds_a_request
    first = world.run(budget=6)
    assert first.stopped == "time budget"
    second = world.run(budget=60)
    assert second.complete
    world.repair_all()
    for reference, lost, _story in stories:
        assert _access(world, lost) == _access(world, reference), lost


def test_a_requeued_event_never_overwrites_a_newer_state(world: World) -> None:
    """A lost `customer.updated` is queued again; a later update of the same customer arrives
    before the worker gets to it: the later one stands."""
    case = CASES["user-id-change-lost"]
    _reference, lost, story = _stage(world, case, "race", stripe_says_delivered=False)
    world.run()
    customer = next(e for e in story.events if e["type"] == "customer.updated")["data"]["object"]
    newest = s.event(
        s.IdFactory("race:newest"),
        "customer.updated",
        dict(customer, metadata={"user_id": "user_newest"}),
        created=int(world.clock.now),
    )
    world.deliver(newest)
    world.repair_all()
    assert _user_lookup(world, "user_newest") == lost
    assert _user_lookup(world, "user_lostrace_new") is None
    profile = world.stored(lost, lost, "PROFILE")
    assert profile is not None
    assert profile.record.user_id == "user_newest"  # type: ignore[union-attr]


# -- backfill -------------------------------------------------------------------------------------

BACKFILLED = ("signup_paid", "one_time_purchase", "purchase_refunded", "purchase_dispute_lost")
BACKFILL_LIST_PATHS = {
    "/v1/subscriptions",
    "/v1/checkout/sessions",
    "/v1/payment_intents",
    "/v1/refunds",
    "/v1/disputes",
    "/v1/customers",
}


def _account_before_deploy(world: World) -> list[tuple[str, str]]:
    """Stories that happened before the deploy (Stripe has the objects, the table nothing), each
    beside a reference customer whose webhooks all arrived; plus a PaymentIntent granting by metadata."""
    pairs = []
    for name in BACKFILLED:
        reference = build(name, ScenarioParams(customer_id=f"cus_ref{name}", user_id=f"user_ref{name}"))
        story = build(name, ScenarioParams(customer_id=f"cus_old{name}", user_id=f"user_old{name}"))
        for scenario in (reference, story):
            world.fake.load(scenario.api_objects, scenario.api_lists)
            for obj in scenario.api_objects.values():
                if obj.get("object") == "charge" and obj.get("refunded"):
                    world.fake.put(_refund(obj))
        world.deliver(*reference.events)
        pairs.append((str(reference.customer_id), str(story.customer_id)))
    for customer in ("cus_refmeta", "cus_oldmeta"):
        intent = s.payment_intent(
            s.IdFactory(customer),
            amount=500,
            customer=customer,
            status="succeeded",
            created=T0,
            metadata={"features": "ebook"},
        )
        world.fake.put(intent)
        if customer == "cus_refmeta":
            world.deliver(webhook(intent, T0 + 1, "payment_intent.succeeded"))
    pairs.append(("cus_refmeta", "cus_oldmeta"))
    world.clock.now = T0 + 400 * DAY
    return pairs


def _refund(charge: dict[str, Any]) -> dict[str, Any]:
    return s.refund(
        s.IdFactory(charge["id"]),
        id=f"re_{charge['id']}",
        charge=charge["id"],
        payment_intent=charge.get("payment_intent"),
        customer=None,
        amount=charge["amount_refunded"],
        created=charge["created"] + 3600,
    )


def test_a_backfill_walks_the_account_and_queues_what_the_table_lacks(world: World) -> None:
    pairs = _account_before_deploy(world)
    before = len(world.fake.requests)  # the reference customers' webhooks fetched their line items

    dry = world.run(Backfill(), dry_run=True)
    assert dry.scope == "backfill"
    assert dry.complete
    assert world.drain() == []

    report = world.run(Backfill())

    assert report.complete
    assert report.counts.repaired == dry.counts.drift == report.counts.drift
    kinds = report.counts.by_kind()
    assert kinds["subscription"] == 1
    assert kinds["purchase"] == 4  # three one-time purchases and the subscription's Checkout session
    assert kinds["payment"] == 1  # only the PaymentIntent that grants by metadata
    assert kinds["charge"] == 1  # the refund's charge
    assert kinds["dispute"] == 1  # the lost dispute
    assert kinds["profile"] == 4  # the customers with a user id
    # Only what the table lacked: the reference customers, whose webhooks arrived, are left alone.
    assert {d.customer_id for d in report.drifts} <= {old for _, old in pairs} | {None}
    # Lists, nothing by id; and each customer with a subscription's active entitlements (none here).
    assert {r.path for r in world.fake.requests[before:]} == BACKFILL_LIST_PATHS | {
        "/v1/entitlements/active_entitlements"
    }
    sessions = [r for r in world.fake.requests[before:] if r.path == "/v1/checkout/sessions"]
    assert all(r.query.get("expand[0]") == "data.line_items" for r in sessions)
    world.repair_all()
    for reference, old in pairs:
        assert _access(world, old) == _access(world, reference), old
    assert _user_lookup(world, "user_oldsignup_paid") == "cus_oldsignup_paid"
    assert not [r for r in world.fake.requests[before:] if r.path.endswith("/line_items")], (
        "came with the list"
    )

    again = world.run(Backfill())
    assert again.complete
    assert again.counts.drift == 0
    assert world.drain() == [], "nothing is queued twice"


def test_a_backfill_gives_an_entitlements_accounts_customers_stripes_lookup_keys(world: World) -> None:
    """The account uses Stripe Entitlements and no summary event was sent within the 30 days Stripe
    keeps events: the backfill reads each subscribed customer's active entitlements and queues them as
    a summary, so the customer gets the features' lookup keys, not a feature named after the product."""
    scenario = build("signup_paid", ScenarioParams(customer_id="cus_ent", user_id="user_ent"))
    world.fake.load(scenario.api_objects, scenario.api_lists)
    world.fake.put_active_entitlements("cus_ent", ["pro_reports", "priority_support"])
    plain = build("signup_paid", ScenarioParams(customer_id="cus_plain", user_id="user_plain"))
    world.fake.load(plain.api_objects, plain.api_lists)  # Stripe lists no active entitlements for it
    world.clock.now = T0 + 400 * DAY

    report = world.run(Backfill())

    assert report.complete
    assert report.counts.summaries_checked == 2
    assert report.counts.by_kind()["entitlement_summary"] == 1
    asked = sorted(r.query.get("customer") for r in world.fake.requests if "active_entitlements" in r.path)
    assert asked == ["cus_ent", "cus_plain"]
    world.repair_all()
    assert set(_access(world, "cus_ent")["features"]) == {"pro_reports", "priority_support"}
    assert set(_access(world, "cus_plain")["features"]) == {ScenarioParams().product_id}
    again = world.run(Backfill())
    assert again.counts.drift == 0
    assert world.drain() == [], "a stored summary is not queued again"


def test_a_backfill_since_a_date_lists_only_what_was_created_after_it(world: World) -> None:
    _account_before_deploy(world)
    since = T0 + 2 * DAY
    report = world.run(Backfill(since))
    assert report.complete
    lists = [r for r in world.fake.requests if r.path in BACKFILL_LIST_PATHS]
    assert lists
    assert all(int(r.query["created[gte]"]) == since for r in lists)
    assert report.counts.by_kind()["payment"] == 0  # created at T0


def test_a_backfill_cut_by_the_time_budget_is_carried_on_by_the_scheduled_runs(world: World) -> None:
    pairs = _account_before_deploy(world)

    def two_seconds_a_request() -> None:
        world.clock.now += 2

    world.fake.on_request = two_seconds_a_request
    world.fake.fail_next(2, 429)
    started = world.run(Backfill(), budget=7)
    assert (started.scope, started.stopped) == ("backfill", "time budget")
    assert started.rate_limited == 2
    runs = [world.run(budget=7)]  # the schedule's runs: the backfill first, then the reconcile pass
    while runs[-1].scope == "backfill" or not runs[-1].complete:
        runs.append(world.run(budget=7))
        assert len(runs) < 20
    assert runs[0].scope == "backfill"  # the scheduled run carried the backfill on first
    finished = CursorStore(backfill=True).load()
    assert finished is not None
    assert finished.done
    world.repair_all()
    for reference, old in pairs:
        assert _access(world, old) == _access(world, reference), old


def test_an_applied_dispute_stripe_still_lists_as_undelivered_is_not_queued_again(world: World) -> None:
    """A dispute names no customer and the worker keeps no event ledger: the reconciler finds the
    dispute's record through its payment, as the worker filed it, and sees the event applied."""
    scenario = build("purchase_dispute_lost", ScenarioParams(customer_id="cus_disputed"))
    world.fake.load(scenario.api_objects, scenario.api_lists)
    disputes = [e for e in scenario.events if e["type"].startswith("charge.dispute.")]
    for event in scenario.events:  # Stripe never heard our 2xx for the dispute's events, say
        world.fake.put_event(event, delivered=event not in disputes)
    world.deliver(*scenario.events)
    world.clock.now = disputes[-1]["created"] + 60
    assert _access(world, "cus_disputed")["features"] == {}

    report = world.run()

    in_window = [e for e in disputes if e["created"] >= world.clock.now - 30 * DAY]
    assert in_window
    assert report.counts.failed_events == len(in_window)
    assert report.counts.events_lost == 0
    assert world.drain() == []


# -- the records-to-check index (issue 19) ---------------------------------------------------------


def _indexed() -> set[tuple[str, str]]:
    return {(item.pk, item.sk) for item in table_items.SyncItem.records_to_check.scan()}


def _purchase(
    customer: str, session_id: str, status: str, payment_status: str, *, payment_intent: str | None = None
) -> dict[str, Any]:
    """A Checkout session buying the book at T0, paid by `payment_intent` (`pi_<session id>` unless named)."""
    return s.checkout_session(
        s.IdFactory(session_id),
        id=session_id,
        mode="payment",
        status=status,  # type: ignore[arg-type]
        payment_status=payment_status,  # type: ignore[arg-type]
        customer=customer,
        payment_intent=payment_intent or f"pi_{session_id}",
        amount_total=900,
        created=T0,
    )


def _serve_session(world: World, obj: dict[str, Any], account: str | None = None) -> dict[str, Any]:
    """Stripe holds the session and its line items (the worker fetches those once)."""
    lines = s.checkout_line_items(session_id=obj["id"], prices=[(BOOK, 1)])["data"]
    world.fake.put_session(obj, lines, account=account)
    return obj


def _store_unmarked(*objects: dict[str, Any], account: str | None = None) -> None:
    """Records as a worker before the index wrote them: without `drift_check`."""
    for obj in objects:
        event = dict(webhook(obj, T0 + 10, "checkout.session.completed"), account=account)
        snapshot = snapshot_of(parse_event(event))
        assert isinstance(snapshot, Snapshot)
        item = table_items.record_item(table_items.customer_pk(str(snapshot.customer_id)), snapshot)
        item.drift_check = None
        item.save()


def _never(kind: str, object_id: str) -> bool:
    return False


def test_the_worker_marks_a_record_while_it_can_drift_and_unmarks_it_when_it_settles(world: World) -> None:
    unpaid = _serve_session(world, _purchase("cus_buyer", "cs_async", "complete", "unpaid"))
    world.deliver(webhook(unpaid, T0 + 10, "checkout.session.completed"))
    key = ("CUSTOMER#cus_buyer", "PURCHASE#cs_async")
    assert key in _indexed()

    paid = _serve_session(world, dict(unpaid, payment_status="paid"))
    world.deliver(webhook(paid, T0 + 20, "checkout.session.async_payment_succeeded"))

    assert key not in _indexed()
    assert world.stored("cus_buyer", "cs_async", "PURCHASE") is not None  # the record stays


def test_a_connect_customers_entitlements_item_is_indexed_so_a_pass_learns_its_account(world: World) -> None:
    """A Connect customer whose records have all settled: its entitlements item tells the pass which
    account to list (its refunds and disputes), one item per customer whatever its history."""
    account = "acct_1Settled"
    paid = _serve_session(world, _purchase("cus_settled", "cs_paid", "complete", "paid"), account)
    world.deliver(dict(webhook(paid, T0 + 10, "checkout.session.completed"), account=account))
    plain = _serve_session(world, _purchase("cus_plain", "cs_plain", "complete", "paid"))
    world.deliver(webhook(plain, T0 + 10, "checkout.session.completed"))
    reconcile_cursor.mark_records_indexed(T0)

    page = TableRecords().scan_page(None, 100, _never)

    assert _indexed() == {("CUSTOMER#cus_settled", "ENTITLEMENTS")}
    assert page.records == []  # nothing to compare: the purchase has settled
    assert page.accounts == {("test", account)}
    assert page.position is None


def test_a_table_written_before_the_index_is_scanned_once_marking_what_can_drift(world: World) -> None:
    """Until RECONCILE/RECORDS_INDEXED exists a pass scans the table (as before the index), marking the
    records that can drift and learning accounts from all; its end writes the marker, and later passes
    read the index alone."""
    open_purchase = _purchase("cus_open", "cs_open", "open", "unpaid")
    settled = _purchase("cus_paid", "cs_paid", "complete", "paid")
    connect_settled = _purchase("cus_connect", "cs_connect", "complete", "paid")
    for obj in (open_purchase, settled):
        _serve_session(world, obj)
    _serve_session(world, connect_settled, "acct_1Old")
    _store_unmarked(open_purchase, settled)
    _store_unmarked(connect_settled, account="acct_1Old")
    assert _indexed() == set()

    first = world.run()

    assert first.complete
    assert reconcile_cursor.records_indexed()
    assert _indexed() == {("CUSTOMER#cus_open", "PURCHASE#cs_open")}
    assert CursorStore().accounts() == {("test", "acct_1Old")}  # learnt from a settled record
    fetched = {r.path for r in world.fake.requests}
    assert "/v1/checkout/sessions/cs_open" in fetched
    assert "/v1/checkout/sessions/cs_paid" not in fetched

    # A record no worker of today writes (unmarked) is not read any more: the index alone is.
    late = _purchase("cus_late", "cs_late", "open", "unpaid")
    _serve_session(world, late)
    _store_unmarked(late)
    before = len(world.fake.requests)
    world.clock.now += 3600

    second = world.run()

    assert second.complete
    fetched = {r.path for r in world.fake.requests[before:]}
    assert "/v1/checkout/sessions/cs_open" in fetched
    assert "/v1/checkout/sessions/cs_late" not in fetched
    assert CursorStore().accounts() == {("test", "acct_1Old")}


def _records_items(world: World) -> list[dict[str, Any]]:
    """Every item of the table but the reconciler's own (a dry run keeps a cursor of its own)."""
    items = world.dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return sorted(
        (i for i in items if i["pk"]["S"] != "RECONCILE"), key=lambda i: (i["pk"]["S"], i["sk"]["S"])
    )


def test_a_dry_run_on_a_table_written_before_the_index_marks_nothing_and_writes_no_marker(
    world: World,
) -> None:
    """A dry run is run with read-only credentials: it scans an older table and reports its drift, but
    neither marks a record nor writes RECONCILE/RECORDS_INDEXED; the next real run still does both."""
    open_purchase = _purchase("cus_open", "cs_open", "open", "unpaid")
    _serve_session(world, dict(open_purchase, status="complete", payment_status="paid"))  # paid since
    _store_unmarked(open_purchase)
    before = _records_items(world)

    dry = world.run(dry_run=True)

    assert dry.complete
    assert [(d.kind, d.object_id) for d in dry.drifts] == [(DriftKind.STALE, "cs_open")]
    assert _records_items(world) == before
    assert _indexed() == set()
    assert not reconcile_cursor.records_indexed()
    assert world.drain() == []

    real = world.run()

    assert real.complete
    assert reconcile_cursor.records_indexed()
    assert _indexed() == {("CUSTOMER#cus_open", "PURCHASE#cs_open")}


def test_a_table_scan_interrupted_mid_way_resumes_and_writes_the_marker_only_at_its_end(world: World) -> None:
    drifting = [_purchase(f"cus_{n}", f"cs_open{n}", "open", "unpaid") for n in range(3)]
    settled = _purchase("cus_paid", "cs_paid", "complete", "paid")
    _store_unmarked(*drifting, settled)

    first = TableRecords().scan_page(None, 1, _never)
    assert first.position is not None
    assert not reconcile_cursor.records_indexed()  # one page is not the whole table

    position, pages = first.position, 1
    while position is not None:
        position = TableRecords().scan_page(position, 1, _never).position  # each page a later run
        pages += 1
        assert reconcile_cursor.records_indexed() is (position is None)
    assert pages >= 4

    marked = {(f"CUSTOMER#cus_{n}", f"PURCHASE#cs_open{n}") for n in range(3)}
    assert _indexed() == marked
    page = TableRecords().scan_page(None, 100, _never)  # the index, from now on
    assert {r.key for r in page.records} == marked
    assert {r.snapshot().record.id for r in page.records} == {f"cs_open{n}" for n in range(3)}


def test_a_table_scan_a_reconciler_before_the_index_began_ends_without_the_marker(world: World) -> None:
    _store_unmarked(*[_purchase(f"cus_{n}", f"cs_open{n}", "open", "unpaid") for n in range(3)])
    started = TableRecords().scan_page(None, 1, _never).position
    assert started is not None
    bare = json.dumps(json.loads(started)["table"])  # the old reconciler's position: the key alone

    position: str | None = bare
    while position is not None:
        position = TableRecords().scan_page(position, 1, _never).position

    # Its first pages were read unmarked: the next pass scans the whole table again.
    assert not reconcile_cursor.records_indexed()
    assert TableRecords().scan_page(None, 100, _never).position is None
    assert reconcile_cursor.records_indexed()


def test_a_record_rewritten_since_the_scan_read_it_keeps_what_the_worker_wrote(world: World) -> None:
    open_purchase = _purchase("cus_open", "cs_open", "open", "unpaid")
    _store_unmarked(open_purchase)
    [item] = list(table_items.RecordItem.scan())
    # The worker settles it between the scan's read and its mark.
    paid = _serve_session(world, dict(open_purchase, status="complete", payment_status="paid"))
    world.deliver(webhook(paid, T0 + 20, "checkout.session.completed"))

    mark_record_to_check(item)

    assert _indexed() == set()


def test_an_index_page_reads_in_full_only_what_the_lists_did_not_compare(world: World) -> None:
    account = "acct_1Listed"
    listed = subscription("cus_listed")
    world.deliver(dict(webhook(listed, T0 + 10), account=account))
    open_purchase = _serve_session(world, _purchase("cus_open", "cs_open", "open", "unpaid"))
    world.deliver(webhook(open_purchase, T0 + 10, "checkout.session.completed"))
    reconcile_cursor.mark_records_indexed(T0)

    page = TableRecords().scan_page(None, 100, lambda kind, object_id: object_id == "sub_cus_listed")

    assert [r.key for r in page.records] == [("CUSTOMER#cus_open", "PURCHASE#cs_open")]
    assert page.accounts == {("test", account)}  # the skipped subscription's account still counts
