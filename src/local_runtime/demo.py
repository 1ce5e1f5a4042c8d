"""`make demo`: realistic, signed Stripe event sequences sent to a running `make run`, step by step.

Four customers' stories (events.scenarios, ending now so that periods are current): a trial
that converts, a failed renewal that recovers, a cancellation at period end, a one-time purchase
refunded. Each event is signed as Stripe signs it (events.lambda_events, the one signer, checked
against the stripe SDK's own) with the runtime's secret, posted to the local webhook, and once the
worker has applied it the customer's entitlements item is read from moto's DynamoDB
(entitlements_reader, as a backend service reads it) and printed.
The last story comes the second way in instead, as Stripe's Amazon EventBridge destination delivers
it (POST /eventbridge/stripe, no signature). Each "entitlements changed" event the stack publishes is
read back from the local example subscription (a rule on the bus and a queue, as a backend would
subscribe) and printed with its version and cause. After each story, "expected" is what the worker's
rules (the runtime's entitlement rules file) grant once all its events are in, derived by the domain
from the story's events, so it says what the last line should.

Settings: PORT, AWS_PORT (as for `make run`), STRIPE_WEBHOOK_SECRET (the runtime's; when it runs with
a generated secret, the demo finds that by itself). `--scenario NAME` (repeatable) picks others.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TextIO

from adapters.settings import SettingsError, load_rules
from domain import live_records
from domain.credentials import CredentialsError, parse_webhook_secrets
from domain.entitlements import EntitlementRules, Entitlements
from domain.records import PurchaseRecord, Snapshot
from domain.stripe_objects import parse_event, purchased_item, snapshot_of
from entitlements_reader import CustomerEntitlements, EntitlementsReader
from events import lambda_events, scenarios
from local_runtime.config import (
    DEFAULT_AWS_PORT,
    DEFAULT_PORT,
    LOCAL_ACCESS_KEY,
    LOCAL_SECRET_KEY,
    LOOPBACK,
    read_generated_secret,
)
from local_runtime.console import access_in_words, when
from local_runtime.partner_events import EVENTBRIDGE_PATH, envelope_of
from local_runtime.resources import subscriber_queue_name
from local_runtime.template import LOCAL_REGION, TemplateError, read_template

DEMO_SCENARIOS = (
    "trial_converts",
    "payment_failed_then_recovered",
    "cancel_at_period_end",
    "purchase_refunded",
)
APPLY_TIMEOUT_SECONDS = 15.0
# The stream poller publishes shortly after the worker's write.
PUBLISH_TIMEOUT_SECONDS = 5.0
# The scenarios (by position) that come through EventBridge instead of the webhook.
VIA_EVENTBRIDGE = frozenset({len(DEMO_SCENARIOS)})
POLL_SECONDS = 0.1
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what to do."""


def demo_secret(env: Mapping[str, str], port: int) -> str:
    """A secret the running runtime accepts for test-mode events: its STRIPE_WEBHOOK_SECRET or the
    one it generated for this PORT."""
    text = env.get("STRIPE_WEBHOOK_SECRET", "").strip() or read_generated_secret(port)
    if not text:
        raise DemoError(
            "no webhook secret: run the demo with the same STRIPE_WEBHOOK_SECRET as `make run` "
            f"(and the same PORT, now {port})"
        )
    try:
        secrets = parse_webhook_secrets(text)
    except CredentialsError as error:
        raise DemoError(f"STRIPE_WEBHOOK_SECRET: {error}") from None
    usable = [secret for secret in secrets if secret.accepts(livemode=False)]
    if not usable:
        raise DemoError("STRIPE_WEBHOOK_SECRET has no secret for test mode (the demo's events are test mode)")
    return usable[0].value.decode()


def expected_entitlements(
    customer_id: str,
    events: Iterable[Mapping[str, Any]],
    line_items: Mapping[str, Any],
    rules: EntitlementRules,
) -> Entitlements:
    """What the worker's rules grant once every event of a story is in: its records, the newest
    snapshot of each object, read by the domain (domain.live_records) without a table or a queue.
    `line_items` are the Checkout line items Stripe answers, by session id (the worker fetches them)."""
    snapshots = []
    for body in events:
        found = snapshot_of(parse_event(dict(body)), rules.user_id_metadata_key)
        if not isinstance(found, Snapshot):
            continue
        record = found.record
        if isinstance(record, PurchaseRecord) and record.line_items is None and record.id in line_items:
            lines = tuple(purchased_item(line) for line in line_items[record.id])
            found = replace(found, record=replace(record, line_items=lines))
        snapshots.append(found)
    return live_records.entitlements_of(customer_id, live_records.build(snapshots, rules), rules)


def scenario_line_items(scenario: scenarios.Scenario) -> dict[str, Any]:
    """The Checkout line items a scenario's Stripe answers, by session id."""
    return {
        path.split("/")[-2]: page["data"]
        for path, page in scenario.api_lists.items()
        if path.startswith("/v1/checkout/sessions/") and path.endswith("/line_items")
    }


def demo_customer_id(run: int, index: int) -> str:
    """A fresh `cus_…` id per run and story, so that a second demo does not replay the first's events."""
    number = run * 10 + index
    digits = ""
    while number:
        number, digit = divmod(number, 62)
        digits = _BASE62[digit] + digits
    return "cus_Demo" + digits.rjust(10, "0")


class Demo:
    def __init__(self, port: int, aws_port: int, secret: str, out: TextIO) -> None:
        import boto3  # noqa: PLC0415

        try:
            # The rules the runtime's worker applies (ENTITLEMENT_RULES_FILE, else the packaged file).
            self.rules = load_rules()
        except SettingsError as error:
            raise DemoError(str(error)) from None
        self.url = f"http://{LOOPBACK}:{port}"
        self.secret = secret
        self.out = out
        try:
            stack = read_template()
        except TemplateError as error:
            raise DemoError(str(error)) from None
        self.table_name = stack.table.name
        endpoint = f"http://{LOOPBACK}:{aws_port}"
        self.sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name=LOCAL_REGION,
            aws_access_key_id=LOCAL_ACCESS_KEY,
            aws_secret_access_key=LOCAL_SECRET_KEY,
        )
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name=LOCAL_REGION,
            aws_access_key_id=LOCAL_ACCESS_KEY,
            aws_secret_access_key=LOCAL_SECRET_KEY,
        )
        self.reader = EntitlementsReader(self.table_name, livemode=False, client=dynamodb)
        self.queue_name = stack.event_queue.name
        self.queue_url = ""
        self.subscriber_name = subscriber_queue_name(stack)
        self.subscriber_url = ""

    def check_runtime(self) -> None:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:  # loopback  # noqa: S310  # nosec B310
                healthy = response.status == 200
        except OSError:
            healthy = False
        if not healthy:
            raise DemoError(
                f"nothing answers on {self.url}/health: start `make run` first (same PORT and AWS_PORT)"
            )
        try:
            self.queue_url = self.sqs.get_queue_url(QueueName=self.queue_name)["QueueUrl"]
        except Exception as error:
            raise DemoError(
                f"the local runtime's queue is not reachable ({type(error).__name__}): is AWS_PORT the same as "
                "`make run`'s?"
            ) from None
        try:
            self.subscriber_url = self.sqs.get_queue_url(QueueName=self.subscriber_name)["QueueUrl"]
        except Exception:  # an older runtime without the publisher: the demo still shows the table
            self.subscriber_url = ""

    def post(self, body: bytes) -> tuple[int, str]:
        header = lambda_events.signature_header(body, self.secret)
        return self._post(
            "/webhooks/stripe",
            body,
            {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header},
        )

    def post_eventbridge(self, event: Mapping[str, Any]) -> tuple[int, str]:
        """The event as Stripe's EventBridge destination delivers it, to the local EventBridge path."""
        body = json.dumps(envelope_of(dict(event))).encode()
        return self._post(EVENTBRIDGE_PATH, body, {"Content-Type": "application/json"})

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """The runtime's status and answer; an error status is an answer too, not an exception."""
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.url}{path}", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  # nosec B310
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def published(self, customer: str, version: int) -> list[dict[str, Any]]:
        """The "entitlements changed" events for `customer` the example subscription received, until
        the one with `version` (or PUBLISH_TIMEOUT_SECONDS)."""
        if not self.subscriber_url:
            return []
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + PUBLISH_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            messages = self.sqs.receive_message(
                QueueUrl=self.subscriber_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            for message in messages:
                self.sqs.delete_message(QueueUrl=self.subscriber_url, ReceiptHandle=message["ReceiptHandle"])
                event = json.loads(message["Body"])
                if event.get("detail", {}).get("customer_id") == customer:
                    found.append(event)
            if any(e["detail"].get("version") == version for e in found):
                break
            if not messages:
                time.sleep(POLL_SECONDS)
        return found

    def wait_applied(self) -> bool:
        """True once the event queue is empty (the worker deleted what it applied)."""
        deadline = time.monotonic() + APPLY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            if (
                int(attributes["ApproximateNumberOfMessages"])
                + int(attributes["ApproximateNumberOfMessagesNotVisible"])
                == 0
            ):
                return True
            time.sleep(POLL_SECONDS)
        return False

    def run(self, names: Sequence[str]) -> int:
        self.check_runtime()
        self.say(
            f"Demo: signed test-mode events to {self.url}/webhooks/stripe, entitlements read from {self.table_name}"
        )
        run = int(time.time())
        problems = 0
        for index, name in enumerate(names, start=1):
            customer = demo_customer_id(run, index)
            params = replace(
                scenarios.DEFAULT_PARAMS, customer_id=customer, user_id=f"user_demo_{run}_{index}"
            )
            scenario = scenarios.build(name, params, ends_at=int(time.time()))
            problems += self.play(index, scenario, via_eventbridge=index in VIA_EVENTBRIDGE)
        self.say("")
        self.say(
            "Look closer: .venv/bin/stripe-sync --local customer show <customer id>   (records and entitlements)"
        )
        return 1 if problems else 0

    def play(self, index: int, scenario: scenarios.Scenario, *, via_eventbridge: bool = False) -> int:
        self.say("")
        way = f"Amazon EventBridge ({EVENTBRIDGE_PATH})" if via_eventbridge else "the webhook"
        self.say(f"{index}. {scenario.name}, customer {scenario.customer_id}, through {way}")
        self.say(f"   {scenario.story}")
        version = 0
        problems = 0
        for event, body in zip(scenario.events, scenario.bodies(), strict=True):
            status, answer = self.post_eventbridge(event) if via_eventbridge else self.post(body)
            label = f"   {when(int(event['created']))[:16]}  {event['type']:<38}"
            if status != 200:
                self.say(
                    f"{label} {'eventbridge' if via_eventbridge else 'webhook'} answered {status}: {answer.strip()}"
                )
                return problems + 1
            if not self.wait_applied():
                self.say(
                    f"{label} not applied within {APPLY_TIMEOUT_SECONDS:.0f} s: see the `make run` window"
                )
                problems += 1
                continue
            access = self.reader.entitlements(str(scenario.customer_id))
            changed = access is not None and access.version != version
            version = access.version if access is not None else 0
            self.say(f"{label} {entitlements_text(access)}{'  <- changed' if changed else ''}")
            if changed:
                for told in self.published(str(scenario.customer_id), version):
                    detail = told["detail"]
                    self.say(
                        f"{'':<61}   published {told['detail-type']} v{detail['version']} "
                        f"(cause {detail.get('cause_event_id')})"
                    )
        expected = expected_entitlements(
            str(scenario.customer_id), scenario.events, scenario_line_items(scenario), self.rules
        )
        self.say(f"   expected: {expected_text(expected)}")
        return problems

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def entitlements_text(access: CustomerEntitlements | None, now: float | None = None) -> str:
    """The entitlements item in words: what is granted now, until when, and the flags."""
    if access is None:
        return "no entitlements item yet"
    until = {name: grant.until for name, grant in access.features.items()}
    return f"{access_in_words(until, access.payment_issue, access.deleted, now)}  v{access.version}"


def expected_text(expected: Entitlements, now: float | None = None) -> str:
    """What the rules grant, in the words of the item's lines (without a version: nothing is written)."""
    until = {name: grant.until for name, grant in expected.features.items()}
    return access_in_words(until, expected.payment_issue, expected.deleted, now)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m local_runtime.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(scenarios.SCENARIOS),
        metavar="NAME",
        help=f"a scenario to play (repeatable; default: {', '.join(DEMO_SCENARIOS)}); --list shows all",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name in sorted(scenarios.SCENARIOS):
            out.write(f"{name}\n")
        return 0
    env: Mapping[str, Any] = os.environ
    try:
        port = int(env.get("PORT") or DEFAULT_PORT)
        aws_port = int(env.get("AWS_PORT") or DEFAULT_AWS_PORT)
    except ValueError:
        print("demo: PORT and AWS_PORT must be port numbers", file=sys.stderr)
        return 2
    try:
        demo = Demo(port, aws_port, demo_secret(env, port), out)
        return demo.run(args.scenario or DEMO_SCENARIOS)
    except DemoError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
