"""Lambda's concurrency model for the local worker: one process per concurrent execution environment.

Lambda never runs two invocations in one environment at once, and the worker relies on it: its
module-level Powertools `BatchProcessor` keeps the batch being processed on itself, so two batches
processed by threads of one process mix their results (a response naming another batch's messages,
which the event source mapping refuses, so the whole batch comes back). Here each poller of the event
source mapping owns one `WorkerProcess`: a child interpreter (started with `spawn`: no inherited
threads or locks) that imports the handler once, as an execution environment's init does, then runs
one batch at a time. The children also run on the machine's other cores, which threads sharing one
interpreter lock could not.

The child's stdout (the handler's JSON log lines and EMF metrics) travels back over the pipe, line by
line, before the batch's response, and goes to the runtime's console as the worker's lines. An
invocation that runs past the function's Timeout, or a child that dies, fails the whole batch (its
messages come back after their visibility timeout, as in Lambda) and the environment is replaced.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

START_TIMEOUT_SECONDS = 60.0
# Beyond the function's Timeout: the child's own time budget ends the batch first (handlers.worker).
KILL_GRACE_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 10.0
EXIT_CODE_WAIT_SECONDS = 2.0


class WorkerStartFailed(RuntimeError):
    """The child could not import the handler; the message says why."""


class WorkerInvocationFailed(RuntimeError):
    """The handler raised (or the environment died or timed out): the whole batch failed."""


class _LinesToParent(io.TextIOBase):
    """The child's sys.stdout: each complete line goes to the parent as ("log", line)."""

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self._connection = connection
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line.strip():
                self._connection.send(("log", line))
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self._connection.send(("log", self._pending))
        self._pending = ""


def _serve(connection: Connection, handler_path: str, environment: Mapping[str, str]) -> None:
    """The child: import the handler once, then one invocation per request until told to stop."""
    os.environ.update(environment)
    out = _LinesToParent(connection)
    sys.stdout = out  # before the import: Powertools' logger keeps the stream it finds
    module_name, _, attribute = handler_path.rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), attribute)
    except Exception as error:
        connection.send(("failed", f"cannot load {handler_path}: {type(error).__name__}: {error}"))
        return
    connection.send(("ready", os.getpid()))
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        if request is None:
            return
        event, context = request
        try:
            response = handler(event, context)
        except Exception as error:
            out.flush()
            connection.send(("error", f"{type(error).__name__}: {error}"))
        else:
            out.flush()
            connection.send(("result", response))


class WorkerProcess:
    """One execution environment of the worker function, driven by one poller thread."""

    def __init__(
        self,
        handler_path: str,
        *,
        environment: Mapping[str, str] | None = None,
        on_log: Callable[[str], None],
        timeout_seconds: float,
    ) -> None:
        self._handler_path = handler_path
        self._environment = dict(environment or {})
        self._on_log = on_log
        self._timeout = timeout_seconds
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._connection: Connection | None = None
        self._lock = threading.Lock()  # one invocation at a time, as in Lambda
        self.pid: int | None = None

    def start(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(child, self._handler_path, self._environment), daemon=True, name="worker"
        )
        process.start()
        child.close()
        self._process, self._connection = process, parent
        answer = self._receive(START_TIMEOUT_SECONDS, "start")
        if answer[0] != "ready":
            self.stop()
            raise WorkerStartFailed(str(answer[1]))
        self.pid = int(answer[1])

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self._lock:
            if self._connection is None:
                self.start()
            assert self._connection is not None
            try:
                self._connection.send((event, context))
                answer = self._receive(self._timeout + KILL_GRACE_SECONDS, "invocation")
            except WorkerInvocationFailed:
                self._replace()
                raise
            if answer[0] == "result":
                return answer[1]
            raise WorkerInvocationFailed(str(answer[1]))

    def stop(self) -> None:
        connection, process = self._connection, self._process
        self._connection = self._process = None
        if connection is not None:
            with contextlib.suppress(OSError):  # already gone
                connection.send(None)
        if process is not None:
            process.join(STOP_TIMEOUT_SECONDS)
            if process.is_alive():
                process.kill()
                process.join(STOP_TIMEOUT_SECONDS)
        if connection is not None:
            connection.close()

    def _replace(self) -> None:
        """A dead or stuck environment is discarded; the next invocation starts a fresh one."""
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if process is not None and process.is_alive():
            process.kill()
            process.join(STOP_TIMEOUT_SECONDS)
        if connection is not None:
            connection.close()

    def _receive(self, timeout: float, what: str) -> tuple[str, Any]:
        """The next answer that is not a log line (log lines go to on_log on the way)."""
        connection = self._connection
        assert connection is not None
        deadline = time.monotonic() + timeout
        while True:
            if not connection.poll(max(deadline - time.monotonic(), 0.0)):
                raise WorkerInvocationFailed(
                    f"the worker's {what} took longer than {timeout:.0f} s: environment replaced"
                )
            try:
                message = connection.recv()
            except (EOFError, OSError):
                code = None
                if self._process is not None:
                    # The pipe closes a moment before the process is reaped: wait for its exit code.
                    self._process.join(EXIT_CODE_WAIT_SECONDS)
                    code = self._process.exitcode
                raise WorkerInvocationFailed(
                    f"the worker's process ended (exit code {code}) during its {what}"
                ) from None
            if message[0] == "log":
                self._on_log(str(message[1]))
                continue
            return message[0], message[1]
