"""In-memory doubles of the reconciler's ports (domain.reconcile.ports), so that pass logic is tested
without moto or an HTTP server: a Stripe account with lists per mode and Connect account and faults on
demand (a refused list, a deauthorized account, an outage), a table of snapshots, the cursor store,
and a queue that keeps what it is sent."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.stripe_api import StripePage
from domain.ingress import QueueMessage
from domain.reconcile import Account, Everything, PassCursor, ReconcileReport, Scope, customer_of_object
from domain.reconcile.ports import (
    CursorConflict,
    Key,
    NotFound,
    RecordsPage,
    Refused,
    ScannedRecord,
    StripeFailure,
    StripeUnavailable,
)
from domain.reconcile.run import Reconciler
from domain.records import RecordKind, Snapshot
from domain.settlement import can_drift
from domain.stripe_objects import parse_event, snapshot_of
from events.stripe import objects as s

type Json = dict[str, Any]
type Where = tuple[bool, str | None]  # (livemode, Connect account)


def permission_refusal(permission: str, account: str | None = None) -> Refused:
    """What Stripe answers a restricted key that lacks `permission` (403)."""
    on = f" on account '{account}'" if account else ""
    return Refused(
        f"The provided key 'rk_test_***' does not have the required permissions for this endpoint{on}. "
        f"Having the '{permission}' permission would allow this request to continue.",
        http_status=403,
    )


def deauthorized_refusal(account: str) -> Refused:
    """What Stripe answers a request made as a connected account that deauthorized the platform."""
    return Refused(
        f"The provided key 'sk_test_***' does not have access to account '{account}' (or that account "
        "does not exist). Application access may have been revoked.",
        http_status=403,
        code="account_invalid",
    )


@dataclass(frozen=True, slots=True)
class Call:
    path: str
    livemode: bool
    account: str | None
    params: Mapping[str, Any]
    answered: bool


@dataclass
class MemoryStripe:
    """`StripeLists` over dicts. Objects are listed newest first (by `created`, then insertion)."""

    modes: tuple[bool, ...] = (False,)
    objects: dict[Where, dict[str, list[Json]]] = field(default_factory=dict)
    undelivered: set[str] = field(default_factory=set)
    entitlements: dict[tuple[str, Where], list[str]] = field(default_factory=dict)
    gone_customers: set[str] = field(default_factory=set)  # their active entitlements: 404
    refusals: dict[tuple[str, str | None], StripeFailure] = field(
        default_factory=dict
    )  # (path prefix, account)
    deauthorized: set[str] = field(default_factory=set)
    outages: dict[str, int] = field(default_factory=dict)  # path prefix -> requests still failing
    rejected_params: dict[str, StripeFailure] = field(default_factory=dict)  # a list parameter -> answer
    calls: list[Call] = field(default_factory=list)
    on_request: Callable[[], None] | None = None  # called before each request is answered (a slow API)

    def put(self, obj: Json, *, account: str | None = None, path: str = "/v1/subscriptions") -> None:
        items = self.objects.setdefault((bool(obj.get("livemode")), account), {}).setdefault(path, [])
        items[:] = [o for o in items if o["id"] != obj["id"]] + [obj]

    def put_event(self, event: Json, *, delivered: bool, account: str | None = None) -> None:
        self.put(event, account=account, path="/v1/events")
        if not delivered:
            self.undelivered.add(str(event["id"]))

    def can_fetch(self, livemode: bool) -> bool:
        return livemode in self.modes

    def list_page(
        self, livemode: bool, account: str | None, path: str, params: Mapping[str, Any]
    ) -> StripePage:
        rejected = next((self.rejected_params[p] for p in params if p in self.rejected_params), None)
        self._answer(path, livemode, account, params, rejected)
        items = sorted(
            self.objects.get((livemode, account), {}).get(path, []),
            key=lambda o: int(o.get("created") or 0),
            reverse=True,
        )
        items = [o for o in items if self._matches(o, params)]
        after = params.get("starting_after")
        if after is not None:
            ids = [o["id"] for o in items]
            items = items[ids.index(after) + 1 :]
        limit = int(params.get("limit", 100))
        return StripePage([dict(o) for o in items[:limit]], len(items) > limit)

    def fetch_object(self, object_type: str, object_id: str, livemode: bool, account: str | None) -> Json:
        path = f"/v1/{object_type}s/{object_id}"
        self._answer(path, livemode, account, {})
        for items in self.objects.get((livemode, account), {}).values():
            for obj in items:
                if obj["id"] == object_id:
                    return dict(obj)
        raise NotFound(f"No such {object_type}: '{object_id}'", http_status=404, code="resource_missing")

    def active_entitlement_keys(self, customer_id: str, livemode: bool, account: str | None) -> list[str]:
        self._answer("/v1/entitlements/active_entitlements", livemode, account, {"customer": customer_id})
        if customer_id in self.gone_customers:
            raise NotFound(f"No such customer: '{customer_id}'", http_status=404, code="resource_missing")
        return list(self.entitlements.get((customer_id, (livemode, account)), []))

    def requests(self, path: str, *, account: str | None = None, answered: bool | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.path.startswith(path) and c.account == account and answered in (None, c.answered)
        ]

    def _answer(
        self,
        path: str,
        livemode: bool,
        account: str | None,
        params: Mapping[str, Any],
        rejected: StripeFailure | None = None,
    ) -> None:
        if self.on_request is not None:
            self.on_request()
        failure = self._failure(path, account) or rejected
        self.calls.append(Call(path, livemode, account, dict(params), failure is None))
        if failure is not None:
            raise failure

    def _failure(self, path: str, account: str | None) -> StripeFailure | None:
        if account is not None and account in self.deauthorized:
            return deauthorized_refusal(account)
        for (prefix, refused_account), failure in self.refusals.items():
            if path.startswith(prefix) and refused_account == account:
                return failure
        for prefix, left in self.outages.items():
            if left and path.startswith(prefix):
                self.outages[prefix] = left - 1
                return StripeUnavailable("Service unavailable", http_status=503)
        return None

    def _matches(self, obj: Json, params: Mapping[str, Any]) -> bool:
        if obj.get("test_clock") and "test_clock" not in params:
            return False  # Stripe lists test-clock subscriptions only when asked for their clock
        if params.get("delivery_success") is False and str(obj.get("id")) not in self.undelivered:
            return False
        types = params.get("types")
        if types is not None and obj.get("type") not in types:
            return False
        since = (params.get("created") or {}).get("gte")
        return since is None or int(obj.get("created") or 0) >= since


@dataclass
class MemoryTable:
    """`ReconcileTable` over a dict of snapshots, keyed as the worker keys them."""

    snapshots: dict[Key, Snapshot] = field(default_factory=dict)
    ledger: set[str] = field(default_factory=set)  # an older table's EVENT# items
    ledger_reads: int = 0
    scan_marks: list[bool] = field(default_factory=list)  # each scan_page's `marks`: False writes nothing

    def store(self, snapshot: Snapshot) -> None:
        key = self.key_of(snapshot.record.kind, snapshot.record.id, snapshot.customer_id)
        assert key is not None
        self.snapshots[key] = snapshot

    @staticmethod
    def key_of(kind: RecordKind, object_id: str, customer: str | None) -> Key | None:
        if customer is not None:
            return f"CUSTOMER#{customer}", f"{kind.upper()}#{object_id}"
        if kind == "purchase":
            return f"GUEST#{object_id}", f"{kind.upper()}#{object_id}"
        return None

    def key_of_payment_record(self, snapshot: Snapshot) -> Key:
        return f"UNMATCHED#{snapshot.record.id}", f"{snapshot.record.kind.upper()}#{snapshot.record.id}"

    def records(self, keys: Iterable[Key]) -> dict[Key, Snapshot]:
        return {key: self.snapshots[key] for key in set(keys) if key in self.snapshots}

    def subscriptions(self, objects: Iterable[Mapping[str, Any]]) -> dict[str, Snapshot]:
        found: dict[str, Snapshot] = {}
        for obj in objects:
            key = self.key_of("subscription", str(obj.get("id")), customer_of_object(obj))
            if key in self.snapshots:
                found[str(obj["id"])] = self.snapshots[key]
        return found

    def applied(self, event_ids: Iterable[str]) -> set[str]:
        self.ledger_reads += 1
        return set(event_ids) & self.ledger

    def of_customer(self, customer_id: str) -> list[Snapshot]:
        return [s for (pk, _), s in self.snapshots.items() if pk == f"CUSTOMER#{customer_id}"]

    def scan_page(
        self,
        position: str | None,
        limit: int,
        compared_already: Callable[[str, str], bool],
        *,
        marks: bool = True,
    ) -> RecordsPage:
        """The records-to-check index as the worker keeps it: the records that can drift, and (as the
        customers' entitlements items do) every Connect account a customer's records name."""
        self.scan_marks.append(marks)
        keys = sorted(key for key, snapshot in self.snapshots.items() if can_drift(snapshot.record))
        start = keys.index(tuple(position.split("|"))) + 1 if position else 0  # type: ignore[arg-type]
        page = keys[start : start + limit]
        scanned = [
            ScannedRecord(
                key=key,
                kind=self.snapshots[key].record.kind,
                object_id=self.snapshots[key].record.id,
                livemode=self.snapshots[key].record.livemode,
                account=self.snapshots[key].account,
                snapshot=lambda key=key: self.snapshots[key],  # type: ignore[misc]
            )
            for key in page
        ]
        following = "|".join(page[-1]) if start + limit < len(keys) and page else None
        accounts: set[Account] = {
            ("live" if s.record.livemode else "test", s.account)
            for key, s in self.snapshots.items()
            if s.account and (key in page or (start == 0 and s.customer_id is not None))
        }
        return RecordsPage(
            [r for r in scanned if not compared_already(r.kind, r.object_id)], accounts, following
        )


@dataclass
class MemoryPassStores:
    """`PassStores`: one cursor per kind (pass, backfill, dry runs), shared seen ids and accounts."""

    cursors: dict[tuple[bool, bool], PassCursor] = field(default_factory=dict)
    seen_ids: dict[str, set[str]] = field(default_factory=dict)
    known_accounts: set[Account] = field(default_factory=set)
    marks: dict[Account, int] = field(default_factory=dict)

    def __call__(self, *, dry_run: bool = False, backfill: bool = False) -> MemoryPassStore:
        return MemoryPassStore(self, (dry_run, backfill))


@dataclass
class MemoryPassStore:
    stores: MemoryPassStores
    kind: tuple[bool, bool]

    def load(self) -> PassCursor | None:
        return self.stores.cursors.get(self.kind)

    def save(self, cursor: PassCursor) -> PassCursor:
        stored = self.stores.cursors.get(self.kind)
        if stored is not None and stored.version != cursor.version:
            raise CursorConflict("another reconcile run moved the cursor: this run stops")
        saved = PassCursor(**{**_fields(cursor), "version": (cursor.version or 0) + 1})
        self.stores.cursors[self.kind] = saved
        return saved

    def add_seen(self, pass_id: str, page: int, ids: Iterable[str], now: int) -> None:
        self.stores.seen_ids.setdefault(pass_id, set()).update(ids)

    def seen(self, pass_id: str) -> set[str]:
        return set(self.stores.seen_ids.get(pass_id, set()))

    def accounts(self) -> set[Account]:
        return set(self.stores.known_accounts)

    def add_accounts(self, accounts: Iterable[Account]) -> None:
        self.stores.known_accounts.update(accounts)

    def deauthorized(self) -> dict[Account, int]:
        return dict(self.stores.marks)

    def set_deauthorized(self, account: Account, since: int | None) -> None:
        if since is None:
            self.stores.marks.pop(account, None)
        else:
            self.stores.marks.setdefault(account, since)


@dataclass
class MemoryQueue:
    sent: list[QueueMessage] = field(default_factory=list)

    def send(self, messages: Sequence[QueueMessage]) -> None:
        self.sent.extend(messages)


def _fields(cursor: PassCursor) -> dict[str, Any]:
    return {name: getattr(cursor, name) for name in PassCursor.__dataclass_fields__}


# -- a world to run passes in ----------------------------------------------------------------------

T0 = 1_767_000_000
DAY = 86_400
PRO = s.PriceSpec("price_pro", "prod_pro")


@dataclass
class Clock:
    now: float = float(T0 + 3600)
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class World:
    """A reconciler over the in-memory ports, with a clock that sleeps instantly."""

    stripe: MemoryStripe = field(default_factory=MemoryStripe)
    table: MemoryTable = field(default_factory=MemoryTable)
    stores: MemoryPassStores = field(default_factory=MemoryPassStores)
    queue: MemoryQueue = field(default_factory=MemoryQueue)
    clock: Clock = field(default_factory=Clock)

    def reconciler(self) -> Reconciler:
        return Reconciler(
            self.stripe,
            self.queue,
            self.table,
            self.stores,
            clock=self.clock,
            sleep=self.clock.sleep,
            jitter=lambda: 0.5,
        )

    def run(
        self,
        scope: Scope | None = None,
        *,
        dry_run: bool = False,
        budget: float = 780,
        progress: Callable[[ReconcileReport], None] | None = None,
    ) -> ReconcileReport:
        return self.reconciler().run(
            scope or Everything(), dry_run=dry_run, time_budget_seconds=budget, progress=progress
        )

    def queued_ids(self) -> list[str]:
        """The ids of the objects and events queued so far, in order."""
        bodies = [json.loads(m.body) for m in self.queue.sent]
        return [b["data"]["object"]["id"] if b["type"] == "sync.fetched" else b["id"] for b in bodies]

    def next_pass(self) -> ReconcileReport:
        self.queue.sent.clear()
        self.clock.now += 3600
        return self.run()

    def repaired(self) -> set[tuple[str, str | None]]:
        """(object id, Connect account) of every fetched object queued."""
        bodies = [json.loads(m.body) for m in self.queue.sent]
        return {(b["data"]["object"]["id"], b.get("account")) for b in bodies if b["type"] == "sync.fetched"}

    def lost_cancellation(self, customer: str, account: str | None = None) -> None:
        """The table says active; Stripe says canceled (the webhook never arrived)."""
        self.table.store(stored(subscription(customer), account))
        canceled = subscription(customer, "canceled", canceled_at=T0 + 100, ended_at=T0 + 100)
        self.stripe.put(canceled, account=account)


def subscription(customer: str, status: str = "active", **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": f"sub_{customer}",
        "items": [s.ItemSpec(PRO)],
        "created": T0,
        "period_start": T0,
        "period_end": T0 + 30 * DAY,
    }
    fields.update(changes)
    return s.subscription(s.IdFactory(customer), customer=customer, status=status, **fields)  # type: ignore[arg-type]


def stored(obj: dict[str, Any], account: str | None = None, created: int = T0 + 10) -> Snapshot:
    event = s.event(
        s.IdFactory(f"{obj['id']}:{created}"), "customer.subscription.updated", obj, created=created
    )
    if account is not None:
        event["account"] = account
    snapshot = snapshot_of(parse_event(event))
    assert isinstance(snapshot, Snapshot)
    return snapshot
