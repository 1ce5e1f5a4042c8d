"""Settings of the worker and the reconciler, parsed once per container from the environment."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from domain.entitlements import EntitlementRules
from domain.reconcile.request import ReconcileOptions, options_from

if TYPE_CHECKING:
    from adapters.stripe_credentials import SecretReader

DEFAULT_RULES_FILE = Path(__file__).resolve().parent.parent / "entitlement_rules.toml"


@dataclass(frozen=True, slots=True)
class Settings:
    table_name: str
    queue_url: str | None
    stripe_api_base: str | None
    rules: EntitlementRules


class SettingsError(ValueError):
    """A setting is missing or invalid: the function cannot start."""


def load_rules(path: Path | None = None) -> EntitlementRules:
    rules_path = path or Path(os.environ.get("ENTITLEMENT_RULES_FILE") or DEFAULT_RULES_FILE)
    try:
        with rules_path.open("rb") as file:
            return EntitlementRules.from_mapping(tomllib.load(file))
    except (OSError, tomllib.TOMLDecodeError, ValueError) as error:
        raise SettingsError(f"entitlement rules {rules_path}: {error}") from error


def load_settings() -> Settings:
    table = os.environ.get("TABLE_NAME")
    if not table:
        raise SettingsError("TABLE_NAME is not set")
    return Settings(
        table_name=table,
        queue_url=os.environ.get("QUEUE_URL") or None,
        stripe_api_base=os.environ.get("STRIPE_API_BASE") or None,
        rules=load_rules(),
    )


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """What the reconciler runs with: parsed once per container (handlers.reconcile) or built from
    an ops target (ops.reconcile, ops.backfill), then passed down; never read from os.environ later."""

    table_name: str
    queue_url: str | None
    stripe_api_base: str | None
    stripe_secret_id: str | None  # the Secrets Manager secret with the API keys; None: STRIPE_API_KEY
    dynamodb_endpoint: str | None  # AWS_ENDPOINT_URL(_DYNAMODB): the local runtime's moto server
    user_id_key: str  # the customer metadata key that names the user (entitlement rules)
    options: ReconcileOptions
    # How the secret is read: adapters.stripe_credentials.read_secret when None (the functions); the
    # ops CLI gives a boto3 reader for the operator's profile (ops.targets.operator_secret_reader).
    secret_reader: SecretReader | None = field(default=None, compare=False)


def reconcile_settings(
    env: Mapping[str, str] | None = None,
    *,
    table_name: str | None = None,
    queue_url: str | None = None,
    stripe_secret_id: str | None = None,
    secret_reader: SecretReader | None = None,
) -> ReconcileSettings:
    """TABLE_NAME, QUEUE_URL, STRIPE_API_BASE, STRIPE_SECRET_ID, AWS_ENDPOINT_URL(_DYNAMODB), the
    entitlement rules and RECONCILE_* (domain.reconcile.options_from) from `env` (the process's by
    default); the keyword arguments, when given, win over the environment. Raises SettingsError (no
    table) or InvalidRequest (a RECONCILE_* value)."""
    source = os.environ if env is None else env
    table = table_name or source.get("TABLE_NAME")
    if not table:
        raise SettingsError("TABLE_NAME is not set")
    return ReconcileSettings(
        table_name=table,
        queue_url=queue_url or source.get("QUEUE_URL") or None,
        stripe_api_base=source.get("STRIPE_API_BASE") or None,
        stripe_secret_id=stripe_secret_id or source.get("STRIPE_SECRET_ID") or None,
        dynamodb_endpoint=source.get("AWS_ENDPOINT_URL_DYNAMODB") or source.get("AWS_ENDPOINT_URL") or None,
        user_id_key=load_rules().user_id_metadata_key,
        options=options_from(source),
        secret_reader=secret_reader,
    )
