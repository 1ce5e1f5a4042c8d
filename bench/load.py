"""Load benchmark: the local runtime (`make run`) under 10,000 signed events for 1,000 customers.

Every customer has one subscription whose history (customer.created, then nine snapshots a day
apart) is delivered shuffled across and within customers, 10% of it twice, by a few concurrent
posters, signed with the runtime's secret. Printed: webhook throughput and latency, end-to-end
throughput, and per distinct event the latency from its first POST to the worker's outcome for it
(harness.load explains what "processed" means). Then the final table is checked against the
same histories applied in order: entitlements and records equal, no event lost, none applied twice.

Baselines from the same run: single `put_item` calls, one after another, on the same moto server
(into a scratch table of the same key schema: what one DynamoDB request costs there, the least an
event could cost); GET /health through the same HTTP server and posters (the HTTP round trip without
the function); and the domain alone applying the in-order histories in memory.

Targets (issue 13), each printed beside its measured value:
* end to end (distinct events / first post to drained queue) >= 0.2x the raw put_item rate;
* the worker's pace over the last tenth of its outcomes >= 0.8x the first tenth (flat in the table);
* webhook p99 <= 150 ms with 8 concurrent posters;
* the full run (10,000 events, 1,000 customers) finishes within LOAD_BENCH_SECONDS.

Bounded: LOAD_BENCH_SECONDS (default 900) for posting and draining; the runtime is stopped in any
case. moto's SQS walks every queued message on each call: the posters keep the backlog under
LOAD_BENCH_BACKLOG (default 50) messages so that this stays small.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

CUSTOMERS = int(os.environ.get("LOAD_BENCH_CUSTOMERS", "1000"))
EVENTS_PER_CUSTOMER = 10
POSTERS = 8
SECRET = "whsec_bench_load_0123456789abcdef"
HEALTH_REQUESTS = 200
RAW_PUTS = 1000
TARGET_RATE_RATIO = 0.2
TARGET_LAST_FIRST = 0.8
TARGET_WEBHOOK_P99_SECONDS = 0.150


def _progress(started: float) -> Callable[[str], None]:
    def say(text: str) -> None:
        print(f"  [{time.monotonic() - started:6.0f} s] {text}", flush=True)

    return say


def _health_latencies(port: int) -> list[float]:
    """GET /health from POSTERS threads: the local HTTP round trip with no function behind it."""
    seconds: list[float] = []
    lock = threading.Lock()

    def get(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
                answer.read()
            with lock:
                seconds.append(time.perf_counter() - started)

    threads = [threading.Thread(target=get, args=(HEALTH_REQUESTS // POSTERS,)) for _ in range(POSTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seconds


def _raw_put_rate(runtime: Any) -> float:
    """Single put_item calls per second, one after another, on the runtime's moto server."""
    from harness.sync_table_fixture import create_keys_only_table

    dynamodb = runtime.aws("dynamodb")
    table = "bench-raw-put"
    create_keys_only_table(dynamodb, table)
    for n in range(20):  # the client's connection and moto's first-call work, not measured
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"WARM#{n}"}, "sk": {"S": "A"}})
    started = time.perf_counter()
    for n in range(RAW_PUTS):
        dynamodb.put_item(
            TableName=table,
            Item={"pk": {"S": f"CUSTOMER#cus_Raw{n:010d}"}, "sk": {"S": "ENTITLEMENTS"}, "n": {"N": str(n)}},
        )
    rate = RAW_PUTS / (time.perf_counter() - started)
    dynamodb.delete_table(TableName=table)
    return rate


def _target(name: str, measured: str, target: str, met: bool) -> str:
    return f"  target  {name:<38} {measured:>14}   {target:<16} {'met' if met else 'NOT MET'}"


def run() -> None:
    from harness import load
    from harness.memory_store import MemoryStore

    time_limit = float(os.environ.get("LOAD_BENCH_SECONDS", "900"))
    max_backlog = int(os.environ.get("LOAD_BENCH_BACKLOG", "50"))
    started = time.monotonic()
    say = _progress(started)

    workload = load.build_workload(
        CUSTOMERS,
        history=lambda index: load.subscription_history(index, EVENTS_PER_CUSTOMER),
        seed=11,
    )
    cpu = time.process_time()
    expected = load.in_order_state(workload, MemoryStore())
    domain_rate = workload.distinct_events / max(time.process_time() - cpu, 1e-9)
    print(
        f"load: {len(workload.histories)} customers, {workload.distinct_events} distinct events, "
        f"{workload.duplicates} duplicates, {len(workload.deliveries)} deliveries; limit {time_limit:.0f} s",
        flush=True,
    )

    folder = Path(tempfile.mkdtemp(prefix="bench-load-"))
    runtime = load.RuntimeProcess(folder / "make-run.log", SECRET)
    try:
        runtime.start()
        say(f"runtime up on :{runtime.port} (moto :{runtime.aws_port}); log {runtime.log}")
        health = _health_latencies(runtime.port)
        raw_rate = _raw_put_rate(runtime)
        say(f"raw put_item on the same moto server: {raw_rate:.0f}/s")
        result = load.run_load(
            runtime,
            workload,
            posters=POSTERS,
            max_backlog=max_backlog,
            time_limit=time_limit,
            progress=say,
            progress_every=30.0,
        )
    finally:
        code = runtime.stop()
    say(f"runtime stopped (exit {code})")

    for line in result.summary():
        print(f"  {line}")
    webhook_p50 = load.percentile(result.webhook_seconds(), 50)
    health_p50 = load.percentile(health, 50)
    print(
        f"  baseline GET /health p50 {health_p50 * 1000:.1f} ms: webhook POST p50 is "
        f"{webhook_p50 / health_p50:.1f}x the bare HTTP round trip"
    )
    pipeline_rate = None
    if result.drained_at is not None:
        pipeline_rate = workload.distinct_events / (result.drained_at - result.started_at)
        print(
            f"  baseline domain alone (in-order, in memory) {domain_rate:,.0f} events/s: the pipeline on moto "
            f"runs at {pipeline_rate / domain_rate:.4f} of it"
        )
    print(f"  baseline raw put_item on the same moto server, one after another: {raw_rate:.0f}/s")
    ratio = pipeline_rate / raw_rate if pipeline_rate is not None else 0.0
    print(
        _target(
            "end to end / raw put_item",
            f"{ratio:.2f}x"
            + (f" ({pipeline_rate:.0f}/s)" if pipeline_rate is not None else " (not drained)"),
            f">= {TARGET_RATE_RATIO}x",
            ratio >= TARGET_RATE_RATIO,
        )
    )
    rates = result.tenth_rates()
    last_first = rates[1] / rates[0] if rates is not None else 0.0
    print(
        _target(
            "worker pace, last tenth / first tenth",
            f"{last_first:.2f}x",
            f">= {TARGET_LAST_FIRST}x",
            last_first >= TARGET_LAST_FIRST,
        )
    )
    p99 = load.percentile(result.webhook_seconds(), 99)
    print(
        _target(
            f"webhook p99, {POSTERS} concurrent posters",
            f"{p99 * 1000:.0f} ms",
            f"<= {TARGET_WEBHOOK_P99_SECONDS * 1000:.0f} ms",
            p99 <= TARGET_WEBHOOK_P99_SECONDS,
        )
    )
    total = (
        f"{result.drained_at - result.started_at:.0f} s" if result.drained_at is not None else "not drained"
    )
    print(
        _target(
            f"{workload.distinct_events:,} events / {len(workload.histories):,} customers finish",
            total,
            f"<= {time_limit:.0f} s",
            result.complete,
        )
    )

    _verdict(result, expected, time_limit, runtime.log)
    shutil.rmtree(folder, ignore_errors=True)


def _verdict(result: Any, expected: Any, time_limit: float, log: Path) -> None:
    """Raise when something went wrong; say so when the bound stopped the run before the end."""
    from harness import load

    workload = result.workload
    # What holds at any moment: nothing refused, nothing parked, nothing applied twice.
    problems: list[str] = []
    if result.failed_posts:
        problems.append(f"{len(result.failed_posts)} posts not answered 200, e.g. {result.failed_posts[:2]}")
    if result.dead_letter_depth:
        problems.append(f"{result.dead_letter_depth} message(s) in the dead-letter queue")
    problems += load.ledger_problems(result)
    if result.complete:
        problems += load.differences(expected, result.table)
        lost = load.lost_events(result)
        if lost:
            problems.append(f"{len(lost)} event(s) with no outcome from the worker, e.g. {lost[:3]}")
    if problems:
        print(f"  PROBLEMS (the runtime's log is kept at {log}):")
        for problem in problems:
            print(f"    {problem}")
        raise RuntimeError("the load run went wrong")
    if not result.complete:
        processed = len({o.event_id for o in result.outcomes})
        print(
            f"  INCOMPLETE within {time_limit:.0f} s: {len(result.posts)}/{len(workload.deliveries)} posted, "
            f"{processed}/{workload.distinct_events} distinct events processed; nothing applied twice so far. "
            "The final state is not compared. moto sets the pace (see `worker pace`): raise "
            "LOAD_BENCH_SECONDS to run to the end."
        )
    else:
        print("  final table = in-order result for every customer; no event lost, none applied twice")


if __name__ == "__main__":
    run()
