"""A harness for the guest hook runner: real scripts, real processes, real files in tmp_path.

Every test gets its own run id; at teardown every process carrying it (hooks, their children,
the watchdog) is killed, so no `sleep 300` outlives its test.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from quiesce.guest import RUNNER_PATH

PYTHON_38 = Path("/root/.pyenv/versions/3.8.18/bin/python3")
# The interpreter that runs the runner; set it to run the whole suite against another Python,
# e.g. QUIESCE_GUEST_TEST_PYTHON=/root/.pyenv/versions/3.8.18/bin/python3 pytest tests/guest
RUNNER_PYTHON = os.environ.get("QUIESCE_GUEST_TEST_PYTHON") or sys.executable


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Polls until the predicate holds; False if it never did within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def processes_of(run_id: str) -> list[int]:
    """Live processes started for this run id: hooks (by their environment) and watchdogs."""
    marker = f"QUIESCE_RUN_ID={run_id}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        environ = _read(f"/proc/{name}/environ").split(b"\0")
        cmdline = _read(f"/proc/{name}/cmdline").split(b"\0")
        is_watchdog = b"watchdog" in cmdline and f"{run_id}--".encode() in b" ".join(cmdline)
        if (marker in environ or is_watchdog) and alive(int(name)):
            found.append(int(name))
    return found


def _acceptable_folder(folder: Path) -> bool:
    st = folder.stat()
    if st.st_uid == 0 and st.st_mode & stat.S_ISVTX:
        return True
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class Guest:
    """One test's view of a machine: a hooks folder, a state folder and a run id."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hooks = root / "hooks"
        self.hooks.mkdir(mode=0o755)
        self.hooks.chmod(0o755)
        self.state_dir = root / "state"
        self.config = root / "hooks.json"
        self.allowlist: dict[str, Any] = {
            "version": 1,
            "state_dir": str(self.state_dir),
            "hooks": {},
        }
        self.declared = 0
        self.run_id = f"t-{uuid.uuid4().hex[:12]}"
        self.member = "db"
        self.started: list[subprocess.Popen[str]] = []

    @property
    def key(self) -> str:
        return f"{self.run_id}--{self.member}"

    # ---- scripts -------------------------------------------------------------------------

    def script(self, name: str, body: str, mode: int = 0o755, folder: Path | None = None) -> Path:
        """A /bin/sh hook script with the given body."""
        path = (folder or self.hooks) / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(mode)
        return path

    def marking_script(
        self, name: str, mode: int = 0o755, folder: Path | None = None
    ) -> tuple[Path, Path]:
        """A hook that leaves a marker file when (and only when) it is executed."""
        marker = self.root / f"{name}.ran"
        return self.script(name, f"touch {marker}", mode=mode, folder=folder), marker

    def counting_script(self, name: str, log: Path | None = None) -> tuple[Path, Path]:
        """A hook that counts its executions in a file (and appends its name to `log`)."""
        counter = self.root / f"{name}.count"
        body = f"n=$(cat {counter} 2>/dev/null || echo 0)\necho $((n + 1)) > {counter}\n"
        if log is not None:
            body += f"echo {name} >> {log}\n"
        return self.script(name, body), counter

    @staticmethod
    def count(counter: Path) -> int:
        return int(counter.read_text()) if counter.exists() else 0

    # ---- the allowlist and requests ---------------------------------------------------
    #
    # Tests describe hooks as before ({"run": [...], ...}); the harness declares each one in
    # the machine's allowlist (hooks.json, as root would) under a name, and the request that
    # reaches the runner carries only that name.

    @staticmethod
    def hook(path: Path | str, *args: str, **fields: Any) -> dict[str, Any]:
        return {"run": [str(path), *args], **fields}

    def declare(self, phase: str, hook: dict[str, Any] | Path, **fields: Any) -> str:
        """Adds a hook to the allowlist; returns its name."""
        entry = self.hook(hook) if isinstance(hook, Path) else dict(hook)
        entry.update(fields)
        entry["phase"] = phase
        self.declared += 1
        name = f"{self.member}.{phase}.{self.declared}"
        self.allowlist["hooks"][name] = entry
        self.write_config()
        return name

    def use_state_dir(self, folder: Path) -> None:
        self.state_dir = folder
        self.allowlist["state_dir"] = str(folder)
        self.write_config()

    def write_config(self) -> None:
        self.config.write_text(json.dumps(self.allowlist, indent=1))
        self.config.chmod(0o644)

    def request(self, phase: str, hook: dict[str, Any] | Path, **fields: Any) -> dict[str, Any]:
        thaw = fields.pop("thaw", None)
        max_freeze = fields.pop("max_freeze_seconds", None)
        extra = fields.pop("extra_args", None)
        declared_phase = phase if phase != "check" else ("pre" if thaw is not None else "verify")
        extra_entry: dict[str, Any] = {}
        if declared_phase == "pre":
            thaw_hook = self.hook(thaw) if isinstance(thaw, Path) else thaw
            extra_entry["thaw"] = self.declare("post", thaw_hook)
            extra_entry["max_freeze_seconds"] = 30 if max_freeze is None else max_freeze
        request: dict[str, Any] = {
            "version": 2,
            "run_id": self.run_id,
            "member": self.member,
            "phase": phase,
            "hook": self.declare(declared_phase, hook, **extra_entry),
        }
        if extra:
            request["restore_path"] = extra[-1]
        request.update(fields)
        return request

    def pre(self, hook: dict[str, Any] | Path, thaw: dict[str, Any] | Path, **fields: Any) -> Any:
        fields.setdefault("max_freeze_seconds", 30)
        return self.request("pre", hook, thaw=thaw, **fields)

    def post_for(self, pre_request: dict[str, Any]) -> dict[str, Any]:
        """The post request that goes with a pre request (naming the pre's declared thaw)."""
        thaw = self.allowlist["hooks"][pre_request["hook"]]["thaw"]
        return {**pre_request, "phase": "post", "hook": thaw}

    # ---- running the runner --------------------------------------------------------------

    def command(self, python: str | None = None) -> list[str]:
        return [python or RUNNER_PYTHON, str(RUNNER_PATH)]

    def run_command(self, python: str | None = None) -> list[str]:
        return [*self.command(python), "run", "--config", str(self.config)]

    def run(
        self,
        request: dict[str, Any] | str,
        python: str | None = None,
        env: dict[str, str] | None = None,
        expect_rc: int = 0,
    ) -> dict[str, Any]:
        """Runs `run --request` to completion and returns its one JSON result."""
        text = request if isinstance(request, str) else json.dumps(request)
        large = len(text) > 100_000  # past what one command-line argument may hold
        done = subprocess.run(
            [*self.run_command(python), *([] if large else ["--request", text])],
            input=text if large else None,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == expect_rc, (done.returncode, done.stdout, done.stderr)
        lines = done.stdout.splitlines()
        assert len(lines) == 1, done.stdout
        result: dict[str, Any] = json.loads(lines[0])
        return result

    def start(self, request: dict[str, Any]) -> subprocess.Popen[str]:
        """Starts `run` in the background (e.g. a pre whose hook hangs)."""
        proc = subprocess.Popen(
            [*self.run_command(), "--request", json.dumps(request)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        return proc

    @staticmethod
    def finish(proc: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, (proc.returncode, out, err)
        result: dict[str, Any] = json.loads(out)
        return result

    # ---- state ---------------------------------------------------------------------------

    def state(self, key: str | None = None) -> dict[str, Any] | None:
        path = self.state_dir / "runs" / f"{key or self.key}.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def edit_state(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Changes the state file the way the runner does: under its lock, atomically."""
        runs = self.state_dir / "runs"
        with open(runs / f"{self.key}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.state()
            assert state is not None
            change(state)
            tmp = runs / f".{self.key}.test.tmp"
            tmp.write_text(json.dumps(state))
            os.replace(tmp, runs / f"{self.key}.json")

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        for _ in range(3):
            for pid in processes_of(self.run_id):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if wait_until(lambda: not processes_of(self.run_id), 2):
                return


@pytest.fixture
def guest(tmp_path: Path) -> Iterator[Guest]:
    # Hooks run as root must not sit below a folder other users can write; pytest's base temp
    # folder (/tmp/pytest-of-root/..., under the root-owned sticky /tmp) is fine, but check.
    for folder in [tmp_path, *tmp_path.parents]:
        if not _acceptable_folder(folder):
            pytest.fail(
                f"{folder} (a parent of the test's tmp_path) is writable by other users, so the "
                "runner would refuse every hook; run pytest with --basetemp in a safe folder"
            )
    harness = Guest(tmp_path)
    try:
        yield harness
    finally:
        harness.cleanup()


@pytest.fixture
def another_uid() -> int:
    """A user that is neither root nor the tests' user: nobody."""
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    return 65534
