"""The guest agent (quiesce/guest/quiesce_agent.py) on a fake metadata server: replayed and
stale commands are refused; the function's and the agent's protocol constants agree."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from quiesce.guest import quiesce_agent as agent_mod
from quiesce.policy.model import Policy
from quiesce.ports import HookCall, Machine
from quiesce_gcp import agent as fn_agent
from quiesce_gcp.agent import Command
from quiesce_gcp.clients import GcpClients, GcpMembers
from quiesce_gcp.hooks import AgentHookRunner

from .conftest import PROJECT, ZONE, Fleet, wait_for
from .fake_compute import FakeCompute


def one_vm_policy(fleet: Fleet) -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "orders": {
                    "consistency": "application",
                    "max_freeze_seconds": 20,
                    "members": [
                        {
                            "name": "db",
                            "provider": "gcp",
                            "project": PROJECT,
                            "zone": ZONE,
                            "select": {"instances": ["db-vm"]},
                            "hooks": fleet.hooks("db"),
                        }
                    ],
                }
            },
        }
    )


def answers(compute: FakeCompute) -> dict[tuple[str, str], str]:
    return dict(compute.guest_attributes.get((PROJECT, ZONE, "db-vm"), {}))


def test_protocol_constants_match() -> None:
    assert agent_mod.METADATA_KEY == fn_agent.METADATA_KEY
    assert agent_mod.GUEST_NAMESPACE == fn_agent.GUEST_NAMESPACE
    assert agent_mod.PROTOCOL_VERSION == fn_agent.PROTOCOL_VERSION
    assert agent_mod.PHASES == fn_agent.PHASES
    assert agent_mod.HOOKS == fn_agent.HOOKS
    assert agent_mod.result_key("r.1", "db", "pre") == fn_agent.result_key("r.1", "db", "pre")


def test_a_hook_call_round_trips_through_metadata_and_guest_attributes(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients
) -> None:
    policy = one_vm_policy(fleet)
    fleet.add("db-vm", policy)
    runner = AgentHookRunner(clients, members=GcpMembers.from_policy(policy), poll_interval=0.05)
    machine = Machine("gcp", "db", "db-vm", attributes={"project": PROJECT, "zone": ZONE})
    member = policy.groups["orders"].members[0]
    assert member.hooks.post is not None
    call = HookCall("run-1", "shop", "orders", "db", machine, "post", member.hooks.post)
    result = runner.run(call)
    assert result.ok, result
    assert fleet.hook_lines() == ["post db"]
    assert member.hooks.pre is not None
    check = runner.check(
        HookCall("run-2", "shop", "orders", "db", machine, "pre", member.hooks.pre)
    )
    assert check.ok, check
    assert check.code == "Allowed"
    assert fleet.hook_lines() == ["post db"]  # a check never runs the script


def test_a_replayed_command_is_refused_and_not_run_again(
    fleet: Fleet, compute: FakeCompute
) -> None:
    policy = one_vm_policy(fleet)
    fleet.add("db-vm", policy)
    command = Command.new("post", "run-1", "db", "post", time.time() + 30).to_json()
    compute.set_metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command", command)
    assert wait_for(lambda: ("quiesce", "run-1-db-post") in answers(compute))
    first = answers(compute)[("quiesce", "run-1-db-post")]
    assert json.loads(first)["result"]["status"] == "succeeded"

    # Something else changes the item, then the very same command is written again.
    compute.set_metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command", "{}")
    time.sleep(0.3)
    compute.set_metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command", command)
    time.sleep(1.0)
    assert fleet.hook_lines() == ["post db"]  # ran once
    assert answers(compute)[("quiesce", "run-1-db-post")] == first  # not overwritten


def test_a_replay_is_refused_across_agent_restarts(fleet: Fleet, compute: FakeCompute) -> None:
    policy = one_vm_policy(fleet)
    vm = fleet.add("db-vm", policy, agent=False)
    agent = agent_mod.Agent(str(vm.config_path), vm.metadata.url)
    command = Command.new("post", "run-1", "db", "post", time.time() + 30).to_json()
    assert agent.handle(command) is not None
    again = agent_mod.Agent(str(vm.config_path), vm.metadata.url)  # state persisted on disk
    assert again.handle(command) is None
    assert fleet.hook_lines() == ["post db"]


def test_a_stale_command_is_refused_and_never_runs(fleet: Fleet, compute: FakeCompute) -> None:
    policy = one_vm_policy(fleet)
    fleet.add("db-vm", policy)
    command = Command.new("pre", "run-1", "db", "pre", time.time() - 5).to_json()
    compute.set_metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command", command)
    assert wait_for(lambda: ("quiesce", "run-1-db-pre") in answers(compute))
    result = json.loads(answers(compute)[("quiesce", "run-1-db-pre")])["result"]
    assert result["status"] == "refused"
    assert result["code"] == "Stale"
    assert fleet.hook_lines() == []


def test_malformed_and_script_carrying_commands_are_ignored(fleet: Fleet, tmp_path: Path) -> None:
    policy = one_vm_policy(fleet)
    vm = fleet.add("db-vm", policy, agent=False)
    agent = agent_mod.Agent(str(vm.config_path), vm.metadata.url)
    good = json.loads(Command.new("pre", "run-1", "db", "pre", time.time() + 30).to_json())
    for bad in (
        {**good, "run": ["/bin/sh", "-c", "id"]},  # an extra field: never a script
        {**good, "hook": "post"},  # a pre must name the pre hook
        {**good, "member": "../etc"},
        {**good, "nonce": "short"},
    ):
        assert agent.handle(json.dumps(bad)) is None
    assert agent.handle("not json") is None
    assert fleet.hook_lines() == []


def test_an_unknown_member_is_refused_with_hook_not_configured(fleet: Fleet) -> None:
    policy = one_vm_policy(fleet)
    vm = fleet.add("db-vm", policy, agent=False)
    agent = agent_mod.Agent(str(vm.config_path), vm.metadata.url)
    answer = agent.handle(Command.new("pre", "run-1", "web", "pre", time.time() + 30).to_json())
    assert answer is not None
    assert answer["result"]["code"] == "HookNotConfigured"


def test_a_writable_config_is_refused(fleet: Fleet) -> None:
    policy = one_vm_policy(fleet)
    vm = fleet.add("db-vm", policy, agent=False)
    vm.config_path.chmod(0o666)
    with pytest.raises(agent_mod.Refused) as err:
        agent_mod.Agent(str(vm.config_path), vm.metadata.url)
    assert err.value.code == "InsufficientPermission"


def test_the_agent_parses_as_python_3_8_and_imports_only_the_stdlib() -> None:
    import ast
    import sys

    source = Path(agent_mod.__file__).read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
