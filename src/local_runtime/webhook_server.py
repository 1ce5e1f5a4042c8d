"""The local HTTP endpoint: what API Gateway does in front of the webhook function, on loopback.

POST on the template's route (`/webhooks/stripe`) invokes the handler with the HTTP API payload 2.0
event and answers with its response; POST /eventbridge/stripe hands an EventBridge-shaped Stripe event
to the EventBridge ingress (local_runtime.partner_events: the second way in, which in AWS has no URL);
GET /health answers 200 (local only, for scripts); anything else answers API Gateway's 404 without
invoking the function.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local_runtime.apigateway import (
    HttpResponse,
    http_api_event,
    http_response,
    internal_error,
    not_found,
)
from local_runtime.partner_events import EVENTBRIDGE_PATH
from local_runtime.template import HttpRoute

# API Gateway HTTP APIs take at most 10 MB; the function itself gets at most 6 MB (the handler says 413).
MAX_REQUEST_BYTES = 10 * 1024 * 1024
# A client that stops sending must not hold a thread, nor the shutdown, for long.
REQUEST_TIMEOUT_SECONDS = 30
HEALTH_PATH = "/health"

Invoke = Callable[[dict[str, Any]], object]


class WebhookServer(ThreadingHTTPServer):
    # Request threads are joined on server_close(): a request in progress completes on shutdown.
    daemon_threads = False
    block_on_close = True
    # socketserver's default listen backlog is 5: with more concurrent senders than that the kernel
    # drops their connection attempts, which the clients retry only a second later.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        route: HttpRoute,
        invoke: Invoke,
        on_error: Callable[[BaseException], None],
        eventbridge: Callable[[bytes], HttpResponse] | None = None,
    ) -> None:
        self.route = route
        self.invoke = invoke
        self.on_error = on_error
        self.eventbridge = eventbridge
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.0"  # one request per connection: nothing idles on shutdown
    timeout = REQUEST_TIMEOUT_SECONDS
    server_version = "stripe-sync-local"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path = self.path.partition("?")[0]
        if self.command == "GET" and path == HEALTH_PATH:
            self._send(HttpResponse(200, [("content-type", "application/json")], b'{"status":"ok"}'))
            return
        if path == EVENTBRIDGE_PATH and self.command == "POST" and self.server.eventbridge is not None:
            if (body := self._body()) is not None:
                self._send(self.server.eventbridge(body))
            return
        route = self.server.route
        if self.command != route.method or path != route.path:
            self._send(not_found())
            return
        body = self._body()
        if body is None:
            return
        event = http_api_event(
            method=self.command,
            target=self.path,
            headers=self.headers.items(),
            body=body,
            source_ip=self.client_address[0],
            route_key=route.route_key,
            now=time.time(),
            protocol=self.request_version,
        )
        try:
            result = self.server.invoke(event)
        except Exception as error:  # a Lambda that raises: API Gateway answers 500
            self.server.on_error(error)
            self._send(internal_error())
            return
        self._send(http_response(result))

    def _body(self) -> bytes | None:
        length_header = self.headers.get("content-length")
        if length_header is None:
            if self.headers.get("transfer-encoding"):
                self._send(_plain(HTTPStatus.LENGTH_REQUIRED, "Content-Length required"))
                return None
            return b""
        try:
            length = int(length_header)
        except ValueError:
            self._send(_plain(HTTPStatus.BAD_REQUEST, "bad Content-Length"))
            return None
        if length < 0:
            self._send(_plain(HTTPStatus.BAD_REQUEST, "bad Content-Length"))
            return None
        if length > MAX_REQUEST_BYTES:
            self._send(_plain(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request Entity Too Large"))
            return None
        return self.rfile.read(length)

    def _send(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        names = set()
        for name, value in response.headers:
            names.add(name.lower())
            self.send_header(name, value)
        if "content-length" not in names:
            self.send_header("content-length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        """The console reports requests through the handler's own log; no access log here."""


def _plain(status: HTTPStatus, message: str) -> HttpResponse:
    body = json.dumps({"message": message}).encode()
    return HttpResponse(int(status), [("content-type", "application/json")], body)
