"""The run: post a workload to a started runtime, wait for its queue to drain, then read what the
worker logged and what the table holds; the report and the checks on it."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from harness.load.final_state import TableState, table_state
from harness.load.posting import BacklogGate, Post, post_all, queue_depth, wait_drained
from harness.load.runtime_process import LoadError, RuntimeProcess
from harness.load.workload import Workload

# Worker outcomes that mean "done with this delivery" (handlers.worker logs one per message).
PROCESSED_OUTCOMES = frozenset({"applied", "stale", "duplicate", "ignored", "guest", "unmatched"})


# -- what the worker did, from its log ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerOutcome:
    event_id: str
    outcome: str
    at: float  # wall clock, epoch seconds


def worker_outcomes(output: str) -> list[WorkerOutcome]:
    """The worker's per-event JSON log lines (Powertools Logger, shown by the runtime at DEBUG)."""
    found: list[WorkerOutcome] = []
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("outcome") not in PROCESSED_OUTCOMES:
            continue
        stamp = record.get("timestamp")
        event_id = record.get("event_id")
        if not isinstance(stamp, str) or not isinstance(event_id, str):
            continue
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f%z").timestamp()
        found.append(WorkerOutcome(event_id, str(record["outcome"]), at))
    return found


# -- the run ------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (`share` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class LoadResult:
    workload: Workload
    posters: int
    max_backlog: int | None
    peak_backlog: int
    started_at: float  # wall clock of the first post
    posted_at: float  # wall clock when the last answer came
    drained_at: float | None  # wall clock when the event queue was empty, None if not by the deadline
    posts: list[Post]
    outcomes: list[WorkerOutcome]
    dead_letter_depth: int
    table: TableState
    memory_mb: tuple[int | None, int | None] = (None, None)  # the runtime's, before and after

    @property
    def complete(self) -> bool:
        return self.drained_at is not None and len(self.posts) == len(self.workload.deliveries)

    @property
    def failed_posts(self) -> list[Post]:
        return [post for post in self.posts if post.status != 200]

    def applied(self) -> Counter[str]:
        """How many times the worker said `applied` for each event id."""
        return Counter(o.event_id for o in self.outcomes if o.outcome == "applied")

    def webhook_seconds(self) -> list[float]:
        return [post.seconds for post in self.posts]

    def tenth_rates(self) -> tuple[float, float] | None:
        """Worker outcomes per second over the first and over the last tenth of them (None: too few
        to say). A pipeline whose cost grows with its table slows down: last / first falls below 1."""
        ordered = sorted(o.at for o in self.outcomes)
        tenth = len(ordered) // 10
        if tenth < 10:
            return None
        first = (tenth - 1) / max(ordered[tenth - 1] - ordered[0], 1e-9)
        last = (tenth - 1) / max(ordered[-1] - ordered[-tenth], 1e-9)
        return first, last

    def end_to_end_seconds(self) -> list[float]:
        """Per distinct event: first POST to the worker's first outcome for it."""
        first_post: dict[str, float] = {}
        for post in self.posts:
            first_post[post.event_id] = min(post.sent_at, first_post.get(post.event_id, math.inf))
        first_outcome: dict[str, float] = {}
        for outcome in self.outcomes:
            first_outcome[outcome.event_id] = min(outcome.at, first_outcome.get(outcome.event_id, math.inf))
        return [first_outcome[e] - sent for e, sent in first_post.items() if e in first_outcome]

    def summary(self) -> list[str]:
        workload = self.workload
        posting = max(self.posted_at - self.started_at, 1e-9)
        lines = [
            f"{len(workload.histories)} customers, {workload.distinct_events} distinct events, "
            f"{workload.duplicates} duplicate deliveries, {len(self.posts)} posts from {self.posters} posters"
            + (
                f", backlog held under {self.max_backlog} (peak {self.peak_backlog})"
                if self.max_backlog
                else ""
            ),
            f"webhook       {len(self.posts) / posting:7.1f} posts/s over {posting:.1f} s; "
            + _percentiles(self.webhook_seconds()),
        ]
        if self.drained_at is not None:
            total = self.drained_at - self.started_at
            lines.append(
                f"end to end    {len(self.posts) / total:7.1f} deliveries/s, {workload.distinct_events / total:.1f} "
                f"distinct events/s: first post to drained queue {total:.1f} s"
            )
        else:
            lines.append("end to end    the queue was not drained before the deadline")
        if self.outcomes:
            span = max(max(o.at for o in self.outcomes) - min(o.at for o in self.outcomes), 1e-9)
            kinds = Counter(o.outcome for o in self.outcomes)
            lines.append(
                f"worker        {len(self.outcomes) / span:7.1f} deliveries/s over {span:.1f} s; "
                + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
            )
        rates = self.tenth_rates()
        if rates is not None:
            lines.append(
                f"worker pace   first tenth {rates[0]:.1f}/s, last tenth {rates[1]:.1f}/s "
                f"({len(self.outcomes) // 10} outcomes each)"
            )
        lines.append("POST -> processed " + _percentiles(self.end_to_end_seconds()))
        lines.append(
            f"table         {self.table.items} items, {len(self.table.ledger)} stamps; "
            f"dead-letter queue {self.dead_letter_depth}"
        )
        before, after = self.memory_mb
        if before is not None and after is not None:
            lines.append(
                f"runtime RSS   {before} MB before the load, {after} MB after (moto's server included)"
            )
        return lines


def _percentiles(seconds: Sequence[float]) -> str:
    parts = [f"p{p} {percentile(seconds, p) * 1000:.0f} ms" for p in (50, 95, 99)]
    return f"latency {', '.join(parts)}, max {max(seconds, default=math.nan) * 1000:.0f} ms"


def run_load(
    runtime: RuntimeProcess,
    workload: Workload,
    *,
    posters: int = 4,
    max_backlog: int | None = 50,
    time_limit: float,
    progress: Callable[[str], None] | None = None,
    progress_every: float = 5.0,
) -> LoadResult:
    """Post the workload to a started runtime (holding back while `max_backlog` messages wait), wait
    for its queue to drain, all within `time_limit` seconds; then read the worker's log and the table."""
    deadline = time.monotonic() + time_limit
    sqs = runtime.aws("sqs")
    queue_url = sqs.get_queue_url(QueueName=runtime.stack.event_queue.name)["QueueUrl"]
    dead_letter_url = sqs.get_queue_url(QueueName=runtime.stack.dead_letter_queue.name)["QueueUrl"]
    watcher_sqs = runtime.aws("sqs")  # a client of its own for the watching thread
    gate = BacklogGate(lambda: queue_depth(watcher_sqs, queue_url), max_backlog)
    stop_watching = threading.Event()
    watcher = threading.Thread(target=gate.watch, args=(stop_watching,), name="backlog", daemon=True)
    watcher.start()
    memory_before = runtime.memory_mb()
    started_at = time.time()
    try:
        posts = post_all(
            runtime.webhook_url,
            runtime.secret,
            workload.deliveries,
            posters=posters,
            deadline=deadline,
            gate=gate,
            alive=runtime.alive,
            progress=progress,
            progress_every=progress_every,
        )
    finally:
        stop_watching.set()
        watcher.join()
    posted_at = time.time()
    if not runtime.alive():
        raise LoadError(runtime_gone(runtime, len(posts)))
    if progress is not None:
        progress(f"posted {len(posts)}/{len(workload.deliveries)} in {posted_at - started_at:.1f} s")
    try:
        drained_at = wait_drained(
            sqs,
            queue_url,
            deadline=deadline,
            alive=runtime.alive,
            progress=progress,
            progress_every=progress_every,
        )
    except LoadError:
        raise LoadError(runtime_gone(runtime, len(posts))) from None
    if progress is not None:
        progress(
            f"queue drained {drained_at - started_at:.1f} s after the first post"
            if drained_at is not None
            else "queue not drained by the deadline"
        )
    # The table before the log: whatever the table holds, the log read after it has logged.
    table = table_state(runtime.aws("dynamodb"), runtime.stack.table.name)
    return LoadResult(
        workload=workload,
        posters=posters,
        max_backlog=max_backlog,
        peak_backlog=gate.peak_depth,
        started_at=started_at,
        posted_at=posted_at,
        drained_at=drained_at,
        posts=posts,
        outcomes=worker_outcomes(runtime.output()),
        dead_letter_depth=queue_depth(sqs, dead_letter_url),
        table=table,
        memory_mb=(memory_before, runtime.memory_mb()),
    )


def runtime_gone(runtime: RuntimeProcess, posted: int) -> str:
    code = runtime.stop()
    why = (
        " (SIGKILL: the kernel's out-of-memory killer, as a rule; see dmesg)"
        if code == -signal.SIGKILL
        else ""
    )
    tail = "\n".join(runtime.output().splitlines()[-5:])
    return f"the runtime exited with {code}{why} after {posted} posts; its last lines:\n{tail}"


def ledger_problems(result: LoadResult) -> list[str]:
    """Events applied twice, or stamps that disagree with what the worker says it applied (empty:
    none). Every stamp in the table must be an event the worker logged as applied (or as unmatched,
    for a dispute/refund adopted when its payment arrived); an applied event
    whose snapshot a later one replaced leaves no stamp (the final records are checked against the
    in-order result by `differences`)."""
    problems: list[str] = []
    applied = result.applied()
    twice = sorted(event for event, count in applied.items() if count > 1)
    if twice:
        problems.append(f"{len(twice)} event(s) applied more than once, e.g. {twice[:3]}")
    # A dispute or refund stored unmatched, then adopted when its payment arrived, keeps its stamp.
    adopted = {o.event_id for o in result.outcomes if o.outcome == "unmatched"}
    unlogged = result.table.ledger - set(applied) - adopted
    if unlogged:
        problems.append(
            f"the records carry {len(result.table.ledger)} event ids, the worker applied {len(applied)} "
            f"(stamps never logged as applied: {sorted(unlogged)[:3]})"
        )
    unknown = result.table.ledger - result.workload.event_ids
    if unknown:
        problems.append(f"ledger entries for events never posted: {sorted(unknown)[:3]}")
    return problems


def lost_events(result: LoadResult) -> list[str]:
    """Distinct events the worker logged no outcome for (meaningful once the queue is drained)."""
    processed = {o.event_id for o in result.outcomes}
    return sorted(result.workload.event_ids - processed)
