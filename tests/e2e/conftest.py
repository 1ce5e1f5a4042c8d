"""The runtime the end-to-end files share: one `make run` per module, stopped with Ctrl-C at its end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.running_runtime import Runtime, start_runtime, stop_runtime


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    started = start_runtime(tmp_path_factory.mktemp("runtime") / "make-run.log")
    try:
        yield started
    finally:
        code = stop_runtime(started)
    # Ctrl-C stops everything cleanly.
    assert code == 0, started.output
    assert started.output.rstrip().endswith("stopped")
