"""HTTP requests become the API Gateway HTTP API (payload 2.0) event the webhook gets in AWS, and back."""

from __future__ import annotations

import base64
import json

import pytest

from domain.ingress import webhook_request
from local_runtime.apigateway import http_api_event, http_response

NOW = 1_795_454_662.25


def event_for(
    body: bytes, headers: list[tuple[str, str]] | None = None, target: str = "/webhooks/stripe"
) -> dict:
    return http_api_event(
        method="post",
        target=target,
        headers=headers or [("Content-Type", "application/json"), ("Stripe-Signature", "t=1,v1=abc")],
        body=body,
        source_ip="127.0.0.1",
        route_key="POST /webhooks/stripe",
        now=NOW,
        request_id="req-1",
    )


def test_the_event_has_the_payload_2_0_shape() -> None:
    event = event_for(b'{"id": "evt_1"}')
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /webhooks/stripe"
    assert event["rawPath"] == "/webhooks/stripe"
    assert event["rawQueryString"] == ""
    assert event["isBase64Encoded"] is False
    http = event["requestContext"]["http"]
    assert http == {
        "method": "POST",
        "path": "/webhooks/stripe",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "",
    }
    assert event["requestContext"]["stage"] == "$default"
    assert event["requestContext"]["requestId"] == "req-1"
    assert event["requestContext"]["timeEpoch"] == 1_795_454_662_250
    assert event["requestContext"]["time"] == "23/Nov/2026:17:24:22 +0000"
    assert "queryStringParameters" not in event
    assert "cookies" not in event


def test_header_names_are_lower_cased_and_repeats_joined() -> None:
    event = event_for(
        b"{}",
        [("Stripe-Signature", "t=1,v1=a"), ("X-Forwarded-For", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8")],
    )
    assert event["headers"] == {"stripe-signature": "t=1,v1=a", "x-forwarded-for": "1.2.3.4,5.6.7.8"}


def test_cookies_and_query_strings_are_where_api_gateway_puts_them() -> None:
    event = event_for(b"", [("Cookie", "a=1; b=2")], target="/webhooks/stripe?x=1&x=2&y=")
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]
    assert event["rawPath"] == "/webhooks/stripe"
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert "body" not in event  # no body, no key, as API Gateway sends it


def test_the_body_is_exactly_the_bytes_sent() -> None:
    raw = b'{\n  "id": "evt_1",\n  "name": "J\xc3\xbcrgen"\n}'
    event = event_for(raw)
    assert event["body"] == raw.decode("utf-8")
    assert webhook_request(event).body == raw  # what the webhook verifies the signature over


def test_a_body_that_is_not_utf8_travels_base64_encoded() -> None:
    raw = b'{"id": "evt_1", "x": "\xff\xfe"}'
    event = event_for(raw)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw
    assert webhook_request(event).body == raw


def test_the_webhook_reads_the_signature_header_from_the_event() -> None:
    event = event_for(b"{}", [("STRIPE-SIGNATURE", "t=9,v1=ff")])
    assert webhook_request(event).signature == "t=9,v1=ff"


def test_a_proxy_response_is_sent_as_the_function_returned_it() -> None:
    response = http_response(
        {"statusCode": 400, "headers": {"content-type": "application/json"}, "body": '{"error": "bad"}'}
    )
    assert response.status == 400
    assert response.headers == [("content-type", "application/json")]
    assert response.body == b'{"error": "bad"}'


def test_a_base64_response_body_is_decoded_and_cookies_are_set() -> None:
    response = http_response(
        {
            "statusCode": 200,
            "body": base64.b64encode(b"\x00\x01").decode(),
            "isBase64Encoded": True,
            "cookies": ["a=1"],
        }
    )
    assert response.body == b"\x00\x01"
    assert ("set-cookie", "a=1") in response.headers


@pytest.mark.parametrize("returned", [{"received": True}, [1, 2], None, "text"])
def test_anything_else_is_a_200_with_the_value_as_json(returned: object) -> None:
    response = http_response(returned)
    assert response.status == 200
    assert ("content-type", "application/json") in response.headers
    expected = returned if isinstance(returned, str) else json.dumps(returned)
    assert response.body == expected.encode()


@pytest.mark.parametrize(
    "returned",
    [{"statusCode": "abc"}, {"statusCode": 700}, {"statusCode": 200, "body": "%%%", "isBase64Encoded": True}],
)
def test_a_malformed_proxy_response_is_api_gateways_500(returned: dict) -> None:
    response = http_response(returned)
    assert response.status == 500
    assert json.loads(response.body) == {"message": "Internal Server Error"}
