"""The local endpoint in front of the webhook handler: routing, request bodies, handler failures."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from local_runtime.template import HttpRoute
from local_runtime.webhook_server import MAX_REQUEST_BYTES, WebhookServer


class Server:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.answer: Any = {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": "{}"}
        self.http = WebhookServer(
            ("127.0.0.1", 0), HttpRoute("POST", "/webhooks/stripe"), self.invoke, self.errors.append
        )

    def invoke(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.http.server_address[1], timeout=5)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()


@pytest.fixture
def server() -> Iterator[Server]:
    started = Server()
    thread = threading.Thread(target=started.http.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield started
    finally:
        started.http.shutdown()
        started.http.server_close()
        thread.join()


def test_health_answers_without_invoking_the_function(server: Server) -> None:
    assert server.request("GET", "/health")[::2] == (200, b'{"status":"ok"}')
    assert server.events == []


def test_the_route_invokes_the_function_with_the_raw_body(server: Server) -> None:
    server.answer = {"statusCode": 202, "headers": {"x-answer": "yes"}, "body": '{"received": true}'}
    status, headers, body = server.request(
        "POST", "/webhooks/stripe?from=cli", b'{"id": "evt_1"}', {"Stripe-Signature": "t=1,v1=a"}
    )
    assert (status, body) == (202, b'{"received": true}')
    assert headers["x-answer"] == "yes"
    (event,) = server.events
    assert event["body"] == '{"id": "evt_1"}'
    assert event["headers"]["stripe-signature"] == "t=1,v1=a"
    assert event["rawQueryString"] == "from=cli"
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/webhooks/stripe"), ("POST", "/webhooks"), ("PUT", "/x")]
)
def test_anything_else_is_api_gateways_404(server: Server, method: str, path: str) -> None:
    status, _, body = server.request(method, path, b"{}" if method != "GET" else None)
    assert status == 404
    assert json.loads(body) == {"message": "Not Found"}
    assert server.events == []


def test_a_function_that_raises_is_a_500_and_reported(server: Server) -> None:
    server.answer = RuntimeError("boom")
    status, _, body = server.request("POST", "/webhooks/stripe", b"{}")
    assert status == 500
    assert json.loads(body) == {"message": "Internal Server Error"}
    assert [str(e) for e in server.errors] == ["boom"]


def test_too_large_and_unsized_bodies_are_refused_before_the_function(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.http.server_address[1], timeout=5)
    connection.putrequest("POST", "/webhooks/stripe")
    connection.putheader("Content-Length", str(MAX_REQUEST_BYTES + 1))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()
    status, _, _ = server.request("POST", "/webhooks/stripe", iter([b"{}"]), {"Transfer-Encoding": "chunked"})  # type: ignore[arg-type]
    assert status == 411
    assert server.events == []
