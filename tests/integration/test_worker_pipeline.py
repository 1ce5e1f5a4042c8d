"""SQS -> worker Lambda -> DynamoDB on moto: partial batch failures, the published entitlements item,
the user lookup, and the requests each event costs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from entitlements_reader import EntitlementsReader
from events.stripe import objects as s
from handlers import worker
from harness.lambda_context import FakeLambdaContext
from harness.sync_table_fixture import create_sync_table
from local_runtime.event_source import sqs_event
from tests.support.aws_event_shapes import received_once
from tests.support.moto_account import isolate_aws
from tests.support.webhook_queue import create_event_queue

T0 = 1_767_000_000
DAY = 86_400
PRO = s.PriceSpec("price_pro", "prod_pro")
TABLE = "sync-test"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:events.fifo"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    isolate_aws(monkeypatch, "STRIPE_API_KEY", "STRIPE_SECRET_ID")
    monkeypatch.setenv("TABLE_NAME", TABLE)
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_sync_table(dynamodb, TABLE)
        sqs = boto3.client("sqs")
        queue_url = create_event_queue(sqs, "events.fifo")
        yield {"dynamodb": dynamodb, "sqs": sqs, "queue_url": queue_url}


def sub_event(status: str, created: int, customer: str = "cus_1", **changes: Any) -> dict[str, Any]:
    return s.subscription_event(
        s.IdFactory(f"{customer}-{created}"),
        customer=customer,
        price=PRO,
        status=status,  # type: ignore[arg-type]
        started=T0,
        period_start=T0,
        period_end=T0 + 30 * DAY,
        at=created,
        **changes,
    )


def send(aws: dict[str, Any], body: str, group: str, dedup: str) -> None:
    aws["sqs"].send_message(
        QueueUrl=aws["queue_url"], MessageBody=body, MessageGroupId=group, MessageDeduplicationId=dedup
    )


def receive_as_lambda_event(aws: dict[str, Any]) -> dict[str, Any]:
    """What an SQS event source mapping hands the function."""
    messages = (
        aws["sqs"]
        .receive_message(
            QueueUrl=aws["queue_url"], MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        )
        .get("Messages", [])
    )
    return sqs_event(messages, QUEUE_ARN, "us-east-1")


def test_a_batch_through_sqs_lands_in_the_published_entitlements_item(aws: dict[str, Any]) -> None:
    for customer in ("cus_a", "cus_b"):
        event = sub_event("active", T0 + 5, customer)
        send(aws, json.dumps(event), customer, event["id"])
    response = worker.lambda_handler(receive_as_lambda_event(aws), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    item = aws["dynamodb"].get_item(
        TableName=TABLE, Key={"pk": {"S": "CUSTOMER#cus_a"}, "sk": {"S": "ENTITLEMENTS"}}, ConsistentRead=True
    )["Item"]
    assert item["customer_id"] == {"S": "cus_a"}
    assert item["livemode"] == {"BOOL": False}
    assert item["features"] == {"M": {"prod_pro": {"M": {"source": {"S": "sub_cus_a"}}}}}
    assert item["payment_issue"] == {"BOOL": False}
    assert item["version"] == {"N": "1"}
    assert item["deleted"] == {"BOOL": False}
    assert "N" in item["updated_at"]


def test_only_the_failing_message_is_reported_and_the_others_are_applied(aws: dict[str, Any]) -> None:
    good = sub_event("active", T0 + 5, "cus_good")
    poison = sub_event("active", T0 + 5, "cus_bad")
    del poison["data"]["object"]["status"]
    unknown = s.event(
        s.IdFactory("payout"), "payout.paid", {"id": "po_1", "object": "payout"}, created=T0, id="evt_u"
    )
    event = {
        "Records": [
            received_once("m-good", json.dumps(good)),
            received_once("m-poison", json.dumps(poison)),
            received_once("m-not-json", "{not json"),
            received_once("m-unknown", json.dumps(unknown)),
        ]
    }
    response = worker.lambda_handler(event, FakeLambdaContext())
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == ["m-not-json", "m-poison"]
    reader = EntitlementsReader(TABLE, livemode=False, client=aws["dynamodb"])
    good_access = reader.entitlements("cus_good")
    assert good_access is not None
    assert good_access.has("prod_pro")
    assert reader.entitlements("cus_bad") is None


def test_redelivered_and_older_events_change_nothing(aws: dict[str, Any]) -> None:
    newer = sub_event("past_due", T0 + 10)
    older = sub_event("active", T0 + 5)
    for body in (newer, newer, older):
        worker.lambda_handler(
            {"Records": [received_once(str(uuid.uuid4()), json.dumps(body))]}, FakeLambdaContext()
        )
    reader = EntitlementsReader(TABLE, livemode=False, client=aws["dynamodb"])
    access = reader.entitlements("cus_1")
    assert access is not None
    assert access.payment_issue
    assert access.version == 1
    # The applied event is remembered by the record's stamp (it never expires, unlike a ledger).
    record = aws["dynamodb"].get_item(
        TableName=TABLE,
        Key={"pk": {"S": "CUSTOMER#cus_1"}, "sk": {"S": "SUBSCRIPTION#sub_cus_1"}},
        ConsistentRead=True,
    )
    assert record["Item"]["customer_id"] == {"S": "cus_1"}
    assert record["Item"]["stamp_event"] == {"S": newer["id"]}


def test_customer_is_found_by_the_applications_user_id(aws: dict[str, Any]) -> None:
    ids = s.IdFactory(3)
    customer = s.customer(ids, id="cus_1", created=T0, metadata={"user_id": "user-7"})
    created = s.event(ids, "customer.created", customer, created=T0 + 1)
    worker.lambda_handler(
        {
            "Records": [
                received_once("m1", json.dumps(created)),
                received_once("m2", json.dumps(sub_event("active", T0 + 2))),
            ]
        },
        FakeLambdaContext(),
    )
    reader = EntitlementsReader(TABLE, livemode=False, client=aws["dynamodb"])
    assert reader.customer_for_user("user-7") == "cus_1"
    assert reader.customer_for_user("user-7", livemode=True) is None
    access = reader.entitlements("cus_1")
    assert access is not None
    assert access.active_features(now=T0) == {"prod_pro"}


def test_each_snapshot_event_costs_one_read_and_at_most_three_write_requests(aws: dict[str, Any]) -> None:
    calls: list[str] = []
    import botocore.client

    original = botocore.client.BaseClient._make_api_call

    def counting(self: Any, operation: str, params: dict[str, Any]) -> Any:
        calls.append(operation)
        return original(self, operation, params)

    botocore.client.BaseClient._make_api_call = counting  # type: ignore[method-assign]
    try:
        events = [
            sub_event(status, T0 + i)
            for i, status in enumerate(["incomplete", "active", "past_due", "active"])
        ]
        worker.lambda_handler(
            {"Records": [received_once(f"m{i}", json.dumps(e)) for i, e in enumerate(events)]},
            FakeLambdaContext(),
        )
    finally:
        botocore.client.BaseClient._make_api_call = original  # type: ignore[method-assign]
    # One BatchGetItem (state, record, entitlements); then the record, the state and - every one of
    # these four changes access - the entitlements item; no transaction, no Query of the history.
    assert calls.count("BatchGetItem") == 4
    assert calls.count("PutItem") == 4 * 3
    assert set(calls) == {"BatchGetItem", "PutItem"}
