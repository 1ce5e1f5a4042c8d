"""The one fake Stripe API of the tests and benches: a stateful server on 127.0.0.1 for the stripe SDK
(`api_base`, or STRIPE_API_BASE).

It serves what the worker, the reconciler, the backfill and the ops CLI read, as Stripe does:
* lists, newest first, with `limit`, `starting_after`, `has_more`, `created[gte|gt|lte|lt]`:
  subscriptions (`status`, default "not canceled"; `customer`, `customer_account`; test-clock
  subscriptions only with `test_clock`), Checkout sessions (`status`; `expand[]=data.line_items`,
  `data.payment_intent.latest_charge`), payment intents, charges, refunds and disputes
  (`expand[]=data.charge`), customers (deleted ones are never listed), invoices, events
  (`delivery_success`, `type`, `types[]`);
* objects by id (a deleted customer answers `{"deleted": true}`; `expand[]=charge` on a dispute,
  `expand[]=payment_intent.latest_charge` on a Checkout session),
  Checkout line items, `GET /v1/entitlements/active_entitlements?customer=…`, events by id, thin
  events at `GET /v2/core/events/{id}`;
* the key's mode selects the objects (a test key sees test objects only) and the `Stripe-Account`
  header the account (objects put with `account=` live in that connected account only);
* faults on demand: the next N requests (optionally of one path prefix) answer 429 or 5xx, or have
  their connection dropped. Every request is recorded.

Routes live in `_route` (one `case` per path shape), so another route is one more case.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

type Json = dict[str, Any]
type Fault = Literal[429, 500, 502, 503, "drop"]

ERROR_BODIES: dict[int, Json] = {
    429: {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}},
    500: {"error": {"type": "api_error", "message": "Something went wrong on Stripe's end"}},
    502: {"error": {"type": "api_error", "message": "Bad gateway"}},
    503: {"error": {"type": "api_error", "message": "Service unavailable"}},
}

# The Stripe `object` of each list path, and the path of each object type.
COLLECTIONS: dict[str, str] = {
    "subscriptions": "subscription",
    "checkout/sessions": "checkout.session",
    "payment_intents": "payment_intent",
    "charges": "charge",
    "refunds": "refund",
    "disputes": "dispute",
    "customers": "customer",
    "invoices": "invoice",
    "events": "event",
}
PATH_OF: dict[str, str] = {obj: path for path, obj in COLLECTIONS.items()}


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    query: Mapping[str, str]
    status: int | str  # the status sent, or "drop"
    livemode: bool
    account: str | None = None

    @property
    def outcome(self) -> str:
        return str(self.status)


@dataclass(slots=True)
class _Stored:
    obj: Json
    text: str  # serialised once: the bench lists tens of thousands of objects
    account: str | None

    @property
    def created(self) -> int:
        return int(self.obj.get("created") or 0)


@dataclass(slots=True)
class _Collection:
    by_id: dict[str, _Stored] = field(default_factory=dict)
    _ordered: list[_Stored] | None = None
    _index: dict[str, int] | None = None

    def put(self, stored: _Stored) -> None:
        self.by_id[str(stored.obj["id"])] = stored
        self._ordered = self._index = None

    def remove(self, object_id: str) -> None:
        self.by_id.pop(object_id, None)
        self._ordered = self._index = None

    def ordered(self) -> tuple[list[_Stored], dict[str, int]]:
        if self._ordered is None or self._index is None:  # Stripe lists newest first
            self._ordered = sorted(self.by_id.values(), key=lambda s: (-s.created, str(s.obj["id"])))
            self._index = {str(s.obj["id"]): i for i, s in enumerate(self._ordered)}
        return self._ordered, self._index


@dataclass(frozen=True, slots=True)
class _Fault:
    fault: Fault
    path: str


class FakeStripe:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._collections: dict[str, _Collection] = {obj: _Collection() for obj in PATH_OF}
        self._line_items: dict[str, list[Json]] = {}
        self._entitlements: dict[tuple[str, bool, str | None], list[Json]] = {}
        self._deleted_customers: dict[str, _Stored] = {}
        self._thin_events: dict[str, Json] = {}  # /v2/core/events/{id}
        self._undelivered: set[str] = set()
        self._faults: list[_Fault] = []
        # (customer, livemode) a customer-filtered list refuses as Stripe refuses an unknown customer.
        self.unknown_customers: set[tuple[str, bool]] = set()
        # Refusals as Stripe words them: (path prefix, account) -> the permission a restricted key lacks;
        # connected accounts that deauthorized the platform; list parameters the API does not know.
        self._forbidden: dict[tuple[str, str | None], str] = {}
        self.deauthorized: set[str] = set()
        self.unknown_parameters: set[str] = set()
        self.requests: list[Request] = []
        self.on_request: Callable[[], None] | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeStripe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- state -----------------------------------------------------------------------------------

    def put(self, obj: Json, *, account: str | None = None) -> None:
        """Any object with an `object` this fake serves; `account`: the connected account it lives in."""
        self.put_many([obj], account=account)

    def put_many(self, objects: Iterable[Json], *, account: str | None = None) -> None:
        with self._lock:
            for obj in objects:
                kind = str(obj.get("object"))
                if kind not in self._collections:
                    raise ValueError(f"the fake serves no {kind!r} objects")
                self._collections[kind].put(_Stored(obj, json.dumps(obj, separators=(",", ":")), account))
                if kind == "customer":
                    self._deleted_customers.pop(str(obj["id"]), None)

    def put_subscription(self, obj: Json, *, account: str | None = None) -> None:
        self.put(obj, account=account)

    def put_subscriptions(self, objects: list[Json], *, account: str | None = None) -> None:
        self.put_many(objects, account=account)

    def remove_subscription(self, subscription_id: str) -> None:
        with self._lock:
            self._collections["subscription"].remove(subscription_id)

    def subscription(self, subscription_id: str) -> Json:
        return self._collections["subscription"].by_id[subscription_id].obj

    def subscriptions(self) -> list[Json]:
        return [stored.obj for stored in self._collections["subscription"].by_id.values()]

    def objects(self, kind: str) -> list[Json]:
        return [stored.obj for stored in self._collections[kind].by_id.values()]

    def put_session(
        self, obj: Json, line_items: list[Json] | None = None, *, account: str | None = None
    ) -> None:
        self.put(obj, account=account)
        with self._lock:
            self._line_items[obj["id"]] = list(line_items or [])

    def put_payment_intent(self, obj: Json, *, account: str | None = None) -> None:
        self.put(obj, account=account)

    def delete_customer(
        self, customer_id: str, *, livemode: bool = False, account: str | None = None
    ) -> None:
        """Deleted: no longer listed; retrieving it answers the deleted stub, as Stripe does."""
        stub = {"id": customer_id, "object": "customer", "deleted": True, "livemode": livemode}
        with self._lock:
            self._collections["customer"].remove(customer_id)
            self._deleted_customers[customer_id] = _Stored(stub, json.dumps(stub), account)

    def put_active_entitlements(
        self,
        customer: str,
        lookup_keys: Iterable[str],
        *,
        livemode: bool = False,
        account: str | None = None,
    ) -> None:
        """The customer's active entitlements (`GET /v1/entitlements/active_entitlements`)."""
        entries = [
            {
                "id": f"ent_{customer}_{key}",
                "object": "entitlements.active_entitlement",
                "feature": f"feat_{key}",
                "livemode": livemode,
                "lookup_key": key,
            }
            for key in lookup_keys
        ]
        with self._lock:
            self._entitlements[(customer, livemode, account)] = entries

    def put_event(self, event: Json, *, delivered: bool, account: str | None = None) -> None:
        self.put(event, account=account or event.get("account"))
        with self._lock:
            if delivered:
                self._undelivered.discard(event["id"])
            else:
                self._undelivered.add(event["id"])

    def put_thin_event(self, event: Json) -> None:
        with self._lock:
            self._thin_events[event["id"]] = event

    def load(self, api_objects: Mapping[str, Json], api_lists: Mapping[str, Any]) -> None:
        """A scenario's API state (events.scenarios.Scenario.api_objects / api_lists)."""
        for obj in api_objects.values():
            if obj.get("object") == "customer" and obj.get("deleted"):
                self.delete_customer(str(obj["id"]), livemode=bool(obj.get("livemode")))
            elif obj.get("object") in self._collections:
                self.put(obj)
        for path, listing in api_lists.items():
            parts = urlsplit(path)
            data = list(listing.get("data", [])) if isinstance(listing, Mapping) else list(listing)
            if parts.path.endswith("/line_items"):
                with self._lock:
                    self._line_items[parts.path.split("/")[-2]] = data
            elif parts.path == "/v1/entitlements/active_entitlements":
                customer = dict(parse_qsl(parts.query))["customer"]
                livemode = any(bool(e.get("livemode")) for e in data)
                with self._lock:
                    self._entitlements[(customer, livemode, None)] = data
            else:
                raise ValueError(f"the fake serves no list {path!r}")

    # -- faults and what was asked ---------------------------------------------------------------

    def fail_next(self, count: int, status: Fault = 429, *, path: str = "/v1/") -> None:
        """Answer the next `count` requests under `path` with `status` (429 or 5xx), or drop their
        connection without an answer ("drop": the SDK treats it as a timeout, a retryable error)."""
        with self._lock:
            self._faults.extend([_Fault(status, path)] * count)

    def fail(self, fault: Fault, times: int = 1, *, path: str = "/v1/") -> None:
        self.fail_next(times, fault, path=path)

    def forbid(self, path: str, permission: str, *, account: str | None = None) -> None:
        """Answer requests under `path` 403 (as `account` only, or as any account when None), as Stripe
        answers a restricted key that lacks `permission` (e.g. rak_event_read)."""
        with self._lock:
            self._forbidden[(path, account)] = permission

    def recover(self) -> None:
        """Stripe answers again: the faults not yet met are dropped."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> int:
        return len(self._faults)

    def count(self, path_prefix: str = "/", status: int | None = None) -> int:
        return sum(
            1
            for r in list(self.requests)
            if r.path.startswith(path_prefix) and (status is None or r.status == status)
        )

    def outcomes(self, path: str = "/v1/") -> list[str]:
        return [r.outcome for r in list(self.requests) if r.path.startswith(path)]

    # -- serving ---------------------------------------------------------------------------------

    def answer(
        self, path: str, query: Mapping[str, str], livemode: bool, account: str | None = None
    ) -> tuple[int | str, str]:
        if self.on_request is not None:
            self.on_request()
        with self._lock:
            for index, fault in enumerate(self._faults):
                if path.startswith(fault.path):
                    del self._faults[index]
                    self.requests.append(Request(path, query, fault.fault, livemode, account))
                    error_status = fault.fault if isinstance(fault.fault, int) else 500
                    return fault.fault, json.dumps(ERROR_BODIES.get(error_status, ERROR_BODIES[500]))
            refused = self._refusal(path, query, account)
            status, body = refused or self._route(path, query, _Scope(livemode, account))
            self.requests.append(Request(path, query, status, livemode, account))
            return status, body

    def _refusal(self, path: str, query: Mapping[str, str], account: str | None) -> tuple[int, str] | None:
        if account is not None and account in self.deauthorized:
            message = (
                f"The provided key 'sk_test_***' does not have access to account '{account}' (or that "
                "account does not exist). Application access may have been revoked."
            )
            return 403, _error("invalid_request_error", message, code="account_invalid")
        for (prefix, refused_account), permission in self._forbidden.items():
            if path.startswith(prefix) and refused_account in (None, account):
                on = f" on account '{account}'" if account else ""
                message = (
                    "The provided key 'rk_test_***' does not have the required permissions for this "
                    f"endpoint{on}. Having the '{permission}' permission would allow this request to continue."
                )
                return 403, _error("invalid_request_error", message)
        unknown = sorted(self.unknown_parameters & {name.partition("[")[0] for name in query})
        if unknown:
            return 400, _error("invalid_request_error", f"Unexpected {unknown[0]}", code="parameter_unknown")
        return None

    def _route(self, path: str, query: Mapping[str, str], scope: _Scope) -> tuple[int, str]:
        if path.startswith("/v2/core/events/"):
            object_id = path.removeprefix("/v2/core/events/")
            thin = self._thin_events.get(object_id)
            if thin is None or bool(thin.get("livemode")) != scope.livemode:
                return _missing("v2.core.event", object_id)
            return 200, json.dumps(thin)
        parts = [p for p in path.split("/") if p][1:]  # without "v1"
        match parts:
            case ["checkout", "sessions"]:
                return 200, self._list("checkout.session", query, scope)
            case ["checkout", "sessions", object_id]:
                return self._one("checkout.session", object_id, query, scope)
            case ["checkout", "sessions", object_id, "line_items"]:
                status, body = self._one("checkout.session", object_id, {}, scope)
                if status != 200:
                    return status, body
                lines = self._line_items.get(object_id, [])
                return 200, _list_text([json.dumps(line) for line in lines], False, path)
            case ["entitlements", "active_entitlements"]:
                customer = query.get("customer", "")
                entries = self._entitlements.get((customer, scope.livemode, scope.account), [])
                return 200, _list_text([json.dumps(e) for e in entries], False, path)
            case ["subscriptions"]:
                owner = query.get("customer") or query.get("customer_account")
                if owner is not None and (owner, scope.livemode) in self.unknown_customers:
                    return _missing("customer", owner)
                return 200, self._list("subscription", query, scope)
            case [collection] if collection in COLLECTIONS:
                return 200, self._list(COLLECTIONS[collection], query, scope)
            case ["customers", object_id] if object_id in self._deleted_customers:
                stored = self._deleted_customers[object_id]
                if not scope.sees(stored):
                    return _missing("customer", object_id)
                return 200, stored.text
            case [collection, object_id] if collection in COLLECTIONS:
                return self._one(COLLECTIONS[collection], object_id, query, scope)
            case _:
                return 404, json.dumps({"error": {"type": "invalid_request_error", "message": "no route"}})

    def _one(self, kind: str, object_id: str, query: Mapping[str, str], scope: _Scope) -> tuple[int, str]:
        stored = self._collections[kind].by_id.get(object_id)
        if stored is None or not scope.sees(stored):
            return _missing(kind, object_id)
        expand = _expand(query)
        if kind == "dispute" and "charge" in expand:
            return 200, json.dumps(self._with_charge(stored.obj, scope))
        if kind == "checkout.session" and "payment_intent.latest_charge" in expand:
            return 200, json.dumps(self._with_payment(stored.obj, scope))
        return 200, stored.text

    def _list(self, kind: str, query: Mapping[str, str], scope: _Scope) -> str:
        ordered, index = self._collections[kind].ordered()
        wanted = _filter(kind, query, self._undelivered)
        expand = _expand(query)
        limit = max(1, min(100, int(query.get("limit", "10"))))
        start = 0
        after = query.get("starting_after")
        if after is not None:
            start = index[after] + 1 if after in index else len(ordered)
        page: list[str] = []
        has_more = False
        for stored in ordered[start:]:
            if not scope.sees(stored) or not wanted(stored.obj):
                continue
            if len(page) == limit:
                has_more = True
                break
            page.append(self._expanded(kind, stored, expand, scope))
        return _list_text(page, has_more, f"/v1/{PATH_OF[kind]}")

    def _expanded(self, kind: str, stored: _Stored, expand: set[str], scope: _Scope) -> str:
        if kind == "checkout.session" and expand & {"data.line_items", "data.payment_intent.latest_charge"}:
            obj = dict(stored.obj)
            if "data.line_items" in expand:
                lines = self._line_items.get(str(stored.obj["id"]), [])
                url = f"/v1/checkout/sessions/{stored.obj['id']}/line_items"
                obj["line_items"] = {"object": "list", "data": lines, "has_more": False, "url": url}
            if "data.payment_intent.latest_charge" in expand:
                obj = self._with_payment(obj, scope)
            return json.dumps(obj)
        if kind in ("refund", "dispute") and "data.charge" in expand:
            return json.dumps(self._with_charge(stored.obj, scope))
        return stored.text

    def _with_payment(self, obj: Json, scope: _Scope) -> Json:
        """A session with its PaymentIntent expanded, and that PaymentIntent's latest charge."""
        intent = self._collections["payment_intent"].by_id.get(str(obj.get("payment_intent")))
        if intent is None or not scope.sees(intent):
            return obj
        expanded = dict(intent.obj)
        charge = self._collections["charge"].by_id.get(str(expanded.get("latest_charge")))
        if charge is not None and scope.sees(charge):
            expanded["latest_charge"] = charge.obj
        return {**obj, "payment_intent": expanded}

    def _with_charge(self, obj: Json, scope: _Scope) -> Json:
        charge = self._collections["charge"].by_id.get(str(obj.get("charge")))
        return {**obj, "charge": charge.obj} if charge is not None and scope.sees(charge) else obj


@dataclass(frozen=True, slots=True)
class _Scope:
    """Which objects a request sees: its key's mode, and the account of its Stripe-Account header."""

    livemode: bool
    account: str | None

    def sees(self, stored: _Stored) -> bool:
        return bool(stored.obj.get("livemode")) == self.livemode and stored.account == self.account


def _expand(query: Mapping[str, str]) -> set[str]:
    return {value for key, value in query.items() if key == "expand" or key.startswith("expand[")}


def _filter(kind: str, query: Mapping[str, str], undelivered: set[str]) -> Callable[[Json], bool]:
    bounds = [
        (op, int(query[f"created[{op}]"])) for op in ("gte", "gt", "lte", "lt") if f"created[{op}]" in query
    ]
    if "created" in query:
        bounds.append(("eq", int(query["created"])))
    status = query.get("status")
    customer = query.get("customer")
    customer_account = query.get("customer_account")
    test_clock = query.get("test_clock")
    delivery = query.get("delivery_success")
    types = {value for key, value in query.items() if key.startswith("types[")}
    event_type = query.get("type")

    def in_time(obj: Json) -> bool:
        created = int(obj.get("created") or 0)
        for op, bound in bounds:
            if op == "gte" and not created >= bound:
                return False
            if op == "gt" and not created > bound:
                return False
            if op == "lte" and not created <= bound:
                return False
            if op == "lt" and not created < bound:
                return False
            if op == "eq" and created != bound:
                return False
        return True

    def wanted(obj: Json) -> bool:
        if not in_time(obj):
            return False
        if customer is not None and obj.get("customer") != customer:
            return False
        if customer_account is not None and obj.get("customer_account") != customer_account:
            return False
        if kind == "subscription":
            if (obj.get("test_clock") or None) != test_clock:
                return False
            if status == "all":
                return True
            return bool(obj["status"] != "canceled" if status is None else obj["status"] == status)
        if kind == "checkout.session" and status is not None:
            return bool(obj.get("status") == status)
        if kind == "event":
            if delivery is not None and (delivery == "false") != (obj["id"] in undelivered):
                return False
            if types and obj.get("type") not in types:
                return False
            if event_type is not None:
                prefix = event_type.removesuffix("*")
                matches = obj.get("type", "").startswith(prefix) if event_type.endswith("*") else None
                return bool(matches) if matches is not None else obj.get("type") == event_type
        return True

    return wanted


def _list_text(items: list[str], has_more: bool, url: str) -> str:
    return (
        '{"object":"list","data":['
        + ",".join(items)
        + f'],"has_more":{"true" if has_more else "false"},"url":{json.dumps(url)}}}'
    )


def _missing(kind: str, object_id: str) -> tuple[int, str]:
    error = {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": f"No such {kind}: '{object_id}'",
        "param": "id",
    }
    return 404, json.dumps({"error": error})


def _handler_for(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            account = self.headers.get("Stripe-Account") or None
            status, body = fake.answer(parts.path, query, livemode="_live_" in key, account=account)
            if status == "drop":
                self.close_connection = True  # no status line: the client's read fails
                return
            data = body.encode()
            self.send_response(int(status))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_fake{len(fake.requests)}")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _error(kind: str, message: str, *, code: str | None = None) -> str:
    error: Json = {"type": kind, "message": message}
    if code is not None:
        error["code"] = code
    return json.dumps({"error": error})
