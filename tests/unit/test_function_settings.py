"""Each function's settings: parsed once per container into one frozen object, a bad value refused
with a SettingsError that names the variable."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters import SettingsError, table_items
from adapters.settings import (
    DEFAULT_RECORD_RESERVE_SECONDS,
    Settings,
    TableSettings,
    load_settings,
    reconcile_settings,
)
from adapters.stripe_credentials import StripeCredentialSource
from domain.reconcile import InvalidRequest
from handlers import entitlements_changed, eventbridge, log_settings, reconcile, webhook, worker

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/stripe-sync-events.fifo"
DLQ = "https://sqs.us-east-1.amazonaws.com/123456789012/stripe-sync-dlq.fifo"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Sets the given variables (None: unset) on top of an environment without any of the settings."""
    for name in (
        "TABLE_NAME",
        "QUEUE_URL",
        "DEAD_LETTER_QUEUE_URL",
        "EVENT_BUS_NAME",
        "STRIPE_API_BASE",
        "STRIPE_SECRET_ID",
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_API_KEY",
        "RECORD_RESERVE_SECONDS",
        "ENTITLEMENT_RULES_FILE",
        "SIGNATURE_TOLERANCE_SECONDS",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "LOG_LEVEL",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "RECONCILE_DRY_RUN",
        "RECONCILE_TIME_BUDGET_SECONDS",
        "RECONCILE_MAX_REQUESTS_PER_SECOND",
    ):
        monkeypatch.delenv(name, raising=False)
    # worker.settings() binds the table's models: the tests after these keep the binding they had.
    for attribute in ("table_name", "region", "host", "aws_access_key_id", "aws_secret_access_key"):
        monkeypatch.setattr(
            table_items.SyncItem.Meta, attribute, getattr(table_items.SyncItem.Meta, attribute)
        )

    def set_env(**values: str | None) -> None:
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)

    return set_env


def refused(parse: Callable[[], Any]) -> SettingsError:
    with pytest.raises(SettingsError) as raised:
        parse()
    return raised.value


# The worker's


def test_the_worker_settings_hold_every_variable_it_reads(env: Callable[..., None]) -> None:
    env(
        TABLE_NAME="stripe-sync-prod",
        QUEUE_URL=QUEUE,
        DEAD_LETTER_QUEUE_URL=DLQ,
        STRIPE_API_BASE="http://127.0.0.1:12111",
        STRIPE_API_KEY="sk_test_1",
        RECORD_RESERVE_SECONDS="30",
        AWS_REGION="eu-west-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL="http://127.0.0.1:5000",
        AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:8000",
    )
    settings = load_settings()
    assert settings.table == TableSettings("stripe-sync-prod", "eu-west-1", "http://127.0.0.1:8000")
    assert (settings.queue_url, settings.dead_letter_queue_url, settings.stripe_api_base) == (
        QUEUE,
        DLQ,
        "http://127.0.0.1:12111",
    )
    assert (settings.record_reserve_seconds, settings.record_reserve_ignored) == (30, None)
    assert settings.stripe == StripeCredentialSource(api_key="sk_test_1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.queue_url = None  # type: ignore[misc]


def test_the_worker_defaults(env: Callable[..., None]) -> None:
    env(TABLE_NAME="t", AWS_DEFAULT_REGION="us-west-2", AWS_ENDPOINT_URL="http://127.0.0.1:5000")
    settings = load_settings()
    assert settings.table == TableSettings("t", "us-west-2", "http://127.0.0.1:5000")
    assert (settings.queue_url, settings.dead_letter_queue_url, settings.stripe_api_base) == (
        None,
        None,
        None,
    )
    assert settings.record_reserve_seconds == DEFAULT_RECORD_RESERVE_SECONDS
    assert settings.stripe == StripeCredentialSource()
    assert load_settings({"TABLE_NAME": "t"}).table == TableSettings("t", None, None)


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"TABLE_NAME": None}, "TABLE_NAME"),
        ({"TABLE_NAME": ""}, "TABLE_NAME"),
        ({"ENTITLEMENT_RULES_FILE": "/nonexistent/rules.toml"}, "ENTITLEMENT_RULES_FILE"),
    ],
)
def test_a_bad_worker_setting_is_named(
    env: Callable[..., None], values: dict[str, str | None], variable: str
) -> None:
    env(TABLE_NAME="t")
    env(**values)
    error = refused(load_settings)
    assert error.variable == variable
    assert variable in str(error)


def test_rules_that_do_not_parse_are_named(env: Callable[..., None], tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("this is = = not toml")
    env(TABLE_NAME="t", ENTITLEMENT_RULES_FILE=str(rules))
    error = refused(load_settings)
    assert (error.variable, str(rules) in str(error)) == ("ENTITLEMENT_RULES_FILE", True)


def test_a_reserve_that_is_not_a_whole_number_falls_back_to_the_default_and_is_kept_for_the_warning(
    env: Callable[..., None],
) -> None:
    env(TABLE_NAME="t", RECORD_RESERVE_SECONDS="-5")
    settings = load_settings()
    assert (settings.record_reserve_seconds, settings.record_reserve_ignored) == (
        DEFAULT_RECORD_RESERVE_SECONDS,
        "-5",
    )


def test_the_worker_parses_once_per_container_and_binds_the_table_with_it(
    env: Callable[..., None], new_container: Callable[[], None]
) -> None:
    env(TABLE_NAME="stripe-sync-first", RECORD_RESERVE_SECONDS="10", AWS_REGION="eu-central-1")
    first = worker.settings()
    assert (table_items.SyncItem.Meta.table_name, table_items.SyncItem.Meta.region) == (
        "stripe-sync-first",
        "eu-central-1",
    )
    env(TABLE_NAME="stripe-sync-second", RECORD_RESERVE_SECONDS="20")

    assert worker.settings() is first
    assert worker.record_reserve_ms() == 10_000
    assert table_items.SyncItem.Meta.table_name == "stripe-sync-first"

    new_container()
    assert worker.record_reserve_ms() == 20_000
    assert table_items.SyncItem.Meta.table_name == "stripe-sync-second"


def test_a_failed_parse_is_not_cached(env: Callable[..., None]) -> None:
    refused(worker.settings)
    env(TABLE_NAME="t")
    assert isinstance(worker.settings(), Settings)


def test_the_table_settings_bind_the_models_credentials_included(env: Callable[..., None]) -> None:
    # `env` puts the models' binding back afterwards: a later test binding only a table name would
    # otherwise keep this endpoint and region.
    TableSettings("bound", "eu-north-1", "http://127.0.0.1:5123", credentials=("local", "secret")).bind()
    meta = table_items.SyncItem.Meta
    assert (meta.table_name, meta.region, meta.host) == ("bound", "eu-north-1", "http://127.0.0.1:5123")
    assert (meta.aws_access_key_id, meta.aws_secret_access_key) == ("local", "secret")
    assert "secret" not in repr(TableSettings("t", None, None, credentials=("local", "secret")))


# The reconciler's


def test_the_reconciler_settings_and_the_keyword_arguments_that_win(env: Callable[..., None]) -> None:
    env(
        TABLE_NAME="t",
        QUEUE_URL=QUEUE,
        STRIPE_SECRET_ID="arn:secret",
        AWS_REGION="eu-west-1",
        AWS_ENDPOINT_URL="http://127.0.0.1:5000",
        RECONCILE_DRY_RUN="true",
    )
    settings = reconcile_settings()
    assert settings.table == TableSettings("t", "eu-west-1", "http://127.0.0.1:5000")
    assert (settings.queue_url, settings.stripe, settings.options.dry_run) == (
        QUEUE,
        StripeCredentialSource(secret_id="arn:secret"),
        True,
    )
    given = TableSettings("other", "us-east-1", None, credentials=("local", "local"))
    overridden = reconcile_settings(table=given, queue_url="q", stripe=StripeCredentialSource(secret_id="s"))
    assert (overridden.table, overridden.queue_url, overridden.stripe) == (
        given,
        "q",
        StripeCredentialSource(secret_id="s"),
    )
    assert reconcile_settings({}, table_name="named").table == TableSettings("named", None, None)


def test_a_bad_reconciler_setting_is_named(env: Callable[..., None]) -> None:
    assert refused(lambda: reconcile_settings({})).variable == "TABLE_NAME"
    with pytest.raises(InvalidRequest, match="RECONCILE_MAX_REQUESTS_PER_SECOND"):
        reconcile_settings({"TABLE_NAME": "t", "RECONCILE_MAX_REQUESTS_PER_SECOND": "fast"})


def test_the_reconciler_parses_once_per_container(env: Callable[..., None]) -> None:
    env(TABLE_NAME="t", RECONCILE_TIME_BUDGET_SECONDS="60")
    first = reconcile.settings()
    env(TABLE_NAME="changed", RECONCILE_TIME_BUDGET_SECONDS="not a number")
    assert reconcile.settings() is first
    assert first.options.time_budget_seconds == 60


# The light functions'


def test_the_webhook_settings_and_each_bad_value(
    env: Callable[..., None], new_container: Callable[[], None]
) -> None:
    env(QUEUE_URL=QUEUE, SIGNATURE_TOLERANCE_SECONDS="60")
    assert webhook.settings() == webhook.WebhookSettings(
        queue_url=QUEUE, tolerance=60, stripe=StripeCredentialSource()
    )
    new_container()
    env(SIGNATURE_TOLERANCE_SECONDS=None)
    assert webhook.settings().tolerance == 300
    for values, variable in (
        ({"QUEUE_URL": None}, "QUEUE_URL"),
        ({"SIGNATURE_TOLERANCE_SECONDS": "0"}, "SIGNATURE_TOLERANCE_SECONDS"),
        ({"SIGNATURE_TOLERANCE_SECONDS": "five minutes"}, "SIGNATURE_TOLERANCE_SECONDS"),
    ):
        new_container()
        env(QUEUE_URL=QUEUE, SIGNATURE_TOLERANCE_SECONDS=None)
        env(**values)
        error = refused(webhook.settings)
        assert (error.variable, variable in str(error)) == (variable, True)
        assert variable in webhook.MISCONFIGURED


def test_the_webhook_answers_from_the_settings_of_its_first_request(env: Callable[..., None]) -> None:
    env(QUEUE_URL=QUEUE)
    first = webhook.settings()
    env(QUEUE_URL=None, SIGNATURE_TOLERANCE_SECONDS="not a number")
    assert webhook.settings() is first


def test_where_the_stripe_credentials_are_is_read_at_the_first_invocation_only(
    env: Callable[..., None],
) -> None:
    env(TABLE_NAME="t", QUEUE_URL=QUEUE, STRIPE_WEBHOOK_SECRET="whsec_first", STRIPE_API_KEY="sk_test_first")
    webhook_first, worker_first, reconcile_first = webhook.settings(), worker.settings(), reconcile.settings()
    env(STRIPE_SECRET_ID="arn:later", STRIPE_WEBHOOK_SECRET="whsec_later", STRIPE_API_KEY="sk_test_later")
    assert webhook.settings().stripe == StripeCredentialSource(
        webhook_secret="whsec_first", api_key="sk_test_first"
    )
    assert worker.settings().stripe is worker_first.stripe
    assert reconcile.settings().stripe is reconcile_first.stripe
    assert webhook_first.stripe == worker_first.stripe == reconcile_first.stripe


def test_the_eventbridge_ingress_settings(
    env: Callable[..., None], new_container: Callable[[], None]
) -> None:
    assert refused(eventbridge.settings).variable == "QUEUE_URL"
    env(QUEUE_URL=QUEUE)
    first = eventbridge.settings()
    assert first == eventbridge.EventBridgeSettings(queue_url=QUEUE)
    env(QUEUE_URL=None)
    assert eventbridge.settings() is first
    new_container()
    with pytest.raises(eventbridge.NotQueued, match="QUEUE_URL is not set"):
        eventbridge.lambda_handler({}, None)


def test_the_publisher_settings(env: Callable[..., None], new_container: Callable[[], None]) -> None:
    env(EVENT_BUS_NAME="bus")
    assert refused(entitlements_changed.settings).variable == "DEAD_LETTER_QUEUE_URL"
    env(EVENT_BUS_NAME=None, DEAD_LETTER_QUEUE_URL=DLQ)
    assert refused(entitlements_changed.settings).variable == "EVENT_BUS_NAME"
    env(EVENT_BUS_NAME="bus")
    first = entitlements_changed.settings()
    assert first == entitlements_changed.PublisherSettings(bus="bus", dead_letters=DLQ)
    env(EVENT_BUS_NAME="other")
    assert entitlements_changed.settings() is first


def test_the_log_settings_of_the_light_functions(
    env: Callable[..., None], new_container: Callable[[], None]
) -> None:
    env(LOG_LEVEL="warning")
    config = log_settings("stripe-sync-eventbridge")
    assert (config.service, config.namespace, config.logs("INFO"), config.logs("ERROR")) == (
        "stripe-sync-eventbridge",
        "StripeSync",
        False,
        True,
    )
    env(LOG_LEVEL="DEBUG", POWERTOOLS_SERVICE_NAME="named", POWERTOOLS_METRICS_NAMESPACE="StripeSync/dev")
    assert log_settings("stripe-sync-eventbridge") is config
    new_container()
    changed = log_settings("stripe-sync-eventbridge")
    assert (changed.service, changed.namespace, changed.logs("DEBUG")) == ("named", "StripeSync/dev", True)
    env(LOG_LEVEL="chatty")
    new_container()
    assert (log_settings("x").logs("DEBUG"), log_settings("x").logs("INFO")) == (False, True)
