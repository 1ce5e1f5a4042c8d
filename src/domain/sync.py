"""Applying one Stripe event (or one fetched object) to a customer's records and entitlements.

The rules of the worker (ARCHITECTURE.md, "An event's path") in one place, against two ports the
adapters implement (domain.sync_ports): `CustomerStore` (the table) and `StripeObjects` (the Stripe
API, optional). The reconciler and the ops
CLI queue what they fetch and so reach the table through this same code.

Per event (see `domain.live_records`): one read of three items — the customer's state (the few records
entitlements depend on, and a version), the event's own record, the entitlements item — then ordered
conditional writes: the record (conditional on its stamp being older: order-safety and idempotency),
the state (conditional on the version read: one writer per customer at a time), the entitlements item
only when what readers see changes, and then the item of each user the customer answers for
(`domain.user_entitlements`: the customer's part, replaced only from a newer state of the customer).
A crash between two writes leaves a derived item behind its source; the retry finds its own record
already stored, repairs the state, the entitlements and the user items and changes nothing else. Stale
and duplicate events write nothing (except such a repair).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from domain import live_records
from domain.customer_links import account_of, payment_links, user_links, user_of
from domain.entitlements import EntitlementRules, Entitlements, purchase_is_unresolved
from domain.live_records import LiveRecords
from domain.records import (
    ChargeRecord,
    DisputeRecord,
    EntitlementSummaryRecord,
    PaymentRecord,
    ProfileRecord,
    PurchaseRecord,
    RecordKind,
    RefundRecord,
    Snapshot,
    Stamp,
)
from domain.stripe_objects import (
    OBJECT_KINDS,
    STRIPE_OBJECT_OF,
    Ignored,
    MalformedEvent,
    NeedsFetch,
    NotAtStripe,
    StripeEvent,
    gone_object,
    parse_event,
    purchased_item,
    rank_of,
    record_of,
    snapshot_of,
    with_event_mode,
)
from domain.sync_ports import (
    Clock,
    ConcurrentChange,
    CustomerChange,
    CustomerState,
    CustomerStore,
    DuplicateEvent,
    EventView,
    Outcome,
    Result,
    RetryLater,
    StaleWrite,
    StoredEntitlements,
    StripeObjects,
    UserLink,
)

Json = Mapping[str, Any]
MAX_CONFLICT_RETRIES = 3

# The ports and outcomes live in domain.sync_ports; importable from here too, as the use case's seams.
__all__ = [
    "MAX_CONFLICT_RETRIES",
    "Clock",
    "ConcurrentChange",
    "CustomerChange",
    "CustomerState",
    "CustomerStore",
    "DuplicateEvent",
    "EventApplier",
    "EventView",
    "Outcome",
    "Result",
    "RetryLater",
    "StaleWrite",
    "StoredEntitlements",
    "StripeObjects",
    "UserLink",
]


class EventApplier:
    def __init__(
        self,
        store: CustomerStore,
        rules: EntitlementRules,
        clock: Clock,
        stripe: StripeObjects | None = None,
    ) -> None:
        self._store = store
        self._rules = rules
        self._clock = clock
        self._stripe = stripe

    def apply(self, body: Json) -> Result:
        """Apply one queued message (a Stripe event, or a snapshot the reconciler fetched).

        A payload that cannot be read (MalformedEvent) is never retried as it is: retrying cannot fix
        it. With an API key for its mode, the event is fetched fresh from Stripe by its id and that is
        applied; otherwise, or when Stripe's copy cannot be read either, MalformedEvent goes up and the
        worker parks the message in the dead-letter queue with the reason."""
        try:
            return self._apply(body)
        except MalformedEvent as error:
            fetched = self._fetched_again(body)
            if fetched is None:
                raise
            try:
                result = self._apply(fetched)
            except MalformedEvent as again:
                raise MalformedEvent(f"{error}; Stripe's copy of the event: {again}") from again
            note = f"queued payload unreadable ({error}): applied the event as fetched from Stripe"
            return replace(result, api_calls=result.api_calls + 1, notes=(*result.notes, note))

    def _fetched_again(self, body: Json) -> Json | None:
        """The event as Stripe serves it at `GET /v1/events/{id}`, when the body names a v1 event id,
        carried an object (a reference was fetched already) and a key for its mode is configured."""
        event_id = body.get("id") if isinstance(body, Mapping) else None
        if not isinstance(event_id, str) or not event_id.startswith("evt_") or body.get("fetched"):
            return None
        if body.get("object") not in (None, "event"):
            return None
        data = body.get("data")
        if isinstance(data, Mapping) and data.get("object") is None:
            return None
        livemode = body.get("livemode") is True
        if not self._can_fetch(livemode) or self._stripe is None:
            return None
        account = body.get("account")
        account = account if isinstance(account, str) and account else None
        # NotAtStripe goes up: the payload stays unreadable, and the worker parks it with both reasons.
        fetched = dict(self._stripe.fetch_event(event_id, livemode, account))
        if account and not fetched.get("account"):
            fetched["account"] = account
        return fetched

    def _apply(self, body: Json) -> Result:
        calls = _Calls()
        result = self._apply_counted(body, calls)
        return replace(result, not_found=tuple(calls.not_found)) if calls.not_found else result

    def _apply_counted(self, body: Json, calls: _Calls) -> Result:
        event = parse_event(body)
        found = snapshot_of(event, self._rules.user_id_metadata_key)
        if isinstance(found, NeedsFetch):
            event, found = self._fetch_missing(event, found, calls)
        if isinstance(found, Ignored):
            return Result(Outcome.IGNORED, event.id, event.type, reason=found.reason)
        snapshot = self._complete(found, event, calls)
        notes: list[str] = []
        customer = snapshot.customer_id or self._customer_of_orphan(snapshot, event, calls)
        if customer is None:
            if isinstance(snapshot.record, DisputeRecord | RefundRecord):
                # Normal for subscription invoice payments and guest purchases: never retried.
                stored = self._store.store_unmatched(snapshot)
                return Result(
                    Outcome.UNMATCHED if stored else Outcome.STALE,
                    event.id,
                    event.type,
                    reason=f"{snapshot.record.kind} of a payment no purchase of a customer knows: stored",
                    api_calls=calls.count,
                )
            stored = self._store.store_guest(snapshot, event.type)
            return Result(
                Outcome.GUEST if stored else Outcome.STALE,
                event.id,
                event.type,
                reason="no customer: stored as a guest purchase",
                api_calls=calls.count,
            )
        if customer != snapshot.customer_id and isinstance(snapshot.record, DisputeRecord | RefundRecord):
            snapshot = replace(
                snapshot, customer_id=customer, record=replace(snapshot.record, customer_id=customer)
            )

        tie_fetched = False
        written = False  # this call's record write landed (a retry of the loop then repairs the rest)
        for _attempt in range(MAX_CONFLICT_RETRIES):
            view = self._store.read(customer, snapshot.key)
            live = self._live(view)
            existing = view.stored
            if existing is not None:
                # A crash (or a concurrent writer) may have left the state behind the stored record.
                live = self._advanced(live, existing, customer)
            if existing is not None and existing.stamp.event_id == snapshot.stamp.event_id:
                repaired = self._repair(event, view, live)
                outcome = Outcome.APPLIED if written else Outcome.DUPLICATE
                if repaired is None:
                    continue
                return Result(
                    outcome,
                    event.id,
                    event.type,
                    customer,
                    before=view.entitlements.entitlements if view.entitlements and written else None,
                    after=repaired if written else None,
                    tie_fetched=tie_fetched,
                    api_calls=calls.count,
                )
            if (
                existing is not None
                and existing.stamp.is_tie_with(snapshot.stamp)
                and not tie_fetched
                and self._can_fetch(event.livemode)
            ):
                # Stripe's `created` cannot order these two: ask Stripe for the object as it is now.
                current = self._fetched_snapshot(snapshot, event, customer, calls)
                if current is None:
                    return Result(
                        Outcome.IGNORED,
                        event.id,
                        event.type,
                        customer,
                        reason=f"{snapshot.record.kind} gone from Stripe (404): its record is left as it is",
                        tie_fetched=True,
                        api_calls=calls.count,
                    )
                snapshot = current
                tie_fetched = True
            if existing is not None and not snapshot.stamp > existing.stamp:
                if self._repair(event, view, live) is None:
                    continue
                return Result(
                    Outcome.STALE,
                    event.id,
                    event.type,
                    customer,
                    tie_fetched=tie_fetched,
                    api_calls=calls.count,
                )
            snapshot = self._carry_over(snapshot, existing, calls)
            if isinstance(snapshot.record, PurchaseRecord) and purchase_is_unresolved(snapshot.record):
                notes.append(
                    "paid purchase with unknown products: set STRIPE_API_KEY, or metadata product_id / features"
                )
            change = self._change(event, view, live, snapshot, self._adoptable(snapshot, live, customer))
            try:
                self._store.commit(change)
            except StaleWrite:
                return Result(Outcome.STALE, event.id, event.type, customer, api_calls=calls.count)
            except DuplicateEvent:
                continue  # our own write landed before (its answer was lost): repair and report it
            except ConcurrentChange:
                written = True  # the record is stored; the next read sees it and writes the state
                continue
            before = view.entitlements.entitlements if view.entitlements else None
            return Result(
                Outcome.APPLIED,
                event.id,
                event.type,
                customer,
                before=before,
                after=change.entitlements or before,
                tie_fetched=tie_fetched,
                api_calls=calls.count,
                notes=tuple(notes),
            )
        raise ConcurrentChange(f"customer changed concurrently {MAX_CONFLICT_RETRIES} times")

    # -- the pieces ---------------------------------------------------------------------------------

    def _adoptable(self, snapshot: Snapshot, live: LiveRecords, customer: str) -> tuple[Snapshot, ...]:
        """Unmatched disputes and refunds of the payment this snapshot brings, newer than the customer's
        own copy: the purchase's arrival applies a dispute that came first."""
        record = snapshot.record
        intent: str | None = None
        charge: str | None = None
        match record:
            case PurchaseRecord():
                intent = record.payment_intent_id
            case PaymentRecord():
                intent = record.id
            case ChargeRecord():
                intent, charge = record.payment_intent_id, record.id
            case _:
                return ()
        if intent is None and charge is None:
            return ()
        adopted: list[Snapshot] = []
        for found in self._store.unmatched_for(intent, charge):
            held = live.get(found.key)  # disputes and refunds are always live records
            if held is not None and not found.stamp > held.stamp:
                continue
            if isinstance(found.record, DisputeRecord | RefundRecord):
                moved = replace(found.record, customer_id=customer)
                adopted.append(replace(found, record=moved, customer_id=customer))
        return tuple(sorted(adopted, key=lambda s: s.key))

    def _live(self, view: EventView) -> LiveRecords:
        """The customer's live records: from its state item, or built once from its whole partition
        (a table written before state items, or rules changed since the state was built)."""
        rules = live_records.fingerprint(self._rules)
        if view.live is not None and view.live.rules == rules:
            return view.live
        if view.live is None and not view.has_history:
            return live_records.empty(self._rules)
        history = self._store.load(view.customer_id)
        return live_records.build(history.snapshots.values(), self._rules)

    def _advanced(self, live: LiveRecords, snapshot: Snapshot, customer: str) -> LiveRecords:
        advanced = live_records.advance(live, snapshot, self._rules)
        if advanced is not None:
            return advanced
        # A spilled purchase may matter again (a refund, a weakened winner): read the history once.
        history = dict(self._store.load(customer).snapshots)
        current = history.get(snapshot.key)
        if current is None or snapshot.stamp > current.stamp:
            history[snapshot.key] = snapshot
        return live_records.build(history.values(), self._rules)

    def _repair(self, event: StripeEvent, view: EventView, live: LiveRecords) -> Entitlements | None:
        """Finish what a crash or a concurrent writer left undone: the state and the entitlements
        derived from the stored records. Returns the entitlements as they now stand, None on a
        conflict (the caller reads again)."""
        # The user items too: a crash may have come between the customer's items and theirs.
        change = self._derived_change(event, view, live, live, refresh_users=True)
        if change.live is not None or change.entitlements is not None or change.user_entitlements is not None:
            try:
                self._store.commit(change)
            except ConcurrentChange:
                return None
        if change.entitlements is not None:
            return change.entitlements
        return live_records.entitlements_of(view.customer_id, live, self._rules)

    def _change(
        self,
        event: StripeEvent,
        view: EventView,
        live: LiveRecords,
        snapshot: Snapshot,
        adopted: tuple[Snapshot, ...] = (),
    ) -> CustomerChange:
        advanced = live
        for found in (*adopted, snapshot):
            advanced = self._advanced(advanced, found, view.customer_id)
        link, unlink = user_links(snapshot, view.stored)
        return replace(
            self._derived_change(event, view, live, advanced),
            snapshot=snapshot,
            link_users=link,
            unlink_users=unlink,
            link_payment_intents=payment_links(snapshot, view.stored),
            adopted=adopted,
        )

    def _derived_change(
        self,
        event: StripeEvent,
        view: EventView,
        before: LiveRecords,
        after: LiveRecords,
        *,
        refresh_users: bool = False,
    ) -> CustomerChange:
        """The state and entitlements writes that take the stored items from `view` to `after`.

        The entitlements item is written when readers would see something new, and also when it lags
        the state read (`before`): a writer that crashed, or one still to write it. Its write is then
        conditional on having been computed from a newer state (`records_version`), so that a late
        write computed from an older state never lands over it."""
        customer = view.customer_id
        stored = view.entitlements
        computed = live_records.entitlements_of(customer, after, self._rules)
        lagging = stored is not None and not live_records.entitlements_of(
            customer, before, self._rules
        ).same_access(stored.entitlements)
        changed = stored is None or not computed.same_access(stored.entitlements)
        state_changed = view.live is None or after != view.live
        users = live_records.users_of(after)
        had = live_records.users_of(view.live) if view.live is not None else frozenset()
        moved = changed or lagging or users != had
        update_users = (moved or refresh_users) and bool(users | had)
        return CustomerChange(
            customer_id=customer,
            event_id=event.id,
            event_type=event.type,
            snapshot=None,
            live=after if state_changed else None,
            expected_version=view.version,
            state_exists=view.live is not None,
            entitlements=computed if changed or lagging else None,
            entitlements_version=(stored.version if stored else 0) + (1 if changed else 0),
            updated_at=self._clock() if changed or stored is None else stored.updated_at,
            account=event.account or account_of(after),
            user_id=user_of(after),
            user_entitlements=computed if update_users else None,
            users=tuple(sorted(users)) if update_users else (),
            left_users=tuple(sorted(had - users)) if update_users else (),
            now=self._clock(),
            users_repair=not moved,
        )

    def _complete(self, snapshot: Snapshot, event: StripeEvent, calls: _Calls) -> Snapshot:
        """Fill in what webhooks leave out, once: Checkout line items, the rest of a summary list."""
        record = snapshot.record
        if (
            isinstance(record, EntitlementSummaryRecord)
            and not record.complete
            and self._can_fetch(event.livemode)
            and self._stripe is not None
        ):
            keys = self._stripe.active_entitlement_keys(record.customer_id, event.livemode, event.account)
            calls.count += 1
            return replace(
                snapshot, record=replace(record, lookup_keys=tuple(sorted(set(keys))), complete=True)
            )
        return snapshot

    def _carry_over(self, snapshot: Snapshot, existing: Snapshot | None, calls: _Calls) -> Snapshot:
        """What later snapshots do not say again: a Checkout session's line items (fetched once, with
        the event's Connect account) and when it was paid; when a dispute was lost."""
        record = snapshot.record
        previous = existing.record if existing is not None else None
        if isinstance(record, DisputeRecord) and isinstance(previous, DisputeRecord):
            if record.status != "won" and previous.lost_at is not None:
                lost_at = min(previous.lost_at, record.lost_at or previous.lost_at)
                return replace(snapshot, record=replace(record, lost_at=lost_at))
            return snapshot
        if not isinstance(record, PurchaseRecord):
            return snapshot
        if isinstance(previous, PurchaseRecord) and previous.paid_at is not None and record.is_paid:
            record = replace(record, paid_at=min(previous.paid_at, record.paid_at or previous.paid_at))
            snapshot = replace(snapshot, record=record)
        if record.line_items is not None or record.mode != "payment":
            return snapshot
        if isinstance(previous, PurchaseRecord) and previous.line_items:
            return replace(snapshot, record=replace(record, line_items=previous.line_items))
        if self._can_fetch(record.livemode) and self._stripe is not None:
            lines = self._stripe.checkout_line_items(record.id, record.livemode, snapshot.account)
            calls.count += 1
            return replace(
                snapshot, record=replace(record, line_items=tuple(purchased_item(li) for li in lines))
            )
        return snapshot

    def _customer_of_orphan(self, snapshot: Snapshot, event: StripeEvent, calls: _Calls) -> str | None:
        record = snapshot.record
        if not isinstance(record, DisputeRecord | RefundRecord):
            return None
        customer = self._store.customer_of_payment(record.payment_intent_id, record.charge_id)
        if (
            customer is None
            and record.charge_id
            and self._can_fetch(event.livemode)
            and self._stripe is not None
        ):
            calls.count += 1
            try:
                charge = self._stripe.fetch_object("charge", record.charge_id, event.livemode, event.account)
            except NotAtStripe:
                calls.not_found.append(f"charge {record.charge_id}")
                return None  # stored as unmatched, as with a charge that names no customer
            found = charge.get("customer") or charge.get("customer_account")
            customer = found if isinstance(found, str) else None
        return customer

    def _fetch_missing(
        self, event: StripeEvent, need: NeedsFetch, calls: _Calls
    ) -> tuple[StripeEvent, Snapshot | Ignored]:
        related = need.related_object
        if related is not None and OBJECT_KINDS.get(related[0]) is None:
            return event, Ignored(f"thin event about {related[0]!r}, not tracked")
        if not self._can_fetch(event.livemode) or self._stripe is None:
            raise RetryLater(f"event {event.id} carries no object and no API key is configured to fetch it")
        snapshot_event: str | None = None
        if related is None and event.thin:
            # A thin event without related_object: the v2 event says which v1 snapshot event to apply.
            calls.count += 1
            try:
                thin = self._stripe.fetch_thin_event(event.id, event.livemode, event.account)
            except NotAtStripe:
                calls.not_found.append(f"event {event.id}")
                return event, Ignored(f"thin event {event.id} gone from Stripe (404): nothing to apply")
            found_related = thin.get("related_object")
            if isinstance(found_related, Mapping) and isinstance(found_related.get("id"), str):
                related = (str(found_related.get("type") or ""), found_related["id"])
                if OBJECT_KINDS.get(related[0]) is None:
                    return event, Ignored(f"thin event about {related[0]!r}, not tracked")
            elif isinstance(thin.get("snapshot_event"), str):
                snapshot_event = thin["snapshot_event"]
            else:
                raise MalformedEvent(f"thin event {event.id} names neither related_object nor snapshot_event")
        if related is not None:  # thin event: the object as it is now
            object_type, object_id = related
            kind = OBJECT_KINDS[object_type]
            calls.count += 1
            try:
                obj = self._stripe.fetch_object(object_type, object_id, event.livemode, event.account)
            except NotAtStripe:
                calls.not_found.append(f"{object_type} {object_id}")
                # Which customer it was is not known here (the reconciler ends a stored subscription
                # Stripe no longer has); a customer is its own id.
                gone = gone_object(kind, object_id, None, event.livemode)
                if gone is None:
                    return event, Ignored(f"{object_type} gone from Stripe (404): nothing to apply")
                obj = gone
            current = self._stamped_fetch(kind, obj, event)
            record = current.record
            if isinstance(record, PurchaseRecord) and record.is_paid and record.paid_at is None:
                # No payment charge came with it: the thin event's time is Stripe's time of the payment
                # it reports; the fetch's is later.
                current = replace(current, record=replace(record, paid_at=event.created))
            return event, current
        calls.count += 1
        try:
            full = dict(self._stripe.fetch_event(snapshot_event or event.id, event.livemode, event.account))
        except NotAtStripe:
            calls.not_found.append(f"event {snapshot_event or event.id}")
            return event, Ignored("event gone from Stripe (404, kept 30 days): nothing to apply")
        if event.account and not full.get("account"):
            full["account"] = event.account
        fetched = parse_event(full)
        found = snapshot_of(fetched, self._rules.user_id_metadata_key)
        if isinstance(found, NeedsFetch):
            raise MalformedEvent(f"event {event.id} fetched from Stripe has no object")
        return fetched, found

    def _fetched_snapshot(
        self, snapshot: Snapshot, event: StripeEvent, customer: str, calls: _Calls
    ) -> Snapshot | None:
        """The object as Stripe has it now; its deletion when Stripe answers 404 and that changes
        access (`gone_object`), else None: the event is ignored."""
        assert self._stripe is not None
        object_type = STRIPE_OBJECT_OF[snapshot.record.kind]
        object_id = customer if snapshot.record.kind == "entitlement_summary" else snapshot.record.id
        if isinstance(snapshot.record, EntitlementSummaryRecord):
            keys = self._stripe.active_entitlement_keys(customer, event.livemode, event.account)
            calls.count += 1
            now = self._clock()
            record = replace(snapshot.record, lookup_keys=tuple(sorted(set(keys))), complete=True, as_of=now)
            return Snapshot(record, Stamp(now, 0, f"fetch_{object_id}_{now}"), customer, event.account)
        calls.count += 1
        try:
            obj = self._stripe.fetch_object(object_type, object_id, event.livemode, event.account)
        except NotAtStripe:
            calls.not_found.append(f"{object_type} {object_id}")
            gone = gone_object(snapshot.record.kind, object_id, customer, event.livemode)
            if gone is None:
                return None
            obj = gone
        fetched = self._stamped_fetch(snapshot.record.kind, obj, event)
        if fetched.customer_id is None:
            fetched = replace(fetched, customer_id=customer)
        return fetched

    def _stamped_fetch(self, kind: RecordKind, obj: Json, event: StripeEvent) -> Snapshot:
        """An object fetched from Stripe is the truth as of the fetch time."""
        now = self._clock()
        record = record_of(kind, obj, event_type="", as_of=now, user_id_key=self._rules.user_id_metadata_key)
        record = with_event_mode(record, obj, event.livemode)
        if isinstance(record, ProfileRecord) and obj.get("deleted"):
            record = replace(record, deleted=True)
        customer = record.id if isinstance(record, ProfileRecord) else record.customer_id
        stamp = Stamp(now, rank_of(record), f"fetch_{record.id}_{now}")
        return Snapshot(record, stamp, customer, event.account)

    def _can_fetch(self, livemode: bool) -> bool:
        return self._stripe is not None and self._stripe.can_fetch(livemode)


@dataclass(slots=True)
class _Calls:
    count: int = 0
    not_found: list[str] = field(default_factory=list)
