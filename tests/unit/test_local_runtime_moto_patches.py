"""The local runtime's patches of moto: rollback, DynamoDB's cancellation reasons, and the same
behaviour as moto's own methods on the same operations (local_runtime.moto_patches)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.sqs import models as sqs_models

from harness.sync_table_fixture import create_keys_only_table
from local_runtime import moto_patches

TABLE = "patch-test"
type Client = Any


@pytest.fixture(autouse=True)
def _moto_as_found() -> Iterator[None]:
    """Every test starts with moto's own methods and leaves them so."""
    moto_patches.uninstall()
    yield
    moto_patches.uninstall()


def fresh_table(*, stream: bool = False) -> Client:
    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    create_keys_only_table(client, TABLE, stream=stream)
    return client


def key(pk: str, sk: str = "1") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def item(pk: str, sk: str = "1", **values: int) -> dict[str, Any]:
    return key(pk, sk) | {name: {"N": str(value)} for name, value in values.items()}


def get(client: Client, pk: str, sk: str = "1") -> dict[str, Any] | None:
    found: dict[str, Any] | None = client.get_item(TableName=TABLE, Key=key(pk, sk), ConsistentRead=True).get(
        "Item"
    )
    return found


def cancellation(call: Callable[[], object]) -> dict[str, Any]:
    with pytest.raises(ClientError) as raised:
        call()
    return dict(raised.value.response)


def put(entry: dict[str, Any], condition: str | None = None, **extra: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {"TableName": TABLE, "Item": entry, **extra}
    if condition:
        operation["ConditionExpression"] = condition
    return {"Put": operation}


# -- rollback and cancellation reasons -----------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(put(item("A", v=2)), id="put over an item"),
        pytest.param(put(item("NEW", v=2)), id="put of a new item"),
        pytest.param(
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": key("A"),
                    "UpdateExpression": "SET v = :v ADD n :one",
                    "ExpressionAttributeValues": {":v": {"N": "2"}, ":one": {"N": "1"}},
                }
            },
            id="update in place",
        ),
        pytest.param({"Delete": {"TableName": TABLE, "Key": key("A")}}, id="delete"),
    ],
)
def test_a_failed_condition_on_the_second_item_leaves_the_first_unchanged(first: dict[str, Any]) -> None:
    with mock_aws(), moto_patches.patched():
        client = fresh_table()
        client.put_item(TableName=TABLE, Item=item("A", v=1, n=5))
        client.put_item(TableName=TABLE, Item=item("B", v=1))
        before = client.scan(TableName=TABLE, ConsistentRead=True)["Items"]

        error = cancellation(
            lambda: client.transact_write_items(
                TransactItems=[first, put(item("B", v=9), "attribute_not_exists(pk)")]
            )
        )

        assert error["Error"]["Code"] == "TransactionCanceledException"
        assert error["CancellationReasons"] == [
            {"Code": "None"},
            {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"},
        ]
        assert get(client, "A") == item("A", v=1, n=5)
        assert get(client, "NEW") is None
        assert client.scan(TableName=TABLE, ConsistentRead=True)["Items"] == before


def test_the_failed_item_comes_back_when_asked_and_the_others_are_none() -> None:
    with mock_aws(), moto_patches.patched():
        client = fresh_table()
        client.put_item(TableName=TABLE, Item=item("B", v=1))
        error = cancellation(
            lambda: client.transact_write_items(
                TransactItems=[
                    put(item("A", v=2)),
                    put(
                        item("B", v=9),
                        "v = :zero",
                        ExpressionAttributeValues={":zero": {"N": "0"}},
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    ),
                    put(item("C", v=3)),
                ]
            )
        )
        assert error["CancellationReasons"] == [
            {"Code": "None"},
            {
                "Code": "ConditionalCheckFailed",
                "Message": "The conditional request failed",
                "Item": item("B", v=1),
            },
            {"Code": "None"},
        ]
        assert get(client, "A") is None
        assert get(client, "C") is None


def test_two_operations_on_one_item_are_refused_and_write_nothing() -> None:
    with mock_aws(), moto_patches.patched():
        client = fresh_table()
        error = cancellation(
            lambda: client.transact_write_items(
                TransactItems=[put(item("A", v=1)), put(item("B", v=1)), put(item("A", v=2))]
            )
        )
        assert error["Error"]["Code"] == "ValidationException"
        assert "multiple operations on one item" in error["Error"]["Message"]
        assert client.scan(TableName=TABLE)["Items"] == []


def test_a_successful_transaction_writes_every_item() -> None:
    with mock_aws(), moto_patches.patched():
        client = fresh_table()
        client.put_item(TableName=TABLE, Item=item("D", v=1))
        client.transact_write_items(
            TransactItems=[
                put(item("A", v=1), "attribute_not_exists(pk)"),
                {
                    "Delete": {
                        "TableName": TABLE,
                        "Key": key("D"),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": key("Z"),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
        assert get(client, "A") == item("A", v=1)
        assert get(client, "D") is None


def test_the_patched_transaction_never_copies_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """What keeps its cost flat: moto's own method deep-copies every table it touches."""

    def refuse(_table: Table, _memo: object) -> Table:
        raise AssertionError("the whole table was copied")

    with mock_aws():
        client = fresh_table()
        client.put_item(TableName=TABLE, Item=item("B", v=1))
        monkeypatch.setattr(Table, "__deepcopy__", refuse, raising=False)
        failing = [put(item("A", v=1)), put(item("B", v=2), "attribute_not_exists(pk)")]
        with pytest.raises(AssertionError, match="the whole table was copied"):  # moto's own method
            client.transact_write_items(TransactItems=failing)
        with moto_patches.patched():
            error = cancellation(lambda: client.transact_write_items(TransactItems=failing))
            client.transact_write_items(TransactItems=[put(item("A", v=1))])
        assert error["Error"]["Code"] == "TransactionCanceledException"
        assert get(client, "A") == item("A", v=1)
        assert get(client, "B") == item("B", v=1)


def test_a_table_with_a_stream_keeps_motos_method_and_its_stream_rolls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    original = moto_patches._original

    def counted(backend: DynamoDBBackend, items: list[dict[str, Any]]) -> None:
        calls.append(len(items))
        original(backend, items)

    monkeypatch.setattr(moto_patches, "_original", counted)
    with mock_aws(), moto_patches.patched():
        client = fresh_table(stream=True)
        client.put_item(TableName=TABLE, Item=item("B", v=1))
        cancellation(
            lambda: client.transact_write_items(
                TransactItems=[put(item("A", v=1)), put(item("B", v=2), "attribute_not_exists(pk)")]
            )
        )
        assert calls == [2]
        assert get(client, "A") is None


# -- the version guard --------------------------------------------------------------------------------


def test_another_moto_release_is_not_patched_and_says_so() -> None:
    with pytest.warns(moto_patches.MotoVersionMismatch, match=r"moto 5\.9\.0 is installed.*not applied"):
        assert moto_patches.install("5.9.0") is False
    assert not moto_patches.installed()
    assert DynamoDBBackend.transact_write_items is moto_patches._original


def test_the_pinned_release_is_patched_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert moto_patches.install() is True
    assert moto_patches.installed()
    moto_patches.uninstall()
    assert not moto_patches.installed()
    assert Table.query is moto_patches._original_query


def test_the_pin_is_the_one_the_patch_names() -> None:
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    groups = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["dependency-groups"]
    assert f"moto[dynamodb,sqs]=={moto_patches.MOTO_VERSION}" in groups["run"]
    assert f"moto[server]=={moto_patches.MOTO_VERSION}" in groups["dev"]
    locked = tomllib.loads((root / "uv.lock").read_text(encoding="utf-8"))["package"]
    assert [package["version"] for package in locked if package["name"] == "moto"] == [
        moto_patches.MOTO_VERSION
    ]


# -- the same behaviour as moto's own methods ------------------------------------------------------------

PKS = ("A", "B", "C")
SKS = ("1", "2")
CONDITIONS = (None, "attribute_exists(pk)", "attribute_not_exists(pk)", "v = :one", "v < :one")


@st.composite
def operations(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(("Put", "Update", "Delete", "ConditionCheck")))
    pk, sk = draw(st.sampled_from(PKS)), draw(st.sampled_from(SKS))
    condition = draw(st.sampled_from(CONDITIONS))
    if kind == "ConditionCheck" and condition is None:
        condition = "attribute_exists(pk)"
    operation: dict[str, Any] = {"TableName": TABLE}
    values: dict[str, Any] = {}
    if condition is not None:
        operation["ConditionExpression"] = condition
        if ":one" in condition:
            values[":one"] = {"N": "1"}
    if draw(st.booleans()) and condition is not None:
        operation["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    if kind == "Put":
        operation["Item"] = item(pk, sk, v=draw(st.integers(0, 2)))
    else:
        operation["Key"] = key(pk, sk)
    if kind == "Update":
        operation["UpdateExpression"] = "SET v = :v ADD n :one"
        values |= {":v": {"N": str(draw(st.integers(0, 2)))}, ":one": {"N": "1"}}
    if values:
        operation["ExpressionAttributeValues"] = values
    return {kind: operation}


def outcome(call: Callable[[], object]) -> object:
    try:
        call()
    except ClientError as error:
        return (
            error.response["Error"]["Code"],
            error.response["Error"]["Message"],
            error.response.get("CancellationReasons"),
        )
    return "ok"


def replay(transactions: list[list[dict[str, Any]]]) -> list[object]:
    """Run `transactions` on a fresh table; every answer, then what Query and Scan return."""
    with mock_aws():
        client = fresh_table()
        client.put_item(TableName=TABLE, Item=item("A", "1", v=1))
        client.put_item(TableName=TABLE, Item=item("B", "2", v=0))
        seen: list[object] = [
            outcome(lambda t=t: client.transact_write_items(TransactItems=t)) for t in transactions
        ]
        for pk in PKS:
            pages = client.get_paginator("query").paginate(
                TableName=TABLE,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": pk}},
                ConsistentRead=True,
                PaginationConfig={"PageSize": 1},
            )
            seen.append([(page["Items"], page.get("LastEvaluatedKey")) for page in pages])
            seen.append(
                client.query(
                    TableName=TABLE,
                    KeyConditionExpression="pk = :pk AND sk > :sk",
                    ExpressionAttributeValues={":pk": {"S": pk}, ":sk": {"S": "1"}},
                    ScanIndexForward=False,
                )["Items"]
            )
        seen.append(client.scan(TableName=TABLE, ConsistentRead=True)["Items"])
        return seen


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(operations(), min_size=1, max_size=4), min_size=1, max_size=5))
def test_the_patches_answer_as_motos_own_methods(transactions: list[list[dict[str, Any]]]) -> None:
    moto_patches.uninstall()
    theirs = replay(transactions)
    with moto_patches.patched():
        ours = replay(transactions)
    assert ours == theirs


def test_queue_attributes_are_motos_with_messages_ready_in_flight_and_delayed() -> None:
    with mock_aws():
        sqs = boto3.client(
            "sqs", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
        )
        url = sqs.create_queue(QueueName="plain", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        fifo = sqs.create_queue(
            QueueName="events.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false", "VisibilityTimeout": "60"},
        )["QueueUrl"]
        for n in range(6):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{n}", DelaySeconds=60 if n == 5 else 0)
            sqs.send_message(
                QueueUrl=fifo, MessageBody=f"m{n}", MessageGroupId=f"g{n % 2}", MessageDeduplicationId=str(n)
            )
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)
        sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=3)
        queues = list(sqs_models.sqs_backends["123456789012"]["us-east-1"].queues.values())
        original = moto_patches._original_queue_attributes.fget
        assert original is not None
        for queue in queues:
            theirs = original(queue)
            assert moto_patches.queue_attributes(queue) == theirs
        plain = next(q for q in queues if q.name == "plain")
        counts = moto_patches.queue_attributes(plain)
        assert (
            counts["ApproximateNumberOfMessages"],
            counts["ApproximateNumberOfMessagesNotVisible"],
            counts["ApproximateNumberOfMessagesDelayed"],
        ) == (3, 2, 1)
        with moto_patches.patched():
            answered = sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["All"])["Attributes"]
        assert answered["ApproximateNumberOfMessagesNotVisible"] == "3"
        assert answered["FifoQueue"] == "true"


def test_concurrent_deletes_do_not_bring_a_deleted_message_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's own delete rebuilds the list from the one it walks, without the queue's lock: a message
    another DeleteMessage removed meanwhile comes back (and is delivered again after its visibility
    timeout), and one a SendMessage appended meanwhile is lost."""
    import threading

    def run(patched: bool) -> list[str]:
        with mock_aws():
            sqs = boto3.client(
                "sqs", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
            )
            url = sqs.create_queue(QueueName="walk")["QueueUrl"]
            for body in ("first", "second"):
                sqs.send_message(QueueUrl=url, MessageBody=body)
            received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
            handles = {m["Body"]: m["ReceiptHandle"] for m in received}
            queue = sqs_models.sqs_backends["123456789012"]["us-east-1"].queues["walk"]
            other: list[threading.Thread] = []
            calls = 0
            had = sqs_models.Message.had_receipt_handle

            def walking(message: sqs_models.Message, receipt: str) -> bool:
                nonlocal calls
                calls += 1
                if calls == 2:  # the first delete is rebuilding the list: a second one arrives
                    thread = threading.Thread(target=queue.delete_message, args=(handles["second"],))
                    other.append(thread)
                    thread.start()
                    thread.join(0.2)
                return had(message, receipt)

            monkeypatch.setattr(sqs_models.Message, "had_receipt_handle", walking)
            with moto_patches.patched() if patched else contextlib.nullcontext():
                queue.delete_message(handles["first"])
                other[0].join()
            monkeypatch.undo()
            return [message.body for message in queue._messages]

    assert run(patched=False) == ["second"]  # moto's own: deleted, and back
    assert run(patched=True) == []
