"""One page of a pass: a Stripe list page (or a page of the table's records) compared with what the
table holds, and the repairs that page calls for. Read through the ports (domain.reconcile.ports);
`PageReader` is the half of a run (domain.reconcile.run) that reads and compares, the other half moves
the cursor and decides what a failure skips."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.credentials import Mode
from domain.ingress import QueueMessage, RejectedRequest
from domain.reconcile.backfill import BACKFILL_KINDS, backfill_object
from domain.reconcile.drift import (
    Drift,
    DriftKind,
    customer_of_object,
    drift_of,
    event_drift,
    object_to_verify,
    same_summary,
    summary_object,
)
from domain.reconcile.pacing import Deadline, StripePacer, TimeBudgetSpent
from domain.reconcile.passes import CHANGE_EVENT_TYPES, Account, Counts
from domain.reconcile.ports import (
    Key,
    NotFound,
    ReconcileTable,
    Refused,
    StripeLists,
    StripePage,
)
from domain.reconcile.repairs import event_message, fetched_message
from domain.reconcile.skips import SkippedPhase, SkipReason, skip_detail, skip_reason
from domain.records import EntitlementSummaryRecord, RecordKind, Snapshot, SubscriptionRecord
from domain.stripe_objects import Ignored, customer_of, gone_object, parse_event, snapshot_of

Json = Mapping[str, Any]
SCAN_PAGE_ITEMS = 1000  # items a records page examines: bounds the fetches one page can need
# What each backfill phase lists (domain.reconcile.backfill.backfill_object picks what can grant access).
BACKFILL_LIST_REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    # The payment's charge says when the session was paid: its term counts from then.
    "sessions": (
        "/v1/checkout/sessions",
        {"status": "complete", "expand": ["data.line_items", "data.payment_intent.latest_charge"]},
    ),
    "payments": ("/v1/payment_intents", {}),
    "refunds": ("/v1/refunds", {"expand": ["data.charge"]}),
    "disputes": ("/v1/disputes", {"expand": ["data.charge"]}),
    "customers": ("/v1/customers", {}),
}
# Connect events that say whether the platform may act for a connected account again.
ACCOUNT_AUTHORIZATION_EVENTS = {
    "account.application.authorized": True,
    "account.application.deauthorized": False,
}
# The active entitlements list as a refusal names it (PageReader.refused: not asked again in a run).
ACTIVE_ENTITLEMENTS = "entitlements.active_entitlement"
# Subscriptions that grant nothing again: their customers' active entitlements are not read for them.
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})
# The event ledger (EVENT#… items) of tables written before state items: no worker writes it since
# December 2026 and its items expire 45 days after their event, and a listed event goes back 30 days.
# From this date (2027-01-01T00:00:00Z) a pass no longer reads it; what it told (an event applied
# whose record is older) is then told by the records' stamps, or the event is queued once more and the
# worker finds it a duplicate (ARCHITECTURE.md, "The reconciler").
LEDGER_READ_UNTIL = 1_798_761_600
# Objects that name no customer and are found through their payment (ReconcileTable.key_of_payment_record).
PAYMENT_REFERENCING_KINDS = frozenset({"dispute", "refund"})


@dataclass(slots=True)
class Page:
    """What one page found: counts, the repairs to queue, and where the next page starts."""

    counts: Counts = field(default_factory=Counts)
    repairs: list[QueueMessage] = field(default_factory=list)
    requeues: list[QueueMessage] = field(default_factory=list)
    drifts: list[Drift] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    accounts: set[Account] = field(default_factory=set)
    skipped: list[SkippedPhase] = field(default_factory=list)
    position: str | None = None

    def add(self, counts: Counts) -> None:
        self.counts = self.counts + counts

    def problem(self, message: str, counts: Counts) -> None:
        self.add(counts)
        self.messages.append(message)


@dataclass(frozen=True, slots=True)
class Where:
    """The mode and Connect account a list phase reads, with `Stripe-Account` when an account."""

    livemode: bool
    account: str | None

    @property
    def mode(self) -> Mode:
        return "live" if self.livemode else "test"


@dataclass(frozen=True, slots=True)
class ActiveEntitlements:
    """A customer's active entitlements as Stripe listed them, and when (ms)."""

    fetched_ms: int
    lookup_keys: list[str]


class PageReader:
    """Reads and compares pages for one run. `deauthorized` holds the connected accounts known to
    refuse the platform (their records are skipped, not fetched); `refused` the object types a key may
    not fetch in this run (per mode), learnt from the first refusal."""

    def __init__(
        self,
        stripe: StripeLists,
        table: ReconcileTable,
        pacer: StripePacer,
        deadline: Deadline,
        clock: Callable[[], float],
        *,
        user_id_key: str,
        scan_page_items: int,
    ) -> None:
        self.stripe = stripe
        self.table = table
        self.pacer = pacer
        self.deadline = deadline
        self.clock = clock
        self.user_id_key = user_id_key
        self.scan_page_items = scan_page_items
        self.requeued: set[str] = set()  # events this run queued (the failed list and the changes overlap)
        self.deauthorized: dict[Account, int] = {}
        self.authorization_changes: dict[Account, bool] = {}  # seen in events: True authorized again
        self.refused: set[tuple[str, bool]] = set()
        # (livemode, account, customer) whose active entitlements this run has read
        self.entitlements_read: set[tuple[bool, str | None, str]] = set()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def list_page(self, where: Where, path: str, params: Mapping[str, Any]) -> tuple[int, StripePage]:
        """One page of a Stripe list through the Stripe port, paced, and the time it was read (epoch ms)."""

        def request() -> tuple[int, StripePage]:
            fetched_ms = self.now_ms()
            return fetched_ms, self.stripe.list_page(where.livemode, where.account, path, params)

        return self.pacer.call(request)

    # -- list pages -----------------------------------------------------------------------------

    def subscriptions_page(
        self,
        where: Where,
        position: str | None,
        customer: str | None = None,
        known: Mapping[str, Snapshot] | None = None,
        since: int | None = None,
        *,
        every_customer: bool = False,
    ) -> Page:
        """One list page compared with its records: read in one batch, or `known` already."""
        params: dict[str, Any] = {"status": "all"}
        if position is not None:
            params["starting_after"] = position
        if customer is not None:
            params["customer" if customer.startswith("cus_") else "customer_account"] = customer
        if since is not None:
            params["created"] = {"gte": since}
        try:
            fetched_ms, listing = self.list_page(where, "/v1/subscriptions", params)
        except NotFound as error:
            if customer is not None and error.code == "resource_missing":
                return Page()  # a customer of the other mode
            raise
        stored = self.table.subscriptions(listing.data) if known is None else known
        page = Page(position=next_position(listing))
        for obj in listing.data:
            self.compare(
                page, "subscription", obj, stored.get(str(obj.get("id"))), fetched_ms, account=where.account
            )
        page.listed = [str(obj["id"]) for obj in listing.data if obj.get("id")]
        if every_customer:
            # A backfill and a one-customer run read each listed customer's active entitlements. A pass
            # does not (one request per customer each pass): it compares the summaries stored (records
            # phase), and its failed-events phase queues again a summary event Stripe could not deliver.
            self.read_active_entitlements(page, where, listing.data)
        return page

    def read_active_entitlements(self, page: Page, where: Where, subscriptions: Sequence[Json]) -> None:
        """Stripe's active entitlements of each customer with a subscription that may still grant, once
        a run, when the table holds no summary of the customer (a stored one is compared by the records
        phase): an account that uses Stripe Entitlements then gets its lookup keys even when no summary
        event was sent within Stripe's 30 days. An empty list queues nothing, so an account that does not
        use Entitlements keeps its mapping."""
        customers: list[str] = []
        for obj in subscriptions:
            customer = customer_of_object(obj)
            seen = (where.livemode, where.account, customer or "")
            if customer is None or obj.get("status") in ENDED_STATUSES or seen in self.entitlements_read:
                continue
            self.entitlements_read.add(seen)
            customers.append(customer)
        keys = {c: self.table.key_of("entitlement_summary", c, c) for c in customers}
        stored = self.table.records(k for k in keys.values() if k is not None)
        for customer in customers:
            key = keys[customer]
            if key is not None and key in stored:
                continue
            active = self.active_entitlements(page, customer, where)
            if active is None:
                if self.entitlements_refused(where):
                    return  # not asked again in this run
                continue  # this customer's are unknown (404): the others' are still read
            if active.lookup_keys:
                self.repair_summary(page, DriftKind.MISSING, customer, where, active)

    def active_entitlements(self, page: Page, customer: str, where: Where) -> ActiveEntitlements | None:
        """The customer's active entitlements, counted as a summary checked; None when Stripe is not to
        be asked (counted skipped), refused, or answered 404 (no such customer in this mode or account:
        reported, and what the table holds is left as it is, never replaced by an empty list)."""
        if not self.can_fetch(page, ACTIVE_ENTITLEMENTS, where.livemode, where.account):
            return None
        try:
            active = self.pacer.call(
                lambda: ActiveEntitlements(
                    self.now_ms(),
                    self.stripe.active_entitlement_keys(customer, where.livemode, where.account),
                )
            )
        except NotFound as error:
            page.problem(
                f"active entitlements of {customer}: Stripe answers 404 ({error.message}); "
                "its summary is left as it is",
                Counts(not_found=1),
            )
            return None
        except Refused as error:
            self.refuse(page, ACTIVE_ENTITLEMENTS, where.livemode, where.account, error)
            return None
        page.add(Counts(summaries_checked=1))
        return active

    def entitlements_refused(self, where: Where) -> bool:
        """Whether this run no longer asks for active entitlements where `where` is."""
        return (ACTIVE_ENTITLEMENTS, where.livemode) in self.refused or (
            where.account is not None and (where.mode, where.account) in self.deauthorized
        )

    def repair_summary(
        self, page: Page, kind: DriftKind, customer: str, where: Where, active: ActiveEntitlements
    ) -> None:
        """Queue the summary the customer's active entitlements make, as Stripe answered them."""
        try:
            repair = fetched_message(
                summary_object(customer, where.livemode, active.lookup_keys), active.fetched_ms, where.account
            )
        except ValueError as error:
            page.problem(f"active entitlements of {customer}: {error}", Counts(errors=1))
            return
        page.add(Counts.of_drift(kind, "entitlement_summary"))
        page.repairs.append(repair)
        page.drifts.append(
            Drift(kind, "entitlements.active_entitlement_summary", customer, customer, where.livemode)
        )

    def objects_page(self, kind: str, where: Where, position: str | None, since: int | None) -> Page:
        """A backfill page: the objects that can grant access, compared with their records."""
        path, params = BACKFILL_LIST_REQUESTS[kind]
        query: dict[str, Any] = dict(params)
        if position is not None:
            query["starting_after"] = position
        if since is not None:
            query["created"] = {"gte": since}
        fetched_ms, listing = self.list_page(where, path, query)
        page = Page(position=next_position(listing))
        record_kind = BACKFILL_KINDS[kind]
        chosen: list[tuple[Mapping[str, Any], Key | None]] = []
        for listed in listing.data:
            obj = backfill_object(kind, listed, self.user_id_key)
            if obj is None:
                continue
            chosen.append((obj, self.key_of(record_kind, obj)))
        stored = self.table.records(key for _, key in chosen if key is not None)
        for obj, key in chosen:
            if key is None:
                page.add(Counts(skipped=1))  # names no customer: grants nobody anything
                continue
            self.compare(page, record_kind, obj, stored.get(key), fetched_ms, account=where.account)
        return page

    def events_page(self, kind: str, where: Where, position: str | None, since: int | None) -> Page:
        """Events since the checkpoint (those Stripe could not deliver, or those of the records the
        subscription list does not cover), queued again when the table lacks their effect."""
        params: dict[str, Any] = (
            {"delivery_success": False}
            if kind == "events"
            else {"types": [*CHANGE_EVENT_TYPES, *ACCOUNT_AUTHORIZATION_EVENTS]}
        )
        if position is not None:
            params["starting_after"] = position
        if since is not None:
            params["created"] = {"gte": since}
        _fetched_ms, listing = self.list_page(where, "/v1/events", params)
        page = Page(position=next_position(listing))
        if kind == "events":
            page.add(Counts(failed_events=len(listing.data)))
        candidates: list[tuple[Mapping[str, Any], Snapshot | None]] = []
        for event in listing.data:
            event_id = str(event.get("id"))
            if event_id in self.requeued:
                continue  # queued by this run's other event list
            if self.authorization_event(event, where):
                continue
            try:
                found = snapshot_of(parse_event(event), self.user_id_key)
            except ValueError as error:  # MalformedEvent
                page.problem(f"event {event_id} not re-queued: {error}", Counts(errors=1))
                continue
            if isinstance(found, Ignored):
                continue  # the worker would acknowledge it and change nothing
            candidates.append((event, found if isinstance(found, Snapshot) else None))
        applied = (
            self.table.applied(str(e["id"]) for e, _ in candidates)
            if self.clock() < LEDGER_READ_UNTIL
            else set()
        )
        pending = [(e, s) for e, s in candidates if str(e["id"]) not in applied]
        keys = {id(e): self.snapshot_key(s) for e, s in pending if s is not None}
        stored = self.table.records(k for k in keys.values() if k is not None)
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

    def authorization_event(self, event: Mapping[str, Any], where: Where) -> bool:
        """Note an `account.application.(de)authorized` event (the latest one listed wins: lists are
        newest first); whether it was one."""
        authorized = ACCOUNT_AUTHORIZATION_EVENTS.get(str(event.get("type")))
        if authorized is None:
            return False
        account = event.get("account") or where.account
        if isinstance(account, str) and account:
            self.authorization_changes.setdefault((where.mode, account), authorized)
        return True

    def records_page(self, position: str | None, seen: set[str], *, marks: bool) -> Page:
        """A page of the table's records, compared; `marks=False` for a dry run, which writes nothing."""
        read = self.table.scan_page(
            position,
            self.scan_page_items,
            # compared when its list page was
            lambda kind, object_id: kind == "subscription" and object_id in seen,
            marks=marks,
        )
        page = Page(position=read.position, accounts=set(read.accounts))
        for item in read.records:
            try:
                snapshot = item.snapshot()
            except (ValueError, TypeError, KeyError) as error:
                page.problem(f"record {item.key[0]} {item.key[1]} unreadable: {error}", Counts(errors=1))
                continue
            if isinstance(snapshot.record, EntitlementSummaryRecord):
                self.verify_summary(page, snapshot)
            else:
                self.verify(page, snapshot)
        return page

    # -- objects by id --------------------------------------------------------------------------

    def verify(self, page: Page, snapshot: Snapshot) -> None:
        """Fetch by id what a stored record says, when the lists did not show it or it has not settled."""
        record = snapshot.record
        unlisted_subscription = isinstance(record, SubscriptionRecord)
        object_type = "subscription" if unlisted_subscription else object_to_verify(record)
        if object_type is None:
            return
        if not self.can_fetch(page, object_type, record.livemode, snapshot.account):
            return
        try:
            fetched_ms, obj = self.pacer.call(
                lambda: (
                    self.now_ms(),
                    self.stripe.fetch_object(object_type, record.id, record.livemode, snapshot.account),
                )
            )
        except NotFound as error:
            # "No such object" is an answer: the object is gone. Its deletion is applied where it
            # changes access (a subscription ends); other records are left as they are.
            gone = None
            if error.code == "resource_missing":
                gone = gone_object(record.kind, record.id, customer_of(record), record.livemode)
            if gone is None:
                page.problem(
                    f"{object_type} {record.id}: Stripe answers 404; its record is left as it is",
                    Counts(not_found=1),
                )
                return
            page.problem(
                f"{object_type} {record.id}: Stripe answers 404; applied as gone", Counts(not_found=1)
            )
            self.compare(
                page,
                record.kind,
                gone,
                snapshot,
                self.now_ms(),
                account=snapshot.account,
                unlisted=unlisted_subscription,
            )
            return
        except Refused as error:
            self.refuse(page, object_type, record.livemode, snapshot.account, error)
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

    def verify_summary(self, page: Page, snapshot: Snapshot) -> None:
        """A Stripe Entitlements summary against the customer's active entitlements (one list each:
        Stripe has no account-wide list of them)."""
        record = snapshot.record
        assert isinstance(record, EntitlementSummaryRecord)
        where = Where(record.livemode, snapshot.account)
        active = self.active_entitlements(page, record.customer_id, where)
        if active is None:
            return
        if snapshot.stamp.created > active.fetched_ms // 1000 or same_summary(record, active.lookup_keys):
            return
        self.repair_summary(page, DriftKind.STALE, record.customer_id, where, active)

    def can_fetch(self, page: Page, what: str, livemode: bool, account: str | None) -> bool:
        """Whether to ask Stripe at all: a key of the mode, the account not known to refuse the platform,
        the object type not refused to this key earlier in the run. Counted as skipped otherwise."""
        mode: Mode = "live" if livemode else "test"
        if (
            not self.stripe.can_fetch(livemode)
            or (account is not None and (mode, account) in self.deauthorized)
            or (what, livemode) in self.refused
        ):
            page.add(Counts(skipped=1))
            return False
        if not self.deadline.allows(0):
            raise TimeBudgetSpent
        return True

    def refuse(self, page: Page, what: str, livemode: bool, account: str | None, error: Refused) -> None:
        """A fetch by id Stripe refused: the account is marked deauthorized, or (a permission the key
        lacks) the object type is left alone for the rest of the run, or (a request Stripe rejects) this
        object is reported; the records phase goes on either way."""
        mode: Mode = "live" if livemode else "test"
        reason = skip_reason(error, account)
        page.add(Counts(skipped=1))
        detail = f"{what}: {skip_detail(error, reason)}"
        if reason is SkipReason.INVALID_REQUEST:
            page.problem(f"{what} in {mode} mode: {detail}", Counts(errors=1))
            return
        if reason is SkipReason.ACCOUNT_DEAUTHORIZED and account is not None:
            self.mark_deauthorized((mode, account))
        else:
            self.refused.add((what, livemode))
        skipped = SkippedPhase("records", mode, account, reason, detail)
        page.skipped.append(skipped)
        page.problem(skipped.message(), Counts(errors=0 if reason is SkipReason.ACCOUNT_DEAUTHORIZED else 1))

    def mark_deauthorized(self, account: Account) -> None:
        self.deauthorized.setdefault(account, int(self.clock()))

    # -- comparing ------------------------------------------------------------------------------

    def key_of(self, kind: RecordKind, obj: Mapping[str, Any]) -> Key | None:
        customer = customer_of_object(obj)
        if kind == "profile":
            customer = str(obj.get("id"))
        elif kind == "dispute" and customer is None:
            charge = obj.get("charge")
            customer = customer_of_object(charge) if isinstance(charge, Mapping) else None
        return self.table.key_of(kind, str(obj.get("id")), customer)

    def snapshot_key(self, snapshot: Snapshot) -> Key | None:
        if snapshot.customer_id is None and snapshot.record.kind in PAYMENT_REFERENCING_KINDS:
            return self.table.key_of_payment_record(snapshot)
        return self.table.key_of(snapshot.record.kind, snapshot.record.id, snapshot.customer_id)

    def compare(
        self,
        page: Page,
        kind: RecordKind,
        obj: Mapping[str, Any],
        stored: Snapshot | None,
        fetched_ms: int,
        *,
        account: str | None,
        unlisted: bool = False,
    ) -> None:
        try:
            drift = drift_of(kind, obj, stored, fetched_ms // 1000, self.user_id_key)
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


def next_position(listing: StripePage) -> str | None:
    if listing.has_more and listing.data:
        return str(listing.data[-1]["id"])
    return None
