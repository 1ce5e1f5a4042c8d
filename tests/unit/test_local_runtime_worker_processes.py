"""The local runtime's worker runs as Lambda runs it: each concurrent batch in a process of its own.

The worker's module-level Powertools BatchProcessor holds the batch it is processing; two batches run
by threads of one process mix their results (measured before issue 17: ~10 of 400 concurrent batches
answered failures of the other batch, which Lambda's event source mapping refuses). These tests drive
two `WorkerProcess`es at once, as the runtime's two pollers do, with batches that contain failures.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from events.stripe import objects as samples
from local_runtime.event_source import failed_message_ids
from local_runtime.lambda_context import LocalLambdaContext
from local_runtime.worker_processes import WorkerInvocationFailed, WorkerProcess, WorkerStartFailed

BATCHES_PER_POLLER = 60
WORKER = "handlers.worker.lambda_handler"


def record(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": "g"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events.fifo",
        "awsRegion": "us-east-1",
    }


def batch(tag: str, number: int) -> tuple[dict[str, Any], set[str]]:
    """Ten messages: every third one unreadable (it fails: no dead-letter queue is configured), the
    others events about an object the worker does not track (applied as ignored, no AWS call)."""
    records, failing = [], set()
    for index in range(10):
        message_id = f"{tag}-{number}-{index}"
        if index % 3 == 0:
            records.append(record(message_id, "{not json"))
            failing.add(message_id)
        else:
            meter = {"object": "billing.meter", "id": "mtr_1"}
            event = samples.event(
                samples.IdFactory(0),
                "billing.meter.created",
                meter,
                created=1_767_000_000,
                id=f"evt_{tag}{number}x{index}",
            )
            records.append(record(message_id, json.dumps(event)))
    return {"Records": records}, failing


@pytest.fixture
def worker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the spawned children inherit: a table name (never reached by these events), no queues.
    monkeypatch.setenv("TABLE_NAME", "not-reached")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for name in (
        "QUEUE_URL",
        "DEAD_LETTER_QUEUE_URL",
        "STRIPE_API_KEY",
        "STRIPE_SECRET_ID",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def workers(worker_environment: None) -> Iterator[tuple[list[WorkerProcess], list[str]]]:
    lines: list[str] = []
    lock = threading.Lock()

    def keep(line: str) -> None:
        with lock:
            lines.append(line)

    started = [WorkerProcess(WORKER, on_log=keep, timeout_seconds=120) for _ in range(2)]
    for worker in started:
        worker.start()
    yield started, lines
    for worker in started:
        worker.stop()


def test_concurrent_batches_with_failures_each_get_only_their_own_failures(
    workers: tuple[list[WorkerProcess], list[str]],
) -> None:
    processes, lines = workers
    assert len({worker.pid for worker in processes}) == 2, "an environment (process) per poller"
    wrong: list[str] = []

    def poll(worker: WorkerProcess, tag: str) -> None:
        for number in range(BATCHES_PER_POLLER):
            event, failing = batch(tag, number)
            ids = [r["messageId"] for r in event["Records"]]
            context = LocalLambdaContext("worker", 512, 120)
            # The event source mapping's own check: a failure naming another batch's message fails it.
            failed = failed_message_ids(worker(event, context), ids)
            if failed != failing:
                wrong.append(f"{tag}-{number}: {sorted(failed ^ failing)}")

    pollers = [threading.Thread(target=poll, args=(w, tag)) for w, tag in zip(processes, "ab", strict=True)]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join()

    assert wrong == []
    # The handler's log lines come back to the runtime's console, from both environments.
    failures = [json.loads(line) for line in lines if '"message body is not JSON"' in line]
    assert len(failures) == 2 * BATCHES_PER_POLLER * 4
    assert {f["message_id"][0] for f in failures} == {"a", "b"}


def test_a_handler_that_cannot_be_imported_fails_the_start_with_the_reason(worker_environment: None) -> None:
    worker = WorkerProcess("handlers.no_such_module.lambda_handler", on_log=print, timeout_seconds=5)
    with pytest.raises(WorkerStartFailed, match=r"cannot load handlers\.no_such_module\.lambda_handler"):
        worker.start()


def echo_or_end(event: Any, context: Any) -> dict[str, Any]:
    """A handler for the tests below (the child imports it from this module)."""
    if event == "end":
        os._exit(3)  # the environment dies, as on an out-of-memory kill
    if event == "hang":
        time.sleep(60)
    return {"echo": event, "pid": os.getpid()}


HANDLER = f"{__name__}.echo_or_end"


def test_an_environment_that_dies_fails_its_batch_and_a_fresh_one_takes_the_next(
    worker_environment: None,
) -> None:
    worker = WorkerProcess(HANDLER, on_log=print, timeout_seconds=120)
    worker.start()
    try:
        first = worker("hello", None)
        with pytest.raises(WorkerInvocationFailed, match=r"process ended \(exit code 3\)"):
            worker("end", None)
        second = worker("again", None)
    finally:
        worker.stop()
    assert first["echo"] == "hello"
    assert second["echo"] == "again"
    assert second["pid"] != first["pid"], "a new execution environment"


def test_an_invocation_past_the_timeout_fails_its_batch_and_the_environment_is_replaced(
    worker_environment: None,
) -> None:
    worker = WorkerProcess(HANDLER, on_log=print, timeout_seconds=0)  # killed after the grace period
    worker.start()
    try:
        stuck = worker.pid
        with pytest.raises(WorkerInvocationFailed, match="took longer than"):
            worker("hang", None)
        answer = worker("after", None)
    finally:
        worker.stop()
    assert answer["echo"] == "after"
    assert answer["pid"] != stuck
