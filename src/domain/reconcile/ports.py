"""The reconciler's ports: what a pass needs from Stripe, from the table, from its own cursor items and
from the event queue, as small protocols. The adapters (adapters.reconciler, adapters.reconcile_cursor,
adapters.fetched_queue) implement them over the stripe SDK, pynamodb and SQS; tests.support.memory_reconcile
implements them in memory.

Stripe's answers cross the port as these exceptions, never as the SDK's: RateLimited (429, waited
out by the pacer), NotFound (404), Refused (any other 4xx: a permission the key lacks, a parameter the
API rejects, a connected account that deauthorized the platform) and StripeUnavailable (connection
errors and 5xx the SDK's own retries did not get past).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from domain.ingress import QueueMessage
from domain.reconcile.passes import Account, PassCursor
from domain.records import RecordKind, Snapshot

Json = Mapping[str, Any]
type Key = tuple[str, str]  # where the table keeps a record: (partition key, sort key)


class StripeFailure(Exception):
    """Stripe did not answer a request with what was asked for."""

    def __init__(self, message: str, *, http_status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code


class RateLimited(StripeFailure):
    """429: too many requests."""


class NotFound(StripeFailure):
    """404: no such object (`code` resource_missing), or a customer of the other mode."""


class Refused(StripeFailure):
    """Another 4xx: asking again the same way gets the same answer."""


class StripeUnavailable(StripeFailure):
    """A connection error or a 5xx, after the SDK's own retries: it may work in a moment."""


class CursorConflict(RuntimeError):
    """Another run saved the cursor since this one read it."""


class StripePage(Protocol):
    """One page of a Stripe list: its objects as plain JSON, and whether more follow
    (adapters.stripe_api.StripePage)."""

    @property
    def data(self) -> list[dict[str, Any]]: ...

    @property
    def has_more(self) -> bool: ...


class StripeLists(Protocol):
    """What a pass reads from Stripe: list pages and objects by id, per mode and Connect account."""

    def can_fetch(self, livemode: bool) -> bool:
        """Whether a key of this mode is configured."""
        ...

    def list_page(
        self, livemode: bool, account: str | None, path: str, params: Mapping[str, Any]
    ) -> StripePage:
        """One page (at most 100) of `GET path` with these parameters, as `account` when given."""
        ...

    def fetch_object(self, object_type: str, object_id: str, livemode: bool, account: str | None) -> Json: ...

    def active_entitlement_keys(self, customer_id: str, livemode: bool, account: str | None) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class ScannedRecord:
    """A record the records phase examines: what it is without parsing it, and `snapshot` to parse it
    (raises ValueError, TypeError or KeyError for a record that cannot be read)."""

    key: Key
    kind: str
    object_id: str
    livemode: bool
    account: str | None
    snapshot: Callable[[], Snapshot]


@dataclass(frozen=True, slots=True)
class RecordsPage:
    """One page of the records a pass verifies: those to compare (not those `scan_page`'s
    `compared_already` left out), the Connect accounts the page showed (of every item it read, those
    left out included), and where the next page starts (None at the end)."""

    records: list[ScannedRecord]
    accounts: set[Account]
    position: str | None


class ReconcileTable(Protocol):
    """Every table read of a pass (the reconciler never writes a record's content: repairs go to the
    queue; `scan_page` marks, once, an older table's records for the records-to-check index, unless
    the run is a dry run)."""

    def key_of(self, kind: RecordKind, object_id: str, customer: str | None) -> Key | None:
        """Where the worker keeps the record of an object; None when the object names no customer."""
        ...

    def key_of_payment_record(self, snapshot: Snapshot) -> Key:
        """Where the worker keeps a dispute or refund, which names no customer itself."""
        ...

    def records(self, keys: Iterable[Key]) -> dict[Key, Snapshot]: ...

    def subscriptions(self, objects: Iterable[Json]) -> dict[str, Snapshot]:
        """The stored snapshots of these listed subscriptions, by id."""
        ...

    def applied(self, event_ids: Iterable[str]) -> set[str]:
        """The events an older table's ledger holds as applied."""
        ...

    def of_customer(self, customer_id: str) -> list[Snapshot]: ...

    def scan_page(
        self,
        position: str | None,
        limit: int,
        compared_already: Callable[[str, str], bool],
        *,
        marks: bool = True,
    ) -> RecordsPage:
        """One page (at most `limit` items read) of the records that can still drift, and of the
        customers whose Connect account a pass must know; `compared_already(kind, object_id)` names the
        records not to read in full (the pass's lists compared them). `marks=False` (a dry run, which
        read-only credentials may run) reads an older table without marking it or writing its marker."""
        ...


class PassStore(Protocol):
    """One cursor (the pass's, the backfill's, or a dry run's) and the reconciler's own bookkeeping."""

    def load(self) -> PassCursor | None: ...

    def save(self, cursor: PassCursor) -> PassCursor:
        """Write the cursor unless another run did since it was read (CursorConflict); with its new version."""
        ...

    def add_seen(self, pass_id: str, page: int, ids: Iterable[str], now: int) -> None: ...

    def seen(self, pass_id: str) -> set[str]: ...

    def accounts(self) -> set[Account]:
        """The Connect accounts found with records."""
        ...

    def add_accounts(self, accounts: Iterable[Account]) -> None: ...

    def deauthorized(self) -> dict[Account, int]:
        """The connected accounts that refused the platform, with when that was first seen (epoch s)."""
        ...

    def set_deauthorized(self, account: Account, since: int | None) -> None:
        """Mark an account deauthorized since `since`, or clear the mark (None) once it answers again."""
        ...


class PassStores(Protocol):
    def __call__(self, *, dry_run: bool = False, backfill: bool = False) -> PassStore: ...


class RepairQueue(Protocol):
    def send(self, messages: Sequence[QueueMessage]) -> None:
        """Queue every message into its customer's group, or raise (the pass then stops where it is)."""
        ...
