"""Lambda packages: each holds what its handler imports, compiled to bytecode Lambda can use as is.

The webhook's package is built for real here (no pip: it bundles no third-party package); the
others' closures and requirement files are checked without installing anything. `make build`
(sam build) builds all three, bench/cold_start.py measures them.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from local_runtime.template import TEMPLATE_PATH, load_template

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import package_function  # noqa: E402 - scripts/ is not a package

NEVER_PACKAGED = ("local_runtime", "ops", "tests", "entitlements_reader")


def requirement_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for text in path.read_text().splitlines():
        line = text.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.split("[")[0].lower().replace("_", "-")] = version
    return pins


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
    # Named statically by stripe_credentials.api_keys (the other functions' read): the runtime provides
    # boto3, and the webhook's cold path never imports it (test_..._queues_without_any_sdk below).
    assert external - set(sys.stdlib_module_names) == {"boto3", "botocore"}


@pytest.mark.parametrize("function", sorted(package_function.HANDLER_MODULES))
def test_no_package_holds_the_local_runtime_the_ops_cli_or_tests(function: str) -> None:
    modules, _ = package_function.import_closure(package_function.HANDLER_MODULES[function])
    assert not [m for m in modules if m.split(".")[0] in NEVER_PACKAGED]


@pytest.mark.parametrize("function", sorted(package_function.HANDLER_MODULES))
def test_every_third_party_import_is_packaged_pinned_or_the_runtimes(function: str) -> None:
    _, external = package_function.import_closure(package_function.HANDLER_MODULES[function])
    pins = requirement_pins(package_function.REQUIREMENTS / package_function.REQUIREMENT_FILES[function])
    top_levels = {
        top
        for top, distributions in importlib.metadata.packages_distributions().items()
        if {d.lower().replace("_", "-") for d in distributions} & set(pins)
    }
    unprovided = external - top_levels - package_function.RUNTIME_PROVIDED - set(sys.stdlib_module_names)
    assert unprovided <= {"__future__"}
    assert "aws_xray_sdk" not in top_levels


@pytest.mark.parametrize("file", ["worker.txt", "reconcile.txt"])
def test_function_requirements_pin_what_the_project_pins_and_tests_with(file: str) -> None:
    pins = requirement_pins(package_function.REQUIREMENTS / file)
    project = requirement_pins(ROOT / "src" / "requirements.txt")
    assert {name: version for name, version in pins.items() if name in project} == {
        name: version for name, version in project.items() if name in pins
    }
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version, f"{name}: the dev venv tests another version"
    assert not set(pins) & {"boto3", "botocore", "s3transfer"}, "the runtime provides boto3"


def test_the_webhook_bundles_no_third_party_package() -> None:
    assert requirement_pins(package_function.REQUIREMENTS / "webhook.txt") == {}


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
    signed = 'import hashlib, hmac, time\nt = int(time.time())\nbody = \'{"id": "evt_1", "object": "event", "type": "invoice.paid", "livemode": false, "created": 1, "data": {"object": {"object": "invoice", "id": "in_1", "customer": "cus_1"}}}\'\nv1 = hmac.new(b\'whsec_packaging\', f\'{t}.{body}\'.encode(), hashlib.sha256).hexdigest()\n'
    code = (
        "import json, sys\n" + signed + "import handlers.webhook as webhook\n"
        "answer = webhook.lambda_handler({'version': '2.0', 'requestContext': {'http': "
        "{'method': 'POST', 'path': '/webhooks/stripe'}}, 'headers': {'stripe-signature': f't={t},v1={v1}'}, "
        "'body': body}, None)\n"
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
    code = (
        "import json, sys\n"
        "import handlers.webhook as webhook\n"
        "answer = webhook.lambda_handler({'version': '2.0', 'requestContext': {'http': "
        "{'method': 'POST', 'path': '/webhooks/stripe'}}, 'headers': {}, 'body': '{}'}, None)\n"
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
