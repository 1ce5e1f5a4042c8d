"""One user's Stripe customers as the user-entitlements tests build them: a one-time Checkout purchase
whose session created its customer, and a subscription of a customer whose metadata names the user."""

from __future__ import annotations

from typing import Any

from events.stripe import objects as s

T0 = 1_767_000_000
DAY = 86_400
COURSE = s.PriceSpec("price_course", "prod_course", recurring=False, unit_amount=4900)
EBOOK = s.PriceSpec("price_ebook", "prod_ebook", recurring=False, unit_amount=900)
PRO = s.PriceSpec("price_pro", "prod_pro", lookup_key="pro_monthly")


def purchase(customer: str, price: s.PriceSpec, created: int, user: str = "user_42") -> dict[str, Any]:
    """A paid one-time Checkout purchase whose session created `customer` for the user."""
    ids = s.IdFactory(f"{customer}-{created}")
    session = s.checkout_session(
        ids,
        id=f"cs_{customer}",
        mode="payment",
        status="complete",
        payment_status="paid",
        customer=customer,
        customer_creation="always",
        client_reference_id=user,
        amount_total=price.unit_amount,
        metadata={"product_id": price.product_id},
        created=created,
    )
    return s.event(ids, "checkout.session.completed", session, created=created)


def subscription_events(customer: str, user: str = "user_42") -> list[dict[str, Any]]:
    """A customer whose metadata names the user, then an active subscription, then its cancellation."""
    ids = s.IdFactory(customer)
    profile = s.customer(ids, id=customer, created=T0, metadata={"user_id": user})
    active = s.subscription(
        ids,
        id=f"sub_{customer}",
        customer=customer,
        items=[s.ItemSpec(PRO)],
        status="active",
        created=T0 + 1,
        period_start=T0 + 1,
        period_end=T0 + 30 * DAY,
    )
    canceled = {**active, "status": "canceled", "canceled_at": T0 + 5 * DAY, "ended_at": T0 + 5 * DAY}
    return [
        s.event(ids, "customer.created", profile, created=T0),
        s.event(ids, "customer.subscription.created", active, created=T0 + 1),
        s.event(ids, "customer.subscription.deleted", canceled, created=T0 + 5 * DAY),
    ]
