"""moto's server process of the local runtime (local_runtime.aws_server): it listens with the patches
applied, says when its port is taken, outlives Ctrl-C, and stops when the runtime closes its stdin."""

from __future__ import annotations

import errno
import os
import signal
import socket
import time

import boto3
import pytest

from harness.load import free_port
from local_runtime.aws_server import AwsPortTaken, AwsServerProcess

pytestmark = pytest.mark.e2e

START_TIMEOUT = 30.0


def client(port: int) -> object:
    return boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def test_it_serves_with_the_patches_and_stops_when_its_stdin_closes() -> None:
    server = AwsServerProcess("127.0.0.1", free_port())
    server.start(START_TIMEOUT)
    try:
        assert server.patched
        assert client(server.port).list_tables()["TableNames"] == []  # type: ignore[attr-defined]
        assert server.pid is not None
        os.kill(server.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group: it stays up
        time.sleep(0.5)
        assert server.alive()
    finally:
        code = server.stop()
    assert code == 0
    assert not server.alive()


def test_a_taken_port_is_reported_as_such() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = AwsServerProcess("127.0.0.1", taken.getsockname()[1])
        with pytest.raises(AwsPortTaken) as raised:
            server.start(START_TIMEOUT)
    assert raised.value.errno == errno.EADDRINUSE
    assert not server.alive()
