"""What a reconcile pass reads as the table's history grows (issue 19): read units and requests of one
pass over CUSTOMERS customers, each with one active subscription, with no history and with HISTORY
settled records each (paid invoices, paid one-time purchases, succeeded payments), in the layout the
worker writes today (records that can drift marked for the records-to-check index). Also the same
history read the way a pass read it before the index (the table scanned: today only a table written
before the index, once).

Measured at CUSTOMERS = 1,000 in moto (100,000 history items seed in about a minute; a million would
take a quarter of an hour). Every read of a pass grows linearly with the customers (list pages of 100,
BatchGetItem of 100, scans of the index and of the table), so the 10,000-customer figures printed
beside are the measured ones times 10, labelled as scaled. The ratio does not depend on the scaling.
DynamoDB units per bench/_dynamodb_units.py (strongly consistent rates, as moto returns none).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from typing import Any

CUSTOMERS = 1_000
HISTORY = 100
TARGET_CUSTOMERS = 10_000
TARGET_RATIO = 1.5
NOW = 1_767_000_000
DAY = 86_400


@dataclass(frozen=True, slots=True)
class PassReads:
    read_units: float
    requests: dict[str, int]
    complete: bool
    records_checked: int


def _subscription(n: int) -> dict[str, Any]:
    from events.stripe import objects as s

    return s.subscription(
        s.IdFactory(f"hist{n}"),
        id=f"sub_hist{n:06d}",
        customer=f"cus_hist{n:06d}",
        items=[s.ItemSpec(s.PriceSpec("price_pro", "prod_pro"))],
        status="active",
        created=NOW - 400 * DAY,
        period_start=NOW - 10 * DAY,
        period_end=NOW + 20 * DAY,
    )


def _history_samples() -> list[Any]:
    """One settled record of each kind, copied with other ids for every customer."""
    from domain.stripe_objects import record_of
    from events.stripe import objects as s

    ids = s.IdFactory("hist-sample")
    pro = s.PriceSpec("price_pro", "prod_pro")
    invoice = s.invoice(
        ids,
        customer="cus_sample",
        subscription="sub_sample",
        items=[s.ItemSpec(pro)],
        status="paid",
        billing_reason="subscription_cycle",
        created=NOW - 60 * DAY,
        period_start=NOW - 60 * DAY,
        period_end=NOW - 30 * DAY,
        paid_at=NOW - 60 * DAY,
    )
    session = s.checkout_session(
        ids,
        mode="payment",
        status="complete",
        payment_status="paid",
        customer="cus_sample",
        payment_intent="pi_sample",
        amount_total=900,
        created=NOW - 90 * DAY,
    )
    intent = s.payment_intent(
        ids, id="pi_sample", amount=900, customer="cus_sample", status="succeeded", created=NOW - 90 * DAY
    )
    return [
        record_of("invoice", invoice, as_of=NOW - 60 * DAY),
        record_of("purchase", session, as_of=NOW - 90 * DAY),
        record_of("payment", intent, as_of=NOW - 90 * DAY),
    ]


def _seed(customers: int, history: int, *, indexed: bool) -> None:
    """The table as today's worker leaves it: each customer's subscription record (marked), its
    entitlements item, and `history` settled records (unmarked); RECONCILE/RECORDS_INDEXED when
    `indexed` (a stack deployed with the index writes it at its first pass, over an empty table)."""
    from adapters import reconcile_cursor, sync_table
    from domain.records import Snapshot, Stamp
    from domain.settlement import can_drift
    from domain.stripe_objects import record_of

    samples = _history_samples()
    with sync_table.SyncItem.batch_write() as batch:
        for n in range(customers):
            customer = f"cus_hist{n:06d}"
            pk = sync_table.customer_pk(customer)
            obj = _subscription(n)
            record = record_of("subscription", obj, as_of=NOW - DAY)
            batch.save(
                sync_table.record_item(pk, Snapshot(record, Stamp(NOW - DAY, 0, f"evt_s{n}"), customer))
            )
            batch.save(
                sync_table.EntitlementsItem(
                    pk,
                    sync_table.ENTITLEMENTS_SK,
                    customer_id=customer,
                    livemode=False,
                    features={"prod_pro": {"source": obj["id"]}},
                    payment_issue=False,
                    updated_at=NOW,
                    version=1,
                    deleted=False,
                    records_version=history + 1,
                )
            )
            for h in range(history):
                sample = samples[h % len(samples)]
                settled = replace(sample, id=f"{sample.id[:3]}h{n:06d}x{h:03d}", customer_id=customer)
                assert not can_drift(settled)
                stamp = Stamp(NOW - 400 * DAY + h * DAY, 0, f"evt_h{n}x{h}")
                batch.save(sync_table.record_item(pk, Snapshot(settled, stamp, customer)))
    if indexed:
        reconcile_cursor.mark_records_indexed(NOW)


def _one_pass(fake: Any, table: str, customers: int, history: int, *, indexed: bool) -> PassReads:
    import boto3

    from adapters import sync_table
    from adapters.fetched_queue import FetchedQueue
    from adapters.reconciler import Reconciler, bind_table
    from adapters.stripe_api import StripeApi
    from bench._dynamodb_units import UnitMeter
    from domain.reconcile import Everything
    from harness.sync_table_fixture import create_sync_table

    dynamodb = boto3.client("dynamodb")
    create_sync_table(dynamodb, table)
    bind_table(table)
    _seed(customers, history, indexed=indexed)
    meter = UnitMeter()
    clients: dict[int, Any] = {}
    models: list[type[sync_table.SyncItem]] = [sync_table.SyncItem]
    while models:
        model = models.pop()
        client = model._get_connection().connection.client
        clients[id(client)] = client
        models.extend(model.__subclasses__())
    for client in clients.values():
        meter.attach(client)
    reconciler = Reconciler(
        StripeApi({"test": "sk_test_bench"}, fake.url),
        FetchedQueue("bench-events.fifo", client=_NoQueue()),  # type: ignore[arg-type]
        max_requests_per_second=10_000,
        clock=lambda: NOW + time.perf_counter(),
    )
    report = reconciler.run(Everything(), dry_run=False, time_budget_seconds=780)
    reads = PassReads(meter.read_units, dict(meter.requests), report.complete, report.counts.checked)
    dynamodb.delete_table(TableName=table)
    return reads


class _NoQueue:
    """Nothing drifts in these tables: a repair would be a bench failure, shown in the report."""

    def send_message_batch(self, **_: Any) -> dict[str, Any]:
        raise AssertionError("a pass over an undrifted table queued a repair")


def run() -> None:
    from harness.fake_stripe import FakeStripe

    started = time.perf_counter()
    with FakeStripe() as fake:
        fake.put_many(copy.deepcopy(_subscription(n)) for n in range(CUSTOMERS))
        fresh = _one_pass(fake, "bench-history-none", CUSTOMERS, 0, indexed=True)
        grown = _one_pass(fake, "bench-history-indexed", CUSTOMERS, HISTORY, indexed=True)
        scanned = _one_pass(fake, "bench-history-scanned", CUSTOMERS, HISTORY, indexed=False)
    _print(fresh, grown, scanned, time.perf_counter() - started)


def _print(fresh: PassReads, grown: PassReads, scanned: PassReads, seconds: float) -> None:
    scale = TARGET_CUSTOMERS / CUSTOMERS
    print(
        f"reconcile pass as history grows: {CUSTOMERS} customers with one active subscription each,"
        f" measured; {TARGET_CUSTOMERS} scaled x{scale:.0f} (reads are linear in customers) ({seconds:.0f} s)"
    )
    rows = (
        ("no history (index)", fresh),
        (f"{HISTORY} settled records each (index)", grown),
        (f"{HISTORY} settled records each (table scan, before the index)", scanned),
    )
    for label, reads in rows:
        total = sum(reads.requests.values())
        print(
            f"  {label:<58} {reads.read_units:>9.0f} read units, {total:>5} DynamoDB requests"
            f" ({reads.read_units * scale:.0f} / {total * scale:.0f} at {TARGET_CUSTOMERS})"
            f"   checked {reads.records_checked}, complete {reads.complete}"
        )
    ratio = grown.read_units / fresh.read_units
    print(
        f"  read units, with history / without     {ratio:>9.2f}   target <= {TARGET_RATIO}"
        f"   (table scan: {scanned.read_units / fresh.read_units:.1f})"
    )
