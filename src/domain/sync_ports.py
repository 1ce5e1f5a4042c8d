"""What the worker's use case (domain.sync.EventApplier) needs and answers: the ports the adapters
implement — `CustomerStore` (the table: one read of a customer's state, ordered conditional writes)
and `StripeObjects` (the Stripe API, optional) — the state and the change that cross the store port,
the failures the store signals, and the outcome of one event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from domain.entitlements import Entitlements
from domain.live_records import LiveRecords
from domain.records import RecordKind, Snapshot
from domain.user_entitlements import CustomerPart

Json = Mapping[str, Any]


class Outcome(StrEnum):
    APPLIED = "applied"  # record written (entitlements possibly unchanged)
    STALE = "stale"  # an older snapshot than the stored one: nothing written
    DUPLICATE = "duplicate"  # this event was applied before
    IGNORED = "ignored"  # an event type or object that changes no record
    GUEST = "guest"  # a purchase with no customer: stored apart, counted
    # A dispute or refund of a payment no stored purchase knows (a subscription invoice payment, a
    # guest purchase): stored by its payment, counted, applied when the purchase arrives.
    UNMATCHED = "unmatched"


class RetryLater(Exception):
    """The event cannot be applied yet; the message fails and SQS retries it (then the DLQ)."""


class ConcurrentChange(RetryLater):
    """Another writer changed the customer between our read and our write."""


class StaleWrite(Exception):
    """The stored record became newer between our read and our write (the event is stale)."""


class DuplicateEvent(Exception):
    """The stored record already carries this event's stamp."""


@dataclass(frozen=True, slots=True)
class StoredEntitlements:
    entitlements: Entitlements
    version: int  # published: one higher at every change readers can see
    updated_at: int


@dataclass(frozen=True, slots=True)
class CustomerState:
    """Everything stored about one customer, as read in one consistent query (the whole history: for
    the ops CLI, and to build the live records once)."""

    customer_id: str
    snapshots: Mapping[tuple[RecordKind, str], Snapshot]
    entitlements: StoredEntitlements | None
    records_version: int  # the state item's version (before state items: the entitlements item's)


@dataclass(frozen=True, slots=True)
class EventView:
    """What one event reads: O(1) items whatever the customer's history."""

    customer_id: str
    stored: Snapshot | None  # the event's record as stored
    live: LiveRecords | None  # None: no state item yet
    entitlements: StoredEntitlements | None
    version: int  # the state item's version; without one, the entitlements item's records_version
    has_history: bool  # records may exist without a state item (a table written before state items)


@dataclass(frozen=True, slots=True)
class UserLink:
    """The application's user id -> customer lookup item (strongly consistent, per mode)."""

    user_id: str
    livemode: bool


@dataclass(frozen=True, slots=True)
class CustomerChange:
    """The writes of one event, in order: lookups, the record (`snapshot`; None when only repairing),
    the state (`live`; None when unchanged), the entitlements (None when readers would see nothing new)."""

    customer_id: str
    event_id: str
    event_type: str
    snapshot: Snapshot | None
    live: LiveRecords | None
    expected_version: int  # the state version read
    state_exists: bool
    entitlements: Entitlements | None
    entitlements_version: int  # the version to write (unchanged when access did not change)
    updated_at: int
    link_users: tuple[UserLink, ...] = ()
    unlink_users: tuple[UserLink, ...] = ()
    link_payment_intents: tuple[str, ...] = ()  # payment intent or charge ids -> this customer
    # Unmatched disputes/refunds this change moves into the customer's records: each is written if
    # newer than what the customer holds, then its unmatched copy deleted (both before the record).
    adopted: tuple[Snapshot, ...] = ()
    # Carried on the entitlements item for its "entitlements changed" event (domain.entitlement_events):
    # the customer's Connect account and application user id as the live records know them.
    account: str | None = None
    user_id: str | None = None
    # The user entitlements items to bring up to date (domain.user_entitlements), after the customer's
    # own items: `user_entitlements` (the customer's access as of `new_version`) is merged into the item
    # of each user in `users`, and each user in `left_users` (the customer no longer answers for them)
    # drops the customer. None when neither the customer's access nor its users changed.
    user_entitlements: Entitlements | None = None
    users: tuple[str, ...] = ()
    left_users: tuple[str, ...] = ()
    now: int = 0  # the applier's clock: a user item's `updated_at` when its access changes
    # Only re-checking the user items (a retried or stale event): a part that says the same is kept.
    users_repair: bool = False

    @property
    def new_version(self) -> int:
        """The state version once written (what the entitlements item records it was computed from)."""
        return self.expected_version + (1 if self.live is not None else 0)

    def user_parts(self) -> list[tuple[str, bool, CustomerPart]]:
        """(user id, livemode, part) for each user entitlements item this change updates."""
        access = self.user_entitlements
        if access is None:
            return []
        joined = CustomerPart(self.customer_id, self.new_version, access)
        left = CustomerPart(self.customer_id, self.new_version, None)
        return [(user, access.livemode, joined) for user in self.users] + [
            (user, access.livemode, left) for user in self.left_users
        ]


class CustomerStore(Protocol):
    def load(self, customer_id: str) -> CustomerState: ...

    def read(self, customer_id: str, key: tuple[RecordKind, str]) -> EventView:
        """The customer's state item, the record `key` and the entitlements item, consistently."""

    def commit(self, change: CustomerChange) -> None:
        """Write in order; raise StaleWrite or DuplicateEvent (record), ConcurrentChange (state)."""

    def customer_of_payment(self, payment_intent_id: str | None, charge_id: str | None) -> str | None: ...

    def store_guest(self, snapshot: Snapshot, event_type: str) -> bool:
        """Store a snapshot that names no customer; False when a newer one is stored."""

    def store_unmatched(self, snapshot: Snapshot) -> bool:
        """Store a dispute or refund whose payment no customer record knows yet, under its payment
        intent (else its charge); False when a newer snapshot of it is stored."""

    def unmatched_for(self, payment_intent_id: str | None, charge_id: str | None) -> list[Snapshot]:
        """The unmatched disputes and refunds stored under this payment intent or charge."""


class StripeObjects(Protocol):
    """Read access to the Stripe API for the event's mode (and Connect account)."""

    def can_fetch(self, livemode: bool) -> bool: ...

    def fetch_object(self, object_type: str, object_id: str, livemode: bool, account: str | None) -> Json: ...

    def fetch_event(self, event_id: str, livemode: bool, account: str | None) -> Json: ...

    def fetch_thin_event(self, event_id: str, livemode: bool, account: str | None) -> Json:
        """`GET /v2/core/events/{id}`: a thin event's `related_object` or `snapshot_event`."""

    def checkout_line_items(self, session_id: str, livemode: bool, account: str | None) -> list[Json]: ...

    def active_entitlement_keys(self, customer_id: str, livemode: bool, account: str | None) -> list[str]: ...


class Clock(Protocol):
    def __call__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    event_id: str
    event_type: str
    customer_id: str | None = None
    reason: str = ""
    before: Entitlements | None = None
    after: Entitlements | None = None
    tie_fetched: bool = False
    api_calls: int = 0
    notes: tuple[str, ...] = field(default=())
    # What Stripe answered 404 for while applying (the object or event is gone): logged as a field.
    not_found: tuple[str, ...] = ()

    @property
    def entitlements_changed(self) -> bool:
        return self.after is not None and not self.after.same_access(self.before)
