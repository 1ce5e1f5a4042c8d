"""The reconcile use case: a run of a full pass, a backfill or one customer, against the ports
(domain.reconcile.ports), like the worker's `EventApplier`.

A full pass has phases (domain.reconcile.passes.pass_phases). For each mode, and in it for the
platform and each Connect account that has records (with its Stripe-Account): the subscription list,
page by page, compared with the records read in one batch per page; the events Stripe could not
deliver since the pass's checkpoint; the events of every other kind of record since the checkpoint
(purchases, payments, refunds, disputes, customers, Entitlements summaries), each checked against the
table and queued again as Stripe sent it when the table lacks its effect. Then the table's records:
subscriptions the lists left out (test clocks, objects Stripe no longer has) and unsettled purchases,
payments and open disputes are fetched by id, Stripe Entitlements summaries are compared with the
customer's active entitlements. A backfill (backfill_phases) lists every object that can grant access
and compares it the same way. The cursor is saved after every page, so a pass of any size spreads
over as many runs as it needs. Repairs go to the event queue; nothing here writes a record.

Phases cannot block each other (domain.reconcile.skips): a Stripe failure skips the phase for this pass
(after retries with backoff when it may pass), the pass goes on, and the next pass tries the phase
again. A connected account that refuses the platform is marked and its phases are skipped; each later
run asks it once (its first phase), and the first answer clears the mark, as does an
`account.application.authorized` event in a change list. What stops a run is only what stops every
phase: the time budget, another run moving the cursor, and the failures of the table or the queue the
adapters name (`stopping_errors`); the cursor then stays at the last finished page.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

from domain.credentials import MODES, Mode
from domain.reconcile.drift import Drift
from domain.reconcile.pacing import (
    Deadline,
    RateLimitPersisted,
    StripePacer,
    TimeBudgetSpent,
    backoff_seconds,
)
from domain.reconcile.pages import SCAN_PAGE_ITEMS, Page, PageReader, Where
from domain.reconcile.passes import (
    Account,
    Counts,
    PassCursor,
    backfill_phases,
    new_accounts,
    next_checkpoint,
    pass_phases,
    phase_parts,
)
from domain.reconcile.ports import (
    CursorConflict,
    PassStore,
    PassStores,
    ReconcileTable,
    RepairQueue,
    StripeFailure,
    StripeLists,
    StripeUnavailable,
)
from domain.reconcile.report import MAX_REPORTED_DRIFTS, MAX_REPORTED_MESSAGES, OUT_OF_TIME, ReconcileReport
from domain.reconcile.request import DEFAULT_MAX_REQUESTS_PER_SECOND, Backfill, OneCustomer, Scope
from domain.reconcile.skips import TRANSIENT_RETRIES, SkippedPhase, SkipReason, skip_detail, skip_reason
from domain.records import SubscriptionRecord

# The report names this many skipped phases (a pass has at most a few per account).
MAX_REPORTED_SKIPS = 50


class ReconcileNotConfigured(ValueError):
    """No API key, or no queue for a run that repairs: the reconciler cannot run."""


class Reconciler:
    """The reconciler over its ports. `stopping_errors`: the adapters' failures that end a run where
    it stands (the table or the queue unavailable); anything else a port raises is a bug and propagates."""

    def __init__(
        self,
        stripe: StripeLists,
        queue: RepairQueue | None,
        table: ReconcileTable,
        stores: PassStores,
        *,
        max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND,
        requeue_failed_events: bool = True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        scan_page_items: int = SCAN_PAGE_ITEMS,
        user_id_key: str = "user_id",
        stopping_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.stripe = stripe
        self.queue = queue
        self.table = table
        self.stores = stores
        self.max_requests_per_second = max_requests_per_second
        self.requeue_failed_events = requeue_failed_events
        self.clock = clock
        self.sleep = sleep
        self.jitter = jitter
        self.scan_page_items = scan_page_items
        self.user_id_key = user_id_key
        self.stopping_errors = stopping_errors

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
        """Run `scope` within `time_budget_seconds`; `progress` is called with the report so far after
        every page. Raises ReconcileNotConfigured when it cannot run at all."""
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


class _Run(PageReader):
    def __init__(
        self,
        reconciler: Reconciler,
        dry_run: bool,
        deadline: Deadline,
        progress: Callable[[ReconcileReport], None] | None,
    ) -> None:
        pacer = StripePacer(
            reconciler.max_requests_per_second,
            deadline,
            reconciler.clock,
            reconciler.sleep,
            reconciler.jitter,
        )
        super().__init__(
            reconciler.stripe,
            reconciler.table,
            pacer,
            deadline,
            reconciler.clock,
            user_id_key=reconciler.user_id_key,
            scan_page_items=reconciler.scan_page_items,
        )
        self.r = reconciler
        self.dry_run = dry_run
        self.progress = progress
        self.counts = Counts()
        self.pages = 0
        self.drifts: list[Drift] = []
        self.messages: list[str] = []
        self.skipped: list[SkippedPhase] = []
        self.slowest_page = 0.0
        self.scope = "everything"
        self.cursor: PassCursor | None = None
        self.known_accounts: set[Account] | None = None
        self.marked: dict[Account, int] = {}  # deauthorized as stored (read when the pass starts)

    # -- scopes ---------------------------------------------------------------------------------

    def everything(self) -> ReconcileReport:
        """A full pass, resumed where the last run left it. A backfill started earlier and not
        finished goes first: the scheduled runs carry it to its end."""
        if not self.dry_run:
            try:
                backfill = self.r.stores(backfill=True).load()
            except self.r.stopping_errors as error:
                return self.report(complete=False, stopped=self.stop_error(error))
            if backfill is not None and not backfill.done:
                report = self.backfill(backfill.checkpoint)
                if not report.complete:
                    return report
                self.scope = "everything"
        return self.full_pass(self.r.stores(dry_run=self.dry_run), backfill=False, since=None)

    def backfill(self, since: int | None) -> ReconcileReport:
        self.scope = "backfill"
        return self.full_pass(self.r.stores(dry_run=self.dry_run, backfill=True), backfill=True, since=since)

    def full_pass(self, store: PassStore, *, backfill: bool, since: int | None) -> ReconcileReport:
        try:
            cursor = self.start(store, backfill=backfill, since=since)
        except CursorConflict as error:
            return self.report(complete=False, stopped=str(error))
        except self.r.stopping_errors as error:
            return self.report(complete=False, stopped=self.stop_error(error))
        self.cursor = cursor
        seen: set[str] | None = None
        while not cursor.done:
            if not self.deadline.allows(self.slowest_page):
                return self.report(complete=False, stopped=OUT_OF_TIME)
            started = self.r.clock()
            try:
                if seen is None and cursor.phase == "records":
                    seen = store.seen(cursor.pass_id)
                page = self.isolated_page(cursor, store, backfill=backfill, seen=seen or set())
                self.send(page)
                if page.listed and not backfill:
                    store.add_seen(cursor.pass_id, cursor.pages, page.listed, int(self.r.clock()))
                self.keep_accounts(store, page)
                cursor = store.save(cursor.after_page(page.position, page.counts, int(self.r.clock())))
            except TimeBudgetSpent:
                return self.report(complete=False, stopped=OUT_OF_TIME)
            except CursorConflict as error:
                return self.report(complete=False, stopped=str(error))
            except self.r.stopping_errors as error:
                return self.report(complete=False, stopped=self.stop_error(error))
            self.cursor = cursor
            self.finished(page, started)
        return self.report(complete=True)

    def start(self, store: PassStore, *, backfill: bool, since: int | None) -> PassCursor:
        """The stored cursor, or a new pass when there is none or the last one is done."""
        self.marked = store.deauthorized()
        self.deauthorized = {}  # filled as accounts refuse in this run; marked ones are asked once
        cursor = store.load()
        if cursor is not None and not cursor.done:
            return cursor
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
        return store.save(fresh)

    # -- one phase's page, isolated from the others ---------------------------------------------

    def isolated_page(self, cursor: PassCursor, store: PassStore, *, backfill: bool, seen: set[str]) -> Page:
        """The phase's next page; when Stripe fails it for good (or through every retry), a page that
        ends the phase for this pass and says why."""
        _kind, mode, account = phase_parts(cursor.phase)
        if mode is not None and account is not None and (mode, account) in self.deauthorized:
            since = self.deauthorized[(mode, account)]
            return self.skip(
                cursor, SkipReason.ACCOUNT_DEAUTHORIZED, f"the account refused the platform (since {since})"
            )
        retry = 0
        while True:
            try:
                page = self.phase_page(cursor, backfill=backfill, seen=seen)
            except (StripeUnavailable, RateLimitPersisted) as error:
                retry += 1
                if retry <= TRANSIENT_RETRIES:
                    self.pacer.wait(backoff_seconds(retry, self.pacer.jitter()))
                    continue
                return self.skip_failed(cursor, error, f" after {TRANSIENT_RETRIES} retries")
            except StripeFailure as error:  # Refused, or a 404 on a list
                return self.skip_failed(cursor, error, "")
            if mode is not None and account is not None:
                self.answered(store, (mode, account))
            return page

    def phase_page(self, cursor: PassCursor, *, backfill: bool, seen: set[str]) -> Page:
        kind, mode, account = phase_parts(cursor.phase)
        if kind == "records":
            return self.records_page(cursor.position, seen, marks=not self.dry_run)
        if mode not in self.r.modes:
            return self.skip(cursor, SkipReason.NO_KEY, f"no {mode}-mode API key now")
        where = Where(mode == "live", account)
        if kind == "subscriptions":
            return self.subscriptions_page(
                where,
                cursor.position,
                since=cursor.checkpoint if backfill else None,
                every_customer=backfill,
            )
        if kind == "events" and not self.r.requeue_failed_events:
            return Page()  # re-queueing failed events is switched off
        if kind in ("events", "changes"):
            return self.events_page(kind, where, cursor.position, cursor.since(mode, account))
        return self.objects_page(kind, where, cursor.position, cursor.checkpoint)

    def skip_failed(self, cursor: PassCursor, error: StripeFailure | Exception, retried: str) -> Page:
        _kind, mode, account = phase_parts(cursor.phase)
        reason = skip_reason(error, account)
        if reason is SkipReason.ACCOUNT_DEAUTHORIZED and mode is not None and account is not None:
            self.mark_deauthorized((mode, account))
        return self.skip(cursor, reason, skip_detail(error, reason) + retried)

    def skip(self, cursor: PassCursor, reason: SkipReason, detail: str) -> Page:
        """A page that ends the phase for this pass (the next pass lists it again from its start)."""
        _kind, mode, account = phase_parts(cursor.phase)
        skipped = SkippedPhase(cursor.phase, mode, account, reason, detail)
        page = Page(skipped=[skipped])
        # An account that left the platform is its owner's choice, not a fault to look into.
        errors = 0 if reason is SkipReason.ACCOUNT_DEAUTHORIZED else 1
        page.problem(skipped.message(), Counts(phases_skipped=1, errors=errors))
        return page

    def answered(self, store: PassStore, account: Account) -> None:
        """A marked account answered again: it is reconciled like any other from now on."""
        if account in self.marked:
            store.set_deauthorized(account, None)
            del self.marked[account]

    def keep_accounts(self, store: PassStore, page: Page) -> None:
        """Remember accounts the records phase found, and the authorization the run learnt."""
        if page.accounts - self.accounts(store):
            store.add_accounts(page.accounts)  # listed with their Stripe-Account from the next pass on
            self.known_accounts = self.accounts(store) | page.accounts
        for account, since in self.deauthorized.items():
            if account not in self.marked:
                store.set_deauthorized(account, since)
                self.marked[account] = since
        for account, authorized in self.authorization_changes.items():
            if authorized and account in self.marked:
                store.set_deauthorized(account, None)
                self.marked.pop(account)
            elif not authorized and account not in self.marked:
                self.deauthorized.setdefault(account, int(self.r.clock()))
                store.set_deauthorized(account, self.deauthorized[account])
                self.marked[account] = self.deauthorized[account]
        self.authorization_changes.clear()

    def accounts(self, store: PassStore) -> set[Account]:
        if self.known_accounts is None:
            self.known_accounts = store.accounts()
        return self.known_accounts

    def customer(self, customer_id: str) -> ReconcileReport:
        """One customer: their subscriptions in every mode, against their records; no cursor."""
        self.scope = customer_id
        try:
            stored = self.table.of_customer(customer_id)
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
                            Where(mode == "live", account),
                            position,
                            customer=customer_id,
                            known=subscriptions,
                            every_customer=True,
                        )
                        listed.update(page.listed)
                        self.send(page)
                        self.finished(page, started)
                        if page.position is None:
                            break
                        position = page.position
            started = self.r.clock()
            page = Page()
            for snapshot in stored:
                if snapshot.record.id not in listed:
                    self.verify(page, snapshot)
            self.send(page)
            self.finished(page, started)
        except TimeBudgetSpent:
            return self.report(complete=False, stopped=OUT_OF_TIME)
        except (StripeFailure, RateLimitPersisted) as error:  # one customer has no phases to skip to
            return self.report(complete=False, stopped=self.stop_error(error))
        except self.r.stopping_errors as error:
            return self.report(complete=False, stopped=self.stop_error(error))
        return self.report(complete=True)

    # -- bookkeeping ----------------------------------------------------------------------------

    def send(self, page: Page) -> None:
        if self.dry_run or not (page.repairs or page.requeues):
            return
        assert self.r.queue is not None  # checked when the run started
        self.r.queue.send(page.repairs + page.requeues)
        page.add(Counts(repaired=len(page.repairs), events_requeued=len(page.requeues)))

    def finished(self, page: Page, started: float) -> None:
        self.pages += 1
        self.counts = self.counts + page.counts
        self.drifts.extend(page.drifts[: MAX_REPORTED_DRIFTS - len(self.drifts)])
        self.messages.extend(page.messages[: MAX_REPORTED_MESSAGES - len(self.messages)])
        self.skipped.extend(page.skipped[: MAX_REPORTED_SKIPS - len(self.skipped)])
        self.slowest_page = max(self.slowest_page, self.r.clock() - started)
        if self.progress is not None:
            self.progress(self.report(complete=False))

    def stop_error(self, error: Exception) -> str:
        self.counts = self.counts + Counts(errors=1)
        message = f"{type(error).__name__}: {error}"
        if len(self.messages) < MAX_REPORTED_MESSAGES:
            self.messages.append(message)
        return message

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
            skipped=tuple(self.skipped),
        )
