"""The local runtime's settings (ARCHITECTURE.md, "The local runtime") and the sandbox it runs in.

Everything comes from the environment: PORT, AWS_PORT, STRIPE_WEBHOOK_SECRET, STRIPE_API_KEY,
STRIPE_API_BASE, RECONCILE_EVERY, plus LOCAL_VISIBILITY_TIMEOUT (tests: the event queue's visibility
timeout in seconds instead of the template's, so that retries and the DLQ come within seconds).
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import stat
import tempfile
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from domain.credentials import CredentialsError, parse_api_keys, parse_webhook_secrets
from local_runtime.template import LOCAL_REGION

DEFAULT_PORT = 3000
DEFAULT_AWS_PORT = 5000
DEFAULT_RECONCILE_EVERY = 300
LOOPBACK = "127.0.0.1"
# Dummy credentials: moto accepts anything, and real ones must never be picked up by accident.
LOCAL_ACCESS_KEY = "local"
LOCAL_SECRET_KEY = "local"  # not a secret  # noqa: S105  # nosec B105
# Variables that could route an AWS call away from moto or to a real profile.
AWS_VARIABLES_TO_DROP = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    # Locally the Stripe settings come from the environment, never from Secrets Manager.
    "STRIPE_SECRET_ID",
)


class ConfigError(ValueError):
    """A setting is invalid; the message says which and how to fix it (never the secret's value)."""


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    port: int = DEFAULT_PORT
    aws_port: int = DEFAULT_AWS_PORT
    webhook_secret: str = field(default="", repr=False)
    webhook_secret_generated: bool = False
    api_key_configured: bool = False
    api_base: str | None = None
    reconcile_every: int = DEFAULT_RECONCILE_EVERY
    visibility_timeout: int | None = None

    @property
    def aws_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.aws_port}"

    @property
    def webhook_base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def config_from_env(env: Mapping[str, str]) -> RuntimeConfig:
    port = _port(env, "PORT", DEFAULT_PORT)
    aws_port = _port(env, "AWS_PORT", DEFAULT_AWS_PORT)
    if port == aws_port:
        raise ConfigError(f"PORT and AWS_PORT are both {port}: give them different values")
    secret = env.get("STRIPE_WEBHOOK_SECRET", "").strip()
    generated = not secret
    if generated:
        secret = "whsec_local_" + secrets.token_hex(16)
    try:
        parse_webhook_secrets(secret)
        api_keys = parse_api_keys(env.get("STRIPE_API_KEY"))
    except CredentialsError as error:
        raise ConfigError(str(error)) from None
    return RuntimeConfig(
        port=port,
        aws_port=aws_port,
        webhook_secret=secret,
        webhook_secret_generated=generated,
        api_key_configured=bool(api_keys),
        api_base=env.get("STRIPE_API_BASE") or None,
        reconcile_every=_positive(env, "RECONCILE_EVERY", DEFAULT_RECONCILE_EVERY),
        visibility_timeout=(
            _positive(env, "LOCAL_VISIBILITY_TIMEOUT", 0) if env.get("LOCAL_VISIBILITY_TIMEOUT") else None
        ),
    )


def sandbox_environment(env: MutableMapping[str, str], config: RuntimeConfig) -> None:
    """Point every AWS client this process creates at moto, with dummy credentials, in us-east-1."""
    for name in AWS_VARIABLES_TO_DROP:
        env.pop(name, None)
    for name in [n for n in env if n.startswith("AWS_ENDPOINT_URL_")]:
        env.pop(name)  # a per-service endpoint would win over AWS_ENDPOINT_URL
    env.update(
        AWS_ENDPOINT_URL=config.aws_endpoint,
        AWS_ACCESS_KEY_ID=LOCAL_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=LOCAL_SECRET_KEY,
        AWS_DEFAULT_REGION=LOCAL_REGION,
        AWS_REGION=LOCAL_REGION,
        # No shared config or credentials file: nothing from ~/.aws is read.
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        STRIPE_WEBHOOK_SECRET=config.webhook_secret,
    )


# -- ports ------------------------------------------------------------------------------------------


class PortTaken(OSError):
    """Another program listens on the port; the message says what to do."""


def port_taken_hint(variable: str, port: int) -> str:
    other = port + 1
    hint = f"port {port} on {LOOPBACK} is in use ({variable}). Stop what uses it or pick another: {variable}={other} make run"
    if variable == "AWS_PORT" and port == DEFAULT_AWS_PORT:
        hint += " (on macOS, 5000 is usually the AirPlay Receiver: AWS_PORT=5001 make run)"
    return hint


def check_port_free(variable: str, port: int) -> None:
    """Fail at once, with a hint, when a server could not bind the port (as servers bind it)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Servers set SO_REUSEADDR (werkzeug, http.server): probe the same way, so that connections
        # of a run that just ended (TIME_WAIT) do not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((LOOPBACK, port))
    except OSError as error:
        if error.errno in (errno.EADDRINUSE, errno.EACCES):
            raise PortTaken(error.errno, port_taken_hint(variable, port)) from None
        raise
    finally:
        probe.close()
    # On some systems a wildcard listener does not stop the bind above but still answers: ask.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
        client.settimeout(0.5)
        if client.connect_ex((LOOPBACK, port)) == 0:
            raise PortTaken(errno.EADDRINUSE, port_taken_hint(variable, port))


# -- the generated webhook secret, for `make demo` ----------------------------------------------------


def generated_secret_file(port: int) -> Path:
    """Where a run without STRIPE_WEBHOOK_SECRET leaves its generated secret for the demo (0600)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"stripe-sync-local-{uid}" / f"webhook-secret-{port}"


def write_generated_secret(port: int, secret: str) -> Path | None:
    """Write the file; None when its folder is not this user's alone (then the demo needs the env)."""
    path = generated_secret_file(port)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    folder = path.parent.lstat()
    if (
        not stat.S_ISDIR(folder.st_mode)
        or folder.st_mode & 0o077
        or (hasattr(os, "getuid") and folder.st_uid != os.getuid())
    ):
        return None  # someone else's, or readable by others: a shared temp folder must not get it
    path.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(secret)
    return path


def read_generated_secret(port: int) -> str | None:
    try:
        return generated_secret_file(port).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{name} must be a TCP port number (1-65535), is {text!r}")
    return int(text)


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) <= 0:
        raise ConfigError(f"{name} must be a whole number of seconds above 0, is {text!r}")
    return int(text)
