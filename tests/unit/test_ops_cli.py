"""`stripe-sync`: arguments, targets, and each command against in-memory AWS and a fake Stripe."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from domain.reconcile import Counts, Drift, DriftKind, ReconcileReport
from events.stripe import objects as samples
from harness.fake_stripe import FakeStripe
from ops import cli
from ops.dlq import DEDUPLICATION_WINDOW_SECONDS
from ops.progress import Progress
from ops.targets import AwsAccess, Target, TargetError, TargetOptions, aws_access, resolve_target
from tests.support.memory_reconcile import subscription
from tests.support.moto_account import isolate_aws

QUEUE = "http://sqs.local/events.fifo"
DLQ = "http://sqs.local/dlq.fifo"
TABLE = "sync-table"
TARGET = ["--table", TABLE, "--queue-url", QUEUE, "--dlq-url", DLQ]


# -- in-memory AWS ------------------------------------------------------------------------------------


class FakeSqs:
    """SQS as far as the CLI uses it: visibility timeouts, receipt handles, receive counts."""

    def __init__(self) -> None:
        self.queues: dict[str, list[dict[str, Any]]] = {QUEUE: [], DLQ: []}
        self._numbers = iter(range(1, 10_000))
        self.batches: list[list[dict[str, Any]]] = []
        self.calls: list[tuple[str, str]] = []  # (operation, queue url), in order
        self.refusing: set[str] = set()  # queue urls whose SendMessage fails

    def park(
        self, event_id: str, *, age: float = 3600, group: str = "cus_1", reason: str | None = None
    ) -> str:
        """A message in the DLQ, sent `age` seconds ago; with `reason`, as the worker parks one."""
        attributes = {}
        if reason is not None:
            attributes = {
                "FailureReason": {"DataType": "String", "StringValue": reason},
                "FailureType": {"DataType": "String", "StringValue": "MalformedEvent"},
            }
        return self._add(
            DLQ,
            json.dumps({"id": event_id, "object": "event", "type": "invoice.paid"}),
            group,
            event_id,
            age,
            message_attributes=attributes,
        )

    def _add(
        self,
        url: str,
        body: str,
        group: str | None,
        dedup: str | None,
        age: float = 0,
        *,
        message_attributes: dict[str, Any] | None = None,
    ) -> str:
        number = next(self._numbers)
        attributes = {"SentTimestamp": str(int((time.time() - age) * 1000)), "ApproximateReceiveCount": "5"}
        if group:
            attributes["MessageGroupId"] = group
        if dedup:
            attributes["MessageDeduplicationId"] = dedup
        self.queues[url].append(
            {
                "MessageId": f"m{number}",
                "Body": body,
                "Attributes": attributes,
                "visible_at": 0.0,
                "receipt": None,
                "MessageAttributes": message_attributes or {},
            }
        )
        return f"m{number}"

    def receive_message(
        self, QueueUrl: str, MaxNumberOfMessages: int, VisibilityTimeout: int, **_: Any
    ) -> dict:
        now = time.monotonic()
        out = []
        for message in self.queues[QueueUrl]:
            if len(out) == MaxNumberOfMessages:
                break
            if message["visible_at"] <= now:
                message["visible_at"] = now + VisibilityTimeout
                message["receipt"] = f"r{next(self._numbers)}"
                count = int(message["Attributes"]["ApproximateReceiveCount"]) + 1
                message["Attributes"]["ApproximateReceiveCount"] = str(count)
                out.append(
                    {
                        "MessageId": message["MessageId"],
                        "ReceiptHandle": message["receipt"],
                        "Body": message["Body"],
                        "Attributes": dict(message["Attributes"]),
                        **(
                            {"MessageAttributes": message["MessageAttributes"]}
                            if message["MessageAttributes"]
                            else {}
                        ),
                    }
                )
        return {"Messages": out} if out else {}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        for entry in Entries:
            for message in self.queues[QueueUrl]:
                if message["receipt"] == entry["ReceiptHandle"]:
                    message["visible_at"] = time.monotonic() + entry["VisibilityTimeout"]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> dict:
        self.calls.append(("delete", QueueUrl))
        self.queues[QueueUrl] = [m for m in self.queues[QueueUrl] if m["receipt"] != ReceiptHandle]
        return {}

    def send_message(
        self,
        QueueUrl: str,
        MessageBody: str,
        MessageGroupId: str,
        MessageDeduplicationId: str,
        MessageAttributes: dict[str, Any] | None = None,
    ) -> dict:
        self.calls.append(("send", QueueUrl))
        if QueueUrl in self.refusing:
            error = {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "refuses the message"}
            raise ClientError({"Error": error}, "SendMessage")
        number = self._add(
            QueueUrl,
            MessageBody,
            MessageGroupId,
            MessageDeduplicationId,
            message_attributes=MessageAttributes,
        )
        return {"MessageId": number}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        self.batches.append(Entries)
        for entry in Entries:
            self._add(
                QueueUrl, entry["MessageBody"], entry["MessageGroupId"], entry["MessageDeduplicationId"]
            )
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def get_queue_attributes(self, QueueUrl: str, **_: Any) -> dict:
        now = time.monotonic()
        visible = sum(1 for m in self.queues[QueueUrl] if m["visible_at"] <= now)
        return {
            "Attributes": {
                "ApproximateNumberOfMessages": str(visible),
                "ApproximateNumberOfMessagesNotVisible": str(len(self.queues[QueueUrl]) - visible),
            }
        }

    def visible(self, url: str) -> list[str]:
        return [m["MessageId"] for m in self.queues[url] if m["visible_at"] <= time.monotonic()]


class FakeDynamoDb:
    def __init__(self, items: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.items = items

    def get_item(
        self,
        TableName: str,
        Key: dict[str, Any],
        ConsistentRead: bool,
        ProjectionExpression: str | None = None,
        ExpressionAttributeNames: dict[str, str] | None = None,
    ) -> dict:
        assert TableName == TABLE
        assert ConsistentRead
        item = self.items.get((Key["pk"]["S"], Key["sk"]["S"]))
        if item and ProjectionExpression is not None:  # as DynamoDB applies it
            names = ExpressionAttributeNames or {}
            wanted = {names.get(part.strip(), part.strip()) for part in ProjectionExpression.split(",")}
            item = {name: value for name, value in item.items() if name in wanted}
        return {"Item": item} if item else {}


class FakeCloudFormation:
    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs

    def describe_stacks(self, StackName: str) -> dict:
        return {
            "Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]}]
        }


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every client the CLI asks for is one of these fakes; no real AWS, no profile."""
    fakes: dict[str, Any] = {"sqs": FakeSqs(), "dynamodb": FakeDynamoDb({})}

    class Factory:
        def __init__(self, access: Any = None) -> None:
            self.access = access

        def __call__(self, service: str) -> Any:
            return fakes[service]

    monkeypatch.setattr(cli, "ClientFactory", Factory)
    isolate_aws(
        monkeypatch,
        "TABLE_NAME",
        "QUEUE_URL",
        "DLQ_URL",
        "STRIPE_API_KEY",
        "STRIPE_SECRET_ID",
        "STRIPE_API_BASE",
    )
    return fakes


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        code = cli.main(list(argv), out=out, err=err)
    except SystemExit as exit_:  # argparse
        code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


# -- arguments ----------------------------------------------------------------------------------------


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--help")[0] == 0
    text = capsys.readouterr().out
    for command in ("customer", "dlq", "refetch", "reconcile", "backfill", "--json", "--local", "--stack"):
        assert command in text


def test_target_options_work_before_and_after_the_command(aws: dict[str, Any]) -> None:
    aws["sqs"].park("evt_1")
    before = run("--json", *TARGET, "dlq", "list")
    after = run("dlq", "list", "--json", *TARGET)
    assert before[0] == after[0] == 0
    assert json.loads(before[1])["messages"][0]["event_id"] == json.loads(after[1])["messages"][0]["event_id"]


@pytest.mark.parametrize(
    "argv",
    [
        ["customer", "show"],
        ["customer", "show", "cus_1", "--user", "u1"],
        ["dlq", "redrive"],
        ["dlq", "redrive", "m1", "--all"],
        ["refetch", "object", "coupon", "co_1"],
        ["reconcile", "--time-budget", "0"],
        ["dlq", "list", "--limit", "many"],
        [],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(*argv)[0] == 2
    assert "usage: stripe-sync" in capsys.readouterr().err


# -- targets ------------------------------------------------------------------------------------------


def test_flags_win_over_the_stack_which_wins_over_the_environment() -> None:
    stack = FakeCloudFormation(
        {
            "TableName": "stack-table",
            "EventQueueUrl": "stack-queue",
            "DeadLetterQueueUrl": "stack-dlq",
            "StripeSecretArn": "arn:secret",
        }
    )
    env = {"TABLE_NAME": "env-table", "QUEUE_URL": "env-queue", "DLQ_URL": "env-dlq"}
    target = resolve_target(TargetOptions(stack="prod", table="flag-table"), env, lambda service: stack)  # type: ignore[arg-type]
    assert (target.table_name, target.queue_url, target.dlq_url, target.secret_id) == (
        "flag-table",
        "stack-queue",
        "stack-dlq",
        "arn:secret",
    )
    from_env = resolve_target(TargetOptions(), env, lambda service: stack)  # type: ignore[arg-type]
    assert (from_env.table_name, from_env.queue_url, from_env.dlq_url) == (
        "env-table",
        "env-queue",
        "env-dlq",
    )


def test_a_missing_name_says_how_to_give_it() -> None:
    target = Target(None, None, None, None, None, None)
    with pytest.raises(TargetError, match="--table NAME, set TABLE_NAME, or use --stack NAME or --local"):
        target.require_table()
    with pytest.raises(TargetError, match="--dlq-url"):
        target.require_dlq()


def test_local_uses_dummy_credentials_and_the_local_endpoint() -> None:
    env = {"AWS_PROFILE": "prod", "AWS_SESSION_TOKEN": "t", "AWS_PORT": "5123"}
    before = dict(env)
    access = aws_access(TargetOptions(local=True), env)
    assert access.endpoint_url == "http://127.0.0.1:5123"
    assert access.credentials == ("local", "local")
    assert access.region == "us-east-1"
    assert env == before, "the environment is read, never written"
    # The profile and the session token are not used: the client signs with the dummies alone.
    client = access.client("sqs")
    credentials = client._request_signer._credentials
    assert (credentials.access_key, credentials.token) == ("local", None)
    assert (client.meta.endpoint_url, client.meta.region_name) == ("http://127.0.0.1:5123", "us-east-1")
    with pytest.raises(TargetError, match="exclude each other"):
        aws_access(TargetOptions(local=True, stack="prod"), {})


def test_an_explicit_endpoint_and_region_are_used() -> None:
    env = {"AWS_ENDPOINT_URL": "http://elsewhere:1", "AWS_REGION": "us-west-2"}
    access = aws_access(TargetOptions(endpoint_url="http://localhost:4566", region="eu-west-1"), env)
    assert access == AwsAccess("http://localhost:4566", "eu-west-1", None)
    assert env == {"AWS_ENDPOINT_URL": "http://elsewhere:1", "AWS_REGION": "us-west-2"}
    assert aws_access(TargetOptions(), env) == AwsAccess("http://elsewhere:1", "us-west-2", None)
    target = resolve_target(TargetOptions(table="t", region="eu-west-1"), {}, lambda service: None)  # type: ignore[arg-type,return-value]
    assert (target.region, target.table().region, target.table().name) == ("eu-west-1", "eu-west-1", "t")


def test_without_a_dlq_the_command_fails_with_the_hint(aws: dict[str, Any]) -> None:
    code, _, err = run("dlq", "list")
    assert code == 1
    assert "no dead-letter queue: pass --dlq-url, set DLQ_URL, or use --stack NAME or --local" in err


# -- dlq ----------------------------------------------------------------------------------------------


def test_dlq_list_shows_the_messages_and_leaves_them_visible(aws: dict[str, Any]) -> None:
    sqs: FakeSqs = aws["sqs"]
    first, second = sqs.park("evt_1"), sqs.park("evt_2", group="cus_2")
    code, out, _ = run(*TARGET, "dlq", "list")
    assert code == 0
    assert out.splitlines()[0].split() == [
        "MESSAGE",
        "ID",
        "EVENT",
        "TYPE",
        "GROUP",
        "TRIES",
        "SENT",
        "REASON",
    ]
    rows = [line.split()[:4] for line in out.splitlines()[1:]]
    assert rows == [[first, "evt_1", "invoice.paid", "cus_1"], [second, "evt_2", "invoice.paid", "cus_2"]]
    assert sqs.visible(DLQ) == [first, second]


def test_dlq_list_and_show_give_the_reason_the_worker_parked_a_message_with(aws: dict[str, Any]) -> None:
    sqs: FakeSqs = aws["sqs"]
    parked = sqs.park("evt_1", reason="subscription object: no status")
    used_up = sqs.park("evt_2", group="cus_2")
    code, out, _ = run(*TARGET, "dlq", "list")
    assert code == 0
    [first, second] = out.splitlines()[1:]
    assert first.startswith(parked)
    assert first.endswith("subscription object: no status")
    assert second.startswith(used_up)
    assert second.endswith("tries used up (see the worker's log)")

    code, out, _ = run(*TARGET, "--json", "dlq", "show", parked)
    assert code == 0
    shown = json.loads(out)
    assert (shown["reason"], shown["failure_type"]) == ("subscription object: no status", "MalformedEvent")
    code, out, _ = run(*TARGET, "dlq", "show", parked)
    assert "  reason: subscription object: no status (MalformedEvent)" in out.splitlines()
    assert sqs.visible(DLQ) == [parked, used_up]


def test_dlq_list_says_when_it_is_empty_and_when_more_exist(aws: dict[str, Any]) -> None:
    assert run(*TARGET, "dlq", "list")[1] == "the dead-letter queue is empty\n"
    for number in range(3):
        aws["sqs"].park(f"evt_{number}")
    code, out, _ = run(*TARGET, "dlq", "list", "--limit", "2")
    assert code == 0
    assert "1 more not shown" in out


def test_dlq_show_prints_attributes_and_the_event(aws: dict[str, Any]) -> None:
    message = aws["sqs"].park("evt_7")
    code, out, _ = run(*TARGET, "--json", "dlq", "show", message)
    assert code == 0
    shown = json.loads(out)
    assert shown["body"] == {"id": "evt_7", "object": "event", "type": "invoice.paid"}
    assert shown["attributes"]["MessageDeduplicationId"] == "evt_7"
    assert aws["sqs"].visible(DLQ) == [message]


def test_dlq_show_of_an_unknown_message_fails(aws: dict[str, Any]) -> None:
    aws["sqs"].park("evt_7")
    code, _, err = run(*TARGET, "dlq", "show", "m404")
    assert code == 1
    assert "no message m404 in the dead-letter queue" in err
    assert len(aws["sqs"].visible(DLQ)) == 1


def test_redrive_sends_it_back_with_the_same_ids_then_deletes_it(aws: dict[str, Any]) -> None:
    sqs: FakeSqs = aws["sqs"]
    message = sqs.park("evt_1", group="cus_9")
    kept = sqs.park("evt_2")
    code, out, _ = run(*TARGET, "dlq", "redrive", message)
    assert code == 0
    assert f"redriven {message} (evt_1, invoice.paid)" in out
    (requeued,) = sqs.queues[QUEUE]
    assert requeued["Attributes"]["MessageGroupId"] == "cus_9"
    assert requeued["Attributes"]["MessageDeduplicationId"] == "evt_1"
    assert json.loads(requeued["Body"])["id"] == "evt_1"
    assert sqs.visible(DLQ) == [kept]


def test_a_message_inside_the_deduplication_window_stays_unless_forced(aws: dict[str, Any]) -> None:
    sqs: FakeSqs = aws["sqs"]
    message = sqs.park("evt_1", age=10)
    code, _, err = run(*TARGET, "dlq", "redrive", message)
    assert code == 1
    assert "5-minute deduplication window" in err
    assert sqs.queues[QUEUE] == []
    assert sqs.visible(DLQ) == [message]  # not lost, not hidden
    assert run(*TARGET, "dlq", "redrive", message, "--force")[0] == 0
    assert len(sqs.queues[QUEUE]) == 1
    assert sqs.queues[DLQ] == []


def test_unforced_redrive_sends_before_it_deletes_and_forced_deletes_first(aws: dict[str, Any]) -> None:
    # Forced (the local runtime): a worker parking the copy again before a later delete would have it
    # dropped as a duplicate of the copy still in the DLQ, and the event would be in neither queue.
    sqs: FakeSqs = aws["sqs"]
    assert run(*TARGET, "dlq", "redrive", sqs.park("evt_1"))[0] == 0
    assert [c for c in sqs.calls if c[0] in {"send", "delete"}] == [("send", QUEUE), ("delete", DLQ)]
    sqs.calls.clear()
    assert run(*TARGET, "dlq", "redrive", sqs.park("evt_2", age=10), "--force")[0] == 0
    assert [c for c in sqs.calls if c[0] in {"send", "delete"}] == [("delete", DLQ), ("send", QUEUE)]


def test_a_forced_redrive_the_event_queue_refuses_puts_the_message_back_with_its_reason(
    aws: dict[str, Any],
) -> None:
    sqs: FakeSqs = aws["sqs"]
    message = sqs.park("evt_1", age=10, group="cus_9", reason="status: missing")
    sqs.refusing.add(QUEUE)
    code, _, err = run(*TARGET, "dlq", "redrive", message, "--force")
    assert code != 0
    assert "refuses the message" in err
    assert sqs.queues[QUEUE] == []
    (back,) = sqs.queues[DLQ]
    assert json.loads(back["Body"])["id"] == "evt_1"
    assert back["Attributes"]["MessageGroupId"] == "cus_9"
    assert back["Attributes"]["MessageDeduplicationId"] == "evt_1"
    assert back["MessageAttributes"]["FailureReason"]["StringValue"] == "status: missing"


def test_redrive_all_moves_what_it_may_with_progress_on_stderr(aws: dict[str, Any]) -> None:
    sqs: FakeSqs = aws["sqs"]
    for number in range(12):
        sqs.park(f"evt_{number}")
    young = sqs.park("evt_young", age=DEDUPLICATION_WINDOW_SECONDS - 60)
    code, out, err = run(*TARGET, "--json", "dlq", "redrive", "--all")
    assert code == 0
    result = json.loads(out)
    assert len(result["redriven"]) == 12
    assert [r["message_id"] for r in result["refused"]] == [young]
    assert result["left_in_dlq"] == 1
    assert "12/13 redriven" in err
    assert sqs.visible(DLQ) == [young]
    assert sorted(json.loads(m["Body"])["id"] for m in sqs.queues[QUEUE]) == sorted(
        f"evt_{n}" for n in range(12)
    )


# -- customer show ------------------------------------------------------------------------------------


def entitlements_item(customer: str, features: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "pk": {"S": f"CUSTOMER#{customer}"},
        "sk": {"S": "ENTITLEMENTS"},
        "customer_id": {"S": customer},
        "livemode": {"BOOL": False},
        "features": {"M": {name: {"M": value} for name, value in features.items()}},
        "payment_issue": {"BOOL": True},
        "updated_at": {"N": "1795454662"},
        "version": {"N": "4"},
        "deleted": {"BOOL": False},
    }


@pytest.fixture
def stored_customer(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    aws["dynamodb"].items.update(
        {
            ("CUSTOMER#cus_1", "ENTITLEMENTS"): entitlements_item(
                "cus_1",
                {
                    "pro": {"source": {"S": "sub_1"}},
                    "old": {"source": {"S": "cs_1"}, "until": {"N": "1000"}},
                },
            ),
            ("USER#test#user_42", "CUSTOMER"): {"customer_id": {"S": "cus_1"}},
        }
    )
    records = [
        {
            "kind": "profile",
            "id": "cus_1",
            "stamp": {"created": 1795454000, "rank": 0, "event_id": "evt_c"},
            "record": {"id": "cus_1", "email": "jenny.rosen@example.com", "deleted": False},
        },
        {
            "kind": "subscription",
            "id": "sub_1",
            "stamp": {"created": 1795454600, "rank": 3, "event_id": "evt_s"},
            "record": {"id": "sub_1", "status": "past_due", "current_period_end": 1798000000},
        },
    ]
    monkeypatch.setattr(
        "ops.customers.stored_records", lambda table, customer, **_: records if customer == "cus_1" else []
    )
    return "cus_1"


def test_customer_show_prints_entitlements_and_records_without_personal_data(stored_customer: str) -> None:
    code, out, _ = run(*TARGET, "customer", "show", stored_customer)
    assert code == 0
    assert "entitlements (test mode, version 4, updated 2026-11-23 17:24:22 UTC):" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["pro", "no", "end", "sub_1", "granted"] in rows
    assert ["old", "1970-01-01", "00:16:40", "UTC", "cs_1", "ended"] in rows
    assert "payment issue: yes" in out
    assert rows[-1][:7] == ["subscription", "sub_1", "past_due,", "period", "ends", "2026-12-23", "evt_s"]
    assert "jenny" not in out


def test_customer_show_by_user_and_as_json(stored_customer: str) -> None:
    code, out, _ = run(*TARGET, "--json", "customer", "show", "--user", "user_42")
    assert code == 0
    shown = json.loads(out)
    assert shown["customer_id"] == "cus_1"
    assert shown["user_id"] == "user_42"
    assert shown["entitlements"]["active_features"] == ["pro"]
    assert shown["entitlements"]["features"]["old"] == {"until": 1000, "source": "cs_1", "active": False}
    assert [r["kind"] for r in shown["records"]] == ["profile", "subscription"]


def test_customer_show_of_unknown_users_and_customers_fails(stored_customer: str) -> None:
    code, _, err = run(*TARGET, "customer", "show", "--user", "user_42", "--live")
    assert code == 1
    assert "no live-mode customer for user 'user_42' (try without --live)" in err
    code, _, err = run(*TARGET, "customer", "show", "cus_other")
    assert code == 1
    assert "nothing about customer 'cus_other'" in err


# -- refetch ------------------------------------------------------------------------------------------


@pytest.fixture
def fake_stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        monkeypatch.setenv("STRIPE_API_KEY", "sk_test_fake")
        yield fake


def test_refetch_object_queues_a_synthetic_event_into_the_customers_group(
    aws: dict[str, Any], fake_stripe: FakeStripe
) -> None:
    obj = subscription("cus_9")
    fake_stripe.put_subscription(obj)
    before = int(time.time())
    code, out, _ = run(*TARGET, "--json", "refetch", "object", "subscription", obj["id"])
    assert code == 0, out
    queued = json.loads(out)
    (entry,) = aws["sqs"].batches[0]
    body = json.loads(entry["MessageBody"])
    assert body["type"] == "sync.fetched"
    assert body["fetched"] is True
    assert body["id"] == queued["event_id"]
    assert body["id"].startswith(f"sync_{obj['id']}_")
    assert body["created"] >= before
    assert body["data"]["object"] == obj
    assert entry["MessageGroupId"] == queued["group_id"] == "cus_9"
    assert entry["MessageDeduplicationId"] == body["id"]


def test_refetch_event_queues_the_event_as_stripe_sent_it(
    aws: dict[str, Any], fake_stripe: FakeStripe
) -> None:
    event = samples.event(
        samples.IdFactory("cli"), "customer.subscription.updated", subscription("cus_5"), created=1795000001
    )
    fake_stripe.put_event(event, delivered=False)
    code, out, _ = run(*TARGET, "refetch", "event", event["id"])
    assert code == 0
    assert out == f"queued {event['id']} (customer.subscription.updated) into group cus_5\n"
    (entry,) = aws["sqs"].batches[0]
    assert json.loads(entry["MessageBody"]) == event
    assert entry["MessageDeduplicationId"] == event["id"]


def test_refetch_of_what_stripe_does_not_have_fails_with_stripes_reason(
    aws: dict[str, Any], fake_stripe: FakeStripe
) -> None:
    code, _, err = run(*TARGET, "refetch", "object", "subscription", "sub_missing")
    assert code == 1
    assert "Stripe: " in err
    assert "No such subscription: 'sub_missing'" in err
    assert aws["sqs"].batches == []


def test_refetch_without_an_api_key_says_how_to_give_one(aws: dict[str, Any]) -> None:
    code, _, err = run(*TARGET, "refetch", "object", "subscription", "sub_1")
    assert code == 1
    assert "no Stripe API key: set STRIPE_API_KEY" in err


# -- reconcile ----------------------------------------------------------------------------------------


def report(**changes: Any) -> ReconcileReport:
    base = ReconcileReport(
        scope="cus_1",
        dry_run=True,
        counts=Counts(checked=3, missing=1),
        pages=1,
        stripe_requests=2,
        rate_limited=0,
        drifts=(Drift(DriftKind.MISSING, "subscription", "sub_9", "cus_1", False),),
        messages=(),
        complete=True,
    )
    return dataclasses.replace(base, **changes)


class StubReconciler:
    """Stands in for the reconciler's entry point: records how the CLI calls it, answers `answer`."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer = report()

    def __call__(self, target: Target, env: Any, **kwargs: Any) -> ReconcileReport:
        self.calls.append({"target": target, **kwargs})
        return self.answer


@pytest.fixture
def reconciler(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> StubReconciler:
    stub = StubReconciler()
    monkeypatch.setattr("ops.reconcile.run_reconcile", stub)
    return stub


def test_reconcile_passes_the_scope_and_prints_the_report(reconciler: StubReconciler) -> None:
    code, out, _ = run(*TARGET, "reconcile", "--customer", "cus_1", "--dry-run", "--time-budget", "60")
    assert code == 0
    (call,) = reconciler.calls
    assert (call["customer"], call["dry_run"], call["time_budget_seconds"]) == ("cus_1", True, 60)
    assert call["target"].table_name == TABLE
    assert out.splitlines() == [
        "reconcile customer cus_1 (dry run): complete",
        "  checked 3, drift 1 (missing 1, stale 0, extra 0), repaired 0, not found 0, skipped 0, errors 0",
        "  1 page(s), 2 Stripe request(s), 0 rate-limited",
        "  missing: subscription sub_9 (customer cus_1)",
    ]


def test_a_reconcile_that_stopped_on_an_error_exits_1(reconciler: StubReconciler) -> None:
    reconciler.answer = report(
        counts=Counts(checked=3, errors=1), complete=False, stopped="Stripe: 500", messages=("sub_2: 500",)
    )
    code, out, err = run(*TARGET, "--json", "reconcile")
    assert code == 1
    assert json.loads(out)["messages"] == ["sub_2: 500"]
    assert "reconcile stopped: Stripe: 500" in err
    reconciler.answer = report(complete=False, stopped="time budget")
    assert run(*TARGET, "reconcile")[0] == 0  # the next run resumes: not a failure


def test_reconcile_without_an_api_key_fails_clearly(aws: dict[str, Any]) -> None:
    code, _, err = run(*TARGET, "reconcile", "--dry-run")
    assert code == 1
    assert "no STRIPE_API_KEY configured" in err


# -- backfill -----------------------------------------------------------------------------------------


@pytest.fixture
def backfiller(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> StubReconciler:
    stub = StubReconciler()
    stub.answer = report(scope="backfill", dry_run=False)
    monkeypatch.setattr("ops.backfill.run_backfill", stub)
    return stub


def test_backfill_passes_its_options_and_prints_the_report(backfiller: StubReconciler) -> None:
    code, out, _ = run(*TARGET, "backfill", "--since", "2024-01-31", "--dry-run", "--time-budget", "60")
    assert code == 0
    (call,) = backfiller.calls
    assert (call["since"], call["dry_run"], call["time_budget_seconds"]) == (1706659200, True, 60)
    assert out.splitlines()[0] == "reconcile backfill of the account: complete"


def test_backfill_refuses_a_bad_date_and_fails_when_it_could_not_finish(
    backfiller: StubReconciler, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(*TARGET, "backfill", "--since", "yesterday")[0] == 2
    assert "since must be a date such as 2024-01-31" in capsys.readouterr().err
    backfiller.answer = report(scope="backfill", complete=False, stopped="RateLimitPersisted: 429")
    code, _, err = run(*TARGET, "backfill")
    assert code == 1
    assert "backfill stopped: RateLimitPersisted: 429; run it again to resume" in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_backfill_runs_until_done_with_a_progress_bar_and_totals_every_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from domain.reconcile import Backfill
    from ops.backfill import run_backfill

    answers = [
        report(
            scope="backfill",
            counts=Counts(checked=100, missing=5, repaired=5),
            complete=False,
            stopped="time budget",
        ),
        report(scope="backfill", counts=Counts(checked=30, missing=1, repaired=1), complete=True),
    ]
    calls: list[Any] = []

    def reconcile(
        settings: Any, scope: Any, dry_run: bool, progress: Any, *, time_budget_seconds: float | None
    ) -> ReconcileReport:
        calls.append((scope, dry_run, time_budget_seconds))
        # The target's names reach the reconciler as settings, not through the process's environment.
        assert (settings.table_name, settings.queue_url, settings.stripe.secret_id) == (TABLE, QUEUE, "sec")
        answer = answers.pop(0)
        progress(
            dataclasses.replace(answer, phase="sessions:test", phases_done=1 + len(calls), phase_count=6)
        )
        return answer

    monkeypatch.setattr("adapters.reconciler.reconcile", reconcile)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    for name in ("TABLE_NAME", "QUEUE_URL", "STRIPE_SECRET_ID"):
        monkeypatch.delenv(name, raising=False)
    stream = Terminal()
    target = Target(None, None, TABLE, QUEUE, DLQ, "sec")
    total = run_backfill(
        target, {}, since=None, dry_run=False, time_budget_seconds=30, progress_stream=stream
    )
    assert calls == [(Backfill(None), False, 30), (Backfill(None), False, 30)]
    assert not {"TABLE_NAME", "QUEUE_URL", "STRIPE_SECRET_ID"} & set(os.environ)
    assert total.complete
    assert (total.counts.checked, total.counts.repaired) == (130, 6)
    drawn = stream.getvalue()
    assert "[" + "#" * 10 + "." * 20 + "] 2/6 phases (sessions:test): 100 checked, 5 missing" in drawn
    assert "3/6 phases (sessions:test): 130 checked, 6 missing, 0 stale, 6 queued" in drawn
    assert drawn.endswith("\n")


# -- progress -----------------------------------------------------------------------------------------


def test_progress_writes_a_line_per_tenth_when_not_on_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(20, "done", stream)
    for _ in range(20):
        progress.advance()
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11  # the first step, then every tenth
    assert lines[0] == "[#" + "." * 29 + "] 1/20 done"
    assert lines[-1] == "[" + "#" * 30 + "] 20/20 done"


def test_progress_redraws_one_line_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(None, "checked", stream)
    progress.update(5, "checked, page 1")
    progress.update(9, "checked, page 2")
    progress.finish()
    assert stream.getvalue() == "\r5 checked, page 1\r9 checked, page 2\n"


def test_customer_show_by_user_shows_the_users_access_across_customers(
    stored_customer: str, aws: dict[str, Any]
) -> None:
    aws["dynamodb"].items[("USER#test#user_42", "ENTITLEMENTS")] = {
        "user_id": {"S": "user_42"},
        "customer_ids": {"L": [{"S": "cus_1"}]},
        "livemode": {"BOOL": False},
        "features": {"M": {"pro": {"M": {"source": {"S": "sub_1"}}}}},
        "payment_issue": {"BOOL": True},
        "updated_at": {"N": "1795454662"},
        "version": {"N": "2"},
        "deleted": {"BOOL": False},
        "parts": {"S": "{}"},  # internal: not projected, not shown
    }
    code, out, _ = run(*TARGET, "--json", "customer", "show", "--user", "user_42")
    assert code == 0
    shown = json.loads(out)
    assert shown["user_entitlements"]["customer_ids"] == ["cus_1"]
    assert shown["user_entitlements"]["active_features"] == ["pro"]
    assert "parts" not in shown["user_entitlements"]
    assert [c["customer_id"] for c in shown["customers"]] == ["cus_1"]
    code, text, _ = run(*TARGET, "customer", "show", "--user", "user_42")
    assert code == 0
    assert "user user_42 (test mode, version 2" in text
    assert "everything any of 1 customer(s) grants: cus_1" in text
    assert "customer cus_1" in text


def test_a_local_target_reaches_the_reconciler_as_settings_not_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adapters.settings import TableSettings
    from ops.targets import target_settings

    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    before = dict(os.environ)
    access = aws_access(TargetOptions(local=True), {"AWS_PORT": "5123"})
    # As resolve_target builds it for --local (whose names come from the running local runtime).
    target = Target(access.endpoint_url, access.region, TABLE, QUEUE, DLQ, None, True, access.credentials)
    settings = target_settings(target, {"RECONCILE_DRY_RUN": "true"}, dry_run=False)
    assert settings.table == TableSettings(TABLE, "us-east-1", "http://127.0.0.1:5123", ("local", "local"))
    assert (settings.queue_url, settings.options.dry_run) == (QUEUE, True)
    assert settings.sqs_client is not None
    sqs = settings.sqs_client()
    assert (sqs.meta.endpoint_url, sqs.meta.region_name) == ("http://127.0.0.1:5123", "us-east-1")
    assert sqs._request_signer._credentials.access_key == "local"
    assert dict(os.environ) == before
