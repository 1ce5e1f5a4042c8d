"""The local runtime reads its queues, table and functions from template.yaml, never from a second copy."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from local_runtime.template import (
    TEMPLATE_PATH,
    LocalStack,
    ResourceRef,
    TemplateError,
    load_template,
    local_stack,
    read_template,
)

MINIMAL = """
Parameters:
  Stage:
    Type: String
    AllowedValues: [dev, prod]
  Retention:
    Type: Number
    Default: 600
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NotProd: !Not [!Condition IsProd]
Globals:
  Function:
    Timeout: 7
    MemorySize: 192
    Environment:
      Variables:
        LOG_LEVEL: INFO
        SECRET_ID: !Ref Secret
Resources:
  Secret:
    Type: AWS::SecretsManager::Secret
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
      TimeToLiveSpecification: {AttributeName: expires_at, Enabled: true}
      DeletionProtectionEnabled: !If [IsProd, true, false]
  Events:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub ${AWS::StackName}-events.fifo
      FifoQueue: true
      ContentBasedDeduplication: false
      DeduplicationScope: messageGroup
      FifoThroughputLimit: perMessageGroupId
      VisibilityTimeout: !If [NotProd, 42, 180]
      MessageRetentionPeriod: !Ref Retention
      KmsMasterKeyId: alias/aws/sqs
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Parking.Arn
        maxReceiveCount: 4
  Parking:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
      MessageRetentionPeriod: 1209600
      DelaySeconds: !Ref AWS::NoValue
  Ingress:
    Type: AWS::Serverless::Function
    Properties:
      Handler: handlers.webhook.lambda_handler
      Environment:
        Variables:
          QUEUE_URL: !Ref Events
          STRIPE_WEBHOOK_SECRET: ""
      Events:
        Post:
          Type: HttpApi
          Properties: {Method: post, Path: /hooks}
  Applier:
    Type: AWS::Serverless::Function
    Properties:
      Handler: handlers.worker.lambda_handler
      Timeout: 30
      Environment:
        Variables:
          TABLE_NAME: !Ref Table
          LOG_LEVEL: DEBUG
      Events:
        Messages:
          Type: SQS
          Properties:
            Queue: !GetAtt Events.Arn
            BatchSize: 7
"""


def stack_of(text: str = MINIMAL, **kwargs: object) -> LocalStack:
    return local_stack(load_template(textwrap.dedent(text)), **kwargs)  # type: ignore[arg-type]


def test_queue_attributes_come_from_the_template_with_intrinsics_resolved() -> None:
    stack = stack_of()
    assert stack.event_queue.logical_id == "Events"
    assert stack.event_queue.name == "stripe-sync-local-events.fifo"
    assert stack.event_queue.attributes == {
        "FifoQueue": "true",
        "ContentBasedDeduplication": "false",
        "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId",
        "VisibilityTimeout": "42",  # !If on a condition of a parameter (Stage=dev locally)
        "MessageRetentionPeriod": "600",  # !Ref to a parameter's default
    }
    assert stack.event_queue.dead_letter_queue == "Parking"
    assert stack.event_queue.max_receive_count == 4


def test_the_dead_letter_queue_is_the_one_the_redrive_policy_names() -> None:
    dlq = stack_of().dead_letter_queue
    assert dlq.logical_id == "Parking"
    # No QueueName: named after the stack and the logical id, FIFO suffix kept.
    assert dlq.name == "stripe-sync-local-Parking.fifo"
    assert dlq.attributes == {"FifoQueue": "true", "MessageRetentionPeriod": "1209600"}  # NoValue dropped


def test_the_table_is_the_one_the_worker_names_with_its_keys_and_ttl() -> None:
    table = stack_of().table
    assert table.logical_id == "Table"
    assert table.name == "stripe-sync-local-Table"
    assert table.ttl_attribute == "expires_at"
    assert table.create_arguments["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table.create_arguments["BillingMode"] == "PAY_PER_REQUEST"
    assert "DeletionProtectionEnabled" not in table.create_arguments


def test_functions_take_globals_and_their_own_settings() -> None:
    stack = stack_of()
    assert stack.batch_size == 7
    assert stack.max_concurrency is None  # no ScalingConfig
    assert stack.worker.timeout == 30
    assert stack.worker.memory_mb == 192
    assert stack.webhook.timeout == 7
    assert stack.worker.environment == {
        "LOG_LEVEL": "DEBUG",
        "SECRET_ID": ResourceRef("Secret"),
        "TABLE_NAME": ResourceRef("Table"),
    }
    # An empty value (declared for `sam local` only) is left out, so it cannot blank the user's.
    assert "STRIPE_WEBHOOK_SECRET" not in stack.webhook.environment
    assert stack.webhook_route.route_key == "POST /hooks"
    assert stack.reconciler is None


def test_the_event_sources_maximum_concurrency_is_read() -> None:
    text = MINIMAL.replace(
        "BatchSize: 7", "BatchSize: 7\n            ScalingConfig:\n              MaximumConcurrency: 4"
    )
    assert stack_of(text).max_concurrency == 4
    with pytest.raises(TemplateError, match="MaximumConcurrency must be a whole number"):
        stack_of(text.replace("MaximumConcurrency: 4", "MaximumConcurrency: lots"))


def test_parameters_can_be_set_for_the_local_stack() -> None:
    stack = stack_of(parameters={"Stage": "prod"}, stack_name="other")
    assert stack.event_queue.attributes["VisibilityTimeout"] == "180"
    assert stack.event_queue.name == "other-events.fifo"


def test_the_repository_template_has_what_the_runtime_needs() -> None:
    stack = read_template(TEMPLATE_PATH)
    assert stack.event_queue.attributes["FifoQueue"] == "true"
    assert stack.dead_letter_queue.attributes["FifoQueue"] == "true"
    assert stack.event_queue.max_receive_count is not None
    assert stack.event_queue.max_receive_count >= 5  # 1 would park on one throttle (ARCHITECTURE.md)
    assert 1 <= stack.batch_size <= 10  # a FIFO event source takes at most 10
    assert int(stack.event_queue.attributes["VisibilityTimeout"]) >= 6 * stack.worker.timeout
    assert stack.table.ttl_attribute == "expires_at"
    assert stack.webhook_route.route_key == "POST /webhooks/stripe"
    assert stack.reconciler is not None
    assert stack.reconciler.handler == "handlers.reconcile.lambda_handler"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("handlers.worker.lambda_handler", "handlers.other.lambda_handler"), "no function has Handler"),
        (
            ("deadLetterTargetArn: !GetAtt Parking.Arn", "deadLetterTargetArn: arn:aws:sqs:x"),
            "deadLetterTargetArn",
        ),
        (("BatchSize: 7", "BatchSize: many"), "BatchSize must be a whole number"),
        (("!Ref Retention", "!Ref Nothing"), "!Ref Nothing"),
        (("!If [NotProd, 42, 180]", "!Select [0, [42]]"), "Fn::Select is not supported"),
        (("${AWS::StackName}-events", "${Unknown}-events"), "${Unknown}"),
        (("Type: SQS", "Type: SNS"), "exactly one SQS event source"),
    ],
)
def test_what_cannot_be_run_locally_is_named(edit: tuple[str, str], message: str) -> None:
    old, new = edit
    assert old in MINIMAL
    with pytest.raises(TemplateError, match=message.replace("$", r"\$").replace("{", r"\{")):
        stack_of(MINIMAL.replace(old, new))


def test_a_missing_or_broken_template_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="cannot read"):
        read_template(tmp_path / "absent.yaml")
    broken = tmp_path / "template.yaml"
    broken.write_text("Resources: [unclosed", encoding="utf-8")
    with pytest.raises(TemplateError, match="not valid YAML"):
        read_template(broken)
    broken.write_text("Description: nothing\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="no Resources"):
        read_template(broken)
