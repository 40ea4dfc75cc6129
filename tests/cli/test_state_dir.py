"""The CLI uses a state folder only when it is safely its own (issue 9, item 5), reads it without
writing (points/events on read-only media), and refuses layouts where its writes would land on a
filesystem a pre hook freezes (issue 10, item 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from quiesce.cli.app import app
from tests.workspace import Workspace, two_member_workspace

runner = CliRunner()

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to create a second user and act as that user"
)


def quiesce(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


@pytest.fixture
def attacker() -> Iterator[str]:
    """An unprivileged local user, created for the test and removed after it."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.skip("needs root, useradd and runuser")
    name = "qatk" + uuid.uuid4().hex[:8]
    made = _sh("useradd", "--no-create-home", "--shell", "/bin/sh", name)
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        yield name
    finally:
        _sh("userdel", name)


def as_user(user: str, *argv: str) -> None:
    done = _sh("runuser", "-u", user, "--", *argv)
    assert done.returncode == 0, done.stderr


def with_state_dir(ws: Workspace, state_dir: Path) -> None:
    doc = yaml.safe_load(ws.policy.read_text())
    doc["state_dir"] = str(state_dir)
    ws.policy.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return two_member_workspace(tmp_path)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder every user may create entries in, like /tmp (root-owned, sticky), reachable by
    every user (pytest's own temporary folders are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="quiesce-shared-", dir="/tmp"))
    os.chmod(base, 0o755)
    folder = base / "shared"
    folder.mkdir()
    os.chmod(folder, 0o1777)
    yield folder
    shutil.rmtree(base)


@needs_root
def test_a_state_folder_another_user_created_is_refused_and_nothing_is_written_into_it(
    ws: Workspace, shared: Path, attacker: str
) -> None:
    state = shared / "state"
    as_user(attacker, "mkdir", "-m", "0755", str(state))  # before root ever ran
    with_state_dir(ws, state)
    for command in (["run", str(ws.policy), "-g", "orders"], ["points", str(ws.policy)]):
        code, out = quiesce(*command)
        assert code == 1
        assert f"the state file {state} is owned by uid" not in out
        assert f"{state}" in out
        assert "is owned by uid" in out
        assert f"chown root:root {state}" in out
    assert list(state.iterdir()) == [], "root wrote nothing into the other user's folder"
    assert ws.log_lines() == [], "no hook ran"


@needs_root
def test_a_catalog_planted_by_another_user_is_refused_by_points(
    ws: Workspace, shared: Path, attacker: str
) -> None:
    # A real catalog with a point in it (one the user could have edited at will) is planted.
    code, _ = quiesce("run", str(ws.policy), "-g", "orders")
    assert code == 0
    forged = shared / "forged.sqlite3"
    shutil.copy(ws.root / "state" / "catalog.sqlite3", forged)
    os.chmod(forged, 0o644)
    state = shared / "state"
    as_user(attacker, "mkdir", "-m", "0700", str(state))
    as_user(attacker, "cp", str(forged), str(state / "catalog.sqlite3"))
    with_state_dir(ws, state)
    code, out = quiesce("points", str(ws.policy), "--json")
    assert code == 1
    assert "rp-" not in out, "no point from the planted catalog is listed"
    assert f"the state folder {state}" in out
    assert "is owned by uid" in out


@needs_root
def test_a_catalog_file_of_another_user_in_roots_folder_is_refused(
    ws: Workspace, attacker: str
) -> None:
    code, _ = quiesce("run", str(ws.policy), "-g", "orders")
    assert code == 0
    catalog = ws.root / "state" / "catalog.sqlite3"
    shutil.chown(catalog, user=attacker)
    for command in ("points", "events", "recover"):
        code, out = quiesce(command, str(ws.policy))
        assert code == 1
        assert f"the state file {catalog} is owned by uid" in out
        assert f"chown -R root {catalog}" in out


def test_a_state_folder_others_can_write_is_refused_with_the_chmod_that_fixes_it(
    ws: Workspace,
) -> None:
    state = ws.root / "state"
    state.mkdir(mode=0o700)
    os.chmod(state, 0o777)
    code, out = quiesce("points", str(ws.policy))
    assert code == 1
    assert f"chmod go-w {state}" in out
    os.chmod(state, 0o700)
    code, out = quiesce("points", str(ws.policy))
    assert code == 0, out


def test_a_symlinked_catalog_is_refused_not_followed(ws: Workspace, tmp_path: Path) -> None:
    state = ws.root / "state"
    state.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere.sqlite3"
    elsewhere.write_bytes(b"")
    (state / "catalog.sqlite3").symlink_to(elsewhere)
    code, out = quiesce("run", str(ws.policy), "-g", "orders")
    assert code == 1
    assert f"{state / 'catalog.sqlite3'} is a symbolic link" in out
    assert elsewhere.read_bytes() == b""


@needs_root
def test_points_and_events_read_a_state_folder_on_read_only_media(ws: Workspace) -> None:
    code, _ = quiesce("run", str(ws.policy), "-g", "orders")
    assert code == 0
    state = ws.root / "state"
    before = sorted(p.name for p in state.iterdir())
    if _sh("mount", "--bind", str(state), str(state)).returncode != 0:
        pytest.skip("bind mounts are not available")
    try:
        remounted = _sh("mount", "-o", "remount,ro,bind", str(state))
        assert remounted.returncode == 0, remounted.stderr
        code, out = quiesce("points", str(ws.policy), "--json")
        assert code == 0, out
        assert len(json.loads(out)) == 1
        code, out = quiesce("events", str(ws.policy), "--json")
        assert code == 0, out
        assert json.loads(out.splitlines()[-1])["type"] == "quiesce.run.completed"
    finally:
        _sh("umount", "--lazy", str(state))
    assert sorted(p.name for p in state.iterdir()) == before


def test_validate_and_plan_refuse_state_on_the_filesystem_a_pre_hook_may_freeze(
    ws: Workspace,
) -> None:
    doc = yaml.safe_load(ws.policy.read_text())
    del doc["groups"]["orders"]["members"][0]["pre_freezes_volumes"]  # default: it may freeze
    ws.policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    volume = ws.root / "data" / "db"
    state = ws.root / "state"
    code, out = quiesce("validate", str(ws.policy))
    assert code == 2
    assert f"state_dir {state}" in out
    assert f"the hook runner's state folder {state / 'guest'}" in out
    assert f"the snapshot destination {state / 'snapshots'}" in out
    assert f"the volume {volume}" in out
    code, out = quiesce("plan", str(ws.policy), "--json")
    assert code == 2
    (problem,) = json.loads(out)["problems"]
    assert f"the volume {volume}" in problem


def test_state_on_another_filesystem_is_accepted(ws: Workspace) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(ws.root).st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the test's folder")
    doc = yaml.safe_load(ws.policy.read_text())
    del doc["groups"]["orders"]["members"][0]["pre_freezes_volumes"]
    ws.policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    elsewhere = Path(tempfile.mkdtemp(dir=shm))
    try:
        with_state_dir(ws, elsewhere / "state")
        code, out = quiesce("validate", str(ws.policy))
        assert code == 0, out
    finally:
        shutil.rmtree(elsewhere)
