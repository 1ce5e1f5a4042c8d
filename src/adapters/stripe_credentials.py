"""Stripe credentials at run time, for every function: parsed STRIPE_WEBHOOK_SECRET and STRIPE_API_KEY.

In AWS (STRIPE_SECRET_ID set) they come from that Secrets Manager secret, a JSON object with the
same keys and syntax as the environment variables, read through Powertools Parameters and cached
for SECRET_MAX_AGE_SECONDS. Locally (STRIPE_SECRET_ID unset) they come from the environment.
"""

from __future__ import annotations

import os
from typing import Any

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


def _secret_document(secret_id: str) -> dict[str, Any]:
    # Imported here, only when STRIPE_SECRET_ID is set: Powertools Parameters costs ~165 ms to import
    # in a fresh interpreter (~16 ms once boto3 is loaded), which local runs and tests need not pay.
    from aws_lambda_powertools.utilities.parameters import get_secret  # noqa: PLC0415
    from aws_lambda_powertools.utilities.parameters.exceptions import (  # noqa: PLC0415
        GetParameterError,
        TransformParameterError,
    )

    try:
        document = get_secret(secret_id, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    except TransformParameterError:
        # The transform's message may quote the value: it is a secret.
        raise CredentialsError(f"secret {secret_id} is not JSON") from None
    except GetParameterError as error:
        raise SecretsUnavailable(f"secret {secret_id} could not be read: {error}") from error
    if not isinstance(document, dict):
        raise CredentialsError(f"secret {secret_id} is not a JSON object")
    return document
