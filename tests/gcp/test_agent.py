"""The guest agent (quiesce_gcp/quiesce_agent.py) on a fake metadata server: signed commands
name declared hooks and get signed answers; replayed, stale, malformed and misdirected commands
are refused; the agent refuses an allowlist or key that others could change or read."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from quiesce.policy.model import Policy
from quiesce.ports import HookCall, Machine
from quiesce_gcp import quiesce_agent as agent_mod
from quiesce_gcp.agent import Command, allowlist
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.hooks import AgentHookRunner
from quiesce_gcp.signing import AgentKeys, instance_path

from .conftest import PROJECT, ZONE, Fleet, wait_for
from .fake_compute import FakeCompute

DB_VM = instance_path(PROJECT, ZONE, "db-vm")


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


def answers(compute: FakeCompute, vm: str = "db-vm") -> dict[tuple[str, str], str]:
    return dict(compute.guest_attributes.get((PROJECT, ZONE, vm), {}))


def command(
    phase: str,
    hook: str,
    *,
    run_id: str = "run-1",
    member: str = "db",
    expires_in: float = 30,
    instance: str = DB_VM,
) -> Command:
    return Command.new(phase, run_id, member, hook, time.time() + expires_in, instance)


def answered_result(compute: FakeCompute, key: str) -> dict[str, object]:
    wrapped = json.loads(answers(compute)[("quiesce", key)])
    result: dict[str, object] = json.loads(wrapped["result"])
    return result


def test_the_function_and_the_agent_agree_on_signatures(fleet: Fleet) -> None:
    keys = fleet.keys
    cmd = command("pre", "orders.db.pre")
    vm_key = keys.for_instance(DB_VM)
    parsed = agent_mod.parse_command(cmd.signed(keys), vm_key)
    assert parsed["hook"] == "orders.db.pre"
    assert parsed["instance"] == DB_VM
    text = agent_mod.canonical({"status": "succeeded"})
    sig = agent_mod.answer_signature(vm_key, cmd.nonce, cmd.key, text)
    assert keys.answer_is_signed(DB_VM, cmd.nonce, cmd.key, text, sig)
    # A key is per VM: another VM's key neither verifies this command nor signs its answers.
    other = keys.for_instance(instance_path(PROJECT, ZONE, "app-vm"))
    assert other != vm_key
    with pytest.raises(ValueError, match="signature"):
        agent_mod.parse_command(cmd.signed(keys), other)
    forged = agent_mod.answer_signature(other, cmd.nonce, cmd.key, text)
    assert not keys.answer_is_signed(DB_VM, cmd.nonce, cmd.key, text, forged)
    # The answer's signature covers the nonce, the key and the result.
    assert not keys.answer_is_signed(DB_VM, cmd.nonce, "run-2-db-pre", text, sig)
    assert not keys.answer_is_signed(DB_VM, cmd.nonce, cmd.key, text.replace("succ", "SUCC"), sig)


def test_a_hook_call_round_trips_through_metadata_and_guest_attributes(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients
) -> None:
    policy = one_vm_policy(fleet)
    fleet.add("db-vm", policy)
    runner = AgentHookRunner(clients, keys=fleet.keys, poll_interval=0.05)
    machine = Machine("gcp", "db", "db-vm", attributes={"project": PROJECT, "zone": ZONE})
    member = policy.groups["orders"].members[0]
    assert member.hooks.post is not None
    call = HookCall(
        "run-1", "shop", "orders", "db", machine, "post", member.hooks.post, spec=member
    )
    result = runner.run(call)
    assert result.ok, result
    assert fleet.hook_lines() == ["post db"]
    sent = json.loads(
        json.loads(compute.metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command") or "")[
            "command"
        ]
    )
    assert sent["hook"] == "orders.db.post"  # the declared name, never a script
    assert member.hooks.pre is not None
    check = runner.check(
        HookCall("run-2", "shop", "orders", "db", machine, "pre", member.hooks.pre, spec=member)
    )
    assert check.ok, check
    assert check.code == "Allowed"
    assert fleet.hook_lines() == ["post db"]  # a check never runs the script


def test_a_replayed_command_is_refused_and_not_run_again(
    fleet: Fleet, compute: FakeCompute
) -> None:
    policy = one_vm_policy(fleet)
    fleet.add("db-vm", policy)
    value = command("post", "orders.db.post").signed(fleet.keys)
    compute.set_metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command", value)
    assert wait_for(lambda: ("quiesce", "run-1-db-post") in answers(compute))
    first = answers(compute)[("quiesce", "run-1-db-post")]
    assert answered_result(compute, "run-1-db-post")["status"] == "succeeded"

    # Something else changes the item, then the very same command is written again; a
    # sentinel command after it shows the agent has handled the replay.
    compute.set_metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command", "{}")
    time.sleep(0.3)
    compute.set_metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command", value)
    time.sleep(0.3)
    sentinel = command("check", "orders.db.post", run_id="run-2").signed(fleet.keys)
    compute.set_metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command", sentinel)
    assert wait_for(lambda: ("quiesce", "run-2-db-check") in answers(compute))
    assert fleet.hook_lines() == ["post db"]  # ran once
    assert answers(compute)[("quiesce", "run-1-db-post")] == first  # not overwritten


def test_a_replay_is_refused_across_agent_restarts(fleet: Fleet, compute: FakeCompute) -> None:
    policy = one_vm_policy(fleet)
    vm = fleet.add("db-vm", policy, agent=False)
    agent = agent_mod.Agent(str(vm.config_path), vm.metadata.url)
    value = command("post", "orders.db.post").signed(fleet.keys)
    assert agent.handle(value) is not None
    again = agent_mod.Agent(str(vm.config_path), vm.metadata.url)  # state persisted on disk
    assert again.handle(value) is None
    assert fleet.hook_lines() == ["post db"]


def test_a_stale_command_is_refused_with_a_signed_answer_and_never_runs(
    fleet: Fleet, compute: FakeCompute
) -> None:
    policy = one_vm_policy(fleet)
    fleet.add("db-vm", policy)
    cmd = command("pre", "orders.db.pre", expires_in=-5)
    compute.set_metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command", cmd.signed(fleet.keys))
    assert wait_for(lambda: ("quiesce", "run-1-db-pre") in answers(compute))
    wrapped = json.loads(answers(compute)[("quiesce", "run-1-db-pre")])
    assert fleet.keys.answer_is_signed(DB_VM, cmd.nonce, cmd.key, wrapped["result"], wrapped["sig"])
    result = json.loads(wrapped["result"])
    assert result["status"] == "refused"
    assert result["code"] == "Stale"
    assert fleet.hook_lines() == []


def test_malformed_and_script_carrying_commands_are_ignored(fleet: Fleet) -> None:
    policy = one_vm_policy(fleet)
    vm = fleet.add("db-vm", policy, agent=False)
    agent = agent_mod.Agent(str(vm.config_path), vm.metadata.url)
    good = json.loads(command("pre", "orders.db.pre").text())
    vm_key = fleet.keys.for_instance(DB_VM)

    def signed(fields: dict[str, object]) -> str:
        # Correctly signed with the VM's key: what is refused here is the content.
        text = agent_mod.canonical(fields)
        sig = agent_mod.command_signature(vm_key, text)
        return json.dumps({"v": 2, "command": text, "sig": sig})

    for bad in (
        {**good, "run": ["/bin/sh", "-c", "id"]},  # an extra field: never a script
        {**good, "member": "../etc"},
        {**good, "hook": "../../bin/sh"},
        {**good, "nonce": "short"},
        {**good, "phase": "shell"},
    ):
        assert agent.handle(signed(bad)) is None
    # The version 1 form (unsigned, a pre/post slot instead of a name) is refused.
    v1 = {k: v for k, v in good.items() if k != "instance"} | {"v": 1, "hook": "pre"}
    assert agent.handle(json.dumps(v1)) is None
    assert agent.handle("not json") is None
    assert agent.handle(json.dumps({"v": 2, "command": "x" * 5000, "sig": "0" * 64})) is None
    assert fleet.hook_lines() == []


def test_a_command_for_another_instance_is_refused(fleet: Fleet, compute: FakeCompute) -> None:
    policy = one_vm_policy(fleet)
    vm = fleet.add("db-vm", policy, agent=False)
    agent = agent_mod.Agent(str(vm.config_path), vm.metadata.url)
    vm_key = fleet.keys.for_instance(DB_VM)
    text = command("pre", "orders.db.pre", instance=instance_path(PROJECT, ZONE, "x")).text()
    value = json.dumps({"v": 2, "command": text, "sig": agent_mod.command_signature(vm_key, text)})
    assert agent.handle(value) is None
    assert fleet.hook_lines() == []
    assert answers(compute) == {}


def test_an_undeclared_hook_is_refused_by_the_runner(fleet: Fleet) -> None:
    policy = one_vm_policy(fleet)
    vm = fleet.add("db-vm", policy, agent=False)
    agent = agent_mod.Agent(str(vm.config_path), vm.metadata.url)
    answer = agent.handle(command("pre", "orders.web.pre", member="web").signed(fleet.keys))
    assert answer is not None
    assert json.loads(answer["result"])["code"] == "HookNotDeclared"
    # A post hook cannot be started as a pre (nothing would thaw it).
    answer = agent.handle(command("pre", "orders.db.post", run_id="r2").signed(fleet.keys))
    assert answer is not None
    assert json.loads(answer["result"])["code"] == "WrongPhase"
    assert fleet.hook_lines() == []


def test_a_writable_config_is_refused(fleet: Fleet) -> None:
    policy = one_vm_policy(fleet)
    vm = fleet.add("db-vm", policy, agent=False)
    vm.config_path.chmod(0o666)
    with pytest.raises(agent_mod.Refused) as err:
        agent_mod.Agent(str(vm.config_path), vm.metadata.url)
    assert err.value.code == "InsufficientPermission"
    assert "chmod go-w" in str(err.value)


def test_a_key_others_can_read_or_a_linked_key_is_refused(fleet: Fleet) -> None:
    policy = one_vm_policy(fleet)
    vm = fleet.add("db-vm", policy, agent=False)
    vm.key_path.chmod(0o640)
    with pytest.raises(agent_mod.Refused, match="readable by others"):
        agent_mod.Agent(str(vm.config_path), vm.metadata.url)
    vm.key_path.chmod(0o600)
    real = vm.key_path.with_name("real.key")
    vm.key_path.rename(real)
    vm.key_path.symlink_to(real)
    with pytest.raises(agent_mod.Refused, match="symlink"):
        agent_mod.Agent(str(vm.config_path), vm.metadata.url)


def test_the_allowlist_is_the_runners_format_with_the_agent_settings(fleet: Fleet) -> None:
    from quiesce.guest.quiesce_guest import load_config

    policy = one_vm_policy(fleet)
    config = allowlist(policy, signing_key_file="/etc/quiesce/agent.key")
    assert config["agent"] == {
        "runner": "/usr/local/lib/quiesce/quiesce_guest.py",
        "signing_key_file": "/etc/quiesce/agent.key",
    }
    assert sorted(config["hooks"]) == ["orders.db.post", "orders.db.pre"]
    pre = config["hooks"]["orders.db.pre"]
    assert (pre["thaw"], pre["max_freeze_seconds"]) == ("orders.db.post", 20)
    path = fleet.root / "allowlist.json"
    path.write_text(json.dumps(config))
    os.chmod(path, 0o600)
    parsed = load_config(str(path))  # the runner's own loader accepts it
    assert parsed.hook("orders.db.pre", "pre").run == pre["run"]
    # The same entries the core's generator makes, so `quiesce plan` finds the same digests.
    from quiesce.allowlist import policy_hooks
    from quiesce.guest.quiesce_guest import entry_digest

    for hook in policy_hooks(policy):
        assert entry_digest(config["hooks"][hook.name]) == hook.digest


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


def test_keys_come_from_a_private_file_or_the_environment(tmp_path: Path) -> None:
    from quiesce.errors import ProviderError

    path = tmp_path / "master.key"
    path.write_text("ab" * 32 + "\n")
    path.chmod(0o644)
    with pytest.raises(ProviderError, match="chmod 600"):
        AgentKeys.from_env({"QUIESCE_AGENT_MASTER_KEY_FILE": str(path)})
    path.chmod(0o600)
    from_file = AgentKeys.from_env({"QUIESCE_AGENT_MASTER_KEY_FILE": str(path)})
    assert from_file is not None
    from_env = AgentKeys.from_env({"QUIESCE_AGENT_MASTER_KEY": "ab" * 32})
    assert from_env is not None
    assert from_file.for_instance(DB_VM) == from_env.for_instance(DB_VM)
    assert AgentKeys.from_env({}) is None
    with pytest.raises(ProviderError, match="openssl rand -hex 32"):
        AgentKeys.from_hex("abcd")
    assert "ab" * 32 not in repr(from_env)


def test_the_provider_signs_with_the_master_key_from_its_environment(
    fleet: Fleet, compute: FakeCompute, tmp_path: Path
) -> None:
    from quiesce.errors import ProviderError
    from quiesce_gcp.provider import make_provider

    policy = one_vm_policy(fleet)
    env = {"QUIESCE_PROJECT": PROJECT, "QUIESCE_COMPUTE_ENDPOINT": compute.url}
    unsigned = make_provider(policy, env=env).hooks
    assert isinstance(unsigned, AgentHookRunner)
    assert unsigned.keys is None  # agent hooks then fail with NoSigningKey
    signed = make_provider(policy, env={**env, "QUIESCE_AGENT_MASTER_KEY": fleet.keys_hex}).hooks
    assert isinstance(signed, AgentHookRunner)
    assert signed.keys is not None
    assert signed.keys.for_instance(DB_VM) == fleet.keys.for_instance(DB_VM)
    with pytest.raises(ProviderError, match="QUIESCE_AGENT_MASTER_KEY"):
        make_provider(policy, env={**env, "QUIESCE_AGENT_MASTER_KEY": "not hex"})
