"""`make run` as the end-to-end tests drive it: harness.load's RuntimeProcess (the one starter of
`python -m local_runtime`), driven over HTTP, read back from moto and through `python -m ops --local`.

The runtime is started with LOCAL_VISIBILITY_TIMEOUT=5 (seconds), so that a message whose invocation
failed as a whole comes back after five seconds instead of the template's 720 (and not while a loaded
machine is still applying it: at one second, a second poller received such batches again), and at the template's
LOG_LEVEL (INFO), so that its output is the console users read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from entitlements_reader import CustomerEntitlements, parse_entitlements_item
from events import lambda_events, scenarios
from harness.load.runtime_process import ROOT, SCRUBBED_VARIABLES, RuntimeProcess
from local_runtime.template import read_template

SECRET = "whsec_e2e_local_runtime_0123456789abcdef"
STACK = read_template()
SCRUBBED = SCRUBBED_VARIABLES
__all__ = ["ROOT", "SCRUBBED", "SECRET", "STACK", "Runtime", "start_runtime", "stop_runtime", "story"]


def wait_until[T](check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := check()) is not None and value is not False:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def scrubbed_environment() -> dict[str, str]:
    """The test process's environment without the developer's Stripe and AWS settings."""
    return {k: v for k, v in os.environ.items() if k not in SCRUBBED}


def run_module(*argv: str, timeout: float = 60, **variables: str) -> subprocess.CompletedProcess[str]:
    """`python -m <argv>` from the repository root, as a user runs it beside `make run`: the scrubbed
    environment plus `variables`."""
    env = scrubbed_environment()
    env.update(variables)
    return subprocess.run(  # noqa: S603 - our own modules
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Runtime:
    started: RuntimeProcess

    @property
    def port(self) -> int:
        return self.started.port

    @property
    def aws_port(self) -> int:
        return self.started.aws_port

    @property
    def output(self) -> str:
        return self.started.output()

    def request(
        self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=body,
            headers=headers or {},
            method="POST" if body is not None else "GET",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def post_event(self, event: dict[str, Any], secret: str = SECRET) -> tuple[bytes, int]:
        body = scenarios.render(event)
        header = lambda_events.signature_header(body, secret)
        status, _ = self.request(
            "/webhooks/stripe", body, {"Content-Type": "application/json", "Stripe-Signature": header}
        )
        return body, status

    def aws(self, service: str) -> Any:
        return self.started.aws(service)

    def entitlements(self, customer: str) -> CustomerEntitlements | None:
        item = self.aws("dynamodb").get_item(
            TableName=STACK.table.name,
            Key={"pk": {"S": f"CUSTOMER#{customer}"}, "sk": {"S": "ENTITLEMENTS"}},
            ConsistentRead=True,
        )
        return parse_entitlements_item(item["Item"]) if "Item" in item else None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`python -m ops --local`, as operators run it."""
        return run_module("ops", "--local", *args, AWS_PORT=str(self.aws_port))

    def parked(self) -> list[dict[str, Any]]:
        listed = self.cli("--json", "dlq", "list")
        assert listed.returncode == 0, listed.stderr
        messages: list[dict[str, Any]] = json.loads(listed.stdout)["messages"]
        return messages

    def parked_event(self, event_id: str) -> dict[str, Any] | None:
        return next((m for m in self.parked() if m["event_id"] == event_id), None)


def start_runtime(log: Path, **settings: str) -> Runtime:
    started = RuntimeProcess(
        log, SECRET, settings={"LOCAL_VISIBILITY_TIMEOUT": "5", "LOG_LEVEL": "INFO", **settings}
    )
    started.start()
    return Runtime(started)


def stop_runtime(runtime: Runtime, signum: int = signal.SIGINT) -> int | None:
    return runtime.started.stop(signum)


def story(name: str, customer: str) -> scenarios.Scenario:
    params = replace(scenarios.DEFAULT_PARAMS, customer_id=customer, user_id=f"user_{customer}")
    return scenarios.build(name, params, ends_at=int(time.time()))
