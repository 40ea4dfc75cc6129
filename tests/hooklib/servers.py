"""Real database servers for the hook library's tests: loop-mounted filesystems, folders the
servers' users can reach, and a policy that backs a server up through the library hooks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from quiesce.cli.app import app
from quiesce.hooklib import LIBRARY_PATH

runner = CliRunner()


def need(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("running servers as their own users and mounting filesystems need root")
    for tool in tools:
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            pytest.skip(f"{tool} is not installed (.ci/run installs it where it can)")


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder other users can reach (pytest's own is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="quiesce-db-", dir="/tmp"))
    folder.chmod(0o755)
    mounts: list[Path] = []
    try:
        yield folder
    finally:
        for mount in folder.iterdir():
            if mount.is_mount():
                mounts.append(mount)
        for mount in mounts:
            subprocess.run(["fsfreeze", "-u", str(mount)], capture_output=True)
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def loop_mount(folder: Path, size_mb: int, owner: str | None = None) -> Path:
    need("mkfs.ext4", "mount", "fsfreeze")
    image = Path("/var/tmp") / f"quiesce-db-{uuid.uuid4().hex[:8]}.img"
    with open(image, "wb") as handle:
        handle.truncate(size_mb * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    folder.mkdir(parents=True)
    done = subprocess.run(["mount", "-o", "loop", str(image), str(folder)], capture_output=True)
    image.unlink()  # the loop device keeps it until the unmount
    if done.returncode != 0:
        pytest.skip(f"cannot loop-mount here: {done.stderr.decode().strip()}")
    folder.chmod(0o755)
    if owner is not None:
        shutil.chown(folder, owner, owner)
    return folder


def library(*args: str) -> list[str]:
    return [sys.executable, "-I", str(LIBRARY_PATH), *args]


def write_policy(path: Path, members: list[dict[str, Any]], state: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "db",
                "state_dir": str(state),
                "groups": {
                    "app": {
                        "consistency": "application",
                        "on_quiesce_failure": "abort",
                        "max_freeze_seconds": 60,
                        "members": members,
                    }
                },
            }
        )
    )
    return path


def backup_and_restore(policy: Path, target: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """`quiesce run` then `quiesce restore` (with verify); both results."""
    ran = runner.invoke(app, ["run", str(policy), "-g", "app", "--json"])
    assert ran.exit_code == 0, ran.output
    record = json.loads(ran.output)
    assert record["consistency"] == "application", record
    restored = runner.invoke(
        app, ["restore", str(policy), record["recovery_point"], "--to", str(target), "--json"]
    )
    assert restored.exit_code == 0, restored.output
    result: dict[str, Any] = json.loads(restored.output)
    return record, result
