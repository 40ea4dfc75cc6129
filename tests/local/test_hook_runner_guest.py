"""LocalHookRunner end to end with the real guest hook runner (quiesce_guest.py)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quiesce.guest import RUNNER_PATH
from quiesce.policy.model import Hook
from quiesce.ports import HookCall, Machine
from quiesce.providers.local.hooks import LocalHookRunner
from quiesce.record import HookStatus

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not RUNNER_PATH.is_file(), reason=f"the guest runner {RUNNER_PATH} is missing"
    ),
]


@pytest.fixture
def hooks_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "hooks"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    return folder


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[LocalHookRunner]:
    runner = LocalHookRunner(tmp_path / "state")
    yield runner
    # Disarm any watchdog a test left armed: a post thaws (or returns the thaw that happened).
    for state_file in (tmp_path / "state" / "guest" / "runs").glob("*.json"):
        run_id, member = state_file.stem.split("--")
        state = runner.status(run_id, member)
        if state and state.get("post") is None and state.get("pre"):
            runner.run(call("post", Hook(run=["/bin/true"]), run_id=run_id, member=member))


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def call(
    phase: str,
    hook: Hook,
    *,
    thaw: Hook | None = None,
    freeze: float | None = None,
    run_id: str = "r-1",
    member: str = "db",
    extra_args: tuple[str, ...] = (),
) -> HookCall:
    return HookCall(
        run_id=run_id,
        policy="shop",
        group="orders",
        member=member,
        machine=Machine(provider="local", member=member, machine_id=socket.gethostname()),
        phase=phase,  # type: ignore[arg-type]
        hook=hook,
        thaw=thaw,
        max_freeze_seconds=freeze,
        extra_args=extra_args,
    )


def test_pre_then_post_run_the_hooks_with_their_args_and_env_and_disarm_the_watchdog(
    runner: LocalHookRunner, hooks_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    pause = script(hooks_dir, "pause.sh", f'echo "pause $QUIESCE_PHASE $DB $*" >> {log}\n')
    resume = script(hooks_dir, "resume.sh", f'echo "resume $QUIESCE_PHASE" >> {log}\n')
    pre = Hook(run=[str(pause), "now"], env={"DB": "orders"}, timeout_seconds=5)
    post = Hook(run=[str(resume)], timeout_seconds=5)

    held = runner.run(call("pre", pre, thaw=post, freeze=30))
    assert held.status is HookStatus.SUCCEEDED, held.message
    assert held.by == "orchestrator"
    assert held.attempts == 1
    state = runner.status("r-1", "db")
    assert state is not None
    assert state["post"] is None
    assert state["watchdog_pid"]

    thawed = runner.run(call("post", post))
    assert thawed.ok, thawed.message
    assert log.read_text() == "pause pre orders now\nresume post\n"
    state = runner.status("r-1", "db")
    assert state is not None
    assert state["post"]["by"] == "orchestrator"
    assert (tmp_path / "state" / "guest").is_dir()


def test_a_failing_hook_is_a_failed_result_with_its_exit_code_and_output(
    runner: LocalHookRunner, hooks_dir: Path
) -> None:
    fail = script(hooks_dir, "fail.sh", "echo 'database is not running' >&2\nexit 3\n")
    result = runner.run(call("verify", Hook(run=[str(fail)], timeout_seconds=5)))
    assert result.status is HookStatus.FAILED
    assert result.code == "ExecutionFailed"
    assert result.exit_code == 3
    assert "database is not running" in result.output


def test_a_hook_that_overruns_its_timeout_is_timed_out_by_the_runner(
    runner: LocalHookRunner, hooks_dir: Path
) -> None:
    slow = script(hooks_dir, "slow.sh", "sleep 30\n")
    t0 = time.monotonic()
    result = runner.run(call("verify", Hook(run=[str(slow)], timeout_seconds=0.5)))
    assert time.monotonic() - t0 < 10
    assert result.status is HookStatus.TIMED_OUT
    assert result.code == "Timeout"


def test_check_vets_the_script_without_running_it(
    runner: LocalHookRunner, hooks_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    pause = script(hooks_dir, "pause.sh", f"touch {marker}\n")
    resume = script(hooks_dir, "resume.sh", "true\n")
    result = runner.check(
        call("pre", Hook(run=[str(pause)]), thaw=Hook(run=[str(resume)]), freeze=30)
    )
    assert result.status is HookStatus.SUCCEEDED
    assert result.code == "Allowed"
    assert not marker.exists()


def test_a_world_writable_script_is_refused_and_never_runs(
    runner: LocalHookRunner, hooks_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    unsafe = script(hooks_dir, "unsafe.sh", f"touch {marker}\n")
    os.chmod(unsafe, 0o777)
    result = runner.run(call("verify", Hook(run=[str(unsafe)])))
    assert result.status is HookStatus.REFUSED
    assert result.code == "InsufficientPermission"
    assert not marker.exists()


def test_a_request_the_runner_rejects_comes_back_refused_as_a_bad_request(
    runner: LocalHookRunner, hooks_dir: Path
) -> None:
    ok = script(hooks_dir, "ok.sh", "true\n")
    result = runner.run(call("verify", Hook(run=[str(ok)]), run_id="not a valid id!"))
    assert result.status is HookStatus.REFUSED
    assert result.code == "BadRequest"


def test_without_a_post_the_watchdog_thaws_and_status_tells_recover_so(
    runner: LocalHookRunner, hooks_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    pause = script(hooks_dir, "pause.sh", f"echo pause >> {log}\n")
    resume = script(hooks_dir, "resume.sh", f"echo resume >> {log}\n")
    post = Hook(run=[str(resume)], timeout_seconds=5)
    held = runner.run(call("pre", Hook(run=[str(pause)], timeout_seconds=0.5), thaw=post, freeze=1))
    assert held.ok, held.message

    deadline = time.monotonic() + 15
    state = runner.status("r-1", "db")
    while (state is None or state.get("post") is None) and time.monotonic() < deadline:
        time.sleep(0.2)
        state = runner.status("r-1", "db")
    assert state is not None
    assert state["post"] is not None, "the watchdog did not thaw"
    assert state["post"]["by"] == "watchdog"
    assert log.read_text() == "pause\nresume\n"
    # A late post does not thaw twice: it reports the watchdog's thaw.
    late = runner.run(call("post", post))
    assert late.by == "watchdog"
    assert log.read_text() == "pause\nresume\n"


def test_status_of_a_member_the_runner_never_saw_is_none(runner: LocalHookRunner) -> None:
    assert runner.status("r-unknown", "db") is None
