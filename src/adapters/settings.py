"""Settings of the worker and the reconciler: each parsed once per container from the environment
(handlers.worker.settings, handlers.reconcile.settings) into one frozen object, which the handler
hands to the adapters it configures (the table's models, the queues, the Stripe client); no adapter
reads these variables itself. The light functions parse theirs in their handler modules, with the
same SettingsError (adapters), so that their packages hold neither this module nor the rules.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters import SettingsError, optional, required, whole_number
from adapters.stripe_credentials import StripeCredentialSource, credential_source
from domain.entitlements import EntitlementRules
from domain.reconcile.request import ReconcileOptions, options_from

DEFAULT_RULES_FILE = Path(__file__).resolve().parent.parent / "entitlement_rules.toml"


__all__ = [
    "ReconcileSettings",
    "Settings",
    "SettingsError",
    "load_rules",
    "load_settings",
    "reconcile_settings",
]

DEFAULT_RECORD_RESERVE_SECONDS = 50


@dataclass(frozen=True, slots=True)
class TableSettings:
    """Where the table is: adapters.table_items.configure takes these."""

    name: str  # TABLE_NAME
    region: str | None  # AWS_REGION, else AWS_DEFAULT_REGION; None: pynamodb's default
    endpoint: str | None  # AWS_ENDPOINT_URL_DYNAMODB, else AWS_ENDPOINT_URL: the local runtime's moto
    # Access key id and secret for the models; None: botocore's chain (the functions' role). The ops
    # CLI's --local gives moto's dummies here.
    credentials: tuple[str, str] | None = field(default=None, repr=False)

    def bind(self) -> None:
        """Point the table's models here (adapters.table_items.configure)."""
        from adapters import table_items  # noqa: PLC0415 - pynamodb only for the functions that use the table

        table_items.configure(self.name, host=self.endpoint, region=self.region, credentials=self.credentials)


@dataclass(frozen=True, slots=True)
class Settings:
    """The worker's."""

    table: TableSettings
    queue_url: str | None  # the event queue, for ChangeMessageVisibility; None: its visibility timeout
    dead_letter_queue_url: str | None  # None: an unfixable event is retried instead of parked
    stripe: StripeCredentialSource  # where the API keys are (STRIPE_SECRET_ID, STRIPE_API_KEY)
    stripe_api_base: str | None
    # RECORD_RESERVE_SECONDS; a value that is not a whole number falls back to the default (a tuning
    # knob's typo must not stop the worker), and record_reserve_ignored keeps it for the warning.
    record_reserve_seconds: int
    record_reserve_ignored: str | None
    rules: EntitlementRules

    @property
    def table_name(self) -> str:
        return self.table.name


def table_settings(env: Mapping[str, str], table_name: str | None = None) -> TableSettings:
    return TableSettings(
        name=table_name or required(env, "TABLE_NAME"),
        region=optional(env, "AWS_REGION") or optional(env, "AWS_DEFAULT_REGION"),
        endpoint=optional(env, "AWS_ENDPOINT_URL_DYNAMODB") or optional(env, "AWS_ENDPOINT_URL"),
    )


def load_rules(path: Path | None = None, env: Mapping[str, str] | None = None) -> EntitlementRules:
    """The entitlement rules from `path`, else ENTITLEMENT_RULES_FILE of `env` (the process's by
    default), else the packaged file."""
    source = os.environ if env is None else env
    rules_path = path or Path(source.get("ENTITLEMENT_RULES_FILE") or DEFAULT_RULES_FILE)
    try:
        with rules_path.open("rb") as file:
            return EntitlementRules.from_mapping(tomllib.load(file))
    except (OSError, tomllib.TOMLDecodeError, ValueError) as error:
        raise SettingsError(
            "ENTITLEMENT_RULES_FILE", f"entitlement rules {rules_path} (ENTITLEMENT_RULES_FILE): {error}"
        ) from error


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The worker's settings from `env` (the process's by default); SettingsError names the variable."""
    source = os.environ if env is None else env
    table = table_settings(source)
    try:
        reserve, ignored = (
            whole_number(source, "RECORD_RESERVE_SECONDS", DEFAULT_RECORD_RESERVE_SECONDS, unit="seconds"),
            None,
        )
    except SettingsError:
        reserve, ignored = DEFAULT_RECORD_RESERVE_SECONDS, source["RECORD_RESERVE_SECONDS"]
    return Settings(
        table=table,
        queue_url=optional(source, "QUEUE_URL"),
        dead_letter_queue_url=optional(source, "DEAD_LETTER_QUEUE_URL"),
        stripe=credential_source(source),
        stripe_api_base=optional(source, "STRIPE_API_BASE"),
        record_reserve_seconds=reserve,
        record_reserve_ignored=ignored,
        rules=load_rules(env=source),
    )


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """What the reconciler runs with: parsed once per container (handlers.reconcile) or built from
    an ops target (ops.reconcile, ops.backfill), then passed down; never read from os.environ later."""

    table: TableSettings
    queue_url: str | None
    stripe_api_base: str | None
    # Where the API keys are: the function's STRIPE_SECRET_ID or STRIPE_API_KEY; for the ops CLI its
    # target's secret with a boto3 reader for the operator's profile (ops.targets.operator_credentials).
    stripe: StripeCredentialSource
    user_id_key: str  # the customer metadata key that names the user (entitlement rules)
    options: ReconcileOptions
    # Makes the SQS client repairs are sent with (adapters.fetched_queue.sqs_client when None); the
    # ops CLI gives its own, for its target's endpoint and credentials.
    sqs_client: Callable[[], Any] | None = field(default=None, compare=False)

    @property
    def table_name(self) -> str:
        return self.table.name


def reconcile_settings(
    env: Mapping[str, str] | None = None,
    *,
    table_name: str | None = None,
    queue_url: str | None = None,
    stripe: StripeCredentialSource | None = None,
    table: TableSettings | None = None,
    sqs_client: Callable[[], Any] | None = None,
) -> ReconcileSettings:
    """TABLE_NAME (with AWS_REGION and AWS_ENDPOINT_URL(_DYNAMODB)), QUEUE_URL, STRIPE_API_BASE,
    STRIPE_SECRET_ID or STRIPE_API_KEY, the entitlement rules and RECONCILE_*
    (domain.reconcile.options_from, run here once) from `env` (the process's by default); the keyword
    arguments, when given, win over the environment. Raises SettingsError (no table, the rules) or InvalidRequest (a RECONCILE_* value)."""
    source = os.environ if env is None else env
    return ReconcileSettings(
        table=table or table_settings(source, table_name),
        queue_url=queue_url or optional(source, "QUEUE_URL"),
        stripe_api_base=optional(source, "STRIPE_API_BASE"),
        stripe=credential_source(source) if stripe is None else stripe,
        user_id_key=load_rules(env=source).user_id_metadata_key,
        options=options_from(source),
        sqs_client=sqs_client,
    )
