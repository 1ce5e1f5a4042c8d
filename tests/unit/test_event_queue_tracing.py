"""The webhook's SendMessage carries the X-Ray trace header, so the worker's invocation joins the trace."""

from __future__ import annotations

from typing import Any

import pytest

from adapters import event_queue
from domain.ingress import QueueMessage

MESSAGE = QueueMessage(body='{"id":"evt_1"}', group_id="cus_1", deduplication_id="evt_1", by_reference=False)
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((operation, payload))
        return {"MessageId": "m-1"}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> RecordingClient:
    recording = RecordingClient()
    monkeypatch.setattr(event_queue, "queue_client", lambda: recording)
    return recording


def test_with_tracing_on_send_message_carries_the_aws_trace_header(
    client: RecordingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE)

    assert event_queue.enqueue("https://sqs.example/q.fifo", MESSAGE) == "m-1"

    [(operation, payload)] = client.calls
    assert operation == "SendMessage"
    assert payload["MessageSystemAttributes"] == {
        "AWSTraceHeader": {"DataType": "String", "StringValue": TRACE}
    }
    assert payload["MessageGroupId"] == "cus_1"
    assert payload["MessageDeduplicationId"] == "evt_1"


def test_without_a_trace_id_no_system_attribute_is_sent(
    client: RecordingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)

    event_queue.enqueue("https://sqs.example/q.fifo", MESSAGE)

    [(_, payload)] = client.calls
    assert "MessageSystemAttributes" not in payload
