"""A reconcile run against Stripe and the table (DESIGN.md, Reconciler), for the Lambda, the local
runtime and the ops CLI.

A full pass has phases (domain.reconcile.pass_phases): each mode's subscription list, page by page,
compared with the records read in one BatchGetItem per page; then a scan of the table's records for the
subscriptions the lists left out (test clocks, objects Stripe no longer has), fetched by id, and for
one-time purchases and payments that have not settled; then, when enabled, the events Stripe could not
deliver. The cursor is saved after every page, so a pass over any number of subscriptions spreads over
as many runs as it needs. Repairs go to the event queue (adapters.fetched_queue); nothing here writes a
record.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import stripe
from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException

from adapters import sync_table
from adapters.event_queue import QueueUnavailable
from adapters.fetched_queue import FetchedQueue, event_message, fetched_message
from adapters.reconcile_cursor import CursorConflict, CursorStore
from adapters.settings import SettingsError, load_settings
from adapters.stripe_api import StripeApi, StripePage
from adapters.stripe_credentials import api_keys
from domain.credentials import MODES, Mode
from domain.ingress import QueueMessage, RejectedRequest
from domain.reconcile import (
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    MAX_REPORTED_DRIFTS,
    MAX_REPORTED_MESSAGES,
    OUT_OF_TIME,
    RATE_LIMIT_MAX_RETRIES,
    Counts,
    Drift,
    DriftKind,
    Everything,
    OneCustomer,
    PassCursor,
    ReconcileReport,
    Scope,
    backoff_seconds,
    customer_of_object,
    drift_of,
    object_to_verify,
    options_from,
    pass_phases,
    phase_parts,
)
from domain.records import RecordKind, Snapshot, SubscriptionRecord

SCAN_PAGE_ITEMS = 1000  # items a records page examines: bounds the fetches one page can need
VERIFIED_KINDS = ("subscription", "purchase", "payment")
# A Lambda context's remaining time keeps this much back (at most a tenth) for the last save and report.
CONTEXT_RESERVE_SECONDS = 60.0


class ReconcileNotConfigured(SettingsError):
    """No API key, or no queue for a run that repairs: the reconciler cannot run."""


class TimeBudgetSpent(Exception):
    """The run's time is up before the page could finish; it is redone by the next run."""


class RateLimitPersisted(Exception):
    """Stripe kept answering 429 through every backoff."""


# Failures that end a run where it stands: the cursor stays at the last finished page.
STOPPING_ERRORS: tuple[type[Exception], ...] = (
    stripe.StripeError,
    RateLimitPersisted,
    QueueUnavailable,
    PynamoDBException,
    BotoCoreError,
    ClientError,
)


# -- time and pacing ------------------------------------------------------------------------------


def time_budget(configured_seconds: float, remaining_millis: int | None) -> float:
    """The run's budget: the configured one, and never past the Lambda's remaining time less a reserve."""
    if remaining_millis is None:
        return configured_seconds
    remaining = remaining_millis / 1000
    return max(0.0, min(configured_seconds, remaining - min(CONTEXT_RESERVE_SECONDS, remaining / 10)))


class Deadline:
    def __init__(self, clock: Callable[[], float], seconds: float) -> None:
        self._clock = clock
        self._ends_at = clock() + seconds

    def allows(self, seconds: float) -> bool:
        """Whether something taking `seconds` would end before the deadline (a zero budget allows nothing)."""
        return self._clock() + seconds < self._ends_at


class StripePacer:
    """Every Stripe request of a run goes through here: at most `per_second`, and 429s waited out with
    exponential backoff and jitter (the SDK retries connection errors, 409s and 5xx itself)."""

    def __init__(
        self,
        per_second: float,
        deadline: Deadline,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        jitter: Callable[[], float],
    ) -> None:
        self._interval = 1.0 / per_second
        self._deadline = deadline
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._next_at = 0.0
        self.requests = 0
        self.rate_limited = 0

    def call[T](self, request: Callable[[], T]) -> T:
        retry = 0
        while True:
            self._wait_turn()
            self.requests += 1
            try:
                return request()
            except stripe.RateLimitError:
                self.rate_limited += 1
                retry += 1
                if retry > RATE_LIMIT_MAX_RETRIES:
                    raise RateLimitPersisted(f"Stripe answered 429 {retry} times in a row") from None
                wait = backoff_seconds(retry, self._jitter())
                if not self._deadline.allows(wait):
                    raise TimeBudgetSpent from None
                self._sleep(wait)

    def _wait_turn(self) -> None:
        now = self._clock()
        if now < self._next_at:
            self._sleep(self._next_at - now)
            now = self._next_at
        self._next_at = now + self._interval


# -- the table ------------------------------------------------------------------------------------


class TableRecords:
    """Records as the reconciler reads them: by key in batches, a customer's, or a scan page."""

    def subscriptions(self, objects: Iterable[Mapping[str, Any]]) -> dict[str, Snapshot]:
        """The stored snapshots of these subscriptions (BatchGetItem, 100 keys a request), by id."""
        keys = set()
        for obj in objects:
            customer, object_id = customer_of_object(obj), obj.get("id")
            if customer is not None and isinstance(object_id, str):
                keys.add((sync_table.customer_pk(customer), sync_table.record_sk("subscription", object_id)))
        found = (sync_table.snapshot_of_item(item) for item in sync_table.RecordItem.batch_get(keys))
        return {snapshot.record.id: snapshot for snapshot in found}

    def of_customer(self, customer_id: str) -> list[Snapshot]:
        query = sync_table.RecordItem.query(sync_table.customer_pk(customer_id), consistent_read=True)
        return [sync_table.snapshot_of_item(item) for item in query]

    def scan_page(self, position: str | None, limit: int) -> tuple[list[sync_table.RecordItem], str | None]:
        """One Scan request over the records the reconciler verifies; the next position, None at the end."""
        start = json.loads(position) if position else None
        results = sync_table.RecordItem.scan(
            sync_table.RecordItem.kind.is_in(*VERIFIED_KINDS), page_size=limit, last_evaluated_key=start
        )
        page = next(results.page_iter)
        items = [sync_table.RecordItem.from_raw_data(raw) for raw in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return items, json.dumps(last, sort_keys=True) if last else None


# -- one run --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Page:
    """What one page found: counts, the repairs to queue, and where the next page starts."""

    counts: Counts = field(default_factory=Counts)
    repairs: list[QueueMessage] = field(default_factory=list)
    requeues: list[QueueMessage] = field(default_factory=list)
    drifts: list[Drift] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    position: str | None = None

    def add(self, counts: Counts) -> None:
        self.counts = self.counts + counts

    def problem(self, message: str, counts: Counts) -> None:
        self.add(counts)
        self.messages.append(message)


class Reconciler:
    def __init__(
        self,
        stripe_api: StripeApi,
        queue: FetchedQueue | None,
        *,
        max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND,
        requeue_failed_events: bool = False,
        records: TableRecords | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        scan_page_items: int = SCAN_PAGE_ITEMS,
    ) -> None:
        self.stripe = stripe_api
        self.queue = queue
        self.max_requests_per_second = max_requests_per_second
        self.requeue_failed_events = requeue_failed_events
        self.records = records or TableRecords()
        self.clock = clock
        self.sleep = sleep
        self.jitter = jitter
        self.scan_page_items = scan_page_items

    @property
    def modes(self) -> tuple[Mode, ...]:
        return tuple(mode for mode in MODES if self.stripe.can_fetch(mode == "live"))

    def run(
        self,
        scope: Scope,
        *,
        dry_run: bool,
        time_budget_seconds: float,
        progress: Callable[[ReconcileReport], None] | None = None,
    ) -> ReconcileReport:
        if not dry_run and self.queue is None:
            raise ReconcileNotConfigured("a run that repairs needs the event queue (QUEUE_URL)")
        if not self.modes:
            raise ReconcileNotConfigured("no STRIPE_API_KEY configured: nothing to reconcile against")
        run = _Run(self, dry_run, Deadline(self.clock, time_budget_seconds), progress)
        if isinstance(scope, OneCustomer):
            return run.customer(scope.customer_id)
        return run.everything()


class _Run:
    def __init__(
        self,
        reconciler: Reconciler,
        dry_run: bool,
        deadline: Deadline,
        progress: Callable[[ReconcileReport], None] | None,
    ) -> None:
        self.r = reconciler
        self.dry_run = dry_run
        self.deadline = deadline
        self.progress = progress
        self.pacer = StripePacer(
            reconciler.max_requests_per_second,
            deadline,
            reconciler.clock,
            reconciler.sleep,
            reconciler.jitter,
        )
        self.counts = Counts()
        self.pages = 0
        self.drifts: list[Drift] = []
        self.messages: list[str] = []
        self.slowest_page = 0.0
        self.scope = "everything"
        self.cursor: PassCursor | None = None

    # -- scopes ---------------------------------------------------------------------------------

    def everything(self) -> ReconcileReport:
        store = CursorStore(dry_run=self.dry_run)
        try:
            cursor = store.load()
            if cursor is None or cursor.done:
                pass_id = f"{int(self.r.clock())}-{uuid.uuid4().hex[:8]}"
                fresh = PassCursor.start(
                    pass_id,
                    pass_phases(self.r.modes),
                    int(self.r.clock()),
                    cursor.version if cursor else None,
                )
                cursor = store.save(fresh)
        except CursorConflict as error:
            return self.report(complete=False, stopped=str(error))
        except STOPPING_ERRORS as error:
            return self.report(complete=False, stopped=self.stop_error(error))
        self.cursor = cursor
        seen: set[str] | None = None
        while not cursor.done:
            if not self.deadline.allows(self.slowest_page):
                return self.report(complete=False, stopped=OUT_OF_TIME)
            started = self.r.clock()
            try:
                kind, mode = phase_parts(cursor.phase)
                if kind == "records":
                    if seen is None:
                        seen = store.seen(cursor.pass_id)
                    page = self.records_page(cursor.position, seen)
                elif kind == "events" and not self.r.requeue_failed_events:
                    page = _Page()  # re-queueing failed events is switched off
                elif mode not in self.r.modes:
                    page = _Page()
                    page.problem(
                        f"phase {cursor.phase} skipped: no {mode}-mode API key now", Counts(errors=1)
                    )
                elif kind == "subscriptions":
                    page = self.subscriptions_page(mode == "live", cursor.position)
                else:
                    page = self.events_page(mode == "live", cursor.position)
                self.send(page)
                if page.listed:
                    store.add_seen(cursor.pass_id, cursor.pages, page.listed, int(self.r.clock()))
                cursor = store.save(cursor.after_page(page.position, page.counts, int(self.r.clock())))
            except TimeBudgetSpent:
                return self.report(complete=False, stopped=OUT_OF_TIME)
            except CursorConflict as error:
                return self.report(complete=False, stopped=str(error))
            except STOPPING_ERRORS as error:
                return self.report(complete=False, stopped=self.stop_error(error))
            self.cursor = cursor
            self.finished(page, started)
        return self.report(complete=True)

    def customer(self, customer_id: str) -> ReconcileReport:
        """One customer: their subscriptions in every mode, against their records; no cursor."""
        self.scope = customer_id
        try:
            stored = self.r.records.of_customer(customer_id)
            subscriptions = {s.record.id: s for s in stored if isinstance(s.record, SubscriptionRecord)}
            listed: set[str] = set()
            for mode in self.r.modes:
                position: str | None = None
                while True:
                    if not self.deadline.allows(self.slowest_page):
                        return self.report(complete=False, stopped=OUT_OF_TIME)
                    started = self.r.clock()
                    page = self.subscriptions_page(mode == "live", position, customer_id, subscriptions)
                    listed.update(page.listed)
                    self.send(page)
                    self.finished(page, started)
                    if page.position is None:
                        break
                    position = page.position
            started = self.r.clock()
            page = _Page()
            for snapshot in stored:
                if snapshot.record.id not in listed:
                    self.verify(page, snapshot)
            self.send(page)
            self.finished(page, started)
        except TimeBudgetSpent:
            return self.report(complete=False, stopped=OUT_OF_TIME)
        except STOPPING_ERRORS as error:
            return self.report(complete=False, stopped=self.stop_error(error))
        return self.report(complete=True)

    # -- pages ----------------------------------------------------------------------------------

    def subscriptions_page(
        self,
        livemode: bool,
        position: str | None,
        customer: str | None = None,
        known: Mapping[str, Snapshot] | None = None,
    ) -> _Page:
        """One list page compared with its records: read in one BatchGetItem, or `known` already."""
        try:
            fetched_ms, listing = self.pacer.call(
                lambda: (
                    self.now_ms(),
                    self.r.stripe.list_subscriptions(livemode, starting_after=position, customer=customer),
                )
            )
        except stripe.InvalidRequestError as error:
            if customer is not None and error.code == "resource_missing":
                return _Page()  # a customer of the other mode
            raise
        stored = self.r.records.subscriptions(listing.data) if known is None else known
        page = _Page(position=_next_position(listing))
        for obj in listing.data:
            self.compare(page, "subscription", obj, stored.get(str(obj.get("id"))), fetched_ms)
        page.listed = [str(obj["id"]) for obj in listing.data if obj.get("id")]
        return page

    def records_page(self, position: str | None, seen: set[str]) -> _Page:
        items, following = self.r.records.scan_page(position, self.r.scan_page_items)
        page = _Page(position=following)
        for item in items:
            if item.kind == "subscription" and item.sk.partition("#")[2] in seen:
                continue  # compared when its list page was
            try:
                snapshot = sync_table.snapshot_of_item(item)
            except (ValueError, TypeError, KeyError) as error:
                page.problem(f"record {item.pk} {item.sk} unreadable: {error}", Counts(errors=1))
                continue
            self.verify(page, snapshot)
        return page

    def events_page(self, livemode: bool, position: str | None) -> _Page:
        listing = self.pacer.call(lambda: self.r.stripe.list_failed_events(livemode, starting_after=position))
        page = _Page(position=_next_position(listing))
        for event in listing.data:
            try:
                page.requeues.append(event_message(event))
            except RejectedRequest as error:
                page.problem(f"event {event.get('id')} not re-queued: {error.reason}", Counts(errors=1))
                continue
            page.add(Counts(failed_events=1))
        return page

    # -- objects --------------------------------------------------------------------------------

    def verify(self, page: _Page, snapshot: Snapshot) -> None:
        """Fetch by id what a stored record says, when the lists did not show it or it has not settled."""
        record = snapshot.record
        unlisted_subscription = isinstance(record, SubscriptionRecord)
        object_type = "subscription" if unlisted_subscription else object_to_verify(record)
        if object_type is None:
            return
        if not self.r.stripe.can_fetch(record.livemode):
            page.add(Counts(skipped=1))
            return
        if not self.deadline.allows(0):
            raise TimeBudgetSpent
        try:
            fetched_ms, obj = self.pacer.call(
                lambda: (
                    self.now_ms(),
                    self.r.stripe.fetch_object(object_type, record.id, record.livemode, snapshot.account),
                )
            )
        except stripe.InvalidRequestError as error:
            if error.http_status != 404:
                raise
            page.problem(
                f"{object_type} {record.id}: Stripe answers 404; its record is left as it is",
                Counts(not_found=1),
            )
            return
        self.compare(page, record.kind, obj, snapshot, fetched_ms, unlisted=unlisted_subscription)

    def compare(
        self,
        page: _Page,
        kind: RecordKind,
        obj: Mapping[str, Any],
        stored: Snapshot | None,
        fetched_ms: int,
        *,
        unlisted: bool = False,
    ) -> None:
        try:
            drift = drift_of(kind, obj, stored, fetched_ms // 1000)
            account = stored.account if stored is not None else None
            repair = fetched_message(obj, fetched_ms, account) if drift is not None else None
        except ValueError as error:  # MalformedEvent, ObjectTooLarge
            page.problem(f"{obj.get('object')} {obj.get('id')}: {error}", Counts(errors=1))
            return
        page.add(Counts(checked=1))
        if drift is None or repair is None:
            return
        if unlisted and drift is DriftKind.STALE:
            drift = DriftKind.EXTRA
        page.add(Counts.of_drift(drift))
        page.repairs.append(repair)
        page.drifts.append(
            Drift(
                drift,
                str(obj.get("object")),
                str(obj["id"]),
                customer_of_object(obj),
                bool(obj.get("livemode")),
            )
        )

    # -- bookkeeping ----------------------------------------------------------------------------

    def send(self, page: _Page) -> None:
        if self.dry_run or not (page.repairs or page.requeues):
            return
        assert self.r.queue is not None  # checked when the run started
        self.r.queue.send(page.repairs + page.requeues)
        page.add(Counts(repaired=len(page.repairs), events_requeued=len(page.requeues)))

    def finished(self, page: _Page, started: float) -> None:
        self.pages += 1
        self.counts = self.counts + page.counts
        self.drifts.extend(page.drifts[: MAX_REPORTED_DRIFTS - len(self.drifts)])
        self.messages.extend(page.messages[: MAX_REPORTED_MESSAGES - len(self.messages)])
        self.slowest_page = max(self.slowest_page, self.r.clock() - started)
        if self.progress is not None:
            self.progress(self.report(complete=False))

    def stop_error(self, error: Exception) -> str:
        self.counts = self.counts + Counts(errors=1)
        message = f"{type(error).__name__}: {error}"
        if len(self.messages) < MAX_REPORTED_MESSAGES:
            self.messages.append(message)
        return message

    def now_ms(self) -> int:
        return int(self.r.clock() * 1000)

    def report(self, *, complete: bool, stopped: str | None = None) -> ReconcileReport:
        cursor = self.cursor
        return ReconcileReport(
            scope=self.scope,
            dry_run=self.dry_run,
            counts=self.counts,
            pages=self.pages,
            stripe_requests=self.pacer.requests,
            rate_limited=self.pacer.rate_limited,
            drifts=tuple(self.drifts),
            messages=tuple(self.messages),
            complete=complete,
            stopped=stopped,
            pass_id=cursor.pass_id if cursor else None,
            phase=cursor.phase if cursor else None,
            pass_counts=cursor.counts if cursor else None,
        )


def _next_position(listing: StripePage) -> str | None:
    if listing.has_more and listing.data:
        return str(listing.data[-1]["id"])
    return None


# -- entry point ----------------------------------------------------------------------------------


def reconcile(
    scope: Scope | None = None,
    dry_run: bool = False,
    progress: Callable[[ReconcileReport], None] | None = None,
    *,
    time_budget_seconds: float | None = None,
) -> ReconcileReport:
    """Reconcile a deployed stack or the local runtime, configured by the environment: TABLE_NAME,
    QUEUE_URL (not needed for a dry run), STRIPE_API_KEY or STRIPE_SECRET_ID, STRIPE_API_BASE,
    AWS_ENDPOINT_URL, and RECONCILE_* (domain.reconcile.options_from).

    `scope`: Everything() (the default; resumes the pass where the last run left it) or
    OneCustomer("cus_…"). `dry_run`: report drift without queueing repairs (a full dry run keeps a
    cursor of its own). `progress` is called with the report so far after every page.
    Raises, when it cannot run at all: ReconcileNotConfigured or another SettingsError (no key, no
    queue, no TABLE_NAME), InvalidRequest (a RECONCILE_* setting), CredentialsError or
    SecretsUnavailable (the Stripe secret). Errors met during the run end it and are in the report.
    """
    options = options_from(os.environ)
    settings = load_settings()
    keys = api_keys()
    if not keys:
        raise ReconcileNotConfigured("no STRIPE_API_KEY configured: nothing to reconcile against")
    if not dry_run and not settings.queue_url:
        raise ReconcileNotConfigured("QUEUE_URL is not set (a dry run needs none)")
    bind_table(settings.table_name)
    reconciler = Reconciler(
        StripeApi(keys, settings.stripe_api_base),
        FetchedQueue(settings.queue_url) if settings.queue_url else None,
        max_requests_per_second=options.max_requests_per_second,
        requeue_failed_events=options.requeue_failed_events,
    )
    return reconciler.run(
        scope or Everything(),
        dry_run=dry_run,
        time_budget_seconds=options.time_budget_seconds
        if time_budget_seconds is None
        else time_budget_seconds,
        progress=progress,
    )


def bind_table(table_name: str) -> None:
    """Point the models at the table (and at AWS_ENDPOINT_URL when set, as the local runtime does)."""
    host = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or None
    sync_table.configure(table_name, host=host)
