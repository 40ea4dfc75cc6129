"""The local provider's channel end to end with the real guest hook runner (quiesce_guest.py):
a policy's local hooks become the allowlist in the private state folder, calls carry names."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from quiesce.allowlist import policy_hooks
from quiesce.guest import RUNNER_PATH
from quiesce.policy import Policy, load_policy
from quiesce.policy.model import Hook
from quiesce.ports import HookCall, Machine
from quiesce.providers.local.hooks import LocalHookRunner
from quiesce.record import HookStatus
from quiesce.wiring import local_hook_runner

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not RUNNER_PATH.is_file(), reason=f"the guest runner {RUNNER_PATH} is missing"
    ),
]


@dataclass
class Local:
    """A policy with one local member `db`, and the local provider's hook runner for it."""

    root: Path
    policy: Policy
    runner: LocalHookRunner

    def hook(self, phase: str) -> Hook:
        hook: Hook | None = getattr(self.policy.groups["orders"].members[0].hooks, phase)
        assert hook is not None
        return hook

    def call(
        self,
        phase: str,
        *,
        run_id: str = "r-1",
        hook: Hook | None = None,
        extra: tuple[str, ...] = (),
    ) -> HookCall:
        return HookCall(
            run_id=run_id,
            policy=self.policy.name,
            group="orders",
            member="db",
            machine=Machine(provider="local", member="db", machine_id=socket.gethostname()),
            phase=phase,  # type: ignore[arg-type]
            hook=hook or self.hook(phase),
            extra_args=extra,
            spec=self.policy.groups["orders"].members[0],
        )


@pytest.fixture
def hooks_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "hooks"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    os.chmod(tmp_path, 0o755)
    return folder


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[Local]]:
    made: list[Local] = []
    yield made
    # Disarm any watchdog a test left armed: a post thaws (or returns the thaw that happened).
    for local in made:
        runs = local.root / "state" / "guest" / "runs"
        for state_file in runs.glob("*.json") if runs.is_dir() else []:
            run_id, member = state_file.stem.split("--")
            state = local.runner.status(run_id, member)
            if state and state.get("post") is None and state.get("pre"):
                local.runner.run(local.call("post", run_id=run_id))


def local(root: Path, made: list[Local], hooks: dict[str, Any], freeze: float = 60) -> Local:
    (root / "data").mkdir(exist_ok=True)
    doc = {
        "version": 1,
        "name": "shop",
        "state_dir": str(root / "state"),
        "groups": {
            "orders": {
                "consistency": "application" if "pre" in hooks else "crash",
                "max_freeze_seconds": freeze,
                "members": [
                    {
                        "name": "db",
                        "provider": "local",
                        "volumes": [str(root / "data")],
                        "pre_freezes_volumes": False,
                        "hooks": hooks,
                    }
                ],
            }
        },
    }
    (root / "policy.yaml").write_text(yaml.safe_dump(doc))
    policy = load_policy(root / "policy.yaml")
    out = Local(root, policy, local_hook_runner(policy))
    made.append(out)
    return out


def script(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return str(path)


def test_pre_then_post_run_the_declared_hooks_with_their_args_env_and_secrets(
    hooks_dir: Path, tmp_path: Path, made: list[Local]
) -> None:
    log = tmp_path / "log"
    secret = tmp_path / "pg-password"
    secret.write_text("s3cret-value\n")
    os.chmod(secret, 0o600)
    pause = script(
        hooks_dir,
        "pause.sh",
        f'echo "pause $QUIESCE_PHASE $DB $*" >> {log}\necho "password is $PGPASSWORD"\n',
    )
    resume = script(hooks_dir, "resume.sh", f'echo "resume $QUIESCE_PHASE" >> {log}\n')
    ws = local(
        tmp_path,
        made,
        {
            "pre": {
                "run": [pause, "now"],
                "env": {"DB": "orders"},
                "secret_env": {"PGPASSWORD": str(secret)},
                "timeout_seconds": 5,
            },
            "post": {"run": [resume], "timeout_seconds": 5},
        },
    )
    held = ws.runner.run(ws.call("pre"))
    assert held.status is HookStatus.SUCCEEDED, held.message
    assert held.by == "orchestrator"
    assert "s3cret-value" not in held.output
    assert "[redacted: PGPASSWORD]" in held.output
    state = ws.runner.status("r-1", "db")
    assert state is not None
    assert state["post"] is None
    assert state["watchdog_pid"]

    thawed = ws.runner.run(ws.call("post"))
    assert thawed.ok, thawed.message
    assert log.read_text() == "pause pre orders now\nresume post\n"
    state = ws.runner.status("r-1", "db")
    assert state is not None
    assert state["post"]["by"] == "orchestrator"


def test_check_vets_without_running_and_reports_the_policys_own_digests(
    hooks_dir: Path, tmp_path: Path, made: list[Local]
) -> None:
    marker = tmp_path / "ran"
    pause = script(hooks_dir, "pause.sh", f"touch {marker}\n")
    resume = script(hooks_dir, "resume.sh", "true\n")
    ws = local(tmp_path, made, {"pre": {"run": [pause]}, "post": {"run": [resume]}})
    result = ws.runner.check(ws.call("pre"))
    assert result.status is HookStatus.SUCCEEDED, result.message
    assert result.code == "Allowed"
    assert not marker.exists()
    digests = {h.phase: h.digest for h in policy_hooks(ws.policy)}
    assert result.declared == digests["pre"]
    assert result.thaw_declared == digests["post"]


def test_a_hook_the_allowlist_does_not_declare_is_refused(
    hooks_dir: Path, tmp_path: Path, made: list[Local]
) -> None:
    ok = script(hooks_dir, "ok.sh", "true\n")
    ws = local(tmp_path, made, {"verify": {"run": [ok]}})
    other = Hook(name="orders.db.other", run=[ok])
    result = ws.runner.run(ws.call("verify", hook=other))
    assert result.status is HookStatus.REFUSED
    assert result.code == "HookNotDeclared"


def test_a_verify_hook_gets_the_restored_folder(
    hooks_dir: Path, tmp_path: Path, made: list[Local]
) -> None:
    log = tmp_path / "log"
    verify = script(hooks_dir, "verify.sh", f'echo "$* $QUIESCE_RESTORE_PATH" >> {log}\n')
    ws = local(tmp_path, made, {"verify": {"run": [verify, "--strict"]}})
    restored = tmp_path / "restored"
    restored.mkdir()
    result = ws.runner.run(ws.call("verify", extra=(str(restored),)))
    assert result.ok, result.message
    assert log.read_text() == f"--strict {restored} {restored}\n"


def test_a_failing_hook_is_a_failed_result_with_its_exit_code_and_output(
    hooks_dir: Path, tmp_path: Path, made: list[Local]
) -> None:
    fail = script(hooks_dir, "fail.sh", "echo 'database is not running' >&2\nexit 3\n")
    ws = local(tmp_path, made, {"verify": {"run": [fail], "timeout_seconds": 5}})
    result = ws.runner.run(ws.call("verify"))
    assert result.status is HookStatus.FAILED
    assert result.code == "ExecutionFailed"
    assert result.exit_code == 3
    assert "database is not running" in result.output


def test_a_hook_that_overruns_its_timeout_is_timed_out_by_the_runner(
    hooks_dir: Path, tmp_path: Path, made: list[Local]
) -> None:
    slow = script(hooks_dir, "slow.sh", "sleep 30\n")
    ws = local(tmp_path, made, {"verify": {"run": [slow], "timeout_seconds": 0.5}})
    result = ws.runner.run(ws.call("verify"))
    assert result.status is HookStatus.TIMED_OUT
    assert result.code == "Timeout"


def test_a_world_writable_script_is_refused_and_never_runs(
    hooks_dir: Path, tmp_path: Path, made: list[Local]
) -> None:
    marker = tmp_path / "ran"
    unsafe = script(hooks_dir, "unsafe.sh", f"touch {marker}\n")
    os.chmod(unsafe, 0o777)
    ws = local(tmp_path, made, {"verify": {"run": [unsafe]}})
    result = ws.runner.run(ws.call("verify"))
    assert result.status is HookStatus.REFUSED
    assert result.code == "InsufficientPermission"
    assert not marker.exists()


def test_a_request_the_runner_rejects_comes_back_refused_as_a_bad_request(
    hooks_dir: Path, tmp_path: Path, made: list[Local]
) -> None:
    ok = script(hooks_dir, "ok.sh", "true\n")
    ws = local(tmp_path, made, {"verify": {"run": [ok]}})
    result = ws.runner.run(ws.call("verify", run_id="not a valid id!"))
    assert result.status is HookStatus.REFUSED
    assert result.code == "BadRequest"


def test_without_a_post_the_watchdog_thaws_and_status_tells_recover_so(
    hooks_dir: Path, tmp_path: Path, made: list[Local]
) -> None:
    log = tmp_path / "log"
    pause = script(hooks_dir, "pause.sh", f"echo pause >> {log}\n")
    resume = script(hooks_dir, "resume.sh", f"echo resume >> {log}\n")
    ws = local(
        tmp_path,
        made,
        {"pre": {"run": [pause], "timeout_seconds": 0.5}, "post": {"run": [resume]}},
        freeze=1,
    )
    held = ws.runner.run(ws.call("pre"))
    assert held.ok, held.message

    deadline = time.monotonic() + 15
    state = ws.runner.status("r-1", "db")
    while (state is None or state.get("post") is None) and time.monotonic() < deadline:
        time.sleep(0.2)
        state = ws.runner.status("r-1", "db")
    assert state is not None
    assert state["post"] is not None, "the watchdog did not thaw"
    assert state["post"]["by"] == "watchdog"
    assert log.read_text() == "pause\nresume\n"
    # A late post does not thaw twice: it reports the watchdog's thaw.
    late = ws.runner.run(ws.call("post"))
    assert late.by == "watchdog"
    assert log.read_text() == "pause\nresume\n"


def test_status_of_a_member_the_runner_never_saw_is_none(
    hooks_dir: Path, tmp_path: Path, made: list[Local]
) -> None:
    ok = script(hooks_dir, "ok.sh", "true\n")
    ws = local(tmp_path, made, {"verify": {"run": [ok]}})
    assert ws.runner.status("r-unknown", "db") is None
