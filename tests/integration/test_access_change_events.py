"""Every documented event sequence, through the worker's real store on moto with the table's stream on:
the stream publishes exactly the access changes the worker makes, once each, and replays, duplicates
and an event delivered both by webhook and by EventBridge publish nothing new."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from adapters import sync_table
from domain.entitlement_events import CUSTOMER_DETAIL_TYPE, USER_DETAIL_TYPE, ChangeEntry, change_entry
from domain.entitlements import EntitlementRules, Entitlements
from domain.ingress import eventbridge_event, parse_event, queue_message
from domain.sync import EventApplier, Result
from events.scenarios import ScenarioParams, all_scenarios, render
from harness.sync_table_fixture import create_sync_table
from local_runtime.table_stream import TableStreamMapping, matches
from local_runtime.template import read_template
from tests.support.aws_event_shapes import stripe_eventbridge_event
from tests.support.moto_account import moto_account
from tests.support.sqs_delivery import apply_as_sqs_delivers

PARAMS = ScenarioParams()
SCENARIOS = {scenario.name: scenario for scenario in all_scenarios(PARAMS)}
RULES = EntitlementRules()
PUBLISHER = read_template().publisher
assert PUBLISHER is not None
FILTERS = PUBLISHER.filters


@pytest.fixture(scope="module")
def aws() -> Iterator[tuple[Any, Any]]:
    with moto_account():
        # The regional endpoint: moto does not serve the account-based one botocore now picks.
        streams = boto3.client(
            "dynamodbstreams", endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com"
        )
        yield boto3.client("dynamodb"), streams


@dataclass
class Table:
    """A fresh sync table (as the template declares it, stream included) and what its stream publishes."""

    stream: TableStreamMapping

    def published(self) -> list[ChangeEntry]:
        """The entries the publisher makes of the stream records written since the last call, after the
        event source's filter."""
        records = [r for r in self.stream.read() if any(matches(p, r) for p in FILTERS)]
        return [entry for record in records if (entry := change_entry(record)) is not None]


@pytest.fixture
def table(aws: tuple[Any, Any]) -> Table:
    dynamodb, streams = aws
    name = f"changes-{uuid.uuid4().hex[:8]}"
    create_sync_table(dynamodb, name)
    arn = dynamodb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    unused = TableStreamMapping(
        streams,
        arn,
        lambda *_: None,
        lambda: None,
        None,
        filters=FILTERS,
        batch_size=100,
        max_retry_attempts=0,
    )  # type: ignore[arg-type]
    return Table(unused)


def apply_all(events: list[dict[str, Any]]) -> list[Result]:
    applier = EventApplier(sync_table.DynamoCustomerStore(), RULES, clock=lambda: 2_000_000_000)
    return apply_as_sqs_delivers(applier, events)


def access(entitlements: Entitlements) -> dict[str, Any]:
    return {
        "features": {
            name: {"until": grant.until, "source": grant.source}
            for name, grant in sorted(entitlements.features.items())
        },
        "payment_issue": entitlements.payment_issue,
        "deleted": entitlements.deleted,
    }


NOTHING = {"features": {}, "payment_issue": False, "deleted": False}


def changes_of(results: list[Result]) -> list[tuple[str | None, str, dict[str, Any]]]:
    """The access changes the worker reports, but the first write of a customer that grants nothing (no
    item and an item granting nothing read alike)."""
    changes = []
    for result in results:
        if result.entitlements_changed and result.after:
            if result.before is None and access(result.after) == NOTHING:
                continue
            changes.append((result.customer_id, result.event_id, access(result.after)))
    return changes


def told(entries: list[ChangeEntry]) -> list[tuple[str | None, str, dict[str, Any]]]:
    """The customers' changes (a user's item publishes its own, see `users_told`)."""
    return [
        (e.detail["customer_id"], e.detail["cause_event_id"], e.detail["after"])
        for e in entries
        if e.detail_type == CUSTOMER_DETAIL_TYPE
    ]


def users_told(entries: list[ChangeEntry]) -> list[ChangeEntry]:
    return [e for e in entries if e.detail_type == USER_DETAIL_TYPE]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_documented_sequence_publishes_exactly_its_access_changes_once(table: Table, name: str) -> None:
    scenario = SCENARIOS[name]

    results = apply_all(scenario.events)
    entries = table.published()

    assert told(entries) == changes_of(results)
    for customer in {e.detail["customer_id"] for e in entries}:
        versions = [e.detail["version"] for e in entries if e.detail["customer_id"] == customer]
        assert versions == sorted(set(versions)), "a higher version at each change"
        befores = [e.detail["before"] for e in entries if e.detail["customer_id"] == customer]
        afters = [e.detail["after"] for e in entries if e.detail["customer_id"] == customer]
        assert befores[0] in (None, NOTHING), "the first change starts from no access"
        assert befores[1:] == afters[:-1], "each change starts where the last one ended"

    replayed = apply_all(scenario.events + list(reversed(scenario.events)) + scenario.events[:3])
    assert changes_of(replayed) == []
    assert table.published() == [], "replays and duplicates publish nothing"


def test_a_published_change_names_the_customers_user_and_mode(table: Table) -> None:
    apply_all(SCENARIOS["signup_paid"].events)
    published = table.published()
    last = [e for e in published if e.detail_type == CUSTOMER_DETAIL_TYPE][-1].detail
    assert (last["customer_id"], last["user_id"], last["livemode"]) == (
        PARAMS.customer_id,
        PARAMS.user_id,
        False,
    )
    assert last["after"]["features"], "the paid signup grants its features"
    # The customer's user is told too, by the user entitlements item, with the same access.
    user = users_told(published)[-1].detail
    assert (user["user_id"], user["customer_ids"], user["after"]) == (
        PARAMS.user_id,
        [PARAMS.customer_id],
        last["after"],
    )


def test_an_event_delivered_by_webhook_and_by_eventbridge_is_applied_and_published_once(table: Table) -> None:
    """Beyond the FIFO queue's five-minute deduplication window the two copies both reach the worker:
    the second finds its own stamp on the record and changes nothing."""
    scenario = SCENARIOS["signup_paid"]
    by_webhook = [json.loads(queue_message(parse_event(render(e).decode())).body) for e in scenario.events]
    by_eventbridge = [
        json.loads(queue_message(eventbridge_event(stripe_eventbridge_event(e))).body)
        for e in scenario.events
    ]
    assert by_webhook == by_eventbridge, "the worker gets the same event either way"

    first = apply_all(by_webhook)
    published = table.published()
    second = apply_all(by_eventbridge)

    assert told(published) == changes_of(first) != []
    assert {r.outcome.value for r in second} <= {"duplicate", "stale", "ignored"}
    assert table.published() == []
