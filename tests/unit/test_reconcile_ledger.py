"""The event ledger of tables written before state items is read until LEDGER_READ_UNTIL, and not
after (domain.reconcile.pages): an undelivered event the ledger holds as applied is not queued again
before that date; after it the ledger is not asked, and the records' stamps alone decide."""

from __future__ import annotations

import json

import pytest

from domain.reconcile.pages import LEDGER_READ_UNTIL
from events.stripe import objects as s
from tests.support.memory_reconcile import World, subscription


def _world(now: int) -> tuple[World, str]:
    world = World()
    world.clock.now = float(now)
    obj = subscription("cus_a")
    event = s.event(s.IdFactory("ledger"), "customer.subscription.updated", obj, created=now - 600)
    world.stripe.put_event(event, delivered=False)
    world.table.ledger.add(str(event["id"]))  # applied, by a worker that still wrote the ledger
    return world, str(event["id"])


def _requeued(world: World) -> list[str]:
    return [
        json.loads(m.body)["id"] for m in world.queue.sent if json.loads(m.body)["type"] != "sync.fetched"
    ]


@pytest.mark.parametrize("before", [3600, 1])
def test_before_the_end_date_an_event_the_ledger_holds_is_not_queued_again(before: int) -> None:
    world, _event_id = _world(LEDGER_READ_UNTIL - before)

    report = world.run()

    assert report.complete
    assert world.table.ledger_reads > 0
    assert report.counts.events_lost == 0
    assert _requeued(world) == []


@pytest.mark.parametrize("after", [0, 3600])
def test_from_the_end_date_the_ledger_is_not_read_and_the_records_stamps_decide(after: int) -> None:
    world, event_id = _world(LEDGER_READ_UNTIL + after)

    report = world.run()

    assert report.complete
    assert world.table.ledger_reads == 0
    # No record of the subscription is stored: the event is queued again (the worker would find it a
    # duplicate had it been applied, by the record's stamp).
    assert report.counts.events_lost == 1
    assert _requeued(world) == [event_id]


def test_the_end_date_is_2027_01_01_utc() -> None:
    from datetime import UTC, datetime

    assert datetime.fromtimestamp(LEDGER_READ_UNTIL, UTC) == datetime(2027, 1, 1, tzinfo=UTC)
