"""Phases that cannot block each other (issue 17): the reconcile use case over in-memory ports
(tests.support.memory_reconcile), no moto, no HTTP. A list the key may not read, a parameter the API rejects,
an outage, a connected account that deauthorized the platform: each skips what it touches for this
pass, says why, and the rest of the pass (and the next pass) goes on."""

from __future__ import annotations

import json
from typing import Any

from domain.reconcile import Backfill, ReconcileReport, SkipReason
from domain.reconcile.ports import RateLimited, Refused
from domain.records import Snapshot
from domain.stripe_objects import parse_event, snapshot_of
from events.stripe import objects as s
from tests.support.memory_reconcile import T0, permission_refusal, stored, subscription
from tests.support.memory_reconcile import World as Account


def skipped(report: ReconcileReport) -> list[tuple[str, str]]:
    return [(skip.phase, str(skip.reason)) for skip in report.skipped]


# -- a list the key may not read, a parameter the API rejects ------------------------------------


def test_a_list_the_key_may_not_read_is_skipped_named_and_tried_again_by_the_next_pass() -> None:
    account = Account()
    account.lost_cancellation("cus_a")
    account.stripe.refusals[("/v1/events", None)] = permission_refusal("rak_event_read")

    first = account.run()

    assert first.complete
    assert skipped(first) == [("events:test", "permission"), ("changes:test", "permission")]
    assert all(skip.mode == "test" and skip.account is None for skip in first.skipped)
    assert first.skipped[0].detail.startswith("the API key lacks rak_event_read (Stripe: 403 ")
    assert any("events:test skipped" in m and "rak_event_read" in m for m in first.messages)
    assert (first.counts.phases_skipped, first.counts.errors) == (2, 2)
    assert account.repaired() == {("sub_cus_a", None)}  # the subscription list ran, and the records
    assert first.as_dict()["skipped_phases"][0] == {
        "phase": "events:test",
        "mode": "test",
        "account": None,
        "reason": "permission",
        "detail": first.skipped[0].detail,
    }

    del account.stripe.refusals[("/v1/events", None)]  # the key is given the permission
    second = account.next_pass()

    assert second.complete
    assert second.skipped == ()
    assert len(account.stripe.requests("/v1/events", answered=True)) == 2


def test_a_list_parameter_the_api_rejects_does_not_stop_the_repair_of_a_lost_cancellation() -> None:
    # A Stripe-compatible mock that does not know `delivery_success` (issue 17's measurement).
    account = Account()
    account.lost_cancellation("cus_a")
    account.stripe.rejected_params["delivery_success"] = Refused(
        "Unexpected delivery_success", http_status=400, code="parameter_unknown"
    )

    report = account.run()

    assert report.complete
    assert skipped(report) == [("events:test", "invalid_request")]
    assert "Unexpected delivery_success" in report.skipped[0].detail
    assert report.phases_done == report.phase_count == 4
    assert account.repaired() == {("sub_cus_a", None)}
    assert len(account.stripe.requests("/v1/events", answered=True)) == 1  # the change list still ran


# -- transient failures ---------------------------------------------------------------------------


def test_a_short_outage_is_waited_out_inside_the_run() -> None:
    account = Account()
    account.lost_cancellation("cus_a")
    account.stripe.outages["/v1/subscriptions"] = 3

    report = account.run()

    assert report.complete
    assert report.skipped == ()
    assert report.counts.errors == 0
    backoffs = [wait for wait in account.clock.sleeps if wait >= 0.75]
    assert backoffs == [0.75, 1.5, 3.0]  # doubling, jitter fixed at one half
    assert account.repaired() == {("sub_cus_a", None)}


def test_an_outage_longer_than_the_retries_skips_the_phase_and_the_pass_completes() -> None:
    account = Account()
    account.lost_cancellation("cus_a")
    account.stripe.outages["/v1/events"] = 4  # the first event list: one try and three retries

    report = account.run()

    assert report.complete
    assert skipped(report) == [("events:test", "unavailable")]
    assert report.skipped[0].detail.endswith("after 3 retries")
    assert account.repaired() == {("sub_cus_a", None)}
    assert account.next_pass().skipped == ()


def test_an_outage_that_outlasts_the_time_budget_leaves_the_cursor_on_the_page() -> None:
    account = Account()
    account.stripe.outages["/v1/subscriptions"] = 100

    report = account.run(budget=2.0)  # no room for the second backoff

    assert not report.complete
    assert report.stopped == "time budget"
    assert report.skipped == ()
    assert report.phase == "subscriptions:test"


# -- connected accounts that deauthorized the platform --------------------------------------------


def test_a_deauthorized_account_is_marked_skipped_and_the_accounts_after_it_are_reconciled() -> None:
    account = Account()
    account.stores.known_accounts = {("test", "acct_gone"), ("test", "acct_ok")}
    account.table.store(stored(subscription("cus_gone_clock", test_clock="clock_1"), "acct_gone"))
    account.lost_cancellation("cus_ok", "acct_ok")
    account.stripe.deauthorized.add("acct_gone")

    first = account.run()

    assert first.complete
    assert skipped(first) == [
        ("subscriptions:test:acct_gone", "account_deauthorized"),
        ("events:test:acct_gone", "account_deauthorized"),
        ("changes:test:acct_gone", "account_deauthorized"),
    ]
    assert "Application access may have been revoked" in first.skipped[0].detail
    # Asked once; its other phases and its records were skipped without a request.
    assert len(account.stripe.requests("/v1/", account="acct_gone")) == 1
    assert first.counts.errors == 0  # the account's owner chose this: nothing for a person to fix
    assert first.counts.skipped == 1  # its record
    assert account.stores.marks == {("test", "acct_gone"): T0 + 3600}
    assert account.repaired() == {("sub_cus_ok", "acct_ok")}

    second = account.next_pass()  # still deauthorized: asked once more, skipped again

    assert len(account.stripe.requests("/v1/", account="acct_gone")) == 2
    assert len(second.skipped) == 3
    assert account.stores.marks == {("test", "acct_gone"): T0 + 3600}

    account.stripe.deauthorized.clear()  # authorized again
    account.lost_cancellation("cus_back", "acct_gone")
    third = account.next_pass()

    assert third.complete
    assert third.skipped == ()
    assert account.stores.marks == {}
    assert ("sub_cus_back", "acct_gone") in account.repaired()


def test_the_authorization_events_of_a_connected_account_mark_it_and_clear_the_mark() -> None:
    account = Account()
    account.stores.known_accounts = {("test", "acct_a")}

    def authorization(kind: str, created: int) -> dict[str, Any]:
        application = {"id": "ca_platform", "object": "application", "name": "sync"}
        event = s.event(
            s.IdFactory(f"{kind}{created}"), f"account.application.{kind}", application, created=created
        )
        return dict(event, account="acct_a")

    account.stripe.put_event(authorization("deauthorized", T0 + 50), delivered=True)
    account.run()
    assert account.stores.marks == {("test", "acct_a"): T0 + 3600}

    account.stripe.put_event(authorization("authorized", T0 + 3700), delivered=True)
    account.next_pass()
    assert account.stores.marks == {}


# -- the records phase ----------------------------------------------------------------------------


ACTIVE_ENTITLEMENTS = "/v1/entitlements/active_entitlements"


def _stale_summary_beside_a_lost_cancellation(account: Account) -> None:
    """cus_a's stored Entitlements summary grants pro_reports, and Stripe now lists none for cus_a
    (an empty list, were it read, would end that access); cus_z's subscription, on a test clock the
    lists leave out, was canceled and the webhook lost: the records phase fetches it by id."""
    summary = s.active_entitlement_summary(
        customer="cus_a", features=[s.FeatureSpec("pro_reports", "Reports")]
    )
    event = s.event(
        s.IdFactory("summary_cus_a"),
        "entitlements.active_entitlement_summary.updated",
        summary,
        created=T0 + 10,
    )
    snapshot = snapshot_of(parse_event(event))
    assert isinstance(snapshot, Snapshot)
    account.table.store(snapshot)
    account.stripe.entitlements[("cus_a", (False, None))] = []
    account.table.store(stored(subscription("cus_z", test_clock="clock_1")))
    ended = {"canceled_at": T0 + 100, "ended_at": T0 + 100, "test_clock": "clock_1"}
    account.stripe.put(subscription("cus_z", "canceled", **ended))


def _queued_objects(account: Account) -> list[str]:
    """What each queued repair is of: the object type, with its id when it has one."""
    objects = [json.loads(m.body)["data"]["object"] for m in account.queue.sent]
    return [f"{o['object']} {o.get('id', o.get('customer'))}" for o in objects]


def test_active_entitlements_the_key_may_not_read_leave_the_summary_and_the_records_phase_goes_on() -> None:
    account = Account()
    _stale_summary_beside_a_lost_cancellation(account)
    account.stripe.refusals[(ACTIVE_ENTITLEMENTS, None)] = permission_refusal("rak_entitlements_read")

    report = account.run()

    assert report.complete
    assert skipped(report) == [("records", "permission")]
    assert "the API key lacks rak_entitlements_read" in report.skipped[0].detail
    assert report.counts.errors == 1
    assert report.counts.summaries_checked == 0
    assert _queued_objects(account) == ["subscription sub_cus_z"]  # no summary, empty or not


def test_active_entitlements_stripe_answers_404_for_leave_the_summary_and_the_records_phase_goes_on() -> None:
    account = Account()
    _stale_summary_beside_a_lost_cancellation(account)
    account.stripe.gone_customers.add("cus_a")

    report = account.run()

    assert report.complete
    assert report.skipped == ()
    assert report.counts.not_found == 1
    assert any("active entitlements of cus_a: Stripe answers 404" in m for m in report.messages)
    assert report.counts.summaries_checked == 0
    assert _queued_objects(account) == ["subscription sub_cus_z"]


def test_a_backfill_goes_on_reading_active_entitlements_past_a_customer_stripe_answers_404_for() -> None:
    account = Account()
    account.stripe.put(subscription("cus_a"))
    account.stripe.put(subscription("cus_b", created=T0 - 1))
    account.stripe.entitlements[("cus_b", (False, None))] = ["pro_reports"]
    account.stripe.gone_customers.add("cus_a")

    report = account.run(Backfill())

    assert report.complete
    assert [c.params["customer"] for c in account.stripe.requests(ACTIVE_ENTITLEMENTS)] == ["cus_a", "cus_b"]
    assert report.counts.not_found == 1
    assert sorted(_queued_objects(account)) == [
        "entitlements.active_entitlement_summary cus_b",
        "subscription sub_cus_a",
        "subscription sub_cus_b",
    ]


def test_active_entitlements_rate_limited_throughout_skip_the_records_phase_for_the_next_pass() -> None:
    """A 429 that outlasts the pacer's and the run's retries: the phase is left for the next pass,
    and nothing is written from an answer Stripe did not give."""
    account = Account()
    _stale_summary_beside_a_lost_cancellation(account)
    account.stripe.refusals[(ACTIVE_ENTITLEMENTS, None)] = RateLimited("Too many requests", http_status=429)

    first = account.run()

    assert first.complete
    assert skipped(first) == [("records", "unavailable")]
    assert first.counts.errors == 1
    assert first.counts.summaries_checked == 0
    assert account.queue.sent == []

    del account.stripe.refusals[(ACTIVE_ENTITLEMENTS, None)]
    second = account.next_pass()

    assert second.complete
    assert second.skipped == ()
    assert second.counts.summaries_checked == 1
    assert sorted(_queued_objects(account)) == [
        "entitlements.active_entitlement_summary cus_a",
        "subscription sub_cus_z",
    ]


def test_objects_the_key_may_not_fetch_are_asked_for_once_and_the_records_phase_goes_on() -> None:
    account = Account()
    for customer in ("cus_a", "cus_b", "cus_c"):  # on a test clock: not in the list, verified by id
        account.table.store(stored(subscription(customer, test_clock="clock_1")))
    account.stripe.refusals[("/v1/subscriptions/", None)] = permission_refusal("rak_subscription_read")

    report = account.run()

    assert report.complete
    assert skipped(report) == [("records", "permission")]
    assert "subscription: the API key lacks rak_subscription_read" in report.skipped[0].detail
    assert len(account.stripe.requests("/v1/subscriptions/")) == 1
    assert report.counts.skipped == 3
    assert report.skipped[0].reason == SkipReason.PERMISSION
