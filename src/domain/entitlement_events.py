""" "Entitlements changed" events: what a backend is told when what it reads of an entitlements item changes.

Pure: the publisher (handlers.entitlements_changed) hands over one DynamoDB stream record of the table's
entitlements items, keys and both images in DynamoDB's attribute-value JSON, exactly as the stream
delivers them; this module answers with the EventBridge entry to publish, or None when a backend would
read nothing new. What a backend reads is `features` (each with `until` and `source`), `payment_issue`,
`deleted` and `livemode`; `version`, `updated_at` and the internal attributes alone never publish (a repair
that rewrites the same access, for example), nor does an item appearing (or going) that grants nothing.

The detail (a published interface, README "Be told when access changes"):

    {"customer_id": "cus_…" | null, "user_id": "…" | null, "customer_ids": [...] (user items only),
     "livemode": bool, "account": "acct_…" | null, "version": N, "updated_at": N,
     "cause_event_id": "evt_…" | null,
     "before": {"features": {name: {"until": N | null, "source": S}}, "payment_issue": bool,
                "deleted": bool} | null,          (null: the item did not exist)
     "after": {...same...} | null}                (null: the item was deleted)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SOURCE = "stripe-sync"
CUSTOMER_DETAIL_TYPE = "Customer Entitlements Changed"
USER_DETAIL_TYPE = "User Entitlements Changed"
ENTITLEMENTS_SK = "ENTITLEMENTS"
CUSTOMER_PREFIX = "CUSTOMER#"
USER_PREFIX = "USER#"


class MalformedStreamRecord(ValueError):
    """A stream record that is not one of an entitlements item as this stack writes it."""


@dataclass(frozen=True, slots=True)
class Access:
    """What a backend reads of an entitlements item."""

    features: dict[str, dict[str, Any]]  # name -> {"until": int | None, "source": str}
    payment_issue: bool
    deleted: bool
    livemode: bool

    def grants_nothing(self) -> bool:
        return not self.features and not self.payment_issue and not self.deleted

    def as_detail(self) -> dict[str, Any]:
        return {"features": self.features, "payment_issue": self.payment_issue, "deleted": self.deleted}


@dataclass(frozen=True, slots=True)
class ChangeEntry:
    """One PutEvents entry: its detail type and the detail as JSON text."""

    detail_type: str
    detail: dict[str, Any]
    resource_key: str  # the item's pk, for the log

    def detail_text(self) -> str:
        return json.dumps(self.detail, sort_keys=True, separators=(",", ":"))


def plain(value: Mapping[str, Any]) -> Any:
    """One DynamoDB attribute value ({"S": …}, {"N": …}, {"M": …}, …) as plain JSON."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise MalformedStreamRecord(f"not a DynamoDB attribute value: {value!r:.80}")
    ((kind, raw),) = value.items()
    if kind == "S":
        return str(raw)
    if kind == "N":
        return float(raw) if any(c in str(raw) for c in ".eE") else int(raw)
    if kind == "BOOL":
        return bool(raw)
    if kind == "NULL":
        return None
    if kind == "M":
        return {name: plain(item) for name, item in raw.items()}
    if kind == "L":
        return [plain(item) for item in raw]
    if kind in ("SS", "NS"):
        return sorted(raw)
    raise MalformedStreamRecord(f"attribute type {kind} is not one an entitlements item holds")


def access_of(image: Mapping[str, Any] | None) -> Access | None:
    if image is None:
        return None
    item = {name: plain(value) for name, value in image.items()}
    raw_features = item.get("features") or {}
    if not isinstance(raw_features, dict):
        raise MalformedStreamRecord("features is not a map")
    features: dict[str, dict[str, Any]] = {}
    for name, grant in sorted(raw_features.items()):
        if not isinstance(grant, dict) or not isinstance(grant.get("source"), str):
            raise MalformedStreamRecord(f"feature {name!r} has no source")
        until = grant.get("until")
        features[name] = {"until": until, "source": grant["source"]}
    return Access(
        features=features,
        payment_issue=bool(item.get("payment_issue", False)),
        deleted=bool(item.get("deleted", False)),
        livemode=bool(item.get("livemode", False)),
    )


def change_entry(record: Mapping[str, Any]) -> ChangeEntry | None:
    """The "entitlements changed" entry for one stream record (its `dynamodb` part and `eventName`),
    or None when what a backend reads is the same before and after (or the record is no entitlements
    item's: the event source's filter lets none through, this is a second guard)."""
    stream = record.get("dynamodb")
    if not isinstance(stream, Mapping):
        raise MalformedStreamRecord("record has no dynamodb part")
    keys = stream.get("Keys")
    if not isinstance(keys, Mapping):
        raise MalformedStreamRecord("record has no Keys")
    pk, sk = plain(keys.get("pk") or {"NULL": True}), plain(keys.get("sk") or {"NULL": True})
    if sk != ENTITLEMENTS_SK or not isinstance(pk, str):
        return None
    if pk.startswith(CUSTOMER_PREFIX):
        detail_type = CUSTOMER_DETAIL_TYPE
    elif pk.startswith(USER_PREFIX):
        detail_type = USER_DETAIL_TYPE
    else:
        return None
    old, new = stream.get("OldImage"), stream.get("NewImage")
    if record.get("eventName") in ("INSERT", "MODIFY") and new is None:
        raise MalformedStreamRecord("no NewImage: the stream must carry NEW_AND_OLD_IMAGES")
    before, after = access_of(old), access_of(new)
    if _reads_the_same(before, after):
        return None
    current = {name: plain(value) for name, value in (new or old or {}).items()}
    known = after or before
    detail: dict[str, Any] = {
        "customer_id": current.get("customer_id"),
        "user_id": current.get("user_id"),
        "livemode": known.livemode if known else None,
        "account": current.get("account"),
        "version": current.get("version"),
        "updated_at": current.get("updated_at"),
        "cause_event_id": current.get("cause_event_id"),
        "before": before.as_detail() if before else None,
        "after": after.as_detail() if after else None,
    }
    if detail_type == USER_DETAIL_TYPE:
        detail["customer_ids"] = current.get("customer_ids") or []
    return ChangeEntry(detail_type, detail, pk)


def _reads_the_same(before: Access | None, after: Access | None) -> bool:
    """No item and an item that grants nothing read alike (no feature, no flag): a customer's first
    event that grants nothing (customer.created) publishes nothing."""
    if before is None or after is None:
        present = after or before
        return present is None or present.grants_nothing()
    return before == after
