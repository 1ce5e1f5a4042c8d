"""A user's access across all their Stripe customers: the user entitlements item (ARCHITECTURE.md, "The
table").

Checkout creates a customer per session unless given one, so one application user may have several
customers, each applied by its own writer (one FIFO group per customer). The item therefore keeps one
*part* per customer — that customer's entitlements as of its state version — and the published answer
is merged from the parts. A part is replaced only by one computed from a newer state of its customer
(versions only grow, one writer per customer), and the item is written under a condition on the
revision it was read at, so a writer of another customer in between makes the write fail and retry.
Whatever order the customers' events arrive in, the item ends as the merge of each customer's newest
part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from domain.entitlements import Entitlements, Grant


@dataclass(frozen=True, slots=True)
class CustomerPart:
    """One customer's share of a user's access, computed from that customer's state `version`.
    `entitlements` None: the customer no longer answers for this user (kept so a late part of it, from
    an older version, cannot bring it back)."""

    customer_id: str
    version: int
    entitlements: Entitlements | None


@dataclass(frozen=True, slots=True)
class UserEntitlements:
    user_id: str
    livemode: bool
    parts: Mapping[str, CustomerPart]
    features: Mapping[str, Grant]
    payment_issue: bool
    deleted: bool  # every customer of the user is deleted
    customer_ids: tuple[str, ...]
    version: int  # published: one higher at every change readers can see
    updated_at: int
    revision: int  # internal: one higher at every write (the write's condition)

    def same_access(self, other: UserEntitlements) -> bool:
        return (
            dict(self.features) == dict(other.features)
            and self.payment_issue == other.payment_issue
            and self.deleted == other.deleted
            and self.customer_ids == other.customer_ids
            and self.livemode == other.livemode
        )


def with_part(
    current: UserEntitlements | None,
    user_id: str,
    livemode: bool,
    part: CustomerPart,
    now: int,
    *,
    repair: bool = False,
) -> UserEntitlements | None:
    """The user item once `part` is merged in; None when the stored part of that customer is as new or
    newer (a duplicate, or a late write computed from an older state of the customer), or, for a
    `repair` (a retried or stale event re-checking the item), when it already says the same."""
    parts = dict(current.parts) if current is not None else {}
    held = parts.get(part.customer_id)
    if held is not None and held.version >= part.version:
        return None
    if repair and held is not None and held.entitlements == part.entitlements:
        return None
    parts[part.customer_id] = part
    merged = merge(user_id, livemode, parts)
    if current is None:
        return replace(merged, version=1, updated_at=now, revision=1)
    changed = not merged.same_access(current)
    return replace(
        merged,
        version=current.version + (1 if changed else 0),
        updated_at=now if changed else current.updated_at,
        revision=current.revision + 1,
    )


def merge(user_id: str, livemode: bool, parts: Mapping[str, CustomerPart]) -> UserEntitlements:
    """Everything any of the user's customers grants; for one feature the latest `until` wins (no end
    beats any end), as within one customer, so the answer does not depend on the order of the parts."""
    members = [p.entitlements for _, p in sorted(parts.items()) if p.entitlements is not None]
    features: dict[str, Grant] = {}
    for entitlements in members:
        for name, grant in entitlements.features.items():
            held = features.get(name)
            if held is None or grant.outlasts(held):
                features[name] = grant
    return UserEntitlements(
        user_id=user_id,
        livemode=livemode,
        parts=dict(parts),
        features=features,
        payment_issue=any(e.payment_issue for e in members if not e.deleted),
        deleted=bool(members) and all(e.deleted for e in members),
        customer_ids=tuple(e.customer_id for e in members),
        version=0,
        updated_at=0,
        revision=0,
    )
