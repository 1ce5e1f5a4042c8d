"""moto's server (SQS + DynamoDB) in a process of its own, for the local runtime.

moto is pure Python: sharing one interpreter (and its GIL) with the webhook and the worker, it made
every webhook request wait behind the worker's transactions. In its own process it has a core of
its own. The process

* applies local_runtime.moto_patches (a TransactWriteItems whose cost does not grow with the
  table), or says on stderr why not;
* empties moto's trackers of model instances every few seconds: moto keeps a reference to every
  model object it creates (for its dashboard), so memory would otherwise grow with every request;
* writes one line on stdout once it listens (`READY patched` / `READY unpatched`) or could not bind
  (`PORT_TAKEN <errno>`), for the runtime waiting on it, and then nothing more there;
* ignores Ctrl-C (the terminal sends it to the whole process group: the runtime stops its poller
  first and then this) and stops when its stdin closes, that is when the runtime stops it or dies.

`AwsServerProcess` is the runtime's side: it starts this module and waits for its line.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from typing import IO, Any

READY = "READY"
PORT_TAKEN = "PORT_TAKEN"
RELEASE_EVERY_SECONDS = 5
STOP_TIMEOUT_SECONDS = 10
LISTEN_BACKLOG = 128
SWITCH_INTERVAL_SECONDS = 0.001


class AwsServerFailed(RuntimeError):
    """moto's server process did not start; the message says why."""


class AwsPortTaken(AwsServerFailed):
    def __init__(self, code: int) -> None:
        super().__init__(os.strerror(code))
        self.errno = code


class AwsServerProcess:
    """`python -m local_runtime.aws_server` on loopback:`port`, with this process's environment."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None
        self.patched = False  # moto_patches applied in the server process

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float) -> None:
        """Start it and wait for it to listen; AwsPortTaken or AwsServerFailed when it cannot."""
        self._process = process = subprocess.Popen(  # noqa: S603 - our own module  # nosec B603
            [sys.executable, "-m", "local_runtime.aws_server", "--host", self.host, "--port", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        line = _read_line(process.stdout, timeout)
        process.stdout.close()
        if line.startswith(READY):
            self.patched = line == f"{READY} patched"
            return
        if line.startswith(PORT_TAKEN):
            self.stop()
            raise AwsPortTaken(int(line.split()[1]))
        self.stop()
        if not line:
            raise AwsServerFailed(
                f"moto's server did not start within {timeout:.0f} s"
                if process.returncode is None or process.returncode == -signal.SIGKILL
                else f"moto's server exited with {process.returncode} (its error is above)"
            )
        raise AwsServerFailed(f"moto's server said {line!r}")

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> int | None:
        """Close its stdin (it stops), and wait; kill it when it does not stop in time."""
        process = self._process
        if process is None:
            return None
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._process = None
        return process.returncode


def _read_line(stream: IO[bytes], timeout: float) -> str:
    """The first line of `stream` within `timeout` seconds ("" on timeout or end of file)."""
    deadline = time.monotonic() + timeout
    data = b""
    fd = stream.fileno()
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


# -- the server process -------------------------------------------------------------------------------


def _release_model_instances(stop: threading.Event) -> None:
    from moto.core.model_instances import reset_model_data  # noqa: PLC0415 - moto is imported by main

    while not stop.wait(RELEASE_EVERY_SECONDS):
        reset_model_data()


def _stop_when_stdin_closes(server: Any) -> None:
    while os.read(sys.stdin.fileno(), 1024):
        pass
    server.shutdown()


def serve(host: str, port: int) -> int:
    import logging  # noqa: PLC0415

    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415 - heavy, only in this process
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server  # noqa: PLC0415

    from local_runtime import moto_patches  # noqa: PLC0415

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # moto serves every request on a thread of its own: short ones (the webhook's SendMessage) get
    # their turn sooner beside long ones (the worker's transactions) with a slice shorter than 5 ms.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", moto_patches.MotoVersionMismatch)
        patched = moto_patches.install()
    for warning in caught:
        print(f"local runtime: {warning.message}", file=sys.stderr, flush=True)
    # Bound here, not by werkzeug, which prints its own message and exits when the port is taken.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(LISTEN_BACKLOG)
    except OSError as error:
        listener.close()
        code = error.errno if error.errno in (errno.EADDRINUSE, errno.EACCES) else None
        print(f"{PORT_TAKEN} {code}" if code else f"ERROR {error}", flush=True)
        return 1
    server = make_server(
        host,
        port,
        DomainDispatcherApplication(create_backend_app),
        threaded=True,
        request_handler=MotoRequestHandler,
        fd=listener.fileno(),
    )
    print(f"{READY} {'patched' if patched else 'unpatched'}", flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nothing more on the pipe the runtime closed
    stop = threading.Event()
    threading.Thread(target=_release_model_instances, args=(stop,), name="moto-memory", daemon=True).start()
    threading.Thread(target=_stop_when_stdin_closes, args=(server,), name="stdin", daemon=True).start()
    try:
        server.serve_forever()
    finally:
        stop.set()
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    return serve(args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
