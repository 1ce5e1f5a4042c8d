"""What a backfill lists and queues: every object that can grant access, once, after the first deploy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.records import RecordKind

Json = Mapping[str, Any]


def backfill_object(phase: str, obj: Json, user_id_key: str = "user_id") -> Json | None:
    """The object of a backfill list page to compare and queue, or None when it grants nothing:
    paid Checkout sessions in payment mode (and subscription-mode ones that name a user), succeeded
    PaymentIntents that grant by metadata, the charge of a refund, lost disputes, customers with a
    user id. Subscriptions are compared whatever their status."""
    match phase:
        case "subscriptions":
            return obj
        case "sessions":
            return _paid_session(obj)
        case "payments":
            metadata = obj.get("metadata")
            grants = isinstance(metadata, Mapping) and any(
                metadata.get(key) for key in ("features", "product_id", "product")
            )
            return obj if obj.get("status") == "succeeded" and grants else None
        case "refunds":
            charge = obj.get("charge")
            return charge if isinstance(charge, Mapping) and charge.get("object") == "charge" else None
        case "disputes":
            return obj if obj.get("status") == "lost" else None
        case "customers":
            metadata = obj.get("metadata")
            named = isinstance(metadata, Mapping) and bool(metadata.get(user_id_key))
            return obj if named and not obj.get("deleted") else None
        case _:
            raise ValueError(f"no backfill list for phase {phase!r}")


def _paid_session(obj: Json) -> Json | None:
    if obj.get("status") != "complete":
        return None
    if obj.get("mode") == "subscription":
        return obj if obj.get("client_reference_id") else None
    if obj.get("mode") != "payment" or obj.get("payment_status") not in ("paid", "no_payment_required"):
        return None
    lines = obj.get("line_items")
    if isinstance(lines, Mapping) and lines.get("has_more"):
        # Only the first page came expanded: let the worker fetch them all rather than grant a part.
        return {key: value for key, value in obj.items() if key != "line_items"}
    return obj


BACKFILL_KINDS: dict[str, RecordKind] = {
    "subscriptions": "subscription",
    "sessions": "purchase",
    "payments": "payment",
    "refunds": "charge",
    "disputes": "dispute",
    "customers": "profile",
}
