"""What AWS bills for this stack: per million events at three traffic levels and full batches, against
the floor this architecture cannot go below, the fixed monthly cost of one idle stack, and the
reconciler's reads per GB of table. Prices: bench/_prices.py (us-east-1, dated, no free tier).

Measured here, in this run: the documented sequences' DynamoDB requests and units, message sizes, the
webhook handler's CPU and log bytes (bench/storage_units.py); the worker's Lambda handler run over the
same events in batches of 1 and of the template's BatchSize (CPU outside DynamoDB calls and log bytes,
split into a part per invocation and a part per event); the rendered HTTP API access log line; the
metrics one reconcile run emits. Read from template.yaml: memory, architecture, batch sizes, logging
configuration, alarms, dashboard, keys, secrets, schedule. Stated (not measurable here): AWS round
trips in Lambda time, the poller count, the publisher's duration.

Batch fill (messages per worker invocation) is modelled, not measured: a FIFO event source has no
batching window, so each of the P pollers (ScalingConfig.MaximumConcurrency) hands what one receive
returns to one invocation. While a poller is idle it long-polls and takes a message as soon as it
arrives (fill 1); a poller cycle takes c0 + f·e seconds (c0: receive, invoke and delete overhead, e:
Lambda time per event), and messages arriving during the cycles of all P pollers are what the next
receives find. Steady state: f = λ·(c0 + f·e)/P, so f = λ·c0 / (P - λ·e), at least 1, at most the
BatchSize, and the BatchSize once λ·e ≥ P (the pollers never idle).
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import _prices as p
from bench._storage_table import environment, table
from bench.storage_units import Sequences, captured, documented_scenarios, log_bytes, sequences

ROOT = Path(__file__).resolve().parents[1]
RATES = (("1 event/min", 1 / 60), ("1 event/s", 1.0), ("100 events/s", 100.0))
MILLION = 1e6

# Stated, not measurable here (in-region round trips from Lambda, single-digit milliseconds).
DYNAMODB_ROUND_TRIP_S = 0.004
SQS_ROUND_TRIP_S = 0.008
EVENTBRIDGE_ROUND_TRIP_S = 0.015
POLLER_OVERHEAD_S = 0.030  # c0: one receive + Lambda's invoke + the batch delete, per worker batch
PUBLISHER_SECONDS = 0.025  # one publisher invocation: parse the stream records, one PutEvents
STREAM_WINDOW_S = 1.0  # MaximumBatchingWindowInSeconds of the publisher's stream mapping (template)
SQS_LONG_POLL_S = 20  # an idle poller's empty receive returns after 20 s
RECONCILE_IDLE_SECONDS = 1.0  # one scheduled run on an empty table (cursor, empty lists), Lambda time
RECONCILE_IDLE_UNITS = (6, 3)  # its read and write units: cursor and accounts reads, cursor writes

# Targets (issue 19), no tracing.
TARGET_ONE_PER_BATCH = 1.25
TARGET_FULL_BATCHES = 1.15
TARGET_IDLE_MONTH = 6.00


# -- the template -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    document: dict[str, Any]

    @property
    def resources(self) -> dict[str, Any]:
        return dict(self.document["Resources"])

    def of_type(self, kind: str) -> dict[str, Any]:
        return {name: r for name, r in self.resources.items() if r["Type"] == kind}

    def function(self, handler: str) -> dict[str, Any]:
        for resource in self.of_type("AWS::Serverless::Function").values():
            if resource["Properties"]["Handler"] == handler:
                return dict(resource["Properties"])
        raise LookupError(handler)

    def memory_mb(self, handler: str) -> int:
        default = self.document.get("Globals", {}).get("Function", {}).get("MemorySize", 128)
        return int(self.function(handler).get("MemorySize", default))

    def architecture(self) -> str:
        found = self.document.get("Globals", {}).get("Function", {}).get("Architectures") or ["x86_64"]
        return str(found[0])

    def logging(self, handler: str) -> tuple[str, str]:
        """(LogFormat, SystemLogLevel) as Lambda applies them: Text, and INFO when JSON sets none."""
        config = self.function(handler).get("LoggingConfig", {})
        log_format = str(config.get("LogFormat", "Text"))
        return log_format, str(config.get("SystemLogLevel", "INFO")) if log_format == "JSON" else "INFO"

    def event_source(self, handler: str, kind: str) -> dict[str, Any]:
        for event in self.function(handler).get("Events", {}).values():
            if event["Type"] == kind:
                return dict(event["Properties"])
        raise LookupError(f"{handler}: no {kind} event source")

    def parameter_default(self, name: str) -> Any:
        return self.document["Parameters"][name].get("Default")


def read() -> Template:
    from local_runtime.template import load_template

    return Template(load_template((ROOT / "template.yaml").read_text()))


# -- measured: the worker's Lambda handler ------------------------------------------------------------


@dataclass(frozen=True)
class WorkerRun:
    batch: int
    invocations: int
    records: int  # deliveries handed to the handler, retries included
    cpu: float  # seconds outside DynamoDB calls
    log_bytes: int  # everything the handler wrote (log lines and the metrics' EMF line)
    dynamodb_requests: int


def _worker_run(batch: int) -> WorkerRun:
    """The documented sequences through worker.lambda_handler, `batch` records per invocation, in
    order; a record the handler reports failed (a dispute before its payment) comes back later."""
    import time

    from events.lambda_events import sqs_batch, sqs_record
    from handlers import worker
    from harness.lambda_context import FakeLambdaContext

    context = FakeLambdaContext(memory_limit_in_mb=512, aws_request_id="bench")

    events = [event for scenario in documented_scenarios() for event in scenario.events]
    invocations = records = sequence = 0
    cpu = 0.0
    worker.settings.cache_clear()
    worker._applier.cache_clear()
    worker.settings()  # binds the table's models first: the meter attaches to the connections they use
    with table() as meter, captured(worker.logger.name) as logs, redirect_stdout(io.StringIO()) as emf:
        mark = meter.units.snapshot()
        pending = events
        for _ in range(5):
            retry = []
            for start in range(0, len(pending), batch):
                chunk = pending[start : start + batch]
                batch_records = []
                for event in chunk:
                    sequence += 1
                    record = sqs_record(
                        json.dumps(event),
                        event_id=f"{event['id']}-{sequence}",
                        group=str(event["data"]["object"].get("customer") or "none"),
                        sequence=sequence,
                        sent_ms=1_767_225_600_000,
                    )
                    batch_records.append(record)
                started, calls = time.process_time(), meter.call_seconds
                answer = worker.lambda_handler(sqs_batch(batch_records), context)
                cpu += time.process_time() - started - (meter.call_seconds - calls)
                invocations += 1
                records += len(chunk)
                failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
                retry += [e for e, r in zip(chunk, batch_records, strict=True) if r["messageId"] in failed]
            pending = retry
        requests, _, _ = meter.units.since(mark)
        written = log_bytes(logs.getvalue()) + log_bytes(emf.getvalue())
    return WorkerRun(batch, invocations, records, cpu, written, requests)


@dataclass(frozen=True)
class WorkerCosts:
    """The worker's Lambda time and log bytes as a part per invocation and a part per record."""

    cpu_per_invocation: float
    cpu_per_record: float
    log_per_invocation: float
    log_per_record: float
    dynamodb_per_record: float


def _split(single: WorkerRun, full: WorkerRun, value: Callable[[WorkerRun], float]) -> tuple[float, float]:
    """Solve value = a·invocations + b·records from the two runs; (a, b), neither below zero."""
    determinant = single.invocations * full.records - full.invocations * single.records
    a = (value(single) * full.records - value(full) * single.records) / determinant
    b = (single.invocations * value(full) - full.invocations * value(single)) / determinant
    if a < 0:
        return 0.0, value(full) / full.records
    return a, max(b, 0.0)


def worker_costs(batch_size: int) -> tuple[WorkerCosts, WorkerRun, WorkerRun]:
    single, full = _worker_run(1), _worker_run(batch_size)
    cpu = _split(single, full, lambda r: r.cpu)
    logs = _split(single, full, lambda r: r.log_bytes)
    costs = WorkerCosts(cpu[0], cpu[1], logs[0], logs[1], full.dynamodb_requests / full.records)
    return costs, single, full


# -- measured: sizes of what AWS writes -----------------------------------------------------------------


def access_log_bytes(template: Template) -> int:
    """The template's HTTP API access log line rendered for one accepted delivery, as stored."""
    api = next(iter(template.of_type("AWS::Serverless::HttpApi").values()))["Properties"]
    values = {
        "requestId": "XyZ1aBcDeFgHiJk=",
        "identity.sourceIp": "54.187.174.169",
        "requestTime": "01/Dec/2026:10:00:00 +0000",
        "httpMethod": "POST",
        "path": "/webhooks/stripe",
        "status": "200",
        "responseLength": "16",
        "integrationLatency": "31",
        "integrationErrorMessage": "-",
    }
    line = re.sub(
        r"\$context\.([A-Za-z.]+)", lambda m: values[m.group(1)], api["AccessLogSettings"]["Format"]
    )
    return len(line.encode()) + p.LOG_EVENT_OVERHEAD_BYTES


_REQUEST_ID = "8f5b2c1e-3d4a-4b6c-9e8f-7a6b5c4d3e2f"


def platform_log_bytes(log_format: str, system_level: str, memory_mb: int) -> int:
    """Lambda's own lines per invocation, rendered: START/END/REPORT in Text; platform.start and
    platform.report in JSON, both INFO-level system logs, so none at SystemLogLevel WARN."""
    if log_format == "JSON":
        if system_level == "WARN":
            return 0
        at = "2026-12-01T10:00:00.000Z"
        lines = [
            {
                "time": at,
                "type": "platform.start",
                "record": {"requestId": _REQUEST_ID, "version": "$LATEST"},
            },
            {
                "time": at,
                "type": "platform.report",
                "record": {
                    "requestId": _REQUEST_ID,
                    "metrics": {
                        "durationMs": 23.45,
                        "billedDurationMs": 24,
                        "memorySizeMB": memory_mb,
                        "maxMemoryUsedMB": 97,
                    },
                    "status": "success",
                },
            },
        ]
        texts = [json.dumps(line, separators=(",", ":")) for line in lines]
    else:
        texts = [
            f"START RequestId: {_REQUEST_ID} Version: $LATEST",
            f"END RequestId: {_REQUEST_ID}",
            f"REPORT RequestId: {_REQUEST_ID}\tDuration: 23.45 ms\tBilled Duration: 24 ms\t"
            f"Memory Size: {memory_mb} MB\tMax Memory Used: 97 MB\t",
        ]
    return sum(len(t.encode()) + p.LOG_EVENT_OVERHEAD_BYTES for t in texts)


# -- the model ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    seq: Sequences
    worker: WorkerCosts
    template: Template
    access_log: int
    item_writes_per_event: float


def vcpu_seconds(cpu: float, memory_mb: int) -> float:
    """Lambda time for `cpu` seconds measured on one core, at the memory's share of a vCPU."""
    return cpu * max(1.0, p.LAMBDA_MB_PER_VCPU / memory_mb)


def batch_fill(rate: float | None, inputs: Inputs) -> float:
    batch = int(inputs.template.event_source("handlers.worker.lambda_handler", "SQS")["BatchSize"])
    if rate is None:
        return float(batch)
    scaling = inputs.template.event_source("handlers.worker.lambda_handler", "SQS").get("ScalingConfig", {})
    pollers = int(scaling.get("MaximumConcurrency", 5))
    per_event = _worker_event_seconds(inputs)
    if rate * per_event >= pollers:
        return float(batch)
    return min(float(batch), max(1.0, rate * POLLER_OVERHEAD_S / (pollers - rate * per_event)))


def _worker_event_seconds(inputs: Inputs) -> float:
    memory = inputs.template.memory_mb("handlers.worker.lambda_handler")
    return (
        vcpu_seconds(inputs.worker.cpu_per_record, memory)
        + inputs.worker.dynamodb_per_record * DYNAMODB_ROUND_TRIP_S
    )


@dataclass(frozen=True)
class Term:
    label: str
    dollars: float  # per million events
    basis: str
    floor: float = 0.0  # the part of it the architecture cannot avoid


def per_million(rate: float | None, inputs: Inputs) -> list[Term]:
    t, seq, w = inputs.template, inputs.seq, inputs.worker
    fill = batch_fill(rate, inputs)
    gb_s = p.LAMBDA_PER_GB_SECOND[t.architecture()]
    events = seq.deliveries
    webhook_mb = t.memory_mb("handlers.webhook.lambda_handler")
    worker_mb = t.memory_mb("handlers.worker.lambda_handler")
    publisher_mb = t.memory_mb("handlers.entitlements_changed.lambda_handler")

    chunks = sum(math.ceil(size / p.SQS_CHUNK_BYTES) for size in seq.message_bytes) / len(seq.message_bytes)
    mean_message = sum(seq.message_bytes) / len(seq.message_bytes)
    receive_chunks = max(1, math.ceil(fill * mean_message / p.SQS_CHUNK_BYTES))
    sqs = (
        chunks + (receive_chunks + 1) / fill
    )  # send; receive (its payload in 64 KB chunks) and delete per batch
    sqs_floor = 1 + 2 / fill

    webhook_s = math.ceil((vcpu_seconds(seq.webhook_cpu, webhook_mb) + SQS_ROUND_TRIP_S) * 1000) / 1000
    worker_batch_s = vcpu_seconds(w.cpu_per_invocation, worker_mb) + fill * _worker_event_seconds(inputs)
    worker_s = math.ceil(worker_batch_s * 1000) / 1000 / fill

    # Access changes go out through the table's stream (filtered to the entitlements items), one
    # PutEvents entry each; the publisher's stream batches fill over its 1 s window.
    changes = seq.access_changes / events
    stream_records = (seq.entitlements_puts + seq.user_entitlements_puts) / events  # the filter takes both
    per_window = (rate or 0) * STREAM_WINDOW_S * stream_records
    publisher_invocations = (
        changes
        if rate is not None and per_window <= 1
        else stream_records / max(1.0, min(100.0, per_window or 100.0))
    )
    publisher_s = PUBLISHER_SECONDS * publisher_invocations

    worker_logs = w.log_per_record + w.log_per_invocation / fill
    platform = (
        platform_log_bytes(*t.logging("handlers.webhook.lambda_handler"), webhook_mb)
        + platform_log_bytes(*t.logging("handlers.worker.lambda_handler"), worker_mb) / fill
        + platform_log_bytes(*t.logging("handlers.entitlements_changed.lambda_handler"), publisher_mb)
        * publisher_invocations
    )
    app_logs = seq.webhook_log_bytes + worker_logs

    # Each warm container reads the secret once per cache period (adapters.stripe_credentials); at low
    # traffic a container serves fewer events in that time. Webhook and worker, one container each.
    from adapters.stripe_credentials import SECRET_MAX_AGE_SECONDS

    secret_calls = 2 * min(1.0, 1 / ((rate or 1000.0) * SECRET_MAX_AGE_SECONDS))
    lambda_requests = 1 + 1 / fill + publisher_invocations
    write_units = seq.write_units / events
    return [
        Term(
            "HTTP API",
            MILLION * p.HTTP_API_PER_REQUEST,
            "1 request per event (< 512 KB)",
            MILLION * p.HTTP_API_PER_REQUEST,
        ),
        Term(
            "Lambda requests",
            MILLION * p.LAMBDA_PER_REQUEST * lambda_requests,
            f"webhook 1 + worker 1/{fill:.2f} + publisher {publisher_invocations:.2f}",
            MILLION * p.LAMBDA_PER_REQUEST * (1 + 1 / fill),
        ),
        Term(
            "Lambda webhook GB-s",
            MILLION * webhook_s * webhook_mb / 1024 * gb_s,
            f"{webhook_s * 1000:.0f} ms billed at {webhook_mb} MB",
        ),
        Term(
            "Lambda worker GB-s",
            MILLION * worker_s * worker_mb / 1024 * gb_s,
            f"{worker_s * 1000:.1f} ms/event billed at {worker_mb} MB",
        ),
        Term(
            "Lambda publisher GB-s",
            MILLION * publisher_s * publisher_mb / 1024 * gb_s,
            f"{PUBLISHER_SECONDS * 1000:.0f} ms (stated) x {publisher_invocations:.2f}",
        ),
        Term(
            "SQS FIFO",
            MILLION * sqs * p.SQS_FIFO_PER_REQUEST,
            f"{sqs:.2f} requests/event",
            MILLION * sqs_floor * p.SQS_FIFO_PER_REQUEST,
        ),
        Term(
            "DynamoDB writes",
            MILLION * write_units * p.DYNAMODB_PER_WRITE_UNIT,
            f"{write_units:.2f} WRU/event ({inputs.item_writes_per_event:.2f} item writes)",
            MILLION * inputs.item_writes_per_event * p.DYNAMODB_PER_WRITE_UNIT,
        ),
        Term(
            "DynamoDB reads",
            MILLION * seq.read_units / events * p.DYNAMODB_PER_READ_UNIT,
            f"{seq.read_units / events:.2f} RRU/event",
        ),
        Term(
            "EventBridge PutEvents",
            MILLION * changes * p.EVENTBRIDGE_PER_EVENT,
            f"{changes:.0%} of events change access",
        ),
        Term(
            "Secrets Manager",
            MILLION * secret_calls * p.SECRETS_MANAGER_PER_CALL,
            f"{secret_calls:.4f} calls/event",
        ),
        Term(
            "Logs: HTTP API access",
            MILLION * inputs.access_log / 1e9 * p.LOGS_INGESTED_PER_GB,
            f"{inputs.access_log} B/event",
        ),
        Term(
            "Logs: Lambda platform",
            MILLION * platform / 1e9 * p.LOGS_INGESTED_PER_GB,
            f"{platform:.0f} B/event",
        ),
        Term(
            "Logs: application",
            MILLION * app_logs / 1e9 * p.LOGS_INGESTED_PER_GB,
            f"{app_logs:.0f} B/event (webhook {seq.webhook_log_bytes:.0f}, worker {worker_logs:.0f})",
        ),
    ]


# -- the idle stack --------------------------------------------------------------------------------------


def _alarm_metrics(alarm: Mapping[str, Any]) -> int:
    metrics = alarm["Properties"].get("Metrics")
    return sum(1 for m in metrics if "MetricStat" in m) if metrics else 1


def reconcile_run_metrics() -> list[str]:
    """The metrics one clean scheduled run emits (name and dimensions), from the handler's own code."""
    from domain.reconcile import Counts, ReconcileReport
    from handlers import reconcile

    report = ReconcileReport(
        scope="everything",
        dry_run=False,
        counts=Counts(),
        pages=0,
        stripe_requests=0,
        rate_limited=0,
        drifts=(),
        messages=(),
        complete=True,
    )
    with redirect_stdout(io.StringIO()), captured(reconcile.logger.name):
        reconcile.publish(report)
        emitted = reconcile.metrics.serialize_metric_set()
        reconcile.metrics.clear_metrics()
    names = []
    for directive in emitted["_aws"]["CloudWatchMetrics"]:
        dimensions = ",".join(sorted(d for dims in directive["Dimensions"] for d in dims))
        names += [m["Name"] + (f" [{dimensions}]" if dimensions else "") for m in directive["Metrics"]]
    return names


def emitted_metric_names() -> dict[str, set[str]]:
    """Every custom metric name each function's code can emit (read from the handlers' source)."""
    from handlers import reconcile, webhook, worker

    handlers = ROOT / "src" / "handlers"
    found: dict[str, set[str]] = {}
    for name in ("webhook", "worker", "reconcile", "eventbridge", "entitlements_changed"):
        text = (handlers / f"{name}.py").read_text()
        names = set(re.findall(r'name="([A-Z]\w+)"', text))
        for group in re.findall(r"metrics=\(([^)]*)\)", text):
            names |= set(re.findall(r'"([A-Z]\w+)"', group))
        found[name] = names
    found["worker"] |= set(worker.OUTCOME_METRICS.values())
    found["reconcile"] |= set(reconcile.COUNT_METRICS.values())
    found["webhook"] |= {*webhook.QUEUED, *webhook.REJECTED, *webhook.UNVERIFIED, *webhook.FAILED}
    return found


@dataclass(frozen=True)
class IdleTerm:
    label: str
    dollars: float  # a month
    basis: str
    free_tier: str = ""


def idle_month(template: Template) -> tuple[list[IdleTerm], list[str]]:
    alarms = template.of_type("AWS::CloudWatch::Alarm")
    unconditional = {n: a for n, a in alarms.items() if "Condition" not in a}
    alarm_metrics = sum(_alarm_metrics(a) for a in unconditional.values())
    dashboards = template.of_type("AWS::CloudWatch::Dashboard")
    # A test stack (Stage dev, the parameters' defaults): CreateDashboard auto creates none there.
    default_dashboard = str(template.document["Parameters"].get("CreateDashboard", {}).get("Default", "true"))
    always_dashboards = [
        d for d in dashboards.values() if "Condition" not in d or default_dashboard == "true"
    ]
    keys = template.of_type("AWS::KMS::Key")
    secrets = template.of_type("AWS::SecretsManager::Secret")
    schedule = str(template.parameter_default("ReconcileSchedule"))
    runs = _runs_per_month(schedule)
    run_metrics = reconcile_run_metrics()
    reconcile_mb = template.memory_mb("handlers.reconcile.lambda_handler")
    gb_s = p.LAMBDA_PER_GB_SECOND[template.architecture()]
    sqs_sources = sum(
        1
        for f in template.of_type("AWS::Serverless::Function").values()
        if "Condition" not in f
        for e in f["Properties"].get("Events", {}).values()
        if e["Type"] == "SQS"
    )
    pollers = int(
        template.event_source("handlers.worker.lambda_handler", "SQS")
        .get("ScalingConfig", {})
        .get("MaximumConcurrency", 5)
    )
    empty_receives = sqs_sources * pollers * p.MONTH_HOURS * 3600 / SQS_LONG_POLL_S
    reads, writes = RECONCILE_IDLE_UNITS
    terms = [
        IdleTerm(
            "custom metrics",
            len(run_metrics) * p.CUSTOM_METRIC_PER_MONTH,
            f"{len(run_metrics)} sent by every scheduled reconcile run ({schedule})",
            p.FREE_TIER["custom metrics"],
        ),
        IdleTerm(
            "alarms",
            alarm_metrics * p.ALARM_METRIC_PER_MONTH,
            f"{len(unconditional)} alarms evaluating {alarm_metrics} metrics",
            p.FREE_TIER["alarms"],
        ),
        IdleTerm(
            "dashboard",
            len(always_dashboards) * p.DASHBOARD_PER_MONTH,
            f"{len(always_dashboards)} in a test stack; {len(dashboards) - len(always_dashboards)} more in prod"
            f" (CreateDashboard {default_dashboard}): +${p.DASHBOARD_PER_MONTH * (len(dashboards) - len(always_dashboards)):.2f}",
            p.FREE_TIER["dashboard"],
        ),
        IdleTerm(
            "KMS keys",
            len(keys) * p.KMS_KEY_PER_MONTH,
            f"{len(keys)} (alarm topic); rotation adds $1 in year 2 and 3",
            p.FREE_TIER["kms"],
        ),
        IdleTerm(
            "secrets",
            len(secrets) * p.SECRETS_MANAGER_PER_SECRET_MONTH,
            f"{len(secrets)}",
            p.FREE_TIER["secrets manager"],
        ),
        IdleTerm(
            "reconciler runs",
            runs
            * (
                p.LAMBDA_PER_REQUEST
                + RECONCILE_IDLE_SECONDS * reconcile_mb / 1024 * gb_s
                + reads * p.DYNAMODB_PER_READ_UNIT
                + writes * p.DYNAMODB_PER_WRITE_UNIT
                + p.SECRETS_MANAGER_PER_CALL
            ),
            f"{runs:.0f} runs: request, {RECONCILE_IDLE_SECONDS:.0f} s at {reconcile_mb} MB (stated), {reads} RRU + {writes} WRU, 1 secret read; Stripe's API is free",
            p.FREE_TIER["lambda"],
        ),
        IdleTerm(
            "SQS empty receives",
            empty_receives * p.SQS_FIFO_PER_REQUEST,
            f"{pollers} pollers long-polling {SQS_LONG_POLL_S} s: {empty_receives / 1e6:.2f} M requests",
            p.FREE_TIER["sqs"],
        ),
        IdleTerm(
            "log storage",
            0.001 * p.LOGS_STORED_PER_GB_MONTH,
            "the reconciler's ~1 MB a month; nothing else logs at idle",
            p.FREE_TIER["logs"],
        ),
    ]
    return terms, run_metrics


def _runs_per_month(schedule: str) -> float:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", schedule)
    if not match:
        return float(p.MONTH_HOURS)
    seconds = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
    return p.MONTH_HOURS * 3600 / (int(match.group(1)) * seconds)


# -- reconcile reads as the table grows ----------------------------------------------------------------


RECONCILE_CUSTOMERS, RECONCILE_HISTORY = 100, 50  # the measured pass: small, the ratio is per GB


@dataclass(frozen=True)
class ReconcileMeasured:
    fresh_units: float  # one pass, no history
    grown_units: float  # the same customers with RECONCILE_HISTORY settled records each
    history_bytes: int  # the items the history added (DynamoDB's size rules)


def reconcile_measured() -> ReconcileMeasured:
    """One real pass (adapters.reconciler, against harness.fake_stripe) over a small seeded moto table
    without and with settled history, through bench/_reconcile_history.py: the figure follows what
    the reconciler reads on this branch."""
    import copy

    import boto3
    from moto import mock_aws

    from bench import _reconcile_history as history
    from bench._dynamodb_units import item_size
    from harness.fake_stripe import FakeStripe
    from harness.sync_table_fixture import create_sync_table

    customers, settled = RECONCILE_CUSTOMERS, RECONCILE_HISTORY
    with mock_aws(), redirect_stdout(io.StringIO()), FakeStripe() as fake:
        fake.put_many(copy.deepcopy(history._subscription(n)) for n in range(customers))
        fresh = history._one_pass(fake, "bench-cost-fresh", customers, 0, indexed=True)
        grown = history._one_pass(fake, "bench-cost-grown", customers, settled, indexed=True)
        sizes = []
        for name, count in (("bench-cost-size-0", 0), ("bench-cost-size-1", settled)):
            from adapters.reconciler import bind_table

            client = boto3.client("dynamodb")
            create_sync_table(client, name)
            bind_table(name)
            history._seed(customers, count, indexed=True)
            pages = client.get_paginator("scan").paginate(TableName=name)
            sizes.append(sum(item_size(item) for page in pages for item in page["Items"]))
            client.delete_table(TableName=name)
    return ReconcileMeasured(fresh.read_units, grown.read_units, sizes[1] - sizes[0])


def reconcile_per_gb(template: Template, measured: ReconcileMeasured | None) -> list[tuple[str, float, str]]:
    """Read units of a pass per GB of table, a month at the default schedule: a Scan reads every item
    (its filter does not reduce units; eventually consistent, 0.5 RRU per 4 KB); the index pass as
    measured: what a GB of settled history adds to one pass's reads."""
    runs = _runs_per_month(str(template.parameter_default("ReconcileSchedule")))
    blocks = 2**30 / 4096
    scan = runs * blocks * 0.5 * p.DYNAMODB_PER_READ_UNIT
    rows = [
        ("a pass that scans the table", scan, f"{blocks * 0.5:,.0f} RRU per GB per pass, {runs:.0f} passes"),
    ]
    if measured is not None:
        added = max(0.0, measured.grown_units - measured.fresh_units)
        per_gb = added / (measured.history_bytes / 2**30)
        rows.append(
            (
                "this pass (measured)",
                runs * per_gb * p.DYNAMODB_PER_READ_UNIT,
                f"{measured.fresh_units:.0f} -> {measured.grown_units:.0f} RU a pass with"
                f" {measured.history_bytes / 1e6:.1f} MB of settled history ({RECONCILE_CUSTOMERS} customers"
                f" x {RECONCILE_HISTORY}; consistent-read rates)",
            )
        )
    rows += [
        ("storage", p.DYNAMODB_STORAGE_PER_GB_MONTH, "Standard table class"),
        ("point-in-time recovery (prod)", p.DYNAMODB_PITR_PER_GB_MONTH, "IsProd"),
    ]
    return rows


# -- printing ---------------------------------------------------------------------------------------------------


def measure() -> tuple[Inputs, WorkerRun, WorkerRun]:
    environment()
    template = read()
    seq = sequences()
    batch = int(template.event_source("handlers.worker.lambda_handler", "SQS")["BatchSize"])
    worker, single, full = worker_costs(batch)
    item_writes = _item_writes(seq)
    return Inputs(seq, worker, template, access_log_bytes(template), item_writes), single, full


def _item_writes(seq: Sequences) -> float:
    """Items written per event (each costs at least one write unit): PutItem, DeleteItem and the
    items of TransactWriteItems are not told apart by Sequences, so count the requests that write."""
    writes = Counter({k: v for k, v in seq.requests.items() if k in ("PutItem", "DeleteItem", "UpdateItem")})
    return (sum(writes.values()) + 2 * seq.requests.get("TransactWriteItems", 0)) / seq.deliveries


def run() -> None:
    inputs, single, full = measure()
    w = inputs.worker
    print(
        f"prices of {p.PRICES_DATE}, us-east-1, no free tier (bench/_prices.py); architecture {inputs.template.architecture()}"
    )
    print(
        f"measured: worker handler, batches of 1: {single.invocations} invocations for {single.records} records; "
        f"batches of {full.batch}: {full.invocations} for {full.records}"
    )
    print(
        f"    worker CPU {w.cpu_per_invocation * 1e6:.0f} µs/invocation + {w.cpu_per_record * 1e6:.0f} µs/record (one core), "
        f"logs {w.log_per_invocation:.0f} B/invocation + {w.log_per_record:.0f} B/record; "
        f"webhook CPU {inputs.seq.webhook_cpu * 1e6:.0f} µs/request"
    )
    levels: list[tuple[str, float | None]] = [*RATES, ("full batches", None)]
    tables = {label: per_million(rate, inputs) for label, rate in levels}
    width = 24
    print("\ncost per million events ($), no tracing")
    print(f"    {'term':{width}}" + "".join(f"{label:>15}" for label, _ in levels))
    for index, term in enumerate(tables["full batches"]):
        print(
            f"    {term.label:{width}}"
            + "".join(f"{tables[label][index].dollars:15.3f}" for label, _ in levels)
        )
    totals = {label: sum(t.dollars for t in terms) for label, terms in tables.items()}
    floors = {label: sum(t.floor for t in terms) for label, terms in tables.items()}
    print(f"    {'total':{width}}" + "".join(f"{totals[label]:15.3f}" for label, _ in levels))
    print(f"    {'floor':{width}}" + "".join(f"{floors[label]:15.3f}" for label, _ in levels))
    print(
        f"    {'total / floor':{width}}"
        + "".join(f"{totals[label] / floors[label]:15.2f}" for label, _ in levels)
    )
    print(
        f"    {'batch fill (model)':{width}}"
        + "".join(f"{batch_fill(rate, inputs):15.2f}" for _, rate in levels)
    )
    xray = MILLION * p.XRAY_PER_TRACE * 0.05
    print(f"    X-Ray when Tracing is Active: +${xray:.2f} (5 % sampled); not in the totals")
    print("\nbasis at 1 event/s (one event per batch) and full batches:")
    for one, many in zip(tables["1 event/s"], tables["full batches"], strict=True):
        print(f"    {one.label:{width}}{one.basis}  |  {many.basis}")
    print(
        "\nthe floor: per-request prices every event pays (HTTP API, SQS send + receive + delete at the fill,"
    )
    print("webhook + worker requests, one write unit per item written)")
    for label in ("1 event/s", "full batches"):
        terms = [t for t in tables[label] if t.floor]
        print(
            f"    {label:14}"
            + ", ".join(f"{t.label} {t.floor:.3f}" for t in terms)
            + f" = {floors[label]:.3f}"
        )
    for label, target in (("1 event/s", TARGET_ONE_PER_BATCH), ("full batches", TARGET_FULL_BATCHES)):
        ratio = totals[label] / floors[label]
        verdict = "met" if ratio <= target else "MISSED"
        print(f"    {label:14}measured / floor = {ratio:.2f}   (target <= {target:.2f}: {verdict})")
    ratio = totals["1 event/min"] / floors["1 event/min"]
    print(
        f"    {'1 event/min':14}measured / floor = {ratio:.2f}   (one event per batch too; the secret cache's reads weigh here)"
    )

    terms, run_metrics = idle_month(inputs.template)
    total = sum(t.dollars for t in terms)
    print("\nidle stack, a month ($)")
    for term in terms:
        print(
            f"    {term.label:20}{term.dollars:8.2f}   {term.basis}"
            + (f"  [free tier: {term.free_tier}]" if term.free_tier else "")
        )
    print(
        f"    {'total':20}{total:8.2f}   (target <= ${TARGET_IDLE_MONTH:.0f}: {'met' if total <= TARGET_IDLE_MONTH else 'MISSED'})"
    )
    print(f"    metrics of a scheduled run: {', '.join(run_metrics)}")
    names = emitted_metric_names()
    print(f"    custom metric names the functions can emit ({sum(len(v) for v in names.values())}):")
    for function, found in names.items():
        print(f"      {function}: {', '.join(sorted(found))}")
    alarms = inputs.template.of_type("AWS::CloudWatch::Alarm")
    print(f"    alarms ({len(alarms)}): {', '.join(alarms)}")

    print("\nreconciler's table reads, a month per GB of table ($)")
    for label, dollars, basis in reconcile_per_gb(inputs.template, reconcile_measured()):
        print(f"    {label:38}{dollars:8.2f}   {basis}")
