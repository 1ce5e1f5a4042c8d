"""A reconcile run against Stripe and the table (DESIGN.md, Reconciler), for the Lambda, the local
runtime and the ops CLI.

A full pass has phases (domain.reconcile.pass_phases). For each mode, and in it for the platform and
each Connect account that has records (with its Stripe-Account): the subscription list, page by page,
compared with the records read in one BatchGetItem per page; the events Stripe could not deliver since
the pass's checkpoint; the events of every other kind of record since the checkpoint (purchases,
payments, refunds, disputes, customers, Entitlements summaries), each checked against the ledger and
its record, and queued again as Stripe sent it when the table lacks its effect. Then a scan of the
table's records: subscriptions the lists left out (test clocks, objects Stripe no longer has) and
unsettled purchases, payments and open disputes are fetched by id, Stripe Entitlements summaries are
compared with the customer's active entitlements. A backfill (domain.reconcile.backfill_phases) lists
every object that can grant access and compares it the same way. The cursor is saved after every page,
so a pass of any size spreads over as many runs as it needs. Repairs go to the event queue
(adapters.fetched_queue); nothing here writes a record.
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
from adapters.stripe_api import LIST_LIMIT, StripeApi, StripePage
from adapters.stripe_credentials import api_keys
from domain.credentials import MODES, Mode
from domain.ingress import QueueMessage, RejectedRequest
from domain.reconcile import (
    BACKFILL_KINDS,
    CHANGE_EVENT_TYPES,
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    MAX_REPORTED_DRIFTS,
    MAX_REPORTED_MESSAGES,
    OUT_OF_TIME,
    RATE_LIMIT_MAX_RETRIES,
    Account,
    Backfill,
    Counts,
    Drift,
    DriftKind,
    Everything,
    OneCustomer,
    PassCursor,
    ReconcileReport,
    Scope,
    backfill_object,
    backfill_phases,
    backoff_seconds,
    customer_of_object,
    drift_of,
    event_drift,
    new_accounts,
    next_checkpoint,
    object_to_verify,
    options_from,
    pass_phases,
    phase_parts,
    same_summary,
    summary_object,
)
from domain.records import EntitlementSummaryRecord, RecordKind, Snapshot, SubscriptionRecord
from domain.stripe_objects import Ignored, parse_event, snapshot_of

SCAN_PAGE_ITEMS = 1000  # items a records page examines: bounds the fetches one page can need
VERIFIED_KINDS = ("subscription", "purchase", "payment", "dispute", "entitlement_summary")
# What each backfill phase lists (domain.reconcile.backfill_object picks what can grant access).
BACKFILL_LISTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sessions": ("/v1/checkout/sessions", {"status": "complete", "expand": ["data.line_items"]}),
    "payments": ("/v1/payment_intents", {}),
    "refunds": ("/v1/refunds", {"expand": ["data.charge"]}),
    "disputes": ("/v1/disputes", {"expand": ["data.charge"]}),
    "customers": ("/v1/customers", {}),
}
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

type Key = tuple[str, str]

# Objects that name no customer and are found through their payment (see key_of_payment_record).
PAYMENT_REFERENCING_KINDS = frozenset({"dispute", "refund"})


class TableRecords:
    """Every table read of the reconciler, in one place (so a change of the storage layout changes
    only this class): records by key in batches, ledger entries in batches, a customer's records,
    and a page of the records scan."""

    @staticmethod
    def key_of(kind: RecordKind, object_id: str, customer: str | None) -> Key | None:
        """Where the worker stores the record of an object: in its customer's partition, or for a
        purchase without a customer apart as a guest; None when the object names no customer."""
        if customer is not None:
            return sync_table.customer_pk(customer), sync_table.record_sk(kind, object_id)
        if kind == "purchase":
            return f"GUEST#{object_id}", sync_table.record_sk(kind, object_id)
        return None

    def records(self, keys: Iterable[Key]) -> dict[Key, Snapshot]:
        """The stored snapshots at these keys (BatchGetItem, 100 keys a request)."""
        wanted = set(keys)
        if not wanted:
            return {}
        found = sync_table.RecordItem.batch_get(wanted)
        return {(item.pk, item.sk): sync_table.snapshot_of_item(item) for item in found}

    def subscriptions(self, objects: Iterable[Mapping[str, Any]]) -> dict[str, Snapshot]:
        """The stored snapshots of these subscriptions, by id."""
        keys = set()
        for obj in objects:
            customer, object_id = customer_of_object(obj), obj.get("id")
            if customer is not None and isinstance(object_id, str):
                keys.add((sync_table.customer_pk(customer), sync_table.record_sk("subscription", object_id)))
        return {snapshot.record.id: snapshot for snapshot in self.records(keys).values()}

    @staticmethod
    def key_of_payment_record(snapshot: Snapshot) -> Key:
        """A dispute or refund names no customer: the worker files it under the customer its payment
        intent or charge leads to (the PAYMENT# lookups), else apart as unmatched. The table has no
        ledger since state items, so this record's stamp is what tells an applied event from a lost one."""
        record = snapshot.record
        customer = sync_table.DynamoCustomerStore().customer_of_payment(
            getattr(record, "payment_intent_id", None), getattr(record, "charge_id", None)
        )
        if customer is not None:
            return sync_table.customer_pk(customer), sync_table.record_sk(record.kind, record.id)
        return sync_table.unmatched_pk(snapshot), sync_table.record_sk(record.kind, record.id)

    def applied(self, event_ids: Iterable[str]) -> set[str]:
        """The events the ledger of a table written before state items holds (BatchGetItem, 100 a
        request); the worker writes no ledger now, so for newer events the records' stamps decide."""
        keys = {(f"EVENT#{event_id}", "EVENT") for event_id in event_ids}
        if not keys:
            return set()
        return {item.pk.removeprefix("EVENT#") for item in sync_table.LedgerItem.batch_get(keys)}

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
    accounts: set[Account] = field(default_factory=set)
    position: str | None = None

    def add(self, counts: Counts) -> None:
        self.counts = self.counts + counts

    def problem(self, message: str, counts: Counts) -> None:
        self.add(counts)
        self.messages.append(message)


@dataclass(frozen=True, slots=True)
class _Where:
    """The mode and Connect account a list phase reads, with `Stripe-Account` when an account."""

    livemode: bool
    account: str | None


class Reconciler:
    def __init__(
        self,
        stripe_api: StripeApi,
        queue: FetchedQueue | None,
        *,
        max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND,
        requeue_failed_events: bool = True,
        records: TableRecords | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        scan_page_items: int = SCAN_PAGE_ITEMS,
        user_id_key: str = "user_id",
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
        self.user_id_key = user_id_key

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
        if isinstance(scope, Backfill):
            return run.backfill(scope.since)
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
        self.requeued: set[str] = set()  # events this run queued (the failed list and the changes overlap)
        self.known_accounts: set[Account] | None = None

    # -- scopes ---------------------------------------------------------------------------------

    def everything(self) -> ReconcileReport:
        """A full pass, resumed where the last run left it. A backfill started earlier and not
        finished goes first: the scheduled runs carry it to its end."""
        if not self.dry_run:
            try:
                backfill = CursorStore(backfill=True).load()
            except STOPPING_ERRORS as error:
                return self.report(complete=False, stopped=self.stop_error(error))
            if backfill is not None and not backfill.done:
                report = self.backfill(backfill.checkpoint)
                if not report.complete:
                    return report
                self.scope = "everything"
        return self.full_pass(CursorStore(dry_run=self.dry_run), backfill=False, since=None)

    def backfill(self, since: int | None) -> ReconcileReport:
        self.scope = "backfill"
        return self.full_pass(CursorStore(dry_run=self.dry_run, backfill=True), backfill=True, since=since)

    def full_pass(self, store: CursorStore, *, backfill: bool, since: int | None) -> ReconcileReport:
        try:
            cursor = store.load()
            if cursor is None or cursor.done:
                now = int(self.r.clock())
                accounts = sorted(self.accounts(store))
                fresh_accounts: tuple[str, ...] = ()
                if backfill:
                    phases, checkpoint = backfill_phases(self.r.modes, accounts), since
                else:
                    phases = pass_phases(self.r.modes, accounts)
                    checkpoint = next_checkpoint(cursor, now)
                    fresh_accounts = new_accounts(cursor, accounts)
                fresh = PassCursor.start(
                    f"{now}-{uuid.uuid4().hex[:8]}",
                    phases,
                    now,
                    cursor.version if cursor else None,
                    checkpoint=checkpoint,
                    new_accounts=fresh_accounts,
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
                kind, mode, account = phase_parts(cursor.phase)
                where = _Where(mode == "live", account)
                if kind == "records":
                    if seen is None:
                        seen = store.seen(cursor.pass_id)
                    page = self.records_page(cursor.position, seen, store)
                elif mode not in self.r.modes:
                    page = _Page()
                    page.problem(
                        f"phase {cursor.phase} skipped: no {mode}-mode API key now", Counts(errors=1)
                    )
                elif kind == "subscriptions":
                    page = self.subscriptions_page(
                        where, cursor.position, since=cursor.checkpoint if backfill else None
                    )
                elif kind == "events" and not self.r.requeue_failed_events:
                    page = _Page()  # re-queueing failed events is switched off
                elif kind in ("events", "changes"):
                    page = self.events_page(kind, where, cursor.position, cursor.since(mode, account))
                else:
                    page = self.objects_page(kind, where, cursor.position, cursor.checkpoint)
                self.send(page)
                if page.listed and not backfill:
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

    def accounts(self, store: CursorStore) -> set[Account]:
        if self.known_accounts is None:
            self.known_accounts = store.accounts()
        return self.known_accounts

    def customer(self, customer_id: str) -> ReconcileReport:
        """One customer: their subscriptions in every mode, against their records; no cursor."""
        self.scope = customer_id
        try:
            stored = self.r.records.of_customer(customer_id)
            subscriptions = {s.record.id: s for s in stored if isinstance(s.record, SubscriptionRecord)}
            accounts = {None} | {s.account for s in stored}
            listed: set[str] = set()
            for mode in self.r.modes:
                for account in sorted(accounts, key=lambda a: a or ""):
                    position: str | None = None
                    while True:
                        if not self.deadline.allows(self.slowest_page):
                            return self.report(complete=False, stopped=OUT_OF_TIME)
                        started = self.r.clock()
                        page = self.subscriptions_page(
                            _Where(mode == "live", account),
                            position,
                            customer=customer_id,
                            known=subscriptions,
                        )
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

    # -- Stripe ---------------------------------------------------------------------------------

    def list_page(self, where: _Where, path: str, params: Mapping[str, Any]) -> tuple[int, StripePage]:
        """One page of a Stripe list (the SDK's raw request: same auth, retries and typed errors,
        without a StripeObject per field), and the time it was read (epoch ms)."""
        raw_request: Any = self.r.stripe.client(where.livemode).raw_request
        options = {"stripe_account": where.account} if where.account else {}

        def request() -> tuple[int, StripePage]:
            fetched_ms = self.now_ms()
            answer = raw_request("get", path, limit=LIST_LIMIT, **params, **options).data
            return fetched_ms, StripePage(list(answer["data"]), bool(answer["has_more"]))

        return self.pacer.call(request)

    # -- pages ----------------------------------------------------------------------------------

    def subscriptions_page(
        self,
        where: _Where,
        position: str | None,
        customer: str | None = None,
        known: Mapping[str, Snapshot] | None = None,
        since: int | None = None,
    ) -> _Page:
        """One list page compared with its records: read in one BatchGetItem, or `known` already."""
        params: dict[str, Any] = {"status": "all"}
        if position is not None:
            params["starting_after"] = position
        if customer is not None:
            params["customer" if customer.startswith("cus_") else "customer_account"] = customer
        if since is not None:
            params["created"] = {"gte": since}
        try:
            fetched_ms, listing = self.list_page(where, "/v1/subscriptions", params)
        except stripe.InvalidRequestError as error:
            if customer is not None and error.code == "resource_missing":
                return _Page()  # a customer of the other mode
            raise
        stored = self.r.records.subscriptions(listing.data) if known is None else known
        page = _Page(position=_next_position(listing))
        for obj in listing.data:
            self.compare(
                page, "subscription", obj, stored.get(str(obj.get("id"))), fetched_ms, account=where.account
            )
        page.listed = [str(obj["id"]) for obj in listing.data if obj.get("id")]
        return page

    def objects_page(self, kind: str, where: _Where, position: str | None, since: int | None) -> _Page:
        """A backfill page: the objects that can grant access, compared with their records."""
        path, params = BACKFILL_LISTS[kind]
        query: dict[str, Any] = dict(params)
        if position is not None:
            query["starting_after"] = position
        if since is not None:
            query["created"] = {"gte": since}
        fetched_ms, listing = self.list_page(where, path, query)
        page = _Page(position=_next_position(listing))
        record_kind = BACKFILL_KINDS[kind]
        chosen: list[tuple[Mapping[str, Any], Key | None]] = []
        for listed in listing.data:
            obj = backfill_object(kind, listed, self.r.user_id_key)
            if obj is None:
                continue
            chosen.append((obj, self.key_of(record_kind, obj)))
        stored = self.r.records.records(key for _, key in chosen if key is not None)
        for obj, key in chosen:
            if key is None:
                page.add(Counts(skipped=1))  # names no customer: grants nobody anything
                continue
            self.compare(page, record_kind, obj, stored.get(key), fetched_ms, account=where.account)
        return page

    def events_page(self, kind: str, where: _Where, position: str | None, since: int | None) -> _Page:
        """Events since the checkpoint (those Stripe could not deliver, or those of the records the
        subscription list does not cover), queued again when the table lacks their effect."""
        params: dict[str, Any] = (
            {"delivery_success": False} if kind == "events" else {"types": list(CHANGE_EVENT_TYPES)}
        )
        if position is not None:
            params["starting_after"] = position
        if since is not None:
            params["created"] = {"gte": since}
        _fetched_ms, listing = self.list_page(where, "/v1/events", params)
        page = _Page(position=_next_position(listing))
        if kind == "events":
            page.add(Counts(failed_events=len(listing.data)))
        candidates: list[tuple[Mapping[str, Any], Snapshot | None]] = []
        for event in listing.data:
            event_id = str(event.get("id"))
            if event_id in self.requeued:
                continue  # queued by this run's other event list
            try:
                found = snapshot_of(parse_event(event), self.r.user_id_key)
            except ValueError as error:  # MalformedEvent
                page.problem(f"event {event_id} not re-queued: {error}", Counts(errors=1))
                continue
            if isinstance(found, Ignored):
                continue  # the worker would acknowledge it and change nothing
            candidates.append((event, found if isinstance(found, Snapshot) else None))
        applied = self.r.records.applied(str(e["id"]) for e, _ in candidates)
        pending = [(e, s) for e, s in candidates if str(e["id"]) not in applied]
        keys = {id(e): self.snapshot_key(s) for e, s in pending if s is not None}
        stored = self.r.records.records(k for k in keys.values() if k is not None)
        for candidate, snapshot in candidates:
            page.add(Counts(events_checked=1))
            event_id = str(candidate["id"])
            key = keys.get(id(candidate))
            if not event_drift(candidate, event_id in applied, stored.get(key) if key else None):
                page.add(Counts(events_applied=1))
                continue
            try:
                message = event_message(candidate)
            except RejectedRequest as error:
                page.problem(f"event {event_id} not re-queued: {error.reason}", Counts(errors=1))
                continue
            page.requeues.append(message)
            self.requeued.add(event_id)
            page.add(Counts(events_lost=1, drift_event=1))
            page.drifts.append(
                Drift(
                    DriftKind.MISSING,
                    f"event {candidate.get('type')}",
                    event_id,
                    snapshot.customer_id if snapshot is not None else None,
                    bool(candidate.get("livemode")),
                )
            )
        return page

    def records_page(self, position: str | None, seen: set[str], store: CursorStore) -> _Page:
        items, following = self.r.records.scan_page(position, self.r.scan_page_items)
        page = _Page(position=following)
        for item in items:
            if item.account:
                page.accounts.add(("live" if item.livemode else "test", item.account))
            if item.kind == "subscription" and item.sk.partition("#")[2] in seen:
                continue  # compared when its list page was
            try:
                snapshot = sync_table.snapshot_of_item(item)
            except (ValueError, TypeError, KeyError) as error:
                page.problem(f"record {item.pk} {item.sk} unreadable: {error}", Counts(errors=1))
                continue
            if isinstance(snapshot.record, EntitlementSummaryRecord):
                self.verify_summary(page, snapshot)
            else:
                self.verify(page, snapshot)
        if page.accounts - self.accounts(store):
            store.add_accounts(page.accounts)  # listed with their Stripe-Account from the next pass on
            self.known_accounts = self.accounts(store) | page.accounts
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
        self.compare(
            page,
            record.kind,
            obj,
            snapshot,
            fetched_ms,
            account=snapshot.account,
            unlisted=unlisted_subscription,
        )

    def verify_summary(self, page: _Page, snapshot: Snapshot) -> None:
        """A Stripe Entitlements summary against the customer's active entitlements (one list each:
        Stripe has no account-wide list of them)."""
        record = snapshot.record
        assert isinstance(record, EntitlementSummaryRecord)
        if not self.r.stripe.can_fetch(record.livemode):
            page.add(Counts(skipped=1))
            return
        if not self.deadline.allows(0):
            raise TimeBudgetSpent
        fetched_ms, keys = self.pacer.call(
            lambda: (
                self.now_ms(),
                self.r.stripe.active_entitlement_keys(record.customer_id, record.livemode, snapshot.account),
            )
        )
        page.add(Counts(summaries_checked=1))
        if snapshot.stamp.created > fetched_ms // 1000 or same_summary(record, keys):
            return
        obj = summary_object(record.customer_id, record.livemode, keys)
        try:
            repair = fetched_message(obj, fetched_ms, snapshot.account)
        except ValueError as error:
            page.problem(f"summary of {record.customer_id}: {error}", Counts(errors=1))
            return
        page.add(Counts.of_drift(DriftKind.STALE, "entitlement_summary"))
        page.repairs.append(repair)
        page.drifts.append(
            Drift(
                DriftKind.STALE,
                "entitlements.active_entitlement_summary",
                record.customer_id,
                record.customer_id,
                record.livemode,
            )
        )

    def key_of(self, kind: RecordKind, obj: Mapping[str, Any]) -> Key | None:
        customer = customer_of_object(obj)
        if kind == "profile":
            customer = str(obj.get("id"))
        elif kind == "dispute" and customer is None:
            charge = obj.get("charge")
            customer = customer_of_object(charge) if isinstance(charge, Mapping) else None
        return self.r.records.key_of(kind, str(obj.get("id")), customer)

    def snapshot_key(self, snapshot: Snapshot) -> Key | None:
        if snapshot.customer_id is None and snapshot.record.kind in PAYMENT_REFERENCING_KINDS:
            return self.r.records.key_of_payment_record(snapshot)
        return self.r.records.key_of(snapshot.record.kind, snapshot.record.id, snapshot.customer_id)

    def compare(
        self,
        page: _Page,
        kind: RecordKind,
        obj: Mapping[str, Any],
        stored: Snapshot | None,
        fetched_ms: int,
        *,
        account: str | None,
        unlisted: bool = False,
    ) -> None:
        try:
            drift = drift_of(kind, obj, stored, fetched_ms // 1000, self.r.user_id_key)
            repair = fetched_message(obj, fetched_ms, account) if drift is not None else None
        except ValueError as error:  # MalformedEvent, ObjectTooLarge
            page.problem(f"{obj.get('object')} {obj.get('id')}: {error}", Counts(errors=1))
            return
        page.add(Counts(checked=1))
        if drift is None or repair is None:
            return
        if unlisted and drift is DriftKind.STALE:
            drift = DriftKind.EXTRA
        page.add(Counts.of_drift(drift, kind))
        page.repairs.append(repair)
        customer = str(obj.get("id")) if kind == "profile" else customer_of_object(obj)
        page.drifts.append(
            Drift(drift, str(obj.get("object")), str(obj["id"]), customer, bool(obj.get("livemode")))
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
            checkpoint=cursor.checkpoint if cursor else None,
            phases_done=cursor.phases_done if cursor else 0,
            phase_count=len(cursor.phases) if cursor else 0,
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

    `scope`: Everything() (the default; resumes the pass where the last run left it, after an
    unfinished backfill), OneCustomer("cus_…"), or Backfill(since) (resumes the backfill). `dry_run`: report drift without queueing repairs (a full dry run keeps a
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
        user_id_key=settings.rules.user_id_metadata_key,
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
