"""The reconcile use case's pass logic over in-memory ports (tests.support.memory_reconcile): what is
compared and queued, dry runs, the time budget and the cursor, modes. Moved from
tests/integration/test_reconcile_pipeline.py, asserting what they asserted there; the pipeline file
keeps what needs the adapters (the stripe SDK against the fake API, DynamoDB and SQS on moto, the
worker applying repairs)."""

from __future__ import annotations

import json
from typing import Any

from domain.reconcile import Backfill, Counts, OneCustomer, ReconcileReport
from tests.support.memory_reconcile import T0, World, permission_refusal, stored, subscription


def core(counts: Counts | None) -> Counts:
    """The object counters, without the event and per-kind counters."""
    assert counts is not None
    names = ("checked", "missing", "stale", "extra", "repaired", "not_found", "skipped", "errors")
    return Counts(**{name: getattr(counts, name) for name in names})


def store(world: World, *objects: dict[str, Any]) -> None:
    for obj in objects:
        world.table.store(stored(obj))


def put(world: World, *objects: dict[str, Any]) -> None:
    for obj in objects:
        world.stripe.put(obj)


def test_nothing_is_queued_when_nothing_drifted() -> None:
    world = World()
    objects = [subscription(f"cus_{n:03d}") for n in range(30)]
    put(world, *objects)
    store(world, *objects)

    report = world.run()

    assert report.complete
    assert core(report.counts) == Counts(checked=30)
    assert report.drifts == ()
    assert world.queue.sent == []
    # One page of each list (subscriptions, undelivered events, other records' events); nothing by id.
    assert [c.path for c in world.stripe.calls] == ["/v1/subscriptions", "/v1/events", "/v1/events"]


def test_an_object_that_cannot_be_parsed_is_reported_and_the_pass_goes_on() -> None:
    world = World()
    broken = subscription("cus_broken")
    broken["items"]["data"][0]["price"] = None
    broken["items"]["data"][0]["plan"] = None
    put(world, broken, subscription("cus_new", created=T0 - 1))

    report = world.run()

    assert report.complete
    assert core(report.counts) == Counts(checked=1, missing=1, repaired=1, errors=1)
    assert any("sub_cus_broken" in m for m in report.messages)
    assert world.queued_ids() == ["sub_cus_new"]


def test_a_dry_run_reports_drift_and_queues_nothing() -> None:
    world = World()
    put(world, subscription("cus_new"))
    put(world, subscription("cus_old", "canceled", canceled_at=T0 + 9, ended_at=T0 + 9))
    store(world, subscription("cus_old"))

    report = world.run(dry_run=True)

    assert report.dry_run
    assert report.complete
    assert core(report.counts) == Counts(checked=2, missing=1, stale=1)
    assert {d.object_id for d in report.drifts} == {"sub_cus_new", "sub_cus_old"}
    assert world.queue.sent == []
    # A dry run keeps a cursor of its own: the next real run still starts a pass of its own.
    assert world.stores().load() is None
    assert world.stores(dry_run=True).load() is not None
    assert world.run().counts.repaired == 2


def test_a_dry_run_asks_the_records_phase_to_mark_nothing_and_a_real_run_to_mark() -> None:
    """Read-only credentials run a dry run: its records phase must not mark an older table's records
    for the index nor write the marker (adapters.reconciler.TableRecords.scan_page), a real run must."""
    world = World()
    active = subscription("cus_active")
    put(world, active)
    store(world, active)

    assert world.run(dry_run=True).complete
    assert world.table.scan_marks == [False]

    assert world.run().complete
    assert world.table.scan_marks == [False, True]


def _account(world: World, count: int) -> set[str]:
    """`count` subscriptions, every seventh missing from the table and every eleventh stale."""
    objects = [subscription(f"cus_{n:04d}", created=T0 + n) for n in range(count)]
    put(world, *objects)
    store(world, *[o for n, o in enumerate(objects) if n % 7 and n % 11])
    store(
        world,
        *[subscription(f"cus_{n:04d}", "past_due", created=T0 + n) for n in range(0, count, 11) if n % 7],
    )
    return {o["id"] for n, o in enumerate(objects) if n % 7 == 0 or n % 11 == 0}


def test_a_pass_that_outlasts_the_time_budget_resumes_from_the_cursor() -> None:
    world = World()
    drifted = _account(world, 250)

    def ten_seconds_a_request() -> None:
        world.clock.now += 10

    world.stripe.on_request = ten_seconds_a_request
    reports = [world.run(budget=25)]
    assert reports[0].stopped == "time budget"
    assert reports[0].pages == 2
    stored_cursor = world.stores().load()
    assert stored_cursor is not None
    assert stored_cursor.phase == "subscriptions:test"
    assert stored_cursor.position == "sub_cus_0050"  # the last id of the second page, newest first
    while not reports[-1].complete:
        reports.append(world.run(budget=25))
        assert len(reports) < 10

    assert len(reports) == 3  # 3 subscription pages, 2 event lists and the records: 2 requests a run
    assert sum(r.counts.checked for r in reports) == 250
    assert core(reports[-1].pass_counts) == Counts(checked=250, missing=36, stale=19, repaired=55)
    assert sorted(world.queued_ids()) == sorted(drifted)
    lists = [c.params.get("starting_after") for c in world.stripe.calls if c.path == "/v1/subscriptions"]
    assert lists == [None, "sub_cus_0150", "sub_cus_0050"]  # every page once, none skipped
    # The records phase ran in the third run: subscriptions the first runs listed were not fetched.
    assert world.stripe.requests("/v1/subscriptions/") == []


def test_a_second_run_moving_the_cursor_stops_this_one() -> None:
    world = World()
    _account(world, 250)
    interfered = []

    def other_run_saves(_report: ReconcileReport) -> None:
        if not interfered:
            cursor = world.stores().load()
            assert cursor is not None
            interfered.append(world.stores().save(cursor))

    report = world.run(progress=other_run_saves)

    assert not report.complete
    assert report.stopped is not None
    assert "another reconcile run" in report.stopped
    assert report.pages == 1


def test_one_customer_stops_in_time_too() -> None:
    world = World()
    put(world, subscription("cus_mine"))
    report = world.run(OneCustomer("cus_mine"), budget=0)
    assert (report.complete, report.stopped, report.pages) == (False, "time budget", 0)
    assert world.stripe.calls == []


def test_each_mode_is_listed_with_its_own_key() -> None:
    world = World()
    world.stripe.modes = (False, True)
    put(world, subscription("cus_live", livemode=True))
    put(world, subscription("cus_test", "canceled", canceled_at=T0 + 5, ended_at=T0 + 5))
    store(world, subscription("cus_test"))

    report = world.run()

    assert report.complete
    assert core(report.counts) == Counts(checked=2, missing=1, stale=1, repaired=2)
    lists = [
        (c.livemode, c.params.get("status")) for c in world.stripe.calls if c.path == "/v1/subscriptions"
    ]
    assert lists == [(False, "all"), (True, "all")]
    bodies = {b["data"]["object"]["id"]: b for b in (json.loads(m.body) for m in world.queue.sent)}
    assert bodies["sub_cus_live"]["livemode"] is True
    assert bodies["sub_cus_test"]["livemode"] is False


def test_records_of_a_mode_without_a_key_are_skipped_and_counted() -> None:
    world = World()
    store(world, subscription("cus_live", livemode=True))

    report = world.run()  # a test key only

    assert report.complete
    assert core(report.counts) == Counts(skipped=1)
    assert world.stripe.requests("/v1/subscriptions/") == []


def test_a_mode_whose_key_was_removed_mid_pass_is_skipped_with_an_error() -> None:
    world = World()
    put(world, *[subscription(f"cus_{n:03d}", created=T0 + n) for n in range(150)])

    def ten_seconds_a_request() -> None:
        world.clock.now += 10

    world.stripe.on_request = ten_seconds_a_request
    world.stripe.modes = (False, True)
    first = world.run(dry_run=True, budget=15)
    assert first.stopped == "time budget"
    assert first.phase == "subscriptions:test"

    world.stripe.modes = (False,)  # the live key is gone
    second = world.run(dry_run=True)

    assert second.complete
    assert second.counts.errors == 3  # the live subscriptions, undelivered events and other events
    assert any("subscriptions:live skipped" in m for m in second.messages)
    assert (second.pass_counts or Counts()).checked == 150


def test_a_backfill_whose_key_may_not_read_entitlements_still_backfills_the_subscriptions() -> None:
    world = World()
    put(world, subscription("cus_a"), subscription("cus_b"))
    world.stripe.refusals[("/v1/entitlements/active_entitlements", None)] = permission_refusal(
        "rak_entitlements_read"
    )

    report = world.run(Backfill())

    assert report.complete
    assert sorted(world.queued_ids()) == ["sub_cus_a", "sub_cus_b"]
    # Refused once, then not asked again in this run: the other customer is counted as skipped.
    assert len(world.stripe.requests("/v1/entitlements/active_entitlements")) == 1
    assert report.counts.skipped == 1


def test_a_backfill_queues_a_summary_only_for_customers_stripe_lists_entitlements_for() -> None:

    world = World()
    put(world, subscription("cus_a"), subscription("cus_b"), subscription("cus_c", "canceled"))
    world.stripe.entitlements[("cus_a", (False, None))] = ["pro_reports"]

    report = world.run(Backfill())

    assert report.counts.summaries_checked == 2  # the canceled subscription's customer is not asked
    summaries = [
        json.loads(m.body)["data"]["object"]
        for m in world.queue.sent
        if json.loads(m.body)["data"]["object"]["object"] == "entitlements.active_entitlement_summary"
    ]
    assert [(o["customer"], [e["lookup_key"] for e in o["entitlements"]["data"]]) for o in summaries] == [
        ("cus_a", ["pro_reports"])
    ]
