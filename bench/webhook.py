"""Webhook benchmark: CPU per verified event, against the stripe SDK and a naive handler.

Cold starts are measured from the built packages by bench/cold_start.py (an import benchmark in the
dev venv, with __pycache__ written, hides what a Lambda cold start pays).

(b) CPU per verified event (time.process_time): our request parsing, verification, event parsing
    and message choice against `stripe.Webhook.construct_event`; then both whole handlers, with
    SQS SendMessage answered by a botocore `before-call` hook (no network).
    Target: ours >= 3 x faster than construct_event.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CPU_ROUNDS = 5
CPU_SECONDS_PER_ROUND = 0.4
SECRET = "whsec_bench_0123456789abcdef"
SRC = Path(__file__).resolve().parents[1] / "src"

NAIVE_HANDLER = '''
"""The webhook as it is usually written: stripe SDK, boto3 and Powertools' event handler."""
import os

import boto3
import stripe
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

app = APIGatewayHttpResolver()
clients = {}


def sqs():
    if "sqs" not in clients:
        clients["sqs"] = boto3.client("sqs")
    return clients["sqs"]


@app.post("/webhooks/stripe")
def webhook():
    request = app.current_event
    try:
        event = stripe.Webhook.construct_event(
            request.decoded_body, request.headers.get("stripe-signature"), os.environ["STRIPE_WEBHOOK_SECRET"]
        )
    except (ValueError, stripe.SignatureVerificationError):
        return Response(400, "application/json", '{"error": "bad request"}')
    obj = event.data.object
    group = getattr(obj, "customer", None) or getattr(obj, "id", None) or event.id
    sqs().send_message(
        QueueUrl=os.environ["QUEUE_URL"], MessageBody=request.decoded_body,
        MessageGroupId=group, MessageDeduplicationId=event.id,
    )
    return Response(200, "application/json", '{"received": true}')


def lambda_handler(event, context):
    return app.resolve(event, context)
'''


def run() -> None:
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "naive_webhook.py").write_text(NAIVE_HANDLER)
        sys.path.insert(0, directory)
        try:
            cpu_rows = _cpu_rows()
        finally:
            sys.path.remove(directory)
            sys.modules.pop("naive_webhook", None)

    print("(b) CPU per verified event: time.process_time, median of rounds, µs")
    print(f"    {'':24}{'ours':>9}{'stripe':>9}{'speed-up':>12}   target")
    for index, (label, ours, baseline) in enumerate(cpu_rows):
        speedup = baseline / ours
        target = (">= 3.0x " + ("met" if speedup >= 3 else "MISSED")) if index == 0 else "(for reference)"
        print(f"    {label:24}{ours:9.1f}{baseline:9.1f}{speedup:11.1f}x   {target}")


# --- (b) CPU per event ----------------------------------------------------------------------------


def _cpu_rows() -> list[tuple[str, float, float]]:
    import stripe

    from domain.credentials import parse_webhook_secrets
    from domain.ingress import queue_message, verified_event, webhook_request
    from events import lambda_events

    payload = subscription_event_text()
    request = lambda_events.webhook_event(payload.encode(), SECRET)
    header = request["headers"]["stripe-signature"]
    secrets = parse_webhook_secrets(SECRET)

    def ours() -> None:
        queue_message(verified_event(webhook_request(request), secrets, now=time.time(), tolerance=300))

    def reference() -> None:
        stripe.Webhook.construct_event(payload, header, SECRET)

    rows = [("verify + parse", _cpu_us(ours), _cpu_us(reference))]
    with _bench_environment(), open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        import naive_webhook

        from adapters.event_queue import queue_client
        from handlers.webhook import lambda_handler

        # Ours sends through adapters.aws_json (no botocore to hook): its transport answers instead.
        queue_client().transport = _SqsAcceptsOverHttp()
        naive_webhook.sqs().meta.events.register("before-call.sqs.SendMessage", _sqs_accepts)
        assert (
            lambda_handler(request, None)["statusCode"]
            == naive_webhook.lambda_handler(request, None)["statusCode"]
        )
        rows.append(
            (
                "whole handler, SQS stub",
                _cpu_us(lambda: lambda_handler(request, None)),
                _cpu_us(lambda: naive_webhook.lambda_handler(request, None)),
            )
        )
        queue_client.cache_clear()  # the stubbed client stays out of later benches
    return rows


def _cpu_us(work: Callable[[], object]) -> float:
    """Median over CPU_ROUNDS of process CPU time per call, each round at least CPU_SECONDS_PER_ROUND."""
    work()
    per_call: list[float] = []
    for _ in range(CPU_ROUNDS):
        calls, started = 0, time.process_time()
        while (elapsed := time.process_time() - started) < CPU_SECONDS_PER_ROUND:
            for _ in range(50):
                work()
            calls += 50
        per_call.append(elapsed / calls)
    return statistics.median(per_call) * 1e6


class _SqsAcceptsOverHttp:
    """An aws_json transport that answers every SendMessage as SQS does, without a network."""

    def send(self, request: Any) -> Any:
        from adapters.aws_json import HttpResponse

        return HttpResponse(200, {"content-type": "application/x-amz-json-1.0"}, b'{"MessageId":"bench"}')


def _sqs_accepts(**_: Any) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse

    return AWSResponse("https://sqs.us-east-1.amazonaws.com/", 200, {}, None), {"MessageId": "bench"}


@contextlib.contextmanager
def _bench_environment() -> Iterator[None]:
    """Settings both handlers read, restored afterwards so that other benches see their own."""
    values = {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
        "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/stripe-sync-events.fifo",
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "STRIPE_SECRET_ID": "",
        "AWS_ENDPOINT_URL": "",
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    os.environ.pop("AWS_ENDPOINT_URL")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def subscription_event_text() -> str:
    """A customer.subscription.updated event as Stripe sends it (2-space indented JSON, ~4.5 KB)."""
    from events.stripe import objects as samples

    ids = samples.IdFactory("bench")
    now = int(time.time())
    subscription = samples.subscription(
        ids,
        id="sub_bench",
        customer="cus_bench",
        items=[samples.ItemSpec(samples.PriceSpec("price_pro", "prod_pro"))],
        status="active",
        created=now - 86_400,
        period_start=now - 86_400,
        period_end=now + 29 * 86_400,
    )
    return json.dumps(
        samples.event(ids, "customer.subscription.updated", subscription, created=now), indent=2
    )
