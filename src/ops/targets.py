"""Which deployment the CLI talks to: endpoint, region, table, queues and the Stripe secret.

Names come from, first to last: the flags (--table, --queue-url, --dlq-url); the stack chosen on the
command line (--stack NAME: its outputs TableName, EventQueueUrl, DeadLetterQueueUrl,
StripeSecretArn; or --local: what `make run` creates from template.yaml on 127.0.0.1:$AWS_PORT);
the environment (TABLE_NAME, QUEUE_URL, DLQ_URL, STRIPE_SECRET_ID). The endpoint is --endpoint-url,
else --local's, else whatever boto3 finds (AWS_ENDPOINT_URL, the profile).

How the CLI reaches AWS (AwsAccess: endpoint, region, --local's dummy credentials) is handed to each
boto3 client and to the table's models; the process's environment is read, never written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.settings import ReconcileSettings, TableSettings
    from adapters.stripe_credentials import SecretReader, StripeCredentialSource

LOCAL_HOST = "127.0.0.1"
DEFAULT_LOCAL_AWS_PORT = 5000
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = ("local", "local")  # access key id and secret: dummies for moto  # nosec B105
STACK_OUTPUTS = {
    "TableName": "table_name",
    "EventQueueUrl": "queue_url",
    "DeadLetterQueueUrl": "dlq_url",
    "StripeSecretArn": "secret_id",
}


class TargetError(ValueError):
    """The deployment cannot be found or a name is missing; the message says what to pass."""


@dataclass(frozen=True, slots=True)
class Target:
    endpoint_url: str | None
    region: str | None
    table_name: str | None
    queue_url: str | None
    dlq_url: str | None
    secret_id: str | None
    local: bool = False
    credentials: tuple[str, str] | None = field(default=None, repr=False)  # AwsAccess.credentials

    def require_table(self) -> str:
        if not self.table_name:
            raise TargetError("no table: pass --table NAME, set TABLE_NAME, or use --stack NAME or --local")
        return self.table_name

    def require_queue(self) -> str:
        if not self.queue_url:
            raise TargetError(
                "no event queue: pass --queue-url, set QUEUE_URL, or use --stack NAME or --local"
            )
        return self.queue_url

    def require_dlq(self) -> str:
        if not self.dlq_url:
            raise TargetError(
                "no dead-letter queue: pass --dlq-url, set DLQ_URL, or use --stack NAME or --local"
            )
        return self.dlq_url

    def table(self) -> TableSettings:
        """The table's name and how to reach it, for the table's models (adapters.sync_table)."""
        from adapters.settings import TableSettings  # noqa: PLC0415 - only for the table's commands

        return TableSettings(self.require_table(), self.region, self.endpoint_url, self.credentials)

    def access(self) -> AwsAccess:
        return AwsAccess(self.endpoint_url, self.region, self.credentials)


@dataclass(frozen=True, slots=True)
class AwsAccess:
    """How the CLI's clients reach AWS; None: what boto3 finds itself (AWS_ENDPOINT_URL, AWS_REGION,
    the operator's profile)."""

    endpoint_url: str | None = None
    region: str | None = None
    # --local's dummies (access key id, secret); boto3 then reads no profile, config or
    # credentials file, so that no real account is used by accident.
    credentials: tuple[str, str] | None = field(default=None, repr=False)

    def client(self, service: str, **options: Any) -> Any:
        import boto3  # noqa: PLC0415 - `stripe-sync --help` should not wait for boto3

        if self.credentials is None:
            session = boto3.Session(region_name=self.region)
        else:
            import botocore.session  # noqa: PLC0415

            # Neither AWS_PROFILE nor the config files of the environment: (env var, config key,
            # default, conversion) with no variable to read.
            isolated = botocore.session.Session(
                session_vars={
                    "profile": (None, None, None, None),
                    "config_file": (None, None, os.devnull, None),
                    "credentials_file": (None, None, os.devnull, None),
                }
            )
            access_key, secret_key = self.credentials
            session = boto3.Session(
                botocore_session=isolated,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                region_name=self.region,
            )
        return session.client(service, endpoint_url=self.endpoint_url, **options)  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class TargetOptions:
    """The command line's say (None: not given)."""

    endpoint_url: str | None = None
    region: str | None = None
    stack: str | None = None
    local: bool = False
    table: str | None = None
    queue_url: str | None = None
    dlq_url: str | None = None


def local_endpoint(env: Mapping[str, str]) -> str:
    port = env.get("AWS_PORT", "").strip() or str(DEFAULT_LOCAL_AWS_PORT)
    if not port.isdigit():
        raise TargetError(f"AWS_PORT must be a port number, is {port!r}")
    return f"http://{LOCAL_HOST}:{port}"


def aws_access(options: TargetOptions, env: Mapping[str, str]) -> AwsAccess:
    """--local: the local runtime's endpoint, us-east-1 and dummy credentials; otherwise the flags'
    endpoint and region, else the environment's (AWS_ENDPOINT_URL, AWS_REGION, AWS_DEFAULT_REGION)."""
    region = options.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    if options.local:
        if options.stack:
            raise TargetError("--local and --stack exclude each other")
        return AwsAccess(
            options.endpoint_url or local_endpoint(env), options.region or LOCAL_REGION, LOCAL_CREDENTIALS
        )
    return AwsAccess(options.endpoint_url or env.get("AWS_ENDPOINT_URL") or None, region)


def resolve_target(
    options: TargetOptions, env: Mapping[str, str], clients: ClientFactory, access: AwsAccess | None = None
) -> Target:
    access = access or aws_access(options, env)
    from_stack: dict[str, str] = {}
    if options.local:
        from_stack = local_names(clients)
    elif options.stack:
        from_stack = stack_outputs(options.stack, clients)

    def pick(flag: str | None, key: str, variable: str) -> str | None:
        return flag or from_stack.get(key) or env.get(variable) or None

    return Target(
        endpoint_url=access.endpoint_url,
        region=access.region,
        table_name=pick(options.table, "table_name", "TABLE_NAME"),
        queue_url=pick(options.queue_url, "queue_url", "QUEUE_URL"),
        dlq_url=pick(options.dlq_url, "dlq_url", "DLQ_URL"),
        # --local never reads Secrets Manager: the local runtime takes STRIPE_API_KEY from the environment.
        secret_id=None if options.local else (from_stack.get("secret_id") or env.get("STRIPE_SECRET_ID")),
        local=options.local,
        credentials=access.credentials,
    )


class ClientFactory:
    """boto3 clients, created once each, for one AwsAccess."""

    def __init__(self, access: AwsAccess | None = None) -> None:
        self._access = access or AwsAccess()
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._access.client(service)
        return self._clients[service]


def stack_outputs(stack: str, clients: ClientFactory) -> dict[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        stacks = clients("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        raise TargetError(f"stack {stack}: {error.response['Error'].get('Message', error)}") from None
    except BotoCoreError as error:
        raise TargetError(f"stack {stack}: {error}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])} if stacks else {}
    return {field: outputs[key] for key, field in STACK_OUTPUTS.items() if key in outputs}


def local_names(clients: ClientFactory) -> dict[str, str]:
    """The names `make run` gives its resources (read from template.yaml, as the runtime does)."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from local_runtime.template import TemplateError, read_template  # noqa: PLC0415

    try:
        stack = read_template()
    except TemplateError as error:
        raise TargetError(f"--local: {error}") from None
    sqs = clients("sqs")
    try:
        queue_url = sqs.get_queue_url(QueueName=stack.event_queue.name)["QueueUrl"]
        dlq_url = sqs.get_queue_url(QueueName=stack.dead_letter_queue.name)["QueueUrl"]
    except (ClientError, BotoCoreError) as error:
        raise TargetError(
            f"--local: the local runtime's queues are not reachable ({type(error).__name__}: {error}). "
            "Is `make run` running (and AWS_PORT the same as its)?"
        ) from None
    return {"table_name": stack.table.name, "queue_url": str(queue_url), "dlq_url": str(dlq_url)}


def target_settings(target: Target, env: Mapping[str, str], *, dry_run: bool) -> ReconcileSettings:
    """The reconciler's settings for this target, as its Lambda has them: the target's table (and how
    to reach it), queue (not needed for a dry run) and Stripe secret (unless STRIPE_API_KEY is set
    here), RECONCILE_* and the rest from `env`; boto3 clients for the target's AwsAccess."""
    from botocore.config import Config  # noqa: PLC0415

    from adapters.settings import reconcile_settings  # noqa: PLC0415 - the rules file only for this command

    access = target.access()
    clients = ClientFactory(access)
    return reconcile_settings(
        env,
        table=target.table(),
        queue_url=None if dry_run else target.require_queue(),
        stripe=operator_credentials(env, target.secret_id, clients),
        # As adapters.fetched_queue.sqs_client configures the functions' client.
        sqs_client=lambda: access.client(
            "sqs", config=Config(retries={"mode": "standard", "total_max_attempts": 3})
        ),
    )


def operator_credentials(
    env: Mapping[str, str], secret_id: str | None, clients: ClientFactory | None = None
) -> StripeCredentialSource:
    """Where the CLI's Stripe API keys are: the operator's STRIPE_API_KEY when set, else the target's
    secret (--stack, STRIPE_SECRET_ID) read with the operator's boto3 credentials (`clients`)."""
    from adapters.stripe_credentials import StripeCredentialSource  # noqa: PLC0415

    if env.get("STRIPE_API_KEY"):
        return StripeCredentialSource(api_key=env["STRIPE_API_KEY"])
    return StripeCredentialSource(secret_id=secret_id or None, read=operator_secret_reader(clients))


def operator_secret_reader(clients: ClientFactory | None = None) -> SecretReader:
    """Reads a secret with boto3 (the operator's profile, SSO or role, which adapters.aws_json's
    environment-only signer cannot resolve); `clients` gives the boto3 client (the target's), else a
    default one."""

    def read(secret_id: str) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        from adapters.stripe_credentials import SecretsUnavailable  # noqa: PLC0415

        if clients is None:
            import boto3  # noqa: PLC0415

            client: Any = boto3.client("secretsmanager")
        else:
            client = clients("secretsmanager")
        try:
            text = client.get_secret_value(SecretId=secret_id).get("SecretString")
        except (BotoCoreError, ClientError) as error:
            raise SecretsUnavailable(f"secret {secret_id} could not be read: {error}") from error
        return text if text is None else str(text)

    return read
