"""Lambda packages: each holds what its handler imports, compiled to bytecode Lambda can use as is.

The webhook's and the worker's packages are built for real here (the worker's from the locked wheels,
which uv caches); the others' closures are checked against uv.lock without installing anything. `make build`
(sam build) builds all three, bench/cold_start.py measures them.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from events import lambda_events
from local_runtime.template import TEMPLATE_PATH, load_template

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import package_function  # noqa: E402 - scripts/ is not a package

# local_runtime, ops and the reader are in src/ but no function's; the rest lives outside src/.
NEVER_PACKAGED = ("local_runtime", "ops", "entitlements_reader", "tests", "harness", "events", "bench")


@pytest.fixture(scope="module")
def lock() -> dict[str, package_function.LockedDistribution]:
    return package_function.locked_runtime()


def closure_of(function: str, lock: dict[str, package_function.LockedDistribution]) -> dict[str, str]:
    _, external = package_function.import_closure(package_function.HANDLER_MODULES[function])
    roots = package_function.distribution_roots(external - package_function.RUNTIME_PROVIDED)
    return package_function.function_closure(roots, lock)


def test_the_packaged_functions_are_the_templates_with_their_handlers() -> None:
    template = load_template(TEMPLATE_PATH.read_text(encoding="utf-8"))
    functions = {
        name: body["Properties"]["Handler"]
        for name, body in template["Resources"].items()
        if body["Type"] == "AWS::Serverless::Function"
    }
    assert {
        name: f"{module}.lambda_handler" for name, module in package_function.HANDLER_MODULES.items()
    } == (functions)


def test_the_webhook_closure_is_its_handler_the_domain_it_uses_and_two_adapters() -> None:
    modules, external = package_function.import_closure("handlers.webhook")
    assert modules == {
        "handlers",
        "handlers.webhook",
        "adapters",
        "adapters.aws_json",
        "adapters.event_queue",
        "adapters.stripe_credentials",
        "domain",
        "domain.credentials",
        "domain.ingress",
        "domain.signature",
    }
    # Every function reads the secret through adapters.aws_json (stripe_credentials.read_secret), so the
    # webhook's closure names no SDK at all (its cold path: test_..._queues_without_any_sdk below).
    assert external - set(sys.stdlib_module_names) == set()


@pytest.mark.parametrize("function", sorted(package_function.HANDLER_MODULES))
def test_no_package_holds_the_local_runtime_the_ops_cli_or_tests(function: str) -> None:
    modules, external = package_function.import_closure(package_function.HANDLER_MODULES[function])
    assert not [m for m in modules | external if m.split(".")[0] in NEVER_PACKAGED]


@pytest.mark.parametrize("function", sorted(package_function.HANDLER_MODULES))
def test_every_third_party_import_is_packaged_or_the_runtimes(
    function: str, lock: dict[str, package_function.LockedDistribution]
) -> None:
    _, external = package_function.import_closure(package_function.HANDLER_MODULES[function])
    closure = closure_of(function, lock)
    top_levels = {
        top
        for top, distributions in importlib.metadata.packages_distributions().items()
        if {package_function.normalized(d) for d in distributions} & set(closure)
    }
    unprovided = external - top_levels - package_function.RUNTIME_PROVIDED - set(sys.stdlib_module_names)
    assert unprovided <= {"__future__"}
    assert "aws_xray_sdk" not in top_levels


@pytest.mark.parametrize("function", ["WorkerFunction", "ReconcileFunction"])
def test_a_function_package_takes_the_locked_versions_the_dev_venv_tests_with(
    function: str, lock: dict[str, package_function.LockedDistribution]
) -> None:
    closure = closure_of(function, lock)
    assert {"aws-lambda-powertools", "pynamodb", "stripe", "requests", "idna"} <= set(closure)
    for name, version in closure.items():
        assert version == lock[name].version
        assert importlib.metadata.version(name) == version, f"{name}: the dev venv tests another version"
    assert not set(closure) & {"boto3", "botocore", "s3transfer"}, "the runtime provides boto3"


def test_the_webhook_bundles_no_third_party_package(
    lock: dict[str, package_function.LockedDistribution],
) -> None:
    assert closure_of("WebhookFunction", lock) == {}


def test_the_export_is_read_with_its_hashes_and_who_requires_what() -> None:
    exported = (
        "certifi==2026.10.19.post1 \\\n    --hash=sha256:aa\n    # via requests\n"
        "idna==3.21 ; python_full_version < '3.14' \\\n    --hash=sha256:bb \\\n    --hash=sha256:cc\n"
        "    # via\n    #   requests\n    #   yarl\n"
        "requests==2.34.2 \\\n    --hash=sha256:dd\n    # via stripe\n"
    )
    entries = package_function.parse_export(exported)
    assert entries["idna"].version == "3.21"
    assert (
        entries["idna"].requirement
        == "idna==3.21 ; python_full_version < '3.14' --hash=sha256:bb --hash=sha256:cc"
    )
    assert entries["idna"].required_by == {"requests", "yarl"}
    assert package_function.function_closure(["requests"], entries) == {
        "requests": "2.34.2",
        "certifi": "2026.10.19.post1",
        "idna": "3.21",
    }
    with pytest.raises(package_function.PackagingError, match="not among the locked"):
        package_function.function_closure(["urllib4"], entries)


def write_dist_info(artifacts: Path, name: str, version: str) -> None:
    info = artifacts / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_a_package_that_differs_from_the_lock_fails_the_build(tmp_path: Path) -> None:
    write_dist_info(tmp_path, "idna", "3.21")
    write_dist_info(tmp_path, "requests", "2.34.2")
    package_function.check_locked({"idna": "3.21", "requests": "2.34.2"}, tmp_path)
    with pytest.raises(package_function.PackagingError, match=re.escape("idna: packaged 3.21, locked 3.20")):
        package_function.check_locked({"idna": "3.20", "requests": "2.34.2"}, tmp_path)
    with pytest.raises(package_function.PackagingError, match="certifi: packaged nothing"):
        package_function.check_locked({"idna": "3.21", "requests": "2.34.2", "certifi": "1"}, tmp_path)
    with pytest.raises(
        package_function.PackagingError, match=re.escape("requests: packaged 2.34.2, locked nothing")
    ):
        package_function.check_locked({"idna": "3.21"}, tmp_path)


def test_the_built_worker_package_holds_exactly_the_locked_versions(
    tmp_path: Path, lock: dict[str, package_function.LockedDistribution]
) -> None:
    package_function.build("WorkerFunction", tmp_path)
    assert package_function.packaged_versions(tmp_path) == closure_of("WorkerFunction", lock)


@pytest.fixture(scope="module")
def webhook_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    artifacts = tmp_path_factory.mktemp("WebhookFunction")
    (artifacts / "left-over-from-an-earlier-build.txt").write_text("stale")
    package_function.build("WebhookFunction", artifacts)
    return artifacts


def test_the_webhook_package_holds_its_modules_and_their_bytecode_only(webhook_package: Path) -> None:
    sources = sorted(str(p.relative_to(webhook_package)) for p in webhook_package.rglob("*.py"))
    assert sources == [
        "adapters/__init__.py",
        "adapters/aws_json.py",
        "adapters/event_queue.py",
        "adapters/stripe_credentials.py",
        "domain/__init__.py",
        "domain/credentials.py",
        "domain/ingress.py",
        "domain/signature.py",
        "handlers/__init__.py",
        "handlers/webhook.py",
    ]
    others = [p for p in webhook_package.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert others == []
    for source in webhook_package.rglob("*.py"):
        assert (source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc").exists(), source


def test_bytecode_is_unchecked_hash_so_a_read_only_1980_timestamped_copy_uses_it(
    webhook_package: Path,
) -> None:
    for pyc in webhook_package.rglob("*.pyc"):
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        # PEP 552: bit 0 = hash-based, bit 1 = check the source. Unchecked hash: 0b01.
        assert flags == 0b01, pyc


class _FakeAws(BaseHTTPRequestHandler):
    """SQS SendMessage and Secrets Manager GetSecretValue, as far as the webhook's cold path needs."""

    protocol_version = "HTTP/1.1"
    targets: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        target = self.headers["X-Amz-Target"]
        self.targets.append(target)
        answer = (
            {"SecretString": json.dumps({"STRIPE_WEBHOOK_SECRET": "whsec_packaging"})}
            if target == "secretsmanager.GetSecretValue"
            else {"MessageId": "m-1"}
        )
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_packaged_webhook_reads_its_secret_and_queues_without_any_sdk(webhook_package: Path) -> None:
    """The whole cold path (secret from Secrets Manager, SendMessage) from the package alone: boto3 and
    botocore are not on the path at all (-S), so importing them would fail, and none is loaded."""
    body = b'{"id": "evt_1", "object": "event", "type": "invoice.paid", "livemode": false, "created": 1, "data": {"object": {"object": "invoice", "id": "in_1", "customer": "cus_1"}}}'
    request = lambda_events.webhook_event(body, "whsec_packaging")
    code = (
        f"import json, sys\nrequest = json.loads({json.dumps(request)!r})\n"
        "import handlers.webhook as webhook\n"
        "answer = webhook.lambda_handler(request, None)\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'boto3', 'botocore', 'stripe', 'pynamodb', 'aws_lambda_powertools', 'aws_xray_sdk', 'urllib3'})\n"
        "print(json.dumps({'status': answer['statusCode'], 'heavy': heavy}))\n"
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeAws)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakeAws.targets.clear()
    environment = {
        "PYTHONPATH": str(webhook_package),
        "PYTHONDONTWRITEBYTECODE": "1",
        "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/events.fifo",
        "STRIPE_SECRET_ID": "stripe-sync/stripe",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "packaging",
        "AWS_SECRET_ACCESS_KEY": "packaging",
        "AWS_SESSION_TOKEN": "packaging",
    }
    try:
        completed = subprocess.run(  # noqa: S603 - the test's own interpreter and code
            [sys.executable, "-s", "-S", "-c", code],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        server.shutdown()
        server.server_close()
    result = json.loads(completed.stdout.splitlines()[-1])
    assert result == {"status": 200, "heavy": []}
    assert _FakeAws.targets == ["secretsmanager.GetSecretValue", "AmazonSQS.SendMessage"]


def test_the_packaged_webhook_answers_without_loading_heavy_packages(webhook_package: Path) -> None:
    """Imported from the package alone (no site-packages), a refused request loads no SDK."""
    unsigned = lambda_events.http_api_event(b"{}", headers={})
    code = (
        f"import json, sys\nrequest = json.loads({json.dumps(unsigned)!r})\n"
        "import handlers.webhook as webhook\n"
        "answer = webhook.lambda_handler(request, None)\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'boto3', 'botocore', 'stripe', 'pynamodb', 'aws_lambda_powertools', 'aws_xray_sdk'})\n"
        "print(json.dumps({'status': answer['statusCode'], 'heavy': heavy}))\n"
    )
    environment = {
        "PYTHONPATH": str(webhook_package),
        "PYTHONDONTWRITEBYTECODE": "1",
        "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/events.fifo",
        "STRIPE_WEBHOOK_SECRET": "whsec_packaging",
    }
    completed = subprocess.run(  # noqa: S603 - the test's own interpreter and code
        [sys.executable, "-s", "-S", "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    result = json.loads(completed.stdout.splitlines()[-1])
    assert result == {"status": 400, "heavy": []}


@pytest.mark.parametrize(
    ("function", "own_modules"),
    [
        (
            "EntitlementsChangedFunction",
            {"handlers.entitlements_changed", "adapters.event_bus", "domain.entitlement_events"},
        ),
        (
            "StripeEventBridgeFunction",
            {
                "handlers.eventbridge",
                "adapters.event_queue",
                "domain.ingress",
                "domain.credentials",
                "domain.signature",
            },
        ),
    ],
)
def test_the_eventbridge_functions_are_lean_and_bundle_no_third_party_package(
    function: str, own_modules: set[str], lock: dict[str, package_function.LockedDistribution]
) -> None:
    modules, external = package_function.import_closure(package_function.HANDLER_MODULES[function])
    shared = {"handlers", "adapters", "adapters.aws_json", "domain"}
    assert modules == shared | own_modules
    assert external - set(sys.stdlib_module_names) == set()
    assert closure_of(function, lock) == {}
