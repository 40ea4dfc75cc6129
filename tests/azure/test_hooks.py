"""RunCommandHookRunner through the real Compute client against the fake ARM server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from quiesce.policy.model import Hook
from quiesce.ports import HookCall, Machine
from quiesce.record import HookStatus
from quiesce_azure import hooks as hooks_module
from quiesce_azure.clients import CredentialClients
from quiesce_azure.hooks import RUN_HOOK_SCRIPT, RunCommandHookRunner
from quiesce_azure.retry import Backoff

from .conftest import Sleeps
from .fake_arm import FakeArm, succeeded_output

PRE = Hook(run=["/etc/quiesce/pause.sh", "orders db"], timeout_seconds=5, env={"DB": "secret"})
POST = Hook(run=["/etc/quiesce/resume.sh"], timeout_seconds=5)


def machine(vm: dict[str, Any], **attributes: str) -> Machine:
    return Machine(
        provider="azure",
        member="db",
        machine_id=vm["id"],
        attributes={"location": vm["location"], "os": "linux", **attributes},
    )


def call(vm: dict[str, Any], phase: str = "pre", **attributes: str) -> HookCall:
    return HookCall(
        run_id="20260101T000000Z-abc123",
        policy="shop",
        group="orders",
        member="db",
        machine=machine(vm, **attributes),
        phase=phase,  # type: ignore[arg-type]
        hook=PRE if phase == "pre" else POST,
        thaw=POST if phase == "pre" else None,
        max_freeze_seconds=30 if phase == "pre" else None,
    )


def runner(clients: CredentialClients, **kwargs: Any) -> RunCommandHookRunner:
    return RunCommandHookRunner(clients, poll_interval=0, **kwargs)


def test_pre_runs_the_fixed_script_with_inputs_as_parameters(
    arm: FakeArm, clients: CredentialClients
) -> None:
    vm = arm.add_vm("db-1")
    result = runner(clients).run(call(vm))
    assert result.status is HookStatus.SUCCEEDED, result
    (seen,) = arm.hook_calls
    assert seen.script == RUN_HOOK_SCRIPT
    assert "/etc/quiesce" not in seen.script
    assert seen.params["QUIESCE_PHASE"] == "pre"
    assert seen.params["QUIESCE_SCRIPT"] == "/etc/quiesce/pause.sh"
    assert json.loads(seen.params["QUIESCE_ARGS_JSON"]) == ["orders db"]
    assert json.loads(seen.params["QUIESCE_ENV_JSON"]) == {"DB": "secret"}
    assert seen.params["QUIESCE_THAW_SCRIPT"] == "/etc/quiesce/resume.sh"
    assert seen.params["QUIESCE_MAX_FREEZE_SECONDS"] == "30"
    assert float(seen.params["QUIESCE_EXPIRES_AT"]) > 0
    assert seen.timeout >= 60
    # the hook's env went as a protected parameter: the stored resource does not show it
    assert arm.deleted_run_commands == [seen.name]
    assert arm.run_commands == {}
    assert seen.name.startswith("quiesce-pre-20260101T000000Z-abc123-db-")


def test_the_script_passes_parameters_as_data_never_as_code(tmp_path: Path) -> None:
    """The fixed script, run by sh with hostile parameter values, hands them to the runner
    verbatim as arguments."""
    stub = tmp_path / "runner.py"
    stub.write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    script = RUN_HOOK_SCRIPT.replace(hooks_module.RUNNER_INSTALL_PATH, str(stub)).replace(
        "exec python3", f"exec {sys.executable}"
    )
    marker = tmp_path / "pwned"
    hostile = f'$(touch {marker}) `touch {marker}` "; touch {marker}'
    env = {
        "PATH": os.environ["PATH"],
        "QUIESCE_PHASE": "pre",
        "QUIESCE_RUN_ID": "r1",
        "QUIESCE_MEMBER": hostile,
        "QUIESCE_SCRIPT": "/etc/quiesce/pause.sh",
        "QUIESCE_ARGS_JSON": json.dumps([hostile]),
        "QUIESCE_TIMEOUT": "5",
        "QUIESCE_RETRIES": "0",
    }
    out = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    argv = json.loads(out)
    assert argv[0] == "run-args"
    assert argv[argv.index("--member") + 1] == hostile
    assert json.loads(argv[argv.index("--args-json") + 1]) == [hostile]
    assert argv[argv.index("--thaw-script") + 1] == ""
    assert not marker.exists()


@pytest.mark.parametrize(
    ("state", "exit_code", "output", "status", "code"),
    [
        ("Failed", 2, "", HookStatus.FAILED, "ExecutionFailed"),
        ("TimedOut", None, "", HookStatus.TIMED_OUT, "TimedOut"),
        ("Canceled", None, "", HookStatus.FAILED, "Cancelled"),
        ("Succeeded", 0, "no json here", HookStatus.FAILED, "RunnerError"),
    ],
)
def test_execution_states_map_to_results(
    arm: FakeArm,
    clients: CredentialClients,
    state: str,
    exit_code: int | None,
    output: str,
    status: HookStatus,
    code: str,
) -> None:
    vm = arm.add_vm("db-1")
    arm.guest = lambda _vm, _params: (state, exit_code, output, "boom")  # type: ignore[assignment,return-value]
    result = runner(clients).run(call(vm))
    assert (result.status, result.code) == (status, code)
    assert arm.run_commands == {}  # deleted also when the hook failed


def test_the_runners_own_failure_is_passed_through(
    arm: FakeArm, clients: CredentialClients
) -> None:
    vm = arm.add_vm("db-1")
    failed = {"status": "failed", "code": "HashMismatch", "message": "pin", "attempts": 0}
    arm.guest = lambda _vm, _params: ("Failed", 3, json.dumps(failed), "")
    result = runner(clients).run(call(vm))
    assert (result.status, result.code, result.message) == (
        HookStatus.FAILED,
        "HashMismatch",
        "pin",
    )


def test_a_throttled_put_is_retried_after_retry_after(
    arm: FakeArm, clients: CredentialClients, sleeps: Sleeps
) -> None:
    vm = arm.add_vm("db-1")
    arm.throttle("PUT", r"/runCommands/", count=1, retry_after="4")
    result = runner(clients, backoff=Backoff(sleep=sleeps)).run(call(vm, "post"))
    assert result.ok
    assert sleeps.waits == [4.0]
    assert len(arm.hook_calls) == 1


def test_windows_vms_are_refused(arm: FakeArm, clients: CredentialClients) -> None:
    vm = arm.add_vm("win-1", os="Windows")
    result = runner(clients).run(call(vm, os="windows"))
    assert (result.status, result.code) == (HookStatus.REFUSED, "InvalidPlatform")
    assert arm.hook_calls == []


def test_run_many_sends_every_vm_its_command(arm: FakeArm, clients: CredentialClients) -> None:
    vms = [arm.add_vm(f"db-{i}") for i in range(3)]
    results = runner(clients).run_many([call(vm) for vm in vms])
    assert all(not isinstance(r, BaseException) and r.ok for r in results)
    assert sorted(c.vm for c in arm.hook_calls) == ["db-0", "db-1", "db-2"]
    assert arm.run_commands == {}


def test_location_is_looked_up_when_the_machine_has_none(
    arm: FakeArm, clients: CredentialClients
) -> None:
    vm = arm.add_vm("db-1")
    bare = HookCall(
        run_id="r",
        policy="shop",
        group="orders",
        member="db",
        machine=Machine(provider="azure", member="db", machine_id=vm["id"]),
        phase="post",
        hook=POST,
    )
    assert runner(clients).run(bare).ok
    assert json.loads(succeeded_output({}))["status"] == "succeeded"
