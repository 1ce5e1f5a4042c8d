"""Load on the local runtime: many customers' signed events, shuffled and duplicated, posted at once.

Used by tests/e2e/test_load.py (a reduced size, in `make test`) and bench/load.py (`make bench`, the
full size). The pieces:

* `build_workload`: one history per distinct customer (a story of events.scenarios, or one
  subscription's snapshots from events.stripe.objects), a share of the events delivered twice,
  every delivery shuffled across and within customers;
* `RuntimeProcess`: `python -m local_runtime` as a subprocess on spare loopback ports, LOG_LEVEL=DEBUG
  so that the functions' JSON log lines (with millisecond timestamps) are in its output;
* `run_load`: a few poster threads sign each body with the runtime's secret and POST it, held back
  while the event queue holds `max_backlog` messages, then the queue is watched until it is drained;
  everything is bounded by one deadline;
* `in_order_state` / `differences`: the final table against the same histories applied one customer
  at a time, in order, by `domain.sync.EventApplier` on a store the caller gives (tests' MemoryStore).

Latency. Stale and duplicate deliveries write nothing, so "the entitlements item reflects the event"
cannot be observed for them. An event counts as processed when the worker logs its outcome (applied,
stale, duplicate, ignored): for an applied event that line follows the committed transaction, so it is
when the item reflects it. End-to-end latency is, per distinct event, the first POST to the first
outcome. Posting as fast as the worker drains, most of it is time spent queued behind the backlog
(about max_backlog / the worker's rate), which is why the worker's throughput is reported beside it.

Scenarios left out: disputes name no customer and are retried until their purchase arrives, which a
backlog of thousands can delay past maxReceiveCount (they would be parked, by design); a guest
Checkout has no customer whose state could be compared.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from adapters.settings import DEFAULT_RULES_FILE, load_rules
from adapters.sync_table import (
    EntitlementsItem,
    LookupItem,
    RecordItem,
    SyncItem,
    entitlements_of,
    snapshot_of_item,
)
from domain.entitlements import EntitlementRules
from domain.records import RecordKind, Snapshot, record_to_dict
from domain.sync import CustomerState, CustomerStore, EventApplier, StoredEntitlements
from events import lambda_events, scenarios
from events.stripe import objects as samples
from local_runtime.config import LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY, LOOPBACK
from local_runtime.template import LOCAL_REGION, LocalStack, read_template

type JsonObject = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_PATH = "/webhooks/stripe"
# Worker outcomes that mean "done with this delivery" (handlers.worker logs one per message).
PROCESSED_OUTCOMES = frozenset({"applied", "stale", "duplicate", "ignored", "guest", "unmatched"})
LOAD_SCENARIOS = tuple(
    name
    for name in scenarios.SCENARIOS
    if name
    not in {"purchase_dispute_lost", "purchase_dispute_won", "guest_checkout", "guest_purchase_disputed"}
)
# Variables of the caller's shell that must not reach the runtime under load.
SCRUBBED_VARIABLES = (
    "STRIPE_API_KEY",
    "STRIPE_SECRET_ID",
    "STRIPE_API_BASE",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "LOG_LEVEL",
    "ENTITLEMENT_RULES_FILE",
    "LOCAL_VISIBILITY_TIMEOUT",
)
HEALTH_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0
POST_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.25


class LoadError(RuntimeError):
    """The load run cannot go on (the runtime did not start, or died); the message says why."""


# -- the workload -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerHistory:
    customer_id: str
    scenario: str
    events: tuple[JsonObject, ...]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST: the event and its exact bytes."""

    event_id: str
    customer_id: str
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Workload:
    histories: tuple[CustomerHistory, ...]
    deliveries: tuple[Delivery, ...]  # in posting order

    @property
    def event_ids(self) -> frozenset[str]:
        return frozenset(str(e["id"]) for h in self.histories for e in h.events)

    @property
    def distinct_events(self) -> int:
        return sum(len(h.events) for h in self.histories)

    @property
    def duplicates(self) -> int:
        return len(self.deliveries) - self.distinct_events


def load_customer_id(index: int, prefix: str = "cus") -> str:
    """`cus_Load000000042`: distinct per index, the length of a real id."""
    return f"{prefix}_Load{index:010d}"


def customer_history(index: int, scenario: str) -> CustomerHistory:
    """Scenario `scenario` for customer number `index`, with its own customer, user and ids."""
    params = replace(
        scenarios.DEFAULT_PARAMS,
        customer_id=load_customer_id(index),
        user_id=f"user_load_{index}",
        # The Accounts v2 variant replaces the customer id with this one: it must be distinct too.
        accounts_v2_customer=load_customer_id(index, "acct"),
    )
    built = scenarios.build(scenario, params)
    if built.customer_id is None:
        raise ValueError(f"scenario {scenario} has no customer: its state cannot be compared")
    return CustomerHistory(built.customer_id, scenario, tuple(built.events))


def scenario_history(index: int) -> CustomerHistory:
    """The scenarios of LOAD_SCENARIOS in turn, one per customer."""
    return customer_history(index, LOAD_SCENARIOS[index % len(LOAD_SCENARIOS)])


# Where a subscription may go next (Stripe's lifecycle); canceled and incomplete_expired end it.
_NEXT_STATUSES: Mapping[str, tuple[samples.SubscriptionStatus, ...]] = {
    "incomplete": ("active", "active", "incomplete_expired"),
    "trialing": ("active", "active", "past_due", "paused", "canceled"),
    "active": ("active", "active", "active", "past_due", "canceled"),
    "past_due": ("active", "active", "unpaid", "canceled"),
    "unpaid": ("active", "canceled"),
    "paused": ("active", "canceled"),
}
_PLANS = (
    samples.PriceSpec("price_LoadBasicMonthly", "prod_LoadBasic", "basic_monthly", 900),
    samples.PriceSpec("price_LoadProMonthly", "prod_LoadPro", "pro_monthly", 2900),
    samples.PriceSpec("price_LoadTeamMonthly", "prod_LoadTeam", "team_monthly", 9900),
)


def subscription_history(
    index: int, length: int = 10, start: int = scenarios.DEFAULT_START
) -> CustomerHistory:
    """customer.created, then one subscription through `length - 1` snapshots a day apart: a random
    (seeded by `index`) walk through Stripe's statuses with plan changes and monthly renewals.

    Many snapshots of one object: delivered shuffled, most of them are stale, so the table (and
    moto's cost per transaction, which grows with it) stays small for the number of events.
    """
    if length < 2:
        raise ValueError("a subscription history has a customer and at least one subscription event")
    rng = random.Random(f"load-subscription-{index}")  # reproducible, not a secret  # noqa: S311  # nosec B311
    ids = samples.IdFactory(f"load-subscription-{index}")
    customer = load_customer_id(index)
    subscription_id = samples.derived_id("sub", customer)
    events: list[JsonObject] = [
        samples.event(
            ids,
            "customer.created",
            samples.customer(ids, id=customer, created=start, metadata={"user_id": f"user_load_{index}"}),
            created=start,
        )
    ]
    status: samples.SubscriptionStatus = rng.choice(("incomplete", "trialing"))
    plan = rng.choice(_PLANS)
    period_start, period_end = start, scenarios.add_months(start, 1)
    for step in range(1, length):
        created = start + step * scenarios.DAY
        if step > 1:
            choices = _NEXT_STATUSES[status]
            if step < length - 1:  # the end comes last, so that every snapshot is a real one
                choices = tuple(c for c in choices if c not in ("canceled", "incomplete_expired")) or (
                    status,
                )
            status = rng.choice(choices)
            if rng.random() < 0.2:
                plan = rng.choice(_PLANS)
        while created >= period_end:
            period_start, period_end = period_end, scenarios.add_months(period_end, 1)
        ended = status in ("canceled", "incomplete_expired")
        obj = samples.subscription(
            ids,
            id=subscription_id,
            customer=customer,
            items=[samples.ItemSpec(plan)],
            status=status,
            created=start,
            period_start=period_start,
            period_end=period_end,
            canceled_at=created if ended else None,
            ended_at=created if ended else None,
            cancel_at_period_end=status == "active" and rng.random() < 0.1,
            metadata={"user_id": f"user_load_{index}"},
        )
        kind = "created" if step == 1 else "deleted" if ended else "updated"
        events.append(samples.event(ids, f"customer.subscription.{kind}", obj, created=created))
    return CustomerHistory(customer, "subscription_history", tuple(events))


def build_workload(
    customers: int,
    *,
    history: Callable[[int], CustomerHistory] = scenario_history,
    duplicate_share: float = 0.1,
    seed: int = 0,
) -> Workload:
    """`customers` histories (`history(index)` for each), `duplicate_share` of the events delivered
    twice, every delivery in a random order (a seeded one: the same arguments give the same run)."""
    if customers < 1:
        raise ValueError("at least one customer")
    if not 0 <= duplicate_share <= 1:
        raise ValueError("duplicate_share is a fraction between 0 and 1")
    rng = random.Random(seed)  # a reproducible order, not a secret  # noqa: S311  # nosec B311
    histories = tuple(history(index) for index in range(customers))
    deliveries = [
        Delivery(str(event["id"]), history.customer_id, scenarios.render(event))
        for history in histories
        for event in history.events
    ]
    deliveries += rng.sample(deliveries, round(len(deliveries) * duplicate_share))
    rng.shuffle(deliveries)  # across customers and, as Stripe does not promise order, within them
    return Workload(histories, tuple(deliveries))


# -- the expected final state -----------------------------------------------------------------------


def runtime_rules() -> EntitlementRules:
    """The rules the runtime applies (its ENTITLEMENT_RULES_FILE is scrubbed to the default)."""
    return load_rules(DEFAULT_RULES_FILE)


def in_order_state(
    workload: Workload, store: CustomerStore, rules: EntitlementRules | None = None
) -> dict[str, CustomerState]:
    """Each customer's history applied once, in order, on `store` (fresh): what the table must hold."""
    applier = EventApplier(store, rules or runtime_rules(), clock=lambda: int(time.time()))
    for history in workload.histories:
        for event in history.events:
            applier.apply(event)
    return {history.customer_id: store.load(history.customer_id) for history in workload.histories}


@dataclass(frozen=True, slots=True)
class TableState:
    customers: dict[str, CustomerState]
    ledger: frozenset[str]  # event ids the records' stamps carry (a stamp replaced the EVENT# ledger)
    users: dict[str, str]  # USER#<mode>#<user id> -> customer id
    items: int


def table_state(dynamodb: Any, table_name: str) -> TableState:
    """Every item of the runtime's table (one consistent scan), read back through the adapter's models."""
    snapshots: defaultdict[str, dict[tuple[RecordKind, str], Snapshot]] = defaultdict(dict)
    entitlements: dict[str, EntitlementsItem] = {}
    ledger: set[str] = set()
    users: dict[str, str] = {}
    count = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=table_name, ConsistentRead=True):
        for raw in page["Items"]:
            count += 1
            item = SyncItem.from_raw_data(raw)
            if isinstance(item, RecordItem) and item.pk.startswith("CUSTOMER#"):
                snapshot = snapshot_of_item(item)
                snapshots[item.pk.removeprefix("CUSTOMER#")][snapshot.key] = snapshot
                if not item.stamp_event.startswith(("fetch_", "sync_")):
                    ledger.add(item.stamp_event)
            elif isinstance(item, EntitlementsItem):
                entitlements[item.pk.removeprefix("CUSTOMER#")] = item
            elif isinstance(item, LookupItem) and item.pk.startswith("USER#"):
                users[item.pk] = item.customer_id
    customers: dict[str, CustomerState] = {}
    for customer in set(snapshots) | set(entitlements):
        stored = entitlements.get(customer)
        customers[customer] = CustomerState(
            customer,
            snapshots.get(customer, {}),
            entitlements_of(stored) if stored is not None else None,
            int(stored.records_version or 0) if stored is not None else 0,
        )
    return TableState(customers, frozenset(ledger), users, count)


def _access(stored: StoredEntitlements | None) -> object:
    """What readers act on; not `version` / `updated_at`, which count the writes a delivery order made."""
    if stored is None:
        return None
    e = stored.entitlements
    return (e.livemode, dict(e.features), e.payment_issue, e.deleted)


def _records(state: CustomerState) -> dict[tuple[RecordKind, str], object]:
    # Compared as plain data: the table's copy went through JSON (tuples come back as lists).
    return {
        key: (json.loads(json.dumps(record_to_dict(s.record))), s.stamp, s.customer_id)
        for key, s in state.snapshots.items()
    }


def differences(expected: Mapping[str, CustomerState], actual: TableState, *, limit: int = 20) -> list[str]:
    """Where the table differs from the in-order result, one line per difference (at most `limit`)."""
    found: list[str] = []
    for customer in sorted(set(expected) | set(actual.customers)):
        want, got = expected.get(customer), actual.customers.get(customer)
        if want is None or got is None:
            found.append(f"{customer}: {'not expected' if want is None else 'missing'} in the table")
            continue
        if _access(want.entitlements) != _access(got.entitlements):
            found.append(
                f"{customer}: entitlements {_access(got.entitlements)!r}, in order {_access(want.entitlements)!r}"
            )
        wanted, stored = _records(want), _records(got)
        for key in sorted(set(wanted) | set(stored)):
            if wanted.get(key) != stored.get(key):
                found.append(f"{customer}: record {key} is {stored.get(key)!r}, in order {wanted.get(key)!r}")
        if len(found) >= limit:
            break
    return found[:limit]


# -- the runtime --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class RuntimeProcess:
    """`python -m local_runtime` on spare loopback ports, its output in `log`; stopped with Ctrl-C."""

    def __init__(
        self,
        log: Path,
        secret: str,
        *,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.log = log
        self.secret = secret
        self.port = free_port()
        self.aws_port = free_port()
        self.stack: LocalStack = read_template()
        self._settings = dict(settings or {})
        self._process: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    @property
    def webhook_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{WEBHOOK_PATH}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_VARIABLES}
        env.update(
            PORT=str(self.port),
            AWS_PORT=str(self.aws_port),
            STRIPE_WEBHOOK_SECRET=self.secret,
            LOG_LEVEL="DEBUG",  # the functions' JSON lines, with their millisecond timestamps
            PYTHONUNBUFFERED="1",
        )
        env.update(self._settings)
        with self.log.open("wb") as sink:
            self._process = subprocess.Popen(  # our own module, fixed arguments  # nosec B603
                [sys.executable, "-m", "local_runtime"],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        while not self._healthy():
            if self._process.poll() is not None:
                raise LoadError(f"the runtime exited with {self._process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise LoadError(f"the runtime did not answer /health within {HEALTH_TIMEOUT_SECONDS:.0f} s")
            time.sleep(POLL_SECONDS)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.port}/health", timeout=2) as answer:  # nosec B310
                return bool(answer.status == 200)
        except OSError:
            return False

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def memory_mb(self) -> int | None:
        """Resident memory of the runtime and its children (moto's server), from Linux's /proc; None
        where that cannot be read."""
        if self._process is None:
            return None
        total = 0
        for pid in [self._process.pid, *_children(self._process.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
            except OSError:
                return None
            line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), None)
            if line is None:
                return None
            total += int(line.split()[1])
        return total // 1024

    def stop(self) -> int | None:
        process = self._process
        if process is None:
            return self.exit_code
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.exit_code = process.returncode
        self._process = None
        return self.exit_code

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def aws(self, service: str) -> Any:
        import boto3  # noqa: PLC0415 - only with a runtime to talk to

        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=f"http://{LOOPBACK}:{self.aws_port}",
            region_name=LOCAL_REGION,
            aws_access_key_id=LOCAL_ACCESS_KEY,
            aws_secret_access_key=LOCAL_SECRET_KEY,
        )


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    except OSError:
        return []
    return [int(child) for child in text.split()]


# -- posting and draining -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Post:
    event_id: str
    sent_at: float  # wall clock (epoch seconds), comparable with the runtime's log timestamps
    seconds: float  # until the webhook's answer
    status: int  # 0: no answer (the error says why)
    error: str = ""


def post_signed(url: str, secret: str, delivery: Delivery) -> Post:
    """Sign `delivery` as Stripe does, at the current time, and POST it."""
    sent_at = time.time()
    header = lambda_events.signature_header(delivery.body, secret, int(sent_at))
    request = urllib.request.Request(  # noqa: S310 - loopback
        url,
        data=delivery.body,
        headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header},
        method="POST",
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=POST_TIMEOUT_SECONDS) as answer:  # loopback  # noqa: S310  # nosec B310
            answer.read()
            status, error = int(answer.status), ""
    except urllib.error.HTTPError as refused:
        status, error = refused.code, refused.read().decode(errors="replace")
    except OSError as failure:
        status, error = 0, f"{type(failure).__name__}: {failure}"
    return Post(delivery.event_id, sent_at, time.perf_counter() - started, status, error)


class BacklogGate:
    """Holds the posters back while the event queue holds `limit` messages or more (None: never).

    moto's SQS walks every queued message on each send and receive (measured on this runtime's moto:
    receive + delete of a batch 60 ms with 100 messages queued, 700 ms with 2,000), so an unbounded
    backlog would measure the growth of moto's list rather than the pipeline. Stripe itself pushes
    to an endpoint at the pace it answers, with retries, not all at once.
    """

    def __init__(self, depth: Callable[[], int], limit: int | None) -> None:
        self._depth = depth
        self.limit = limit
        self.last_depth = 0
        self.peak_depth = 0
        self._open = threading.Event()
        self._open.set()

    def watch(self, stop: threading.Event) -> None:
        while self.limit is not None and not stop.is_set():
            try:
                self.last_depth = self._depth()
            except Exception:  # an unanswered poll (the runtime busy or gone): keep the gate as it is
                stop.wait(POLL_SECONDS)
                continue
            self.peak_depth = max(self.peak_depth, self.last_depth)
            if self.last_depth < self.limit:
                self._open.set()
            else:
                self._open.clear()
            stop.wait(POLL_SECONDS)

    def wait(self, deadline: float) -> bool:
        """True once posting may go on; False at `deadline` (time.monotonic)."""
        return self._open.wait(max(0.0, deadline - time.monotonic()))


def post_all(
    url: str,
    secret: str,
    deliveries: Sequence[Delivery],
    *,
    posters: int,
    deadline: float,
    gate: BacklogGate | None = None,
    alive: Callable[[], bool] = lambda: True,
    progress: Callable[[str], None] | None = None,
    progress_every: float = 5.0,
) -> list[Post]:
    """POST every delivery from `posters` threads, in order as they take them; none after `deadline`
    (time.monotonic), nor once a post went unanswered and `alive()` says the runtime is gone.
    Returns the posts made, in no particular order."""
    posts: list[Post] = []
    lock = threading.Lock()
    taken = 0
    next_report = time.monotonic() + progress_every

    def poster() -> None:
        nonlocal taken, next_report
        while time.monotonic() < deadline:
            if gate is not None and not gate.wait(deadline):
                return
            with lock:
                if taken >= len(deliveries):
                    return
                delivery = deliveries[taken]
                taken += 1
            post = post_signed(url, secret, delivery)
            if post.status == 0 and not alive():
                with lock:
                    posts.append(post)
                return
            with lock:
                posts.append(post)
                if progress is not None and time.monotonic() >= next_report:
                    next_report = time.monotonic() + progress_every
                    queued = f", queue {gate.last_depth}" if gate is not None and gate.limit else ""
                    progress(f"posted {len(posts)}/{len(deliveries)}{queued}")

    threads = [threading.Thread(target=poster, name=f"poster-{n}", daemon=True) for n in range(posters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A poster finishes its last request within POST_TIMEOUT_SECONDS of the deadline.
        thread.join(max(0.0, deadline - time.monotonic()) + POST_TIMEOUT_SECONDS + 1)
    with lock:
        return list(posts)


def queue_depth(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def wait_drained(
    sqs: Any,
    queue_url: str,
    *,
    deadline: float,
    alive: Callable[[], bool],
    progress: Callable[[str], None] | None = None,
    progress_every: float = 5.0,
) -> float | None:
    """The wall time when the queue was first seen empty, or None at `deadline` (time.monotonic)."""
    next_report = time.monotonic() + progress_every
    while time.monotonic() < deadline:
        if not alive():
            raise LoadError("the runtime stopped while the queue was draining")
        depth = queue_depth(sqs, queue_url)
        if depth == 0:
            return time.time()
        if progress is not None and time.monotonic() >= next_report:
            next_report = time.monotonic() + progress_every
            progress(f"queue: {depth} message(s) left")
        time.sleep(POLL_SECONDS)
    return None


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
