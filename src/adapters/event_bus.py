"""The stack's event bus and the publisher's dead-letter queue, named by the caller (the publisher's
settings: EVENT_BUS_NAME, DEAD_LETTER_QUEUE_URL).

PutEvents and SendMessage go through adapters.aws_json, as the webhook's calls do: the publisher's
package needs neither boto3 nor Powertools. PutEvents answers 200 with per-entry failures
(`FailedEntryCount`, an `ErrorCode` per entry): `publish` returns the entries that failed, so the caller
retries only those.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from adapters.aws_json import EVENTBRIDGE, SQS, AwsCallFailed, AwsJsonClient
from domain.entitlement_events import SOURCE, ChangeEntry

__all__ = ["PUT_EVENTS_MAX_ENTRIES", "AwsCallFailed", "park", "park_record", "publish"]

# PutEvents takes at most 10 entries per call.
PUT_EVENTS_MAX_ENTRIES = 10
# Nothing waits on this function but the stream: room for a slow answer.
CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 5


@functools.cache
def events_client() -> AwsJsonClient:
    return EVENTBRIDGE.client(connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS)


@functools.cache
def sqs_client() -> AwsJsonClient:
    return SQS.client(connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS)


def put_events_entry(bus_name: str, entry: ChangeEntry) -> dict[str, Any]:
    return {
        "EventBusName": bus_name,
        "Source": SOURCE,
        "DetailType": entry.detail_type,
        "Detail": entry.detail_text(),
    }


def publish(bus_name: str, entries: Sequence[ChangeEntry]) -> dict[int, str]:
    """Put up to PUT_EVENTS_MAX_ENTRIES entries; the ones EventBridge refused (index -> its error).
    Raises AwsCallFailed when the call itself failed (then none is known to be published)."""
    if not entries:
        return {}
    if len(entries) > PUT_EVENTS_MAX_ENTRIES:
        raise ValueError(f"PutEvents takes at most {PUT_EVENTS_MAX_ENTRIES} entries")
    answer = events_client().call("PutEvents", {"Entries": [put_events_entry(bus_name, e) for e in entries]})
    if not answer.get("FailedEntryCount"):
        return {}
    results = answer.get("Entries")
    if not isinstance(results, list) or len(results) != len(entries):
        # Cannot tell which landed: all are retried (a consumer drops a duplicate by its version).
        return dict.fromkeys(range(len(entries)), "PutEvents answered without one result per entry")
    return {
        index: f"{result.get('ErrorCode')}: {result.get('ErrorMessage') or ''}".rstrip(": ")
        for index, result in enumerate(results)
        if isinstance(result, dict) and result.get("ErrorCode")
    }


def park(queue_url: str, bus_name: str, entry: ChangeEntry, reason: str) -> None:
    """Keep an entry that could not be published, whole, in the dead-letter queue: the message is the
    PutEvents entry itself (`aws events put-events --entries` republishes it) and the reason."""
    body = {"entry": put_events_entry(bus_name, entry), "reason": reason}
    sqs_client().call("SendMessage", {"QueueUrl": queue_url, "MessageBody": json.dumps(body)})


def park_record(queue_url: str, record: dict[str, Any], reason: str) -> None:
    """Keep a stream record that could not be read, whole, in the dead-letter queue with the reason."""
    body = {"stream_record": record, "reason": reason}
    sqs_client().call("SendMessage", {"QueueUrl": queue_url, "MessageBody": json.dumps(body, default=str)})
