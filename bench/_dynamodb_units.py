"""DynamoDB's bill for what a botocore client sent: requests, read and write request units.

moto returns no ConsumedCapacity, so units are computed from the items themselves with DynamoDB's
rules (Developer Guide, "Read/write capacity mode" and "Item sizes"):

* item size: each attribute's name (UTF-8 bytes) plus its value — S: UTF-8 bytes, B: bytes, N: about
  one byte per two significant digits plus one, BOOL/NULL: 1, L/M: 3 plus their elements (1 byte each
  plus, for M, the names);
* a write (PutItem, UpdateItem, DeleteItem) costs 1 unit per started KB of the larger of the item
  before and after; a write whose condition fails still costs the stored item's size (at least 1);
* a strongly consistent read costs 1 unit per started 4 KB of each item read (GetItem, BatchGetItem;
  an item that is not there still costs 1); a Query costs the sum of the items it returns, per
  started 4 KB;
* inside TransactWriteItems every item costs twice.

The meter keeps the size of every item it saw written or read, for the "larger of before and after".
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

KB = 1024
READ_BLOCK = 4 * KB


def value_size(value: dict[str, Any]) -> int:
    (kind, inner), *_ = value.items()
    match kind:
        case "S":
            return len(str(inner).encode())
        case "B":
            return len(inner)
        case "N":
            digits = str(inner).lstrip("-").replace(".", "").strip("0") or "0"
            return math.ceil(len(digits) / 2) + 1
        case "BOOL" | "NULL":
            return 1
        case "L":
            return 3 + sum(1 + value_size(v) for v in inner)
        case "M":
            return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in inner.items())
        case "SS" | "NS" | "BS":
            return sum(value_size({kind[0]: v}) for v in inner)
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def _key(item: dict[str, Any]) -> tuple[str, str]:
    return (item["pk"]["S"], item["sk"]["S"])


@dataclass
class UnitMeter:
    """Counts what the registered clients cost. `snapshot()` / `since()` measure a stretch."""

    requests: Counter[str] = field(default_factory=Counter)
    read_units: float = 0.0
    write_units: float = 0.0
    sizes: dict[tuple[str, str], int] = field(default_factory=dict)
    written_bytes: Counter[str] = field(default_factory=Counter)  # by sort-key kind, for reports
    puts: Counter[str] = field(default_factory=Counter)  # accepted writes by sort-key kind
    # ... and by partition-key kind too: ("CUSTOMER", "ENTITLEMENTS") vs ("USER", "ENTITLEMENTS")
    puts_by_item: Counter[tuple[str, str]] = field(default_factory=Counter)
    _pending: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    def snapshot(self) -> tuple[int, float, float]:
        return sum(self.requests.values()), self.read_units, self.write_units

    def since(self, mark: tuple[int, float, float]) -> tuple[int, float, float]:
        now = self.snapshot()
        return now[0] - mark[0], now[1] - mark[1], now[2] - mark[2]

    # -- botocore hooks ---------------------------------------------------------------------------

    def _before(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["unit_meter"] = (model.name, params)

    def _after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        operation, params = context.get("unit_meter", (model.name, {}))
        self.requests[operation] += 1
        failed = "Error" in parsed and parsed["Error"].get("Code")
        match operation:
            case "PutItem":
                self._write(params["Item"], failed=bool(failed))
            case "DeleteItem":
                self._delete(params["Key"], failed=bool(failed))
            case "TransactWriteItems":
                for entry in params["TransactItems"]:
                    if "Put" in entry:
                        self._write(entry["Put"]["Item"], failed=bool(failed), factor=2)
                    elif "Delete" in entry:
                        self._delete(entry["Delete"]["Key"], failed=bool(failed), factor=2)
            case "BatchWriteItem":
                for requests in params["RequestItems"].values():
                    for request in requests:
                        if "PutRequest" in request:
                            self._write(request["PutRequest"]["Item"], failed=False)
                        else:
                            self._delete(request["DeleteRequest"]["Key"], failed=False)
            case "GetItem":
                item = parsed.get("Item")
                self.read_units += self._read(item) if item else 1
            case "BatchGetItem":
                found = [i for items in parsed.get("Responses", {}).values() for i in items]
                asked = sum(len(t["Keys"]) for t in params["RequestItems"].values())
                self.read_units += sum(self._read(i) for i in found) + (asked - len(found))
            case "Query" | "Scan":
                items = parsed.get("Items", [])
                total = 0
                for item in items:
                    self.sizes[_key(item)] = size = item_size(item)
                    total += size
                self.read_units += max(1, math.ceil(total / READ_BLOCK))

    def _read(self, item: dict[str, Any]) -> int:
        size = item_size(item)
        self.sizes[_key(item)] = size
        return max(1, math.ceil(size / READ_BLOCK))

    def _write(self, item: dict[str, Any], *, failed: bool, factor: int = 1) -> None:
        key = _key(item)
        before = self.sizes.get(key, 0)
        if failed:
            self.write_units += factor * max(1, math.ceil(before / KB))
            return
        size = item_size(item)
        self.write_units += factor * max(1, math.ceil(max(before, size) / KB))
        self.sizes[key] = size
        self.written_bytes[key[1].partition("#")[0]] += size
        self.puts[key[1].partition("#")[0]] += 1
        self.puts_by_item[(key[0].partition("#")[0], key[1].partition("#")[0])] += 1

    def _delete(self, key_attributes: dict[str, Any], *, failed: bool, factor: int = 1) -> None:
        key = _key(key_attributes)
        before = self.sizes.get(key, 0)
        self.write_units += factor * max(1, math.ceil(before / KB))
        if not failed:
            self.sizes.pop(key, None)
