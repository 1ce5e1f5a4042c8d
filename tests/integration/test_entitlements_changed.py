"""The "entitlements changed" publisher under moto: stream records in, EventBridge events out, and
every failure parked or retried, never lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from adapters import event_bus
from domain.entitlement_events import CUSTOMER_DETAIL_TYPE, SOURCE
from entitlements_reader import entitlements_from_event, parse_entitlements_item
from handlers import entitlements_changed
from handlers.entitlements_changed import PUBLISH_ATTEMPTS, NotConfigured, lambda_handler
from tests.support.aws_event_shapes import customer_item, image, stream_event, stream_record
from tests.support.faults import AwsWire, ServiceError, Unreachable

PRO = {"pro": {"source": "sub_1SkQ2hB7WZ01zgkW4yVd9aLm", "until": 1769940000}}
BUS = "stripe-sync-dev-entitlements"


@dataclass
class Bus:
    sqs: Any
    subscriber_url: str  # a backend's rule: "Customer Entitlements Changed" -> this queue
    dead_letters_url: str

    def received(self) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in _drain(self.sqs, self.subscriber_url)]

    def parked(self) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in _drain(self.sqs, self.dead_letters_url)]


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        messages += batch
    return messages


@pytest.fixture
def bus(webhook_environment: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:
    """The stack's bus and the publisher's DLQ, with the README's example subscription on the bus."""
    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    events.create_event_bus(Name=BUS)
    subscriber = sqs.create_queue(QueueName="backend-access-changes")["QueueUrl"]
    subscriber_arn = sqs.get_queue_attributes(QueueUrl=subscriber, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="access-changes",
        EventBusName=BUS,
        EventPattern=json.dumps({"source": [SOURCE], "detail-type": [CUSTOMER_DETAIL_TYPE]}),
    )
    events.put_targets(Rule="access-changes", EventBusName=BUS, Targets=[{"Id": "q", "Arn": subscriber_arn}])
    dead_letters = sqs.create_queue(QueueName="entitlements-changes-dlq")["QueueUrl"]
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", dead_letters)
    monkeypatch.setattr(entitlements_changed, "RETRY_DELAY_SECONDS", 0)
    event_bus.events_client.cache_clear()
    event_bus.sqs_client.cache_clear()
    yield Bus(sqs, subscriber, dead_letters)
    event_bus.events_client.cache_clear()
    event_bus.sqs_client.cache_clear()


def gained(customer: str = "cus_TgS1o8vcGmoR32", version: int = 2) -> dict[str, Any]:
    return stream_record(
        customer_item(customer, version=version - 1),
        customer_item(customer, version=version, features=PRO, cause_event_id=f"evt_{customer}_{version}"),
    )


def test_a_change_reaches_a_backends_rule_and_reads_as_the_table_would(bus: Bus) -> None:
    record = gained()

    assert lambda_handler(stream_event(record), None) == {"batchItemFailures": []}

    [event] = bus.received()
    assert (event["source"], event["detail-type"]) == (SOURCE, CUSTOMER_DETAIL_TYPE)
    assert event["detail"]["cause_event_id"] == "evt_cus_TgS1o8vcGmoR32_2"
    assert entitlements_from_event(event) == parse_entitlements_item(record["dynamodb"]["NewImage"])
    assert bus.parked() == []


def test_unchanged_access_publishes_nothing(bus: Bus) -> None:
    old = customer_item(features=PRO)
    repaired = {**old, "version": 2, "records_version": 5, "updated_at": 1767300000}

    assert lambda_handler(stream_event(stream_record(old, repaired)), None) == {"batchItemFailures": []}

    assert bus.received() == []


def test_more_than_ten_changes_are_all_published_in_order(bus: Bus) -> None:
    records = [gained(f"cus_{index:02d}") for index in range(23)]

    assert lambda_handler(stream_event(*records), None) == {"batchItemFailures": []}

    received = sorted(event["detail"]["customer_id"] for event in bus.received())
    assert received == [f"cus_{index:02d}" for index in range(23)]


def test_a_change_eventbridge_keeps_refusing_is_parked_whole(
    bus: Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    with AwsWire(event_bus.events_client()) as wire:
        wire.inject("PutEvents", ServiceError("AccessDeniedException", status=400), times=PUBLISH_ATTEMPTS)
        assert lambda_handler(stream_event(gained()), None) == {"batchItemFailures": []}
        assert wire.pending() == 0

    assert bus.received() == []
    [parked] = bus.parked()
    assert "AccessDeniedException" in parked["reason"]
    entry = parked["entry"]
    assert (entry["EventBusName"], entry["Source"], entry["DetailType"]) == (
        BUS,
        SOURCE,
        CUSTOMER_DETAIL_TYPE,
    )
    assert json.loads(entry["Detail"])["cause_event_id"] == "evt_cus_TgS1o8vcGmoR32_2"
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["message"] for line in logged] == ["entitlements changed parked"]
    assert logged[0]["EntitlementsChangesParked"] == 1


def test_a_refusal_that_passes_is_retried_and_published_once(bus: Bus) -> None:
    with AwsWire(event_bus.events_client()) as wire:
        wire.inject("PutEvents", ServiceError("AccessDeniedException", status=400), times=1)
        assert lambda_handler(stream_event(gained()), None) == {"batchItemFailures": []}

    assert len(bus.received()) == 1
    assert bus.parked() == []


class PartlyRefusingEvents:
    """PutEvents answering 200 with one entry refused the first time (as EventBridge may)."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert operation == "PutEvents"
        entries = payload["Entries"]
        self.calls.append(entries)
        if len(self.calls) == 1:
            results: list[dict[str, Any]] = [{"EventId": f"id-{i}"} for i in range(len(entries))]
            results[1] = {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
            return {"FailedEntryCount": 1, "Entries": results}
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "again"} for _ in entries]}


def test_only_the_refused_entry_of_a_call_is_retried(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = PartlyRefusingEvents()
    monkeypatch.setattr(event_bus.events_client(), "call", fake.call)

    records = [gained("cus_A"), gained("cus_B"), gained("cus_C")]
    assert lambda_handler(stream_event(*records), None) == {"batchItemFailures": []}

    assert [len(entries) for entries in fake.calls] == [3, 1]
    assert json.loads(fake.calls[1][0]["Detail"])["customer_id"] == "cus_B"
    assert bus.parked() == []


def test_when_nothing_can_be_kept_lambda_retries_from_the_first_record_not_done(bus: Bus) -> None:
    # Eleven changes: two PutEvents calls. The second is refused, and the DLQ is unreachable.
    done = [gained(f"cus_{index:02d}") for index in range(10)]
    last = gained("cus_LAST")
    with AwsWire(event_bus.events_client(), event_bus.sqs_client()) as wire:
        wire.inject(
            "PutEvents",
            ServiceError("AccessDeniedException", status=400),
            when=lambda request: "cus_LAST" in request.body,
            times=PUBLISH_ATTEMPTS,
        )
        wire.inject("SendMessage", Unreachable(), times=100)
        response = lambda_handler(stream_event(*done, last), None)

    assert response == {"batchItemFailures": [{"itemIdentifier": last["dynamodb"]["SequenceNumber"]}]}
    assert len(bus.received()) == 10, "the records before it are published, and not retried"
    assert bus.parked() == []


def test_a_record_that_cannot_be_read_is_parked_whole(bus: Bus) -> None:
    record = gained()
    del record["dynamodb"]["NewImage"]

    assert lambda_handler(stream_event(record, gained("cus_B")), None) == {"batchItemFailures": []}

    [parked] = bus.parked()
    assert "NEW_AND_OLD_IMAGES" in parked["reason"]
    assert parked["stream_record"] == record
    assert [event["detail"]["customer_id"] for event in bus.received()] == ["cus_B"]


def test_a_record_that_cannot_be_read_nor_parked_is_retried(bus: Bus) -> None:
    record = gained()
    record["dynamodb"]["NewImage"] = image({"features": "not a map"})
    with AwsWire(event_bus.sqs_client()) as wire:
        wire.inject("SendMessage", Unreachable(), times=100)
        response = lambda_handler(stream_event(record), None)
    assert response == {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}


def test_without_its_bus_or_queue_the_batch_fails_and_is_retried(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVENT_BUS_NAME")
    with pytest.raises(NotConfigured, match="EVENT_BUS_NAME"):
        lambda_handler(stream_event(gained()), None)
