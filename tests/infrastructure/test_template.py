"""The deployable infrastructure: the rules in template.yaml, samconfig.toml and events/ that matter.

Each test states one rule from ARCHITECTURE.md (or AWS's documented limits) and fails if the template
breaks it. The template is read with the local runtime's loader (tests/support/sam_template.py), which
turns CloudFormation's short tags (!Ref, !GetAtt, !Sub, ...) into their long form, so assertions see
what CloudFormation sees.
"""

from __future__ import annotations

import ast
import base64
import fnmatch
import hashlib
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

from domain.retry_schedule import REPEATED_FAILURE_RECEIVES, retry_delay, total_retry_seconds
from tests.support.sam_template import GLOBAL_FUNCTION, RESOURCES, TEMPLATE, function_setting, props

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
SAMPLE_SECRET = "whsec_local_sample_secret"

FUNCTIONS = (
    "WebhookFunction",
    "WorkerFunction",
    "ReconcileFunction",
    "EntitlementsChangedFunction",
    "StripeEventBridgeFunction",
)
SECRET_READ = ("secretsmanager:GetSecretValue", {"Ref": "StripeSecret"})
EVENT_QUEUE = {"Fn::GetAtt": ["EventQueue", "Arn"]}
TABLE = {"Fn::GetAtt": ["SyncTable", "Arn"]}
RECORDS_TO_CHECK = {"Fn::Sub": "${SyncTable.Arn}/index/records-to-check"}
# Every metric of the stack's own carries its stage and stack: two stacks in one account stay apart.
NAMESPACE = {"Fn::Sub": "StripeSync/${Stage}/${AWS::StackName}"}


def function_env(function: str) -> dict[str, Any]:
    """Environment variables after SAM merges Globals into the function."""
    merged = dict(GLOBAL_FUNCTION.get("Environment", {}).get("Variables", {}))
    merged.update(props(function).get("Environment", {}).get("Variables", {}))
    return merged


def resolve(value: Any, parameters: dict[str, str]) -> Any:
    """Evaluates Ref (to parameters), Fn::Equals, Fn::Not and Fn::If against given parameters."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, argument),) = value.items()
        if key == "Ref" and argument in TEMPLATE["Parameters"]:
            return parameters.get(argument, TEMPLATE["Parameters"][argument].get("Default"))
        if key == "Condition":
            return resolve(TEMPLATE["Conditions"][argument], parameters)
        if key == "Fn::Equals":
            return resolve(argument[0], parameters) == resolve(argument[1], parameters)
        if key == "Fn::Not":
            return not resolve(argument[0], parameters)
        if key == "Fn::Or":
            return any(resolve(a, parameters) for a in argument)
        if key == "Fn::And":
            return all(resolve(a, parameters) for a in argument)
        if key == "Fn::If":
            condition, when_true, when_false = argument
            chosen = when_true if resolve(TEMPLATE["Conditions"][condition], parameters) else when_false
            return resolve(chosen, parameters)
    return value


def resources_of_type(resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in RESOURCES.items() if body["Type"] == resource_type}


# ---------------------------------------------------------------- IAM of the functions

# SAM policy templates the template may use, with what they grant (samtranslator's
# policy_templates.json). Anything else (a managed policy, another template) is unreviewed.
POLICY_TEMPLATES = {
    "AWSSecretsManagerGetSecretValuePolicy": lambda args: [
        ("secretsmanager:GetSecretValue", args["SecretArn"], None)
    ],
    "SQSSendMessagePolicy": lambda args: [
        ("sqs:SendMessage", {"Fn::GetAtt": [args["QueueName"]["Fn::GetAtt"][0], "Arn"]}, None),
        ("sqs:SendMessageBatch", {"Fn::GetAtt": [args["QueueName"]["Fn::GetAtt"][0], "Arn"]}, None),
    ],
}


def granted(function: str) -> list[tuple[str, Any, Any]]:
    """(action, resource, condition) for every permission the function's Policies grant."""
    grants: list[tuple[str, Any, Any]] = []
    for policy in props(function).get("Policies", []):
        assert isinstance(policy, dict), f"{function}: managed policy {policy!r} is not reviewed here"
        if "Statement" in policy:
            for statement in policy["Statement"]:
                assert statement["Effect"] == "Allow"
                actions = statement["Action"]
                resources = statement["Resource"]
                for action in [actions] if isinstance(actions, str) else actions:
                    for resource in resources if isinstance(resources, list) else [resources]:
                        grants.append((action, resource, statement.get("Condition")))
            continue
        ((template, arguments),) = policy.items()
        assert template in POLICY_TEMPLATES, f"{function}: policy template {template} is not reviewed here"
        grants.extend(POLICY_TEMPLATES[template](arguments))
    return grants


def actions_on(function: str, resource: Any) -> set[str]:
    return {action for action, target, _ in granted(function) if target == resource}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_use_the_role_sam_generates_from_their_policies(function: str) -> None:
    assert "Role" not in props(function)
    assert "Role" not in GLOBAL_FUNCTION


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_wildcard_action_or_resource(function: str) -> None:
    for action, resource, _ in granted(function):
        assert "*" not in action, action
        assert resource != "*", action


def test_webhook_may_only_queue_and_read_the_secret() -> None:
    assert sorted((action, resource) for action, resource, _ in granted("WebhookFunction")) == sorted(
        [("sqs:SendMessage", EVENT_QUEUE), SECRET_READ]
    )


def test_webhook_has_no_dynamodb_access() -> None:
    assert not [action for action, _, _ in granted("WebhookFunction") if action.startswith("dynamodb:")]


def test_worker_table_access_is_the_item_actions_it_uses() -> None:
    # TransactWriteItems is authorised per item action, so it is not (and cannot be) listed.
    assert actions_on("WorkerFunction", TABLE) == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
    }


def test_worker_grants_nothing_beyond_the_table_the_secret_and_its_failed_messages() -> None:
    # Receiving from the queue comes with the SQS event source (SAM attaches the execution role); a
    # failed message's short retry and the parking of an unfixable one are the worker's own.
    assert {(action, json.dumps(resource)) for action, resource, _ in granted("WorkerFunction")} - {
        (action, json.dumps(TABLE)) for action in actions_on("WorkerFunction", TABLE)
    } == {
        (SECRET_READ[0], json.dumps(SECRET_READ[1])),
        ("sqs:ChangeMessageVisibility", json.dumps({"Fn::GetAtt": ["EventQueue", "Arn"]})),
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})),
    }


def test_reconciler_writes_only_its_cursor_item_and_the_mark_of_records_to_check() -> None:
    writes = [
        (action, condition)
        for action, resource, condition in granted("ReconcileFunction")
        if resource == TABLE
        and action.split(":")[1] in ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")
    ]
    assert writes
    for action, condition in writes:
        if action == "dynamodb:UpdateItem":
            # Only `drift_check` (conditional on the stamp read), on a table written before the index.
            assert condition == {
                "ForAllValues:StringEquals": {
                    "dynamodb:Attributes": ["pk", "sk", "drift_check", "stamp_event"]
                },
                "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"},
            }
            continue
        assert condition == {
            "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["RECONCILE", "RECONCILE#*"]}
        }, action


def test_reconciler_reads_the_table_queues_repairs_and_reads_the_secret() -> None:
    unconditional = {
        (action, json.dumps(resource))
        for action, resource, condition in granted("ReconcileFunction")
        if condition is None
    }
    assert unconditional == {
        ("dynamodb:GetItem", json.dumps(TABLE)),
        ("dynamodb:BatchGetItem", json.dumps(TABLE)),
        ("dynamodb:Query", json.dumps(TABLE)),
        ("dynamodb:Scan", json.dumps(TABLE)),
        *(
            (f"dynamodb:{action}", json.dumps(RECORDS_TO_CHECK))
            for action in ("GetItem", "BatchGetItem", "Query", "Scan")
        ),
        ("sqs:SendMessage", json.dumps(EVENT_QUEUE)),
        ("sqs:SendMessageBatch", json.dumps(EVENT_QUEUE)),
        (SECRET_READ[0], json.dumps(SECRET_READ[1])),
    }


def test_entitlements_reader_policy_allows_only_getitem_on_the_table() -> None:
    statements = props("EntitlementsReaderPolicy")["PolicyDocument"]["Statement"]
    assert [(s["Effect"], s["Action"], s["Resource"]) for s in statements] == [
        ("Allow", "dynamodb:GetItem", TABLE)
    ]


def reader_policy_allows(pk: str, attributes: list[str] | None) -> bool:
    """IAM's verdict on a GetItem of `pk` projecting `attributes` (None: no ProjectionExpression),
    evaluated from the policy's Condition block as IAM evaluates these operators."""
    [statement] = props("EntitlementsReaderPolicy")["PolicyDocument"]["Statement"]
    context: dict[str, list[str]] = {"dynamodb:LeadingKeys": [pk]}
    if attributes is not None:
        context["dynamodb:Attributes"] = attributes
    for operator, keys in statement["Condition"].items():
        for key, expected in keys.items():
            allowed = expected if isinstance(expected, list) else [expected]
            values = context.get(key)
            if operator == "ForAllValues:StringLike":
                ok = all(any(fnmatch.fnmatchcase(v, pattern) for pattern in allowed) for v in values or [])
            elif operator == "ForAllValues:StringEquals":
                ok = all(v in allowed for v in values or [])
            elif operator == "StringEqualsIfExists":
                ok = values is None or all(v in allowed for v in values)
            elif operator == "Null":
                ok = (values is None) == (allowed == ["true"])
            else:
                raise AssertionError(f"operator {operator} is not evaluated here")
            if not ok:
                return False
    return True


def test_reader_policy_allows_the_reads_of_the_reader_library() -> None:
    from entitlements_reader import ENTITLEMENTS_ATTRIBUTES, LOOKUP_ATTRIBUTES, USER_ENTITLEMENTS_ATTRIBUTES

    assert reader_policy_allows("CUSTOMER#cus_1", list(ENTITLEMENTS_ATTRIBUTES))
    assert reader_policy_allows("USER#live#user-42", list(LOOKUP_ATTRIBUTES))
    assert reader_policy_allows("USER#live#user-42", list(USER_ENTITLEMENTS_ATTRIBUTES))
    # The user item's internal attributes (each customer's part) stay out of reach.
    assert not reader_policy_allows("USER#live#user-42", [*USER_ENTITLEMENTS_ATTRIBUTES, "parts"])


@pytest.mark.parametrize(
    ("pk", "attributes"),
    [
        ("CUSTOMER#cus_1", None),  # a whole item: a record's body holds emails and addresses
        ("CUSTOMER#cus_1", ["customer_id", "body"]),
        ("CUSTOMER#cus_1", ["stamp_event"]),
        ("EVENT#evt_1", ["customer_id"]),
        ("PAYMENT#pi_1", ["customer_id"]),
        ("GUEST#cs_1", ["customer_id"]),
        ("UNMATCHED#pi_1", ["customer_id"]),
        ("RECONCILE", ["customer_id"]),
    ],
)
def test_reader_policy_refuses_records_whole_items_and_other_partitions(
    pk: str, attributes: list[str] | None
) -> None:
    assert not reader_policy_allows(pk, attributes)


def test_reader_policy_allows_no_attribute_a_record_keeps_personal_data_in() -> None:
    [statement] = props("EntitlementsReaderPolicy")["PolicyDocument"]["Statement"]
    allowed = set(statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"])
    assert "body" not in allowed
    assert statement["Condition"]["StringEqualsIfExists"]["dynamodb:Select"] == "SPECIFIC_ATTRIBUTES"


# ---------------------------------------------------------------- queues


def test_event_queue_is_fifo_deduplicated_by_id_with_high_throughput() -> None:
    queue = props("EventQueue")
    assert queue["FifoQueue"] is True
    assert queue["ContentBasedDeduplication"] is False
    assert queue["DeduplicationScope"] == "messageGroup"
    assert queue["FifoThroughputLimit"] == "perMessageGroupId"


def test_dead_letter_queue_is_fifo() -> None:
    # A FIFO queue's dead-letter queue must be FIFO as well.
    assert props("DeadLetterQueue")["FifoQueue"] is True


def test_visibility_timeout_is_at_least_six_worker_timeouts() -> None:
    assert props("EventQueue")["VisibilityTimeout"] >= 6 * function_setting("WorkerFunction", "Timeout")


def test_failed_messages_go_to_the_dlq_after_retries_that_outlast_a_short_outage() -> None:
    redrive = props("EventQueue")["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] >= 5
    # With retries seconds apart (domain.retry_schedule), enough tries to span half an hour.
    assert total_retry_seconds(redrive["maxReceiveCount"]) >= 1800


def test_queue_keeps_messages_four_days() -> None:
    assert props("EventQueue")["MessageRetentionPeriod"] == 4 * 86_400


def test_dlq_keeps_messages_longer_than_the_queue() -> None:
    # A message keeps its first enqueue time in the DLQ: a shorter retention would drop it at once.
    assert props("DeadLetterQueue")["MessageRetentionPeriod"] == 14 * 86_400
    assert props("DeadLetterQueue")["MessageRetentionPeriod"] > props("EventQueue")["MessageRetentionPeriod"]


def test_dlq_allows_redrive_from_the_event_queue_only() -> None:
    allow = props("DeadLetterQueue")["RedriveAllowPolicy"]
    assert allow["redrivePermission"] == "byQueue"
    queue_name = props("EventQueue")["QueueName"]["Fn::Sub"]
    assert allow["sourceQueueArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + queue_name}
    ]


@pytest.mark.parametrize("queue", ["EventQueue", "DeadLetterQueue"])
def test_queue_is_encrypted_at_rest(queue: str) -> None:
    assert props(queue).get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props(queue)


# ---------------------------------------------------------------- table


def test_table_keys_and_billing_follow_the_contract() -> None:
    table = props("SyncTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]} == {
        "pk": "S",
        "sk": "S",
        "drift_check": "S",
    }
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}


def test_the_records_to_check_index_projects_only_what_never_changes_after_a_write() -> None:
    # A projected attribute that a later write changes would write the index again at that write.
    [index] = props("SyncTable")["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "records-to-check"
    assert index["KeySchema"] == [{"AttributeName": "drift_check", "KeyType": "HASH"}]
    assert index["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["item_type", "kind", "livemode", "account"],
    }
    assert "ProvisionedThroughput" not in index  # on demand, as the table


def test_table_is_encrypted_at_rest() -> None:
    assert props("SyncTable")["SSESpecification"]["SSEEnabled"] is True


def test_table_has_point_in_time_recovery() -> None:
    assert props("SyncTable")["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


@pytest.mark.parametrize(("stage", "protected"), [("prod", True), ("dev", False)])
def test_table_deletion_protection_in_prod_only(stage: str, protected: bool) -> None:
    assert resolve(props("SyncTable")["DeletionProtectionEnabled"], {"Stage": stage}) is protected


def test_table_is_retained_on_stack_delete_and_replacement() -> None:
    # Except by the rollback of the deploy that created it (test_table_is_generated_named_...).
    assert RESOURCES["SyncTable"]["DeletionPolicy"] == "RetainExceptOnCreate"
    assert RESOURCES["SyncTable"]["UpdateReplacePolicy"] == "Retain"


def test_table_expires_items_by_expires_at() -> None:
    assert props("SyncTable")["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_the_worker_has_no_ledger_setting_it_writes_no_ledger() -> None:
    # A record's stamp tells a duplicate for ever; EVENT_LEDGER_DAYS went with the ledger.
    assert "EVENT_LEDGER_DAYS" not in function_env("WorkerFunction")


# ---------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("function", "handler"),
    [
        ("WebhookFunction", "handlers.webhook.lambda_handler"),
        ("WorkerFunction", "handlers.worker.lambda_handler"),
        ("ReconcileFunction", "handlers.reconcile.lambda_handler"),
    ],
)
def test_function_handler_code_and_runtime(function: str, handler: str) -> None:
    assert props(function)["Handler"] == handler
    assert function_setting(function, "CodeUri") == "src/"
    # Built by src/Makefile (only what the function imports, compiled), not by SAM's pip builder.
    assert RESOURCES[function]["Metadata"]["BuildMethod"] == "makefile"
    assert f"build-{function}" in (ROOT / "src" / "Makefile").read_text()
    assert function_setting(function, "Runtime") == "python3.13"
    assert function_setting(function, "Architectures") == ["arm64"]


def test_worker_event_source_reports_partial_batch_failures_within_fifo_limits() -> None:
    sources = [e["Properties"] for e in props("WorkerFunction")["Events"].values() if e["Type"] == "SQS"]
    assert len(sources) == 1
    source = sources[0]
    assert source["Queue"] == EVENT_QUEUE
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 <= source["BatchSize"] <= 10
    assert "MaximumBatchingWindowInSeconds" not in source
    assert source["ScalingConfig"]["MaximumConcurrency"] >= 2


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_function_reserves_concurrency_by_default(function: str) -> None:
    """A new account's quota is 10 with 10 kept unreserved: any fixed reservation fails CreateFunction."""
    reservation = props(function).get("ReservedConcurrentExecutions")
    if function != "ReconcileFunction":
        assert reservation is None
        return
    assert reservation == {
        "Fn::If": [
            "HasReconcileReservation",
            {"Ref": "ReconcileReservedConcurrency"},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert TEMPLATE["Parameters"]["ReconcileReservedConcurrency"]["Default"] == 0
    assert resolve({"Condition": "HasReconcileReservation"}, {}) is False
    assert resolve({"Condition": "HasReconcileReservation"}, {"ReconcileReservedConcurrency": 1}) is True


def test_reconciler_runs_on_the_schedule() -> None:
    reconcile = props("ReconcileFunction")
    schedules = [
        e["Properties"] for e in reconcile["Events"].values() if e["Type"] in ("Schedule", "ScheduleV2")
    ]
    assert [s.get("Schedule", s.get("ScheduleExpression")) for s in schedules] == [
        {"Ref": "ReconcileSchedule"}
    ]


def test_reconciler_time_budget_leaves_room_before_the_timeout() -> None:
    budget = int(function_env("ReconcileFunction")["RECONCILE_TIME_BUDGET_SECONDS"])
    assert 0 < budget < function_setting("ReconcileFunction", "Timeout")


def test_the_webhooks_aws_budget_leaves_room_inside_its_timeout() -> None:
    from handlers import webhook

    timeout = function_setting("WebhookFunction", "Timeout")
    assert timeout >= webhook.AWS_BUDGET_SECONDS + webhook.AWS_BUDGET_MARGIN_SECONDS


def test_reconciler_runs_are_not_retried_on_top_of_the_schedule() -> None:
    assert props("ReconcileFunction")["EventInvokeConfig"]["MaximumRetryAttempts"] == 0


@pytest.mark.parametrize(
    ("function", "variables"),
    [
        ("WebhookFunction", {"QUEUE_URL": {"Ref": "EventQueue"}, "SIGNATURE_TOLERANCE_SECONDS": "300"}),
        ("WorkerFunction", {"TABLE_NAME": {"Ref": "SyncTable"}}),
        ("ReconcileFunction", {"TABLE_NAME": {"Ref": "SyncTable"}, "QUEUE_URL": {"Ref": "EventQueue"}}),
    ],
)
def test_function_environment_follows_the_contract(function: str, variables: dict[str, Any]) -> None:
    env = function_env(function)
    assert env["STRIPE_SECRET_ID"] == {"Ref": "StripeSecret"}
    assert {name: env.get(name) for name in variables} == variables


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_has_powertools_settings(function: str) -> None:
    env = function_env(function)
    assert env["POWERTOOLS_SERVICE_NAME"]
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == NAMESPACE
    assert env["LOG_LEVEL"] in ("DEBUG", "INFO", "WARNING", "ERROR")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_logs_to_its_own_log_group_with_retention(function: str) -> None:
    log_group = function_setting(function, "LoggingConfig")["LogGroup"]["Ref"]
    assert RESOURCES[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert props(log_group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    others = [f for f in FUNCTIONS if f != function]
    assert all(function_setting(f, "LoggingConfig")["LogGroup"]["Ref"] != log_group for f in others)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_tracing_is_a_parameter_off_by_default(function: str) -> None:
    """X-Ray bills per trace: on only when asked for (README, Operate, states its cost)."""
    assert function_setting(function, "Tracing") == {"Ref": "Tracing"}
    parameter = TEMPLATE["Parameters"]["Tracing"]
    assert parameter["Default"] == "Disabled"
    assert set(parameter["AllowedValues"]) == {"Disabled", "Active", "PassThrough"}


# ---------------------------------------------------------------- secrets


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_environment_variable_resolves_a_secret(function: str) -> None:
    # {{resolve:secretsmanager:...}} would show the secret in plain text in the console.
    for text in _strings(function_env(function)):
        assert "{{resolve:" not in text


def test_template_resolves_no_dynamic_secret_reference_anywhere() -> None:
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    assert "{{resolve:secretsmanager" not in text
    assert "{{resolve:ssm-secure" not in text


@pytest.mark.parametrize("function", FUNCTIONS)
def test_credential_variables_stay_empty_in_aws(function: str) -> None:
    # Declared only for `sam local invoke --env-vars`; in AWS the secret named by STRIPE_SECRET_ID holds them.
    env = function_env(function)
    for name in ("STRIPE_WEBHOOK_SECRET", "STRIPE_API_KEY"):
        assert env.get(name, "") == "", name


def test_stripe_secret_starts_as_an_empty_placeholder() -> None:
    document = json.loads(props("StripeSecret")["SecretString"])
    assert document == {"STRIPE_WEBHOOK_SECRET": "", "STRIPE_API_KEY": ""}


# ---------------------------------------------------------------- API


def test_webhook_route_is_post_webhooks_stripe_with_payload_v2() -> None:
    routes = [e["Properties"] for e in props("WebhookFunction")["Events"].values() if e["Type"] == "HttpApi"]
    assert routes == [
        {
            "ApiId": {"Ref": "HttpApi"},
            "Method": "POST",
            "Path": "/webhooks/stripe",
            "PayloadFormatVersion": "2.0",
        }
    ]
    assert RESOURCES["HttpApi"]["Type"] == "AWS::Serverless::HttpApi"


def test_http_api_throttles_every_route() -> None:
    settings = props("HttpApi")["DefaultRouteSettings"]
    assert settings["ThrottlingBurstLimit"] > 0
    assert settings["ThrottlingRateLimit"] > 0


# ---------------------------------------------------------------- alarms


def alarms_on(namespace: str, metric: str, dimension: Any) -> list[dict[str, Any]]:
    return [
        body["Properties"]
        for body in resources_of_type("AWS::CloudWatch::Alarm").values()
        if body["Properties"].get("Namespace") == namespace
        and body["Properties"].get("MetricName") == metric
        and dimension in [d["Value"] for d in body["Properties"]["Dimensions"]]
    ]


def test_alarm_on_any_message_in_the_dlq() -> None:
    (alarm,) = alarms_on(
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    )
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_alarm_on_message_age_only_beyond_normal_retries() -> None:
    (alarm,) = alarms_on(
        "AWS/SQS", "ApproximateAgeOfOldestMessage", {"Fn::GetAtt": ["EventQueue", "QueueName"]}
    )
    queue = props("EventQueue")
    # Every try's delay, the last one's included (then SQS moves it on its next receive).
    retrying_for = total_retry_seconds(queue["RedrivePolicy"]["maxReceiveCount"] + 1)
    assert retry_delay(queue["RedrivePolicy"]["maxReceiveCount"]) <= queue["VisibilityTimeout"]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert retrying_for < alarm["Threshold"] < queue["MessageRetentionPeriod"]
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_alarm_on_worker_errors() -> None:
    (alarm,) = alarms_on("AWS/Lambda", "Errors", {"Ref": "WorkerFunction"})
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use() -> None:
    # The AWS managed alias/aws/sns key cannot grant CloudWatch: alarms would never arrive.
    key_ref = props("AlarmTopic")["KmsMasterKeyId"]
    assert key_ref != "alias/aws/sns"
    key = RESOURCES[key_ref["Ref"]]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    cloudwatch = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert [set(s["Action"]) for s in cloudwatch] == [{"kms:Decrypt", "kms:GenerateDataKey*"}]


@pytest.mark.parametrize(("email", "subscribed"), [("", False), ("ops@example.com", True)])
def test_alarm_email_is_subscribed_only_when_given(email: str, subscribed: bool) -> None:
    (subscription,) = resources_of_type("AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert resolve({"Condition": subscription["Condition"]}, {"AlarmEmail": email}) is subscribed


# ---------------------------------------------------------------- parameters and outputs


def test_parameters() -> None:
    parameters = TEMPLATE["Parameters"]
    assert parameters["Stage"]["AllowedValues"] == ["dev", "prod"]
    assert parameters["AlarmEmail"]["Default"] == ""
    assert parameters["ReconcileSchedule"]["Default"] == "rate(1 hour)"
    assert parameters["LogRetentionDays"]["Type"] == "Number"
    assert parameters["ReconcilePassMaxAgeHours"]["Default"] == 24
    assert resolve({"Condition": "IsProd"}, {"Stage": "prod"}) is True
    assert resolve({"Condition": "IsProd"}, {"Stage": "dev"}) is False


def test_outputs_name_what_operators_and_readers_need() -> None:
    outputs = TEMPLATE["Outputs"]
    assert {
        "WebhookUrl",
        "TableName",
        "EventQueueUrl",
        "DeadLetterQueueUrl",
        "StripeSecretArn",
        "EntitlementsReaderPolicyArn",
    } <= set(outputs)
    assert outputs["WebhookUrl"]["Value"]["Fn::Sub"].endswith("/webhooks/stripe")
    assert outputs["TableName"]["Value"] == {"Ref": "SyncTable"}
    assert outputs["EventQueueUrl"]["Value"] == {"Ref": "EventQueue"}
    assert outputs["DeadLetterQueueUrl"]["Value"] == {"Ref": "DeadLetterQueue"}
    assert outputs["StripeSecretArn"]["Value"] == {"Ref": "StripeSecret"}
    assert outputs["EntitlementsReaderPolicyArn"]["Value"] == {"Ref": "EntitlementsReaderPolicy"}


# ---------------------------------------------------------------- samconfig.toml


def samconfig() -> dict[str, Any]:
    with (ROOT / "samconfig.toml").open("rb") as file:
        return tomllib.load(file)


@pytest.mark.parametrize(("environment", "stage"), [("default", "dev"), ("dev", "dev"), ("prod", "prod")])
def test_samconfig_environment_deploys_its_stage(environment: str, stage: str) -> None:
    config = samconfig()[environment]
    deploy = config["deploy"]["parameters"]
    assert config["global"]["parameters"]["stack_name"] == f"stripe-sync-{stage}"
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert f"Stage={stage}" in deploy["parameter_overrides"].split()
    assert deploy["confirm_changeset"] is (stage == "prod")


def test_samconfig_default_is_dev() -> None:
    config = samconfig()
    assert config["default"]["deploy"] == config["dev"]["deploy"]
    assert config["default"]["global"] == config["dev"]["global"]


# ---------------------------------------------------------------- sample events


def read_event(name: str) -> dict[str, Any]:
    document = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_sample_events_are_what_generate_py_writes(tmp_path: Path) -> None:
    from events import generate

    signature = read_event("webhook_apigw_v2.json")["headers"]["stripe-signature"]
    signed_at = int(signature.split(",")[0].removeprefix("t="))
    generate.main(["--timestamp", str(signed_at), "--out", str(tmp_path)])
    for written in sorted(tmp_path.iterdir()):
        assert written.read_text(encoding="utf-8") == (EVENTS / written.name).read_text(encoding="utf-8"), (
            written.name
        )


def test_sample_events_carry_the_signup_scenario_at_the_current_api_version() -> None:
    from events import scenarios
    from events.stripe.objects import CURRENT_API_VERSION

    by_type = {event["type"]: event for event in scenarios.build("signup_paid").events}
    webhook = read_event("webhook_apigw_v2.json")
    assert webhook["body"].encode() == scenarios.render(by_type["customer.subscription.created"])
    bodies = [record["body"].encode() for record in read_event("worker_sqs_batch.json")["Records"]]
    assert bodies == [
        scenarios.render(by_type["customer.subscription.created"]),
        scenarios.render(by_type["invoice.paid"]),
    ]
    assert {json.loads(body)["api_version"] for body in [*bodies, webhook["body"].encode()]} == {
        CURRENT_API_VERSION
    }


@pytest.mark.parametrize("name", ["webhook_apigw_v2.json", "webhook_apigw_v2_base64.json"])
def test_webhook_event_is_signed_with_the_sample_secret(name: str) -> None:
    event = read_event(name)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /webhooks/stripe"
    body: str = event["body"]
    raw = base64.b64decode(body) if event["isBase64Encoded"] else body.encode()
    # tolerance=None: the committed event is older than 300 s; only the signature is checked here.
    assert stripe.WebhookSignature.verify_header(raw, event["headers"]["stripe-signature"], SAMPLE_SECRET)
    assert json.loads(raw)["object"] == "event"
    assert event["headers"]["content-length"] == str(len(raw))


def test_webhook_event_fails_with_another_secret() -> None:
    event = read_event("webhook_apigw_v2.json")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(
            event["body"], event["headers"]["stripe-signature"], "whsec_some_other_secret"
        )


def test_worker_batch_records_follow_the_queue_contract() -> None:
    records = read_event("worker_sqs_batch.json")["Records"]
    assert len(records) == 2
    for record in records:
        stripe_event = json.loads(record["body"])
        assert record["attributes"]["MessageGroupId"] == stripe_event["data"]["object"]["customer"]
        assert record["attributes"]["MessageDeduplicationId"] == stripe_event["id"]
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()  # noqa: S324
        assert record["eventSourceARN"].endswith(".fifo")


def test_reconcile_event_is_an_eventbridge_scheduled_event() -> None:
    event = read_event("reconcile_schedule.json")
    assert (event["source"], event["detail-type"]) == ("aws.events", "Scheduled Event")


# ---------------------------------------------------------------- deployable on a fresh account


def test_secret_is_not_hard_named_so_a_redeploy_after_a_rollback_never_collides() -> None:
    assert "Name" not in props("StripeSecret")


def test_table_is_generated_named_and_not_left_behind_by_a_failed_first_deploy() -> None:
    assert "TableName" not in props("SyncTable")
    assert RESOURCES["SyncTable"]["DeletionPolicy"] == "RetainExceptOnCreate"
    assert RESOURCES["SyncTable"]["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize("environment", ["default", "dev", "prod"])
def test_samconfig_sets_a_region_per_environment(environment: str) -> None:
    config = samconfig()[environment]
    assert config["deploy"]["parameters"]["region"]
    assert config["global"]["parameters"]["region"] == config["deploy"]["parameters"]["region"]


# ---------------------------------------------------------------- worker time budget


def test_worker_starts_no_event_it_cannot_finish_before_its_timeout() -> None:
    timeout = function_setting("WorkerFunction", "Timeout")
    reserve = int(function_env("WorkerFunction")["RECORD_RESERVE_SECONDS"])
    # Room for the longest event (a Stripe call: 5 s timeout x 4 tries + backoff) after the first one.
    assert reserve >= 30
    assert timeout >= 2 * reserve
    assert props("EventQueue")["VisibilityTimeout"] >= 6 * timeout


# ---------------------------------------------------------------- operator's view


OWN_METRICS = {
    "stripe-sync-webhook": {
        "DeliveriesQueued",
        "DeliveriesRejected",
        "DeliveriesUnverified",
        "DeliveriesFailed",
    },
    "stripe-sync-worker": {
        "EventsApplied",
        "EventsStale",
        "EventsDuplicate",
        "EventsIgnored",
        "EventsUnknown",
        "GuestPurchases",
        "EventsFailed",
        "EventsFailingRepeatedly",
        "EventsParked",
        "EventsDeferred",
        "TiesFetched",
        "UnmatchedPayments",
    },
    "stripe-sync-reconcile": {
        "DriftMissing",
        "DriftStale",
        "DriftExtra",
        "DriftRepaired",
        "ReconcileErrors",
        "ReconcileFailed",
        "ReconcilePassCompleted",
        "StripeRateLimited",
    },
    "stripe-sync-publisher": {"EntitlementsChangesPublished", "EntitlementsChangesParked"},
    "stripe-sync-eventbridge": {"DeliveriesQueued", "DeliveriesRejected", "DeliveriesFailed"},
}
SERVICES = {
    "WebhookFunction": "stripe-sync-webhook",
    "WorkerFunction": "stripe-sync-worker",
    "ReconcileFunction": "stripe-sync-reconcile",
    "EntitlementsChangedFunction": "stripe-sync-publisher",
    "StripeEventBridgeFunction": "stripe-sync-eventbridge",
}


def alarm_metrics(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its own, or those of its metric math."""
    properties = body["Properties"]
    if "Metrics" in properties:
        return [query["MetricStat"]["Metric"] for query in properties["Metrics"] if "MetricStat" in query]
    return [properties]


def own_alarm(metric: str) -> dict[str, Any]:
    found = [
        body["Properties"]
        for body in resources_of_type("AWS::CloudWatch::Alarm").values()
        if any(m["MetricName"] == metric and m["Namespace"] == NAMESPACE for m in alarm_metrics(body))
    ]
    assert len(found) == 1, f"one alarm on {metric}"
    return found[0]


def test_services_of_the_metrics_are_the_functions_service_names() -> None:
    for function, service in SERVICES.items():
        assert function_env(function)["POWERTOOLS_SERVICE_NAME"] == service


def test_every_own_metric_an_alarm_reads_is_in_the_stack_namespace_with_its_service() -> None:
    for name, body in resources_of_type("AWS::CloudWatch::Alarm").items():
        for metric in alarm_metrics(body):
            if isinstance(metric["Namespace"], str) and metric["Namespace"].startswith("AWS/"):
                continue
            assert metric["Namespace"] == NAMESPACE, name
            dimension, *by_mode = metric["Dimensions"]
            assert dimension["Name"] == "service"
            # The webhook's per-mode counts (handlers/webhook.py, MODE_METRICS).
            assert [(d["Name"], d["Value"] in ("test", "live")) for d in by_mode] in (
                [],
                [("mode", True)],
                [("claimed_mode", True)],
            ), name
            assert metric["MetricName"] in OWN_METRICS[dimension["Value"]], name


def test_every_alarm_notifies_the_alarm_topic_both_ways() -> None:
    for name, body in resources_of_type("AWS::CloudWatch::Alarm").items():
        assert body["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert body["Properties"]["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert body["Properties"]["AlarmDescription"], name


def test_alarm_on_rejected_deliveries_of_a_mode_while_nothing_of_it_is_queued() -> None:
    """A wrong or rolled signing secret answers 400 to every delivery of its mode: that must page
    someone, even while the other mode's deliveries still queue."""
    alarm = props("RejectedDeliveriesAlarm")
    metrics = {q["Id"]: q for q in alarm["Metrics"]}
    for mode in ("test", "live"):
        unverified = metrics[f"unverified_{mode}"]["MetricStat"]["Metric"]
        queued = metrics[f"queued_{mode}"]["MetricStat"]["Metric"]
        assert unverified["MetricName"] == "DeliveriesUnverified"
        assert {"Name": "claimed_mode", "Value": mode} in unverified["Dimensions"]
        assert queued["MetricName"] == "DeliveriesQueued"
        assert {"Name": "mode", "Value": mode} in queued["Dimensions"]
        period = metrics[f"unverified_{mode}"]["MetricStat"]["Period"]
        assert period * alarm["EvaluationPeriods"] <= 1800
    expression = " ".join(metrics["refused"]["Expression"].split())
    assert expression == (
        "IF((FILL(unverified_test, 0) >= 3 AND FILL(queued_test, 0) == 0) OR "
        "(FILL(unverified_live, 0) >= 3 AND FILL(queued_live, 0) == 0), 1, 0)"
    )
    assert [q["Id"] for q in alarm["Metrics"] if q.get("ReturnData", True)] == ["refused"]


def test_alarm_on_the_reconcilers_own_failures() -> None:
    alarm = own_alarm("ReconcileFailed")
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        0,
        "GreaterThanThreshold",
    )


def test_alarm_when_no_reconcile_pass_completes_for_the_configured_hours() -> None:
    alarm = own_alarm("ReconcilePassCompleted")
    assert alarm["Period"] == 3600
    assert alarm["EvaluationPeriods"] == {"Ref": "ReconcilePassMaxAgeHours"}
    assert alarm["DatapointsToAlarm"] == {"Ref": "ReconcilePassMaxAgeHours"}
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "LessThanThreshold")
    # Each full run sends 0 until its pass completes (handlers.reconcile.publish): an hour with no data
    # is a new stack or one without an API key, which must not start red (issue 17).
    assert alarm["TreatMissingData"] == "notBreaching"


def test_an_ordinary_event_failure_pages_no_one() -> None:
    # Retries and the dead-letter queue are there for it (issue 17).
    assert not [
        body
        for body in resources_of_type("AWS::CloudWatch::Alarm").values()
        if any(m["MetricName"] == "EventsFailed" for m in alarm_metrics(body))
    ]


def test_an_event_that_keeps_failing_pages_within_minutes() -> None:
    alarm = own_alarm("EventsFailingRepeatedly")
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    # The 7th try fails ~2 minutes after the first (domain.retry_schedule); the alarm follows within
    # its period, long before SQS would park the message after maxReceiveCount tries.
    failing_for = total_retry_seconds(REPEATED_FAILURE_RECEIVES)
    assert failing_for + alarm["Period"] * alarm["EvaluationPeriods"] <= 300
    assert failing_for < total_retry_seconds(props("EventQueue")["RedrivePolicy"]["maxReceiveCount"])
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_alarm_on_worker_throttles() -> None:
    [alarm] = alarms_on("AWS/Lambda", "Throttles", {"Ref": "WorkerFunction"})
    assert alarm["Threshold"] == 0


def test_alarm_on_dynamodb_throttling_of_reads_and_writes() -> None:
    alarm = props("TableThrottlingAlarm")
    read = {q["MetricStat"]["Metric"]["MetricName"] for q in alarm["Metrics"] if "MetricStat" in q}
    assert read == {"ReadThrottleEvents", "WriteThrottleEvents"}
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            assert query["MetricStat"]["Metric"]["Dimensions"] == [
                {"Name": "TableName", "Value": {"Ref": "SyncTable"}}
            ]
    assert alarm["Threshold"] == 0


def test_alarm_on_reconciler_invocation_errors_is_kept() -> None:
    [alarm] = alarms_on("AWS/Lambda", "Errors", {"Ref": "ReconcileFunction"})
    assert alarm["Threshold"] == 0


@pytest.mark.parametrize(
    ("stage", "create", "created"),
    [
        ("prod", None, True),  # the default, auto: prod stacks have one
        ("dev", None, False),  # test stacks do not pay $3 a month for it unless asked
        ("dev", "true", True),
        ("prod", "false", False),
        ("prod", "auto", True),
    ],
)
def test_the_dashboard_is_created_in_prod_or_when_asked(
    stage: str, create: str | None, created: bool
) -> None:
    parameters = {"Stage": stage} | ({"CreateDashboard": create} if create else {})
    assert resolve({"Condition": "HasDashboard"}, parameters) is created
    assert RESOURCES["Dashboard"]["Condition"] == "HasDashboard"
    assert TEMPLATE["Outputs"]["DashboardUrl"]["Condition"] == "HasDashboard"


@pytest.mark.parametrize(
    "function",
    ["WebhookFunction", "WorkerFunction", "EntitlementsChangedFunction", "StripeEventBridgeFunction"],
)
def test_functions_run_per_event_write_no_platform_lines(function: str) -> None:
    """START/END/REPORT are INFO-level system logs in the JSON format: at WARN Lambda writes none, and
    would otherwise bill ~300 B of them for every invocation. The reconciler keeps them (hourly)."""
    config = function_setting(function, "LoggingConfig")
    assert (config["LogFormat"], config["SystemLogLevel"]) == ("JSON", "WARN")
    assert "ApplicationLogLevel" not in config  # the functions' own INFO lines (and metrics) still go out


def dashboard() -> dict[str, Any]:
    """The dashboard body with Fn::Sub's variables filled in as CloudFormation would."""
    body, variables = props("Dashboard")["DashboardBody"]["Fn::Sub"]
    assert variables == {"Namespace": NAMESPACE}
    values = {"Namespace": "StripeSync/dev/stripe-sync-dev", "AWS::Region": "us-east-1"}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        assert name.split(".")[0] in RESOURCES, f"${{{name}}} names no resource"
        return f"<{name}>"

    document = json.loads(re.sub(r"\$\{([^}]+)\}", substitute, body))
    assert isinstance(document, dict)
    return document


def dashboard_metrics() -> list[list[Any]]:
    return [row for widget in dashboard()["widgets"] for row in widget["properties"]["metrics"]]


def test_dashboard_shows_every_own_metric_in_the_stack_namespace() -> None:
    shown = {(row[3], row[1]) for row in dashboard_metrics() if row[0] == "StripeSync/dev/stripe-sync-dev"}
    expected = {(service, name) for service, names in OWN_METRICS.items() for name in names}
    assert expected - {("stripe-sync-worker", "EventsUnknown")} <= shown
    assert all(row[2] == "service" for row in dashboard_metrics() if row[0].startswith("StripeSync"))


def code_string_constants() -> set[str]:
    """Every string literal in src/: a metric the code emits is named by one of them."""
    found: set[str] = set()
    for path in (ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def test_every_dashboard_metric_of_the_stack_namespace_is_one_the_code_emits() -> None:
    emitted = code_string_constants()
    plotted = {row[1] for row in dashboard_metrics() if row[0] == "StripeSync/dev/stripe-sync-dev"}
    assert plotted, "the dashboard plots the stack's own metrics"
    assert sorted(plotted - emitted) == [], "plotted, but no code emits these"


def test_dashboard_shows_queues_dlq_table_throttles_and_each_functions_health() -> None:
    shown = {(row[0], row[1], row[3]) for row in dashboard_metrics()}
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "<EventQueue.QueueName>") in shown
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", "<EventQueue.QueueName>") in shown
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "<DeadLetterQueue.QueueName>") in shown
    assert ("AWS/DynamoDB", "ReadThrottleEvents", "<SyncTable>") in shown
    assert ("AWS/DynamoDB", "WriteThrottleEvents", "<SyncTable>") in shown
    # A function that exists only with a parameter set cannot be named on the dashboard.
    for function in (f for f in FUNCTIONS if "Condition" not in RESOURCES[f]):
        for metric in ("Errors", "Throttles", "Duration"):
            assert ("AWS/Lambda", metric, f"<{function}>") in shown
    regions = {widget["properties"]["region"] for widget in dashboard()["widgets"]}
    assert regions == {"us-east-1"}
