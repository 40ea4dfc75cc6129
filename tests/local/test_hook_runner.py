"""LocalHookRunner's side of the guest contract, against stand-in runners.

These pin down what the adapter does whatever the real runner does: the version 2 request it
sends (names only), the allowlist it writes, the orchestrator-side timeout, and how a runner
that hangs, crashes, lingers or is stuck in the kernel is reported. The real guest runner is
exercised end to end in test_hook_runner_guest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from quiesce.guest.protocol import LOCAL, Timeouts
from quiesce.policy.model import Hook, Hooks, LocalMember
from quiesce.ports import HookCall, Machine
from quiesce.providers.local import hooks as hooks_module
from quiesce.providers.local.hooks import LocalHookRunner
from quiesce.record import HookStatus

PRE = Hook(
    name="orders.db.pre",
    run=["/opt/hooks/pause.sh", "db"],
    timeout_seconds=10,
    retries=1,
    env={"DB": "orders"},
)
POST = Hook(name="orders.db.post", run=["/opt/hooks/resume.sh"], timeout_seconds=5)
ENTRIES = {
    "orders.db.pre": {"phase": "pre", "run": ["/opt/hooks/pause.sh", "db"], "env": {"DB": "x"},
                      "thaw": "orders.db.post", "max_freeze_seconds": 30},
    "orders.db.post": {"phase": "post", "run": ["/opt/hooks/resume.sh"]},
}  # fmt: skip

RESULT = {
    "status": "succeeded",
    "code": "Succeeded",
    "message": "ok",
    "exit_code": 0,
    "attempts": 1,
    "started_at": "2026-11-29T10:00:00Z",
    "ended_at": "2026-11-29T10:00:01Z",
    "duration_ms": 1000.0,
    "output": "paused\n",
    "by": "orchestrator",
}


def hook_call(
    phase: str = "pre", hook: Hook = PRE, thaw: Hook | None = POST, freeze: float | None = 30
) -> HookCall:
    return HookCall(
        run_id="r-1",
        policy="shop",
        group="orders",
        member="db",
        machine=Machine(provider="local", member="db", machine_id=socket.gethostname()),
        phase=phase,  # type: ignore[arg-type]
        hook=hook,
        thaw=thaw,
        max_freeze_seconds=freeze,
        extra_args=("--fast",),
        spec=LocalMember(
            name="db", provider="local", volumes=["/data"], hooks=Hooks(pre=PRE, post=POST)
        ),
    )


def fake_runner(tmp_path: Path, body: str) -> Path:
    """A stand-in for quiesce_guest.py: `body` runs with `request` read from stdin."""
    path = tmp_path / "fake_guest.py"
    path.write_text(
        "import json, os, subprocess, sys, time\n"
        "mode = sys.argv[1]\n"
        "request = json.loads(sys.stdin.read() or 'null') if mode == 'run' else None\n"
        + textwrap.dedent(body)
    )
    return path


def test_the_request_carries_only_the_hooks_name_and_the_runs_identifiers(
    tmp_path: Path,
) -> None:
    runner = LocalHookRunner(tmp_path / "state")
    assert runner.request(hook_call()) == {
        "version": 2,
        "run_id": "r-1",
        "member": "db",
        "phase": "pre",
        "hook": "orders.db.pre",
    }


def test_a_hook_without_a_name_is_sent_as_group_member_phase(tmp_path: Path) -> None:
    request = LocalHookRunner(tmp_path).request(
        hook_call("post", hook=Hook(run=["/opt/x"]), thaw=None, freeze=None)
    )
    assert request["hook"] == "orders.db.post"


def test_a_verify_request_carries_the_restored_folder_as_restore_path(tmp_path: Path) -> None:
    request = LocalHookRunner(tmp_path).request(
        hook_call("verify", hook=Hook(name="v", run=["/opt/v"]), thaw=None, freeze=None)
    )
    assert request["restore_path"] == "--fast"  # the call's first extra argument
    assert "restore_path" not in LocalHookRunner(tmp_path).request(hook_call())


def test_the_allowlist_is_written_private_and_atomically_only_when_it_changed(
    tmp_path: Path,
) -> None:
    runner = LocalHookRunner(tmp_path / "state", ENTRIES)
    path = runner.install()
    assert path == tmp_path / "state" / "guest" / "hooks.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    assert doc["state_dir"] == str(tmp_path / "state" / "guest")
    assert doc["hooks"] == ENTRIES
    inode = path.stat().st_ino
    assert LocalHookRunner(tmp_path / "state", ENTRIES).install() == path
    assert path.stat().st_ino == inode  # unchanged content: not rewritten
    changed = {**ENTRIES, "orders.db.post": {"phase": "post", "run": ["/opt/other"]}}
    LocalHookRunner(tmp_path / "state", changed).install()
    assert path.stat().st_ino != inode  # replaced by rename, never edited in place
    assert json.loads(path.read_text())["hooks"] == changed
    assert sorted(p.name for p in path.parent.iterdir()) == ["hooks.json"]


def test_a_symlink_planted_as_the_allowlist_is_replaced_not_followed(tmp_path: Path) -> None:
    guest = tmp_path / "state" / "guest"
    guest.mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (guest / "hooks.json").symlink_to(victim)
    LocalHookRunner(tmp_path / "state", ENTRIES).install()
    assert victim.read_text() == "precious\n"
    assert not (guest / "hooks.json").is_symlink()


#: Waits exactly the hook's own timeouts (so a test that wants no answer is quick).
NO_SLACK = Timeouts(fixed_slack=0.0, check_seconds=30.0, per_attempt_slack=0.0)


def test_the_orchestrator_waits_for_every_attempt_plus_the_runners_slack() -> None:
    assert LocalHookRunner(Path("unused")).timeouts == LOCAL
    assert LOCAL.answer(PRE, "pre") == 10 * 2 + 1.5 * 2 + 5
    assert LOCAL.answer(POST, "post") == 5 + 1.5 + 5


def test_the_request_goes_to_the_runner_on_stdin_and_its_json_result_comes_back(
    tmp_path: Path,
) -> None:
    seen = tmp_path / "seen.json"
    runner_path = fake_runner(
        tmp_path,
        f"""
        open({str(seen)!r}, "w").write(json.dumps({{"argv": sys.argv[1:], "request": request}}))
        print(json.dumps({json.dumps(RESULT)}))
        """,
    )
    runner = LocalHookRunner(tmp_path / "state", runner=runner_path)
    result = runner.run(hook_call())
    assert result.status is HookStatus.SUCCEEDED
    assert result.output == "paused\n"
    assert result.model_dump(mode="json")["started_at"] == "2026-11-29T10:00:00Z"
    sent = json.loads(seen.read_text())
    config = str(tmp_path / "state" / "guest" / "hooks.json")
    assert sent["argv"] == ["run", "--config", config]
    assert sent["request"] == runner.request(hook_call())


def test_check_asks_the_runner_for_the_check_phase(tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    allowed = {**RESULT, "status": "succeeded", "code": "Allowed"}
    runner_path = fake_runner(
        tmp_path,
        f"""
        open({str(seen)!r}, "w").write(json.dumps(request))
        print(json.dumps({json.dumps(allowed)}))
        """,
    )
    result = LocalHookRunner(tmp_path, runner=runner_path).check(hook_call())
    assert result.code == "Allowed"
    assert json.loads(seen.read_text())["phase"] == "check"


def test_a_runner_that_does_not_answer_in_time_is_killed_and_the_call_timed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    runner_path = fake_runner(
        tmp_path,
        f"""
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
        """,
    )
    quick = Hook(run=["/x"], timeout_seconds=0.5)
    result = LocalHookRunner(tmp_path, runner=runner_path, timeouts=NO_SLACK).run(
        hook_call(hook=quick)
    )
    assert result.status is HookStatus.TIMED_OUT
    assert result.code == "NoAnswer"
    assert "did not answer within 0.5s" in result.message
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_a_runner_that_prints_no_valid_result_is_a_runner_error_with_its_stderr_tail(
    tmp_path: Path,
) -> None:
    runner_path = fake_runner(
        tmp_path,
        """
        print("not json")
        sys.stderr.write("x" * 5000 + "Traceback: the runner broke\\n")
        sys.exit(3)
        """,
    )
    result = LocalHookRunner(tmp_path, runner=runner_path).run(hook_call())
    assert result.status is HookStatus.FAILED
    assert result.code == "RunnerError"
    assert "exited with code 3" in result.message
    assert result.message.endswith("Traceback: the runner broke")
    assert len(result.message) < 2500


def test_a_runner_whose_json_is_not_a_hook_result_is_a_runner_error(tmp_path: Path) -> None:
    runner_path = fake_runner(tmp_path, 'print(json.dumps({"status": "great"}))')
    result = LocalHookRunner(tmp_path, runner=runner_path).run(hook_call())
    assert result.code == "RunnerError"
    assert "printed no valid result" in result.message


def test_a_result_after_stray_output_lines_is_still_read(tmp_path: Path) -> None:
    runner_path = fake_runner(
        tmp_path, f'print("a warning"); print(json.dumps({json.dumps(RESULT)}))'
    )
    assert LocalHookRunner(tmp_path, runner=runner_path).run(hook_call()).ok


def test_a_runner_that_cannot_be_started_is_a_runner_error(tmp_path: Path) -> None:
    runner = LocalHookRunner(tmp_path, python=str(tmp_path / "no-python"), runner=tmp_path)
    result = runner.run(hook_call())
    assert result.status is HookStatus.FAILED
    assert result.code == "RunnerError"
    assert "could not start" in result.message


def test_a_watchdog_left_holding_the_runners_output_does_not_delay_the_answer(
    tmp_path: Path,
) -> None:
    child_pid = tmp_path / "child"
    runner_path = fake_runner(
        tmp_path,
        f"""
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        open({str(child_pid)!r}, "w").write(str(child.pid))
        print(json.dumps({json.dumps(RESULT)}), flush=True)
        """,
    )
    try:
        result = LocalHookRunner(tmp_path, runner=runner_path).run(hook_call())
        assert result.ok
        os.kill(int(child_pid.read_text()), 0)  # the child still holds the output: still alive
    finally:
        if child_pid.exists():
            os.kill(int(child_pid.read_text()), signal.SIGKILL)


def test_status_returns_the_runners_state_of_the_member_or_none(tmp_path: Path) -> None:
    runner_path = fake_runner(
        tmp_path,
        """
        args = sys.argv[2:]
        key, state_dir = args[args.index("--key") + 1], args[args.index("--state-dir") + 1]
        if key != "r-1--db":
            sys.exit(1)
        print(json.dumps({"key": key, "state_dir": state_dir, "thawed_by": "watchdog"}))
        """,
    )
    runner = LocalHookRunner(tmp_path / "state", runner=runner_path)
    assert runner.status("r-1", "db") == {
        "key": "r-1--db",
        "state_dir": str(tmp_path / "state" / "guest"),
        "thawed_by": "watchdog",
    }
    assert runner.status("r-2", "db") is None


def test_the_default_runner_is_the_packaged_guest_runner(tmp_path: Path) -> None:
    from quiesce.guest import RUNNER_PATH

    runner = LocalHookRunner(tmp_path)
    assert runner.runner == RUNNER_PATH
    assert runner.python == sys.executable


# ------------------------------------------------------------------------------ stuck runners


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


@pytest.fixture
def frozen_fs(tmp_path: Path) -> Iterator[Path]:
    """A folder on an ext4 loop filesystem, frozen (fsfreeze) while the test runs."""
    missing = [t for t in ("mkfs.ext4", "losetup", "mount", "fsfreeze") if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    if os.geteuid() != 0:
        pytest.skip("needs root to mount and freeze a loop filesystem")
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(32 * 1024 * 1024)
    if _sh("mkfs.ext4", "-q", "-F", str(image)).returncode != 0:
        pytest.skip("mkfs.ext4 failed")
    attached = _sh("losetup", "--find", "--show", str(image))
    if attached.returncode != 0:
        pytest.skip(f"no loop device: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    mounted = frozen = False
    try:
        mounted = _sh("mount", device, str(mnt)).returncode == 0
        if not mounted:
            pytest.skip("mounting the loop filesystem failed")
        frozen = _sh("fsfreeze", "-f", str(mnt)).returncode == 0
        if not frozen:
            pytest.skip("fsfreeze failed")
        yield mnt
    finally:
        if frozen:
            _sh("fsfreeze", "-u", str(mnt))
        if mounted:
            _sh("umount", "-l", str(mnt))
        _sh("losetup", "-d", device)


def test_a_runner_stuck_in_the_kernel_on_a_frozen_filesystem_is_reported_not_waited_for(
    tmp_path: Path, frozen_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hooks_module, "TERM_WAIT", 0.5)
    monkeypatch.setattr(hooks_module, "KILL_WAIT", 0.5)
    pid_file = tmp_path / "pid"
    runner_path = fake_runner(
        tmp_path,
        f"""
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        with open({str(frozen_fs / "state.json")!r}, "w") as f:  # blocks: the fs is frozen
            f.write("x")
        """,
    )
    quick = Hook(run=["/x"], timeout_seconds=0.5)
    result = LocalHookRunner(tmp_path / "state", runner=runner_path, timeouts=NO_SLACK).run(
        hook_call(hook=quick)
    )
    pid = int(pid_file.read_text())
    try:
        assert result.status is HookStatus.TIMED_OUT
        assert result.code == "NoAnswer"
        assert f"the hook runner (pid {pid}) did not answer within 0.5s" in result.message
        assert "stuck in the kernel" in result.message
        assert "frozen filesystem" in result.message
        assert _proc_state(pid) == "D"  # still there, unkillable until the thaw
    finally:
        _sh("fsfreeze", "-u", str(frozen_fs))
    os.waitpid(pid, 0)  # SIGKILL was pending: it dies with the thaw


def _proc_state(pid: int) -> str:
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/stat").read_text()
        return text.rsplit(")", 1)[1].split()[0]
    return "?"
