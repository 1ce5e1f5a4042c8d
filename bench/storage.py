"""Storage benchmark: what an event costs in DynamoDB, whatever the customer's history, and in dollars.

(a) Scale: customers with 1, 100 and 1,000 prior settled invoices and 1, 100 and 1,000 prior lifetime
    purchases (all applied through the worker), then the same renewal (subscription updated, invoice
    created/finalized/paid, payment succeeded) and a new purchase: DynamoDB requests, read units,
    write units and worker CPU per event (CPU outside the DynamoDB calls, which moto serves in this
    process). Target: the 1,000 figures within 1.5x of the 1 figures.
(b) Units over the documented sequences (every scenario of events.scenarios, in order, through
    the worker's Lambda handler). Target: <= 3 write units per applied event.
(c) Cost per million webhook events in us-east-1, term by term, from (b)'s measured requests, item
    and message sizes, log bytes and CPU, and template.yaml's memory and batch size. Target: <= $4
    without tracing.

Units are counted from the items with DynamoDB's size rules (bench/_dynamodb_units.py): moto does not
return ConsumedCapacity.
"""

from __future__ import annotations

import io
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import Any

from bench._dynamodb_units import UnitMeter

T0 = 1_767_225_600
DAY = 86_400
HISTORIES = (1, 100, 1000)

# Prices, us-east-1, on-demand / request pricing, as listed on the AWS pricing pages on 2026-12-01
# (DynamoDB's since its on-demand price cut of 2024-11-01). Units: dollars.
PRICES_DATE = "2026-12-01"
HTTP_API_PER_REQUEST = 1.00 / 1e6  # first 300 M requests a month, metered per 512 KB
LAMBDA_PER_REQUEST = 0.20 / 1e6
LAMBDA_PER_GB_SECOND = {"arm64": 0.0000133334, "x86_64": 0.0000166667}
SQS_FIFO_PER_REQUEST = 0.50 / 1e6  # per 64 KB chunk of a request's payload
DYNAMODB_PER_WRITE_UNIT = 0.625 / 1e6
DYNAMODB_PER_READ_UNIT = 0.125 / 1e6
SECRETS_MANAGER_PER_CALL = 0.05 / 10_000
LOGS_PER_GB = 0.50  # standard class, ingestion
XRAY_PER_TRACE = 5.00 / 1e6  # traces recorded
# Not measurable here; stated assumptions.
DYNAMODB_ROUND_TRIP_S = 0.004  # one DynamoDB request from Lambda in-region (single-digit ms)
SQS_ROUND_TRIP_S = 0.008
LAMBDA_REPORT_LOG_BYTES = 350  # START, END, REPORT lines per invocation
LOG_EVENT_OVERHEAD = 26  # CloudWatch Logs counts 26 bytes per log event
SECRET_CACHE_SECONDS = 300  # Powertools parameters' cache in the functions
STEADY_EVENTS_PER_SECOND = 10  # for the few terms that are per container-time, not per event
XRAY_SAMPLING = 0.05  # the default rule beyond the first request each second
SQS_CHUNK = 64 * 1024


@dataclass
class Meter:
    units: UnitMeter
    call_seconds: float = 0.0
    _started: float = 0.0

    def attach(self, client: Any) -> None:
        self.units.attach(client)
        client.meta.events.register("before-call.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    def _before(self, **_: Any) -> None:
        self._started = time.process_time()

    def _after(self, **_: Any) -> None:
        self.call_seconds += time.process_time() - self._started


def _environment() -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        TABLE_NAME="bench-storage",
        POWERTOOLS_METRICS_NAMESPACE="StripeSync",
    )
    for name in ("STRIPE_API_KEY", "STRIPE_SECRET_ID", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)


def _models() -> list[Any]:
    from adapters import table_items

    found, pending = [], [table_items.SyncItem]
    while pending:
        model = pending.pop()
        found.append(model)
        pending += model.__subclasses__()
    return found


@contextmanager
def _table() -> Iterator[Meter]:
    import boto3
    from moto import mock_aws

    from harness.sync_table_fixture import create_sync_table

    with mock_aws():
        create_sync_table(boto3.client("dynamodb"), os.environ["TABLE_NAME"])
        meter = Meter(UnitMeter())
        for model in _models():
            model._connection = None
            meter.attach(model._get_connection().connection.client)
        yield meter


# -- (a) scale ------------------------------------------------------------------------------------


def _history_events(customer: str, count: int) -> list[dict[str, Any]]:
    from events.stripe import objects as s

    price = s.PriceSpec("price_pro", "prod_pro")
    events = []
    for n in range(count):
        t = T0 - (count - n) * 30 * DAY
        ids = s.IdFactory(f"{customer}-inv-{n}")
        obj = s.invoice(
            ids,
            customer=customer,
            subscription=f"sub_{customer}",
            items=[s.ItemSpec(price)],
            status="paid",
            billing_reason="subscription_cycle",
            created=t,
            period_start=t,
            period_end=t + 30 * DAY,
        )
        events.append(s.event(ids, "invoice.paid", obj, created=t + 3600))
        events.append(_purchase(customer, f"h{n}", t + 7200))
    return events


def _purchase(customer: str, tag: str, t: int) -> dict[str, Any]:
    from events.stripe import objects as s

    ids = s.IdFactory(f"{customer}-cs-{tag}")
    session = s.checkout_session(
        ids,
        mode="payment",
        status="complete",
        payment_status="paid",
        customer=customer,
        payment_intent=ids("pi"),
        amount_total=500,
        metadata={"product_id": "prod_lifetime"},
        created=t,
    )
    return s.event(ids, "checkout.session.completed", session, created=t)


def _renewal_events(customer: str) -> list[dict[str, Any]]:
    from events.stripe import objects as s

    price = s.PriceSpec("price_pro", "prod_pro")
    t = T0 + 10 * DAY
    events = []
    for step, status in enumerate(["active", "active"]):
        ids = s.IdFactory(f"{customer}-sub-{step}")
        obj = s.subscription(
            ids,
            id=f"sub_{customer}",
            customer=customer,
            items=[s.ItemSpec(price)],
            status=status,  # type: ignore[arg-type]
            created=T0 - 3000 * DAY,
            period_start=t + step * 30 * DAY,
            period_end=t + (step + 1) * 30 * DAY,
        )
        events.append(s.event(ids, "customer.subscription.updated", obj, created=t + step * 30 * DAY))
    renewal = t + 30 * DAY
    ids = s.IdFactory(f"{customer}-renewal")
    for offset, (kind, status) in enumerate(
        [("invoice.created", "draft"), ("invoice.finalized", "open"), ("invoice.paid", "paid")]
    ):
        obj = s.invoice(
            ids,
            id=f"in_{customer}_renewal",
            customer=customer,
            subscription=f"sub_{customer}",
            items=[s.ItemSpec(price)],
            status=status,  # type: ignore[arg-type]
            billing_reason="subscription_cycle",
            created=renewal,
            period_start=renewal,
            period_end=renewal + 30 * DAY,
        )
        events.append(
            s.event(s.IdFactory(f"{customer}-renewal-{offset}"), kind, obj, created=renewal + 60 * offset)
        )
    events.append(_purchase(customer, "new", renewal + 600))
    return events


def _scale() -> dict[int, tuple[float, float, float, float]]:
    from adapters import sync_table
    from domain.entitlements import EntitlementRules
    from domain.sync import EventApplier

    figures = {}
    with _table() as meter:
        applier = EventApplier(
            sync_table.DynamoCustomerStore(), EntitlementRules(), clock=lambda: T0 + 100 * DAY
        )
        for count in HISTORIES:
            customer = f"cus_Scale{count:04d}"
            for event in _history_events(customer, count):
                applier.apply(event)
            events = _renewal_events(customer)
            mark, calls = meter.units.snapshot(), meter.call_seconds
            started = time.process_time()
            for event in events:
                applier.apply(event)
            cpu = time.process_time() - started - (meter.call_seconds - calls)
            requests, reads, writes = meter.units.since(mark)
            n = len(events)
            figures[count] = (requests / n, reads / n, writes / n, cpu / n)
    return figures


# -- (b) units over the documented sequences -------------------------------------------------------


@dataclass
class Sequences:
    deliveries: int
    outcomes: Counter[str]
    requests: Counter[str]
    read_units: float
    write_units: float
    entitlements_puts: int
    access_changes: int
    worker_cpu: float  # seconds in all, outside DynamoDB calls
    worker_log_bytes: int  # the worker's log line per event, as CloudWatch Logs counts it
    webhook_cpu: float  # seconds per event, the whole handler with SQS answered locally
    webhook_log_bytes: float  # per event
    message_bytes: list[int]


def _scenarios() -> list[Any]:
    from events.scenarios import SCENARIOS, ScenarioParams, build

    return [
        build(name, ScenarioParams(customer_id=f"cus_Cost{i:03d}", user_id=f"user_cost{i:03d}"))
        for i, name in enumerate(sorted(SCENARIOS))
    ]


@contextmanager
def _captured(logger_name: str) -> Iterator[io.StringIO]:
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


def _log_bytes(text: str) -> int:
    lines = text.splitlines()
    return len(text.encode()) + LOG_EVENT_OVERHEAD * len(lines)


def _sequences() -> Sequences:
    from adapters import sync_table
    from domain.entitlements import EntitlementRules
    from domain.sync import EventApplier, RetryLater
    from events.scenarios import render
    from handlers import worker

    scenarios = _scenarios()
    outcomes: Counter[str] = Counter()
    changes = 0
    cpu = 0.0
    with _table() as meter, _captured(worker.logger.name) as logs:
        applier = EventApplier(sync_table.DynamoCustomerStore(), EntitlementRules(), clock=lambda: T0)
        mark = meter.units.snapshot()
        puts_before = meter.units.written_bytes.copy()
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
        entitlement_puts = meter.units.puts["ENTITLEMENTS"] - 0
        del puts_before
        worker_logs = _log_bytes(logs.getvalue())
    messages = [len(render(event)) for scenario in scenarios for event in scenario.events]
    webhook_cpu, webhook_logs = _webhook(scenarios)
    return (
        Sequences(
            deliveries=sum(outcomes.values()),
            outcomes=outcomes,
            requests=Counter(meter.units.requests),
            read_units=reads,
            write_units=writes,
            entitlements_puts=entitlement_puts,
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


def _webhook(scenarios: list[Any]) -> tuple[float, float]:
    """CPU and log bytes per event of the webhook handler, SQS answered by a botocore hook."""
    import stripe

    from bench.webhook import SECRET, _bench_environment, _http_event, _sqs_accepts
    from events.scenarios import render

    bodies = [render(event).decode() for scenario in scenarios for event in scenario.events]
    with _bench_environment():
        from adapters.event_queue import sqs_client
        from handlers import webhook

        client = sqs_client()
        client.meta.events.register("before-call.sqs.SendMessage", _sqs_accepts)
        requests = [
            _http_event(body, stripe.WebhookSignature.generate_signature_header(body, SECRET))
            for body in bodies
        ]
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            started = time.process_time()
            for request in requests:
                assert webhook.lambda_handler(request, None)["statusCode"] == 200
            cpu = time.process_time() - started
        sqs_client.cache_clear()
    return cpu / len(requests), _log_bytes(buffer.getvalue()) / len(requests)


# -- (c) cost ---------------------------------------------------------------------------------------


def _architecture() -> str:
    from local_runtime.template import load_template

    path = os.path.join(os.path.dirname(__file__), "..", "template.yaml")
    with open(path) as file:
        document = load_template(file.read())
    architectures = document.get("Globals", {}).get("Function", {}).get("Architectures") or ["x86_64"]
    return str(architectures[0])


def _cost(seq: Sequences) -> list[tuple[str, float, str]]:
    from local_runtime.template import read_template

    stack = read_template()
    events = seq.deliveries
    gb_s = LAMBDA_PER_GB_SECOND[_architecture()]
    batch = stack.batch_size
    dynamodb_requests = sum(seq.requests.values())
    worker_seconds = (seq.worker_cpu + dynamodb_requests * DYNAMODB_ROUND_TRIP_S) / events
    webhook_seconds = seq.webhook_cpu + SQS_ROUND_TRIP_S
    chunks = sum(math.ceil(size / SQS_CHUNK) for size in seq.message_bytes) / len(seq.message_bytes)
    # The event source mapping receives up to `batch` messages a call and deletes them in one batch.
    sqs_requests = chunks + 2 / batch
    invocations_per_s = STEADY_EVENTS_PER_SECOND / batch + STEADY_EVENTS_PER_SECOND
    secret_calls = (
        2 / SECRET_CACHE_SECONDS / STEADY_EVENTS_PER_SECOND
    )  # two functions, one warm container each
    log_bytes = (
        seq.webhook_log_bytes + seq.worker_log_bytes / events + LAMBDA_REPORT_LOG_BYTES * (1 + 1 / batch)
    )
    del invocations_per_s
    million = 1e6
    return [
        ("HTTP API", million * HTTP_API_PER_REQUEST, "1 request per event (< 512 KB)"),
        (
            "Lambda requests",
            million * LAMBDA_PER_REQUEST * (1 + 1 / batch),
            f"webhook 1 + worker 1/{batch} per event",
        ),
        (
            "Lambda webhook GB-s",
            million * webhook_seconds * stack.webhook.memory_mb / 1024 * gb_s,
            f"{webhook_seconds * 1000:.1f} ms at {stack.webhook.memory_mb} MB",
        ),
        (
            "Lambda worker GB-s",
            million * worker_seconds * stack.worker.memory_mb / 1024 * gb_s,
            f"{worker_seconds * 1000:.1f} ms/event at {stack.worker.memory_mb} MB",
        ),
        ("SQS FIFO", million * sqs_requests * SQS_FIFO_PER_REQUEST, f"{sqs_requests:.2f} requests/event"),
        (
            "DynamoDB writes",
            million * seq.write_units / events * DYNAMODB_PER_WRITE_UNIT,
            f"{seq.write_units / events:.2f} WRU/event",
        ),
        (
            "DynamoDB reads",
            million * seq.read_units / events * DYNAMODB_PER_READ_UNIT,
            f"{seq.read_units / events:.2f} RRU/event",
        ),
        (
            "Secrets Manager",
            million * secret_calls * SECRETS_MANAGER_PER_CALL,
            f"cached {SECRET_CACHE_SECONDS} s",
        ),
        ("CloudWatch Logs", million * log_bytes / 1e9 * LOGS_PER_GB, f"{log_bytes:.0f} B/event"),
    ]


def run() -> None:
    _environment()
    scale = _scale()
    print("(a) scale: per event of the same renewal + purchase, by prior settled invoices + purchases")
    print(f"    {'history':>8}{'requests':>10}{'RRU':>8}{'WRU':>8}{'CPU µs':>9}")
    for count, (requests, reads, writes, cpu) in scale.items():
        print(f"    {count:>8}{requests:10.2f}{reads:8.2f}{writes:8.2f}{cpu * 1e6:9.0f}")
    base, top = scale[HISTORIES[0]], scale[HISTORIES[-1]]
    for label, index in (("requests", 0), ("read units", 1), ("write units", 2), ("CPU", 3)):
        ratio = top[index] / base[index] if base[index] else float("inf")
        verdict = "met" if ratio <= 1.5 else "MISSED"
        print(f"    {label:12} 1,000 / 1 = {ratio:.2f}   (target <= 1.5: {verdict})")

    seq = _sequences()
    applied = seq.outcomes["applied"]
    print(f"(b) documented sequences: {seq.deliveries} events, outcomes {dict(seq.outcomes)}")
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

    rows = _cost(seq)
    total = sum(cost for _, cost, _ in rows)
    print(f"(c) cost per million webhook events, us-east-1, prices of {PRICES_DATE}")
    for label, cost, basis in rows:
        print(f"    {label:22}${cost:7.3f}   {basis}")
    print(f"    {'total, no tracing':22}${total:7.3f}   (target <= $4: {'met' if total <= 4 else 'MISSED'})")
    xray = 1e6 * XRAY_SAMPLING * XRAY_PER_TRACE
    print(f"    {'X-Ray when on':22}${xray:7.3f}   {XRAY_SAMPLING:.0%} sampled; total ${total + xray:.3f}")
    print(
        f"    assumed: DynamoDB {DYNAMODB_ROUND_TRIP_S * 1000:.0f} ms and SQS {SQS_ROUND_TRIP_S * 1000:.0f} ms"
        f" per request in Lambda time, full batches, {STEADY_EVENTS_PER_SECOND} events/s for the secret cache"
    )
