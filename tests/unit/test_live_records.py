"""The live records answer exactly what the whole history answers: for random histories of every kind
of record (subscriptions in every status, invoices, purchases and payments granting forever or for a
term, refunds and disputes revoking them, profiles, summaries), built at once or advanced one snapshot
at a time with the rebuilds `advance` asks for."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import live_records
from domain.entitlements import EntitlementRules, compute_entitlements
from domain.records import (
    ChargeRecord,
    DisputeRecord,
    EntitlementSummaryRecord,
    InvoiceRecord,
    PaymentRecord,
    ProfileRecord,
    PurchasedItem,
    PurchaseRecord,
    Record,
    RefundRecord,
    RefundState,
    Snapshot,
    Stamp,
    SubscriptionItem,
    SubscriptionRecord,
)

CUSTOMER = "cus_live"
T0 = 1_767_225_600
DAY = 86_400
PRODUCTS = ("prod_a", "prod_b", "prod_c")
INTENTS = ("pi_1", "pi_2", "pi_3", "pi_4")
SUBSCRIPTIONS = ("sub_1", "sub_2")
RULES = (
    EntitlementRules(),
    EntitlementRules(
        grace_period_seconds=3 * DAY,
        purchase_term_seconds=30 * DAY,
        purchase_term_by_product={"prod_b": None},
        features_by_product={"prod_a": ("pro", "api"), "prod_c": ("pro",)},
    ),
)

times = st.integers(T0, T0 + 400 * DAY)
maybe_times = st.none() | times
products = st.sampled_from(PRODUCTS)
intents = st.none() | st.sampled_from(INTENTS)


def subscriptions(livemode: bool) -> st.SearchStrategy[Record]:
    item = st.builds(
        SubscriptionItem,
        price_id=st.just("price_x"),
        product_id=products,
        lookup_key=st.none() | st.just("pro_monthly"),
        quantity=st.just(1),
        usage_type=st.just("licensed"),
        current_period_start=maybe_times,
        current_period_end=maybe_times,
    )
    return st.builds(
        SubscriptionRecord,
        id=st.sampled_from(SUBSCRIPTIONS),
        customer_id=st.just(CUSTOMER),
        livemode=st.just(livemode),
        status=st.sampled_from(
            [
                "incomplete",
                "incomplete_expired",
                "trialing",
                "active",
                "past_due",
                "unpaid",
                "canceled",
                "paused",
            ]
        ),
        items=st.lists(item, min_size=1, max_size=2).map(tuple),
        current_period_start=maybe_times,
        current_period_end=maybe_times,
        trial_start=maybe_times,
        trial_end=maybe_times,
        cancel_at_period_end=st.booleans(),
        cancel_at=maybe_times,
        canceled_at=maybe_times,
        ended_at=maybe_times,
        pause_behavior=st.none() | st.just("void"),
        pause_resumes_at=st.none(),
        latest_invoice_id=st.none(),
        created=times,
        collection_method=st.none() | st.sampled_from(["charge_automatically", "send_invoice"]),
        days_until_due=st.none() | st.integers(0, 30),
        as_of=maybe_times,  # newer or older than a summary's
    )


def invoices(livemode: bool) -> st.SearchStrategy[Record]:
    return st.builds(
        InvoiceRecord,
        id=st.sampled_from([f"in_{i}" for i in range(6)]),
        customer_id=st.just(CUSTOMER),
        livemode=st.just(livemode),
        subscription_id=st.none() | st.sampled_from(SUBSCRIPTIONS),
        status=st.sampled_from(["draft", "open", "paid", "void", "uncollectible"]),
        amount_due=st.integers(0, 2000),
        amount_remaining=st.integers(0, 2000),
        attempt_count=st.integers(0, 3),
        due_date=maybe_times,
        billing_reason=st.none() | st.just("subscription_cycle"),
        created=times,
        as_of=times,
        collection_method=st.none() | st.sampled_from(["charge_automatically", "send_invoice"]),
        finalized_at=maybe_times,
        next_payment_attempt=maybe_times,
    )


def purchases(livemode: bool) -> st.SearchStrategy[Record]:
    line = st.builds(
        PurchasedItem,
        product_id=st.none() | products,
        price_id=st.none(),
        lookup_key=st.none(),
        quantity=st.just(1),
    )
    return st.builds(
        PurchaseRecord,
        id=st.sampled_from([f"cs_{i}" for i in range(8)]),
        customer_id=st.just(CUSTOMER),
        livemode=st.just(livemode),
        mode=st.sampled_from(["payment", "payment", "subscription"]),
        status=st.sampled_from(["complete", "complete", "open", "expired"]),
        payment_status=st.sampled_from(["paid", "paid", "unpaid", "no_payment_required"]),
        payment_intent_id=intents,
        subscription_id=st.none(),
        client_reference_id=st.none(),
        created=times,
        line_items=st.none() | st.lists(line, max_size=2).map(tuple),
        metadata_features=st.lists(st.sampled_from(["pro", "credits"]), max_size=2).map(tuple),
        metadata_product_id=st.none() | products,
        paid_at=maybe_times,
    )


def payments(livemode: bool) -> st.SearchStrategy[Record]:
    return st.builds(
        PaymentRecord,
        id=st.sampled_from(INTENTS),
        customer_id=st.just(CUSTOMER),
        livemode=st.just(livemode),
        status=st.sampled_from(["succeeded", "succeeded", "requires_payment_method", "canceled"]),
        created=times,
        metadata_features=st.lists(st.sampled_from(["pro", "credits"]), max_size=1).map(tuple),
        metadata_product_id=st.none() | products,
    )


def charges(livemode: bool) -> st.SearchStrategy[Record]:
    return st.builds(
        ChargeRecord,
        id=st.sampled_from(["ch_1", "ch_2", "ch_3"]),
        customer_id=st.just(CUSTOMER),
        livemode=st.just(livemode),
        payment_intent_id=intents,
        amount=st.just(1000),
        amount_refunded=st.sampled_from([0, 500, 1000]),
        refunded=st.booleans(),
        refunds=st.lists(
            st.builds(
                RefundState,
                id=st.sampled_from(["re_1", "re_2"]),
                amount=st.sampled_from([500, 1000]),
                status=st.sampled_from(["pending", "succeeded", "failed", "canceled"]),
            ),
            max_size=2,
        ).map(tuple),
    )


def refunds(livemode: bool) -> st.SearchStrategy[Record]:
    return st.builds(
        RefundRecord,
        id=st.sampled_from(["re_1", "re_2", "re_3"]),
        customer_id=st.just(CUSTOMER),
        livemode=st.just(livemode),
        charge_id=st.none() | st.sampled_from(["ch_1", "ch_2", "ch_3"]),
        payment_intent_id=intents,
        amount=st.sampled_from([500, 1000]),
        status=st.sampled_from(["pending", "succeeded", "failed", "canceled"]),
    )


def disputes(livemode: bool) -> st.SearchStrategy[Record]:
    return st.builds(
        DisputeRecord,
        id=st.sampled_from(["dp_1", "dp_2"]),
        customer_id=st.just(CUSTOMER),
        livemode=st.just(livemode),
        charge_id=st.none() | st.sampled_from(["ch_1", "ch_2", "ch_3"]),
        payment_intent_id=intents,
        status=st.sampled_from(["needs_response", "under_review", "won", "lost"]),
    )


def profiles(livemode: bool) -> st.SearchStrategy[Record]:
    return st.builds(
        ProfileRecord,
        id=st.just(CUSTOMER),
        livemode=st.just(livemode),
        email=st.none(),
        user_id=st.none() | st.just("user_1"),
        deleted=st.booleans(),
    )


def summaries(livemode: bool) -> st.SearchStrategy[Record]:
    return st.builds(
        EntitlementSummaryRecord,
        id=st.just(CUSTOMER),
        customer_id=st.just(CUSTOMER),
        livemode=st.just(livemode),
        lookup_keys=st.lists(st.sampled_from(["pro", "api"]), max_size=2).map(tuple),
        complete=st.just(True),
        as_of=maybe_times,
    )


@st.composite
def histories(draw: st.DrawFn) -> list[Snapshot]:
    """Snapshots in arrival order; later stamps for later snapshots of the same object mostly, but
    not always (a stale snapshot arrives too)."""
    livemode = draw(st.booleans())
    kinds = [subscriptions, invoices, purchases, payments, charges, refunds, disputes]
    weights = draw(st.sampled_from(["grants", "mixed"]))
    if weights == "grants":
        kinds = [purchases, purchases, payments, charges, refunds, disputes, subscriptions]
    if draw(st.booleans()):
        kinds.append(profiles)
    if draw(st.integers(0, 4)) == 0:
        kinds.append(summaries)
    records = draw(st.lists(st.one_of([kind(livemode) for kind in kinds]), min_size=1, max_size=20))
    snapshots = []
    for position, record in enumerate(records):
        created = T0 + position * 10 + draw(st.integers(-25, 0))
        snapshots.append(Snapshot(record, Stamp(created, 0, f"evt_{position:03d}"), CUSTOMER))
    return snapshots


def newest(snapshots: list[Snapshot]) -> dict[tuple[str, str], Snapshot]:
    latest: dict[tuple[str, str], Snapshot] = {}
    for snapshot in snapshots:
        current = latest.get(snapshot.key)
        if current is None or snapshot.stamp > current.stamp:
            latest[snapshot.key] = snapshot
    return latest


def everything(snapshots: list[Snapshot], rules: EntitlementRules) -> object:
    return compute_entitlements(CUSTOMER, (s.record for s in newest(snapshots).values()), rules)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(history=histories(), rules=st.sampled_from(RULES))
def test_the_live_records_of_a_history_grant_what_all_its_records_grant(
    history: list[Snapshot], rules: EntitlementRules
) -> None:
    live = live_records.build(history, rules)
    assert live_records.entitlements_of(CUSTOMER, live, rules) == everything(history, rules)


@PROPERTY
@given(history=histories(), rules=st.sampled_from(RULES))
def test_advancing_one_snapshot_at_a_time_keeps_granting_what_all_records_grant(
    history: list[Snapshot], rules: EntitlementRules
) -> None:
    live = live_records.empty(rules)
    for position, snapshot in enumerate(history):
        seen = history[: position + 1]
        stored = newest(seen)[snapshot.key]
        if stored is snapshot:  # a stale snapshot is turned away by its record's stamp before this
            advanced = live_records.advance(live, snapshot, rules)
            live = advanced if advanced is not None else live_records.build(seen, rules)
        assert live_records.entitlements_of(CUSTOMER, live, rules) == everything(seen, rules)
        # Advancing again with what is stored (a retry repairing a state) changes nothing.
        assert live_records.advance(live, stored, rules) in (live, None)


def purchase(number: int, product: str = "prod_b") -> Snapshot:
    record = PurchaseRecord(
        id=f"cs_{number:05d}",
        customer_id=CUSTOMER,
        livemode=True,
        mode="payment",
        status="complete",
        payment_status="paid",
        payment_intent_id=f"pi_{number:05d}",
        subscription_id=None,
        client_reference_id=None,
        created=T0 + number,
        line_items=(PurchasedItem(product, None, None, 1),),
        metadata_features=(),
    )
    return Snapshot(record, Stamp(T0 + number, 0, f"evt_{number:05d}"), CUSTOMER)


def test_a_thousand_lifetime_purchases_of_one_product_keep_one_entry() -> None:
    rules = EntitlementRules()
    live = live_records.empty(rules)
    rebuilds = 0
    for number in range(1000):
        advanced = live_records.advance(live, purchase(number), rules)
        assert advanced is not None
        rebuilds += advanced is None
        live = advanced
    assert len(live.snapshots) == 1
    assert live.spilled
    assert rebuilds == 0


def test_a_refund_of_the_winning_purchase_asks_for_the_history_once_spilled() -> None:
    rules = EntitlementRules()
    live = live_records.build([purchase(1), purchase(2)], rules)
    assert list(live.snapshots) == [("purchase", "cs_00001")]
    refund = ChargeRecord("ch_1", CUSTOMER, True, "pi_00001", 1000, 1000, refunded=True)
    assert (
        live_records.advance(live, Snapshot(refund, Stamp(T0 + 5, 0, "evt_refund"), CUSTOMER), rules) is None
    )


def test_settled_records_leave_and_the_mode_is_remembered() -> None:
    rules = EntitlementRules()
    # A paid one-off invoice (of no subscription): nothing keeps it.
    paid = InvoiceRecord("in_1", CUSTOMER, True, None, "paid", 900, 0, 1, None, None, T0, T0)
    live = live_records.build([Snapshot(paid, Stamp(T0, 0, "evt_1"), CUSTOMER)], rules)
    assert live.snapshots == {}
    entitlements = live_records.entitlements_of(CUSTOMER, live, rules)
    assert entitlements.livemode is True
    assert entitlements == compute_entitlements(CUSTOMER, [paid], rules)


def test_of_a_subscriptions_paid_invoices_only_the_one_paid_last_stays() -> None:
    """When the subscription was last paid up bounds a later past_due spell (domain.entitlements)."""
    rules = EntitlementRules()
    paid = [
        InvoiceRecord(
            f"in_{n}", CUSTOMER, True, "sub_1", "paid", 900, 0, 1, None, None, T0, T0, paid_at=T0 + n
        )
        for n in (3, 1, 2)
    ]
    snapshots = [Snapshot(r, Stamp(T0 + 10, 0, f"evt_{r.id}"), CUSTOMER) for r in paid]
    assert set(live_records.build(snapshots, rules).snapshots) == {("invoice", "in_3")}
    live = live_records.empty(rules)
    for snapshot in snapshots:
        advanced = live_records.advance(live, snapshot, rules)
        assert advanced is not None
        live = advanced
    assert set(live.snapshots) == {("invoice", "in_3")}


def test_new_rules_have_another_fingerprint() -> None:
    assert live_records.fingerprint(RULES[0]) != live_records.fingerprint(RULES[1])
    assert live_records.fingerprint(EntitlementRules()) == live_records.fingerprint(RULES[0])
