"""What a DynamoDB Streams event source mapping does, on one machine: the table's stream to a handler.

Reads every shard of the table's stream (moto's, through the dynamodbstreams API), keeps the records
the mapping's FilterCriteria let through (`matches`, the subset of EventBridge patterns the template
uses: nested keys and lists of exact values), and invokes the handler with batches of them in stream
order. A response naming a batch item failure retries from that record on the next poll, as Lambda
does; after the mapping's MaximumRetryAttempts the rest of that batch is given up, as Lambda sends it
to the OnFailure destination, and the console says so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

POLL_SECONDS = 0.25


def matches(pattern: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether `record` matches an event filter pattern of nested keys and lists of exact values."""
    for key, expected in pattern.items():
        value = record.get(key) if isinstance(record, Mapping) else None
        if isinstance(expected, Mapping):
            if not isinstance(value, Mapping) or not matches(expected, value):
                return False
        elif isinstance(expected, list):
            if value not in expected:
                return False
        else:
            return False
    return True


class StreamObserver(Protocol):
    def stream_batch_failed(self, size: int, error: BaseException) -> None: ...

    def stream_batch_given_up(self, size: int, attempts: int) -> None: ...


class TableStreamMapping:
    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        handler: Callable[[dict[str, Any], Any], Any],
        context: Callable[[], Any],
        observer: StreamObserver,
        *,
        filters: Sequence[Mapping[str, Any]],
        batch_size: int,
        max_retry_attempts: int,
    ) -> None:
        self._streams = streams
        self._arn = stream_arn
        self._handler = handler
        self._context = context
        self._observer = observer
        self._filters = tuple(filters)
        self._batch_size = batch_size
        self._max_retry_attempts = max_retry_attempts
        self._iterators: dict[str, str | None] = {}
        self._pending: list[dict[str, Any]] = []
        self._failures = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception as error:  # moto going away on shutdown, a handler bug: keep polling
                self._observer.stream_batch_failed(len(self._pending), error)
            stop.wait(POLL_SECONDS)

    def poll_once(self) -> int:
        """Read what the stream has, invoke the handler with what passes the filters; the records
        handed over (successfully or not) this time."""
        self._pending += [record for record in self.read() if self._passes(record)]
        handed = 0
        while self._pending:
            batch = self._pending[: self._batch_size]
            handed += len(batch)
            failed_at = self._invoke(batch)
            if failed_at is None:
                self._pending = self._pending[len(batch) :]
                self._failures = 0
                continue
            self._failures += 1
            if self._failures > self._max_retry_attempts:
                self._observer.stream_batch_given_up(len(batch) - failed_at, self._failures)
                self._pending = self._pending[len(batch) :]
                self._failures = 0
                continue
            self._pending = self._pending[failed_at:]
            break  # retried on the next poll, from the record that failed
        return handed

    def read(self) -> list[dict[str, Any]]:
        """Every record written since the last read, from every shard (TRIM_HORIZON at first)."""
        shards = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"].get("Shards", [])
        records: list[dict[str, Any]] = []
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            iterator = self._iterators[shard_id]
            if iterator is None:
                continue
            answer = self._streams.get_records(ShardIterator=iterator)
            records += answer.get("Records", [])
            self._iterators[shard_id] = answer.get("NextShardIterator")
        return records

    def _passes(self, record: Mapping[str, Any]) -> bool:
        return not self._filters or any(matches(pattern, record) for pattern in self._filters)

    def _invoke(self, batch: list[dict[str, Any]]) -> int | None:
        """None when the whole batch is done, else the index to retry from."""
        try:
            response = self._handler({"Records": batch}, self._context())
        except Exception as error:
            self._observer.stream_batch_failed(len(batch), error)
            return 0
        failures = response.get("batchItemFailures") if isinstance(response, Mapping) else None
        if not failures:
            return None
        sequences = [str(record.get("dynamodb", {}).get("SequenceNumber")) for record in batch]
        named = {str(failure.get("itemIdentifier")) for failure in failures if isinstance(failure, Mapping)}
        return min((sequences.index(s) for s in named if s in sequences), default=0)
