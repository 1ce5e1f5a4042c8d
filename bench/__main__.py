"""`python -m bench [name ...]`: run every bench module that defines `run() -> None` (not `_`-prefixed
ones), or the named ones.

Modules are found in this package at run time, so a new bench/<name>.py with a `run()` joins
`make bench` by itself. One failing bench is reported and the others still run; the exit status
is 1 if any failed.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable
from types import ModuleType

import bench


def bench_modules() -> list[str]:
    """Names of the modules in this package (not `__main__`, not private ones), sorted."""
    return sorted(info.name for info in pkgutil.iter_modules(bench.__path__) if not info.name.startswith("_"))


def _runner(module: ModuleType) -> Callable[[], None] | None:
    run = getattr(module, "run", None)
    return run if callable(run) else None


def main(argv: list[str]) -> int:
    unknown = sorted(set(argv) - set(bench_modules()))
    if unknown:
        print(f"unknown bench module(s): {', '.join(unknown)}; available: {', '.join(bench_modules())}")
        return 2
    failed: list[str] = []
    for name in argv or bench_modules():
        try:
            run = _runner(importlib.import_module(f"bench.{name}"))
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        if run is None:
            if argv:
                print(f"bench.{name} has no run()")
                failed.append(name)
            continue
        print(f"\n== bench.{name}", flush=True)
        started = time.perf_counter()
        try:
            run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"(bench.{name}: {time.perf_counter() - started:.1f} s)", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
