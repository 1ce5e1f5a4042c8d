"""The reconciler's rules (domain.reconcile): drift, repairs as synthetic events, run requests and
settings, the pass cursor, and the report."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from domain.reconcile import (
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_TIME_BUDGET_SECONDS,
    DONE,
    RATE_LIMIT_LONGEST_WAIT_SECONDS,
    Backfill,
    Counts,
    Drift,
    DriftKind,
    Everything,
    InvalidRequest,
    OneCustomer,
    PassCursor,
    ReconcileOptions,
    ReconcileReport,
    RunRequest,
    backfill_object,
    backfill_phases,
    backoff_seconds,
    customer_of_object,
    drift_of,
    event_drift,
    fetched_event,
    next_checkpoint,
    object_to_verify,
    options_from,
    pass_phases,
    phase_parts,
    purchase_is_settled,
    run_request,
    same_record,
    same_summary,
    summary_object,
)
from domain.records import (
    DisputeRecord,
    EntitlementSummaryRecord,
    PaymentRecord,
    PurchasedItem,
    PurchaseRecord,
    Snapshot,
    Stamp,
)
from domain.stripe_objects import MalformedEvent, parse_event, record_of, snapshot_of
from events.stripe import objects as s
from tests.support import memory_reconcile
from tests.support.book_purchase import book_session
from tests.support.memory_reconcile import DAY, PRO, T0

FETCHED_AT = T0 + 3600


def subscription(status: str = "active", **changes: Any) -> dict[str, Any]:
    """cus_1's subscription sub_1, as the reconciler's other tests build theirs."""
    return memory_reconcile.subscription("cus_1", status, id="sub_1", **changes)


def stored(obj: dict[str, Any], created: int = T0 + 10) -> Snapshot:
    """The snapshot a webhook carrying `obj` at `created` leaves in the table."""
    event = s.event(s.IdFactory(created), "customer.subscription.updated", obj, created=created)
    found = snapshot_of(parse_event(event))
    assert isinstance(found, Snapshot)
    return found


# -- drift ----------------------------------------------------------------------------------------


def test_an_object_with_no_record_is_missing() -> None:
    assert drift_of("subscription", subscription(), None, FETCHED_AT) is DriftKind.MISSING


def test_an_object_equal_to_its_record_is_no_drift() -> None:
    assert drift_of("subscription", subscription(), stored(subscription()), FETCHED_AT) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "canceled", "canceled_at": T0 + 50, "ended_at": T0 + 50},
        {"cancel_at_period_end": True},
        {"items": [s.ItemSpec(PRO, quantity=3)]},
        {"items": [s.ItemSpec(s.PriceSpec("price_team", "prod_team"))]},
        {"period_end": T0 + 60 * DAY},
        {"pause_collection": {"behavior": "void", "resumes_at": None}},
        {"trial_end": T0 + 7 * DAY, "trial_start": T0},
        {"latest_invoice": "in_2"},
    ],
)
def test_any_field_the_record_keeps_that_differs_is_stale(changes: dict[str, Any]) -> None:
    status = changes.pop("status", "active")
    now = subscription(status, **changes)
    assert drift_of("subscription", now, stored(subscription()), FETCHED_AT) is DriftKind.STALE


def test_a_record_made_by_an_event_later_than_the_fetch_is_newer_than_what_was_fetched() -> None:
    newer = stored(subscription("past_due"), created=FETCHED_AT + 1)
    assert drift_of("subscription", subscription(), newer, FETCHED_AT) is None
    same_second = stored(subscription("past_due"), created=FETCHED_AT)
    assert drift_of("subscription", subscription(), same_second, FETCHED_AT) is DriftKind.STALE


def test_an_object_that_cannot_be_parsed_raises_malformed() -> None:
    broken = subscription()
    del broken["status"]
    with pytest.raises(MalformedEvent):
        drift_of("subscription", broken, None, FETCHED_AT)


def test_line_items_the_worker_fetched_once_are_not_drift() -> None:
    fetched = record_of("purchase", book_session(T0))
    assert fetched.line_items is None  # type: ignore[union-attr]
    with_items = replace(fetched, line_items=(PurchasedItem("prod_book", "price_book", None, 1),))
    assert same_record(fetched, with_items)
    assert not same_record(replace(fetched, payment_status="unpaid"), with_items)


def test_customer_of_an_object_is_customer_then_customer_account() -> None:
    assert customer_of_object({"customer": "cus_1", "customer_account": "acct_1"}) == "cus_1"
    assert customer_of_object({"customer": {"id": "cus_2", "object": "customer"}}) == "cus_2"
    assert customer_of_object({"customer": None, "customer_account": "acct_1"}) == "acct_1"
    assert customer_of_object({"customer": None}) is None


# -- what is verified by id -----------------------------------------------------------------------


def _purchase(status: str | None, payment_status: str | None, mode: str = "payment") -> Any:
    session = s.checkout_session(
        s.IdFactory(3),
        id="cs_test_2",
        mode=mode,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        payment_status=payment_status,  # type: ignore[arg-type]
        customer="cus_1",
        amount_total=900,
        created=T0,
    )
    return record_of("purchase", session)


@pytest.mark.parametrize(
    ("status", "payment_status", "settled"),
    [
        ("open", "unpaid", False),
        ("complete", "unpaid", False),  # an async payment (bank debit) still under way
        ("complete", "paid", True),
        ("complete", "no_payment_required", True),
        ("expired", "unpaid", True),
    ],
)
def test_unsettled_one_time_purchases_are_verified_against_their_session(
    status: str, payment_status: str, settled: bool
) -> None:
    purchase = _purchase(status, payment_status)
    assert purchase_is_settled(purchase) is settled
    assert object_to_verify(purchase) == (None if settled else "checkout.session")


def test_subscription_checkouts_are_not_verified_their_subscription_is() -> None:
    assert object_to_verify(_purchase("open", "unpaid", mode="subscription")) is None


@pytest.mark.parametrize(
    ("status", "verified"),
    [("processing", True), ("requires_action", True), ("succeeded", False), ("canceled", False)],
)
def test_unsettled_payments_are_verified_against_their_payment_intent(status: str, verified: bool) -> None:
    payment = PaymentRecord("pi_1", "cus_1", False, status, T0, (), None)
    assert object_to_verify(payment) == ("payment_intent" if verified else None)


def test_subscriptions_and_other_records_are_not_verified_by_this_rule() -> None:
    assert object_to_verify(record_of("subscription", subscription())) is None


# -- repairs --------------------------------------------------------------------------------------


def test_a_fetched_object_travels_as_a_synthetic_event_stamped_with_the_fetch_time() -> None:
    obj = subscription()
    event = fetched_event(obj, FETCHED_AT * 1000 + 250)
    assert event == {
        "object": "event",
        "id": f"sync_sub_1_{FETCHED_AT * 1000 + 250}",
        "type": "sync.fetched",
        "created": FETCHED_AT,
        "livemode": False,
        "data": {"object": obj},
        "fetched": True,
    }
    parsed = parse_event(json.loads(json.dumps(event)))
    assert parsed.fetched
    snapshot = snapshot_of(parsed)
    assert isinstance(snapshot, Snapshot)
    assert snapshot.stamp.created == FETCHED_AT
    assert snapshot.record == record_of("subscription", obj, as_of=FETCHED_AT)


def test_a_fetched_object_of_a_connected_account_names_the_account() -> None:
    event = fetched_event(subscription(livemode=True), 1, account="acct_1")
    assert event["account"] == "acct_1"
    assert event["livemode"] is True


def test_an_object_without_id_cannot_be_queued() -> None:
    with pytest.raises(ValueError, match="without an id"):
        fetched_event({"object": "subscription"}, 1)


def test_backoff_doubles_up_to_the_longest_wait_with_jitter_in_the_upper_half() -> None:
    assert backoff_seconds(1, 0.0) == 0.5
    assert backoff_seconds(1, 0.999) < 1.0
    assert [backoff_seconds(n, 0.0) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 16, 16]
    assert backoff_seconds(20, 0.999) < RATE_LIMIT_LONGEST_WAIT_SECONDS
    with pytest.raises(ValueError, match="retry counts from 1"):
        backoff_seconds(0, 0.5)
    with pytest.raises(ValueError, match="jitter"):
        backoff_seconds(1, 1.0)


# -- run requests and settings --------------------------------------------------------------------


def test_a_scheduled_event_is_a_full_run() -> None:
    schedule = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}
    assert run_request(schedule) == run_request(None) == run_request({})
    assert run_request(schedule).scope == Everything()
    assert run_request(schedule).dry_run is False
    assert run_request(schedule, dry_run_default=True).dry_run is True


def test_dry_run_and_one_customer_come_from_the_event() -> None:
    request = run_request({"dry_run": True, "customer": "cus_QXg1o8vcGmoR32"})
    assert request.dry_run is True
    assert request.scope == OneCustomer("cus_QXg1o8vcGmoR32")
    assert run_request({"dry_run": False}, dry_run_default=True).dry_run is False


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ([], "JSON object"),
        ({"dry_run": "yes"}, "dry_run must be true or false"),
        ({"customer": ""}, "customer must be"),
        ({"customer": "cus 1; drop"}, "customer must be"),
        ({"customer": 42}, "customer must be"),
    ],
)
def test_a_bad_run_request_says_what_is_wrong(event: object, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        run_request(event)


def test_settings_default_when_unset_or_empty() -> None:
    assert options_from({}) == ReconcileOptions()
    assert options_from({"RECONCILE_TIME_BUDGET_SECONDS": " "}) == ReconcileOptions()
    assert ReconcileOptions().time_budget_seconds == DEFAULT_TIME_BUDGET_SECONDS == 780
    assert ReconcileOptions().max_requests_per_second == DEFAULT_MAX_REQUESTS_PER_SECOND == 20
    assert ReconcileOptions().requeue_failed_events is True  # on by default


def test_settings_are_read_from_the_environment() -> None:
    options = options_from(
        {
            "RECONCILE_TIME_BUDGET_SECONDS": "840",
            "RECONCILE_MAX_REQUESTS_PER_SECOND": "2.5",
            "RECONCILE_REQUEUE_FAILED_EVENTS": "no",
            "RECONCILE_DRY_RUN": "0",
        }
    )
    assert options == ReconcileOptions(840.0, 2.5, False, False)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("RECONCILE_TIME_BUDGET_SECONDS", "soon", "must be a number"),
        ("RECONCILE_TIME_BUDGET_SECONDS", "0", "positive"),
        ("RECONCILE_MAX_REQUESTS_PER_SECOND", "-1", "positive"),
        ("RECONCILE_MAX_REQUESTS_PER_SECOND", "nan", "positive"),
        ("RECONCILE_MAX_REQUESTS_PER_SECOND", "inf", "positive"),
        ("RECONCILE_REQUEUE_FAILED_EVENTS", "maybe", "true or false"),
        ("RECONCILE_DRY_RUN", "on?", "true or false"),
    ],
)
def test_a_bad_setting_names_itself(name: str, value: str, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason) as error:
        options_from({name: value})
    assert name in str(error.value)


# -- the pass -------------------------------------------------------------------------------------


def test_a_pass_lists_each_mode_and_account_then_scans_the_records() -> None:
    assert pass_phases(["test"]) == ("subscriptions:test", "events:test", "changes:test", "records")
    assert pass_phases(["live", "test"], [("live", "acct_2"), ("test", "acct_1")]) == (
        "subscriptions:test",
        "events:test",
        "changes:test",
        "subscriptions:test:acct_1",
        "events:test:acct_1",
        "changes:test:acct_1",
        "subscriptions:live",
        "events:live",
        "changes:live",
        "subscriptions:live:acct_2",
        "events:live:acct_2",
        "changes:live:acct_2",
        "records",
    )
    assert backfill_phases(["test"]) == (
        "subscriptions:test",
        "sessions:test",
        "payments:test",
        "refunds:test",
        "disputes:test",
        "customers:test",
    )
    assert phase_parts("subscriptions:live") == ("subscriptions", "live", None)
    assert phase_parts("changes:test:acct_1") == ("changes", "test", "acct_1")
    assert phase_parts("records") == ("records", None, None)
    assert phase_parts("events:test") == ("events", "test", None)
    for bad in ("records:test", "subscriptions", "events:prod", "done", "events:test:cus_1", "coupons:test"):
        with pytest.raises(ValueError, match="unknown reconcile phase"):
            phase_parts(bad)


def test_the_cursor_moves_page_by_page_then_phase_by_phase_and_sums_the_counts() -> None:
    cursor = PassCursor.start("p1", pass_phases(["test"]), T0, version=None, checkpoint=T0 - 99)
    assert (cursor.phase, cursor.position, cursor.pages, cursor.done, cursor.checkpoint) == (
        "subscriptions:test",
        None,
        0,
        False,
        T0 - 99,
    )
    cursor = cursor.after_page("sub_100", Counts(checked=100, stale=1), T0 + 1)
    assert (cursor.phase, cursor.position, cursor.pages) == ("subscriptions:test", "sub_100", 1)
    cursor = cursor.after_page(None, Counts(checked=20, missing=2), T0 + 2)
    assert (cursor.phase, cursor.position, cursor.pages, cursor.phases_done) == ("events:test", None, 2, 1)
    cursor = cursor.after_page(None, Counts(failed_events=3, events_requeued=3), T0 + 3)
    cursor = cursor.after_page(None, Counts(), T0 + 4)
    assert cursor.phase == "records"
    cursor = cursor.after_page('{"pk": "x"}', Counts(checked=1, extra=1), T0 + 5)
    cursor = cursor.after_page(None, Counts(), T0 + 6)
    assert cursor.done
    assert cursor.phase == DONE
    assert cursor.phases_done == 4
    assert cursor.completed_at == T0 + 6
    assert cursor.checkpoint == T0 - 99
    assert cursor.counts == Counts(
        checked=121, missing=2, stale=1, extra=1, failed_events=3, events_requeued=3
    )
    with pytest.raises(ValueError, match="complete"):
        cursor.after_page(None, Counts(), T0 + 7)
    with pytest.raises(ValueError, match="at least one phase"):
        PassCursor.start("p2", (), T0, version=None)


def test_the_checkpoint_starts_30_days_back_then_just_before_the_previous_pass() -> None:
    assert next_checkpoint(None, T0) == T0 - 30 * 86_400
    previous = PassCursor.start("p1", ("records",), T0 - 3600, version=1, checkpoint=T0 - 7200)
    assert next_checkpoint(previous, T0) == T0 - 3600 - 300
    # A pass that started more than 30 days ago: Stripe lists no older events anyway.
    ancient = PassCursor.start("p0", ("records",), T0 - 40 * 86_400, version=1, checkpoint=T0 - 41 * 86_400)
    assert next_checkpoint(ancient, T0) == T0 - 30 * 86_400
    # A cursor stored before checkpoints existed: the full 30 days.
    assert next_checkpoint(PassCursor.start("old", ("records",), T0 - 60, version=1), T0) == T0 - 30 * 86_400


def _event(created: int) -> dict[str, Any]:
    return s.event(
        s.IdFactory(0), "customer.subscription.updated", subscription(), created=created, id="evt_1"
    )


def test_an_event_is_lost_only_when_neither_the_ledger_nor_a_newer_record_reflects_it() -> None:
    stored = Snapshot(record_of("subscription", subscription()), Stamp(T0 + 50, 0, "evt_other"), "cus_1")
    assert event_drift(_event(T0), applied=False, stored=None)
    assert not event_drift(_event(T0), applied=True, stored=None)
    assert not event_drift(_event(T0 + 50), applied=False, stored=stored)  # same second: newer or equal
    assert event_drift(_event(T0 + 51), applied=False, stored=stored)


def test_a_backfill_picks_what_can_grant_access() -> None:
    ids = s.IdFactory("backfill")
    paid = book_session(T0)
    assert backfill_object("sessions", paid) == paid
    assert backfill_object("sessions", {**paid, "payment_status": "unpaid"}) is None
    assert backfill_object("sessions", {**paid, "status": "expired"}) is None
    linked = {**paid, "mode": "subscription", "client_reference_id": "user_1"}
    assert backfill_object("sessions", linked) == linked
    assert backfill_object("sessions", {**linked, "client_reference_id": None}) is None
    partial = {**paid, "line_items": {"data": [{}], "has_more": True}}
    assert backfill_object("sessions", partial) == paid  # the worker fetches every line item itself
    granting = s.payment_intent(
        ids, amount=900, customer="cus_1", status="succeeded", created=T0, metadata={"features": "pro"}
    )
    assert backfill_object("payments", granting) == granting
    assert backfill_object("payments", {**granting, "metadata": {}}) is None
    assert backfill_object("payments", {**granting, "status": "processing"}) is None
    charge = s.charge(
        ids, id="ch_1", amount=900, amount_refunded=900, customer="cus_1", payment_intent="pi_1", created=T0
    )
    assert charge["refunded"] is True
    refund = s.refund(ids, charge="ch_1", payment_intent="pi_1", customer="cus_1", amount=900, created=T0)
    assert (
        backfill_object("refunds", {**refund, "charge": charge}) == charge
    )  # listed with the charge expanded
    assert backfill_object("refunds", refund) is None
    lost = s.dispute(ids, charge="ch_1", payment_intent="pi_1", amount=900, status="lost", created=T0)
    assert backfill_object("disputes", lost) == lost
    assert backfill_object("disputes", {**lost, "status": "won"}) is None
    customer = s.customer(ids, created=T0, metadata={"app_user": "u1"})
    assert backfill_object("customers", customer, "app_user") == customer
    assert backfill_object("customers", customer) is None  # the configured key is another
    with pytest.raises(ValueError, match="no backfill list"):
        backfill_object("coupons", {})


def test_a_summary_matches_only_the_same_keys_read_to_the_end() -> None:
    stored = EntitlementSummaryRecord("cus_1", "cus_1", False, ("a", "b"), complete=True)
    assert same_summary(stored, ["b", "a", "a"])
    assert not same_summary(stored, ["a"])
    assert not same_summary(replace(stored, complete=False), ["a", "b"])
    obj = summary_object("cus_1", False, ["b", "a"])
    assert record_of("entitlement_summary", obj) == stored
    event = fetched_event(obj, T0 * 1000)
    assert event["id"] == f"sync_summary_cus_1_{T0 * 1000}"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"backfill": True}, RunRequest(Backfill(), False)),
        ({"backfill": True, "dry_run": True}, RunRequest(Backfill(), True)),
        ({"backfill": True, "since": "2024-01-31"}, RunRequest(Backfill(1706659200), False)),
        ({"backfill": False}, RunRequest(Everything(), False)),
    ],
)
def test_a_backfill_is_asked_for_by_its_event(event: dict[str, Any], expected: RunRequest) -> None:
    assert run_request(event) == expected


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"backfill": "yes"}, "backfill must be true or false"),
        ({"backfill": True, "customer": "cus_1"}, "takes no customer"),
        ({"backfill": True, "since": 2024}, "since must be a date"),
        ({"backfill": True, "since": "last week"}, "since must be a date"),
        ({"since": "2024-01-31"}, "backfill only"),
    ],
)
def test_a_bad_backfill_request_says_why(event: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        run_request(event)


def test_drift_is_counted_per_kind() -> None:
    counts = Counts.of_drift(DriftKind.STALE, "charge") + Counts.of_drift(DriftKind.MISSING, "event")
    assert counts.drift == 2
    assert counts.by_kind() == {
        "profile": 0,
        "subscription": 0,
        "invoice": 0,
        "purchase": 0,
        "payment": 0,
        "charge": 1,
        "refund": 0,
        "dispute": 0,
        "entitlement_summary": 0,
        "event": 1,
    }


def test_counts_add_up_and_survive_a_stored_round_trip() -> None:
    total = Counts(checked=2, missing=1) + Counts(checked=3, stale=2, extra=1)
    assert total == Counts(checked=5, missing=1, stale=2, extra=1)
    assert total.drift == 4
    assert Counts.from_dict(json.loads(json.dumps(total.as_dict()))) == total
    assert Counts.from_dict({"checked": 1, "counter_of_a_newer_version": 9}) == Counts(checked=1)
    assert Counts.of_drift(DriftKind.EXTRA) == Counts(extra=1)


def test_the_report_is_json_ready() -> None:
    report = ReconcileReport(
        scope="everything",
        dry_run=True,
        counts=Counts(checked=3, missing=1),
        pages=2,
        stripe_requests=2,
        rate_limited=1,
        drifts=(Drift(DriftKind.MISSING, "subscription", "sub_1", "cus_1", False),),
        messages=("subscription sub_9: Stripe answers 404; its record is left as it is",),
        complete=False,
        stopped="time budget",
        pass_id="p1",
        phase="records",
        pass_counts=Counts(checked=10, missing=1),
    )
    document = json.loads(json.dumps(report.as_dict()))
    assert document["checked"] == 3
    assert document["missing"] == 1
    assert document["errors"] == 0
    assert document["drift"] == 1
    assert document["drifts"] == [
        {"kind": "missing", "object": "subscription", "id": "sub_1", "customer": "cus_1", "livemode": False}
    ]
    assert document["messages"] == list(report.messages)
    assert document["pass_counts"]["checked"] == 10
    assert document["stopped"] == "time budget"


def test_when_a_purchase_was_paid_and_a_dispute_lost_is_the_workers_not_a_drift() -> None:
    """A fetch cannot say when a session was paid or a dispute lost; the worker keeps those from the
    events that showed it, so a fetched object without them is no drift, and a real change still is."""
    ids = s.IdFactory("fetched")
    paid = record_of("purchase", book_session(T0))
    assert isinstance(paid, PurchaseRecord)
    stored = replace(paid, paid_at=T0)
    assert same_record(paid, stored)
    assert not same_record(replace(paid, payment_status="unpaid"), stored)
    lost = record_of(
        "dispute",
        s.dispute(
            ids, id="dp_1", charge="ch_1", payment_intent="pi_1", amount=900, status="lost", created=T0
        ),
    )
    assert isinstance(lost, DisputeRecord)
    assert same_record(lost, replace(lost, lost_at=T0, customer_id="cus_1"))
    assert not same_record(replace(lost, status="won"), replace(lost, lost_at=T0))
