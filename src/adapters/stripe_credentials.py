"""Stripe credentials at run time, for every function: parsed STRIPE_WEBHOOK_SECRET and STRIPE_API_KEY.

Where they come from is a setting, parsed once per container with the function's others
(`credential_source`, into a `StripeCredentialSource` its settings object carries): in AWS
(STRIPE_SECRET_ID set) the Secrets Manager secret, a JSON object with the same keys and syntax as the
environment variables, read with one GetSecretValue and cached for SECRET_MAX_AGE_SECONDS, so that a
rotated value is picked up without a new container; locally (STRIPE_SECRET_ID unset) the two values
the environment gave the function.

One reader for every function, `read_secret`, through adapters.aws_json: the webhook's cold path never
imports boto3, and the other functions run with the execution role's credentials in the environment,
which is all that reader signs with. Not Powertools Parameters: the webhook's package carries no
Powertools (7 MB unzipped, ~165 ms to import cold; bench/cold_start.py), and what it needs of
Parameters is one call and a time-bound cache.

The one seam, `SecretReader`: the ops CLI gives its source its own boto3 reader (ops.targets), because
an operator's credentials come from AWS profiles, SSO or assumed roles, which only boto3's credential
chain resolves; the parsing and the cache are the same.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters import optional
from adapters.aws_json import SECRETS_MANAGER, AwsCallFailed, AwsJsonClient
from domain.credentials import CredentialsError, Mode, WebhookSecret, parse_api_keys, parse_webhook_secrets

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


# Reads a secret's SecretString (None when it has none); raises SecretsUnavailable.
type SecretReader = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class StripeCredentialSource:
    """Where a function's Stripe credentials are: the Secrets Manager secret `secret_id`, read with
    `read` (read_secret unless the caller brings its own, as the ops CLI does), else the two values
    given here (the local environment's, or the operator's STRIPE_API_KEY)."""

    secret_id: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    read: SecretReader | None = field(default=None, compare=False, repr=False)


def credential_source(env: Mapping[str, str]) -> StripeCredentialSource:
    """STRIPE_SECRET_ID of `env` when set (the secret then holds both values), else its
    STRIPE_WEBHOOK_SECRET and STRIPE_API_KEY; parsed with the function's settings, once per container."""
    secret_id = optional(env, SECRET_ID_VARIABLE)
    if secret_id is not None:
        return StripeCredentialSource(secret_id=secret_id)
    return StripeCredentialSource(
        webhook_secret=optional(env, WEBHOOK_SECRET_SETTING), api_key=optional(env, API_KEY_SETTING)
    )


def webhook_secrets(source: StripeCredentialSource) -> tuple[WebhookSecret, ...]:
    """The endpoint signing secrets; MissingCredentials when none are configured."""
    secrets = parse_webhook_secrets(stripe_setting(source, WEBHOOK_SECRET_SETTING, source.webhook_secret))
    if not secrets:
        raise MissingCredentials("webhook secret not configured")
    return secrets


def api_keys(source: StripeCredentialSource) -> dict[Mode, str]:
    """The API key per mode; empty when none is configured (Stripe API calls are then unavailable)."""
    return parse_api_keys(stripe_setting(source, API_KEY_SETTING, source.api_key))


def stripe_setting(source: StripeCredentialSource, name: str, given: str | None) -> str | None:
    """The raw text of STRIPE_WEBHOOK_SECRET or STRIPE_API_KEY: from the source's secret when it has
    one (cached for SECRET_MAX_AGE_SECONDS), else the value `given` with the source."""
    if source.secret_id is None:
        return given
    value = _secret_document(source.secret_id, source.read or read_secret).get(name)
    if value is not None and not isinstance(value, str):
        raise CredentialsError(f"{name} in secret {source.secret_id} must be a string")
    return value


# secret id -> (monotonic time read, parsed document); one process reads a secret at most once per max age.
_documents: dict[str, tuple[float, dict[str, Any]]] = {}


def clear_cache() -> None:
    """Forget the cached secret documents (tests; a process normally keeps them SECRET_MAX_AGE_SECONDS)."""
    _documents.clear()
    secrets_manager_client.cache_clear()


@functools.cache
def secrets_manager_client() -> AwsJsonClient:
    """The functions' Secrets Manager client (adapters.aws_json), created on first use."""
    return SECRETS_MANAGER.client()


def read_secret(secret_id: str) -> str | None:
    """GetSecretValue with the environment's credentials (adapters.aws_json); SecretsUnavailable."""
    try:
        text = secrets_manager_client().call("GetSecretValue", {"SecretId": secret_id}).get("SecretString")
    except AwsCallFailed as error:
        raise SecretsUnavailable(f"secret {secret_id} could not be read: {error}") from error
    if text is not None and not isinstance(text, str):
        raise CredentialsError(f"secret {secret_id} has a SecretString that is not text")
    return text


def _secret_document(secret_id: str, read: SecretReader) -> dict[str, Any]:
    cached = _documents.get(secret_id)
    if cached is not None and time.monotonic() - cached[0] < SECRET_MAX_AGE_SECONDS:
        return cached[1]
    text = read(secret_id)
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
