"""The one-time purchase the worker's and the reconciler's purchase tests share: cus_1 buys the book
(prod_book, named in the session's metadata) for $9 in Checkout session cs_1, paid by PaymentIntent
pi_1."""

from __future__ import annotations

from typing import Any

from events.stripe import objects as s

BOOK_AMOUNT = 900


def book_session(created: int, *, paid: bool = True, customer: str | None = "cus_1") -> dict[str, Any]:
    """The completed Checkout session, as its `checkout.session.completed` carries it: paid, or not
    yet (a delayed payment method); `customer` None for a guest."""
    return s.checkout_session(
        s.IdFactory("book"),
        id="cs_1",
        mode="payment",
        status="complete",
        payment_status="paid" if paid else "unpaid",
        customer=customer,
        payment_intent="pi_1",
        amount_total=BOOK_AMOUNT,
        created=created,
        metadata={"product_id": "prod_book"},
    )
