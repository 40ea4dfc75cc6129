"""The HookRunner contract against AgentHookRunner: the real Compute client and the fake API,
the VM's fake metadata server, and the real guest agent on this machine, which verifies each
signed command, runs the real guest runner with the contract's allowlist and answers, signed,
through guest attributes."""

from __future__ import annotations

from pathlib import Path

import pytest

from quiesce.guest import RUNNER_PATH
from quiesce.ports import Machine
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.hooks import AgentHookRunner
from tests.contracts.hook_runner import (
    HookRunnerContract,
    HookTarget,
    contract_allowlist,
    write_allowlist,
)

from .conftest import PROJECT, ZONE, Fleet
from .test_agent import one_vm_policy


class TestAgentHookRunner(HookRunnerContract):
    @pytest.fixture
    def target(self, fleet: Fleet, clients: GcpClients, tmp_path: Path) -> HookTarget:
        policy = one_vm_policy(fleet)
        vm = fleet.add("db-vm", policy, agent=False)
        hooks = tmp_path / "contract-hooks"
        config = contract_allowlist(hooks, vm.state_dir)
        config["agent"] = {"runner": str(RUNNER_PATH), "signing_key_file": str(vm.key_path)}
        write_allowlist(vm.config_path, config)
        vm.start_agent()
        runner = AgentHookRunner(clients, keys=fleet.keys, poll_interval=0.05)
        machine = Machine("gcp", "db", "db-vm", attributes={"project": PROJECT, "zone": ZONE})
        (spec,) = policy.groups["orders"].members
        return HookTarget(runner, machine, spec, journal=hooks / "journal")
