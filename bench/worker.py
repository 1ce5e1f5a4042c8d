"""Worker benchmark: events applied per second in-process on moto, and AWS requests per event.

Requests are counted with botocore event hooks on the clients pynamodb uses. The baseline, measured in
the same run on the same moto, is the least any sync can do per event: one unconditional PutItem of
the raw event. Targets: at most 3 DynamoDB write units per applied event (ARCHITECTURE.md counts units, not
requests: a transaction bills twice; issue 4's "<= 2 write requests" is printed for reference), and
no Stripe API call except on ties.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from typing import Any

from bench import _dynamodb_units
from bench._storage_table import environment

COUNT_CUSTOMERS = 60
EVENTS_PER_CUSTOMER = 8
WRITE_OPERATIONS = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


def _history(customer: str, start: int) -> list[dict[str, Any]]:
    from events.stripe import objects as s

    price = s.PriceSpec("price_pro", "prod_pro")
    statuses = ["incomplete", "active", "active", "past_due", "active", "active", "canceled", "canceled"]
    events = []
    for step, status in enumerate(statuses[:EVENTS_PER_CUSTOMER]):
        events.append(
            s.subscription_event(
                s.IdFactory(f"{customer}-{step}"),
                customer=customer,
                price=price,
                status=status,  # type: ignore[arg-type]
                started=start,
                period_start=start,
                period_end=start + 30 * 86_400,
                at=start + step,
            )
        )
    return events


def run() -> None:
    environment("bench")
    import boto3
    from moto import mock_aws

    from adapters import sync_table, table_items
    from domain.entitlements import EntitlementRules
    from domain.sync import EventApplier, Outcome
    from harness.sync_table_fixture import create_sync_table

    rng = random.Random(7)
    events = [e for c in range(COUNT_CUSTOMERS) for e in _history(f"cus_bench{c:04d}", 1_767_000_000)]
    delivered = events + rng.sample(events, len(events) // 10)  # 10 % redelivered
    rng.shuffle(delivered)

    with mock_aws():
        client = boto3.client("dynamodb")
        create_sync_table(client, "bench")
        requests: Counter[str] = Counter()
        units = _dynamodb_units.UnitMeter()

        def count(event_name: str, **_: Any) -> None:
            requests[event_name.rsplit(".", 1)[-1]] += 1

        for model in (
            table_items.SyncItem,
            table_items.RecordItem,
            table_items.EntitlementsItem,
            table_items.LookupItem,
            table_items.LedgerItem,
            table_items.StateItem,
        ):
            model._get_connection().connection.client.meta.events.register("before-call.dynamodb", count)
            units.attach(model._get_connection().connection.client)

        from harness.memory_store import MemoryStore, ScriptedStripe

        stripe = ScriptedStripe()  # an API key is configured: any call it sees is counted
        applier = EventApplier(
            sync_table.DynamoCustomerStore(),
            EntitlementRules(),
            clock=lambda: int(time.time()),
            stripe=stripe,
        )
        outcomes: Counter[str] = Counter()
        started = time.perf_counter()
        for event in delivered:
            outcomes[str(applier.apply(event).outcome)] += 1
        ours = time.perf_counter() - started
        applied = outcomes[str(Outcome.APPLIED)]

        baseline_client = boto3.client("dynamodb")
        started = time.perf_counter()
        for event in delivered:
            baseline_client.put_item(
                TableName="bench",
                Item={
                    "pk": {"S": f"RAW#{event['id']}"},
                    "sk": {"S": "EVENT"},
                    "body": {"S": json.dumps(event)},
                },
            )
        baseline = time.perf_counter() - started

    # The same deliveries through the domain alone (in-memory table): the applier's own CPU cost,
    # apart from moto's, which dominates the figures above (it copies the table on every transaction).
    memory_applier = EventApplier(MemoryStore(), EntitlementRules(), clock=lambda: 0)
    started = time.process_time()
    for event in delivered:
        memory_applier.apply(event)
    domain_cpu = (time.process_time() - started) / len(delivered)

    writes = sum(n for op, n in requests.items() if op in WRITE_OPERATIONS)
    total = sum(requests.values())
    print(
        f"worker: {len(delivered)} deliveries ({len(events)} distinct snapshot events, 10% duplicated, shuffled)"
    )
    print(f"  outcomes                    {dict(outcomes)}")
    print(f"  events/s (ours)             {len(delivered) / ours:8.0f}")
    print(
        f"  events/s (raw PutItem)      {len(delivered) / baseline:8.0f}   ratio ours/baseline {baseline / ours:.2f}"
    )
    print(f"  DynamoDB requests           {dict(requests)}")
    print(f"  requests per delivery       {total / len(delivered):.2f}")
    print(
        f"  write units per applied     {units.write_units / max(applied, 1):.2f}   (target <= 3)\n"
        f"  read units per delivery     {units.read_units / len(delivered):.2f}\n"
        f"  write requests per applied  {writes / max(applied, 1):.2f}   (issue 4 counted requests: <= 2)"
    )
    print(f"  write requests per delivery {writes / len(delivered):.2f}")
    print(f"  domain CPU per delivery     {domain_cpu * 1e6:.0f} us (in-memory table)")
    print(f"  Stripe API calls            {len(stripe.calls)} (key configured; calls happen only on ties)")


if __name__ == "__main__":
    run()
