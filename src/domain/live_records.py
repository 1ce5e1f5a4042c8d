"""Which of a customer's records can still change what the customer may use.

A customer's history grows forever (an invoice and a payment every month, a purchase every day), but
entitlements depend on a handful of records. The worker keeps those few — the *live* records — in one
state item per customer and reads only it, the event's own record and the entitlements item, so an
event costs the same whatever the history. Everything else (a paid invoice, an ended subscription, a
payment that grants nothing) stays in its own record item, where the stale/tie checks of a later
snapshot of that same object find it.

Each record has a role:

* `CONTEXT`: kept while it can matter — the profile, the Stripe Entitlements summary, a subscription
  that is not over (`canceled` and `incomplete_expired` are final in Stripe; an ended one stays while
  it is newer than the summary, whose features it ends), an open invoice (grace
  period, payment problem), every charge and dispute (they revoke purchases, and may arrive before the
  purchase they revoke; there is one per refund or dispute, not per month), and of each subscription's
  paid invoices the one paid last (when the subscription was last paid up: the grace of a later
  past_due spell counts from the first invoice unpaid since, see `domain.entitlements`).
* `GRANT`: a one-time purchase or payment that grants something by itself. Of those, the state keeps
  only the ones that win a feature (the latest `until`, see `Grant.outlasts`), so 1,000 lifetime
  purchases of one product keep one entry. The others are *spilled*: when a winner is revoked or
  weakens, or a refund/dispute changes, while something was spilled, the state is rebuilt once from
  the customer's whole partition (`advance` returns None) — a rare event, never a routine one.
* `SETTLED`: nothing else. A settled record only matters again if a later snapshot of the same object
  changes it, and that snapshot's event reads and rewrites the record itself.

`entitlements_of(live) == compute_entitlements(all records)` is the property that makes this safe
(tests/unit/test_live_records.py proves it for random histories, incremental updates included). The
rules the state was built with are part of it (`fingerprint`): new rules rebuild it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from domain.entitlements import (
    EntitlementRules,
    Entitlements,
    Grant,
    compute_entitlements,
    newer_than_summary,
)
from domain.records import (
    EntitlementSummaryRecord,
    InvoiceRecord,
    ProfileRecord,
    PurchaseRecord,
    RecordKind,
    Snapshot,
    SubscriptionRecord,
)
from domain.settlement import FINAL_SUBSCRIPTION_STATUSES

# Bump when the role rules below change: states built by older code are then rebuilt once.
# 2: each subscription's last paid invoice (the grace of a past_due spell).
# 3: the users a customer answers for; ended subscriptions newer than the Entitlements summary.
LAYOUT = 3
REVOKING_KINDS: frozenset[RecordKind] = frozenset({"charge", "refund", "dispute"})
GRANTING_KINDS: frozenset[RecordKind] = frozenset({"purchase", "payment"})
# The kinds whose mode `compute_entitlements` reports as the customer's.
MODE_KINDS: frozenset[RecordKind] = frozenset({"profile", "subscription", "invoice", "purchase", "payment"})

Key = tuple[RecordKind, str]


class Role(Enum):
    CONTEXT = "context"
    GRANT = "grant"
    SETTLED = "settled"


def role_of(snapshot: Snapshot, rules: EntitlementRules) -> Role:
    record = snapshot.record
    kind = record.kind
    if kind in GRANTING_KINDS:
        alone = compute_entitlements("", [record], rules)
        return Role.GRANT if alone.features else Role.SETTLED
    if kind == "subscription":
        # An ended subscription is kept only while it is newer than the customer's Entitlements
        # summary (it ends the features it brought): `_settle` drops the others.
        return Role.CONTEXT
    if kind == "invoice":
        return Role.CONTEXT if getattr(record, "status", "") == "open" else Role.SETTLED
    return Role.CONTEXT  # profile, summary, charges, disputes, and any kind added later


def fingerprint(rules: EntitlementRules) -> str:
    """Identifies the rules (and this module's layout) a state was built with."""
    return hashlib.sha256(f"{LAYOUT}:{rules!r}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class LiveRecords:
    """The records a customer's entitlements depend on (what the state item stores)."""

    snapshots: Mapping[Key, Snapshot]
    livemode: bool | None  # the customer's mode, remembered once its records have all settled
    spilled: bool  # some granting purchase/payment is left out (another grants as much or more)
    rules: str  # `fingerprint` of the rules it was built with
    # The application users the customer's Checkout sessions named (`client_reference_id`): a session
    # in subscription mode settles at once, so its user is remembered here, not by its record.
    purchase_users: frozenset[str] = field(default_factory=frozenset)

    def get(self, key: Key) -> Snapshot | None:
        return self.snapshots.get(key)


def empty(rules: EntitlementRules) -> LiveRecords:
    return LiveRecords({}, None, False, fingerprint(rules))


def build(history: Iterable[Snapshot], rules: EntitlementRules) -> LiveRecords:
    """The live records of a whole history (one snapshot per object: the newest)."""
    latest: dict[Key, Snapshot] = {}
    livemode: bool | None = None
    for snapshot in history:
        current = latest.get(snapshot.key)
        if current is None or snapshot.stamp > current.stamp:
            latest[snapshot.key] = snapshot
        if livemode is None and snapshot.record.kind in MODE_KINDS:
            livemode = snapshot.record.livemode
    kept = _settle({key: s for key, s in latest.items() if role_of(s, rules) is not Role.SETTLED})
    for snapshot in _last_paid(latest.values()).values():
        kept[snapshot.key] = snapshot
    winners = _winners(kept, rules)
    users = frozenset(u for s in latest.values() if (u := _purchase_user(s)) is not None)
    return LiveRecords(
        _without_losers(kept, winners), livemode, _spills(kept, winners), fingerprint(rules), users
    )


def advance(live: LiveRecords, snapshot: Snapshot, rules: EntitlementRules) -> LiveRecords | None:
    """The live records once `snapshot` is stored; None when only the whole history can tell (a
    spilled purchase may matter again). Advancing with what is already reflected changes nothing, so a
    retry after a crash can always advance with the stored record to repair a state left behind."""
    key = snapshot.key
    current = live.get(key)
    if current is not None and not snapshot.stamp > current.stamp:
        return live
    if current is None and snapshot.record.kind == "entitlement_summary":
        # The customer's first summary: ended subscriptions settled before it may be newer than it
        # (delivery order), and only the history still has them. Once per customer.
        return None
    role = role_of(snapshot, rules)
    records = dict(live.snapshots)
    records.pop(key, None)
    if role is not Role.SETTLED:
        records[key] = snapshot
    was_paid_for = _paid_subscription(current) if current is not None else None
    if was_paid_for is not None and _paid_subscription(snapshot) != was_paid_for:
        return None  # the last paid invoice is paid no more: the one before is in the history
    paid_for = _paid_subscription(snapshot)
    if paid_for is not None:
        held = next((s for s in records.values() if _paid_subscription(s) == paid_for), None)
        if held is None or _paid_order(snapshot) > _paid_order(held):
            if held is not None:
                records.pop(held.key)
            records[key] = snapshot
    records = _settle(records)
    user = _purchase_user(snapshot)
    if user is not None and user not in live.purchase_users:
        live = replace(live, purchase_users=live.purchase_users | {user})
    livemode = live.livemode
    if livemode is None and snapshot.record.kind in MODE_KINDS:
        livemode = snapshot.record.livemode
    touches_grants = (
        role is Role.GRANT
        or (current is not None and current.record.kind in GRANTING_KINDS)
        or snapshot.record.kind in REVOKING_KINDS
    )
    if not touches_grants:
        return replace(live, snapshots=records, livemode=livemode)
    if live.spilled:
        if snapshot.record.kind in REVOKING_KINDS:
            return None  # a refund or dispute may revoke a winner or give a spilled purchase back
        if _weakened(_best_grants(live.snapshots, rules), _best_grants(records, rules)):
            return None  # a winner lost ground: the runner-up is among the spilled ones
    winners = _winners(records, rules)
    spilled = live.spilled or _spills(records, winners)
    return LiveRecords(_without_losers(records, winners), livemode, spilled, live.rules, live.purchase_users)


def entitlements_of(customer_id: str, live: LiveRecords, rules: EntitlementRules) -> Entitlements:
    computed = compute_entitlements(customer_id, (s.record for s in live.snapshots.values()), rules)
    if live.livemode is not None and computed.livemode != live.livemode:
        # Every record of the customer may have settled: its mode is remembered, not recomputed.
        return replace(computed, livemode=live.livemode)
    return computed


def users_of(live: LiveRecords) -> frozenset[str]:
    """The application users the customer answers for: those its Checkout sessions named, and the
    one its profile's metadata names now."""
    users = set(live.purchase_users)
    for snapshot in live.snapshots.values():
        if isinstance(snapshot.record, ProfileRecord) and snapshot.record.user_id:
            users.add(snapshot.record.user_id)
    return frozenset(users)


def _purchase_user(snapshot: Snapshot) -> str | None:
    record = snapshot.record
    return record.client_reference_id if isinstance(record, PurchaseRecord) else None


def _settle(records: dict[Key, Snapshot]) -> dict[Key, Snapshot]:
    """Drop the ended subscriptions (final in Stripe) that are not newer than the customer's
    Entitlements summary: they grant nothing, and the summary already reflects them."""
    summary = next((s.record for k, s in records.items() if k[0] == "entitlement_summary"), None)
    return {
        key: s
        for key, s in records.items()
        if not isinstance(s.record, SubscriptionRecord)
        or s.record.status not in FINAL_SUBSCRIPTION_STATUSES
        or (isinstance(summary, EntitlementSummaryRecord) and newer_than_summary(s.record, summary))
    }


# -- when each subscription was last paid up ------------------------------------------------------


def _paid_subscription(snapshot: Snapshot) -> str | None:
    """The subscription a paid invoice belongs to (None for anything else)."""
    record = snapshot.record
    if isinstance(record, InvoiceRecord) and record.status == "paid":
        return record.subscription_id
    return None


def _paid_order(snapshot: Snapshot) -> tuple[int, str]:
    record = snapshot.record
    assert isinstance(record, InvoiceRecord)
    return (record.paid_at or record.as_of, record.id)


def _last_paid(history: Iterable[Snapshot]) -> dict[str, Snapshot]:
    """Of each subscription's paid invoices, the one paid last."""
    last: dict[str, Snapshot] = {}
    for snapshot in history:
        subscription = _paid_subscription(snapshot)
        if subscription is None:
            continue
        held = last.get(subscription)
        if held is None or _paid_order(snapshot) > _paid_order(held):
            last[subscription] = snapshot
    return last


# -- which purchases win --------------------------------------------------------------------------


def _grants_alone(
    snapshot: Snapshot, revokers: list[Snapshot], rules: EntitlementRules
) -> Mapping[str, Grant]:
    """What one purchase/payment grants, given the refunds and disputes stored."""
    records = [snapshot.record, *(r.record for r in revokers)]
    return compute_entitlements("", records, rules).features


def _best_grants(records: Mapping[Key, Snapshot], rules: EntitlementRules) -> dict[str, tuple[Grant, Key]]:
    revokers = [s for s in records.values() if s.record.kind in REVOKING_KINDS]
    best: dict[str, tuple[Grant, Key]] = {}
    for key, snapshot in sorted(records.items()):
        if key[0] not in GRANTING_KINDS:
            continue
        for name, grant in _grants_alone(snapshot, revokers, rules).items():
            held = best.get(name)
            if held is None or grant.outlasts(held[0]):
                best[name] = (grant, key)
    return best


def _winners(records: Mapping[Key, Snapshot], rules: EntitlementRules) -> set[Key]:
    return {key for _, key in _best_grants(records, rules).values()}


def _without_losers(records: Mapping[Key, Snapshot], winners: set[Key]) -> dict[Key, Snapshot]:
    return {key: s for key, s in records.items() if key[0] not in GRANTING_KINDS or key in winners}


def _spills(records: Mapping[Key, Snapshot], winners: set[Key]) -> bool:
    """A granting record left out: it loses every feature, or a refund/dispute revokes it."""
    return any(key[0] in GRANTING_KINDS and key not in winners for key in records)


def _weakened(before: Mapping[str, tuple[Grant, Key]], after: Mapping[str, tuple[Grant, Key]]) -> bool:
    for name, (grant, _) in before.items():
        now = after.get(name)
        if now is None or (now[0] != grant and grant.outlasts(now[0])):
            return True
    return False
