"""Grace that ends (issue 20, 3): under "leave the subscription past-due" the grace counts from the
first unpaid invoice of the current past_due spell; a new renewal invoice does not restart it, and the
spell ends once the subscription is paid up. The same in every delivery order. Through the applier,
as the worker runs it."""

from __future__ import annotations

from itertools import permutations
from typing import Any

import pytest

from domain.entitlements import DAY, EntitlementRules
from domain.sync import EventApplier
from events.stripe import objects as s
from harness.memory_store import MemoryStore

JAN1 = 1_767_225_600  # 2026-01-01
FEB1 = 1_769_904_000  # 2026-02-01
MAR1 = 1_772_323_200  # 2026-03-01
MAR2 = 1_772_409_600  # 2026-03-02
APR1 = 1_775_001_600
HOUR = 3600
PRO = s.PriceSpec("price_pro", "prod_pro")


def sub(
    status: s.SubscriptionStatus, created: int, start: int, end: int, latest: str, *, event_id: str
) -> dict[str, Any]:
    return s.subscription_event(
        s.IdFactory(created),
        customer="cus_1",
        price=PRO,
        status=status,
        started=JAN1,
        period_start=start,
        period_end=end,
        at=created,
        subscription_id="sub_1",
        event_id=event_id,
        latest_invoice=latest,
    )


def invoice(
    invoice_id: str,
    created: int,
    event_created: int,
    *,
    attempts: int,
    next_attempt: int | None,
    event_id: str,
    paid_at: int | None = None,
) -> dict[str, Any]:
    ids = s.IdFactory(event_created)
    obj = s.invoice(
        ids,
        id=invoice_id,
        customer="cus_1",
        subscription="sub_1",
        items=[s.ItemSpec(PRO)],
        status="paid" if paid_at else "open",
        billing_reason="subscription_cycle",
        created=created,
        period_start=created - 28 * DAY,
        period_end=created,
        attempted=True,
        attempt_count=attempts,
        next_payment_attempt=next_attempt,
        finalized_at=created + HOUR,
        paid_at=paid_at,
    )
    event_type = "invoice.paid" if paid_at else "invoice.payment_failed"
    return s.event(ids, event_type, obj, created=event_created, id=event_id)


# The reproduced case: January is paid; the February renewal fails at its finalization (Feb 1, 01:00);
# the retries run out on Feb 22 and the subscription is left past_due; the March renewal fails too.
JAN_PAID = invoice(
    "in_jan", JAN1, JAN1 + HOUR, attempts=1, next_attempt=None, event_id="evt_0", paid_at=JAN1 + HOUR
)
FEB_FAILED = invoice("in_feb", FEB1, FEB1 + HOUR, attempts=1, next_attempt=FEB1 + 3 * DAY, event_id="evt_1")
PAST_DUE = sub("past_due", FEB1 + HOUR, FEB1, MAR1, "in_feb", event_id="evt_2")
RETRIES_OVER = invoice("in_feb", FEB1, FEB1 + 21 * DAY, attempts=4, next_attempt=None, event_id="evt_3")
MAR_FAILED = invoice("in_mar", MAR1, MAR1 + HOUR, attempts=1, next_attempt=MAR1 + 3 * DAY, event_id="evt_4")
STILL_PAST_DUE = sub("past_due", MAR1 + HOUR, MAR1, APR1, "in_mar", event_id="evt_5")
HISTORY = [JAN_PAID, FEB_FAILED, PAST_DUE, RETRIES_OVER, MAR_FAILED, STILL_PAST_DUE]


def deliver(events: list[dict[str, Any]], rules: EntitlementRules | None = None) -> MemoryStore:
    store = MemoryStore()
    applier = EventApplier(store, rules or EntitlementRules(), clock=lambda: MAR2)
    for event in events:
        applier.apply(event)
    return store


def grace_end(store: MemoryStore) -> int | None:
    return store.entitlements["cus_1"].entitlements.features["prod_pro"].until


def test_a_renewal_invoice_of_the_same_spell_does_not_restart_the_grace() -> None:
    store = deliver(HISTORY)
    assert grace_end(store) == FEB1 + HOUR + 7 * DAY  # ended on 2026-02-08
    assert store.entitlements["cus_1"].entitlements.granted_at(MAR2) == {}
    assert store.entitlements["cus_1"].entitlements.payment_issue


def test_the_configured_grace_length_counts_from_the_spells_first_unpaid_invoice() -> None:
    store = deliver(HISTORY, EntitlementRules.from_mapping({"grace_period_days": 3}))
    assert grace_end(store) == FEB1 + HOUR + 3 * DAY


@pytest.mark.parametrize("order", list(permutations(HISTORY)))
def test_the_same_grace_end_in_every_delivery_order(order: tuple[dict[str, Any], ...]) -> None:
    assert grace_end(deliver(list(order))) == FEB1 + HOUR + 7 * DAY


def test_duplicates_and_a_reconcile_fetch_during_the_spell_keep_where_it_began() -> None:
    """A snapshot the reconciler fetched is stamped with the fetch time, later than the spell began."""
    fetched = {**STILL_PAST_DUE, "id": "evt_fetch", "created": MAR2, "fetched": True}
    store = deliver([*HISTORY, PAST_DUE, fetched, STILL_PAST_DUE, FEB_FAILED])
    assert grace_end(store) == FEB1 + HOUR + 7 * DAY


def test_the_spell_ends_when_the_subscription_is_paid_up_and_a_later_failure_starts_a_new_one() -> None:
    """Paying the February invoice makes the subscription active: the March failure is a new spell."""
    paid = invoice(
        "in_feb",
        FEB1,
        FEB1 + 9 * DAY,
        attempts=2,
        next_attempt=None,
        event_id="evt_paid",
        paid_at=FEB1 + 9 * DAY,
    )
    paid_up = sub("active", FEB1 + 9 * DAY, FEB1, MAR1, "in_feb", event_id="evt_active")
    history = [JAN_PAID, FEB_FAILED, PAST_DUE, paid, paid_up, MAR_FAILED, STILL_PAST_DUE]
    for order in (history, list(reversed(history))):
        assert grace_end(deliver(order)) == MAR1 + HOUR + 7 * DAY


def test_an_earlier_invoice_left_open_after_a_paid_plan_change_starts_no_spell() -> None:
    """The February invoice stays open and Stripe stops retrying it when a paid proration invoice
    makes the subscription active again (Feb 2); the March renewal then fails: a new spell."""
    proration = invoice(
        "in_prorate",
        FEB1 + DAY,
        FEB1 + DAY,
        attempts=1,
        next_attempt=None,
        event_id="evt_pr",
        paid_at=FEB1 + DAY,
    )
    active = sub("active", FEB1 + DAY + 1, FEB1, MAR1, "in_prorate", event_id="evt_active")
    history = [JAN_PAID, FEB_FAILED, PAST_DUE, proration, active, RETRIES_OVER, MAR_FAILED, STILL_PAST_DUE]
    for order in (history, list(reversed(history))):
        assert grace_end(deliver(order)) == MAR1 + HOUR + 7 * DAY
