"""Refunds counted once (issue 20, 7): access is decided from the refund objects' own statuses and
amounts, not from what a charge snapshot's `amount_refunded` may or may not already leave out. A
failed full refund followed by a second full refund takes the purchase back, in any delivery order.

Since API version 2022-11-15 a charge no longer embeds its refunds: `charge.refunded` carries the
charge's totals, and the refunds come as their own objects (`charge.refund.updated`, `refund.*`)."""

from __future__ import annotations

from itertools import permutations
from typing import Any

import pytest

from domain.entitlements import EntitlementRules
from domain.sync import EventApplier
from events.stripe import objects as s
from harness.memory_store import MemoryStore
from tests.support.book_purchase import BOOK_AMOUNT, book_session

T0 = 1_767_000_000
PAID = BOOK_AMOUNT  # the whole price, refunded in full


def purchase() -> dict[str, Any]:
    return s.event(
        s.IdFactory(T0), "checkout.session.completed", book_session(T0), created=T0 + 10, id="evt_paid"
    )


def charge(created: int, refunded: int, event_id: str) -> dict[str, Any]:
    ids = s.IdFactory(created)
    obj = s.charge(
        ids,
        id="ch_1",
        amount=PAID,
        customer="cus_1",
        payment_intent="pi_1",
        created=T0,
        amount_refunded=refunded,
    )
    return s.event(ids, "charge.refunded", obj, created=created, id=event_id)


def refund(refund_id: str, status: str, created: int, event_type: str, event_id: str) -> dict[str, Any]:
    ids = s.IdFactory(created)
    obj = s.refund(
        ids, id=refund_id, charge="ch_1", payment_intent="pi_1", customer=None, amount=PAID, created=T0 + 100
    )
    return s.event(ids, event_type, {**obj, "status": status}, created=created, id=event_id)


# The first full refund, its failure (the money came back: the charge counts it no more), a second
# full refund.
FIRST_REFUNDED = charge(T0 + 100, PAID, "evt_c1")
FIRST_FAILED = refund("re_1", "failed", T0 + 200, "charge.refund.updated", "evt_r1")
AFTER_FAILURE = charge(T0 + 200, 0, "evt_c2")
SECOND_REFUNDED = charge(T0 + 300, PAID, "evt_c3")
SECOND = refund("re_2", "succeeded", T0 + 300, "refund.created", "evt_r2")
HISTORY = [FIRST_REFUNDED, FIRST_FAILED, AFTER_FAILURE, SECOND_REFUNDED, SECOND]


def access(events: list[dict[str, Any]]) -> set[str]:
    store = MemoryStore()
    applier = EventApplier(store, EntitlementRules(), clock=lambda: T0 + 1000)
    for event in [purchase(), *events]:
        applier.apply(event)
    return set(store.entitlements["cus_1"].entitlements.features)


def test_a_failed_full_refund_then_a_second_full_refund_takes_the_purchase_back() -> None:
    assert access(HISTORY) == set()


def test_the_same_in_the_reverse_order() -> None:
    assert access(list(reversed(HISTORY))) == set()


@pytest.mark.parametrize("order", list(permutations(HISTORY)))
def test_the_same_in_every_order(order: tuple[dict[str, Any], ...]) -> None:
    assert access(list(order)) == set()


@pytest.mark.parametrize(
    "events",
    [
        [FIRST_REFUNDED, FIRST_FAILED],
        [FIRST_FAILED, FIRST_REFUNDED],
        [FIRST_REFUNDED, FIRST_FAILED, AFTER_FAILURE],
        [AFTER_FAILURE, FIRST_FAILED, FIRST_REFUNDED],
    ],
)
def test_a_failed_full_refund_alone_gives_the_purchase_back_in_either_order(
    events: list[dict[str, Any]],
) -> None:
    assert access(events) == {"prod_book"}


def test_a_second_refund_that_is_partial_keeps_access() -> None:
    ids = s.IdFactory(T0 + 300)
    partial = s.refund(
        ids, id="re_2", charge="ch_1", payment_intent="pi_1", customer=None, amount=300, created=T0 + 300
    )
    second = s.event(ids, "refund.created", partial, created=T0 + 300, id="evt_r2")
    assert access([FIRST_REFUNDED, FIRST_FAILED, AFTER_FAILURE, charge(T0 + 300, 300, "evt_c3"), second]) == {
        "prod_book"
    }
