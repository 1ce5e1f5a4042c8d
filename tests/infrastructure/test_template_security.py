"""Security properties of template.yaml beyond the rules tests/infrastructure/test_template.py states.

test_template.py reads each function's own Policies. What a role can do in AWS is more: SAM adds AWS
managed policies to every role it generates, some of them on every resource of the account, and a
permissions boundary caps the sum. These tests compute that effective set and pin it per function, check
the boundaries and the policies stay in step (a grant the boundary lacks is denied in AWS), and keep
every checkov suppression reviewed. `make security` runs checkov and bandit themselves.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from typing import Any

import pytest
import yaml

from local_runtime.template import TEMPLATE_PATH
from tests.support.sam_template import GLOBAL_FUNCTION, RESOURCES, TEMPLATE, function_setting, props

ROOT = TEMPLATE_PATH.parent

BOUNDARIES = {
    "WebhookFunction": "WebhookPermissionsBoundary",
    "WorkerFunction": "WorkerPermissionsBoundary",
    "ReconcileFunction": "ReconcilePermissionsBoundary",
    "EntitlementsChangedFunction": "EntitlementsChangedPermissionsBoundary",
    "StripeEventBridgeFunction": "StripeEventBridgePermissionsBoundary",
}
FUNCTIONS = tuple(BOUNDARIES)
LOG_GROUPS = {
    "WebhookFunction": "WebhookLogGroup",
    "WorkerFunction": "WorkerLogGroup",
    "ReconcileFunction": "ReconcileLogGroup",
    "EntitlementsChangedFunction": "EntitlementsChangedLogGroup",
    "StripeEventBridgeFunction": "StripeEventBridgeLogGroup",
}

# A grant is (action, resource, condition), resource and condition as canonical JSON so that grants
# compare and hash whatever intrinsic functions they hold.
Grant = tuple[str, str, str]


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def arn(logical_id: str) -> str:
    return canonical({"Fn::GetAtt": [logical_id, "Arn"]})


EVERYTHING = canonical("*")
NO_CONDITION = canonical(None)
TABLE = arn("SyncTable")
EVENT_QUEUE = arn("EventQueue")
DEAD_LETTER_QUEUE = arn("DeadLetterQueue")
TABLE_STREAM = canonical({"Fn::GetAtt": ["SyncTable", "StreamArn"]})
TABLE_STREAMS = canonical(
    {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${SyncTable}/stream/*"}
)
ENTITLEMENTS_BUS = arn("EntitlementsEventBus")
ENTITLEMENTS_CHANGES_DLQ = arn("EntitlementsChangesDeadLetterQueue")
STRIPE_EVENTBRIDGE_DLQ = arn("StripeEventBridgeDeadLetterQueue")
SECRET = canonical({"Ref": "StripeSecret"})
RECORDS_TO_CHECK = canonical({"Fn::Sub": "${SyncTable.Arn}/index/records-to-check"})
# The reconciler marks records written before the index that can still drift, and nothing else.
MARK_ONLY = canonical(
    {
        "ForAllValues:StringEquals": {"dynamodb:Attributes": ["pk", "sk", "drift_check", "stamp_event"]},
        "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"},
    }
)
CURSOR_ONLY = canonical({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["RECONCILE", "RECONCILE#*"]}})
TRACES = {
    ("xray:PutTraceSegments", EVERYTHING, NO_CONDITION),
    ("xray:PutTelemetryRecords", EVERYTHING, NO_CONDITION),
}
READ_SECRET = ("secretsmanager:GetSecretValue", SECRET, NO_CONDITION)
ACCOUNT_KEYS = canonical({"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"})
THROUGH_SECRETS_MANAGER = {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}
THROUGH_DYNAMODB = {"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}
# Secrets Manager and DynamoDB decrypt with their AWS managed keys on the role's behalf. No policy of the
# role grants that (those keys' own policies do); the boundary only leaves room for it.
DECRYPT_THROUGH_SERVICES: dict[str, Grant] = {
    "WebhookFunction": (
        "kms:Decrypt",
        ACCOUNT_KEYS,
        canonical({"StringEquals": {"kms:ViaService": THROUGH_SECRETS_MANAGER}}),
    ),
    **{
        function: (
            "kms:Decrypt",
            ACCOUNT_KEYS,
            canonical({"StringEquals": {"kms:ViaService": [THROUGH_SECRETS_MANAGER, THROUGH_DYNAMODB]}}),
        )
        for function in ("WorkerFunction", "ReconcileFunction")
    },
    # Stream records arrive decrypted by DynamoDB; the EventBridge ingress touches only SSE-SQS queues.
    "EntitlementsChangedFunction": (
        "kms:Decrypt",
        ACCOUNT_KEYS,
        canonical({"StringEquals": {"kms:ViaService": THROUGH_DYNAMODB}}),
    ),
}


def decrypt_through_services(function: str) -> set[Grant]:
    grant = DECRYPT_THROUGH_SERVICES.get(function)
    return set() if grant is None else {grant}


def own_logs(function: str) -> set[Grant]:
    log_group = arn(LOG_GROUPS[function])
    return {
        ("logs:CreateLogStream", log_group, NO_CONDITION),
        ("logs:PutLogEvents", log_group, NO_CONDITION),
    }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statement_grants(statement: dict[str, Any]) -> set[Grant]:
    assert statement["Effect"] == "Allow", statement
    assert "NotAction" not in statement, statement
    assert "NotResource" not in statement, statement
    condition = canonical(statement.get("Condition"))
    return {
        (action, canonical(resource), condition)
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }


def policy_grants(policy: Any) -> set[Grant]:
    """The grants of one entry of a function's Policies: an inline statement list or a SAM policy
    template (only the reviewed one; its expansion is samtranslator's policy_templates.json)."""
    assert isinstance(policy, dict), f"managed policy {policy!r} is not reviewed here"
    if "Statement" in policy:
        return {grant for statement in policy["Statement"] for grant in statement_grants(statement)}
    ((template, arguments),) = policy.items()
    assert template == "AWSSecretsManagerGetSecretValuePolicy", f"policy template {template} is not reviewed"
    return {("secretsmanager:GetSecretValue", canonical(arguments["SecretArn"]), NO_CONDITION)}


def role_policies(function: str) -> set[Grant]:
    return {grant for policy in props(function).get("Policies", []) for grant in policy_grants(policy)}


# What SAM adds to the role it generates for a function (samtranslator 1.115, aws-sam-cli 1.170: the
# function's Tracing and its event sources decide), and what those AWS managed policies allow, all on "*".
BASIC_EXECUTION_ROLE = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
XRAY_WRITE_ONLY_ACCESS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
}
SQS_QUEUE_EXECUTION_ROLE = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
DYNAMODB_EXECUTION_ROLE = {
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
}
# Event sources for which SAM attaches no policy to the role (they invoke through a resource policy).
EVENTS_WITHOUT_ROLE_POLICY = {"HttpApi", "Schedule", "EventBridgeRule"}


def sam_managed_grants(function: str) -> set[Grant]:
    actions = set(BASIC_EXECUTION_ROLE)
    # Tracing is a parameter: the boundary must hold for the value that attaches X-Ray's policy too.
    tracing = function_setting(function, "Tracing")
    if isinstance(tracing, dict) and set(tracing) == {"Ref"}:
        tracing = "Active" if "Active" in TEMPLATE["Parameters"][tracing["Ref"]]["AllowedValues"] else None
    if tracing == "Active":
        actions |= XRAY_WRITE_ONLY_ACCESS
    for event in props(function).get("Events", {}).values():
        if event["Type"] == "SQS":
            actions |= SQS_QUEUE_EXECUTION_ROLE | BASIC_EXECUTION_ROLE
        elif event["Type"] == "DynamoDB":
            actions |= DYNAMODB_EXECUTION_ROLE | BASIC_EXECUTION_ROLE
        else:
            assert event["Type"] in EVENTS_WITHOUT_ROLE_POLICY, (
                f"{event['Type']}: its SAM policy is not reviewed"
            )
    return {(action, EVERYTHING, NO_CONDITION) for action in actions}


def boundary_grants(function: str) -> set[Grant]:
    boundary = RESOURCES[BOUNDARIES[function]]
    assert boundary["Type"] == "AWS::IAM::ManagedPolicy"
    document = boundary["Properties"]["PolicyDocument"]
    return {grant for statement in document["Statement"] for grant in statement_grants(statement)}


def effective(function: str) -> set[Grant]:
    """What the role may do in AWS: (its policies + SAM's managed policies) capped by its boundary.

    A grant on "*" is narrowed to what the boundary allows for that action; any other grant survives only
    when the boundary allows the same action on the same resource, unconditionally or under the same
    condition (exact matches: the boundary mirrors the policies, see the tests below)."""
    allowed: set[Grant] = set()
    for action, resource, condition in role_policies(function) | sam_managed_grants(function):
        for capped_action, capped_resource, capped_condition in boundary_grants(function):
            if capped_action != action:
                continue
            if resource == EVERYTHING:
                allowed.add((action, capped_resource, capped_condition))
            elif capped_resource in (resource, EVERYTHING) and capped_condition in (condition, NO_CONDITION):
                allowed.add((action, resource, condition))
    return allowed


EXPECTED_EFFECTIVE: dict[str, set[Grant]] = {
    "WebhookFunction": {("sqs:SendMessage", EVENT_QUEUE, NO_CONDITION), READ_SECRET}
    | own_logs("WebhookFunction")
    | TRACES,
    "WorkerFunction": {
        (f"dynamodb:{action}", TABLE, NO_CONDITION)
        for action in ("GetItem", "BatchGetItem", "Query", "PutItem", "DeleteItem")
    }
    | {(action, EVENT_QUEUE, NO_CONDITION) for action in SQS_QUEUE_EXECUTION_ROLE}
    | {
        ("sqs:ChangeMessageVisibility", EVENT_QUEUE, NO_CONDITION),  # a failed event's short retry
        ("sqs:SendMessage", DEAD_LETTER_QUEUE, NO_CONDITION),  # parking an unfixable event
        READ_SECRET,
    }
    | own_logs("WorkerFunction")
    | TRACES,
    "ReconcileFunction": {
        (f"dynamodb:{action}", resource, NO_CONDITION)
        for action in ("GetItem", "BatchGetItem", "Query", "Scan")
        for resource in (TABLE, RECORDS_TO_CHECK)
    }
    | {
        ("dynamodb:PutItem", TABLE, CURSOR_ONLY),
        ("dynamodb:UpdateItem", TABLE, MARK_ONLY),
        ("sqs:SendMessage", EVENT_QUEUE, NO_CONDITION),
        ("sqs:SendMessageBatch", EVENT_QUEUE, NO_CONDITION),
        READ_SECRET,
    }
    | own_logs("ReconcileFunction")
    | TRACES,
    "EntitlementsChangedFunction": {
        ("events:PutEvents", ENTITLEMENTS_BUS, NO_CONDITION),
        ("sqs:SendMessage", ENTITLEMENTS_CHANGES_DLQ, NO_CONDITION),
        ("dynamodb:DescribeStream", TABLE_STREAM, NO_CONDITION),
        ("dynamodb:GetRecords", TABLE_STREAM, NO_CONDITION),
        ("dynamodb:GetShardIterator", TABLE_STREAM, NO_CONDITION),
        ("dynamodb:ListStreams", TABLE_STREAMS, NO_CONDITION),
    }
    | own_logs("EntitlementsChangedFunction")
    | TRACES,
    # Only queues: no table, no secret (trust comes from IAM, not a signature).
    "StripeEventBridgeFunction": {
        ("sqs:SendMessage", EVENT_QUEUE, NO_CONDITION),
        ("sqs:SendMessage", STRIPE_EVENTBRIDGE_DLQ, NO_CONDITION),
    }
    | own_logs("StripeEventBridgeFunction")
    | TRACES,
}


# ---------------------------------------------------------------- effective permissions


@pytest.mark.parametrize("function", FUNCTIONS)
def test_role_is_capped_by_its_own_permissions_boundary(function: str) -> None:
    assert props(function).get("PermissionsBoundary") == {"Ref": BOUNDARIES[function]}
    assert "PermissionsBoundary" not in GLOBAL_FUNCTION
    others = [name for name in FUNCTIONS if name != function]
    assert all(props(other).get("PermissionsBoundary") != {"Ref": BOUNDARIES[function]} for other in others)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_effective_permissions_are_exactly_what_the_function_uses(function: str) -> None:
    assert effective(function) == EXPECTED_EFFECTIVE[function]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_boundary_is_the_role_policies_plus_the_capped_sam_policies(function: str) -> None:
    # A policy grant missing from the boundary is denied in AWS (and nowhere else); a boundary statement
    # that no policy needs is room for a future grant nobody reviewed.
    capped_sam_grants = own_logs(function) | TRACES | decrypt_through_services(function)
    if function == "WorkerFunction":
        capped_sam_grants |= {(action, EVENT_QUEUE, NO_CONDITION) for action in SQS_QUEUE_EXECUTION_ROLE}
    if function == "EntitlementsChangedFunction":
        capped_sam_grants |= {
            (action, TABLE_STREAMS if action == "dynamodb:ListStreams" else TABLE_STREAM, NO_CONDITION)
            for action in DYNAMODB_EXECUTION_ROLE
        }
    assert boundary_grants(function) == role_policies(function) | capped_sam_grants


@pytest.mark.parametrize("function", FUNCTIONS)
def test_nothing_is_granted_on_every_resource_but_traces(function: str) -> None:
    # X-Ray's trace actions have no resource-level permissions; everything else names its resource.
    assert {grant for grant in effective(function) if grant[1] == EVERYTHING} == TRACES
    assert {grant for grant in boundary_grants(function) if grant[1] == EVERYTHING} == TRACES


@pytest.mark.parametrize("function", FUNCTIONS)
def test_boundary_names_no_wildcard_action(function: str) -> None:
    assert not [action for action, _, _ in boundary_grants(function) if "*" in action]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_kms_is_reachable_only_through_the_services_the_function_uses(function: str) -> None:
    assert {
        grant for grant in boundary_grants(function) if grant[0].startswith("kms:")
    } == decrypt_through_services(function)
    assert not [grant for grant in effective(function) if grant[0].startswith("kms:")]


def test_webhook_has_no_dynamodb_access_at_all() -> None:
    assert not [grant for grant in effective("WebhookFunction") if grant[0].startswith("dynamodb:")]
    assert not [grant for grant in boundary_grants("WebhookFunction") if grant[0].startswith("dynamodb:")]


def test_only_the_worker_consumes_the_queue_and_only_the_event_queue() -> None:
    # SAM's AWSLambdaSQSQueueExecutionRole allows receiving and deleting on every queue of the account.
    consumers = {
        (function, resource)
        for function in FUNCTIONS
        for action, resource, _ in effective(function)
        if action in SQS_QUEUE_EXECUTION_ROLE
    }
    assert consumers == {("WorkerFunction", EVENT_QUEUE)}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_only_the_worker_may_send_to_the_dead_letter_queue_and_nothing_else(function: str) -> None:
    # The worker parks an event retrying cannot fix; only operators read or redrive the queue
    # (`stripe-sync dlq`, start-message-move-task), with their own credentials.
    allowed = (
        {("sqs:SendMessage", DEAD_LETTER_QUEUE, NO_CONDITION)} if function == "WorkerFunction" else set()
    )
    assert {grant for grant in effective(function) if grant[1] == DEAD_LETTER_QUEUE} == allowed
    assert {grant for grant in boundary_grants(function) if grant[1] == DEAD_LETTER_QUEUE} == allowed


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_writes_only_to_its_own_log_group(function: str) -> None:
    assert {grant for grant in effective(function) if grant[0].startswith("logs:")} == own_logs(function)


DYNAMODB_WRITES = re.compile(r"dynamodb:(PutItem|UpdateItem|DeleteItem|BatchWriteItem|PartiQL.*|Transact.*)$")


def test_reconciler_can_write_no_table_item_but_its_own_and_the_mark_of_records_to_check() -> None:
    writes = {grant for grant in effective("ReconcileFunction") if DYNAMODB_WRITES.match(grant[0])}
    assert writes == {("dynamodb:PutItem", TABLE, CURSOR_ONLY), ("dynamodb:UpdateItem", TABLE, MARK_ONLY)}


# The partition keys of src/adapters/table_items.py and src/adapters/reconcile_cursor.py.
RECONCILER_KEYS = ["RECONCILE", "RECONCILE#SEEN#20260101T000000-abc"]
OTHER_KEYS = [
    "CUSTOMER#cus_123",
    "CUSTOMER#RECONCILE",
    "USER#live#user_1",
    "PAYMENT#pi_123",
    "GUEST#cs_test_1",
    "EVENT#evt_123",
    "RECONCILEX",
    "reconcile",
]


@pytest.mark.parametrize(
    ("partition_key", "writable"),
    [(key, True) for key in RECONCILER_KEYS] + [(key, False) for key in OTHER_KEYS],
)
def test_reconciler_write_condition_matches_only_its_own_partition_keys(
    partition_key: str, writable: bool
) -> None:
    # IAM's StringLike is case-sensitive, `*` matching any run of characters (fnmatchcase, as no
    # pattern here holds `?` or `[`). ForAllValues over dynamodb:LeadingKeys, which a PutItem always
    # sets: its one partition key must match.
    (condition,) = {
        condition
        for action, _, condition in role_policies("ReconcileFunction")
        if DYNAMODB_WRITES.match(action) and condition != MARK_ONLY  # attributes, not items: above
    }
    ((operator, keys),) = json.loads(condition).items()
    assert operator == "ForAllValues:StringLike"
    (patterns,) = keys.values()
    assert list(keys) == ["dynamodb:LeadingKeys"]
    assert not [pattern for pattern in patterns if "?" in pattern or "[" in pattern]
    assert any(fnmatch.fnmatchcase(partition_key, pattern) for pattern in patterns) is writable


# ---------------------------------------------------------------- exposure


def test_only_the_webhook_route_is_reachable_over_http() -> None:
    routes = [
        (function, event["Type"])
        for function, body in RESOURCES.items()
        if body["Type"] == "AWS::Serverless::Function"
        for event in body["Properties"].get("Events", {}).values()
        if event["Type"] in ("Api", "HttpApi")
    ]
    assert routes == [("WebhookFunction", "HttpApi")]
    # Routes come from the functions' events only: no OpenAPI body that could add one.
    assert "DefinitionBody" not in props("HttpApi")
    assert "DefinitionUri" not in props("HttpApi")


def test_no_function_has_a_function_url() -> None:
    # A function URL would bypass the API's throttling and access logs.
    assert "FunctionUrlConfig" not in GLOBAL_FUNCTION
    assert not [name for name in FUNCTIONS if "FunctionUrlConfig" in props(name)]
    assert not [name for name, body in RESOURCES.items() if body["Type"] == "AWS::Lambda::Url"]


def test_every_log_group_expires_its_logs() -> None:
    log_groups = {name: body for name, body in RESOURCES.items() if body["Type"] == "AWS::Logs::LogGroup"}
    assert set(LOG_GROUPS.values()) | {"HttpApiAccessLogGroup"} <= set(log_groups)
    for name, body in log_groups.items():
        assert body["Properties"].get("RetentionInDays") == {"Ref": "LogRetentionDays"}, name
    assert TEMPLATE["Parameters"]["LogRetentionDays"]["Default"] <= 365


def test_api_access_log_goes_to_a_log_group_of_the_stack() -> None:
    assert props("HttpApi")["AccessLogSettings"]["DestinationArn"] == {
        "Fn::GetAtt": ["HttpApiAccessLogGroup", "Arn"]
    }


# ---------------------------------------------------------------- checkov suppressions

# Every suppression, reviewed; its reason is in its comment in template.yaml. A new one fails here
# until it is reviewed and added.
REVIEWED_SUPPRESSIONS = {
    # AWS managed keys rather than a customer managed key (see each comment).
    ("StripeSecret", "CKV_AWS_149"),
    ("SyncTable", "CKV_AWS_119"),
    ("HttpApiAccessLogGroup", "CKV_AWS_158"),
    ("WebhookLogGroup", "CKV_AWS_158"),
    ("WorkerLogGroup", "CKV_AWS_158"),
    ("ReconcileLogGroup", "CKV_AWS_158"),
    ("EntitlementsChangedLogGroup", "CKV_AWS_158"),
    ("StripeEventBridgeLogGroup", "CKV_AWS_158"),
    ("WebhookFunction", "CKV_AWS_173"),
    ("WorkerFunction", "CKV_AWS_173"),
    ("ReconcileFunction", "CKV_AWS_173"),
    ("EntitlementsChangedFunction", "CKV_AWS_173"),
    ("StripeEventBridgeFunction", "CKV_AWS_173"),
    # SqsManagedSseEnabled, which the check does not know.
    ("EventQueue", "CKV_AWS_27"),
    ("DeadLetterQueue", "CKV_AWS_27"),
    ("EntitlementsChangesDeadLetterQueue", "CKV_AWS_27"),
    ("StripeEventBridgeDeadLetterQueue", "CKV_AWS_27"),
    # No function is invoked asynchronously with anything worth keeping.
    ("WebhookFunction", "CKV_AWS_116"),
    ("WorkerFunction", "CKV_AWS_116"),
    ("ReconcileFunction", "CKV_AWS_116"),
    ("EntitlementsChangedFunction", "CKV_AWS_116"),  # a stream consumer: OnFailure destination instead
    # No VPC.
    ("WebhookFunction", "CKV_AWS_117"),
    ("WorkerFunction", "CKV_AWS_117"),
    ("ReconcileFunction", "CKV_AWS_117"),
    ("EntitlementsChangedFunction", "CKV_AWS_117"),
    ("StripeEventBridgeFunction", "CKV_AWS_117"),
    # Concurrency capped by the API throttle and the event source instead (ReconcileFunction reserves 1).
    ("WebhookFunction", "CKV_AWS_115"),
    ("WorkerFunction", "CKV_AWS_115"),
    ("EntitlementsChangedFunction", "CKV_AWS_115"),
    ("StripeEventBridgeFunction", "CKV_AWS_115"),
}


def suppressions() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for name, body in RESOURCES.items():
        for skip in body.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert (name, skip["id"]) not in found, (name, skip["id"])
            found[(name, skip["id"])] = skip.get("comment", "")
    return found


def test_every_checkov_suppression_is_reviewed() -> None:
    assert set(suppressions()) == REVIEWED_SUPPRESSIONS


@pytest.mark.parametrize(("resource", "check"), sorted(REVIEWED_SUPPRESSIONS))
def test_every_checkov_suppression_gives_its_reason(resource: str, check: str) -> None:
    assert len(suppressions()[(resource, check)].split()) >= 10


def test_checkov_config_scans_the_template_and_suppresses_nothing() -> None:
    config = yaml.safe_load((ROOT / ".checkov.yaml").read_text(encoding="utf-8"))
    assert config["file"] == ["template.yaml"]
    assert config["framework"] == ["cloudformation"]
    assert config["skip-download"] is True
    assert not {"skip-check", "soft-fail", "soft-fail-on", "skip-framework"} & set(config)


def test_make_test_runs_the_security_checks() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    (test_rule,) = re.findall(r"^test:([^#\n]*)", makefile, flags=re.MULTILINE)
    assert "security" in test_rule.split()
    recipe = makefile.split("\nsecurity:", 1)[1].split("\n\n", 1)[0]
    assert "checkov --config-file .checkov.yaml" in recipe
    (bandit,) = [line.split() for line in recipe.splitlines() if "bin/bandit " in line]
    assert bandit[bandit.index("--recursive") + 1] == "src"
    # Reviewed in the comment above the rule; anything more needs the same.
    assert bandit[bandit.index("--skip") + 1] == "B101,B404"
    # Sample data lives in events/, outside src/: bandit reads every file of src/.
    assert "--exclude" not in bandit
    assert not {"--severity-level", "--confidence-level", "-l", "-ll", "-i", "-ii", "--exit-zero"} & set(
        bandit
    )


def test_security_tools_are_pinned() -> None:
    project = tomllib.loads((ROOT / "tools" / "security" / "pyproject.toml").read_text(encoding="utf-8"))
    pins = project["project"]["dependencies"]
    assert {pin.split("==")[0] for pin in pins} == {"bandit", "checkov"}
    assert all(re.fullmatch(r"[a-z]+==\d+(\.\d+)+", pin) for pin in pins)
