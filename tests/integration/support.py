"""Helpers for tests that run `quiesce` as real processes on a local workspace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.workspace import Workspace

#: Enough small files that copying them takes a good part of a second: the snapshot phase can
#: be caught from outside.
MANY_FILES = 3000


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quiesce.cli.app", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "quiesce.cli.app", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def fill(folder: Path, files: int, size: int = 4096) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        sub = folder / f"d{i % 30:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:05d}").write_bytes(os.urandom(size))
    return folder


def copy_workspace(root: Path, files: int = 10, **group: Any) -> Workspace:
    """One member `m` without hooks, one volume of `files` files, a crash-consistent group."""
    os.chmod(root, 0o755)
    ws = Workspace(root)
    fill(root / "data" / "m", files)
    ws.write_policy(
        {
            "g": {
                "consistency": "crash",
                **group,
                "members": [
                    {"name": "m", "provider": "local", "volumes": [str(root / "data" / "m")]}
                ],
            }
        }
    )
    return ws


def snapshots_dir(ws: Workspace) -> Path:
    return ws.root / "state" / "snapshots"


def catalog(ws: Workspace) -> Path:
    return ws.root / "state" / "catalog.sqlite3"


def copying(ws: Workspace) -> bool:
    """A snapshot's data folder exists: the snapshot phase is under way."""
    return any(snapshots_dir(ws).glob("*/*/*/data/*"))


def run_json(ws: Workspace, *extra: str) -> dict[str, Any]:
    done = cli("run", str(ws.policy), "-g", "g", "--json", *extra)
    assert done.stdout, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def events_of(ws: Workspace, type_: str) -> list[dict[str, Any]]:
    done = cli("events", str(ws.policy), "--json", "--type", type_)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def points_of(ws: Workspace) -> list[dict[str, Any]]:
    done = cli("points", str(ws.policy), "--json")
    assert done.returncode == 0, done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def kill_when_copying(ws: Workspace, sig: signal.Signals, *args: str) -> subprocess.Popen[str]:
    """Starts `quiesce run` on group g and sends `sig` once its snapshot copy is under way."""
    proc = start("run", str(ws.policy), "-g", "g", "--json", *args)
    try:
        assert wait_for(lambda: copying(ws) or proc.poll() is not None, 30)
        assert proc.poll() is None, "the run ended before its copy could be caught"
        proc.send_signal(sig)
    except BaseException:
        proc.kill()
        raise
    return proc


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
