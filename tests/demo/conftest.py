"""Fixtures of the demo's tests: the sample application as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from quiesce.demo import control


@dataclass
class RunningApp:
    proc: subprocess.Popen[str]
    db: Path
    journal: Path
    socket: Path
    log: Path

    def ask(self, command: str) -> str:
        return control.request(self.socket, command, timeout=5)

    def last_id(self) -> int:
        return int(self.ask("status").split()[2])

    def wait_for_commits(self, more_than: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.last_id()
            if last > more_than:
                return last
            time.sleep(0.02)
        raise AssertionError(f"no commit past {more_than} within {timeout}s")

    def output(self) -> str:
        return self.log.read_text()


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = next(
                (
                    ln
                    for ln in (entry / "status").read_text().splitlines()
                    if ln.startswith("State:")
                ),
                "",
            )
        except OSError:
            continue
        if text in cmdline and "zombie" not in state:
            found.append(int(entry.name))
    return found


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., RunningApp]]:
    """Starts the sample application on folders a/ and b/ of tmp_path; stops it afterwards."""
    started: list[RunningApp] = []

    def start(*extra: str) -> RunningApp:
        (tmp_path / "a").mkdir(exist_ok=True)
        (tmp_path / "b").mkdir(exist_ok=True)
        app_log = tmp_path / f"app{len(started)}.log"
        with app_log.open("w") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "quiesce.demo.app",
                    "--db",
                    str(tmp_path / "a" / "orders.db"),
                    "--journal",
                    str(tmp_path / "b" / "journal.log"),
                    "--control",
                    str(tmp_path / "app.sock"),
                    "--parent-pid",
                    str(os.getpid()),
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        running = RunningApp(
            proc=proc,
            db=tmp_path / "a" / "orders.db",
            journal=tmp_path / "b" / "journal.log",
            socket=tmp_path / "app.sock",
            log=app_log,
        )
        started.append(running)
        control.wait_ready(running.socket, timeout=10)
        return running

    yield start
    for running in started:
        if running.proc.poll() is None:
            running.proc.send_signal(signal.SIGTERM)
            try:
                running.proc.wait(5)
            except subprocess.TimeoutExpired:
                running.proc.kill()
                running.proc.wait()
