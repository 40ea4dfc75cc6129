"""The HookRunner contract against SsmHookRunner: moto's SSM, and for every SendCommand the
Quiesce-RunHook document's script run on this machine as the SSM Agent would run it (its
parameters substituted), with the real guest runner and the contract's allowlist. Its output
and exit code become moto's invocation (moto itself runs nothing and answers Success)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from moto.ssm.models import ssm_backends

from quiesce.guest import RUNNER_PATH
from quiesce_aws.clients import SessionClients
from quiesce_aws.hooks import ALLOWLIST_PATH, RUNNER_INSTALL_PATH, SsmHookRunner, load_documents
from tests.contracts.hook_runner import (
    HookRunnerContract,
    HookTarget,
    contract_allowlist,
    write_allowlist,
)

from .conftest import (
    ACCOUNT,
    REGION,
    FakeClock,
    Fleet,
    Sleeps,
    Wire,
    machine,
    member_of,
    on_send_command,
    quick_backoff,
)
from .test_ssm_document import agent_substitute, script_of

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the runner needs a root-owned allowlist here"),
    pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="no /usr/bin/python3"),
]


def run_document(root: Path, sent: dict[str, list[str]]) -> dict[str, Any]:
    """What the instance's SSM Agent reports after running the document with `sent`."""
    doc = load_documents()["run_hook"]
    script = agent_substitute(script_of(doc), doc, sent)
    script = script.replace(RUNNER_INSTALL_PATH, str(root / "lib" / "quiesce_guest.py"))
    script = script.replace(ALLOWLIST_PATH, str(root / "etc" / "hooks.json"))
    done = subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    status = "Success" if done.returncode == 0 else "Failed"
    return {
        "Status": status,
        "StatusDetails": status,
        "ResponseCode": done.returncode,
        "StandardOutputContent": done.stdout,
        "StandardErrorContent": done.stderr,
    }


class TestSsmHookRunner(HookRunnerContract):
    @pytest.fixture
    def target(
        self,
        clients: SessionClients,
        fleet: Fleet,
        wire: Wire,
        clock: FakeClock,
        sleeps: Sleeps,
        tmp_path: Path,
    ) -> HookTarget:
        (instance_id,) = fleet.launch(1, data_volumes=0)
        root = tmp_path / "instance"
        (root / "lib").mkdir(parents=True, mode=0o755)
        shutil.copyfile(RUNNER_PATH, root / "lib" / "quiesce_guest.py")
        hooks = root / "hooks"
        write_allowlist(root / "etc" / "hooks.json", contract_allowlist(hooks, root / "state"))

        def answer(command_id: str, invocation: dict[str, Any]) -> dict[str, Any] | None:
            if invocation["InstanceId"] != instance_id:
                return None  # moto adds every instance of the region to a command
            sent = ssm_backends[ACCOUNT][REGION].get_command_by_id(command_id).parameters
            return run_document(root, sent)

        on_send_command(wire, clients.ssm(REGION), answer)
        runner = SsmHookRunner(
            clients,
            backoff=quick_backoff(sleeps),
            clock=clock,
            sleep=sleeps,
        )
        target = machine(instance_id)
        return HookTarget(runner, target, member_of(target), journal=hooks / "journal")
