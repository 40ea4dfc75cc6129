"""Runs hooks on this machine through the guest hook runner, as a child process.

The runner (quiesce_guest.py) does the security checks, the retries, the timeouts and, for a pre
hook, arms the watchdog that thaws the member by itself if no post call comes. This adapter only
hands it a request on stdin and reads its one JSON result from stdout; it never runs a hook
itself. The runner is started in a session of its own, so a Ctrl-C aimed at the orchestrator
does not kill a hook half-way: the engine decides what to do, the runner finishes. It runs in
isolated mode (`python -I`): hooks run as root, so PYTHONPATH and the user's site-packages must
not be able to change what the runner imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from quiesce.policy.model import Hook
from quiesce.ports import HookCall, HookRunner
from quiesce.record import HookResult, HookStatus, utcnow

#: Seconds the runner itself may take per attempt beyond the hook's timeout (start-up, checks,
#: killing a process group), and once over all attempts (interpreter start, writing state).
PER_ATTEMPT_SLACK = 1.5
FIXED_SLACK = 5.0
#: A check never executes the script: it is quick.
CHECK_TIMEOUT = 30.0
#: How much of the runner's stderr a RunnerError message carries.
STDERR_TAIL = 2000


def default_runner_path() -> Path:
    """The guest hook runner shipped with this package."""
    from quiesce.guest import RUNNER_PATH

    return Path(RUNNER_PATH)


def hook_request(hook: Hook) -> dict[str, Any]:
    """A policy Hook as the runner's request expects it."""
    return {
        "run": list(hook.run),
        "sha256": hook.sha256,
        "timeout_seconds": hook.timeout_seconds,
        "retries": hook.retries,
        "env": dict(hook.env),
    }


def answer_timeout(hook: Hook) -> float:
    """How long the orchestrator waits for the runner's answer to one call."""
    attempts = hook.retries + 1
    return hook.timeout_seconds * attempts + PER_ATTEMPT_SLACK * attempts + FIXED_SLACK


def state_key(run_id: str, member: str) -> str:
    """The guest runner's key of one member's state in one run."""
    return f"{run_id}--{member}"


class LocalHookRunner(HookRunner):
    """Runs `python quiesce_guest.py run` with the request on stdin, one process per call."""

    def __init__(
        self, state_dir: Path, python: str = sys.executable, runner: Path | None = None
    ) -> None:
        self.state_dir = Path(state_dir)
        self.guest_state_dir = self.state_dir / "guest"
        self.python = python
        self._runner = runner

    @property
    def runner(self) -> Path:
        if self._runner is None:
            self._runner = default_runner_path()
        return self._runner

    # ------------------------------------------------------------------------------ the port

    def run(self, call: HookCall) -> HookResult:
        return self._invoke(self.request(call), answer_timeout(call.hook))

    def check(self, call: HookCall) -> HookResult:
        request = self.request(call)
        request["phase"] = "check"
        return self._invoke(request, CHECK_TIMEOUT)

    # ------------------------------------------------------------------------------ helpers

    def request(self, call: HookCall) -> dict[str, Any]:
        """The JSON request the runner gets for `call`."""
        request: dict[str, Any] = {
            "version": 1,
            "run_id": call.run_id,
            "member": call.member,
            "phase": call.phase,
            "hook": hook_request(call.hook),
            "extra_args": list(call.extra_args),
            "state_dir": str(self.guest_state_dir),
        }
        if call.thaw is not None:
            request["thaw"] = hook_request(call.thaw)
        if call.max_freeze_seconds is not None:
            request["max_freeze_seconds"] = call.max_freeze_seconds
        return request

    def status(self, run_id: str, member: str) -> dict[str, Any] | None:
        """The guest runner's state of one member in one run, or None when it has none.

        `quiesce recover` reads it to learn whether the watchdog thawed the member.
        """
        try:
            proc = subprocess.run(
                [
                    self.python,
                    "-I",
                    str(self.runner),
                    "status",
                    "--state-dir",
                    str(self.guest_state_dir),
                    "--key",
                    state_key(run_id, member),
                ],
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode != 0:
            return None
        try:
            state = json.loads(proc.stdout)
        except ValueError:
            return None
        return state if isinstance(state, dict) and state else None

    def _invoke(self, request: dict[str, Any], timeout: float) -> HookResult:
        started = utcnow()
        t0 = time.monotonic()
        # Files rather than pipes: a watchdog the runner leaves behind may inherit its standard
        # streams, and a pipe would then not reach end-of-file until the watchdog exits.
        with (
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
        ):
            try:
                proc = subprocess.Popen(
                    [self.python, "-I", str(self.runner), "run"],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as exc:
                return _failed(
                    "RunnerError", f"could not start the hook runner {self.runner}: {exc}", started
                )
            try:
                proc.communicate(json.dumps(request).encode(), timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(proc)
                return HookResult(
                    status=HookStatus.TIMED_OUT,
                    code="NoAnswer",
                    message=(
                        f"the hook runner did not answer within {timeout:g}s and was killed; "
                        "a pre hook's watchdog, if armed, still thaws the member"
                    ),
                    started_at=started,
                    ended_at=utcnow(),
                    duration_ms=round((time.monotonic() - t0) * 1000, 3),
                )
            stdout, stderr = _read(out), _read(err)
        return _parse(stdout, stderr, proc.returncode, started)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Asks the runner to stop (so it can kill its hook's process group), then kills it."""
    proc.terminate()
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read().decode("utf-8", errors="replace")


def _parse(stdout: str, stderr: str, returncode: int, started: datetime) -> HookResult:
    candidates = [stdout.strip()]
    lines = [line for line in stdout.splitlines() if line.strip()]
    if lines and lines[-1].strip() != candidates[0]:
        candidates.append(lines[-1].strip())
    problem = "printed nothing"
    for text in candidates:
        if not text:
            continue
        try:
            return HookResult.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]["msg"]
            problem = f"printed no valid result ({exc.error_count()} problem(s), first: {first})"
    tail = stderr.strip()[-STDERR_TAIL:]
    message = f"the hook runner exited with code {returncode} and {problem}"
    if tail:
        message += f"; its stderr ends with: {tail}"
    return _failed("RunnerError", message, started)


def _failed(code: str, message: str, started: datetime) -> HookResult:
    ended = utcnow()
    return HookResult(
        status=HookStatus.FAILED,
        code=code,
        message=message,
        started_at=started,
        ended_at=ended,
        duration_ms=round((ended - started).total_seconds() * 1000, 3),
    )
