"""adapters.stripe_credentials without AWS: where the credentials are (parsed once with each function's
settings) and the secret document read through the SecretReader seam, cached for its max age.
GetSecretValue itself is tested against moto and boto3 in tests/integration/test_aws_json.py."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from adapters import stripe_credentials
from adapters.stripe_credentials import (
    MissingCredentials,
    SecretsUnavailable,
    StripeCredentialSource,
    api_keys,
    credential_source,
    webhook_secrets,
)
from domain.credentials import CredentialsError
from ops.targets import operator_credentials

ENVIRONMENT = {"STRIPE_WEBHOOK_SECRET": "test:whsec_env", "STRIPE_API_KEY": "sk_test_env,rk_live_env"}


@pytest.fixture(autouse=True)
def no_cached_secret() -> Iterator[None]:
    stripe_credentials.clear_cache()
    yield
    stripe_credentials.clear_cache()


class SecretStore:
    """A SecretReader over planned answers: text, None (no SecretString) or an exception to raise."""

    def __init__(self, *answers: str | Exception | None) -> None:
        self.answers = list(answers)
        self.reads: list[str] = []

    def __call__(self, secret_id: str) -> str | None:
        self.reads.append(secret_id)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_secret_id_names_where_both_values_are_and_the_environments_own_are_not_used() -> None:
    source = credential_source({"STRIPE_SECRET_ID": "arn:stripe", **ENVIRONMENT})
    assert source == StripeCredentialSource(secret_id="arn:stripe")
    store = SecretStore(
        json.dumps({"STRIPE_WEBHOOK_SECRET": "live:whsec_aws", "STRIPE_API_KEY": "sk_test_aws"})
    )
    source = dataclasses.replace(source, read=store)
    assert [(s.mode, s.value) for s in webhook_secrets(source)] == [("live", b"whsec_aws")]
    assert api_keys(source) == {"test": "sk_test_aws"}
    assert store.reads == ["arn:stripe"], "one read for both values"


def test_without_a_secret_id_the_environments_values_are_used_and_no_secret_is_read() -> None:
    for environment in (ENVIRONMENT, {"STRIPE_SECRET_ID": "", **ENVIRONMENT}):
        source = dataclasses.replace(credential_source(environment), read=SecretStore())
        assert source.secret_id is None
        assert [(s.mode, s.value) for s in webhook_secrets(source)] == [("test", b"whsec_env")]
        assert api_keys(source) == {"test": "sk_test_env", "live": "rk_live_env"}


def test_the_values_are_never_in_the_sources_repr() -> None:
    shown = repr(credential_source(ENVIRONMENT))
    assert "whsec_env" not in shown
    assert "sk_test_env" not in shown


def test_nothing_configured_is_no_webhook_secret_and_no_api_key() -> None:
    for source in (
        credential_source({}),
        credential_source({"STRIPE_WEBHOOK_SECRET": "", "STRIPE_API_KEY": ""}),
    ):
        with pytest.raises(MissingCredentials, match="webhook secret not configured"):
            webhook_secrets(source)
        assert api_keys(source) == {}


def test_the_document_is_read_once_per_max_age_and_again_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    store = SecretStore(
        json.dumps({"STRIPE_API_KEY": "sk_test_old"}), json.dumps({"STRIPE_API_KEY": "sk_test_new"})
    )
    source = StripeCredentialSource(secret_id="arn:stripe", read=store)
    assert api_keys(source) == api_keys(source) == {"test": "sk_test_old"}
    assert len(store.reads) == 1
    monkeypatch.setattr(stripe_credentials, "SECRET_MAX_AGE_SECONDS", 0)  # the cached read is now too old
    assert api_keys(source) == {"test": "sk_test_new"}
    assert len(store.reads) == 2


def test_a_failed_read_is_raised_and_not_cached() -> None:
    store = SecretStore(
        SecretsUnavailable("secret arn:stripe could not be read"), '{"STRIPE_API_KEY": "sk_test_1"}'
    )
    source = StripeCredentialSource(secret_id="arn:stripe", read=store)
    with pytest.raises(SecretsUnavailable, match="arn:stripe"):
        api_keys(source)
    assert api_keys(source) == {"test": "sk_test_1"}


@pytest.mark.parametrize(
    ("secret_string", "error"),
    [
        (None, "secret arn:stripe has no SecretString"),
        ("sk_test_not_json", "secret arn:stripe is not JSON"),
        ('["sk_test_1"]', "secret arn:stripe is not a JSON object"),
        ('{"STRIPE_API_KEY": ["sk_test_1"]}', "STRIPE_API_KEY in secret arn:stripe must be a string"),
        ('{"STRIPE_API_KEY": "pk_test_1"}', "API key #1: expected sk_test_"),
    ],
    ids=["no-secret-string", "not-json", "not-an-object", "not-a-string", "not-a-secret-key"],
)
def test_a_badly_filled_secret_is_a_credentials_error_that_quotes_no_value(
    secret_string: str | None, error: str
) -> None:
    source = StripeCredentialSource(secret_id="arn:stripe", read=SecretStore(secret_string, secret_string))
    with pytest.raises(CredentialsError) as raised:
        api_keys(source)
    assert error in str(raised.value)
    assert not [
        value for value in ("sk_test_not_json", "sk_test_1", "pk_test_1") if value in str(raised.value)
    ]
    assert not isinstance(raised.value, MissingCredentials)


class OperatorSecrets:
    """The boto3 Secrets Manager client the ops CLI's reader is given (ops.targets.ClientFactory)."""

    def __init__(self, secret_string: str) -> None:
        self.secret_string = secret_string
        self.asked: list[str] = []

    def __call__(self, service: str) -> OperatorSecrets:
        assert service == "secretsmanager"
        return self

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        self.asked.append(SecretId)
        return {"SecretString": self.secret_string}


def test_the_ops_cli_reads_its_targets_secret_with_its_own_reader_unless_its_key_is_set() -> None:
    clients = OperatorSecrets(json.dumps({"STRIPE_API_KEY": "rk_live_stack"}))
    factory: Any = clients
    assert api_keys(operator_credentials({}, "arn:stack", factory)) == {"live": "rk_live_stack"}
    assert clients.asked == ["arn:stack"]

    own_key = operator_credentials({"STRIPE_API_KEY": "sk_test_operator"}, "arn:stack", factory)
    assert api_keys(own_key) == {"test": "sk_test_operator"}
    for no_secret in (None, ""):
        assert api_keys(operator_credentials({}, no_secret, factory)) == {}
    assert clients.asked == ["arn:stack"], "neither read the stack's secret"
