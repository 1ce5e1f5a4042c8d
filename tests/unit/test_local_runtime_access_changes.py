"""The local runtime's pieces for "entitlements changed" events and the EventBridge way in: the
template's publisher, the stream event source mapping, the local EventBridge path, the console."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from domain.entitlement_events import change_entry
from domain.ingress import eventbridge_event
from local_runtime.console import Console
from local_runtime.partner_events import NotAnEnvelope, envelope_of, eventbridge_envelope
from local_runtime.table_stream import TableStreamMapping, matches
from local_runtime.template import read_template
from tests.support.aws_event_shapes import customer_item, stream_record, stripe_eventbridge_event

STACK = read_template()
PRO = {"pro": {"source": "sub_1", "until": 1769940000}}


def test_the_template_gives_the_publisher_its_filter_batch_bus_and_dead_letter_queue() -> None:
    publisher = STACK.publisher
    assert publisher is not None
    assert publisher.function.handler == "handlers.entitlements_changed.lambda_handler"
    assert publisher.filters == ({"dynamodb": {"Keys": {"sk": {"S": ["ENTITLEMENTS"]}}}},)
    assert (publisher.batch_size, publisher.max_retry_attempts) == (100, 10)
    assert publisher.bus_name == "stripe-sync-local-entitlements"
    assert publisher.dead_letter_queue.logical_id == "EntitlementsChangesDeadLetterQueue"
    assert STACK.eventbridge is not None
    assert STACK.eventbridge.handler == "handlers.eventbridge.lambda_handler"


def test_the_filter_lets_only_entitlements_items_through() -> None:
    [pattern] = STACK.publisher.filters  # type: ignore[union-attr]
    entitlements = stream_record(customer_item(), customer_item(features=PRO))
    state = stream_record(customer_item(sk="STATE"), customer_item(sk="STATE", version=2))
    user = stream_record(None, customer_item(pk="USER#live#u1"))
    assert matches(pattern, entitlements)
    assert matches(pattern, user)
    assert not matches(pattern, state)
    assert not matches(pattern, {"dynamodb": {}})


class FakeStreams:
    """One shard whose records arrive in the order `write` adds them."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.position = 0

    def write(self, *records: dict[str, Any]) -> None:
        self.records += records

    def describe_stream(self, StreamArn: str) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": "shard-1"}]}}

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": "it"}

    def get_records(self, ShardIterator: str) -> dict[str, Any]:
        new, self.position = self.records[self.position :], len(self.records)
        return {"Records": new, "NextShardIterator": "it"}


class Observer:
    def __init__(self) -> None:
        self.failed: list[int] = []
        self.given_up: list[tuple[int, int]] = []

    def stream_batch_failed(self, size: int, error: BaseException) -> None:
        self.failed.append(size)

    def stream_batch_given_up(self, size: int, attempts: int) -> None:
        self.given_up.append((size, attempts))


def mapping(
    streams: FakeStreams, handler: Any, observer: Observer, *, retries: int = 2
) -> TableStreamMapping:
    return TableStreamMapping(
        streams,
        "arn:stream",
        handler,
        lambda: None,
        observer,
        filters=STACK.publisher.filters,  # type: ignore[union-attr]
        batch_size=2,
        max_retry_attempts=retries,
    )


def sequence(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def test_the_mapping_hands_over_filtered_records_in_batches_in_order() -> None:
    streams, observer, batches = FakeStreams(), Observer(), []
    records = [
        stream_record(customer_item(f"cus_{i}"), customer_item(f"cus_{i}", features=PRO)) for i in range(3)
    ]
    streams.write(
        records[0], stream_record(customer_item(sk="STATE"), customer_item(sk="STATE")), *records[1:]
    )

    source = mapping(streams, lambda event, _: batches.append(event["Records"]) or {}, observer)
    assert source.poll_once() == 3

    assert [[sequence(r) for r in batch] for batch in batches] == [
        [sequence(records[0]), sequence(records[1])],
        [sequence(records[2])],
    ]
    assert source.poll_once() == 0, "nothing new"


def test_a_batch_item_failure_is_retried_from_that_record_then_given_up() -> None:
    streams, observer, seen = FakeStreams(), Observer(), []
    first, second = (
        stream_record(customer_item(c), customer_item(c, features=PRO)) for c in ("cus_A", "cus_B")
    )
    streams.write(first, second)

    def handler(event: dict[str, Any], _: Any) -> dict[str, Any]:
        seen.append([sequence(r) for r in event["Records"]])
        return {"batchItemFailures": [{"itemIdentifier": sequence(second)}]}

    source = mapping(streams, handler, observer, retries=1)
    source.poll_once()
    source.poll_once()
    source.poll_once()

    assert seen == [[sequence(first), sequence(second)], [sequence(second)]]
    assert observer.given_up == [(1, 2)]


def test_a_handler_that_raises_is_retried_with_the_whole_batch() -> None:
    streams, observer = FakeStreams(), Observer()
    streams.write(stream_record(customer_item(), customer_item(features=PRO)))
    calls = []

    def handler(event: dict[str, Any], _: Any) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return {"batchItemFailures": []}

    source = mapping(streams, handler, observer)
    source.poll_once()
    source.poll_once()
    assert calls == [1, 1]
    assert observer.failed == [1]


def test_a_bare_stripe_event_is_wrapped_as_stripes_eventbridge_destination_would(
    stripe_event_factory: Any,
) -> None:
    document = stripe_event_factory("invoice.paid")
    envelope = eventbridge_envelope(json.dumps(document).encode())
    assert envelope["detail"] == document
    assert envelope["detail-type"] == "invoice.paid"
    assert eventbridge_event(envelope).id == document["id"], "the ingress accepts it"


def test_an_eventbridge_event_is_taken_as_posted(stripe_event_factory: Any) -> None:
    envelope = stripe_eventbridge_event(stripe_event_factory())
    assert eventbridge_envelope(json.dumps(envelope).encode()) == envelope
    assert envelope_of(envelope["detail"], source=envelope["source"])["detail"] == envelope["detail"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{", "not JSON"), (b"[]", "not a JSON object"), (b'{"object": "charge"}', "neither")],
)
def test_what_is_neither_is_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(NotAnEnvelope, match=reason):
        eventbridge_envelope(body)


def test_the_console_shows_the_change_and_the_event_as_published() -> None:
    entry = change_entry(
        stream_record(customer_item(features=PRO), customer_item(features={}, payment_issue=True, version=3))
    )
    assert entry is not None
    record = {
        "level": "INFO",
        "message": "entitlements changed published",
        "detail_type": entry.detail_type,
        "detail": entry.detail,
    }
    out = io.StringIO()
    Console(out, max_receive_count=5, visibility_timeout=30, debug=False).handler_line(
        "publisher", json.dumps(record)
    )
    summary, published = out.getvalue().splitlines()
    assert "Customer Entitlements Changed cus_TgS1o8vcGmoR32 (user user-42) v3" in summary
    assert "(cause evt_1SkQ2iB7WZ01zgkW0kDj3aBc)" in summary
    assert summary.endswith("no features [payment issue]")
    assert json.loads(published) == {
        "source": "stripe-sync",
        "detail-type": "Customer Entitlements Changed",
        "detail": entry.detail,
    }
