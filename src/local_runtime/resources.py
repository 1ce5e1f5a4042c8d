"""Creates the template's queue, dead-letter queue and table in moto, with the template's settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from local_runtime.template import LocalStack, ResourceRef


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
        return values.get((ref.logical_id, ref.attribute))


def create_resources(
    stack: LocalStack, sqs: Any, dynamodb: Any, *, visibility_timeout: int | None = None
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
    return LocalResources(
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
