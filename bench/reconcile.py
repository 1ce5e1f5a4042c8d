"""Reconciler benchmark: Stripe and DynamoDB requests per 10,000 subscriptions when nothing drifted.

One full pass (every subscription listed and compared, the table's records scanned for what the lists
left out) against the fake Stripe API of the tests (requests counted at the server) and in-process
moto (requests counted with botocore event hooks on the clients pynamodb uses). Targets (issue 5): at
most 101 Stripe list requests and 100 DynamoDB batch reads per 10,000 subscriptions. The baseline,
measured in the same run, is the least any reconcile can do: list every page with the same SDK call
and read each page's records with one BatchGetItem, comparing nothing and saving nothing.
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

SUBSCRIPTIONS = 10_000
TABLE = "bench-reconcile"
CUSTOMER_ITEMS = True  # an entitlements item per customer too, so the records scan also skips items
T0 = 1_767_000_000


def _subscriptions() -> list[dict[str, Any]]:
    """Copies of one sample subscription with their own ids, newest first as Stripe lists them."""
    from local_runtime import stripe_samples as s

    sample = s.subscription(
        s.IdFactory("bench"),
        id="sub_bench",
        customer="cus_bench",
        items=[s.ItemSpec(s.PriceSpec("price_pro", "prod_pro"))],
        status="active",
        created=T0,
        period_start=T0,
        period_end=T0 + 30 * 86_400,
    )
    objects = []
    for n in range(SUBSCRIPTIONS):
        obj = copy.deepcopy(sample)
        obj["id"], obj["customer"], obj["created"] = f"sub_bench{n:07d}", f"cus_bench{n:07d}", T0 + n
        for item in obj["items"]["data"]:
            item["subscription"] = obj["id"]
        objects.append(obj)
    return objects


def _store(objects: list[dict[str, Any]]) -> None:
    """The records a webhook per subscription would have left (written directly: seeding is not measured)."""
    from adapters import sync_table
    from domain.records import Snapshot
    from domain.stripe_objects import parse_event, snapshot_of

    with sync_table.RecordItem.batch_write() as batch:
        for obj in objects:
            event = {
                "id": f"evt_{obj['id']}",
                "object": "event",
                "type": "customer.subscription.updated",
                "created": T0 + 10**5,
                "livemode": False,
                "data": {"object": obj},
            }
            snapshot = snapshot_of(parse_event(event))
            assert isinstance(snapshot, Snapshot)
            batch.save(sync_table.record_item(sync_table.customer_pk(obj["customer"]), snapshot))
    if CUSTOMER_ITEMS:
        with sync_table.EntitlementsItem.batch_write() as batch:
            for obj in objects:
                batch.save(
                    sync_table.EntitlementsItem(
                        sync_table.customer_pk(obj["customer"]),
                        sync_table.ENTITLEMENTS_SK,
                        customer_id=obj["customer"],
                        livemode=False,
                        features={"prod_pro": {"source": obj["id"]}},
                        payment_issue=False,
                        updated_at=T0,
                        version=1,
                        deleted=False,
                        records_version=1,
                    )
                )


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

    from adapters.reconciler import bind_table
    from tests.fake_stripe import FakeStripe
    from tests.sync_table_fixture import create_sync_table

    started = time.perf_counter()
    objects = _subscriptions()
    with mock_aws(), FakeStripe() as fake:
        dynamodb = boto3.client("dynamodb")
        create_sync_table(dynamodb, TABLE)
        bind_table(TABLE)
        fake.put_subscriptions(objects)
        _store(objects)
        seeded = time.perf_counter() - started
        ours = _reconcile(fake)
        baseline_seconds, baseline_pages = _baseline(fake)
    _print(ours, seeded, baseline_seconds, baseline_pages)


@dataclass
class _Measured:
    report: Any
    seconds: float
    stripe: Counter[str]
    dynamodb: Counter[str]
    sqs: Counter[str]


def _reconcile(fake: Any) -> _Measured:
    import boto3

    from adapters import reconcile_cursor, sync_table
    from adapters.fetched_queue import FetchedQueue
    from adapters.reconciler import Reconciler
    from adapters.stripe_api import StripeApi
    from domain.reconcile import Everything

    dynamodb: Counter[str] = Counter()
    sqs_requests: Counter[str] = Counter()

    def count(into: Counter[str]) -> Any:
        return lambda event_name, **_: into.update([event_name.rsplit(".", 1)[-1]])

    for model in (sync_table.RecordItem, *reconcile_cursor.MODELS):
        model._get_connection().connection.client.meta.events.register(
            "before-call.dynamodb", count(dynamodb)
        )
    sqs = boto3.client("sqs")
    sqs.meta.events.register("before-call.sqs", count(sqs_requests))
    queue_url = sqs.create_queue(QueueName="bench-reconcile.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    sqs_requests.clear()
    reconciler = Reconciler(
        StripeApi({"test": "sk_test_bench"}, fake.url), FetchedQueue(queue_url, client=sqs)
    )
    before = len(fake.requests)
    started = time.perf_counter()
    report = reconciler.run(Everything(), dry_run=False, time_budget_seconds=780)
    seconds = time.perf_counter() - started
    stripe = Counter(_kind(r.path) for r in fake.requests[before:])
    return _Measured(report, seconds, stripe, Counter(dynamodb), Counter(sqs_requests))  # before the baseline


def _baseline(fake: Any) -> tuple[float, int]:
    """The same list pages and one BatchGetItem per page, comparing and saving nothing, at the same pace."""
    from adapters import sync_table
    from adapters.stripe_api import StripeApi
    from domain.reconcile import DEFAULT_MAX_REQUESTS_PER_SECOND

    api = StripeApi({"test": "sk_test_bench"}, fake.url)
    started = time.perf_counter()
    after: str | None = None
    pages = 0
    while True:
        page = api.list_subscriptions(False, starting_after=after)
        keys = {(sync_table.customer_pk(o["customer"]), f"SUBSCRIPTION#{o['id']}") for o in page.data}
        list(sync_table.RecordItem.batch_get(keys))
        pages += 1
        if not page.has_more:
            return time.perf_counter() - started, pages
        after = page.data[-1]["id"]
        time.sleep(max(0.0, pages / DEFAULT_MAX_REQUESTS_PER_SECOND - (time.perf_counter() - started)))


def _print(ours: _Measured, seeded: float, baseline: float, minimum: int) -> None:
    from domain.reconcile import DEFAULT_MAX_REQUESTS_PER_SECOND

    per = 10_000 / SUBSCRIPTIONS
    counts = ours.report.counts
    lists = ours.stripe["list subscriptions"] * per
    batch_reads = ours.dynamodb["BatchGetItem"] * per
    print(
        f"reconcile: one full pass over {SUBSCRIPTIONS} subscriptions, nothing drifted (seeded in {seeded:.1f} s)"
    )
    print(
        f"  report                        checked {counts.checked}, drift {counts.drift}, queued {counts.repaired},"
        f" errors {counts.errors}, complete {ours.report.complete}"
    )
    print(f"  Stripe requests               {dict(ours.stripe)}")
    print(
        f"  Stripe list requests /10k     {lists:.0f}   target <= 101, ratio to minimum {lists / (minimum * per):.2f}"
    )
    print(f"  Stripe requests /10k (all)    {sum(ours.stripe.values()) * per:.0f}")
    print(f"  DynamoDB requests             {dict(ours.dynamodb)}")
    print(
        f"  DynamoDB batch reads /10k     {batch_reads:.0f}   target <= 100, ratio to minimum"
        f" {batch_reads / (minimum * per):.2f}"
    )
    print(f"  DynamoDB requests /10k (all)  {sum(ours.dynamodb.values()) * per:.0f}")
    print(f"  SQS requests                  {dict(ours.sqs) or 0}")
    print(
        f"  wall time                     {ours.seconds:.1f} s, paced at {DEFAULT_MAX_REQUESTS_PER_SECOND:.0f} Stripe requests/s"
    )
    print(
        f"  baseline (list + BatchGet)    {baseline:.1f} s   ratio ours/baseline {ours.seconds / baseline:.2f}"
    )


def _kind(path: str) -> str:
    if path == "/v1/subscriptions":
        return "list subscriptions"
    if path == "/v1/events":
        return "list events"
    return "retrieve " + path.split("/")[2]


if __name__ == "__main__":
    run()
