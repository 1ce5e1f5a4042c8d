"""Each function of the local runtime gets its own template environment, as each Lambda function does.

The worker runs in child processes and gets exactly its own; the other functions share the runtime's
process, so two of them setting one name to different values is refused at start-up instead of one
silently reading the other's (the worker once parked events in the publisher's dead-letter queue).
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterator
from unittest import mock

import pytest

from local_runtime.config import RuntimeConfig
from local_runtime.resources import LocalResources
from local_runtime.runtime import LocalRuntime, StartupError
from local_runtime.template import LocalStack, read_template

STACK = read_template()


@pytest.fixture(autouse=True)
def restored_environment() -> Iterator[None]:
    """The runtime writes os.environ (its in-process functions read it): undone after each test."""
    with mock.patch.dict(os.environ):
        yield


def resources(stack: LocalStack) -> LocalResources:
    assert stack.publisher is not None
    publisher_dlq = stack.publisher.dead_letter_queue.logical_id
    return LocalResources(
        table_name="local-table",
        queue_url="http://aws.local/events.fifo",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:events.fifo",
        dead_letter_queue_url="http://aws.local/events-dlq.fifo",
        dead_letter_queue_arn="arn:aws:sqs:us-east-1:123456789012:events-dlq.fifo",
        batch_size=10,
        max_receive_count=12,
        visibility_timeout=1,
        others={
            (publisher_dlq, None): "http://aws.local/entitlements-changes-dlq",
            (stack.publisher.bus_logical_id, None): "local-bus",
        },
    )


def environments(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, str]]:
    for name in ("DEAD_LETTER_QUEUE_URL", "EVENT_BUS_NAME", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    runtime = LocalRuntime(RuntimeConfig(), stack, io.StringIO())
    runtime._function_environments(resources(stack))
    return runtime._environments


def test_the_worker_and_the_publisher_each_get_their_own_dead_letter_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert STACK.publisher is not None
    found = environments(STACK, monkeypatch)
    assert found[STACK.worker.logical_id]["DEAD_LETTER_QUEUE_URL"] == "http://aws.local/events-dlq.fifo"
    publisher = found[STACK.publisher.function.logical_id]
    assert publisher["DEAD_LETTER_QUEUE_URL"] == "http://aws.local/entitlements-changes-dlq"
    assert publisher["EVENT_BUS_NAME"] == "local-bus"
    # The in-process functions read os.environ: the publisher's value, not the worker's.
    assert os.environ["DEAD_LETTER_QUEUE_URL"] == "http://aws.local/entitlements-changes-dlq"


def test_a_plain_value_from_the_users_environment_wins_over_the_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = environments(STACK, monkeypatch)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    runtime = LocalRuntime(RuntimeConfig(), STACK, io.StringIO())
    runtime._function_environments(resources(STACK))
    assert "LOG_LEVEL" in found[STACK.worker.logical_id]  # the template sets it
    assert runtime._environments[STACK.worker.logical_id]["LOG_LEVEL"] == "DEBUG"


def test_two_in_process_functions_that_disagree_on_a_name_stop_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert STACK.eventbridge is not None
    clashing = dataclasses.replace(
        STACK.eventbridge, environment={**STACK.eventbridge.environment, "EVENT_BUS_NAME": "another-bus"}
    )
    with pytest.raises(StartupError, match="EVENT_BUS_NAME"):
        environments(dataclasses.replace(STACK, eventbridge=clashing), monkeypatch)
