"""Creates the template's queue, dead-letter queue and table in moto, with the template's settings;
and for "entitlements changed" events the bus, the publisher's dead-letter queue and, as a backend
would, a rule on the bus with a queue behind it (`make demo` reads what was published there)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.entitlement_events import SOURCE
from local_runtime.event_source import QueueBinding
from local_runtime.template import LocalStack, ResourceRef


def subscriber_queue_name(stack: LocalStack) -> str:
    """The queue the local example subscription delivers "entitlements changed" events to."""
    return f"{stack.stack_name}-entitlements-subscriber"


@dataclass(frozen=True, slots=True)
class LocalResources:
    table_name: str
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str
    dead_letter_queue_arn: str
    batch_size: int
    max_receive_count: int
    visibility_timeout: int
    # Further resources by (logical id, attribute): the publisher's bus and dead-letter queue.
    others: Mapping[tuple[str, str | None], str] = field(default_factory=dict)
    subscriber_queue_url: str | None = None

    def resolve(self, ref: ResourceRef, stack: LocalStack) -> str | None:
        """`!Ref` / `!GetAtt` in a function's environment, for the resources that exist locally."""
        values = {
            (stack.table.logical_id, None): self.table_name,
            (stack.event_queue.logical_id, None): self.queue_url,
            (stack.event_queue.logical_id, "Arn"): self.queue_arn,
            (stack.event_queue.logical_id, "QueueUrl"): self.queue_url,
            (stack.dead_letter_queue.logical_id, None): self.dead_letter_queue_url,
            (stack.dead_letter_queue.logical_id, "Arn"): self.dead_letter_queue_arn,
        }
        return values.get((ref.logical_id, ref.attribute)) or self.others.get((ref.logical_id, ref.attribute))

    def queue_binding(self) -> QueueBinding:
        """The worker's event source mapping on the event queue, with the template's settings."""
        return QueueBinding(
            queue_url=self.queue_url,
            queue_arn=self.queue_arn,
            dead_letter_queue_url=self.dead_letter_queue_url,
            batch_size=self.batch_size,
            max_receive_count=self.max_receive_count,
            visibility_timeout=self.visibility_timeout,
        )


def create_resources(
    stack: LocalStack,
    sqs: Any,
    dynamodb: Any,
    *,
    visibility_timeout: int | None = None,
    events: Any = None,
) -> LocalResources:
    """The dead-letter queue first (the event queue's RedrivePolicy names its ARN), then the rest."""
    dlq = stack.dead_letter_queue
    dlq_url = sqs.create_queue(QueueName=dlq.name, Attributes=dlq.attributes)["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)

    queue = stack.event_queue
    assert queue.max_receive_count is not None  # local_stack() requires a RedrivePolicy
    attributes = dict(queue.attributes)
    if visibility_timeout is not None:
        attributes["VisibilityTimeout"] = str(visibility_timeout)
    attributes["RedrivePolicy"] = json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": queue.max_receive_count}
    )
    queue_url = sqs.create_queue(QueueName=queue.name, Attributes=attributes)["QueueUrl"]

    table = stack.table
    dynamodb.create_table(TableName=table.name, **table.create_arguments)
    if table.ttl_attribute:
        dynamodb.update_time_to_live(
            TableName=table.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )
    others: dict[tuple[str, str | None], str] = {}
    subscriber_url = None
    if stack.publisher is not None and events is not None:
        others, subscriber_url = _publisher_resources(stack, sqs, events)
    return LocalResources(
        others=others,
        subscriber_queue_url=subscriber_url,
        table_name=table.name,
        queue_url=queue_url,
        queue_arn=_queue_arn(sqs, queue_url),
        dead_letter_queue_url=dlq_url,
        dead_letter_queue_arn=dlq_arn,
        batch_size=stack.batch_size,
        max_receive_count=queue.max_receive_count,
        # SQS's default when the template says nothing.
        visibility_timeout=int(attributes.get("VisibilityTimeout", 30)),
    )


def _queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    return str(attributes["QueueArn"])


def _publisher_resources(
    stack: LocalStack, sqs: Any, events: Any
) -> tuple[dict[tuple[str, str | None], str], str]:
    publisher = stack.publisher
    assert publisher is not None
    bus_arn = events.create_event_bus(Name=publisher.bus_name)["EventBusArn"]
    dlq = publisher.dead_letter_queue
    dlq_url = sqs.create_queue(QueueName=dlq.name, Attributes=dlq.attributes)["QueueUrl"]
    # What a backend would do (README, "Be told when access changes"): a rule on the bus, a target.
    subscriber_url = sqs.create_queue(QueueName=subscriber_queue_name(stack))["QueueUrl"]
    rule = f"{stack.stack_name}-example-subscription"
    events.put_rule(Name=rule, EventBusName=publisher.bus_name, EventPattern=json.dumps({"source": [SOURCE]}))
    events.put_targets(
        Rule=rule,
        EventBusName=publisher.bus_name,
        Targets=[{"Id": "subscriber", "Arn": _queue_arn(sqs, subscriber_url)}],
    )
    others: dict[tuple[str, str | None], str] = {
        (publisher.bus_logical_id, None): publisher.bus_name,
        (publisher.bus_logical_id, "Arn"): str(bus_arn),
        (dlq.logical_id, None): dlq_url,
        (dlq.logical_id, "Arn"): _queue_arn(sqs, dlq_url),
    }
    return others, subscriber_url
