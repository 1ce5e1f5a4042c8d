"""HTTP requests as API Gateway HTTP API hands them to a Lambda (payload format 2.0), and back.

Request: header names lower-cased, repeated headers joined with commas, cookies moved to `cookies`,
the body exactly as sent (base64 with `isBase64Encoded` when it is not UTF-8 text), `rawPath`,
`rawQueryString`, `requestContext.http`, `version: "2.0"`.

Response: a dict with `statusCode` is used as is (base64 body decoded); anything else a function
returns becomes 200 with that value as a JSON body, as API Gateway does for payload 2.0; a function
that raises becomes API Gateway's 500 `{"message":"Internal Server Error"}`.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from local_runtime.template import LOCAL_ACCOUNT_ID

LOCAL_API_ID = "local"
INTERNAL_ERROR_BODY = b'{"message":"Internal Server Error"}'
NOT_FOUND_BODY = b'{"message":"Not Found"}'


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = field(repr=False)


def http_api_event(
    *,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str,
    route_key: str,
    now: float,
    request_id: str | None = None,
    protocol: str = "HTTP/1.1",
) -> dict[str, Any]:
    """The event API Gateway HTTP API (payload 2.0) gives the function for this request."""
    path, _, query = target.partition("?")
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    event = request_envelope(
        method=method.upper(),
        path=path,
        query=query,
        headers=joined,
        route_key=route_key,
        source_ip=source_ip,
        protocol=protocol,
        account_id=LOCAL_ACCOUNT_ID,
        api_id=LOCAL_API_ID,
        domain=joined.get("host", "localhost"),
        request_id=request_id or base64.b64encode(uuid.uuid4().bytes[:12]).decode(),
        now=now,
    )
    event["isBase64Encoded"] = False
    if cookies:
        event["cookies"] = cookies
    if query:
        parameters: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            parameters[key] = f"{parameters[key]},{value}" if key in parameters else value
        event["queryStringParameters"] = parameters
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def request_envelope(
    *,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    route_key: str,
    source_ip: str,
    protocol: str,
    account_id: str,
    api_id: str,
    domain: str,
    request_id: str,
    now: float,
) -> dict[str, Any]:
    """A payload 2.0 event up to its body: the one shape of `requestContext`. The emulator fills it from
    a real request (above); events.lambda_events fills it for the sample requests, whose bodies,
    header names and ids it sets itself, so each adds the body and `isBase64Encoded` its own way."""
    return {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": protocol,
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
    }


def http_response(result: object) -> HttpResponse:
    """What API Gateway answers for the function's return value (payload format 2.0)."""
    if isinstance(result, Mapping) and "statusCode" in result:
        return _proxy_response(result)
    # No statusCode: API Gateway assumes 200 and sends the returned value as JSON.
    body = result if isinstance(result, str) else json.dumps(result)
    return HttpResponse(200, [("content-type", "application/json")], body.encode("utf-8"))


def internal_error() -> HttpResponse:
    return HttpResponse(500, [("content-type", "application/json")], INTERNAL_ERROR_BODY)


def not_found() -> HttpResponse:
    return HttpResponse(404, [("content-type", "application/json")], NOT_FOUND_BODY)


def _proxy_response(result: Mapping[str, Any]) -> HttpResponse:
    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError):
        return internal_error()  # API Gateway: "Malformed Lambda proxy response"
    if not 100 <= status <= 599:
        return internal_error()
    headers: list[tuple[str, str]] = []
    raw_headers = result.get("headers") or {}
    if isinstance(raw_headers, Mapping):
        headers.extend((str(name), str(value)) for name, value in raw_headers.items())
    for cookie in result.get("cookies") or []:
        headers.append(("set-cookie", str(cookie)))
    body = result.get("body")
    if body is None:
        payload = b""
    elif result.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(str(body), validate=True)
        except ValueError:
            return internal_error()
    else:
        payload = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
    return HttpResponse(status, headers, payload)
