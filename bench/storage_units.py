"""DynamoDB units over the documented sequences: every scenario of events.scenarios, in order, applied
as the worker applies them (a dispute that arrives before its payment retried as SQS would). Target:
<= 3 write units per applied event, and no entitlements item write beyond an access change.

Also measured here for bench/cost.py: the worker's CPU outside the DynamoDB calls and its log bytes,
and the webhook handler's CPU and log bytes per signed request (SQS answered by a botocore hook).
Units are counted from the items with DynamoDB's size rules (bench/_dynamodb_units.py): moto does not
return ConsumedCapacity.
"""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import Any

from bench._prices import LOG_EVENT_OVERHEAD_BYTES
from bench._storage_table import T0, environment, table


@dataclass
class Sequences:
    deliveries: int
    outcomes: Counter[str]
    requests: Counter[str]
    read_units: float
    write_units: float
    entitlements_puts: int  # customers' entitlements items written
    user_entitlements_puts: int  # users' entitlements items (USER#<id>, the same sort key)
    access_changes: int
    worker_cpu: float  # seconds in all, outside DynamoDB calls
    worker_log_bytes: int  # the worker's log line per event, as CloudWatch Logs counts it
    webhook_cpu: float  # seconds per event, the whole handler with SQS answered locally
    webhook_log_bytes: float  # per event
    message_bytes: list[int]


def documented_scenarios() -> list[Any]:
    from events.scenarios import SCENARIOS, ScenarioParams, build

    return [
        build(name, ScenarioParams(customer_id=f"cus_Cost{i:03d}", user_id=f"user_cost{i:03d}"))
        for i, name in enumerate(sorted(SCENARIOS))
    ]


@contextmanager
def captured(logger_name: str) -> Iterator[io.StringIO]:
    """The lines a Powertools logger writes, as the Lambda runtime would send them to CloudWatch."""
    buffer = io.StringIO()
    handlers = logging.getLogger(logger_name).handlers
    streams = [h.setStream(buffer) for h in handlers if isinstance(h, logging.StreamHandler)]  # type: ignore[func-returns-value]
    try:
        yield buffer
    finally:
        for handler, stream in zip(
            [h for h in handlers if isinstance(h, logging.StreamHandler)], streams, strict=True
        ):
            handler.setStream(stream)


def log_bytes(text: str) -> int:
    lines = text.splitlines()
    return len(text.encode()) + LOG_EVENT_OVERHEAD_BYTES * len(lines)


def sequences() -> Sequences:
    from adapters import sync_table
    from domain.entitlements import EntitlementRules
    from domain.sync import EventApplier, RetryLater
    from events.scenarios import render
    from handlers import worker

    scenarios = documented_scenarios()
    outcomes: Counter[str] = Counter()
    changes = 0
    cpu = 0.0
    # Powertools prints a metric's values once it holds 100 (stdout), not a log line of this stretch.
    with table() as meter, captured(worker.logger.name) as logs, redirect_stdout(io.StringIO()):
        applier = EventApplier(sync_table.DynamoCustomerStore(), EntitlementRules(), clock=lambda: T0)
        mark = meter.units.snapshot()
        for scenario in scenarios:
            pending = list(scenario.events)
            for _ in range(5):  # a dispute before its payment comes back, as SQS retries it
                retry = []
                for event in pending:
                    started, calls = time.process_time(), meter.call_seconds
                    try:
                        result = applier.apply(event)
                    except RetryLater:
                        retry.append(event)
                        continue
                    finally:
                        cpu += time.process_time() - started - (meter.call_seconds - calls)
                    worker.report(result)
                    outcomes[str(result.outcome)] += 1
                    changes += result.entitlements_changed
                pending = retry
        requests, reads, writes = meter.units.since(mark)
        entitlement_puts = meter.units.puts_by_item[("CUSTOMER", "ENTITLEMENTS")]
        user_puts = meter.units.puts_by_item[("USER", "ENTITLEMENTS")]
        worker_logs = log_bytes(logs.getvalue())
        worker.metrics.clear_metrics()  # no invocation flushes them here (bench.cost measures those)
    messages = [len(render(event)) for scenario in scenarios for event in scenario.events]
    webhook_cpu, webhook_logs = webhook_measured(scenarios)
    return (
        Sequences(
            deliveries=sum(outcomes.values()),
            outcomes=outcomes,
            requests=Counter(meter.units.requests),
            read_units=reads,
            write_units=writes,
            entitlements_puts=entitlement_puts,
            user_entitlements_puts=user_puts,
            access_changes=changes,
            worker_cpu=cpu,
            worker_log_bytes=worker_logs,
            webhook_cpu=webhook_cpu,
            webhook_log_bytes=webhook_logs,
            message_bytes=messages,
        )
        if requests
        else _empty()
    )


def _empty() -> Sequences:
    raise RuntimeError("the sequences made no DynamoDB request")


class _SqsAccepts:
    """The webhook's SQS transport in this benchmark: every SendMessage is stored at once."""

    def send(self, request: Any) -> Any:
        from adapters.aws_json import HttpResponse

        return HttpResponse(200, {}, b'{"MessageId":"bench","MD5OfMessageBody":"-"}')


def webhook_measured(scenarios: list[Any]) -> tuple[float, float]:
    """CPU and log bytes per event of the webhook handler, each event signed and wrapped as API Gateway
    delivers it (events.lambda_events), SQS answered by a local transport."""
    from bench.webhook import SECRET, _bench_environment
    from events.lambda_events import webhook_event
    from events.scenarios import render

    bodies = [render(event) for scenario in scenarios for event in scenario.events]
    with _bench_environment():
        from adapters.event_queue import queue_client
        from handlers import webhook

        queue_client().transport = _SqsAccepts()
        requests = [webhook_event(body, SECRET) for body in bodies]
        buffer = io.StringIO()
        try:
            with redirect_stdout(buffer):
                started = time.process_time()
                for request in requests:
                    assert webhook.lambda_handler(request, None)["statusCode"] == 200
                cpu = time.process_time() - started
        finally:
            queue_client.cache_clear()  # the stubbed client stays out of later benches
    return cpu / len(requests), log_bytes(buffer.getvalue()) / len(requests)


def run() -> None:
    environment()
    seq = sequences()
    applied = seq.outcomes["applied"]
    print(f"documented sequences: {seq.deliveries} events, outcomes {dict(seq.outcomes)}")
    print(f"    DynamoDB requests          {dict(seq.requests)}")
    print(f"    read units per event       {seq.read_units / seq.deliveries:.2f}")
    per_applied = seq.write_units / max(applied, 1)
    print(
        f"    write units per applied    {per_applied:.2f}   (target <= 3: {'met' if per_applied <= 3 else 'MISSED'})"
    )
    extra = seq.entitlements_puts - seq.access_changes
    print(
        f"    entitlements item writes   {seq.entitlements_puts} for {seq.access_changes} access changes "
        f"(extra: {extra}; target 0: {'met' if extra <= 0 else 'MISSED'})"
    )
    print(f"    user entitlements writes   {seq.user_entitlements_puts} (a customer's change, for its user)")
