"""Runs hooks on this machine through the guest hook runner, as a child process.

The runner (quiesce_guest.py) runs only hooks its allowlist declares (docs/guest-protocol.md).
For `local` members Quiesce is the machine's administrator: it writes the allowlist of the
policy's local hooks into its private guest state folder (mode 0600 in a 0700 folder, atomically,
only when it changed, before the run starts) and passes that file with `--config`. Each call
sends a version 2 request: the hook's name and the run's identifiers, nothing to execute.

The runner does the security checks, the retries, the timeouts and, for a pre hook, arms the
watchdog that thaws the member by itself if no post call comes. This adapter reads its one JSON
result from stdout; it never runs a hook itself. The runner is started in a session of its own,
so a Ctrl-C aimed at the orchestrator does not kill a hook half-way, and in isolated mode
(`python -I`): hooks run as root, so PYTHONPATH and the user's site-packages must not be able
to change what the runner imports. Every wait on the runner has a limit: a runner stuck in the
kernel (writing to a frozen filesystem) is reported, never waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from quiesce.allowlist import render
from quiesce.guest.protocol import LOCAL, Request, Stopwatch, Timeouts, read_answer
from quiesce.guest.quiesce_guest import CONFIG_VERSION
from quiesce.ports import HookCall, HookRunner
from quiesce.providers.local.statedir import ensure_private_dir
from quiesce.record import HookResult

#: After the answer timeout: how long SIGTERM, then SIGKILL, may take to end the runner.
TERM_WAIT = 2.0
KILL_WAIT = 5.0
#: How much of the runner's stderr a RunnerError message carries.
STDERR_TAIL = 2000
#: The allowlist's file name in the guest state folder.
ALLOWLIST_FILE = "hooks.json"


def default_runner_path() -> Path:
    """The guest hook runner shipped with this package."""
    from quiesce.guest import RUNNER_PATH

    return Path(RUNNER_PATH)


def state_key(run_id: str, member: str) -> str:
    """The guest runner's key of one member's state in one run."""
    return f"{run_id}--{member}"


def write_if_changed(path: Path, text: str) -> bool:
    """Writes `text` to `path` (mode 0600) atomically, unless it already holds exactly that.
    Returns whether it wrote. Never follows a symlink at `path`."""
    data = text.encode("utf-8")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # missing, or a symlink (ELOOP): replaced below, never followed
        fd = -1
    if fd >= 0:
        try:
            st = os.fstat(fd)
            same = st.st_size == len(data) and os.read(fd, len(data) + 1) == data
        finally:
            os.close(fd)
        if same and st.st_uid == os.geteuid() and st.st_mode & 0o077 == 0:
            return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True


class LocalHookRunner(HookRunner):
    """Runs `python quiesce_guest.py run --config <allowlist>`, one process per call.

    `hooks` are the allowlist entries of the policy's local hooks, by name (see
    quiesce.allowlist). With `scratch`, the allowlist goes to a private temporary folder
    instead (for `quiesce plan`, which leaves the state folder untouched)."""

    def __init__(
        self,
        state_dir: Path,
        hooks: Mapping[str, dict[str, Any]] | None = None,
        python: str = sys.executable,
        runner: Path | None = None,
        scratch: bool = False,
        timeouts: Timeouts = LOCAL,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.guest_state_dir = self.state_dir / "guest"
        self.hooks = dict(hooks or {})
        self.python = python
        self._runner = runner
        self._scratch = scratch
        self.timeouts = timeouts
        self._lock = threading.Lock()
        self._config: Path | None = None

    @property
    def runner(self) -> Path:
        if self._runner is None:
            self._runner = default_runner_path()
        return self._runner

    # ------------------------------------------------------------------------------ the allowlist

    def allowlist(self) -> dict[str, Any]:
        """The allowlist document this runner installs."""
        return {
            "version": CONFIG_VERSION,
            "state_dir": str(self.guest_state_dir.absolute()),
            "hooks": dict(sorted(self.hooks.items())),
        }

    def install(self) -> Path:
        """Writes the allowlist (once per runner, and only when its content changed); returns
        its path. Called before a run starts, so no write happens inside a freeze."""
        with self._lock:
            if self._config is None:
                if self._scratch:
                    folder = Path(tempfile.mkdtemp(prefix="quiesce-allowlist-"))
                    weakref.finalize(self, shutil.rmtree, folder, True)
                else:
                    self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                    ensure_private_dir(self.guest_state_dir)
                    folder = self.guest_state_dir
                path = folder.absolute() / ALLOWLIST_FILE
                write_if_changed(path, render(self.allowlist()))
                self._config = path
            return self._config

    # ------------------------------------------------------------------------------ the port

    def run(self, call: HookCall) -> HookResult:
        return self._invoke(self.request(call), self.timeouts.answer(call.hook, call.phase))

    def check(self, call: HookCall) -> HookResult:
        request = self.request(call, "check")
        return self._invoke(request, self.timeouts.answer(call.hook, "check"))

    # ------------------------------------------------------------------------------ helpers

    def request(self, call: HookCall, phase: str | None = None) -> dict[str, Any]:
        """The version 2 request the runner gets for `call`: names and identifiers only."""
        return Request.for_call(call, phase or call.phase).document()

    def status(self, run_id: str, member: str) -> dict[str, Any] | None:
        """The guest runner's state of one member in one run, or None when it has none.

        `quiesce recover` reads it to learn whether the watchdog thawed the member.
        """
        argv = [
            self.python,
            "-I",
            str(self.runner),
            "status",
            "--state-dir",
            str(self.guest_state_dir.absolute()),
            "--key",
            state_key(run_id, member),
        ]
        with tempfile.TemporaryFile() as out:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError:
                return None
            try:
                proc.wait(timeout=self.timeouts.check_seconds)
            except subprocess.TimeoutExpired:
                _stop(proc)
                return None
            text = _read(out)
        if proc.returncode != 0:
            return None
        try:
            state = json.loads(text)
        except ValueError:
            return None
        return state if isinstance(state, dict) and state else None

    def _invoke(self, request: dict[str, Any], timeout: float) -> HookResult:
        watch = Stopwatch()
        try:
            config = self.install()
        except OSError as exc:
            return watch.failed(
                "RunnerError",
                f"could not write the hook allowlist into {self.guest_state_dir}: {exc}",
            )
        # Files rather than pipes: a watchdog the runner leaves behind may inherit its standard
        # streams, and a pipe would then not reach end-of-file until the watchdog exits.
        with (
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
        ):
            try:
                proc = subprocess.Popen(
                    [self.python, "-I", str(self.runner), "run", "--config", str(config)],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as exc:
                return watch.failed(
                    "RunnerError", f"could not start the hook runner {self.runner}: {exc}"
                )
            try:
                proc.communicate(json.dumps(request).encode(), timeout=timeout)
            except subprocess.TimeoutExpired:
                gone = _stop(proc)
                message = f"the hook runner did not answer within {timeout:g}s and was killed"
                if not gone:
                    message = (
                        f"the hook runner (pid {proc.pid}) did not answer within {timeout:g}s "
                        f"and did not end within {TERM_WAIT + KILL_WAIT:g}s of SIGTERM and "
                        "SIGKILL: it is stuck in the kernel, most likely writing to a frozen "
                        "filesystem (is the state folder on a volume the pre hook freezes?); "
                        "it was left behind"
                    )
                return watch.no_answer(message)
            stdout, stderr = _read(out), _read(err)
        answer = read_answer(stdout)
        if not isinstance(answer, str):
            return answer
        message = f"the hook runner exited with code {proc.returncode} and {answer}"
        tail = stderr.strip()[-STDERR_TAIL:]
        if tail:
            message += f"; its stderr ends with: {tail}"
        return watch.failed("RunnerError", message)


def _stop(proc: subprocess.Popen[bytes]) -> bool:
    """Asks the runner to stop (so it can kill its hook's process group), then kills it.
    Every wait has a limit; returns whether the runner is gone."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=TERM_WAIT)
        return True
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    try:
        proc.wait(timeout=KILL_WAIT)
        return True
    except subprocess.TimeoutExpired:
        return False


def _read(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read().decode("utf-8", errors="replace")
