"""AzureSnapshotter through the real Compute client against the fake ARM server."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import ServiceResponseError

from quiesce.errors import ProviderError
from quiesce.ports import Machine, SnapshotCall
from quiesce.record import SnapshotState
from quiesce_azure.clients import CredentialClients
from quiesce_azure.inventory import AzureInventory
from quiesce_azure.member import AzureMember
from quiesce_azure.retry import Backoff
from quiesce_azure.snapshots import (
    ALL_DISKS,
    POINT_IN_TIME_FIXED_STATE,
    AzureSnapshotter,
    point_in_time_is_fixed,
)

from .conftest import Sleeps
from .fake_arm import RG, SUB, FakeArm, FakeCredential


def member(mode: str, os: str = "linux") -> AzureMember:
    return AzureMember.model_validate(
        {
            "name": "db",
            "provider": "azure",
            "subscription": SUB,
            "resource_group": RG,
            "select": {"vm_names": ["db-1"]},
            "os": os,
            "snapshot": mode,
        }
    )


def machine(clients: CredentialClients, mode: str, os: str = "linux") -> Machine:
    (found,) = AzureInventory(clients).resolve(member(mode, os))
    return found


def call(
    m: Machine,
    run_id: str = "20260101T000000Z-abc123",
    *,
    mode: str = "restore_point",
    os: str = "linux",
) -> SnapshotCall:
    return SnapshotCall(
        run_id=run_id,
        policy="shop",
        group="orders",
        member="db",
        machine=m,
        recovery_point=f"rp-{run_id}",
        consistency="application",
        spec=member(mode, os),
    )


def snapshotter(clients: CredentialClients, mode: str, os: str = "linux") -> AzureSnapshotter:
    return AzureSnapshotter(clients, scopes={"orders": [(SUB, RG)]}, poll_interval=0)


def test_the_rule_is_one_named_constant() -> None:
    assert POINT_IN_TIME_FIXED_STATE == "Succeeded"
    assert point_in_time_is_fixed("Succeeded")
    assert not point_in_time_is_fixed("Creating")
    assert not point_in_time_is_fixed(None)


def test_disk_snapshots_are_incremental_tagged_and_become_durable(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.snapshot_copy_polls = 3
    arm.add_vm("db-1", data_disks=2)
    snaps = snapshotter(clients, "disk_snapshots")
    m = machine(clients, "disk_snapshots")
    refs = snaps.take(call(m, mode="disk_snapshots"))
    assert sorted(r.volume for r in refs) == sorted(m.volumes)
    assert all(r.state is SnapshotState.PENDING and r.fixed_at >= r.started_at for r in refs)
    for snap in arm.snapshots.values():
        assert snap["properties"]["incremental"] is True
        assert snap["tags"]["quiesce:managed"] == "true"
        assert snap["tags"]["quiesce:machine"] == m.machine_id
    durable = snaps.wait_durable(refs, timeout=30)
    assert all(r.state is SnapshotState.COMPLETED and r.durable_at for r in durable)


def test_windows_restore_points_ask_for_application_consistency(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", os="Windows")
    snaps = snapshotter(clients, "restore_point", "windows")
    (ref,) = snaps.take(call(machine(clients, "restore_point", "windows"), os="windows"))
    assert ref.volume == ALL_DISKS
    assert ref.method == "restore_point"
    assert ref.tags["azure:consistency-mode"] == "ApplicationConsistent"
    assert ref.tags["quiesce:consistency"] == "application"
    (point,) = arm.points.values()
    assert point["properties"]["consistencyMode"] == "ApplicationConsistent"
    (durable,) = snaps.wait_durable([ref], timeout=5)
    assert durable.state is SnapshotState.COMPLETED


def test_the_collection_is_created_once_and_reused(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1")
    snaps = snapshotter(clients, "restore_point")
    m = machine(clients, "restore_point")
    snaps.take(call(m, "run-1"))
    snaps.take(call(m, "run-2"))
    assert len(arm.collections) == 1
    assert len(arm.points) == 2
    assert [r.tags["quiesce:recovery-point"] for r in snaps.find("shop", "orders", "run-2")] == [
        "rp-run-2"
    ]
    assert len(snaps.find("shop", "orders")) == 2
    assert snaps.find("other", "orders") == []


def test_a_foreign_collection_of_the_same_name_is_not_written_to(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1")
    m = machine(clients, "restore_point")
    clients.compute(SUB).restore_point_collections.create_or_update(
        RG,
        "quiesce-db-1",
        {"location": "westeurope", "tags": {"owner": "someone"}},  # type: ignore[call-overload]
    )
    with pytest.raises(ProviderError) as err:
        snapshotter(clients, "restore_point").take(call(m))
    assert err.value.code == "NotManaged"
    assert arm.points == {}


def test_a_failed_restore_point_is_a_provider_error(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1")
    arm.fail_restore_points.add("db-1")
    with pytest.raises(ProviderError, match="VMAgentStatusCommunicationError"):
        snapshotter(clients, "restore_point").take(call(machine(clients, "restore_point")))


@pytest.mark.parametrize("mode", ["restore_point", "disk_snapshots"])
def test_delete_removes_only_quiesce_resources_and_tolerates_gone_ones(
    arm: FakeArm, clients: CredentialClients, mode: str
) -> None:
    arm.add_vm("db-1")
    snaps = snapshotter(clients, mode)
    refs = snaps.take(call(machine(clients, mode), mode=mode))
    for ref in refs:
        snaps.delete(ref)
        snaps.delete(ref)  # gone already: no error
    assert arm.points == {}
    assert arm.snapshots == {}
    assert snaps.find("shop", "orders") == []


def test_delete_refuses_an_untagged_snapshot(arm: FakeArm, clients: CredentialClients) -> None:
    arm.add_vm("db-1")
    snaps = snapshotter(clients, "disk_snapshots")
    (ref, *_) = snaps.take(call(machine(clients, "disk_snapshots"), mode="disk_snapshots"))
    for snap in arm.snapshots.values():
        snap["tags"] = {}
    with pytest.raises(ProviderError) as err:
        snaps.delete(ref)
    assert err.value.code == "NotManaged"
    assert len(arm.snapshots) == 2


def test_a_vanished_snapshot_is_failed_when_waiting(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", data_disks=0)
    snaps = snapshotter(clients, "disk_snapshots")
    refs = snaps.take(call(machine(clients, "disk_snapshots"), mode="disk_snapshots"))
    arm.snapshots.clear()
    assert [r.state for r in snaps.wait_durable(refs, timeout=1)] == [SnapshotState.FAILED]


def test_attribute_free_machines_are_looked_up(arm: FakeArm, clients: CredentialClients) -> None:
    vm: dict[str, Any] = arm.add_vm("db-1")
    bare = Machine(provider="azure", member="db", machine_id=vm["id"])
    (ref,) = snapshotter(clients, "restore_point").take(call(bare))
    assert ref.machine_id == vm["id"]


def test_a_connection_reset_on_an_idempotent_request_is_retried(
    arm: FakeArm, credential: FakeCredential
) -> None:
    """One reset under load (after ARM carried the request out) used to fail the machine."""
    sleeps = Sleeps()
    clients = CredentialClients(
        credential,
        base_url=arm.base_url,
        polling_interval=0,
        reconnect=Backoff(sleep=sleeps, random=lambda: 0.5),
    )
    arm.add_vm("db-1", data_disks=1)
    m = machine(clients, "disk_snapshots")
    arm.drop("PUT", r"/snapshots/", count=1)
    arm.drop("GET", r"/snapshots/", count=1)

    refs = snapshotter(clients, "disk_snapshots").take(call(m, mode="disk_snapshots"))

    assert sorted(r.volume for r in refs) == sorted(m.volumes)
    assert len(arm.snapshots) == len(m.volumes)  # the repeated PUT made no second snapshot
    assert sleeps.waits == [0.1, 0.1]  # one retry after each reset, after the core's backoff


def test_a_request_that_is_not_idempotent_is_not_repeated_after_a_reset(
    arm: FakeArm, credential: FakeCredential
) -> None:
    clients = CredentialClients(
        credential, base_url=arm.base_url, polling_interval=0, reconnect=Backoff(sleep=Sleeps())
    )
    arm.add_vm("db-1", data_disks=1)
    arm.drop("POST", r"/virtualMachines/db-1/", count=1)
    compute = clients.compute(SUB)

    with pytest.raises(ServiceResponseError):
        compute.virtual_machines.begin_power_off(RG, "db-1").result()

    assert [method for method, _ in arm.requests].count("POST") == 1
