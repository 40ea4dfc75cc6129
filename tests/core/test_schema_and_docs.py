"""The schema documents every field, the docs match the code, and the core needs no cloud SDK."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import quiesce
from quiesce.policy.model import json_schema
from quiesce.reference import DOCS

ROOT = Path(__file__).resolve().parents[2]
CORE = Path(quiesce.__file__).parent
CLOUD_SDKS = {
    "boto3",
    "botocore",
    "aws_lambda_powertools",
    "azure",
    "google",
    "functions_framework",
    "moto",
}


def properties(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for model, body in [("Policy", schema), *schema.get("$defs", {}).items()]:
        for name, prop in body.get("properties", {}).items():
            out.append((f"{model}.{name}", prop))
    return out


def test_every_policy_field_has_a_description_and_an_example() -> None:
    props = properties(json_schema())
    assert len(props) > 20
    missing = [
        name for name, prop in props if not prop.get("description") or not prop.get("examples")
    ]
    assert missing == []


@pytest.mark.parametrize("name", sorted(DOCS))
def test_the_generated_reference_docs_are_up_to_date(name: str) -> None:
    assert (ROOT / "docs" / name).read_text() == DOCS[name](), "run `make docs`"


def test_the_core_package_imports_no_cloud_sdk() -> None:
    offenders = []
    for file in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{file.name}: {n}" for n in names if n.split(".")[0] in CLOUD_SDKS]
    assert offenders == []


def test_importing_every_core_module_loads_no_cloud_sdk() -> None:
    modules = sorted(
        "quiesce." + ".".join(f.relative_to(CORE).with_suffix("").parts)
        for f in CORE.rglob("*.py")
        if f.name != "__init__.py" and "guest" not in f.parts
    )
    # Some SDKs' .pth files create empty namespace packages (google, google.cloud) at start-up:
    # only what importing the core adds counts.
    code = (
        "import importlib, sys\n"
        "before = set(sys.modules)\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "added = set(sys.modules) - before\n"
        f"print(sorted(n for n in added if n.split('.')[0] in {sorted(CLOUD_SDKS)!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
