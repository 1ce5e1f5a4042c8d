"""A small Stripe API on 127.0.0.1 for the stripe SDK (`api_base`), as the reconciler's tests and bench use it.

It serves what the reconciler and the worker read: subscription lists (`status`, `customer`,
`customer_account`, `starting_after`, `limit`, `has_more`; test-clock subscriptions are left out of
plain lists, as Stripe does), subscriptions, Checkout sessions (and their line items), payment intents
and events (`delivery_success`) by id. The key's mode selects the objects (a test key sees test
objects only). It records every request and can be told to answer 429 or 5xx to the next N requests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

type Json = dict[str, Any]

ERROR_BODIES = {
    429: {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}},
    500: {"error": {"type": "api_error", "message": "Something went wrong on Stripe's end"}},
    503: {"error": {"type": "api_error", "message": "Service unavailable"}},
}


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    query: Mapping[str, str]
    status: int
    livemode: bool


@dataclass(slots=True)
class _Stored:
    obj: Json
    text: str  # serialised once: the bench lists tens of thousands of objects


class FakeStripe:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: dict[str, _Stored] = {}
        self._ordered: list[_Stored] | None = None
        self._sessions: dict[str, Json] = {}
        self._line_items: dict[str, list[Json]] = {}
        self._payment_intents: dict[str, Json] = {}
        self._events: dict[str, Json] = {}
        self._thin_events: dict[str, Json] = {}  # /v2/core/events/{id}
        self._undelivered: set[str] = set()
        self._faults: list[int] = []
        # (customer, livemode) a customer-filtered list refuses as Stripe refuses an unknown customer.
        self.unknown_customers: set[tuple[str, bool]] = set()
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

    def put_subscription(self, obj: Json) -> None:
        with self._lock:
            self._subscriptions[obj["id"]] = _Stored(obj, json.dumps(obj, separators=(",", ":")))
            self._ordered = None

    def put_subscriptions(self, objects: list[Json]) -> None:
        with self._lock:
            for obj in objects:
                self._subscriptions[obj["id"]] = _Stored(obj, json.dumps(obj, separators=(",", ":")))
            self._ordered = None

    def remove_subscription(self, subscription_id: str) -> None:
        with self._lock:
            del self._subscriptions[subscription_id]
            self._ordered = None

    def subscription(self, subscription_id: str) -> Json:
        return self._subscriptions[subscription_id].obj

    def subscriptions(self) -> list[Json]:
        return [stored.obj for stored in self._subscriptions.values()]

    def put_session(self, obj: Json, line_items: list[Json] | None = None) -> None:
        with self._lock:
            self._sessions[obj["id"]] = obj
            self._line_items[obj["id"]] = list(line_items or [])

    def put_payment_intent(self, obj: Json) -> None:
        with self._lock:
            self._payment_intents[obj["id"]] = obj

    def put_event(self, event: Json, *, delivered: bool) -> None:
        with self._lock:
            self._events[event["id"]] = event
            if delivered:
                self._undelivered.discard(event["id"])
            else:
                self._undelivered.add(event["id"])

    def put_thin_event(self, event: Json) -> None:
        with self._lock:
            self._thin_events[event["id"]] = event

    def fail_next(self, count: int, status: int = 429) -> None:
        """Answer the next `count` requests with `status` (429 or 5xx) instead of serving them."""
        with self._lock:
            self._faults.extend([status] * count)

    def count(self, path_prefix: str = "/", status: int | None = None) -> int:
        return sum(
            1
            for r in list(self.requests)
            if r.path.startswith(path_prefix) and (status is None or r.status == status)
        )

    # -- serving ---------------------------------------------------------------------------------

    def answer(self, path: str, query: Mapping[str, str], livemode: bool) -> tuple[int, str]:
        if self.on_request is not None:
            self.on_request()
        with self._lock:
            if self._faults:
                status = self._faults.pop(0)
                self.requests.append(Request(path, query, status, livemode))
                return status, json.dumps(ERROR_BODIES.get(status, ERROR_BODIES[500]))
            status, body = self._route(path, query, livemode)
            self.requests.append(Request(path, query, status, livemode))
            return status, body

    def _route(self, path: str, query: Mapping[str, str], livemode: bool) -> tuple[int, str]:
        if path.startswith("/v2/core/events/"):
            object_id = path.removeprefix("/v2/core/events/")
            return _one("v2.core.event", object_id, self._thin_events.get(object_id), livemode)
        parts = [p for p in path.split("/") if p][1:]  # without "v1"
        match parts:
            case ["subscriptions"]:
                customer = query.get("customer") or query.get("customer_account")
                if customer is not None and (customer, livemode) in self.unknown_customers:
                    return _missing("customer", customer)
                return 200, self._subscription_page(query, livemode)
            case ["subscriptions", object_id]:
                stored = self._subscriptions.get(object_id)
                found = stored.obj if stored is not None else None
                return _one("subscription", object_id, found, livemode)
            case ["checkout", "sessions", object_id]:
                return _one("checkout.session", object_id, self._sessions.get(object_id), livemode)
            case ["checkout", "sessions", object_id, "line_items"]:
                if _one("checkout.session", object_id, self._sessions.get(object_id), livemode)[0] != 200:
                    return _missing("checkout.session", object_id)
                lines = self._line_items.get(object_id, [])
                return 200, _list_text([json.dumps(line) for line in lines], False, path)
            case ["payment_intents", object_id]:
                return _one("payment_intent", object_id, self._payment_intents.get(object_id), livemode)
            case ["events"]:
                return 200, self._event_page(query, livemode)
            case ["events", object_id]:
                return _one("event", object_id, self._events.get(object_id), livemode)
            case _:
                return 404, json.dumps({"error": {"type": "invalid_request_error", "message": "no route"}})

    def _subscription_page(self, query: Mapping[str, str], livemode: bool) -> str:
        if self._ordered is None:  # Stripe lists newest first
            self._ordered = sorted(
                self._subscriptions.values(), key=lambda s: (-int(s.obj["created"]), s.obj["id"])
            )
        status = query.get("status")
        customer = query.get("customer")
        customer_account = query.get("customer_account")
        test_clock = query.get("test_clock")

        def listed(obj: Json) -> bool:
            return (
                bool(obj.get("livemode")) == livemode
                and (obj.get("test_clock") or None) == test_clock
                and (
                    status == "all"
                    or (obj["status"] != "canceled" if status is None else obj["status"] == status)
                )
                and (customer is None or obj.get("customer") == customer)
                and (customer_account is None or obj.get("customer_account") == customer_account)
            )

        return self._page(self._ordered, listed, query, "/v1/subscriptions")

    def _event_page(self, query: Mapping[str, str], livemode: bool) -> str:
        ordered = [
            _Stored(e, json.dumps(e))
            for e in sorted(self._events.values(), key=lambda e: (-int(e["created"]), e["id"]))
        ]
        wanted = query.get("delivery_success")

        def listed(event: Json) -> bool:
            undelivered = event["id"] in self._undelivered
            return bool(event.get("livemode")) == livemode and (
                wanted is None or (wanted == "false") == undelivered
            )

        return self._page(ordered, listed, query, "/v1/events")

    @staticmethod
    def _page(
        ordered: list[_Stored], listed: Callable[[Json], bool], query: Mapping[str, str], url: str
    ) -> str:
        limit = max(1, min(100, int(query.get("limit", "10"))))
        start = 0
        after = query.get("starting_after")
        if after is not None:
            start = next((i + 1 for i, s in enumerate(ordered) if s.obj["id"] == after), len(ordered))
        page: list[str] = []
        has_more = False
        for stored in ordered[start:]:
            if not listed(stored.obj):
                continue
            if len(page) == limit:
                has_more = True
                break
            page.append(stored.text)
        return _list_text(page, has_more, url)


def _list_text(items: list[str], has_more: bool, url: str) -> str:
    return (
        '{"object":"list","data":['
        + ",".join(items)
        + f'],"has_more":{"true" if has_more else "false"},"url":{json.dumps(url)}}}'
    )


def _one(kind: str, object_id: str, obj: Json | None, livemode: bool) -> tuple[int, str]:
    if obj is None or bool(obj.get("livemode")) != livemode:
        return _missing(kind, object_id)
    return 200, json.dumps(obj)


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
            query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            status, body = fake.answer(parts.path, query, livemode="_live_" in key)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_fake{len(fake.requests)}")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
