"""Stripe credentials at run time, for every function: parsed STRIPE_WEBHOOK_SECRET and STRIPE_API_KEY.

In AWS (STRIPE_SECRET_ID set) they come from that Secrets Manager secret, a JSON object with the
same keys and syntax as the environment variables, read with one GetSecretValue and cached for
SECRET_MAX_AGE_SECONDS. Locally (STRIPE_SECRET_ID unset) they come from the environment.

Written against boto3 directly rather than Powertools Parameters: the webhook shares this module and
its package carries no Powertools (7 MB unzipped, ~165 ms to import cold; bench/cold_start.py), and
what it needs of Parameters is one call and a time-bound cache.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import TYPE_CHECKING, Any

from domain.credentials import CredentialsError, Mode, WebhookSecret, parse_api_keys, parse_webhook_secrets

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

SECRET_ID_VARIABLE = "STRIPE_SECRET_ID"  # names of settings, not their values  # noqa: S105  # nosec B105
WEBHOOK_SECRET_SETTING = "STRIPE_WEBHOOK_SECRET"  # noqa: S105  # nosec B105
API_KEY_SETTING = "STRIPE_API_KEY"
# A secret added in Secrets Manager is used within this time; a request refused meanwhile is retried
# by Stripe, and while a signing secret is rolled Stripe signs with the old one too.
SECRET_MAX_AGE_SECONDS = 300


class SecretsUnavailable(RuntimeError):
    """The Secrets Manager secret could not be read (network, permissions, missing secret): retry later."""


class MissingCredentials(CredentialsError):
    """The setting is absent or empty: an operator has yet to configure it."""


def webhook_secrets() -> tuple[WebhookSecret, ...]:
    """The endpoint signing secrets; MissingCredentials when none are configured."""
    secrets = parse_webhook_secrets(stripe_setting(WEBHOOK_SECRET_SETTING))
    if not secrets:
        raise MissingCredentials("webhook secret not configured")
    return secrets


def api_keys() -> dict[Mode, str]:
    """The API key per mode; empty when none is configured (Stripe API calls are then unavailable)."""
    return parse_api_keys(stripe_setting(API_KEY_SETTING))


def stripe_setting(name: str) -> str | None:
    """The raw text of STRIPE_WEBHOOK_SECRET or STRIPE_API_KEY, wherever this deployment keeps it."""
    secret_id = os.environ.get(SECRET_ID_VARIABLE)
    if not secret_id:
        return os.environ.get(name)
    value = _secret_document(secret_id).get(name)
    if value is not None and not isinstance(value, str):
        raise CredentialsError(f"{name} in secret {secret_id} must be a string")
    return value


# secret id -> (monotonic time read, parsed document); one process reads a secret at most once per max age.
_documents: dict[str, tuple[float, dict[str, Any]]] = {}


def clear_cache() -> None:
    """Forget the cached secret documents (tests; a process normally keeps them SECRET_MAX_AGE_SECONDS)."""
    _documents.clear()
    _secrets_manager.cache_clear()


@functools.cache
def _secrets_manager() -> SecretsManagerClient:
    # Imported on first use: the webhook's 4xx answers and local runs never need boto3.
    import boto3  # noqa: PLC0415

    return boto3.client("secretsmanager")


def _secret_document(secret_id: str) -> dict[str, Any]:
    cached = _documents.get(secret_id)
    if cached is not None and time.monotonic() - cached[0] < SECRET_MAX_AGE_SECONDS:
        return cached[1]
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        text = _secrets_manager().get_secret_value(SecretId=secret_id).get("SecretString")
    except (BotoCoreError, ClientError) as error:
        raise SecretsUnavailable(f"secret {secret_id} could not be read: {error}") from error
    if text is None:
        raise CredentialsError(f"secret {secret_id} has no SecretString")
    try:
        document = json.loads(text)
    except ValueError:
        # The parser's message may quote the value: it is a secret.
        raise CredentialsError(f"secret {secret_id} is not JSON") from None
    if not isinstance(document, dict):
        raise CredentialsError(f"secret {secret_id} is not a JSON object")
    _documents[secret_id] = (time.monotonic(), document)
    return document
