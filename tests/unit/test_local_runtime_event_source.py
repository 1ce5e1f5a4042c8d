"""The emulated SQS event source mapping: Lambda's event shape, partial batch responses, the DLQ."""

from __future__ import annotations

from typing import Any

import pytest

from local_runtime.event_source import (
    EventSourceMapping,
    InvalidBatchResponse,
    QueueBinding,
    failed_message_ids,
    sqs_event,
    sqs_record,
)

ARN = "arn:aws:sqs:us-east-1:123456789012:events.fifo"
BINDING = QueueBinding(
    queue_url="http://moto/events.fifo",
    queue_arn=ARN,
    dead_letter_queue_url="http://moto/dlq.fifo",
    batch_size=10,
    max_receive_count=5,
    visibility_timeout=180,
)


def message(number: int, receive_count: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "MessageId": f"m{number}",
        "ReceiptHandle": f"rh{number}",
        "MD5OfBody": "md5",
        "Body": f'{{"id": "evt_{number}"}}',
        "Attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "MessageGroupId": "cus_1",
            "MessageDeduplicationId": f"evt_{number}",
            "SentTimestamp": "1795454662000",
        },
        **extra,
    }


class RecordingSqs:
    """Answers receive_message with the given messages once, records every other call."""

    def __init__(self, messages: list[dict[str, Any]], dlq_depth: int = 0) -> None:
        self.messages = messages
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.dlq_depth = dlq_depth

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("receive_message", kwargs))
        batch, self.messages = self.messages, []
        return {"Messages": batch} if batch else {}

    def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("delete_message_batch", kwargs))
        return {"Successful": [{"Id": e["Id"]} for e in kwargs["Entries"]]}

    def delete_message(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("delete_message", kwargs))
        return {}

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("send_message", kwargs))
        return {"MessageId": "new"}

    def get_queue_attributes(self, **kwargs: Any) -> dict[str, Any]:
        return {"Attributes": {"ApproximateNumberOfMessages": str(self.dlq_depth)}}

    def named(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for called, kwargs in self.calls if called == name]


class Observer:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def batch_failed(self, size: int, error: BaseException) -> None:
        self.seen.append(("batch_failed", (size, type(error).__name__)))

    def deletes_failed(self, count: int, reason: str) -> None:
        self.seen.append(("deletes_failed", (count, reason)))

    def moved_to_dead_letter_queue(self, message_id: str, receive_count: int) -> None:
        self.seen.append(("moved", (message_id, receive_count)))

    def dead_letter_queue_depth(self, depth: int) -> None:
        self.seen.append(("depth", depth))

    def poll_failed(self, error: BaseException) -> None:
        self.seen.append(("poll_failed", type(error).__name__))


def mapping(sqs: RecordingSqs, handler: Any, observer: Observer | None = None) -> EventSourceMapping:
    return EventSourceMapping(
        sqs, BINDING, handler, lambda: "context", observer or Observer(), wait_seconds=0
    )


def test_a_record_has_lambdas_field_names() -> None:
    record = sqs_record(
        message(1, MessageAttributes={"k": {"StringValue": "v", "DataType": "String"}}), ARN, "us-east-1"
    )
    assert record == {
        "messageId": "m1",
        "receiptHandle": "rh1",
        "body": '{"id": "evt_1"}',
        "attributes": {
            "ApproximateReceiveCount": "1",
            "MessageGroupId": "cus_1",
            "MessageDeduplicationId": "evt_1",
            "SentTimestamp": "1795454662000",
        },
        "messageAttributes": {
            "k": {"stringValue": "v", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
        },
        "md5OfBody": "md5",
        "eventSource": "aws:sqs",
        "eventSourceARN": ARN,
        "awsRegion": "us-east-1",
    }


def test_binary_message_attributes_are_base64_in_the_event() -> None:
    record = sqs_record(
        message(1, MessageAttributes={"b": {"BinaryValue": b"\x00\xff", "DataType": "Binary"}}),
        ARN,
        "us-east-1",
    )
    assert record["messageAttributes"]["b"]["binaryValue"] == "AP8="


def test_powertools_reads_the_event_like_lambdas() -> None:
    from aws_lambda_powertools.utilities.data_classes import SQSEvent

    event = SQSEvent(sqs_event([message(1, receive_count=3)], ARN, "us-east-1"))
    record = next(iter(event.records))
    assert record.message_id == "m1"
    assert record.attributes.approximate_receive_count == "3"
    assert record.attributes.message_group_id == "cus_1"
    assert record.attributes.message_deduplication_id == "evt_1"
    assert record.event_source_arn == ARN


@pytest.mark.parametrize("response", [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}])
def test_these_responses_mean_every_message_succeeded(response: object) -> None:
    assert failed_message_ids(response, ["m1", "m2"]) == set()


def test_listed_failures_are_kept() -> None:
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "m2"}]}, ["m1", "m2"]) == {"m2"}


@pytest.mark.parametrize(
    "response",
    [
        "not an object",
        {"batchItemFailures": "m1"},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"id": "m1"}]},
        {"batchItemFailures": [{"itemIdentifier": "m9"}]},
    ],
)
def test_responses_lambda_refuses_fail_the_whole_batch(response: object) -> None:
    with pytest.raises(InvalidBatchResponse):
        failed_message_ids(response, ["m1", "m2"])


def test_receives_a_batch_of_the_templates_size_with_every_attribute() -> None:
    sqs = RecordingSqs([])
    assert mapping(sqs, lambda e, c: None).poll_once() == 0
    (receive,) = sqs.named("receive_message")
    assert receive["MaxNumberOfMessages"] == 10
    assert receive["MessageSystemAttributeNames"] == ["All"]
    assert receive["QueueUrl"] == BINDING.queue_url


def test_only_the_messages_that_succeeded_are_deleted() -> None:
    sqs = RecordingSqs([message(1), message(2), message(3)])
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        assert context == "context"
        return {"batchItemFailures": [{"itemIdentifier": "m2"}]}

    assert mapping(sqs, handler).poll_once() == 3
    assert [r["messageId"] for r in events[0]["Records"]] == ["m1", "m2", "m3"]
    (delete,) = sqs.named("delete_message_batch")
    assert [e["ReceiptHandle"] for e in delete["Entries"]] == ["rh1", "rh3"]


def test_a_handler_that_raises_keeps_every_message() -> None:
    sqs = RecordingSqs([message(1), message(2)])
    observer = Observer()

    def handler(event: dict[str, Any], context: Any) -> None:
        raise RuntimeError("boom")

    mapping(sqs, handler, observer).poll_once()
    assert sqs.named("delete_message_batch") == []
    assert observer.seen == [("batch_failed", (2, "RuntimeError"))]


def test_an_invalid_response_keeps_every_message() -> None:
    sqs = RecordingSqs([message(1)])
    observer = Observer()
    mapping(sqs, lambda e, c: {"batchItemFailures": [{"itemIdentifier": "elsewhere"}]}, observer).poll_once()
    assert sqs.named("delete_message_batch") == []
    assert observer.seen == [("batch_failed", (1, "InvalidBatchResponse"))]


def test_a_message_received_more_often_than_max_receive_count_goes_to_the_dlq() -> None:
    # moto 5 moves such a message itself; the runtime does it should a moto not.
    sqs = RecordingSqs([message(1, receive_count=6), message(2, receive_count=5)])
    handled: list[str] = []
    observer = Observer()

    def handler(event: dict[str, Any], context: Any) -> None:
        handled.extend(r["messageId"] for r in event["Records"])

    mapping(sqs, handler, observer).poll_once()
    assert handled == ["m2"]  # the fifth receive is still delivered
    (sent,) = sqs.named("send_message")
    assert sent == {
        "QueueUrl": BINDING.dead_letter_queue_url,
        "MessageBody": '{"id": "evt_1"}',
        "MessageGroupId": "cus_1",
        "MessageDeduplicationId": "evt_1",
    }
    assert sqs.named("delete_message") == [{"QueueUrl": BINDING.queue_url, "ReceiptHandle": "rh1"}]
    assert ("moved", ("m1", 6)) in observer.seen


def test_run_reports_dlq_growth_and_survives_errors() -> None:
    import threading

    stop = threading.Event()
    observer = Observer()

    class Flaky(RecordingSqs):
        calls_made = 0

        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            self.calls_made += 1
            if self.calls_made == 1:
                raise ConnectionError("moto restarting")
            stop.set()
            return {}

    mapping(Flaky([], dlq_depth=2), lambda e, c: None, observer).run(stop)
    assert ("poll_failed", "ConnectionError") in observer.seen
    assert ("depth", 2) in observer.seen


def test_pollers_of_one_queue_receive_one_at_a_time_and_only_one_watches_the_dlq() -> None:
    """moto's FIFO ReceiveMessage is not atomic across threads: two at once could take one group."""
    import threading

    receiving = threading.Lock()
    overlaps: list[bool] = []
    inside = threading.Event()

    class Slow(RecordingSqs):
        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            overlaps.append(inside.is_set())
            inside.set()
            threading.Event().wait(0.05)  # long enough for the other poller to try
            inside.clear()
            return super().receive_message(**kwargs)

    sqs = Slow([], dlq_depth=3)
    observers = [Observer(), Observer()]
    pollers = [
        EventSourceMapping(
            sqs,
            BINDING,
            lambda e, c: None,
            lambda: "context",
            observer,
            wait_seconds=0,
            watch_dead_letter_queue=number == 0,
            receiving=receiving,
        )
        for number, observer in enumerate(observers)
    ]
    threads = [
        threading.Thread(target=lambda p=p: [p.poll_once() or p._watch_dead_letter_queue() for _ in range(4)])
        for p in pollers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(overlaps) == 8
    assert not any(overlaps)
    assert ("depth", 3) in observers[0].seen
    assert observers[1].seen == []
