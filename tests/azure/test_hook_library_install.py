"""The hook library on Azure VMs: infra/azure's managed run command carries quiesce_hooks.py and
its SHA-256, and install-library.sh, run here as root against a folder standing for
/usr/local/lib/quiesce, installs it root-owned 0755 only when the content is the pinned one."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from quiesce.hooklib import INSTALLED_PATH, LIBRARY_PATH
from tests.azure.test_permissions import INFRA, load_configuration

SCRIPT = INFRA / "install-library.sh"
FOLDER = str(Path(INSTALLED_PATH).parent)
#: Linux's limit on one environment string (MAX_ARG_STRLEN): the agent hands parameters to the
#: script as environment variables.
MAX_ENV_STRING = 128 * 1024
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="installs a root-owned file")


def test_the_run_command_carries_the_library_and_pins_its_hash_on_the_allowlists_vms() -> None:
    config = load_configuration()
    commands = config["resource"]["azurerm_virtual_machine_run_command"]
    body = commands["hook_library"]
    (source,) = body["source"]
    assert source["script"] == '${file("${path.module}/install-library.sh")}'
    parameters = {p["name"]: p["value"] for p in body["parameter"]}
    assert parameters == {
        "QUIESCE_LIBRARY_B64": "${filebase64(local.library_file)}",
        "QUIESCE_LIBRARY_SHA256": "${filesha256(local.library_file)}",
    }
    library_file = config["locals"]["library_file"].replace("${path.module}", str(INFRA))
    assert Path(library_file).resolve() == LIBRARY_PATH
    # The VMs that get an allowlist get the library.
    assert body["for_each"] == commands["hook_allowlist"]["for_each"]
    assert "protected_parameter" not in body


def test_the_library_fits_in_one_run_command_parameter() -> None:
    assert len(base64.b64encode(LIBRARY_PATH.read_bytes())) < MAX_ENV_STRING


def _install(root: Path, content: bytes, sha: str) -> subprocess.CompletedProcess[str]:
    script = SCRIPT.read_text().replace(FOLDER, str(root / "lib"))
    env = {
        "PATH": "/usr/bin:/bin",
        "QUIESCE_LIBRARY_B64": base64.b64encode(content).decode(),
        "QUIESCE_LIBRARY_SHA256": sha,
    }
    return subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False
    )


@needs_root
def test_the_script_installs_the_library_root_owned_0755_over_an_older_one(
    tmp_path: Path,
) -> None:
    (tmp_path / "lib").mkdir(mode=0o755)
    (tmp_path / "lib" / "quiesce_hooks.py").write_bytes(b"#!/usr/bin/python3\n# older\n")
    content = LIBRARY_PATH.read_bytes()
    digest = hashlib.sha256(content).hexdigest()

    done = _install(tmp_path, content, digest)

    assert done.returncode == 0, done.stderr
    installed = tmp_path / "lib" / "quiesce_hooks.py"
    assert installed.read_bytes() == content
    st = installed.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o755)
    assert f"installed the Quiesce hook library {digest}" in done.stdout
    assert [p.name for p in (tmp_path / "lib").iterdir()] == ["quiesce_hooks.py"]
    listed = subprocess.run(
        [str(installed), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert "postgresql" in listed.stdout


@needs_root
def test_the_script_refuses_a_library_that_is_not_the_pinned_one_and_the_old_one_stays(
    tmp_path: Path,
) -> None:
    (tmp_path / "lib").mkdir(mode=0o755)
    old = tmp_path / "lib" / "quiesce_hooks.py"
    old.write_bytes(b"#!/usr/bin/python3\n# installed\n")
    pinned = hashlib.sha256(LIBRARY_PATH.read_bytes()).hexdigest()
    tampered = LIBRARY_PATH.read_bytes() + b"\nimport os; os.system('id')\n"

    done = _install(tmp_path, tampered, pinned)

    assert done.returncode == 1
    actual = hashlib.sha256(tampered).hexdigest()
    assert f"has SHA-256 {actual}, not the pinned {pinned}: not installed" in done.stderr
    assert old.read_bytes() == b"#!/usr/bin/python3\n# installed\n"
    assert [p.name for p in (tmp_path / "lib").iterdir()] == ["quiesce_hooks.py"]
