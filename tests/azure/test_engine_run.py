"""The engine on Azure: `run_group` of a two-VM group with the provider from `azure_provider`
(real Compute clients against the fake ARM server) and the in-memory catalog and bus."""

from __future__ import annotations

import json
from typing import Any

import pytest

from quiesce.engine import run_group
from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from quiesce.record import Consistency, RunStatus, SnapshotState
from quiesce_azure.provider import azure_provider

from .fake_arm import FakeArm, FakeCredential, default_guest
from .policies import shop, vm_member


def policy(snapshot: str, on_failure: str = "fallback") -> Policy:
    members = [vm_member("db", snapshot=snapshot), vm_member("app", snapshot=snapshot)]
    return Policy.model_validate(shop(members, on_quiesce_failure=on_failure))


def backends(arm: FakeArm, pol: Policy) -> Backends:
    provider = azure_provider(pol, FakeCredential(), base_url=arm.base_url, polling_interval=0)
    return Backends(providers={"azure": provider}, state=MemoryStateStore(), bus=MemoryEventBus())


@pytest.fixture
def vms(arm: FakeArm) -> dict[str, dict[str, Any]]:
    arm.snapshot_copy_polls = 2
    return {"db": arm.add_vm("db-1", data_disks=1), "app": arm.add_vm("app-1", data_disks=2)}


def phases_in_order(arm: FakeArm) -> list[str]:
    events = [(c.at, c.params["QUIESCE_PHASE"]) for c in arm.hook_calls]
    events += [(at, "snapshot") for at, _, _ in arm.created]
    return [what for _, what in sorted(events)]


@pytest.mark.parametrize("mode", ["restore_point", "disk_snapshots"])
def test_an_application_consistent_run_of_a_two_vm_group(
    arm: FakeArm, vms: dict[str, dict[str, Any]], mode: str
) -> None:
    pol = policy(mode)
    be = backends(arm, pol)
    record = run_group(pol, "orders", be)

    assert record.status is RunStatus.SUCCEEDED, record.errors
    assert record.consistency is Consistency.APPLICATION
    order = phases_in_order(arm)
    snaps = 2 if mode == "restore_point" else 5  # one per VM, or one per disk (2 + 3)
    assert order == ["pre", "pre"] + ["snapshot"] * snaps + ["post", "post"]
    assert sorted(c.vm for c in arm.hook_calls_of("pre")) == ["app-1", "db-1"]
    assert sorted(c.vm for c in arm.hook_calls_of("post")) == ["app-1", "db-1"]
    assert arm.run_commands == {}
    assert len(arm.deleted_run_commands) == 4

    if mode == "restore_point":
        assert len(arm.points) == 2
        for coll in arm.collections.values():
            assert coll["tags"]["quiesce:managed"] == "true"
            assert coll["tags"]["quiesce:group"] == "orders"
        for point in arm.points.values():
            assert point["name"] == record.recovery_point
            assert point["properties"]["consistencyMode"] == "CrashConsistent"  # linux + hooks
    else:
        assert len(arm.snapshots) == 5
        for snap in arm.snapshots.values():
            assert snap["tags"]["quiesce:managed"] == "true"
            assert snap["tags"]["quiesce:run-id"] == record.run_id
            assert snap["tags"]["quiesce:consistency"] == "application"
            assert snap["properties"]["incremental"] is True
            assert snap["properties"]["creationData"]["createOption"] == "Copy"

    assert record.recovery_point is not None
    saved = be.state.get_point(record.recovery_point)
    assert saved is not None
    assert all(s.state is SnapshotState.COMPLETED for s in saved.snapshots)
    found = be.providers["azure"].snapshots.find("shop", "orders", record.run_id)
    assert sorted(s.id for s in found) == sorted(s.id for s in saved.snapshots)


def failing(vm_name: str, phase: str, state: str) -> Any:
    def guest(vm: str, params: dict[str, str]) -> tuple[str, int, str, str]:
        if vm == vm_name and params["QUIESCE_PHASE"] == phase:
            if state == "TimedOut":
                return "TimedOut", -1, "", "timed out"
            failed = {"status": "failed", "code": "ExecutionFailed", "exit_code": 1, "attempts": 1}
            return "Failed", 1, json.dumps(failed), ""
        return default_guest(vm, params)

    return guest


@pytest.mark.parametrize("state", ["Failed", "TimedOut"])
def test_a_failed_pre_falls_back_to_crash_consistency_and_thaws_everyone(
    arm: FakeArm, vms: dict[str, dict[str, Any]], state: str
) -> None:
    arm.guest = failing("db-1", "pre", state)
    pol = policy("restore_point")
    record = run_group(pol, "orders", backends(arm, pol))

    assert record.status is RunStatus.DEGRADED, record.errors
    assert record.consistency is Consistency.CRASH
    assert len(arm.points) == 2
    assert sorted(c.vm for c in arm.hook_calls_of("post")) == ["app-1", "db-1"]
    assert arm.run_commands == {}


@pytest.mark.parametrize("state", ["Failed", "TimedOut"])
def test_a_failed_pre_with_abort_takes_no_snapshot_and_thaws_everyone(
    arm: FakeArm, vms: dict[str, dict[str, Any]], state: str
) -> None:
    arm.guest = failing("app-1", "pre", state)
    pol = policy("disk_snapshots", on_failure="abort")
    record = run_group(pol, "orders", backends(arm, pol))

    assert record.status is RunStatus.FAILED
    assert arm.snapshots == {}
    assert arm.created == []
    assert sorted(c.vm for c in arm.hook_calls_of("post")) == ["app-1", "db-1"]


def test_a_failed_restore_point_still_thaws_and_the_run_is_failed(
    arm: FakeArm, vms: dict[str, dict[str, Any]]
) -> None:
    arm.fail_restore_points.add("db-1")
    pol = policy("restore_point")
    record = run_group(pol, "orders", backends(arm, pol))

    assert record.status is RunStatus.FAILED
    assert any("VMAgentStatusCommunicationError" in e for e in record.errors), record.errors
    assert sorted(c.vm for c in arm.hook_calls_of("post")) == ["app-1", "db-1"]
    assert phases_in_order(arm)[-2:] == ["post", "post"]


def test_throttled_snapshot_creation_is_retried(
    arm: FakeArm, vms: dict[str, dict[str, Any]]
) -> None:
    arm.throttle("PUT", r"/restorePoints/", count=1, retry_after="0")
    pol = policy("restore_point")
    record = run_group(pol, "orders", backends(arm, pol))
    assert record.status is RunStatus.SUCCEEDED, record.errors
    assert len(arm.points) == 2
