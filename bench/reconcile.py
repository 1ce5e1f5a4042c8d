"""Reconciler and backfill benchmark: Stripe and DynamoDB requests (counts, not times) for one account.

The account, on harness.fake_stripe (requests counted at the server) and in-process moto
(requests counted with botocore hooks on the clients pynamodb and the queue use):
* 10,000 subscriptions, each with its customer (with a user id) and records;
* 10,000 one-time purchases (paid Checkout session, its PaymentIntent, their creation events, all in
  the last 30 days: the worst case for the first pass), with their records;
* 1,000 events Stripe lists as undelivered, already applied (their records' stamps are as new);

The table is seeded in the layout the worker writes today: records stamped with their events, the
ones that can drift marked for the records-to-check index, an entitlements item per customer, no
ledger, and the RECORDS_INDEXED marker a stack with the index writes at its first pass.
* SUMMARIES customers with a stored Stripe Entitlements summary (equal to their active entitlements).

1. A reconcile pass with nothing drifted (the first pass: 30 days of events). Targets (issue 11):
   at most 1 Stripe request per 100 objects plus 1 per stored summary, at most 1 BatchGetItem per 100
   objects; nothing queued.
2. The backfill of the same account into an empty table: every object compared by lists and queued,
   and each subscribed customer's active entitlements read (SUMMARIES of them list some); it must fit in consecutive reconcile runs within the Lambda's time limit. Stripe's pace is the
   limit: runs are measured unpaced and the Stripe time added at the reconciler's default pace.
3. A pass as the table's history grows (bench/_reconcile_history.py): read units with 100 settled
   records per customer against none. Target (issue 19): within 1.5x.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import _reconcile_history

SUBSCRIPTIONS = 10_000
ACTIVE_ENTITLEMENTS = (
    "active entitlements (pass: per customer with a summary; backfill: per subscribed customer)"
)
PURCHASES = 10_000
FAILED_EVENTS = 1_000
SUMMARIES = 100
TABLE = "bench-reconcile"
LAMBDA_SECONDS = 900  # Lambda's limit; the reconciler's default budget is 780 s of it
NOW = 1_767_000_000
DAY = 86_400


def _sample_subscription() -> dict[str, Any]:
    from events.stripe import objects as s

    return s.subscription(
        s.IdFactory("bench"),
        id="sub_bench",
        customer="cus_bench",
        items=[s.ItemSpec(s.PriceSpec("price_pro", "prod_pro"))],
        status="active",
        created=NOW - 200 * DAY,
        period_start=NOW - 10 * DAY,
        period_end=NOW + 20 * DAY,
    )


@dataclass
class _Account:
    stripe: dict[str, list[dict[str, Any]]]  # objects by the fake's collection
    events: list[tuple[dict[str, Any], bool]]  # (event, delivered)
    summaries: list[tuple[str, list[str]]]
    line_items: dict[str, list[dict[str, Any]]]


def _account() -> _Account:
    """Copies of sample objects with their own ids, as Stripe would hold them."""
    from events.stripe import objects as s

    sample = _sample_subscription()
    book = s.PriceSpec("price_book", "prod_book", recurring=False, unit_amount=900)
    subscriptions, customers, sessions, intents = [], [], [], []
    events: list[tuple[dict[str, Any], bool]] = []
    line_items: dict[str, list[dict[str, Any]]] = {}
    for n in range(SUBSCRIPTIONS):
        obj = copy.deepcopy(sample)
        obj["id"], obj["customer"], obj["created"] = (
            f"sub_bench{n:07d}",
            f"cus_bench{n:07d}",
            obj["created"] + n,
        )
        for item in obj["items"]["data"]:
            item["subscription"] = obj["id"]
        subscriptions.append(obj)
        customers.append(
            s.customer(
                s.IdFactory("c"), id=obj["customer"], created=NOW - 300 * DAY, metadata={"user_id": f"u{n}"}
            )
        )
    lines = s.checkout_line_items(session_id="cs_bench", prices=[(book, 1)])["data"]
    for n in range(PURCHASES):
        created = NOW - 29 * DAY + n * 200  # all in the last 30 days
        customer = f"cus_bench{n:07d}"  # the subscribers bought a book too
        session = s.checkout_session(
            s.IdFactory("cs"),
            id=f"cs_bench{n:07d}",
            mode="payment",
            status="complete",
            payment_status="paid",
            customer=customer,
            payment_intent=f"pi_bench{n:07d}",
            amount_total=900,
            created=created,
        )
        intent = s.payment_intent(
            s.IdFactory("pi"),
            id=f"pi_bench{n:07d}",
            amount=900,
            customer=customer,
            status="succeeded",
            created=created,
        )
        sessions.append(session)
        intents.append(intent)
        line_items[session["id"]] = lines
        for event_type, obj in (
            ("payment_intent.succeeded", intent),
            ("checkout.session.completed", session),
        ):
            event = s.event(s.IdFactory(n), event_type, obj, created=created + 1, id=f"evt_{obj['id']}")
            events.append((event, True))
    for n in range(FAILED_EVENTS):
        obj = subscriptions[n]
        failed = s.event(
            s.IdFactory(n),
            "customer.subscription.updated",
            obj,
            created=NOW - 20 * DAY + n,
            id=f"evt_failed{n:05d}",
        )
        events.append((failed, False))
    summaries = [(f"cus_bench{n:07d}", ["pro_reports", "priority_support"]) for n in range(SUMMARIES)]
    return _Account(
        {
            "subscription": subscriptions,
            "customer": customers,
            "checkout.session": sessions,
            "payment_intent": intents,
        },
        events,
        summaries,
        line_items,
    )


def _serve(fake: Any, account: _Account) -> None:
    for objects in account.stripe.values():
        fake.put_many(objects)
    for session_id, lines in account.line_items.items():
        fake._line_items[session_id] = lines
    for event, delivered in account.events:
        fake.put_event(event, delivered=delivered)
    for customer, keys in account.summaries:
        fake.put_active_entitlements(customer, keys)


def _store(account: _Account) -> None:
    """What the webhooks left: every record, an entitlements item per customer, the index's marker
    (written directly: seeding is not measured)."""
    from adapters import reconcile_cursor, table_items
    from domain.reconcile import summary_object
    from domain.records import Snapshot
    from domain.stripe_objects import parse_event, snapshot_of
    from events.stripe import objects as s

    def snapshots() -> list[Snapshot]:
        found = []
        for obj in account.stripe["subscription"]:  # as of their latest event (after the failed ones)
            found.append(_snapshot(obj, NOW - DAY))
        for obj in account.stripe["customer"]:
            found.append(_snapshot(obj, NOW - 30 * DAY))
        for event, _ in account.events:
            if event["type"] != "customer.subscription.updated":
                found.append(_snapshot(event["data"]["object"], event["created"], event["id"]))
        for customer, keys in account.summaries:
            found.append(_snapshot(summary_object(customer, False, keys), NOW - 5 * DAY))
        return found

    def _snapshot(obj: dict[str, Any], created: int, event_id: str | None = None) -> Snapshot:
        event_id = event_id or f"evt_seed_{obj.get('id') or obj['customer']}"
        event = s.event(s.IdFactory(event_id), "seed", obj, created=created, id=event_id)
        if obj.get("object") == "checkout.session":
            event["data"]["object"] = {**obj, "line_items": {"data": account.line_items[obj["id"]]}}
        snapshot = snapshot_of(parse_event(event))
        assert isinstance(snapshot, Snapshot)
        return snapshot

    with table_items.RecordItem.batch_write() as batch:
        for snapshot in snapshots():
            batch.save(table_items.record_item(table_items.customer_pk(str(snapshot.customer_id)), snapshot))
    with table_items.EntitlementsItem.batch_write() as batch:
        for obj in account.stripe["customer"]:
            batch.save(
                table_items.EntitlementsItem(
                    table_items.customer_pk(obj["id"]),
                    table_items.ENTITLEMENTS_SK,
                    customer_id=obj["id"],
                    livemode=False,
                    features={"prod_pro": {"source": "sub"}},
                    payment_issue=False,
                    updated_at=NOW,
                    version=1,
                    deleted=False,
                    records_version=1,
                )
            )
    reconcile_cursor.mark_records_indexed(NOW)


class _CountingQueue:
    """The event queue as the reconciler sees it (SendMessageBatch), counted and accepted: what is
    measured is how many requests a run makes, not moto's SQS (whose FIFO deduplication slows
    down as tens of thousands of messages pile up)."""

    def __init__(self, counts: Counter[str]) -> None:
        self._counts = counts
        self.messages = 0

    def send_message_batch(self, *, QueueUrl: str, Entries: list[Any]) -> dict[str, Any]:
        self._counts.update(["SendMessageBatch"])
        self.messages += len(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


@dataclass
class _Measured:
    reports: list[Any]
    seconds: float
    stripe: Counter[str]
    dynamodb: Counter[str]
    sqs: Counter[str]


class _Counters:
    def __init__(self) -> None:
        self.dynamodb: Counter[str] = Counter()
        self.sqs: Counter[str] = Counter()

    def hook(self, into: Counter[str]) -> Callable[..., None]:
        return lambda event_name, **_: into.update([event_name.rsplit(".", 1)[-1]])


def _measure(fake: Any, counters: _Counters, *, scope: Any, budget: float) -> _Measured:
    from adapters.fetched_queue import FetchedQueue
    from adapters.reconciler import Reconciler
    from adapters.stripe_api import StripeApi

    counters.dynamodb.clear()
    counters.sqs.clear()
    # Unpaced (the fake answers at once); the Stripe time at the default pace is added when printed.
    reconciler = Reconciler(
        StripeApi({"test": "sk_test_bench"}, fake.url),
        FetchedQueue("bench-events.fifo", client=_CountingQueue(counters.sqs)),  # type: ignore[arg-type]
        max_requests_per_second=10_000,
        clock=lambda: NOW + time.perf_counter(),
    )
    before = len(fake.requests)
    started = time.perf_counter()
    reports = [reconciler.run(scope, dry_run=False, time_budget_seconds=budget)]
    while not reports[-1].complete and len(reports) < 50:
        reports.append(reconciler.run(scope, dry_run=False, time_budget_seconds=budget))
    seconds = time.perf_counter() - started
    stripe = Counter(_kind(r.path, r.query) for r in fake.requests[before:])
    return _Measured(reports, seconds, stripe, Counter(counters.dynamodb), Counter(counters.sqs))


def run() -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        TABLE_NAME=TABLE,
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    from moto import mock_aws

    from adapters import reconcile_cursor, table_items
    from adapters.reconciler import bind_table
    from domain.reconcile import Backfill, Everything
    from harness.fake_stripe import FakeStripe
    from harness.sync_table_fixture import create_sync_table

    started = time.perf_counter()
    account = _account()
    objects = SUBSCRIPTIONS + PURCHASES + FAILED_EVENTS
    with mock_aws(), FakeStripe() as fake:
        dynamodb = boto3.client("dynamodb")
        counters = _Counters()
        _serve(fake, account)
        print(f"  (account built and served in {time.perf_counter() - started:.0f} s)", flush=True)

        create_sync_table(dynamodb, TABLE)
        bind_table(TABLE)
        for model in (
            table_items.SyncItem,
            table_items.RecordItem,
            *reconcile_cursor.MODELS,
        ):
            model._get_connection().connection.client.meta.events.register(
                "before-call.dynamodb", counters.hook(counters.dynamodb)
            )
        _store(account)
        seeded = time.perf_counter() - started
        print(f"  (table seeded at {seeded:.0f} s)", flush=True)
        reconciled = _measure(fake, counters, scope=Everything(), budget=780)
        print(f"  (reconciled at {time.perf_counter() - started:.0f} s)", flush=True)

        dynamodb.delete_table(TableName=TABLE)
        create_sync_table(dynamodb, "bench-backfill")
        bind_table("bench-backfill")
        for model in (
            table_items.SyncItem,
            table_items.RecordItem,
            *reconcile_cursor.MODELS,
        ):
            model._get_connection().connection.client.meta.events.register(
                "before-call.dynamodb", counters.hook(counters.dynamodb)
            )
        backfilled = _measure(fake, counters, scope=Backfill(), budget=780)
    _print(reconciled, backfilled, seeded, objects)
    _reconcile_history.run()


def _print(ours: _Measured, backfill: _Measured, seeded: float, objects: int) -> None:
    from domain.reconcile import DEFAULT_MAX_REQUESTS_PER_SECOND, DEFAULT_TIME_BUDGET_SECONDS

    [report] = ours.reports
    counts = report.counts
    stripe_total = sum(ours.stripe.values())
    summaries = ours.stripe[ACTIVE_ENTITLEMENTS]
    lists = stripe_total - summaries
    batch_reads = ours.dynamodb["BatchGetItem"]
    print(
        f"reconcile: one pass over {SUBSCRIPTIONS} subscriptions + {PURCHASES} one-time purchases + "
        f"{FAILED_EVENTS} undelivered events + {SUMMARIES} Entitlements summaries, nothing drifted"
        f" (seeded in {seeded:.0f} s)"
    )
    print(
        f"  report                       checked {counts.checked}, events checked {counts.events_checked}"
        f" ({counts.events_applied} already applied), summaries {counts.summaries_checked}, drift {counts.drift},"
        f" lost events {counts.events_lost}, queued {counts.repaired + counts.events_requeued},"
        f" errors {counts.errors}, complete {report.complete}"
    )
    print(f"  Stripe requests              {dict(ours.stripe)}")
    print(
        f"  Stripe list requests         {lists:>5}   target <= {objects // 100} (1 per 100 of {objects} objects)"
        f"   {lists / (objects / 100):.2f} per 100"
    )
    print(
        f"  + active entitlements        {summaries:>5}   target <= {SUMMARIES} (1 per customer with a summary)"
    )
    print(f"  DynamoDB requests            {dict(ours.dynamodb)}")
    print(
        f"  DynamoDB BatchGetItem        {batch_reads:>5}   target <= {objects // 100}"
        f"   {batch_reads / (objects / 100):.2f} per 100 objects"
    )
    print(f"  SQS requests                 {dict(ours.sqs) or 0}   target 0 (nothing drifted)")
    paced = stripe_total / DEFAULT_MAX_REQUESTS_PER_SECOND
    print(
        f"  time                         {ours.seconds:.1f} s unpaced + {paced:.1f} s of Stripe requests at"
        f" {DEFAULT_MAX_REQUESTS_PER_SECOND:.0f}/s = {ours.seconds + paced:.0f} s of a {DEFAULT_TIME_BUDGET_SECONDS:.0f} s run"
    )

    total = sum(r.counts.checked for r in backfill.reports)
    queued = sum(r.counts.repaired for r in backfill.reports)
    stripe_total = sum(backfill.stripe.values())
    paced = stripe_total / DEFAULT_MAX_REQUESTS_PER_SECOND
    run_seconds = backfill.seconds + paced
    runs = max(1, math.ceil(run_seconds / DEFAULT_TIME_BUDGET_SECONDS))
    print("backfill: the same account into an empty table")
    print(
        f"  report                       checked {total}, queued {queued}, complete {backfill.reports[-1].complete}"
    )
    print(f"  Stripe requests              {dict(backfill.stripe)}")
    print(
        f"  Stripe requests /100 objects {stripe_total / (total / 100):.2f} (lists of 100, nothing fetched by id)"
    )
    print(f"  DynamoDB requests            {dict(backfill.dynamodb)}")
    print(f"  SQS requests                 {dict(backfill.sqs)}")
    print(
        f"  time                         {backfill.seconds:.1f} s unpaced + {paced:.1f} s of Stripe"
        f" requests at {DEFAULT_MAX_REQUESTS_PER_SECOND:.0f}/s = {run_seconds:.0f} s: {runs} run(s) of"
        f" {DEFAULT_TIME_BUDGET_SECONDS:.0f} s (Lambda limit {LAMBDA_SECONDS} s)   target: consecutive runs, each within the limit"
    )


def _kind(path: str, query: Any) -> str:
    if path == "/v1/events":
        return "list undelivered events" if query.get("delivery_success") == "false" else "list change events"
    if path == "/v1/entitlements/active_entitlements":
        return ACTIVE_ENTITLEMENTS
    parts = path.split("/")
    if len(parts) == 3 or path == "/v1/checkout/sessions":
        return "list " + path.removeprefix("/v1/")
    return "retrieve " + parts[2]


if __name__ == "__main__":
    run()
