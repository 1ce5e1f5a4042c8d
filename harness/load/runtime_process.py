"""`python -m local_runtime` as a subprocess on spare loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from local_runtime.config import LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY, LOOPBACK
from local_runtime.template import LOCAL_REGION, LocalStack, read_template

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_PATH = "/webhooks/stripe"
# Variables of the caller's shell that must not reach the runtime under load.
SCRUBBED_VARIABLES = (
    "STRIPE_API_KEY",
    "STRIPE_SECRET_ID",
    "STRIPE_API_BASE",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "LOG_LEVEL",
    "ENTITLEMENT_RULES_FILE",
    "LOCAL_VISIBILITY_TIMEOUT",
)
HEALTH_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.25


class LoadError(RuntimeError):
    """The load run cannot go on (the runtime did not start, or died); the message says why."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class RuntimeProcess:
    """`python -m local_runtime` on spare loopback ports, its output in `log`; stopped with Ctrl-C."""

    def __init__(
        self,
        log: Path,
        secret: str,
        *,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.log = log
        self.secret = secret
        self.port = free_port()
        self.aws_port = free_port()
        self.stack: LocalStack = read_template()
        self._settings = dict(settings or {})
        self._process: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    @property
    def webhook_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{WEBHOOK_PATH}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_VARIABLES}
        env.update(
            PORT=str(self.port),
            AWS_PORT=str(self.aws_port),
            STRIPE_WEBHOOK_SECRET=self.secret,
            LOG_LEVEL="DEBUG",  # the functions' JSON lines, with their millisecond timestamps
            PYTHONUNBUFFERED="1",
        )
        env.update(self._settings)
        with self.log.open("wb") as sink:
            self._process = subprocess.Popen(  # our own module, fixed arguments  # nosec B603
                [sys.executable, "-m", "local_runtime"],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        while not self._healthy():
            if self._process.poll() is not None:
                raise LoadError(f"the runtime exited with {self._process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise LoadError(f"the runtime did not answer /health within {HEALTH_TIMEOUT_SECONDS:.0f} s")
            time.sleep(POLL_SECONDS)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.port}/health", timeout=2) as answer:  # nosec B310
                return bool(answer.status == 200)
        except OSError:
            return False

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def memory_mb(self) -> int | None:
        """Resident memory of the runtime and its children (moto's server), from Linux's /proc; None
        where that cannot be read."""
        if self._process is None:
            return None
        total = 0
        for pid in [self._process.pid, *_children(self._process.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
            except OSError:
                return None
            line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), None)
            if line is None:
                return None
            total += int(line.split()[1])
        return total // 1024

    def stop(self, signum: int = signal.SIGINT) -> int | None:
        """Ctrl-C by default; `signum` as a service manager would stop it (SIGTERM)."""
        process = self._process
        if process is None:
            return self.exit_code
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.exit_code = process.returncode
        self._process = None
        return self.exit_code

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def aws(self, service: str) -> Any:
        import boto3  # noqa: PLC0415 - only with a runtime to talk to

        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=f"http://{LOOPBACK}:{self.aws_port}",
            region_name=LOCAL_REGION,
            aws_access_key_id=LOCAL_ACCESS_KEY,
            aws_secret_access_key=LOCAL_SECRET_KEY,
        )


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    except OSError:
        return []
    return [int(child) for child in text.split()]
