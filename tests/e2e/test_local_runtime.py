"""`make run` as users run it: a subprocess on spare ports, driven over HTTP, read back from moto.

The runtime is started with LOCAL_VISIBILITY_TIMEOUT=5 (seconds; tests/support/running_runtime.py),
so that a message whose invocation failed as a whole comes back within seconds instead of the
template's 720 (a failed event comes back after the worker's own short delay, and one it cannot read
is parked at once). The ops CLI is run as `python -m ops --local`, as operators run it.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from entitlements_reader import CustomerEntitlements
from events import scenarios
from events.stripe import objects as samples
from harness.fake_stripe import FakeStripe
from harness.load import free_port
from tests.support.running_runtime import (
    SECRET,
    Runtime,
    run_module,
    start_runtime,
    stop_runtime,
    story,
    wait_until,
)

pytestmark = pytest.mark.e2e


def test_health_and_routes(runtime: Runtime) -> None:
    assert runtime.request("/health") == (200, b'{"status":"ok"}')
    assert runtime.request("/elsewhere")[0] == 404
    assert runtime.request("/webhooks/stripe")[0] == 404  # the route is POST only, as in API Gateway


def test_an_unsigned_or_wrongly_signed_post_is_refused_and_nothing_queued(runtime: Runtime) -> None:
    event = story("signup_paid", "cus_E2eUnsigned001").events[0]
    status, answer = runtime.request(
        "/webhooks/stripe", scenarios.render(event), {"Content-Type": "application/json"}
    )
    assert status == 400
    assert "error" in json.loads(answer)
    assert runtime.post_event(event, secret="whsec_someone_elses_secret")[1] == 400
    time.sleep(1.5)
    assert runtime.entitlements("cus_E2eUnsigned001") is None
    assert "rejected: 400" in runtime.output


def test_signed_events_end_in_the_entitlements_item(runtime: Runtime) -> None:
    customer = "cus_E2eTrial00001"
    events = story("trial_converts", customer).events
    for event in events:
        assert runtime.post_event(event)[1] == 200

    def converted() -> CustomerEntitlements | None:
        access = runtime.entitlements(customer)
        return (
            access
            if access is not None and access.version >= 2 and access.has("prod_SamplePro0001")
            else None
        )

    access = wait_until(converted, "the trial's entitlements")
    assert access.customer_id == customer
    assert access.livemode is False
    assert access.payment_issue is False
    last = events[-1]["id"]
    wait_until(
        lambda: f"{last} (invoice.payment_succeeded): applied for {customer}" in runtime.output, "the log"
    )
    assert f"received {events[0]['id']} (customer.created) -> queued (group {customer})" in runtime.output

    shown = runtime.cli("--json", "customer", "show", "--user", f"user_{customer}")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    # By user: the user's access (one customer here), then each of the user's customers.
    assert view["user_entitlements"]["customer_ids"] == [customer]
    assert view["user_entitlements"]["active_features"] == ["prod_SamplePro0001"]
    (shown_customer,) = view["customers"]
    assert shown_customer["customer_id"] == customer
    assert shown_customer["entitlements"]["active_features"] == ["prod_SamplePro0001"]
    assert {"profile", "subscription", "invoice"} <= {r["kind"] for r in shown_customer["records"]}


def test_a_poison_message_is_parked_in_the_dlq_and_redrive_sends_it_back(runtime: Runtime) -> None:
    created = story("signup_paid", "cus_E2ePoison0001").events[1]
    assert created["type"] == "customer.subscription.created"
    poison = json.loads(json.dumps(created))
    poison["id"] = "evt_E2ePoisonNoStatus01"
    del poison["data"]["object"]["status"]  # the worker cannot read a subscription without its status
    body, status = runtime.post_event(poison)
    assert status == 200  # validly signed: queued

    parked = wait_until(lambda: runtime.parked_event(poison["id"]), "the poison message in the DLQ")
    assert parked["group_id"] == "cus_E2ePoison0001"
    assert parked["deduplication_id"] == poison["id"]
    # Retrying cannot fix it: parked by the worker at its first try, with the reason (issue 17).
    assert "status" in parked["reason"]
    assert parked["failure_type"] == "MalformedEvent"
    assert runtime.output.count(f"{poison['id']} (customer.subscription.created): FAILED") == 0
    tries = runtime.output.count(f"{poison['id']} (customer.subscription.created): PARKED")
    assert tries == 1
    shown = runtime.cli("--json", "dlq", "show", parked["message_id"])
    assert shown.returncode == 0, shown.stderr
    assert (
        json.dumps(json.loads(shown.stdout)["body"], indent=2, ensure_ascii=False).encode() == body
    )  # nothing lost

    # Within SQS's 5-minute deduplication window the CLI refuses: in AWS the copy would be dropped.
    refused = runtime.cli("dlq", "redrive", parked["message_id"])
    assert refused.returncode == 1
    assert "deduplication window" in refused.stderr
    assert runtime.parked_event(poison["id"]) is not None
    # moto forgets the ids of removed messages, so forcing is safe here.
    redriven = runtime.cli("dlq", "redrive", parked["message_id"], "--force")
    assert redriven.returncode == 0, redriven.stderr
    assert "1 redriven" in redriven.stdout

    # Back in the event queue, the worker gets it again and it is parked again.
    wait_until(
        lambda: runtime.output.count(f"{poison['id']} (customer.subscription.created): PARKED") > tries,
        "the redriven message to be processed again",
    )
    again = wait_until(
        lambda: next(
            (
                m
                for m in runtime.parked()
                if m["event_id"] == poison["id"] and m["message_id"] != parked["message_id"]
            ),
            None,
        ),
        "the poison message back in the DLQ",
    )
    assert again["deduplication_id"] == poison["id"]
    assert runtime.output.count(f"{poison['id']} (customer.subscription.created): PARKED") == 2


def test_a_dispute_before_its_purchase_is_stored_and_applied_when_the_purchase_arrives(
    runtime: Runtime,
) -> None:
    customer = "cus_E2eDispute001"
    events = story("purchase_dispute_lost", customer).events
    closed = events[-1]
    assert closed["type"] == "charge.dispute.closed"
    purchase = [
        e
        for e in events
        if e["type"] in ("customer.created", "payment_intent.succeeded", "checkout.session.completed")
    ]

    # The dispute arrives first: it names no customer and no known purchase. Stored, counted, never
    # retried into the DLQ.
    assert runtime.post_event(closed)[1] == 200
    wait_until(lambda: f"{closed['id']} (charge.dispute.closed): unmatched" in runtime.output, "unmatched")
    assert runtime.entitlements(customer) is None
    assert runtime.parked_event(closed["id"]) is None

    # The purchase arrives later and finds the lost dispute: the course is never granted.
    for event in purchase:
        assert runtime.post_event(event)[1] == 200
    completed = next(e for e in purchase if e["type"] == "checkout.session.completed")
    wait_until(
        lambda: f"{completed['id']} (checkout.session.completed): applied" in runtime.output, "purchase"
    )
    access = runtime.entitlements(customer)
    assert access is not None
    assert not access.has("prod_SampleCourse1")
    assert runtime.parked_event(closed["id"]) is None


def test_the_demo_plays_a_story_against_the_running_runtime(runtime: Runtime) -> None:
    demo = run_module(
        "local_runtime.demo",
        "--scenario",
        "purchase_refunded",
        PORT=str(runtime.port),
        AWS_PORT=str(runtime.aws_port),
        STRIPE_WEBHOOK_SECRET=SECRET,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    lines = demo.stdout.splitlines()
    steps = [line for line in lines if line.startswith("   20")]  # "   <event time>  <type>  <entitlements>"
    completed = next(line for line in steps if "checkout.session.completed" in line)
    refunded = next(line for line in steps if "charge.refunded" in line)
    assert "prod_SampleCourse1 (no end)" in completed
    assert completed.endswith("<- changed")
    assert "no features" in refunded
    assert refunded.endswith("<- changed")
    assert any(line.startswith("   expected: ") for line in lines)


@pytest.mark.parametrize("variable", ["PORT", "AWS_PORT"])
def test_a_taken_port_fails_at_once_with_a_hint(variable: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "AWS_PORT" if variable == "PORT" else "PORT"
        result = run_module(
            "local_runtime",
            timeout=30,
            **{variable: str(port), other: str(free_port()), "STRIPE_WEBHOOK_SECRET": SECRET},
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use ({variable})" in result.stderr
    assert f"{variable}={port + 1} make run" in result.stderr


def test_with_an_api_key_the_reconciler_runs_and_its_repairs_are_applied(tmp_path: Path) -> None:
    customer = "cus_E2eReconcile1"
    price = samples.PriceSpec("price_E2eReconcile", "prod_E2eReconcile")
    now = int(time.time())
    subscription = samples.subscription(
        samples.IdFactory("e2e-reconcile"),
        customer=customer,
        items=[samples.ItemSpec(price)],
        status="active",
        created=now - 86_400,
        period_start=now - 86_400,
        period_end=now + 29 * 86_400,
    )
    with FakeStripe() as stripe_api:
        stripe_api.put_subscription(subscription)
        runtime = start_runtime(
            tmp_path / "make-run.log",
            STRIPE_API_KEY="sk_test_e2e",
            STRIPE_API_BASE=stripe_api.url,
            RECONCILE_EVERY="600",
        )
        try:
            # No webhook at all: the reconciler's first run finds the subscription and queues it.
            access = wait_until(lambda: runtime.entitlements(customer), "the reconciler's repair")
            assert access.has("prod_E2eReconcile")
            wait_until(lambda: "reconcile  run finished" in runtime.output, "the end of the reconcile run")
            assert "missing=1" in runtime.output
        finally:
            code = stop_runtime(runtime, signal.SIGTERM)
    assert code == 0, runtime.output
    assert "reconciler  now, then every 600 s" in runtime.output
