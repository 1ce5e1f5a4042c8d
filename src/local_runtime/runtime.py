"""`make run`: the whole pipeline on one machine, without Docker or AWS (ARCHITECTURE.md, "The local runtime").

    moto server (SQS + DynamoDB)  <-  the template's queue, dead-letter queue and table
    HTTP :PORT /webhooks/stripe   ->  handlers.webhook.lambda_handler (API Gateway payload 2.0)
    HTTP :PORT /eventbridge/stripe -> handlers.eventbridge.lambda_handler (Stripe's EventBridge events)
    poller threads                ->  handlers.worker.lambda_handler (SQS event source mapping), each
                                      poller with a worker process of its own
    stream thread                 ->  handlers.entitlements_changed.lambda_handler (the table's stream,
                                      "entitlements changed" events to the bus: shown as published)
    timer thread                  ->  handlers.reconcile.lambda_handler (only with STRIPE_API_KEY)

The webhook, the EventBridge ingress, the publisher and the reconciler run in this process, imported after the environment points every AWS
client at moto with dummy credentials. The worker runs as Lambda runs it: each concurrent batch in an
execution environment of its own (local_runtime.worker_processes: one child process per poller,
importing the handler once, one batch at a time), so that no handler module state is shared between
concurrent invocations and the batches use the other cores. moto's server runs in a child process of
its own (local_runtime.aws_server), so that it shares no interpreter lock with the functions. Everything stops on Ctrl-C or SIGTERM, and the data (in
moto's memory) with it.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO

from local_runtime import console as console_module
from local_runtime.apigateway import HttpResponse
from local_runtime.aws_server import AwsPortTaken, AwsServerFailed, AwsServerProcess
from local_runtime.config import (
    DEFAULT_AWS_PORT,
    LOOPBACK,
    ConfigError,
    PortTaken,
    RuntimeConfig,
    check_port_free,
    config_from_env,
    generated_secret_file,
    port_taken_hint,
    sandbox_environment,
    write_generated_secret,
)
from local_runtime.console import Console, HandlerOutput
from local_runtime.event_source import EventSourceMapping
from local_runtime.lambda_context import LocalLambdaContext
from local_runtime.partner_events import EVENTBRIDGE_PATH, NotAnEnvelope, eventbridge_envelope
from local_runtime.resources import LocalResources, create_resources, subscriber_queue_name
from local_runtime.table_stream import TableStreamMapping
from local_runtime.template import (
    LOCAL_ACCOUNT_ID,
    LOCAL_REGION,
    FunctionSpec,
    LocalStack,
    ResourceRef,
    TemplateError,
    read_template,
)
from local_runtime.worker_processes import WorkerProcess, WorkerStartFailed

MOTO_START_TIMEOUT_SECONDS = 20
# Concurrent batches (within the event source's MaximumConcurrency), each in a worker process of its
# own: two keep moto's core busy while the workers compute; more only queue inside moto and slow the
# webhook (measured by bench/load.py).
MAX_LOCAL_POLLERS = 2
JOIN_TIMEOUT_SECONDS = 15
# Set in the functions' environment unless the user's says otherwise: no EMF metrics or X-Ray locally.
LOCAL_FUNCTION_DEFAULTS = {
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
# Never taken from the template: locally the Stripe settings come from the environment and each
# function's service name is set while its module is imported.
NOT_FROM_TEMPLATE = frozenset({"STRIPE_SECRET_ID", "POWERTOOLS_SERVICE_NAME"})


class StartupError(RuntimeError):
    """The runtime cannot start; the message says why and what to do."""


class LocalRuntime:
    def __init__(self, config: RuntimeConfig, stack: LocalStack, out: TextIO) -> None:
        self.config = config
        self.stack = stack
        self._out = out
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._moto: AwsServerProcess | None = None
        self._server: Any = None
        self._stdout: TextIO | None = None
        self._webhook: Callable[..., Any] | None = None
        self._workers: list[WorkerProcess] = []
        self._environments: dict[str, dict[str, str]] = {}  # by function logical id
        self._eventbridge: Callable[..., Any] | None = None
        self._secret_file_written = False
        self.resources: LocalResources | None = None
        self.console: Console | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        config = self.config
        check_port_free("AWS_PORT", config.aws_port)
        check_port_free("PORT", config.port)
        sandbox_environment(os.environ, config)

        from local_runtime.webhook_server import WebhookServer  # noqa: PLC0415 - after the sandbox

        try:
            self._server = WebhookServer(
                (LOOPBACK, config.port),
                self.stack.webhook_route,
                self._invoke_webhook,
                self._webhook_error,
                eventbridge=self._invoke_eventbridge if self.stack.eventbridge is not None else None,
            )
        except OSError as error:
            raise PortTaken(error.errno, port_taken_hint("PORT", config.port)) from None
        self._start_moto()
        import boto3  # noqa: PLC0415 - after the sandbox, like everything that talks to AWS

        resources = create_resources(
            self.stack,
            boto3.client("sqs"),
            boto3.client("dynamodb"),
            visibility_timeout=config.visibility_timeout,
            events=boto3.client("events"),
        )
        self.resources = resources
        self._function_environments(resources)
        self.console = Console(
            self._out,
            max_receive_count=resources.max_receive_count,
            visibility_timeout=resources.visibility_timeout,
            debug=os.environ.get("LOG_LEVEL", "").upper() == "DEBUG",
            cli=self._cli(),
        )
        # Before the handlers are imported: their loggers keep the stream they find.
        self._stdout = sys.stdout
        sys.stdout = HandlerOutput(self.console, self._out)
        self._start_workers()
        publisher = self._import_handler(self.stack.publisher.function) if self.stack.publisher else None
        if self.stack.eventbridge is not None:
            self._eventbridge = self._import_handler(self.stack.eventbridge)
        reconcile = None
        if config.api_key_configured and self.stack.reconciler is not None:
            reconcile = self._import_handler(self.stack.reconciler, required=False)
        # Last: Powertools loggers keep the service name they were created with, while the webhook
        # reads POWERTOOLS_SERVICE_NAME at every log line, so the variable stays the webhook's.
        self._webhook = self._import_handler(self.stack.webhook)
        self._secret_file_written = config.webhook_secret_generated and (
            write_generated_secret(config.port, config.webhook_secret) is not None
        )

        self._spawn("http", self._server.serve_forever)
        binding = resources.queue_binding()
        receiving = threading.Lock()
        for number, worker in enumerate(self._workers):
            mapping = EventSourceMapping(
                boto3.client("sqs"),
                binding,
                worker,
                lambda: LocalLambdaContext.for_function(self.stack.stack_name, self.stack.worker),
                self.console,
                watch_dead_letter_queue=number == 0,
                receiving=receiving,
            )
            self._spawn(f"poller-{number + 1}", functools.partial(mapping.run, self._stop))
        if publisher is not None:
            self._start_stream(boto3, resources, publisher)
        if reconcile is not None:
            self._spawn("reconcile", lambda: self._reconcile_loop(reconcile))
        self._banner(reconcile is not None)

    def request_stop(self) -> None:
        self._stop.set()

    def wait(self) -> None:
        while not self._stop.wait(0.5):
            pass

    def stop(self) -> None:
        """Stop accepting requests, let the poller finish its batch, then stop moto."""
        self.request_stop()
        if self._server is not None:
            if any(t.name == "http" for t in self._threads):
                self._server.shutdown()
            self._server.server_close()  # joins the request threads
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_SECONDS)
            if thread.is_alive() and self.console is not None:
                self.console.line("runtime", f"{thread.name} did not stop within {JOIN_TIMEOUT_SECONDS} s")
        for worker in self._workers:
            worker.stop()
        if self._moto is not None:
            self._moto.stop()
        if self._stdout is not None:
            sys.stdout = self._stdout
        if self._secret_file_written:
            generated_secret_file(self.config.port).unlink(missing_ok=True)

    # -- pieces -------------------------------------------------------------------------------------

    def _start_moto(self) -> None:
        # Its own process (local_runtime.aws_server): moto's Python does not share this GIL with the
        # webhook and the worker, and its TransactWriteItems is patched there to stay flat.
        server = AwsServerProcess(LOOPBACK, self.config.aws_port)
        self._moto = server
        try:
            server.start(MOTO_START_TIMEOUT_SECONDS)
        except AwsPortTaken as error:
            raise PortTaken(error.errno, port_taken_hint("AWS_PORT", self.config.aws_port)) from None
        except AwsServerFailed as error:
            raise StartupError(f"moto did not start: {error}") from None

    def _start_workers(self) -> None:
        """One worker process per poller, each importing the handler with the worker's own
        environment over what it inherits (the sandbox's AWS and Stripe settings) and its service name."""
        function = self.stack.worker
        service = function.environment.get("POWERTOOLS_SERVICE_NAME")
        environment = {
            **self._environments[function.logical_id],
            "POWERTOOLS_SERVICE_NAME": service if isinstance(service, str) else function.logical_id,
        }
        console = self.console
        assert console is not None
        for _ in range(self._pollers()):
            worker = WorkerProcess(
                function.handler,
                environment=environment,
                on_log=lambda line: console.handler_line("worker", line),
                timeout_seconds=function.timeout,
            )
            self._workers.append(worker)
            try:
                worker.start()
            except WorkerStartFailed as error:
                raise StartupError(f"{error} ({function.logical_id})") from error

    def _start_stream(self, boto3: Any, resources: LocalResources, publisher: Callable[..., Any]) -> None:
        """The publisher's DynamoDB Streams event source mapping, as the template declares it."""
        spec = self.stack.publisher
        assert spec is not None
        assert self.console is not None
        table = boto3.client("dynamodb").describe_table(TableName=resources.table_name)["Table"]
        if not table.get("LatestStreamArn"):
            self.console.line("runtime", "the table has no stream: no entitlements changed events")
            return
        mapping = TableStreamMapping(
            boto3.client("dynamodbstreams"),
            table["LatestStreamArn"],
            _as_source("publisher", publisher),
            lambda: LocalLambdaContext.for_function(self.stack.stack_name, spec.function),
            self.console,
            filters=spec.filters,
            batch_size=spec.batch_size,
            max_retry_attempts=spec.max_retry_attempts,
        )
        self._spawn("stream", functools.partial(mapping.run, self._stop))

    def _invoke_eventbridge(self, body: bytes) -> HttpResponse:
        """POST /eventbridge/stripe: the ingress invoked as the partner event bus's rule would."""
        assert self._eventbridge is not None
        assert self.console is not None
        from handlers.eventbridge import NotQueued  # noqa: PLC0415 - after the sandbox, like the handler

        try:
            envelope = eventbridge_envelope(body)
        except NotAnEnvelope as error:
            self.console.line("eventbridge", f"rejected: 400 {error}")
            return _json_response(400, {"error": str(error)})
        context = LocalLambdaContext.for_function(self.stack.stack_name, self.stack.eventbridge)  # type: ignore[arg-type]
        try:
            with console_module.source("eventbridge"):
                result = self._eventbridge(envelope, context)
        except NotQueued as error:
            return _json_response(400 if error.rejected else 503, {"error": str(error)})
        return _json_response(200, result if isinstance(result, dict) else {"queued": True})

    def _pollers(self) -> int:
        """Concurrent batches, as the event source's MaximumConcurrency allows; at most
        MAX_LOCAL_POLLERS: past that, threads of one process only wait for each other."""
        allowed = self.stack.max_concurrency
        return max(1, min(allowed if allowed is not None else MAX_LOCAL_POLLERS, MAX_LOCAL_POLLERS))

    def _function_environments(self, resources: LocalResources) -> None:
        """Each function's template environment, resources resolved (the user's environment wins for
        plain values, never for a resource: always the local one, never a real one).

        The worker runs in its own processes and gets exactly its own environment. The other
        functions share this process's os.environ, so they must agree on every name they both set:
        the worker's DEAD_LETTER_QUEUE_URL is the event queue's DLQ while the publisher's is its own,
        and one shared environment once sent the worker's parked events to the publisher's DLQ.
        """
        user = dict(os.environ)
        functions = [self.stack.webhook, self.stack.worker]
        if self.stack.reconciler is not None:
            functions.append(self.stack.reconciler)
        if self.stack.publisher is not None:
            functions.append(self.stack.publisher.function)
        if self.stack.eventbridge is not None:
            functions.append(self.stack.eventbridge)
        for function in functions:
            environment: dict[str, str] = {}
            for name, value in function.environment.items():
                if name in NOT_FROM_TEMPLATE:
                    continue
                if isinstance(value, ResourceRef):
                    resolved = resources.resolve(value, self.stack)
                    if resolved is not None:
                        environment[name] = resolved
                else:
                    environment[name] = user.get(name, value)
            for name, value in LOCAL_FUNCTION_DEFAULTS.items():
                environment[name] = user.get(name, value)
            environment["TABLE_NAME"] = resources.table_name
            environment["QUEUE_URL"] = resources.queue_url
            self._environments[function.logical_id] = environment
        shared: dict[str, tuple[str, str]] = {}
        for function in functions:
            if function is self.stack.worker:
                continue
            for name, value in self._environments[function.logical_id].items():
                first = shared.setdefault(name, (function.logical_id, value))
                if first[1] != value:
                    raise StartupError(
                        f"{first[0]} and {function.logical_id} both set {name}, to different values, "
                        "and run in one process here: rename one of them in template.yaml"
                    )
                os.environ[name] = value

    def _import_handler(self, function: FunctionSpec, *, required: bool = True) -> Callable[..., Any] | None:
        module_name, _, attribute = function.handler.rpartition(".")
        service = function.environment.get("POWERTOOLS_SERVICE_NAME")
        os.environ["POWERTOOLS_SERVICE_NAME"] = service if isinstance(service, str) else function.logical_id
        try:
            handler = getattr(importlib.import_module(module_name), attribute)
        except Exception as error:
            if required:
                raise StartupError(
                    f"cannot load {function.handler} ({function.logical_id}): {type(error).__name__}: {error}"
                ) from error
            assert self.console is not None
            self.console.line(
                "runtime",
                f"reconciler not started: cannot load {function.handler}: {type(error).__name__}: {error}",
            )
            return None
        if not callable(handler):
            raise StartupError(f"{function.handler} is not a function")
        return handler  # type: ignore[no-any-return]

    def _invoke_webhook(self, event: dict[str, Any]) -> object:
        assert self._webhook is not None
        context = LocalLambdaContext.for_function(self.stack.stack_name, self.stack.webhook)
        with console_module.source("webhook"):
            return self._webhook(event, context)

    def _webhook_error(self, error: BaseException) -> None:
        assert self.console is not None
        self.console.line(
            "webhook", f"FAILED: the handler raised {type(error).__name__}: {error} (answered 500)"
        )
        if self.console.debug:
            self.console.raw("".join(traceback.format_exception(error)))

    def _reconcile_loop(self, handler: Callable[..., Any]) -> None:
        assert self.console is not None
        assert self.stack.reconciler is not None
        # The first run at start fills the fresh local table from the Stripe account, then on schedule.
        while not self._stop.is_set():
            context = LocalLambdaContext.for_function(self.stack.stack_name, self.stack.reconciler)
            started = time.monotonic()
            try:
                with console_module.source("reconcile"):
                    handler(scheduled_event(self.stack.stack_name), context)
            except Exception as error:
                self.console.line("reconcile", f"run FAILED ({type(error).__name__}: {error})")
            else:
                # The reconciler logs its own report (shown above); this says it is over.
                self.console.line("reconcile", f"run finished in {time.monotonic() - started:.1f} s")
            self._stop.wait(self.config.reconcile_every)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        # Daemon threads, joined in stop(): an unexpected crash of the main thread cannot hang the exit.
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _cli(self) -> str:
        """How to call the ops CLI against this run."""
        cli = ".venv/bin/stripe-sync --local"
        if self.config.aws_port != DEFAULT_AWS_PORT:
            cli = f"AWS_PORT={self.config.aws_port} {cli}"
        return cli

    def _banner(self, reconciling: bool) -> None:
        config, resources, stack = self.config, self.resources, self.stack
        assert resources is not None
        route = stack.webhook_route
        cli = self._cli()
        lines = [
            "stripe-sync local runtime: the whole pipeline on this machine (moto; no Docker, no AWS)",
            f"  webhook     {config.webhook_base}{route.path}  ({route.method}; GET /health)",
            f"  AWS (moto)  {config.aws_endpoint}  region {LOCAL_REGION}, dummy credentials"
            + (
                ""
                if self._moto is not None and self._moto.patched
                else " (unpatched: slows as the table grows)"
            ),
            f"  table       {resources.table_name}",
            f"  queue       {stack.event_queue.name}  (batch {resources.batch_size} x {self._pollers()} at once, "
            f"visibility {resources.visibility_timeout} s, DLQ after {resources.max_receive_count} tries)",
            f"  DLQ         {stack.dead_letter_queue.name}",
        ]
        if stack.eventbridge is not None:
            lines.append(
                f"  eventbridge {config.webhook_base}{EVENTBRIDGE_PATH}  (POST an EventBridge event, or a bare "
                "Stripe event; no signature)"
            )
        if stack.publisher is not None:
            lines.append(
                f"  changes     entitlements changed events -> bus {stack.publisher.bus_name} "
                f"(example subscription -> queue {subscriber_queue_name(stack)})"
            )
        if reconciling:
            lines.append(f"  reconciler  now, then every {config.reconcile_every} s (STRIPE_API_KEY is set)")
        else:
            lines.append("  reconciler  off: set STRIPE_API_KEY=sk_test_... to run it")
        lines.append("")
        forward = f"stripe listen --forward-to localhost:{config.port}{route.path}"
        if config.webhook_secret_generated:
            lines += [
                "STRIPE_WEBHOOK_SECRET is not set: this run signs with a generated secret,",
                f"  {config.webhook_secret}",
                "  which `make demo` finds by itself."
                if self._secret_file_written
                else f"  (run the demo with STRIPE_WEBHOOK_SECRET={config.webhook_secret} make demo).",
                "To receive events from the Stripe CLI instead, run",
                f"  `{forward}`, copy the whsec_... it prints and restart with",
                "  STRIPE_WEBHOOK_SECRET=whsec_... make run",
            ]
        else:
            lines.append(f"Webhook secret from STRIPE_WEBHOOK_SECRET. Stripe CLI: {forward}")
        lines += [
            "Demo: make demo    Inspect: " + f"{cli} customer show <cus_id>   {cli} dlq list",
            "Ctrl-C stops everything; the data lives in moto's memory and goes with it.",
            "",
        ]
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()


def _as_source(name: str, handler: Callable[..., Any] | None) -> Callable[[dict[str, Any], Any], Any]:
    assert handler is not None

    def invoke(event: dict[str, Any], context: Any) -> Any:
        with console_module.source(name):
            return handler(event, context)

    return invoke


def _json_response(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, [("content-type", "application/json")], json.dumps(body).encode())


def scheduled_event(stack_name: str) -> dict[str, Any]:
    """The EventBridge event a `Schedule` event source delivers."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT_ID,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": LOCAL_REGION,
        "resources": [
            f"arn:aws:events:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:rule/{stack_name}-ReconcileSchedule"
        ],
        "detail": {},
    }


def main() -> int:
    out = sys.stdout
    try:
        config = config_from_env(os.environ)
        stack = read_template()
    except (ConfigError, TemplateError) as error:
        print(f"local runtime: {error}", file=sys.stderr)
        return 2
    runtime = LocalRuntime(config, stack, out)
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:  # a second Ctrl-C: the user does not want to wait
            os._exit(130)
        stopping = True
        runtime.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        runtime.start()
    except (PortTaken, StartupError) as error:
        runtime.stop()
        print(f"local runtime: {error}", file=sys.stderr)
        return 1
    except Exception:
        runtime.stop()
        raise
    runtime.wait()
    out.write("stopping...\n")
    out.flush()
    runtime.stop()
    out.write("stopped\n")
    out.flush()
    return 0
