"""The HookRunner contract against RunCommandHookRunner: the real Compute client and the fake
ARM server, whose VM runs every run command's script (RUN_HOOK_SCRIPT, its parameters as
environment variables, as the Run Command extension does) on this machine, with the real guest
runner and the contract's allowlist."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from quiesce.guest import RUNNER_PATH
from quiesce.ports import Machine
from quiesce_azure.clients import CredentialClients
from quiesce_azure.hooks import (
    ALLOWLIST_PATH,
    RUN_HOOK_SCRIPT,
    RUNNER_INSTALL_PATH,
    RunCommandHookRunner,
)
from tests.contracts.hook_runner import (
    HookRunnerContract,
    HookTarget,
    contract_allowlist,
    member_spec,
    write_allowlist,
)

from .fake_arm import RG, SUB, FakeArm

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the runner needs a root-owned allowlist here"),
    pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="no /usr/bin/python3"),
]


class TestRunCommandHookRunner(HookRunnerContract):
    @pytest.fixture
    def target(self, arm: FakeArm, clients: CredentialClients, tmp_path: Path) -> HookTarget:
        root = tmp_path / "vm"
        root.mkdir(mode=0o755)
        runner_copy = root / "quiesce_guest.py"
        shutil.copyfile(RUNNER_PATH, runner_copy)
        hooks = root / "hooks"
        allowlist = write_allowlist(root / "hooks.json", contract_allowlist(hooks, root / "state"))
        script = RUN_HOOK_SCRIPT.replace(RUNNER_INSTALL_PATH, str(runner_copy)).replace(
            ALLOWLIST_PATH, str(allowlist)
        )

        def guest(vm: str, params: dict[str, str]) -> tuple[str, int, str, str]:
            done = subprocess.run(
                ["sh", "-c", script],
                env={"PATH": "/usr/bin:/bin", **params},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            state = "Succeeded" if done.returncode == 0 else "Failed"
            return state, done.returncode, done.stdout, done.stderr

        arm.guest = guest
        vm = arm.add_vm("db-1")
        machine = Machine(
            provider="azure",
            member="db",
            machine_id=vm["id"],
            attributes={"location": vm["location"], "os": "linux"},
        )
        spec = member_spec(
            {
                "name": "db",
                "provider": "azure",
                "subscription": SUB,
                "resource_group": RG,
                "select": {"vm_names": ["db-1"]},
            }
        )
        runner = RunCommandHookRunner(clients, poll_interval=0)
        return HookTarget(runner, machine, spec, journal=hooks / "journal")
