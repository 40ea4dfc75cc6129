"""The Azure package: what the Function App needs at its root, nothing it does not."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "package_functions.py"
POLICY = {
    "version": 1,
    "name": "shop",
    "groups": {
        "orders": {
            "consistency": "crash",
            "members": [
                {
                    "name": "api",
                    "provider": "azure",
                    "subscription": "00000000-0000-0000-0000-000000000000",
                    "resource_group": "rg-orders",
                    "select": {"vm_names": ["api-1"]},
                }
            ],
        }
    },
}


def package(tmp_path: Path, policy: object, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    command = [sys.executable, str(SCRIPT), "azure", "--policy", str(tmp_path / "policy.yaml")]
    return subprocess.run(
        [*command, "-o", str(tmp_path / "app.zip"), *extra],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_package_holds_the_app_the_host_settings_the_code_and_the_policy(
    tmp_path: Path,
) -> None:
    built = package(tmp_path, POLICY, "--function-timeout", "00:20:00")
    assert built.returncode == 0, built.stderr
    with zipfile.ZipFile(tmp_path / "app.zip") as archive:
        names = set(archive.namelist())
        host = json.loads(archive.read("host.json"))
        requirements = archive.read("requirements.txt").decode().split()
        app = archive.read("function_app.py").decode()
    assert {"function_app.py", "host.json", "requirements.txt", "policy.yaml"} <= names
    assert "quiesce_azure/function_app.py" in names
    assert "quiesce/engine/run.py" in names
    assert not any(n.startswith(("quiesce/cli/", "quiesce/demo/")) for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert host["functionTimeout"] == "00:20:00"
    assert "from quiesce_azure.function_app import app" in app
    assert any(r.startswith("azure-mgmt-compute") for r in requirements)
    assert not any(r.startswith(("typer", "rich")) for r in requirements)


def test_the_same_sources_give_the_same_bytes(tmp_path: Path) -> None:
    package(tmp_path, POLICY)
    first = (tmp_path / "app.zip").read_bytes()
    package(tmp_path, POLICY)
    assert (tmp_path / "app.zip").read_bytes() == first


def test_a_policy_that_does_not_validate_is_not_packaged(tmp_path: Path) -> None:
    built = package(tmp_path, {"version": 1, "name": "shop"})
    assert built.returncode == 2
    assert "groups" in built.stderr
    assert not (tmp_path / "app.zip").exists()
