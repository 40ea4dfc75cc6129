"""The engine on GCP: `run_group` with the GCP adapters against the fake Compute API, the real
guest agent on each VM (through fake metadata servers) and the real guest hook runner on hook
scripts in tmp_path; state and bus are in memory."""

from __future__ import annotations

import json
from typing import Any

import pytest

from quiesce.engine import run_group
from quiesce.policy.model import Policy
from quiesce.ports import Backends, Provider
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from quiesce.record import Consistency, HookStatus, RunStatus
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.hooks import AgentHookRunner
from quiesce_gcp.inventory import GceInventory
from quiesce_gcp.provider import gcp_provider
from quiesce_gcp.signing import AgentKeys, instance_path
from quiesce_gcp.snapshots import GceSnapshotter

from .conftest import MASTER_KEY, PROJECT, ZONE, Fleet, wait_for
from .fake_compute import FakeCompute


def gcp_member(name: str, hooks: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    out = {
        "name": name,
        "provider": "gcp",
        "project": PROJECT,
        "zone": ZONE,
        "select": {"instances": [f"{name}-vm"]},
        **extra,
    }
    if hooks is not None:
        out["hooks"] = hooks
    return out


def make_policy(members: list[dict[str, Any]], **group: Any) -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "orders": {
                    "consistency": "application",
                    "max_freeze_seconds": 20,
                    "durability_timeout_seconds": 30,
                    "members": members,
                    **group,
                }
            },
        }
    )


def backends(policy: Policy, clients: GcpClients, **hooks: Any) -> Backends:
    keys = hooks.pop("keys", AgentKeys.from_hex(MASTER_KEY))
    provider = Provider(
        inventory=GceInventory(clients),
        hooks=AgentHookRunner(clients, keys=keys, poll_interval=0.05, **hooks),
        snapshots=GceSnapshotter(clients, projects={"orders": [PROJECT]}, poll_interval=0.01),
    )
    return Backends(providers={"gcp": provider}, state=MemoryStateStore(), bus=MemoryEventBus())


def two_vm_policy(fleet: Fleet, **group: Any) -> Policy:
    return make_policy(
        [gcp_member("db", fleet.hooks("db")), gcp_member("app", fleet.hooks("app"))], **group
    )


def test_a_two_vm_agent_group_holds_both_before_any_snapshot_and_thaws_both(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients
) -> None:
    policy = two_vm_policy(fleet)
    fleet.add("db-vm", policy, data_disks=1)
    fleet.add("app-vm", policy, data_disks=2)

    record = run_group(policy, "orders", backends(policy, clients))

    assert record.status is RunStatus.SUCCEEDED, record.errors
    assert record.consistency is Consistency.APPLICATION
    lines = fleet.lines()
    pres = [i for i, line in enumerate(lines) if line.startswith("pre ")]
    snaps = [i for i, line in enumerate(lines) if line.startswith("snapshot ")]
    posts = [i for i, line in enumerate(lines) if line.startswith("post ")]
    assert sorted(lines[i] for i in pres) == ["pre app", "pre db"]
    assert sorted(lines[i] for i in posts) == ["post app", "post db"]
    assert len(snaps) == 5  # 2 disks of db-vm, 3 of app-vm
    assert max(pres) < min(snaps), lines
    assert max(snaps) < min(posts), lines
    snapshot_disks = {s.volume.rsplit("/", 1)[1] for s in record.members[0].snapshots} | {
        s.volume.rsplit("/", 1)[1] for s in record.members[1].snapshots
    }
    assert snapshot_disks == {
        "db-vm-boot",
        "db-vm-data1",
        "app-vm-boot",
        "app-vm-data1",
        "app-vm-data2",
    }
    for _, machine in record.machines():
        assert machine.pre is not None
        assert machine.pre.status is HookStatus.SUCCEEDED
        assert machine.post is not None
        assert machine.post.status is HookStatus.SUCCEEDED
        for snap in machine.snapshots:
            assert snap.tags["quiesce-managed"] == "true"
            assert snap.tags["guest-flush"] == "false"
    # The commands written were signed references to declared hooks, never script text.
    value = json.loads(compute.metadata_value(PROJECT, ZONE, "db-vm", "quiesce-command") or "")
    assert set(value) == {"v", "command", "sig"}
    command = json.loads(value["command"])
    assert set(command) == {
        "phase", "run_id", "member", "hook", "nonce", "expires_at", "instance"
    }  # fmt: skip
    assert command["phase"] == "post"
    assert command["hook"] == "orders.db.post"
    assert command["instance"] == instance_path(PROJECT, ZONE, "db-vm")
    assert "sh" not in value["command"]


def test_the_provider_factory_builds_a_working_provider(fleet: Fleet, compute: FakeCompute) -> None:
    policy = make_policy([gcp_member("db", None)], consistency="crash")
    compute.add_instance(PROJECT, ZONE, "db-vm")
    provider = gcp_provider(
        policy, compute_endpoint=compute.url, credentials=_anon(), poll_interval=0.01
    )
    record = run_group(
        policy,
        "orders",
        Backends(providers={"gcp": provider}, state=MemoryStateStore(), bus=MemoryEventBus()),
    )
    assert record.status is RunStatus.SUCCEEDED, record.errors
    assert record.consistency is Consistency.CRASH
    assert len(record.members[0].snapshots) == 2


def _anon() -> Any:
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()  # type: ignore[no-untyped-call]


def test_a_guest_flush_member_gets_snapshots_with_guest_flush_and_no_hook_calls(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients
) -> None:
    hooks = {
        "pre": {"run": ["/etc/google/snapshots/pre.sh"], "timeout_seconds": 5},
        "post": {"run": ["/etc/google/snapshots/post.sh"], "timeout_seconds": 5},
    }
    policy = make_policy([gcp_member("reports", hooks, hook_channel="guest_flush")])
    compute.add_instance(PROJECT, ZONE, "reports-vm", data_disks=1)

    record = run_group(policy, "orders", backends(policy, clients))

    assert record.status is RunStatus.SUCCEEDED, record.errors
    ((_, machine),) = record.machines()
    assert machine.pre is not None
    assert machine.pre.code == "GuestFlush"
    assert [s.method for s in machine.snapshots] == ["gce-guest-flush"] * 2
    assert all(s.tags["guest-flush"] == "true" for s in machine.snapshots)
    assert sorted(line for line in compute.journal if line.startswith("snapshot")) == [
        "snapshot reports-vm-boot guestFlush",
        "snapshot reports-vm-data1 guestFlush",
    ]
    assert not any(line.startswith("setMetadata") for line in compute.journal)


def test_a_failed_snapshot_operation_still_thaws_and_leaves_no_snapshots(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients
) -> None:
    policy = two_vm_policy(fleet)
    fleet.add("db-vm", policy)
    fleet.add("app-vm", policy)
    compute.fail_disks.add("app-vm-data1")

    record = run_group(policy, "orders", backends(policy, clients))

    assert record.status is RunStatus.FAILED
    assert any(
        "app-vm" in e
        for e in record.errors + [m.snapshot_error or "" for _, m in record.machines()]
    )
    assert sorted(line for line in fleet.lines() if line.startswith("post ")) == [
        "post app",
        "post db",
    ]
    assert wait_for(lambda: not compute.snapshots, timeout=5), compute.snapshots


def test_without_a_master_key_agent_members_fail_and_nothing_is_sent(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients
) -> None:
    policy = two_vm_policy(fleet, on_quiesce_failure="abort")
    fleet.add("db-vm", policy)
    fleet.add("app-vm", policy)

    record = run_group(policy, "orders", backends(policy, clients, keys=None))

    assert record.status is RunStatus.FAILED
    for _, machine in record.machines():
        assert machine.pre is not None
        assert machine.pre.status is HookStatus.FAILED
        assert machine.pre.code == "NoSigningKey"
    assert not any(line.startswith(("setMetadata", "snapshot ")) for line in compute.journal)
    assert fleet.hook_lines() == []


@pytest.mark.parametrize("on_failure", ["abort", "fallback"])
def test_an_agent_that_does_not_answer_times_out_and_its_watchdog_thaws(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients, on_failure: str
) -> None:
    policy = two_vm_policy(fleet, max_freeze_seconds=8, on_quiesce_failure=on_failure)
    fleet.add("db-vm", policy)
    app = fleet.add("app-vm", policy)
    # app-vm's agent runs the pre hook, but its answers never arrive and it hears nothing more.
    app.metadata.drop_answers = True

    def go_deaf_after_pre() -> None:
        if wait_for(lambda: "pre app" in fleet.lines(), timeout=10):
            app.metadata.deaf = True

    import threading

    watcher = threading.Thread(target=go_deaf_after_pre, daemon=True)
    watcher.start()
    record = run_group(
        policy,
        "orders",
        backends(policy, clients, answer_timeout=lambda hook, phase: 2.0),
    )
    watcher.join()

    machines = {m.machine_id: m for _, m in record.machines()}
    assert machines["app-vm"].pre is not None
    assert machines["app-vm"].pre.status is HookStatus.TIMED_OUT
    assert machines["app-vm"].pre.code == "NoAnswer"
    if on_failure == "abort":
        assert record.status is RunStatus.FAILED
        assert not any(line.startswith("snapshot ") for line in fleet.lines())
    else:
        assert record.status is RunStatus.DEGRADED
        assert record.consistency is Consistency.CRASH
    # db was thawed by the orchestrator; app by its watchdog, after max_freeze_seconds.
    assert "post db" in fleet.lines()
    assert wait_for(lambda: "post app" in fleet.lines(), timeout=15), fleet.lines()


def _plan_machines(policy: Policy, clients: GcpClients, **hooks: Any) -> list[dict[str, Any]]:
    from quiesce.plan import plan_policy

    report = plan_policy(policy, backends(policy, clients, **hooks).providers)
    member = report["groups"][0]["members"][0]
    machines: list[dict[str, Any]] = member["hooks"]["pre"]["machines"]
    return machines


def test_plan_shows_each_machines_allowlist_and_answer_signature(
    fleet: Fleet, clients: GcpClients
) -> None:
    policy = make_policy([gcp_member("db", fleet.hooks("db"))])
    fleet.add("db-vm", policy)

    [machine] = _plan_machines(policy, clients)

    assert machine["allowlist"] == "matches"
    assert machine["thaw_allowlist"] == "matches"
    assert machine["signature"] == "verified"


def test_plan_shows_that_nothing_can_be_signed_without_a_key(
    fleet: Fleet, clients: GcpClients
) -> None:
    policy = make_policy([gcp_member("db", fleet.hooks("db"))])
    fleet.add("db-vm", policy)

    [machine] = _plan_machines(policy, clients, keys=None)

    assert machine["check"]["code"] == "NoSigningKey"
    assert machine["signature"] == "NoSigningKey"
    assert machine["allowlist"] == "refused: NoSigningKey"
