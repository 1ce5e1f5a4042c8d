"""Builds one Lambda function's package: what its handler imports, compiled, nothing else.

    python3.13 scripts/package_function.py WorkerFunction ARTIFACTS_DIR

Run by `sam build` through src/Makefile (`make build-<LogicalId>`, Metadata.BuildMethod: makefile in
template.yaml), and by bench/cold_start.py for the naive baseline. Steps:

1. First-party modules: the handler's import closure within src/, found by reading the code (every
   `import`, at module level or deferred inside a function; not those under `if TYPE_CHECKING:`), so a
   module nobody imports (local_runtime, ops, tests, sample data) is never packaged.
2. Data files those modules read (the entitlement rules).
3. Third-party packages: the distributions step 1's imports come from, and their dependencies, at the
   versions uv.lock pins and with its hashes (`uv export`, then `uv pip install --no-deps
   --require-hashes` for Lambda's platform: arm64, CPython 3.13). boto3 and botocore are neither
   installed nor followed: the python3.13 runtime provides them. The build then checks that the package
   holds exactly the locked closure, at the locked versions, and that every third-party import of step
   1 is packaged or the runtime's, so a missing dependency fails the build, not the first cold start.
4. Bytecode: every module compiled to unchecked-hash .pyc. /var/task is read-only, so without .pyc
   Python compiles every module on every cold start; and SAM zips carry fixed 1980 timestamps, so
   timestamp-checked .pyc never validate. Unchecked-hash .pyc are used without looking at the source.
"""

from __future__ import annotations

import argparse
import ast
import compileall
import importlib.metadata
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

HANDLER_MODULES = {
    "WebhookFunction": "handlers.webhook",
    "WorkerFunction": "handlers.worker",
    "ReconcileFunction": "handlers.reconcile",
    "EntitlementsChangedFunction": "handlers.entitlements_changed",
    "StripeEventBridgeFunction": "handlers.eventbridge",
}
# Files a module reads at run time, relative to src/.
DATA_FILES = {"adapters.settings": ("entitlement_rules.toml",)}
# What the python3.13 Lambda runtime puts on sys.path after /var/task.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3"})
# Distributions the runtime provides: never packaged, and their dependencies not followed from them.
RUNTIME_DISTRIBUTIONS = frozenset({"boto3", "botocore", "s3transfer"})
LAMBDA_PLATFORM = ("--python-platform", "aarch64-manylinux2014", "--python-version", "3.13")
PROJECT = "stripe-aws-sync"
# Installed packages' files no import reads.
NOT_PACKAGED = ("bin",)


class PackagingError(RuntimeError):
    """The package cannot be built as asked (unknown function, unresolved import, wrong Python)."""


def first_party_roots() -> frozenset[str]:
    return frozenset(
        path.name if path.is_dir() else path.stem
        for path in SRC.iterdir()
        if (path.is_dir() and (path / "__init__.py").exists()) or path.suffix == ".py"
    )


def module_file(module: str) -> Path | None:
    """src/ file of a first-party module or package, or None when it is not one."""
    base = SRC.joinpath(*module.split("."))
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(path: Path) -> set[str]:
    """Every module name an `import` in the file may load (for `from a import b`: a, and a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            skipped.update(id(child) for statement in node.body for child in ast.walk(statement))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_closure(entry: str) -> tuple[set[str], set[str]]:
    """(first-party modules the entry module may import, top-level names of everything else)."""
    roots = first_party_roots()
    seen: set[str] = set()
    external: set[str] = set()
    pending = [entry]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        path = module_file(module)
        if path is None:
            continue  # `from package import function`: the name is not a module
        seen.add(module)
        parts = module.split(".")
        pending.extend(".".join(parts[:depth]) for depth in range(1, len(parts)))  # parent packages
        for name in imported_names(path):
            if name.split(".")[0] in roots:
                pending.append(name)
            else:
                external.add(name.split(".")[0])
    return seen, external


def copy_first_party(modules: Iterable[str], artifacts: Path) -> None:
    for module in sorted(modules):
        path = module_file(module)
        assert path is not None
        target = artifacts / path.relative_to(SRC)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        for data in DATA_FILES.get(module, ()):
            shutil.copy2(SRC / data, artifacts / data)


@dataclass(frozen=True)
class LockedDistribution:
    """One distribution as uv.lock pins it for the functions' runtime."""

    name: str
    version: str
    requirement: str  # the `uv export` entry: `name==version ; markers` and its hashes
    required_by: frozenset[str]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def uv_command() -> str:
    """The locked uv (scripts/bootstrap-uv, .venv-uv), or $UV."""
    candidate = os.environ.get("UV") or str(ROOT / ".venv-uv" / "bin" / "uv")
    if not Path(candidate).exists():
        raise PackagingError(f"no uv at {candidate}: run `make install` (it installs the locked uv)")
    return candidate


def parse_export(text: str) -> dict[str, LockedDistribution]:
    """`uv export --format requirements.txt` output (with its `# via` annotations), by name."""
    entries: dict[str, LockedDistribution] = {}
    for block in re.split(r"\n(?=\S)", text.strip()):
        lines = block.splitlines()
        head = lines[0].rstrip(" \\")
        if head.startswith("#") or not head:
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", head)
        if match is None:
            raise PackagingError(f"uv export: unexpected entry {head!r}")
        hashes = [line.strip().rstrip(" \\") for line in lines[1:] if line.strip().startswith("--hash=")]
        notes = [line.strip().removeprefix("#").strip() for line in lines[1:] if line.strip().startswith("#")]
        parents = {normalized(word) for note in notes for word in note.removeprefix("via").split()}
        name = normalized(match.group(1))
        entries[name] = LockedDistribution(
            name, match.group(2), " ".join([head, *hashes]), frozenset(parents)
        )
    return entries


def locked_runtime() -> dict[str, LockedDistribution]:
    """The functions' runtime closure (the project's dependencies, no group) as uv.lock pins it."""
    command = [
        uv_command(), "export", "--frozen", "--package", PROJECT, "--no-default-groups", "--no-emit-project",
        "--no-header", "--format", "requirements.txt",
    ]  # fmt: skip
    environment = {**os.environ, "UV_PREVIEW_FEATURES": "package-conflicts", "UV_PYTHON_DOWNLOADS": "never"}
    exported = subprocess.run(  # noqa: S603 - fixed arguments, the locked uv
        command, cwd=ROOT, env=environment, check=True, capture_output=True, text=True
    )
    return parse_export(exported.stdout)


def distribution_roots(external: Iterable[str]) -> set[str]:
    """The distributions that provide these top-level import names (from the build interpreter)."""
    providers = importlib.metadata.packages_distributions()
    return {normalized(dist) for name in external for dist in providers.get(name, ())}


def function_closure(
    roots: Iterable[str],
    lock: Mapping[str, LockedDistribution],
    provided: frozenset[str] = RUNTIME_DISTRIBUTIONS,
) -> dict[str, str]:
    """name -> locked version of the roots and everything they need, stopping at what is `provided`."""
    children: dict[str, set[str]] = {}
    for entry in lock.values():
        for parent in entry.required_by:
            children.setdefault(parent, set()).add(entry.name)
    closure: dict[str, str] = {}
    pending = [normalized(root) for root in roots]
    while pending:
        name = pending.pop()
        if name in closure or name in provided:
            continue
        if name not in lock:
            raise PackagingError(f"{name} is imported but not among the locked runtime dependencies")
        closure[name] = lock[name].version
        pending.extend(children.get(name, ()))
    return closure


def install_locked(
    closure: Mapping[str, str], lock: Mapping[str, LockedDistribution], artifacts: Path
) -> None:
    if not closure:
        return
    with tempfile.TemporaryDirectory() as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text("".join(f"{lock[name].requirement}\n" for name in sorted(closure)))
        command = [
            uv_command(), "pip", "install", "--quiet", "--no-deps", "--require-hashes", "--only-binary", ":all:",
            *LAMBDA_PLATFORM, "--python", sys.executable, "--target", str(artifacts), "-r", str(requirements),
        ]  # fmt: skip
        subprocess.run(command, check=True)  # noqa: S603 - fixed arguments, the locked uv
    for name in NOT_PACKAGED:
        shutil.rmtree(artifacts / name, ignore_errors=True)
    for cache in list(artifacts.rglob("__pycache__")):
        shutil.rmtree(cache)


def packaged_versions(artifacts: Path) -> dict[str, str]:
    """name -> version of every distribution installed into the package (its .dist-info folders)."""
    versions: dict[str, str] = {}
    for info in artifacts.glob("*.dist-info"):
        metadata = (info / "METADATA").read_text(encoding="utf-8")
        name = re.search(r"^Name: (.+)$", metadata, re.MULTILINE)
        version = re.search(r"^Version: (.+)$", metadata, re.MULTILINE)
        if name is None or version is None:
            raise PackagingError(f"{info.name} has no name or version")
        versions[normalized(name.group(1).strip())] = version.group(1).strip()
    return versions


def check_locked(closure: Mapping[str, str], artifacts: Path) -> None:
    """The package holds exactly the locked closure, at the locked versions."""
    packaged = packaged_versions(artifacts)
    if packaged != dict(closure):
        differences = sorted(
            f"{name}: packaged {packaged.get(name, 'nothing')}, locked {closure.get(name, 'nothing')}"
            for name in set(packaged) | set(closure)
            if packaged.get(name) != closure.get(name)
        )
        raise PackagingError("the package differs from uv.lock: " + "; ".join(differences))


def installed_top_levels(artifacts: Path) -> set[str]:
    return {
        path.name if path.is_dir() else path.stem
        for path in artifacts.iterdir()
        if (path.is_dir() and not path.name.endswith((".dist-info", ".data"))) or path.suffix == ".py"
    }


def check_imports(external: set[str], artifacts: Path) -> None:
    provided = installed_top_levels(artifacts) | RUNTIME_PROVIDED | set(sys.stdlib_module_names)
    missing = sorted(external - provided - {"__future__"})
    if missing:
        raise PackagingError(
            f"imported but neither packaged nor provided by the runtime: {', '.join(missing)}"
        )


def compile_bytecode(artifacts: Path) -> None:
    compiled = compileall.compile_dir(
        artifacts,
        quiet=1,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not compiled:
        raise PackagingError(f"some modules under {artifacts} do not compile")


def check_python() -> None:
    if sys.version_info[:2] != (3, 13):
        raise PackagingError(f"needs Python 3.13 (the runtime's bytecode), not {sys.version.split()[0]}")


def empty(artifacts: Path) -> None:
    """sam build may hand over a directory from an earlier build."""
    artifacts.mkdir(parents=True, exist_ok=True)
    for stale in artifacts.iterdir():
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()


def build(function: str, artifacts: Path) -> None:
    check_python()
    if function not in HANDLER_MODULES:
        raise PackagingError(f"unknown function {function}; known: {', '.join(HANDLER_MODULES)}")
    empty(artifacts)
    modules, external = import_closure(HANDLER_MODULES[function])
    copy_first_party(modules, artifacts)
    lock = locked_runtime()
    closure = function_closure(distribution_roots(external - RUNTIME_PROVIDED), lock)
    install_locked(closure, lock, artifacts)
    check_locked(closure, artifacts)
    check_imports(external, artifacts)
    compile_bytecode(artifacts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("function", choices=sorted(HANDLER_MODULES))
    parser.add_argument("artifacts", type=Path)
    arguments = parser.parse_args(argv)
    try:
        build(arguments.function, arguments.artifacts.resolve())
    except (PackagingError, subprocess.CalledProcessError) as error:
        print(f"package_function: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
