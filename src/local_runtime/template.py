"""What `make run` creates, read from template.yaml: the queues, the table and the functions' settings.

The template is the one declaration of the infrastructure; the local runtime takes the SQS queue
properties, the table's keys and TTL, the worker's event source (BatchSize) and the functions'
handlers, routes, timeouts and environment from it, never from a second copy in code.

The functions are found by their handlers (handlers.webhook / worker / reconcile
.lambda_handler); the queue is the one the worker's SQS event source reads, the dead-letter queue the
one its RedrivePolicy names, the table the one the worker's TABLE_NAME refers to.

CloudFormation intrinsics are resolved only as far as a local run needs: Ref to parameters (their
defaults, or `LOCAL_PARAMETERS`) and pseudo parameters, Fn::If / Fn::Equals / Fn::Not / Fn::And /
Fn::Or, Fn::Sub over those, and Ref / Fn::GetAtt to the few resources the runtime creates itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
LOCAL_STACK_NAME = "stripe-sync-local"
LOCAL_REGION = "us-east-1"
# moto's default account: the ARNs it hands out carry it.
LOCAL_ACCOUNT_ID = "123456789012"
# The local stack is a development stack (Stage has no default on purpose, see the template).
LOCAL_PARAMETERS: Mapping[str, str] = {"Stage": "dev"}

WEBHOOK_HANDLER = "handlers.webhook.lambda_handler"
WORKER_HANDLER = "handlers.worker.lambda_handler"
RECONCILE_HANDLER = "handlers.reconcile.lambda_handler"
PUBLISHER_HANDLER = "handlers.entitlements_changed.lambda_handler"
EVENTBRIDGE_HANDLER = "handlers.eventbridge.lambda_handler"

# AWS::SQS::Queue properties that are also SQS queue attributes of the same name. Everything else
# (QueueName, RedrivePolicy resolved separately, RedriveAllowPolicy, KMS keys, tags) is not needed
# to behave like the deployed queue on one machine.
SQS_QUEUE_ATTRIBUTES = (
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
)
# Lambda's defaults when neither the function nor Globals say otherwise.
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128
# Lambda's default BatchSize for an SQS event source.
DEFAULT_BATCH_SIZE = 10


class TemplateError(ValueError):
    """template.yaml lacks something the local runtime needs, or uses what it cannot resolve."""


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """`!Ref X` / `!GetAtt X.Attr` to a resource: resolved by the runtime once it exists."""

    logical_id: str
    attribute: str | None = None


@dataclass(frozen=True, slots=True)
class QueueSpec:
    logical_id: str
    name: str
    attributes: dict[str, str]  # SQS attribute name -> value, as CreateQueue takes them
    dead_letter_queue: str | None = None  # logical id of the RedrivePolicy's target
    max_receive_count: int | None = None


@dataclass(frozen=True, slots=True)
class TableSpec:
    logical_id: str
    name: str
    create_arguments: dict[str, Any]  # CreateTable's arguments besides TableName
    ttl_attribute: str | None


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    logical_id: str
    handler: str
    timeout: int
    memory_mb: int
    environment: dict[str, str | ResourceRef]  # empty values left out


@dataclass(frozen=True, slots=True)
class HttpRoute:
    method: str
    path: str

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class LocalStack:
    """Everything the local runtime takes from the template."""

    webhook: FunctionSpec
    webhook_route: HttpRoute
    worker: FunctionSpec
    batch_size: int
    reconciler: FunctionSpec | None
    event_queue: QueueSpec
    dead_letter_queue: QueueSpec
    table: TableSpec
    stack_name: str = LOCAL_STACK_NAME
    parameters: Mapping[str, str] = field(default_factory=dict)
    # The event source's ScalingConfig.MaximumConcurrency (None: not set, Lambda's own limits).
    max_concurrency: int | None = None
    # "Entitlements changed" events: the publisher on the table's stream, and what it publishes to.
    publisher: PublisherSpec | None = None
    # The second way in (Stripe's events from EventBridge): always served locally, on a path of its own.
    eventbridge: FunctionSpec | None = None


@dataclass(frozen=True, slots=True)
class PublisherSpec:
    function: FunctionSpec
    filters: tuple[Mapping[str, Any], ...]  # the stream event source's FilterCriteria patterns
    batch_size: int
    max_retry_attempts: int
    bus_logical_id: str
    bus_name: str
    dead_letter_queue: QueueSpec


class CloudFormationLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that reads the short tags (`!Ref x`, `!GetAtt a.b`, `!If [...]`) as the long form."""


def _short_tag(loader: CloudFormationLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _short_tag)


def load_template(text: str) -> dict[str, Any]:
    try:
        document = yaml.load(text, Loader=CloudFormationLoader)  # a SafeLoader subclass  # noqa: S506  # nosec B506
    except yaml.YAMLError as error:
        raise TemplateError(f"template is not valid YAML: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError("template has no Resources")
    return document


def read_template(
    path: Path = TEMPLATE_PATH,
    *,
    stack_name: str = LOCAL_STACK_NAME,
    parameters: Mapping[str, str] = LOCAL_PARAMETERS,
) -> LocalStack:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TemplateError(f"cannot read {path}: {error.strerror or error}") from error
    return local_stack(load_template(text), stack_name=stack_name, parameters=parameters)


def local_stack(
    template: Mapping[str, Any],
    *,
    stack_name: str = LOCAL_STACK_NAME,
    parameters: Mapping[str, str] = LOCAL_PARAMETERS,
) -> LocalStack:
    resolver = _Resolver(template, stack_name, parameters)
    resources: Mapping[str, Any] = template["Resources"]
    webhook_id = _function_with_handler(resources, WEBHOOK_HANDLER, required=True)
    worker_id = _function_with_handler(resources, WORKER_HANDLER, required=True)
    reconcile_id = _function_with_handler(resources, RECONCILE_HANDLER, required=False)
    assert webhook_id is not None
    assert worker_id is not None

    queue_ref, batch_size, max_concurrency = _sqs_event_source(resources, worker_id, resolver)
    event_queue = _queue(resources, queue_ref.logical_id, resolver)
    if event_queue.dead_letter_queue is None or event_queue.max_receive_count is None:
        raise TemplateError(f"{event_queue.logical_id} has no RedrivePolicy with a deadLetterTargetArn")
    dead_letter_queue = _queue(resources, event_queue.dead_letter_queue, resolver)

    worker = _function(template, worker_id, resolver)
    table_ref = worker.environment.get("TABLE_NAME")
    if not isinstance(table_ref, ResourceRef):
        raise TemplateError(f"{worker_id} has no TABLE_NAME: !Ref <table>")
    return LocalStack(
        webhook=_function(template, webhook_id, resolver),
        webhook_route=_http_route(resources, webhook_id, resolver),
        worker=worker,
        batch_size=batch_size,
        reconciler=_function(template, reconcile_id, resolver) if reconcile_id else None,
        event_queue=event_queue,
        dead_letter_queue=dead_letter_queue,
        table=_table(resources, table_ref.logical_id, resolver),
        stack_name=stack_name,
        parameters=dict(parameters),
        max_concurrency=max_concurrency,
        publisher=_publisher(template, resolver),
        eventbridge=(
            _function(template, eventbridge_id, resolver)
            if (eventbridge_id := _function_with_handler(resources, EVENTBRIDGE_HANDLER, required=False))
            else None
        ),
    )


def _publisher(template: Mapping[str, Any], resolver: _Resolver) -> PublisherSpec | None:
    resources: Mapping[str, Any] = template["Resources"]
    publisher_id = _function_with_handler(resources, PUBLISHER_HANDLER, required=False)
    if publisher_id is None:
        return None
    function = _function(template, publisher_id, resolver)
    sources = _events(resources, publisher_id, "DynamoDB")
    if len(sources) != 1:
        raise TemplateError(f"{publisher_id} must have exactly one DynamoDB event source, has {len(sources)}")
    source = resolver.resolve(sources[0])
    filters = tuple(
        json.loads(entry["Pattern"]) for entry in (source.get("FilterCriteria") or {}).get("Filters", [])
    )
    bus, queue = function.environment.get("EVENT_BUS_NAME"), function.environment.get("DEAD_LETTER_QUEUE_URL")
    if not isinstance(bus, ResourceRef) or not isinstance(queue, ResourceRef):
        raise TemplateError(
            f"{publisher_id} needs EVENT_BUS_NAME: !Ref <bus> and DEAD_LETTER_QUEUE_URL: !Ref <queue>"
        )
    bus_properties = resolver.resolve(resources[bus.logical_id].get("Properties") or {})
    return PublisherSpec(
        function=function,
        filters=filters,
        batch_size=_integer(source.get("BatchSize", 100), f"{publisher_id} BatchSize"),
        max_retry_attempts=_integer(
            source.get("MaximumRetryAttempts", 10), f"{publisher_id} MaximumRetryAttempts"
        ),
        bus_logical_id=bus.logical_id,
        bus_name=str(bus_properties.get("Name") or f"{resolver.stack_name}-{bus.logical_id}"),
        dead_letter_queue=_queue(resources, queue.logical_id, resolver),
    )


# -- resources --------------------------------------------------------------------------------------


def _function_with_handler(resources: Mapping[str, Any], handler: str, *, required: bool) -> str | None:
    found = [
        logical_id
        for logical_id, resource in resources.items()
        if isinstance(resource, Mapping)
        and resource.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")
        and isinstance(resource.get("Properties"), Mapping)
        and resource["Properties"].get("Handler") == handler
    ]
    if len(found) > 1:
        raise TemplateError(f"several functions have Handler {handler}: {', '.join(found)}")
    if not found and required:
        raise TemplateError(f"no function has Handler {handler}")
    return found[0] if found else None


def _function(template: Mapping[str, Any], logical_id: str, resolver: _Resolver) -> FunctionSpec:
    globals_ = template.get("Globals", {}).get("Function", {}) if isinstance(template, Mapping) else {}
    properties: Mapping[str, Any] = template["Resources"][logical_id]["Properties"]

    def setting(name: str, default: int) -> int:
        value = resolver.resolve(properties.get(name, globals_.get(name, default)))
        return _integer(value, f"{logical_id}.{name}")

    environment: dict[str, str | ResourceRef] = {}
    for source in (globals_, properties):
        variables = resolver.resolve(source.get("Environment", {})).get("Variables", {})
        for name, value in variables.items():
            if isinstance(value, ResourceRef):
                environment[name] = value
            elif value is not None and value != "":
                environment[name] = _attribute_text(value)
            else:
                environment.pop(name, None)
    return FunctionSpec(
        logical_id=logical_id,
        handler=str(properties["Handler"]),
        timeout=setting("Timeout", DEFAULT_TIMEOUT_SECONDS),
        memory_mb=setting("MemorySize", DEFAULT_MEMORY_MB),
        environment=environment,
    )


def _events(resources: Mapping[str, Any], function_id: str, kind: str) -> list[Mapping[str, Any]]:
    events = resources[function_id]["Properties"].get("Events") or {}
    return [
        event.get("Properties") or {}
        for event in events.values()
        if isinstance(event, Mapping) and event.get("Type") == kind
    ]


def _sqs_event_source(
    resources: Mapping[str, Any], worker_id: str, resolver: _Resolver
) -> tuple[ResourceRef, int, int | None]:
    sources = _events(resources, worker_id, "SQS")
    if len(sources) != 1:
        raise TemplateError(f"{worker_id} must have exactly one SQS event source, has {len(sources)}")
    source = resolver.resolve(sources[0])
    queue = source.get("Queue")
    if not isinstance(queue, ResourceRef):
        raise TemplateError(f"{worker_id}'s SQS event source must name its queue with !GetAtt <queue>.Arn")
    scaling = source.get("ScalingConfig")
    concurrency = scaling.get("MaximumConcurrency") if isinstance(scaling, Mapping) else None
    return (
        queue,
        _integer(source.get("BatchSize", DEFAULT_BATCH_SIZE), f"{worker_id} BatchSize"),
        None if concurrency is None else _integer(concurrency, f"{worker_id} MaximumConcurrency"),
    )


def _http_route(resources: Mapping[str, Any], webhook_id: str, resolver: _Resolver) -> HttpRoute:
    routes = _events(resources, webhook_id, "HttpApi")
    if len(routes) != 1:
        raise TemplateError(f"{webhook_id} must have exactly one HttpApi event, has {len(routes)}")
    route = resolver.resolve(routes[0])
    method, path = route.get("Method"), route.get("Path")
    if not isinstance(method, str) or not isinstance(path, str):
        raise TemplateError(f"{webhook_id}'s HttpApi event needs a Method and a Path")
    return HttpRoute(method.upper(), path)


def _queue(resources: Mapping[str, Any], logical_id: str, resolver: _Resolver) -> QueueSpec:
    resource = resources.get(logical_id)
    if not isinstance(resource, Mapping) or resource.get("Type") != "AWS::SQS::Queue":
        raise TemplateError(f"{logical_id} is not an AWS::SQS::Queue")
    properties = resolver.resolve(resource.get("Properties") or {})
    attributes = {
        name: _attribute_text(properties[name]) for name in SQS_QUEUE_ATTRIBUTES if name in properties
    }
    fifo = attributes.get("FifoQueue") == "true"
    name = properties.get("QueueName") or f"{resolver.stack_name}-{logical_id}" + (".fifo" if fifo else "")
    redrive = properties.get("RedrivePolicy")
    target: str | None = None
    max_receive_count: int | None = None
    if isinstance(redrive, Mapping):
        arn = redrive.get("deadLetterTargetArn")
        if not isinstance(arn, ResourceRef):
            raise TemplateError(f"{logical_id}'s deadLetterTargetArn must be !GetAtt <queue>.Arn")
        target = arn.logical_id
        max_receive_count = _integer(redrive.get("maxReceiveCount"), f"{logical_id} maxReceiveCount")
    return QueueSpec(logical_id, str(name), attributes, target, max_receive_count)


def _table(resources: Mapping[str, Any], logical_id: str, resolver: _Resolver) -> TableSpec:
    resource = resources.get(logical_id)
    if not isinstance(resource, Mapping) or resource.get("Type") != "AWS::DynamoDB::Table":
        raise TemplateError(f"{logical_id} is not an AWS::DynamoDB::Table")
    properties = resolver.resolve(resource.get("Properties") or {})
    arguments: dict[str, Any] = {
        "KeySchema": properties.get("KeySchema"),
        "AttributeDefinitions": properties.get("AttributeDefinitions"),
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    if not arguments["KeySchema"] or not arguments["AttributeDefinitions"]:
        raise TemplateError(f"{logical_id} needs KeySchema and AttributeDefinitions")
    for optional in ("ProvisionedThroughput", "GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if optional in properties:
            arguments[optional] = properties[optional]
    stream = properties.get("StreamSpecification")
    if isinstance(stream, Mapping) and stream.get("StreamViewType"):
        # CloudFormation names only the view type; CreateTable also wants it enabled.
        arguments["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    ttl = properties.get("TimeToLiveSpecification")
    ttl_attribute = None
    if isinstance(ttl, Mapping) and _attribute_text(ttl.get("Enabled", False)) == "true":
        ttl_attribute = str(ttl["AttributeName"])
    name = properties.get("TableName") or f"{resolver.stack_name}-{logical_id}"
    return TableSpec(logical_id, str(name), arguments, ttl_attribute)


# -- intrinsic functions ----------------------------------------------------------------------------

_NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class _Resolver:
    def __init__(self, template: Mapping[str, Any], stack_name: str, parameters: Mapping[str, str]) -> None:
        self.stack_name = stack_name
        self._resources: Mapping[str, Any] = template.get("Resources") or {}
        self._conditions: Mapping[str, Any] = template.get("Conditions") or {}
        declared: Mapping[str, Any] = template.get("Parameters") or {}
        self._values: dict[str, Any] = {
            "AWS::StackName": stack_name,
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        for name, declaration in declared.items():
            if name in parameters:
                self._values[name] = parameters[name]
            elif isinstance(declaration, Mapping) and "Default" in declaration:
                self._values[name] = declaration["Default"]

    def resolve(self, value: Any) -> Any:
        result = self._resolve(value)
        return None if result is _NO_VALUE else result

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (self._resolve(v) for v in value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Fn::GetAtt":
                if not isinstance(argument, list) or len(argument) != 2:
                    raise TemplateError(f"malformed Fn::GetAtt: {argument!r}")
                return ResourceRef(str(argument[0]), str(argument[1]))
            if key == "Fn::If":
                if not isinstance(argument, list) or len(argument) != 3:
                    raise TemplateError(f"malformed Fn::If: {argument!r}")
                return self._resolve(argument[1] if self._condition(argument[0]) else argument[2])
            if key == "Fn::Sub":
                return self._sub(argument)
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by the local runtime's template reader")
        resolved = {k: self._resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _ref(self, name: Any) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self._values:
            return self._values[name]
        if name in self._resources:
            return ResourceRef(str(name))
        raise TemplateError(f"!Ref {name}: no such parameter (without a default) or resource")

    def _sub(self, argument: Any) -> str:
        variables: Mapping[str, Any] = {}
        if isinstance(argument, list) and len(argument) == 2:
            argument, variables = argument
        if not isinstance(argument, str):
            raise TemplateError(f"malformed Fn::Sub: {argument!r}")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                value = self._resolve(variables[name])
            elif name in self._values:
                value = self._values[name]
            else:
                raise TemplateError(f"Fn::Sub ${{{name}}} cannot be resolved locally")
            if isinstance(value, ResourceRef):
                raise TemplateError(f"Fn::Sub ${{{name}}} names a resource; not resolved locally")
            return _attribute_text(value)

        return _SUB_VARIABLE.sub(replace, argument).replace("${!", "${")

    def _condition(self, condition: Any) -> bool:
        if isinstance(condition, str):
            if condition not in self._conditions:
                raise TemplateError(f"no condition named {condition}")
            return self._condition(self._conditions[condition])
        if isinstance(condition, Mapping) and len(condition) == 1:
            ((key, argument),) = condition.items()
            if key == "Condition":
                return self._condition(argument)
            if key == "Fn::Equals" and isinstance(argument, list) and len(argument) == 2:
                left, right = (self._resolve(side) for side in argument)
                return _attribute_text(left) == _attribute_text(right)
            if key == "Fn::Not" and isinstance(argument, list) and len(argument) == 1:
                return not self._condition(argument[0])
            if key == "Fn::And" and isinstance(argument, list):
                return all(self._condition(c) for c in argument)
            if key == "Fn::Or" and isinstance(argument, list):
                return any(self._condition(c) for c in argument)
        raise TemplateError(f"condition not supported by the local runtime: {condition!r}")


def _attribute_text(value: Any) -> str:
    """CloudFormation's scalars as the strings AWS APIs take (true/false, 180)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _integer(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TemplateError(f"{what} must be a whole number, is {value!r}") from None
