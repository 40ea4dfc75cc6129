"""The HookRunner contract against the local provider: the real guest hook runner as a child
process, with the contract's hooks as the allowlist Quiesce writes into its state folder."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from quiesce.ports import Machine
from quiesce.providers.local.hooks import LocalHookRunner
from tests.contracts.hook_runner import (
    HookRunnerContract,
    HookTarget,
    contract_entries,
    member_spec,
)


class TestLocalHookRunner(HookRunnerContract):
    @pytest.fixture
    def target(self, tmp_path: Path) -> HookTarget:
        tmp_path.chmod(0o755)
        hooks = tmp_path / "hooks"
        runner = LocalHookRunner(tmp_path / "state", contract_entries(hooks))
        spec = member_spec({"name": "db", "provider": "local", "volumes": [str(tmp_path / "data")]})
        machine = Machine(provider="local", member="db", machine_id=socket.gethostname())
        return HookTarget(runner, machine, spec, journal=hooks / "journal")
