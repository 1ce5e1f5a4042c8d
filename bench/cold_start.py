"""Cold starts measured from the built Lambda packages (`sam build` output), as Lambda runs them.

Each package (.aws-sam/build/<Function>) is copied, made read-only, and imported in a fresh
interpreter with PYTHONDONTWRITEBYTECODE=1, no site-packages and, behind the package on sys.path, a
precompiled copy of the pinned boto3 (what the python3.13 runtime provides in /var/runtime). CPU time
(time.process_time, inside the child) is the figure: at 256 MB Lambda gives about a seventh of a vCPU,
so CPU, not wall time on this machine, is what a cold start costs there. Median of RUNS, the rows
interleaved run by run.

Rows:
* webhook cold path: import + the first request, verified, with its SQS client created and a real
  SendMessage to moto's server (secrets from the environment), against a naive handler packaged the
  same way (stripe SDK, boto3, Powertools Logger, `stripe.Webhook.construct_event`, an SQS client at
  module level). Target: ours <= 0.30 x naive. A second row reads the secret from Secrets Manager
  (moto), as in AWS, for reference.
* worker and reconciler: the handler import. Target: worker <= 600 ms.
* sizes: each package unzipped. Target: webhook <= 5 MB.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".aws-sam" / "build"
CACHE = ROOT / ".aws-sam" / "bench"
sys.path.insert(0, str(ROOT / "scripts"))
import package_function  # noqa: E402 - scripts/ is not a package

RUNS = 9
SECRET = "whsec_cold_start_0123456789abcdef"
WEBHOOK_RATIO_TARGET = 0.30
WORKER_IMPORT_TARGET_MS = 600.0
WEBHOOK_SIZE_TARGET_MB = 5.0
# The locked boto3 (uv.lock) with its dependencies, standing in for the runtime's.
RUNTIME_BOTO3 = ("boto3",)

NAIVE_HANDLER = '''"""The webhook as it is usually written: stripe SDK, boto3 and Powertools Logger at module level."""
import base64
import os

import boto3
import stripe
from aws_lambda_powertools import Logger

logger = Logger()
sqs = boto3.client("sqs")


def lambda_handler(event, context):
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8")
    signature = (event.get("headers") or {}).get("stripe-signature")
    try:
        stripe_event = stripe.Webhook.construct_event(body, signature, os.environ["STRIPE_WEBHOOK_SECRET"])
    except (ValueError, stripe.SignatureVerificationError) as error:
        logger.warning("webhook rejected", reason=str(error))
        return {"statusCode": 400, "body": '{"error": "bad request"}'}
    obj = stripe_event.data.object
    group = getattr(obj, "customer", None) or getattr(obj, "id", None) or stripe_event.id
    sqs.send_message(
        QueueUrl=os.environ["QUEUE_URL"], MessageBody=body,
        MessageGroupId=group, MessageDeduplicationId=stripe_event.id,
    )
    logger.info("webhook queued", event_id=stripe_event.id)
    return {"statusCode": 200, "body": '{"received": true}'}
'''
# The naive handler's own imports; the package takes them and their dependencies at the locked versions.
NAIVE_REQUIREMENTS = ("aws-lambda-powertools", "stripe")

CHILD = """
import json, sys, time
started = time.process_time()
import {module} as handler
imported = time.process_time()
result = None
if {invoke}:
    class Context:
        aws_request_id = "cold-start"
        function_name = "bench"
        memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
        def get_remaining_time_in_millis(self):
            return 10_000
    with open(sys.argv[1]) as file:
        event = json.load(file)
    result = handler.lambda_handler(event, Context())["statusCode"]
finished = time.process_time()
print(json.dumps({{"import_ms": (imported - started) * 1000, "total_ms": (finished - started) * 1000,
                  "status": result}}))
"""


def run() -> None:
    packages = {name: BUILD / name for name in package_function.HANDLER_MODULES}
    missing = [name for name, path in packages.items() if not (path / "handlers").is_dir()]
    if missing:
        raise RuntimeError(f"no built package for {', '.join(missing)}: run `make build` first")
    runtime = runtime_boto3()
    naive = naive_package()
    with writable_again_after() as scratch, moto_server() as endpoint:
        copies = {name: read_only_copy(path, Path(scratch) / name) for name, path in packages.items()}
        copies["naive"] = read_only_copy(naive, Path(scratch) / "naive")
        queue_url, secret_arn = aws_resources(endpoint)
        event_file = Path(scratch) / "event.json"
        event_file.write_text(json.dumps(signed_request()))
        base = child_environment(endpoint, queue_url)

        secrets_in_env = {"STRIPE_WEBHOOK_SECRET": SECRET}
        # (package, module, first request too?, environment): interleaved run by run, so that a
        # change in the machine's load (it is shared) hits every row alike.
        rows = {
            "ours": ("WebhookFunction", "handlers.webhook", True, secrets_in_env),
            "naive": ("naive", "naive_webhook", True, secrets_in_env),
            "ours_secret": ("WebhookFunction", "handlers.webhook", True, {"STRIPE_SECRET_ID": secret_arn}),
            "worker": ("WorkerFunction", "handlers.worker", False, {}),
            "reconcile": ("ReconcileFunction", "handlers.reconcile", False, {}),
            "webhook_import": ("WebhookFunction", "handlers.webhook", False, {}),
            "boto3_import": ("WebhookFunction", "boto3", False, {}),
        }
        samples: dict[str, list[float]] = {row: [] for row in rows}
        for _ in range(RUNS):
            for row, (name, module, invoke, extra) in rows.items():
                samples[row].append(
                    child_run(
                        copies[name],
                        runtime,
                        module,
                        invoke=invoke,
                        event_file=event_file,
                        environment=base | extra,
                    )
                )
        median = {row: statistics.median(values) for row, values in samples.items()}
        ours, naive_ms, ours_secret = median["ours"], median["naive"], median["ours_secret"]
        worker, reconcile, webhook_import = median["worker"], median["reconcile"], median["webhook_import"]
        boto3_import = median["boto3_import"]

    sizes = {name: tree_size(path) for name, path in packages.items()} | {"naive": tree_size(naive)}
    ratio = ours / naive_ms
    print("cold start from the built packages: read-only copy, fresh interpreter, no bytecode cache,")
    print(f"pinned boto3 precompiled behind the package; CPU ms (process_time), median of {RUNS}")
    print(f"    {'':44}{'measured':>10}   target")
    print(f"    {'webhook cold path (import + first request)':44}{ours:10.1f}")
    print(f"    {'naive webhook, packaged the same way':44}{naive_ms:10.1f}")
    print(f"    {'webhook / naive':44}{ratio:10.2f}   {verdict(ratio <= WEBHOOK_RATIO_TARGET, '<= 0.30')}")
    print(f"    {'webhook cold path, secret from Secrets Manager':44}{ours_secret:10.1f}   (for reference)")
    print(f"    {'webhook import only':44}{webhook_import:10.1f}   (for reference)")
    print(f"    {'boto3 import alone (naive webhook only)':44}{boto3_import:10.1f}   (for reference)")
    print(
        f"    {'worker import':44}{worker:10.1f}   {verdict(worker <= WORKER_IMPORT_TARGET_MS, '<= 600 ms')}"
    )
    print(f"    {'reconciler import':44}{reconcile:10.1f}   (for reference)")
    print("package sizes, unzipped (zip as sam deploy uploads it)")
    for name, (unzipped, zipped) in sizes.items():
        target = (
            verdict(unzipped / 1e6 <= WEBHOOK_SIZE_TARGET_MB, "<= 5 MB") if name == "WebhookFunction" else ""
        )
        print(f"    {name:44}{unzipped / 1e6:8.2f} MB ({zipped / 1e6:.2f} MB zipped)   {target}")


def verdict(met: bool, target: str) -> str:
    return f"{target} {'met' if met else 'MISSED'}"


# --- packages -------------------------------------------------------------------------------------


def runtime_boto3() -> Path:
    """The locked boto3 with its dependencies, compiled, as /var/runtime holds the runtime's."""
    lock = package_function.locked_runtime()
    closure = package_function.function_closure(RUNTIME_BOTO3, lock, provided=frozenset())
    target = CACHE / (
        "runtime-" + "-".join(f"{name}{version}" for name, version in sorted(closure.items()))[:120]
    )
    if not (target / ".complete").exists():
        package_function.empty(target)
        package_function.install_locked(closure, lock, target)
        package_function.compile_bytecode(target)
        (target / ".complete").touch()
    return target


def naive_package() -> Path:
    """The naive handler with its own third-party closure, built as our packages are."""
    lock = package_function.locked_runtime()
    closure = package_function.function_closure(NAIVE_REQUIREMENTS, lock)
    pins = "\n".join(f"{name}=={version}" for name, version in sorted(closure.items()))
    key = hashlib.sha256((NAIVE_HANDLER + pins).encode()).hexdigest()[:12]
    target = CACHE / f"naive-{key}"
    if not (target / ".complete").exists():
        package_function.empty(target)
        (target / "naive_webhook.py").write_text(NAIVE_HANDLER)
        package_function.install_locked(closure, lock, target)
        package_function.compile_bytecode(target)
        (target / ".complete").touch()
    return target


def read_only_copy(source: Path, target: Path) -> Path:
    """As /var/task: nothing can be written, so no bytecode cache can appear."""
    shutil.copytree(source, target)
    for directory, _, files in os.walk(target):
        for name in files:
            Path(directory, name).chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    for directory, _, _ in sorted(os.walk(target), key=lambda entry: -len(entry[0])):
        Path(directory).chmod(
            stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
        )
    return target


@contextmanager
def writable_again_after() -> Iterator[str]:
    """A temporary directory whose read-only copies can still be removed at the end."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            yield scratch
        finally:
            for directory, _, _ in os.walk(scratch):
                Path(directory).chmod(stat.S_IRWXU)


def tree_size(path: Path) -> tuple[int, int]:
    """(bytes unzipped, bytes as a deflated zip) of the package's files."""
    files = [file for file in path.rglob("*") if file.is_file() and file.name != ".complete"]
    unzipped = sum(file.stat().st_size for file in files)
    with tempfile.TemporaryDirectory() as scratch:
        archive = shutil.make_archive(str(Path(scratch) / "package"), "zip", root_dir=path)
        zipped = Path(archive).stat().st_size
    return unzipped, zipped


# --- children -------------------------------------------------------------------------------------


def child_environment(endpoint: str, queue_url: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",  # moto's dummy credentials
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "QUEUE_URL": queue_url,
        "SIGNATURE_TOLERANCE_SECONDS": "300",
        "POWERTOOLS_SERVICE_NAME": "stripe-sync-webhook",
        "POWERTOOLS_METRICS_NAMESPACE": "StripeSync/bench",
        "LOG_LEVEL": "INFO",
    }


def child_run(
    package: Path, runtime: Path, module: str, *, invoke: bool, event_file: Path, environment: dict[str, str]
) -> float:
    """CPU ms of one cold start (import, then the first request when `invoke`) in a fresh interpreter."""
    code = CHILD.format(module=module, invoke=invoke)
    # -S: no site-packages (only the package, then the runtime's boto3); -s: no user site.
    command = [sys.executable, "-s", "-S", "-c", code, str(event_file)]
    completed = subprocess.run(  # noqa: S603 - fixed arguments
        command,
        env=environment | {"PYTHONPATH": f"{package}{os.pathsep}{runtime}"},
        capture_output=True,
        text=True,
        check=False,
        cwd=package,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith('{"import_ms"')]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{module} failed:\n{completed.stdout}\n{completed.stderr}")
    result = json.loads(lines[-1])
    if invoke and result["status"] != 200:
        raise RuntimeError(f"{module} answered {result['status']}:\n{completed.stdout}")
    return float(result["total_ms"] if invoke else result["import_ms"])


def signed_request() -> dict[str, Any]:
    """An HTTP API (payload 2.0) request carrying a signed customer.subscription.updated event (the
    webhook benchmark's, built from events/)."""
    from bench.webhook import subscription_event_text
    from events import lambda_events

    return lambda_events.webhook_event(subscription_event_text().encode(), SECRET)


# --- moto -----------------------------------------------------------------------------------------


@contextmanager
def moto_server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(  # noqa: S603 - fixed arguments
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()  # noqa: S310 - loopback
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def aws_resources(endpoint: str) -> tuple[str, str]:
    """The FIFO queue both handlers send to and the secret ours reads in the second row."""
    import boto3

    options: dict[str, Any] = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "bench",
        "aws_secret_access_key": "bench",  # moto's dummy credentials
    }
    queue = boto3.client("sqs", **options).create_queue(
        QueueName="cold-start.fifo", Attributes={"FifoQueue": "true"}
    )
    secret = boto3.client("secretsmanager", **options).create_secret(
        Name="cold-start/stripe", SecretString=json.dumps({"STRIPE_WEBHOOK_SECRET": SECRET})
    )
    return str(queue["QueueUrl"]), str(secret["ARN"])
