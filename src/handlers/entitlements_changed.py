"""Publisher Lambda: "entitlements changed" events from the table's stream to the stack's event bus.

Fed by a DynamoDB Streams event source mapping filtered to the entitlements items (sk ENTITLEMENTS:
CUSTOMER#… and USER#…), so the worker's per-event work does not grow: the stream is written by
DynamoDB itself. domain.entitlement_events decides what to publish (nothing when what a backend reads
is unchanged); this module puts the entries, at most 10 per PutEvents call, in stream order.

Never lost: an entry EventBridge refuses is retried (PUBLISH_ATTEMPTS), then kept whole in the
publisher's dead-letter queue (EntitlementsChangesDeadLetterQueue, alarmed), as is a stream record that
cannot be read. When even that fails, the handler reports the record as its first batch item failure:
Lambda retries from it (records before it are done), and after the mapping's MaximumRetryAttempts sends
the batch's description to the same queue (its OnFailure destination) while the stream keeps the records
for 24 hours. A retried batch may publish a change twice: EventBridge delivers at least once anyway, and
a consumer drops a copy whose `version` it has already seen.

Logging: one JSON line per published change with its detail (what `make run` shows), one per parked
one; metrics in CloudWatch's embedded metric format, as the webhook writes them.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any

from adapters import SettingsError, required
from adapters.event_bus import PUT_EVENTS_MAX_ENTRIES, AwsCallFailed, park, park_record, publish
from domain.entitlement_events import ChangeEntry, MalformedStreamRecord, change_entry
from handlers import emit

SERVICE = "stripe-sync-publisher"
PUBLISH_ATTEMPTS = 3
RETRY_DELAY_SECONDS = 0.2  # then 0.4: PutEvents refusals are throttling or an internal failure


class NotConfigured(RuntimeError):
    """EVENT_BUS_NAME or DEAD_LETTER_QUEUE_URL is not set: the batch fails and is retried."""


@dataclass(frozen=True, slots=True)
class PublisherSettings:
    bus: str  # EVENT_BUS_NAME
    dead_letters: str  # DEAD_LETTER_QUEUE_URL: the publisher's own


@functools.cache
def settings() -> PublisherSettings:
    """Parsed once per container; SettingsError (not cached) while a name is not set."""
    return PublisherSettings(
        bus=required(os.environ, "EVENT_BUS_NAME"), dead_letters=required(os.environ, "DEAD_LETTER_QUEUE_URL")
    )


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        config = settings()
    except SettingsError as error:
        raise NotConfigured(f"EVENT_BUS_NAME and DEAD_LETTER_QUEUE_URL must be set ({error})") from error
    bus, dead_letters = config.bus, config.dead_letters
    pending: list[tuple[str, ChangeEntry]] = []
    for record in event.get("Records") or []:
        sequence = str(record.get("dynamodb", {}).get("SequenceNumber", ""))
        try:
            entry = change_entry(record)
        except MalformedStreamRecord as error:
            if not _park_record(dead_letters, record, str(error)):
                return _retry_from(sequence)
            continue
        if entry is not None:
            pending.append((sequence, entry))
    for start in range(0, len(pending), PUT_EVENTS_MAX_ENTRIES):
        chunk = pending[start : start + PUT_EVENTS_MAX_ENTRIES]
        failed = _publish(bus, [entry for _, entry in chunk])
        for index, (_, entry) in enumerate(chunk):
            if index not in failed:
                _log(
                    "INFO", "entitlements changed published", entry, metrics=("EntitlementsChangesPublished",)
                )
        for index, (sequence, entry) in enumerate(chunk):
            if index not in failed:
                continue
            try:
                park(dead_letters, bus, entry, failed[index])
            except AwsCallFailed as error:
                _log("ERROR", "entitlements changed not parked", entry, error=str(error))
                return _retry_from(sequence)
            _log(
                "ERROR",
                "entitlements changed parked",
                entry,
                reason=failed[index],
                metrics=("EntitlementsChangesParked",),
            )
    return {"batchItemFailures": []}


def _publish(bus: str, entries: list[ChangeEntry]) -> dict[int, str]:
    """The entries (by index) still refused after PUBLISH_ATTEMPTS, each with its last reason."""
    failed: dict[int, str] = {}
    remaining = list(range(len(entries)))
    for attempt in range(PUBLISH_ATTEMPTS):
        try:
            refused = publish(bus, [entries[index] for index in remaining])
        except AwsCallFailed as error:
            refused = dict.fromkeys(range(len(remaining)), str(error))
        failed = {remaining[position]: reason for position, reason in refused.items()}
        remaining = sorted(failed)
        if not remaining:
            break
        if attempt + 1 < PUBLISH_ATTEMPTS:
            time.sleep(RETRY_DELAY_SECONDS * 2**attempt)
    return failed


def _park_record(dead_letters: str, record: dict[str, Any], reason: str) -> bool:
    try:
        park_record(dead_letters, record, reason)
    except AwsCallFailed as error:
        _log("ERROR", "stream record not parked", None, reason=reason, error=str(error))
        return False
    _log("ERROR", "stream record parked", None, reason=reason, metrics=("EntitlementsChangesParked",))
    return True


def _retry_from(sequence: str) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": sequence}]}


def _log(
    level: str, message: str, entry: ChangeEntry | None, *, metrics: tuple[str, ...] = (), **fields: Any
) -> None:
    if entry is not None:
        fields.update(detail_type=entry.detail_type, item=entry.resource_key, detail=entry.detail)
    emit(level, message, service=SERVICE, metrics=metrics, **fields)
