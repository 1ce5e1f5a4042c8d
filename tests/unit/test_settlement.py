"""Which records a reconcile pass must still read (domain.settlement): unsettled purchases and
payments, open disputes, subscriptions not in a final status, Entitlements summaries;
and a Connect customer's entitlements item, so the pass learns its account."""

from __future__ import annotations

from dataclasses import replace

import pytest

from domain.reconcile import object_to_verify
from domain.records import (
    DisputeRecord,
    EntitlementSummaryRecord,
    InvoiceRecord,
    PaymentRecord,
    ProfileRecord,
    PurchaseRecord,
    Record,
    SubscriptionRecord,
)
from domain.settlement import can_drift, pass_learns_account
from domain.stripe_objects import record_of
from events.stripe import objects as s

T0 = 1_767_000_000
PRICE = s.PriceSpec("price_pro", "prod_pro")


def _subscription(status: str) -> SubscriptionRecord:
    ids = s.IdFactory(f"settle-sub-{status}")
    obj = s.subscription(
        ids,
        customer="cus_S",
        items=[s.ItemSpec(PRICE)],
        status=status,  # type: ignore[arg-type]
        created=T0,
        period_start=T0,
        period_end=T0 + 30 * 86_400,
    )
    record = record_of("subscription", obj)
    assert isinstance(record, SubscriptionRecord)
    return record


def _purchase(status: str, payment_status: str, mode: str = "payment") -> PurchaseRecord:
    ids = s.IdFactory(f"settle-cs-{status}-{payment_status}-{mode}")
    session = s.checkout_session(
        ids,
        mode=mode,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        payment_status=payment_status,  # type: ignore[arg-type]
        customer="cus_S",
        payment_intent=ids("pi"),
        amount_total=500,
        created=T0,
    )
    record = record_of("purchase", session)
    assert isinstance(record, PurchaseRecord)
    return record


PAYMENT = PaymentRecord("pi_1", "cus_S", False, "processing", T0, (), None)
DISPUTE = DisputeRecord("dp_1", None, False, "ch_1", "pi_1", "needs_response")


@pytest.mark.parametrize(
    ("status", "drifts"),
    [
        ("active", True),
        ("trialing", True),
        ("past_due", True),
        ("paused", True),
        ("incomplete", True),
        ("canceled", False),
        ("incomplete_expired", False),
    ],
)
def test_a_subscription_is_read_until_its_status_is_final(status: str, drifts: bool) -> None:
    assert can_drift(_subscription(status)) is drifts


@pytest.mark.parametrize(
    ("status", "payment_status", "drifts"),
    [
        ("open", "unpaid", True),
        ("complete", "unpaid", True),  # an async payment still under way
        ("complete", "paid", False),
        ("complete", "no_payment_required", False),
        ("expired", "unpaid", False),
    ],
)
def test_a_one_time_purchase_is_read_until_it_settles(status: str, payment_status: str, drifts: bool) -> None:
    assert can_drift(_purchase(status, payment_status)) is drifts


def test_a_subscription_checkout_is_never_read_its_subscription_is() -> None:
    assert can_drift(_purchase("open", "unpaid", mode="subscription")) is False


@pytest.mark.parametrize(("status", "drifts"), [("processing", True), ("requires_action", True)])
def test_a_payment_is_read_until_it_succeeds_or_is_canceled(status: str, drifts: bool) -> None:
    assert can_drift(replace(PAYMENT, status=status)) is drifts
    for settled in ("succeeded", "canceled"):
        assert can_drift(replace(PAYMENT, status=settled)) is False


def test_a_dispute_is_read_until_it_closes() -> None:
    assert can_drift(DISPUTE) is True
    for closed in ("won", "lost", "warning_closed", "prevented"):
        assert can_drift(replace(DISPUTE, status=closed)) is False


def test_an_entitlements_summary_is_always_read() -> None:
    summary = EntitlementSummaryRecord("cus_S", "cus_S", False, ("pro",), complete=True)
    assert can_drift(summary) is True


def test_a_profile_is_settled_history_the_entitlements_item_tells_the_account() -> None:
    profile = ProfileRecord("cus_S", False, email=None, user_id=None, deleted=False)
    assert can_drift(profile) is False
    assert pass_learns_account("acct_1") is True
    assert pass_learns_account(None) is False


def test_invoices_are_settled_history_to_the_pass() -> None:
    invoice = InvoiceRecord("in_1", "cus_S", False, "sub_1", "open", 500, 500, 1, None, None, T0, T0)
    assert can_drift(invoice) is False


@pytest.mark.parametrize(
    "record",
    [
        _purchase("open", "unpaid"),
        _purchase("complete", "paid"),
        PAYMENT,
        replace(PAYMENT, status="succeeded"),
        DISPUTE,
        replace(DISPUTE, status="lost"),
    ],
)
def test_every_record_the_pass_would_fetch_by_id_is_one_that_can_drift(record: Record) -> None:
    assert can_drift(record) is (object_to_verify(record) is not None)
