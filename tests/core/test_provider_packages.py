"""Every cloud package has one shape: the same module names, the provider assembled in
provider.py only, a spec and member model that import no SDK, and no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLOUDS = ("aws", "azure", "gcp")
#: What every provider package holds, each module under the same name.
COMMON = {
    "clients",
    "events",
    "hooks",
    "inventory",
    "member",
    "permissions",
    "policy_source",
    "provider",
    "retry",
    "snapshots",
    "spec",
    "state",
    "triggers",
}


def package(cloud: str) -> Path:
    return ROOT / "functions" / cloud / f"quiesce_{cloud}"


def imports(file: Path, cloud: str) -> tuple[set[str], set[str]]:
    """(the package's own modules it imports, the top-level names of everything else), at any
    depth (function-level imports count: they make circles too)."""
    own: set[str] = set()
    other: set[str] = set()
    prefix = f"quiesce_{cloud}"
    tree = ast.parse(file.read_text())
    typing_only = {  # `if TYPE_CHECKING:` imports name types, never run: they make no circle
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module == prefix:
                own.update(a.name for a in node.names)
                continue
        for name in names:
            if name.startswith(prefix + "."):
                own.add(name.split(".")[1])
            else:
                other.add(name.split(".")[0])
    return own, other


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_package_has_the_common_modules(cloud: str) -> None:
    modules = {f.stem for f in package(cloud).glob("*.py")}
    assert modules >= COMMON, sorted(COMMON - modules)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_only_provider_py_assembles_the_provider(cloud: str) -> None:
    assembling = sorted(
        f.name
        for f in package(cloud).glob("*.py")
        if any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "Provider"
            for n in ast.walk(ast.parse(f.read_text()))
        )
    )
    # provider.py assembles the cloud's VM provider; managed_provider.py, where a cloud has
    # managed-service providers as well, assembles those (and nothing else does).
    assert assembling in (["provider.py"], ["managed_provider.py", "provider.py"]), assembling


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_spec_and_the_member_model_import_no_sdk(cloud: str) -> None:
    allowed = {"__future__", "typing", "pydantic", "quiesce", f"quiesce_{cloud}"}
    for name in ("spec.py", "member.py"):
        own, other = imports(package(cloud) / name, cloud)
        assert other <= allowed, (name, sorted(other - allowed))
        assert own <= {"member"}, (name, sorted(own))


@pytest.mark.parametrize("cloud", CLOUDS)
def test_no_module_of_a_package_imports_itself_back(cloud: str) -> None:
    graph = {
        f.stem: imports(f, cloud)[0] - {f.stem}
        for f in package(cloud).glob("*.py")
        if f.stem != "__init__"
    }
    circles: list[list[str]] = []

    def walk(path: list[str]) -> None:
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == path[0]:
                circles.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:
                walk([*path, nxt])

    for start in sorted(graph):
        walk([start])
    assert circles == []
