"""`make run`'s settings: environment variables, the AWS sandbox, ports, the generated secret."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_runtime.config import (
    ConfigError,
    PortTaken,
    check_port_free,
    config_from_env,
    generated_secret_file,
    port_taken_hint,
    read_generated_secret,
    sandbox_environment,
    write_generated_secret,
)


def test_defaults() -> None:
    config = config_from_env({"STRIPE_WEBHOOK_SECRET": "whsec_abc"})
    assert (config.port, config.aws_port, config.reconcile_every) == (3000, 5000, 300)
    assert config.aws_endpoint == "http://127.0.0.1:5000"
    assert config.webhook_base == "http://127.0.0.1:3000"
    assert config.webhook_secret == "whsec_abc"
    assert not config.webhook_secret_generated
    assert not config.api_key_configured
    assert config.visibility_timeout is None


def test_settings_from_the_environment() -> None:
    config = config_from_env(
        {
            "PORT": "3001",
            "AWS_PORT": "5001",
            "STRIPE_WEBHOOK_SECRET": "test:whsec_a,live:whsec_b",
            "STRIPE_API_KEY": "sk_test_123",
            "STRIPE_API_BASE": "http://127.0.0.1:12111",
            "RECONCILE_EVERY": "60",
            "LOCAL_VISIBILITY_TIMEOUT": "2",
        }
    )
    assert (config.port, config.aws_port, config.reconcile_every, config.visibility_timeout) == (
        3001,
        5001,
        60,
        2,
    )
    assert config.api_key_configured
    assert config.api_base == "http://127.0.0.1:12111"


def test_without_a_webhook_secret_one_is_generated() -> None:
    first, second = config_from_env({}), config_from_env({})
    assert first.webhook_secret_generated
    assert first.webhook_secret.startswith("whsec_local_")
    assert first.webhook_secret != second.webhook_secret
    assert "whsec" not in repr(first)  # never in a traceback or a log


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT must be a TCP port number"),
        ({"AWS_PORT": "70000"}, "AWS_PORT must be a TCP port number"),
        ({"PORT": "4000", "AWS_PORT": "4000"}, "both 4000"),
        ({"RECONCILE_EVERY": "0"}, "RECONCILE_EVERY must be a whole number of seconds above 0"),
        ({"LOCAL_VISIBILITY_TIMEOUT": "soon"}, "LOCAL_VISIBILITY_TIMEOUT"),
        ({"STRIPE_WEBHOOK_SECRET": "sk_test_wrongthing"}, r"webhook secret #1: expected whsec_"),
        ({"STRIPE_API_KEY": "pk_test_public"}, "API key #1"),
    ],
)
def test_bad_settings_are_named_without_their_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        config_from_env(env)
    for value in ("sk_test_wrongthing", "pk_test_public"):
        assert value not in str(raised.value)


def test_the_sandbox_points_every_client_at_moto_without_any_profile() -> None:
    env = {
        "AWS_PROFILE": "prod",
        "AWS_SESSION_TOKEN": "token",
        "AWS_ENDPOINT_URL_DYNAMODB": "https://dynamodb.eu-west-1.amazonaws.com",
        "STRIPE_SECRET_ID": "arn:aws:secretsmanager:...",
        "PATH": "/usr/bin",
    }
    sandbox_environment(env, config_from_env({"AWS_PORT": "5123", "STRIPE_WEBHOOK_SECRET": "whsec_x"}))
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5123"
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "local"
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert env["STRIPE_WEBHOOK_SECRET"] == "whsec_x"
    for gone in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_DYNAMODB", "STRIPE_SECRET_ID"):
        assert gone not in env
    assert env["PATH"] == "/usr/bin"


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_taken_port_fails_with_a_hint(listening_port: int) -> None:
    with pytest.raises(PortTaken, match=f"port {listening_port} on 127.0.0.1 is in use \\(PORT\\)") as raised:
        check_port_free("PORT", listening_port)
    assert f"PORT={listening_port + 1} make run" in str(raised.value)


def test_a_free_port_passes() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    check_port_free("AWS_PORT", free)


def test_port_5000_gets_the_macos_airplay_hint() -> None:
    assert "AirPlay Receiver: AWS_PORT=5001 make run" in port_taken_hint("AWS_PORT", 5000)
    assert "AirPlay" not in port_taken_hint("PORT", 5000)


@pytest.fixture
def temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    return tmp_path


def test_the_generated_secret_is_left_for_the_demo_readable_by_its_owner_only(temp_folder: Path) -> None:
    path = write_generated_secret(3000, "whsec_local_x")
    assert path == generated_secret_file(3000)
    assert path.parent.parent == temp_folder
    assert read_generated_secret(3000) == "whsec_local_x"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert write_generated_secret(3000, "whsec_local_y") == path  # a restart replaces it
    assert read_generated_secret(3000) == "whsec_local_y"
    assert read_generated_secret(3001) is None


def test_no_secret_goes_into_a_folder_others_can_read(temp_folder: Path) -> None:
    folder = generated_secret_file(3000).parent
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    assert write_generated_secret(3000, "whsec_local_x") is None
    assert not generated_secret_file(3000).exists()
