"""Storage at scale: what an event costs in DynamoDB whatever the customer's history.

Customers with 1, 100 and 1,000 prior settled invoices and 1, 100 and 1,000 prior lifetime purchases
(all applied through the worker), then the same renewal (subscription updated, invoice
created/finalized/paid, payment succeeded) and a new purchase: DynamoDB requests, read units, write
units and worker CPU per event (CPU outside the DynamoDB calls, which moto serves in this process).
Target: the 1,000 figures within 1.5x of the 1 figures.

Units are counted from the items with DynamoDB's size rules (bench/_dynamodb_units.py): moto does not
return ConsumedCapacity.
"""

from __future__ import annotations

import time
from typing import Any

from bench._storage_table import DAY, T0, environment, table

HISTORIES = (1, 100, 1000)


def _history_events(customer: str, count: int) -> list[dict[str, Any]]:
    from events.stripe import objects as s

    price = s.PriceSpec("price_pro", "prod_pro")
    events = []
    for n in range(count):
        t = T0 - (count - n) * 30 * DAY
        ids = s.IdFactory(f"{customer}-inv-{n}")
        obj = s.invoice(
            ids,
            customer=customer,
            subscription=f"sub_{customer}",
            items=[s.ItemSpec(price)],
            status="paid",
            billing_reason="subscription_cycle",
            created=t,
            period_start=t,
            period_end=t + 30 * DAY,
        )
        events.append(s.event(ids, "invoice.paid", obj, created=t + 3600))
        events.append(_purchase(customer, f"h{n}", t + 7200))
    return events


def _purchase(customer: str, tag: str, t: int) -> dict[str, Any]:
    from events.stripe import objects as s

    ids = s.IdFactory(f"{customer}-cs-{tag}")
    session = s.checkout_session(
        ids,
        mode="payment",
        status="complete",
        payment_status="paid",
        customer=customer,
        payment_intent=ids("pi"),
        amount_total=500,
        metadata={"product_id": "prod_lifetime"},
        created=t,
    )
    return s.event(ids, "checkout.session.completed", session, created=t)


def _renewal_events(customer: str) -> list[dict[str, Any]]:
    from events.stripe import objects as s

    price = s.PriceSpec("price_pro", "prod_pro")
    t = T0 + 10 * DAY
    events = []
    for step, status in enumerate(["active", "active"]):
        events.append(
            s.subscription_event(
                s.IdFactory(f"{customer}-sub-{step}"),
                customer=customer,
                price=price,
                status=status,  # type: ignore[arg-type]
                started=T0 - 3000 * DAY,
                period_start=t + step * 30 * DAY,
                period_end=t + (step + 1) * 30 * DAY,
                at=t + step * 30 * DAY,
            )
        )
    renewal = t + 30 * DAY
    ids = s.IdFactory(f"{customer}-renewal")
    for offset, (kind, status) in enumerate(
        [("invoice.created", "draft"), ("invoice.finalized", "open"), ("invoice.paid", "paid")]
    ):
        obj = s.invoice(
            ids,
            id=f"in_{customer}_renewal",
            customer=customer,
            subscription=f"sub_{customer}",
            items=[s.ItemSpec(price)],
            status=status,  # type: ignore[arg-type]
            billing_reason="subscription_cycle",
            created=renewal,
            period_start=renewal,
            period_end=renewal + 30 * DAY,
        )
        events.append(
            s.event(s.IdFactory(f"{customer}-renewal-{offset}"), kind, obj, created=renewal + 60 * offset)
        )
    events.append(_purchase(customer, "new", renewal + 600))
    return events


def _scale() -> dict[int, tuple[float, float, float, float]]:
    from adapters import sync_table
    from domain.entitlements import EntitlementRules
    from domain.sync import EventApplier

    figures = {}
    with table() as meter:
        applier = EventApplier(
            sync_table.DynamoCustomerStore(), EntitlementRules(), clock=lambda: T0 + 100 * DAY
        )
        for count in HISTORIES:
            customer = f"cus_Scale{count:04d}"
            for event in _history_events(customer, count):
                applier.apply(event)
            events = _renewal_events(customer)
            mark, calls = meter.units.snapshot(), meter.call_seconds
            started = time.process_time()
            for event in events:
                applier.apply(event)
            cpu = time.process_time() - started - (meter.call_seconds - calls)
            requests, reads, writes = meter.units.since(mark)
            n = len(events)
            figures[count] = (requests / n, reads / n, writes / n, cpu / n)
    return figures


def run() -> None:
    environment()
    scale = _scale()
    print("scale: per event of the same renewal + purchase, by prior settled invoices + purchases")
    print(f"    {'history':>8}{'requests':>10}{'RRU':>8}{'WRU':>8}{'CPU µs':>9}")
    for count, (requests, reads, writes, cpu) in scale.items():
        print(f"    {count:>8}{requests:10.2f}{reads:8.2f}{writes:8.2f}{cpu * 1e6:9.0f}")
    base, top = scale[HISTORIES[0]], scale[HISTORIES[-1]]
    for label, index in (("requests", 0), ("read units", 1), ("write units", 2), ("CPU", 3)):
        ratio = top[index] / base[index] if base[index] else float("inf")
        verdict = "met" if ratio <= 1.5 else "MISSED"
        print(f"    {label:12} 1,000 / 1 = {ratio:.2f}   (target <= 1.5: {verdict})")
