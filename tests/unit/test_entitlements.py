"""The entitlement rules (ARCHITECTURE.md, "Access rules"), on records built directly."""

from __future__ import annotations

from dataclasses import replace

import pytest

from domain.entitlements import DAY, EntitlementRules, Grant, RulesError, compute_entitlements
from domain.records import (
    ChargeRecord,
    DisputeRecord,
    EntitlementSummaryRecord,
    InvoiceRecord,
    PaymentRecord,
    ProfileRecord,
    PurchasedItem,
    PurchaseRecord,
    SubscriptionItem,
    SubscriptionRecord,
)

T0 = 1_760_000_000
RULES = EntitlementRules()


def subscription(status: str = "active", **changes: object) -> SubscriptionRecord:
    base = SubscriptionRecord(
        id="sub_1",
        customer_id="cus_1",
        livemode=False,
        status=status,
        items=(SubscriptionItem("price_1", "prod_pro", None, 1, "licensed", T0, T0 + 30 * DAY),),
        current_period_start=T0,
        current_period_end=T0 + 30 * DAY,
        trial_start=None,
        trial_end=None,
        cancel_at_period_end=False,
        cancel_at=None,
        canceled_at=None,
        ended_at=None,
        pause_behavior=None,
        pause_resumes_at=None,
        latest_invoice_id=None,
        created=T0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def invoice(status: str = "open", **changes: object) -> InvoiceRecord:
    base = InvoiceRecord(
        id="in_1",
        customer_id="cus_1",
        livemode=False,
        subscription_id="sub_1",
        status=status,
        amount_due=1000,
        amount_remaining=1000 if status == "open" else 0,
        attempt_count=1,
        due_date=None,
        billing_reason="subscription_cycle",
        created=T0 + 2 * DAY,
        as_of=T0 + 2 * DAY,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def purchase(**changes: object) -> PurchaseRecord:
    base = PurchaseRecord(
        id="cs_1",
        customer_id="cus_1",
        livemode=False,
        mode="payment",
        status="complete",
        payment_status="paid",
        payment_intent_id="pi_1",
        subscription_id=None,
        client_reference_id="user-42",
        created=T0,
        line_items=(PurchasedItem("prod_book", "price_book", None, 1),),
        metadata_features=(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def features(*records: object, rules: EntitlementRules = RULES) -> dict[str, Grant]:
    return dict(compute_entitlements("cus_1", records, rules).features)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", ["active", "trialing"])
def test_active_and_trialing_grant_with_no_end(status: str) -> None:
    assert features(subscription(status)) == {"prod_pro": Grant(None, "sub_1")}


@pytest.mark.parametrize("status", ["unpaid", "paused", "canceled", "incomplete", "incomplete_expired"])
def test_other_statuses_grant_nothing(status: str) -> None:
    assert features(subscription(status)) == {}


def test_cancel_at_period_end_keeps_access_until_the_period_ends() -> None:
    grant = features(subscription(cancel_at_period_end=True))["prod_pro"]
    assert grant == Grant(T0 + 30 * DAY, "sub_1")


def test_cancel_at_ends_access_at_that_time() -> None:
    assert features(subscription(cancel_at=T0 + 5 * DAY))["prod_pro"].until == T0 + 5 * DAY


def test_past_due_keeps_access_for_the_grace_period_from_the_latest_invoices_failed_charge() -> None:
    # Stripe charges a renewal invoice when it finalizes it, about an hour after creating it.
    renewal = invoice(finalized_at=T0 + 2 * DAY + 3600, next_payment_attempt=T0 + 5 * DAY)
    grant = features(subscription("past_due", latest_invoice_id="in_1"), renewal)["prod_pro"]
    assert grant.until == T0 + 2 * DAY + 3600 + 7 * DAY


def test_send_invoice_grace_counts_from_the_due_date_not_from_the_invoice() -> None:
    """collection_method=send_invoice: the invoice is sent at the period start, due 30 days later; the
    subscription turns past_due only when the due date passes, and the grace runs from then."""
    sent = invoice(
        created=T0,
        finalized_at=T0,
        due_date=T0 + 30 * DAY,
        attempt_count=0,
        collection_method="send_invoice",
        as_of=T0 + 30 * DAY,
    )
    past_due = subscription(
        "past_due", latest_invoice_id="in_1", collection_method="send_invoice", days_until_due=30
    )
    assert features(past_due, sent)["prod_pro"].until == T0 + 37 * DAY
    # Before the invoice is known, the subscription's own terms give the same due date.
    assert features(past_due)["prod_pro"].until == T0 + 37 * DAY


def test_an_older_open_invoice_left_after_a_plan_change_does_not_eat_a_later_renewals_grace() -> None:
    """Stripe leaves the earlier renewal invoice open (and stops retrying it) when a paid proration
    invoice makes the subscription active again; the next renewal then fails."""
    old = invoice(id="in_old", created=T0 - 28 * DAY, finalized_at=T0 - 28 * DAY, next_payment_attempt=None)
    proration = invoice("paid", id="in_prorate", created=T0 - 20 * DAY, paid_at=T0 - 20 * DAY)
    renewal = invoice(id="in_new", created=T0, finalized_at=T0 + 3600, next_payment_attempt=T0 + 3 * DAY)
    past_due = subscription("past_due", latest_invoice_id="in_new")
    assert features(past_due, old, proration, renewal)["prod_pro"].until == T0 + 3600 + 7 * DAY
    assert features(past_due, renewal, proration, old)["prod_pro"].until == T0 + 3600 + 7 * DAY


def test_leave_past_due_an_older_invoice_unpaid_since_the_last_payment_keeps_the_spells_start() -> None:
    """Stripe stopped retrying the first unpaid invoice and left the subscription past_due: no
    payment since, so the new renewal invoice does not restart the grace."""
    paid = invoice("paid", id="in_paid", created=T0 - 56 * DAY, paid_at=T0 - 56 * DAY)
    first = invoice(
        id="in_first", created=T0 - 28 * DAY, finalized_at=T0 - 28 * DAY, next_payment_attempt=None
    )
    renewal = invoice(id="in_new", created=T0, finalized_at=T0 + 3600, next_payment_attempt=T0 + 3 * DAY)
    past_due = subscription("past_due", latest_invoice_id="in_new")
    assert features(past_due, paid, first, renewal)["prod_pro"].until == T0 - 21 * DAY


def test_grace_counts_from_the_first_unpaid_invoice_stripe_still_collects() -> None:
    """A subscription left past_due into its next period: the earlier invoice still being retried
    keeps the grace where it began, the new invoice does not extend it."""
    first = invoice(id="in_a", finalized_at=T0, next_payment_attempt=T0 + 31 * DAY)
    second = invoice(id="in_b", created=T0 + 30 * DAY, finalized_at=T0 + 30 * DAY)
    past_due = subscription("past_due", latest_invoice_id="in_b")
    assert features(past_due, first, second)["prod_pro"].until == T0 + 7 * DAY


def test_past_due_without_a_known_invoice_counts_from_the_period_start() -> None:
    assert features(subscription("past_due"))["prod_pro"].until == T0 + 7 * DAY


def test_grace_period_is_configurable() -> None:
    rules = EntitlementRules.from_mapping({"grace_period_days": 3})
    assert features(subscription("past_due"), rules=rules)["prod_pro"].until == T0 + 3 * DAY


def test_paused_collection_can_be_configured_to_stop_access() -> None:
    paused = subscription(pause_behavior="void")
    assert "prod_pro" in features(paused)
    assert features(paused, rules=EntitlementRules(paused_collection_keeps_access=False)) == {}


def test_mapping_by_lookup_key_wins_over_product_and_unmapped_products_grant_their_id() -> None:
    rules = EntitlementRules.from_mapping(
        {
            "features_by_lookup_key": {"pro_monthly": ["pro", "api"]},
            "features_by_product": {"prod_pro": ["x"]},
        }
    )
    items = (
        SubscriptionItem("price_1", "prod_pro", "pro_monthly", 1, "licensed", T0, T0 + DAY),
        SubscriptionItem("price_2", "prod_pro", None, 1, "licensed", T0, T0 + DAY),
        SubscriptionItem("price_3", "prod_usage", None, None, "metered", T0, T0 + DAY),
    )
    assert set(features(subscription(items=items), rules=rules)) == {"pro", "api", "x", "prod_usage"}


def test_two_sources_of_one_feature_the_latest_until_wins_and_no_end_beats_any_end() -> None:
    ending = subscription(id="sub_a", cancel_at_period_end=True)
    later = subscription(id="sub_b", cancel_at=T0 + 40 * DAY)
    forever = subscription(id="sub_c")
    assert features(ending, later)["prod_pro"] == Grant(T0 + 40 * DAY, "sub_b")
    assert features(ending, later, forever)["prod_pro"] == Grant(None, "sub_c")
    assert features(forever, ending, later)["prod_pro"] == Grant(None, "sub_c")


def test_active_with_an_earlier_unpaid_invoice_is_flagged() -> None:
    result = compute_entitlements("cus_1", [subscription(), invoice(subscription_id="sub_old")], RULES)
    assert result.payment_issue
    assert "prod_pro" in result.features


def test_open_invoice_not_yet_attempted_or_due_is_not_a_payment_issue() -> None:
    fresh = invoice(attempt_count=0, due_date=T0 + 30 * DAY)
    assert not compute_entitlements("cus_1", [subscription(), fresh], RULES).payment_issue
    overdue = replace(fresh, as_of=T0 + 31 * DAY)
    assert compute_entitlements("cus_1", [subscription(), overdue], RULES).payment_issue


@pytest.mark.parametrize("status", ["paid", "void", "uncollectible"])
def test_settled_invoices_are_not_a_payment_issue(status: str) -> None:
    assert not compute_entitlements("cus_1", [subscription(), invoice(status)], RULES).payment_issue


@pytest.mark.parametrize("status", ["past_due", "unpaid"])
def test_past_due_and_unpaid_subscriptions_are_a_payment_issue(status: str) -> None:
    assert compute_entitlements("cus_1", [subscription(status)], RULES).payment_issue


def test_one_time_purchase_grants_forever_or_for_its_term() -> None:
    assert features(purchase()) == {"prod_book": Grant(None, "cs_1")}
    rules = EntitlementRules.from_mapping({"purchase_term_days": 365})
    assert features(purchase(), rules=rules)["prod_book"].until == T0 + 365 * DAY
    per_product = EntitlementRules.from_mapping({"purchase_term_days_by_product": {"prod_book": 30}})
    assert features(purchase(), rules=per_product)["prod_book"].until == T0 + 30 * DAY


@pytest.mark.parametrize(
    ("status", "payment_status"), [("complete", "unpaid"), ("expired", "unpaid"), ("open", None)]
)
def test_unpaid_or_unfinished_checkout_grants_nothing(status: str, payment_status: str | None) -> None:
    assert features(purchase(status=status, payment_status=payment_status)) == {}


def test_subscription_mode_checkout_grants_nothing_itself() -> None:
    assert features(purchase(mode="subscription", subscription_id="sub_1")) == {}


def test_full_refund_takes_the_purchase_back_and_a_partial_one_does_not() -> None:
    full = ChargeRecord("ch_1", "cus_1", False, "pi_1", 1000, 1000, True)
    partial = ChargeRecord("ch_1", "cus_1", False, "pi_1", 1000, 300, False)
    assert features(purchase(), full) == {}
    assert "prod_book" in features(purchase(), partial)


@pytest.mark.parametrize(("status", "granted"), [("lost", False), ("won", True), ("needs_response", True)])
def test_only_a_lost_dispute_takes_the_purchase_back(status: str, granted: bool) -> None:
    charge = ChargeRecord("ch_1", "cus_1", False, "pi_1", 1000, 0, False)
    dispute = DisputeRecord("dp_1", "cus_1", False, "ch_1", None, status)
    assert ("prod_book" in features(purchase(), charge, dispute)) is granted


def test_purchase_without_line_items_falls_back_to_metadata_features() -> None:
    assert set(features(purchase(line_items=None, metadata_features=("ebook",)))) == {"ebook"}
    by_product = purchase(line_items=None, metadata_product_id="prod_book")
    assert features(by_product) == {"prod_book": Grant(None, "cs_1")}
    rules = EntitlementRules.from_mapping({"features_by_product": {"prod_book": ["library"]}})
    assert set(features(by_product, rules=rules)) == {"library"}
    assert features(purchase(line_items=None)) == {}


def test_payment_intent_grants_what_its_metadata_names_only() -> None:
    named = PaymentRecord("pi_9", "cus_1", False, "succeeded", T0, ("credits",), None)
    bare = PaymentRecord("pi_8", "cus_1", False, "succeeded", T0, (), None)
    failed = replace(named, status="requires_payment_method")
    assert set(features(named, bare)) == {"credits"}
    assert features(failed) == {}


def test_stripe_entitlements_summary_replaces_the_mapping_for_subscriptions() -> None:
    summary = EntitlementSummaryRecord("cus_1", "cus_1", False, ("seats", "sso"), True)
    result = features(subscription(), summary, purchase())
    assert result == {
        "seats": Grant(None, "entitlements"),
        "sso": Grant(None, "entitlements"),
        "prod_book": Grant(None, "cs_1"),
    }


def test_deleted_customer_keeps_an_item_with_no_features() -> None:
    profile = ProfileRecord("cus_1", True, None, "user-1", deleted=True)
    result = compute_entitlements("cus_1", [subscription(), purchase(), profile], RULES)
    assert result.deleted
    assert result.features == {}
    assert result.livemode


def test_granted_at_honours_until() -> None:
    result = compute_entitlements("cus_1", [subscription(cancel_at=T0 + DAY)], RULES)
    assert "prod_pro" in result.granted_at(T0)
    assert result.granted_at(T0 + DAY) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"grace_period": 3}, "unknown setting"),
        ({"grace_period_days": -1}, "grace_period_days"),
        ({"grace_period_days": True}, "grace_period_days"),
        ({"features_by_product": {"prod_x": "pro"}}, "features_by_product.prod_x"),
        ({"granting_statuses": "active"}, "granting_statuses"),
        ({"paused_collection_keeps_access": "yes"}, "paused_collection_keeps_access"),
        ({"purchase_term_days_by_product": []}, "purchase_term_days_by_product"),
    ],
)
def test_invalid_rules_are_rejected_with_the_setting_named(raw: dict[str, object], message: str) -> None:
    with pytest.raises(RulesError, match=message):
        EntitlementRules.from_mapping(raw)


def test_the_shipped_rules_file_is_valid() -> None:
    from adapters.settings import load_rules

    assert load_rules() == EntitlementRules()


def test_a_plan_without_product_grants_by_price_id_and_the_price_mapping_sits_between_key_and_product() -> (
    None
):
    plan_item = SubscriptionItem("gold", None, None, 1, "licensed", T0, T0 + 30 * DAY)
    assert set(features(subscription(items=(plan_item,)))) == {"gold"}
    rules = EntitlementRules.from_mapping(
        {
            "features_by_lookup_key": {"pro_monthly": ["by_key"]},
            "features_by_price": {"gold": ["by_price"], "price_1": ["by_price"]},
            "features_by_product": {"prod_pro": ["by_product"]},
        }
    )
    assert set(features(subscription(items=(plan_item,)), rules=rules)) == {"by_price"}
    priced = SubscriptionItem("price_1", "prod_pro", None, 1, "licensed", T0, T0 + 30 * DAY)
    assert set(features(subscription(items=(priced,)), rules=rules)) == {"by_price"}
    keyed = replace(priced, lookup_key="pro_monthly")
    assert set(features(subscription(items=(keyed,)), rules=rules)) == {"by_key"}
    with pytest.raises(RulesError, match=r"features_by_price\.gold"):
        EntitlementRules.from_mapping({"features_by_price": {"gold": "pro"}})
