"""The subscription the worker's unit tests apply event by event: cus_1's subscription (sub_1 unless
named) to one price, started at T0 and in its first 30-day period."""

from __future__ import annotations

from typing import Any

from events.stripe import objects as s

T0 = 1_767_000_000
DAY = 86_400
PRO = s.PriceSpec("price_pro", "prod_pro", lookup_key="pro_monthly")


def subscription_event(
    status: s.SubscriptionStatus,
    at: int,
    *,
    event_type: str = "customer.subscription.updated",
    event_id: str | None = None,
    price: s.PriceSpec = PRO,
    subscription_id: str = "sub_1",
    **changes: Any,
) -> dict[str, Any]:
    """An event at `at` (its id drawn from the subscription and `at` unless given); `changes` are the
    subscription's fields (`cancel_at_period_end`, `canceled_at`, `metadata`, ...)."""
    return s.subscription_event(
        s.IdFactory(f"{subscription_id}-{at}"),
        subscription_id=subscription_id,
        customer="cus_1",
        price=price,
        status=status,
        started=T0,
        period_start=T0,
        period_end=T0 + 30 * DAY,
        at=at,
        type=event_type,
        event_id=event_id,
        **changes,
    )
