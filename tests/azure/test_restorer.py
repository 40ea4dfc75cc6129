"""AzureRestorer and the copies of AzureSnapshotter through the real Compute client against the
fake ARM server: copies in another region that replicate for a while, VMs launched from them
into an isolated subnet, their VM agent, verify hooks through Run Command on the copy, and a
cleanup that leaves nothing behind."""

from __future__ import annotations

import pytest

from quiesce.errors import ProviderError
from quiesce.policy.model import Hook
from quiesce.policy.recovery import RestoreSite
from quiesce.ports import HookCall, MachineRestore, RestoredMachine, SnapshotCall
from quiesce.record import HookStatus, SnapshotRef, SnapshotState
from quiesce_azure.clients import CredentialClients
from quiesce_azure.hooks import RunCommandHookRunner
from quiesce_azure.inventory import AzureInventory
from quiesce_azure.member import AzureMember
from quiesce_azure.restorer import RESTORE_OF_TAG, RESTORE_TAG, AzureRestorer
from quiesce_azure.retry import Backoff
from quiesce_azure.snapshots import AzureSnapshotter

from .conftest import Sleeps
from .fake_arm import RG, SUB, FakeArm

DR = "northeurope"
NET = f"/subscriptions/{SUB}/resourceGroups/rg-dr/providers/Microsoft.Network"
SUBNET = f"{NET}/virtualNetworks/vnet-dr/subnets/isolated"
NSG = f"{NET}/networkSecurityGroups/nsg-isolated"
SITE = RestoreSite(network=SUBNET, security_groups=[NSG])
VERIFY = Hook(run=["/etc/quiesce/verify.sh"], timeout_seconds=5)
COPY_TAGS = {"quiesce:copy-of": "source"}
DES = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/diskEncryptionSets/dr"


class Clock:
    """A monotonic clock that the injected sleep advances."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1.0)


def member(mode: str = "restore_point", name: str = "db-1") -> AzureMember:
    return AzureMember.model_validate(
        {
            "name": "db",
            "provider": "azure",
            "subscription": SUB,
            "resource_group": RG,
            "select": {"vm_names": [name]},
            "snapshot": mode,
            "hooks": {"verify": VERIFY.model_dump()},
        }
    )


def snapshotter(clients: CredentialClients) -> AzureSnapshotter:
    return AzureSnapshotter(clients, scopes={"orders": [(SUB, RG)]}, poll_interval=0)


def restorer(clients: CredentialClients, clock: Clock | None = None) -> AzureRestorer:
    clock = clock or Clock()
    return AzureRestorer(
        clients,
        scopes=[(SUB, RG)],
        poll_interval=1,
        clock=clock,
        sleep=clock.sleep,
        backoff=Backoff(sleep=Sleeps(), random=lambda: 0.5),
    )


def take(
    clients: CredentialClients, mode: str = "restore_point", name: str = "db-1"
) -> list[SnapshotRef]:
    spec = member(mode, name)
    (machine,) = AzureInventory(clients).resolve(spec)
    snaps = snapshotter(clients)
    refs = snaps.take(
        SnapshotCall(
            run_id="20260101T000000Z-abc123",
            policy="shop",
            group="orders",
            member="db",
            machine=machine,
            recovery_point="rp-20260101T000000Z-abc123",
            consistency="application",
            spec=spec,
        )
    )
    return snaps.wait_durable(refs, timeout=30)


def copied(
    clients: CredentialClients, refs: list[SnapshotRef], key: str | None = None
) -> list[SnapshotRef]:
    snaps = snapshotter(clients)
    return [snaps.copy_to_region(ref, DR, key, COPY_TAGS) for ref in refs]


def request(
    refs: list[SnapshotRef],
    label: str = "drill-1",
    site: RestoreSite = SITE,
    name: str = "db-1",
    mode: str = "restore_point",
) -> MachineRestore:
    return MachineRestore(
        point="rp-20260101T000000Z-abc123",
        member="db",
        machine_id=f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/"
        f"virtualMachines/{name}",
        snapshots=tuple(refs),
        label=label,
        site=site,
        spec=member(mode, name),
        region=DR,
    )


def verify(clients: CredentialClients, restored: RestoredMachine) -> HookStatus:
    call = HookCall(
        run_id="drill-1",
        policy="shop",
        group="orders",
        member="db",
        machine=restored.machine,
        phase="verify",
        hook=VERIFY,
        spec=member(),
    )
    return RunCommandHookRunner(clients, poll_interval=0).run(call).status


# ------------------------------------------------------------------------------ copies


def test_a_restore_point_copy_replicates_in_the_other_region_then_is_durable(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", data_disks=1)
    arm.region_copy_polls = 3
    (source,) = take(clients)
    (replica,) = copied(clients, [source])

    assert replica.state is SnapshotState.PENDING
    assert "/restorePointCollections/quiesce-db-1-northeurope/" in replica.id
    assert replica.tags["quiesce:region"] == DR
    assert replica.tags["quiesce:copy-of"] == "source"
    assert replica.fixed_at == source.fixed_at  # the same point in time
    coll = arm.collections[(SUB.lower(), RG.lower(), "quiesce-db-1-northeurope")]
    assert coll["location"] == DR
    assert coll["properties"]["source"]["id"].endswith("/restorePointCollections/quiesce-db-1")
    assert coll["tags"]["quiesce:managed"] == "true"
    snaps = snapshotter(clients)
    assert snaps.states([replica]) == {replica.id: SnapshotState.PENDING}
    (durable,) = snaps.wait_durable([replica], timeout=30)
    assert durable.state is SnapshotState.COMPLETED

    # a second point's copy reuses the collection; the copies are deleted like any point
    snaps.delete(durable)
    assert replica.id.lower() not in {p["id"].lower() for p in arm.points.values()}


def test_a_restore_point_copy_with_a_key_encrypts_every_disk_restore_point(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", data_disks=2)
    key = DES
    (replica,) = copied(clients, take(clients), key)
    point = next(p for p in arm.points.values() if p["id"] == replica.id)
    profile = point["properties"]["sourceMetadata"]["storageProfile"]
    disks = [profile["osDisk"], *profile["dataDisks"]]
    assert len(disks) == 3
    for disk in disks:
        assert disk["diskRestorePoint"]["encryption"]["diskEncryptionSet"]["id"] == key


def test_an_incremental_snapshot_is_copied_with_copy_start_and_the_key(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.snapshot_copy_polls = 0
    arm.region_copy_polls = 2
    arm.add_vm("db-1", data_disks=1)
    key = DES
    sources = take(clients, "disk_snapshots")
    replicas = copied(clients, sources, key)

    assert len(replicas) == 2
    for source, replica in zip(sources, replicas, strict=True):
        snap = next(s for s in arm.snapshots.values() if s["id"] == replica.id)
        assert snap["location"] == DR
        assert snap["properties"]["creationData"] == {
            "createOption": "CopyStart",
            "sourceResourceId": source.id,
        }
        assert snap["properties"]["encryption"]["diskEncryptionSetId"] == key
        assert snap["tags"]["quiesce:managed"] == "true"
        assert snap["tags"]["quiesce:copy-of"] == "source"
        assert replica.volume == source.volume
        assert replica.state is SnapshotState.PENDING
    durable = snapshotter(clients).wait_durable(replicas, timeout=30)
    assert [r.state for r in durable] == [SnapshotState.COMPLETED] * 2


def test_a_snapshot_quiesce_did_not_make_is_not_copied(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.snapshot_copy_polls = 0
    arm.add_vm("db-1", data_disks=0)
    (source,) = take(clients, "disk_snapshots")
    for snap in arm.snapshots.values():
        snap["tags"] = {}
    with pytest.raises(ProviderError) as err:
        copied(clients, [source])
    assert err.value.code == "NotManaged"
    assert len(arm.snapshots) == 1


# ------------------------------------------------------------------------------ launch


def test_a_copy_is_launched_isolated_verified_and_cleaned_up_without_leftovers(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", data_disks=2, vm_size="Standard_E4s_v5")
    arm.region_copy_polls = 1
    arm.agent_polls = 2
    replicas = snapshotter(clients).wait_durable(copied(clients, take(clients)), timeout=30)
    before = arm.resources()
    clock = Clock()
    restore = restorer(clients, clock)

    restored = restore.launch(request(replicas))

    vm = next(v for v in arm.vms.values() if v["id"] == restored.machine.machine_id)
    assert vm["location"] == DR
    assert vm["properties"]["hardwareProfile"] == {"vmSize": "Standard_E4s_v5"}
    assert vm["tags"][RESTORE_TAG] == "drill-1"
    assert vm["tags"][RESTORE_OF_TAG].endswith("/virtualMachines/db-1")
    storage = vm["properties"]["storageProfile"]
    assert storage["osDisk"]["createOption"] == "Attach"
    assert sorted(d["lun"] for d in storage["dataDisks"]) == [0, 1]
    assert "osProfile" not in vm["properties"]
    (nic,) = arm.nics.values()
    config = nic["properties"]["ipConfigurations"][0]["properties"]
    assert config["subnet"] == {"id": SUBNET}
    assert "publicIPAddress" not in config
    assert nic["properties"]["networkSecurityGroup"] == {"id": NSG}
    assert nic["location"] == DR
    for disk in arm.disks.values():
        assert disk["location"] == DR
        assert disk["tags"][RESTORE_TAG] == "drill-1"
        assert disk["properties"]["creationData"]["createOption"] == "Restore"
        assert (
            "/quiesce-db-1-northeurope/" in disk["properties"]["creationData"]["sourceResourceId"]
        )
    assert restored.mounts == {}  # every disk is at the LUN it had
    made = sorted(set(arm.resources()) - set(before))
    assert sorted(restored.created) == made  # every resource made is listed
    assert len(made) == 5  # three disks, a NIC, the VM

    # Run Command is refused until the agent is Ready; wait_ready waits for exactly that
    assert verify(clients, restored) is HookStatus.FAILED
    restore.wait_ready(restored, timeout=600)
    assert verify(clients, restored) is HookStatus.SUCCEEDED
    (seen,) = [c for c in arm.hook_calls_of("verify")]
    assert seen.vm == restored.machine.attributes["vm_name"]

    result = restore.cleanup("drill-1", [DR])

    assert sorted(result.deleted) == made
    assert result.left == []
    assert arm.resources(RESTORE_TAG) == []
    assert arm.resources() == before  # the original VM, its points and copies are untouched


def test_a_copy_still_replicating_is_refused_and_nothing_is_made(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", data_disks=1)
    arm.region_copy_polls = 50
    replicas = copied(clients, take(clients))
    before = arm.resources()

    with pytest.raises(ProviderError) as err:
        restorer(clients).launch(request(replicas))

    assert err.value.code == "CopyPending"
    assert "still pending" in str(err.value)
    assert DR in str(err.value)
    assert arm.resources() == before


def test_a_snapshot_copy_still_copying_is_refused(arm: FakeArm, clients: CredentialClients) -> None:
    arm.snapshot_copy_polls = 0
    arm.region_copy_polls = 50
    arm.add_vm("db-1", data_disks=1)
    replicas = copied(clients, take(clients, "disk_snapshots"))
    with pytest.raises(ProviderError) as err:
        restorer(clients).launch(request(replicas, mode="disk_snapshots"))
    assert err.value.code == "CopyPending"
    assert arm.disks == {}


def test_a_restore_interrupted_halfway_is_found_and_removed_by_its_label(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", data_disks=1)
    arm.region_copy_polls = 0
    replicas = copied(clients, take(clients))
    before = arm.resources()
    arm.throttle(
        "PUT", r"/virtualMachines/", count=100, retry_after="0"
    )  # the VM is never accepted

    with pytest.raises(ProviderError) as err:
        restorer(clients).launch(request(replicas, label="drill-cut"))

    assert "tagged for cleanup" in str(err.value)
    left = arm.resources(RESTORE_TAG, "drill-cut")
    assert len(left) == 3  # two disks and the NIC were made before the VM failed
    arm.throttles.clear()
    result = restorer(clients).cleanup("drill-cut", [DR])
    assert sorted(result.deleted) == left
    assert arm.resources() == before


def test_a_vm_that_fails_to_provision_fails_the_wait_and_is_cleaned_up(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", data_disks=0)
    arm.region_copy_polls = 0
    replicas = copied(clients, take(clients))
    restore = restorer(clients)
    arm.fail_vm_creates.add("drill-bad")
    restored = restore.launch(request(replicas, label="drill-bad"))
    restored_name = restored.machine.attributes["vm_name"]
    with pytest.raises(ProviderError) as err:
        restore.wait_ready(restored, timeout=60)
    assert err.value.code == "ProvisioningFailed"
    assert restored_name in str(err.value)
    result = restore.cleanup("drill-bad", [DR])
    assert result.left == []
    assert arm.resources(RESTORE_TAG) == []


def test_an_agent_that_never_answers_times_out_with_what_it_last_said(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", data_disks=0)
    arm.region_copy_polls = 0
    replicas = copied(clients, take(clients))
    clock = Clock()
    restore = restorer(clients, clock)
    restored = restore.launch(request(replicas))
    arm.silent_agents.add(restored.machine.attributes["vm_name"].lower())
    with pytest.raises(ProviderError) as err:
        restore.wait_ready(restored, timeout=30)
    assert err.value.code == "NotReady"
    assert "Not Ready" in str(err.value)
    assert "30s" in str(err.value)
    assert clock.now >= 30


def test_disks_attach_to_an_inspection_vm_and_are_detached_and_deleted_by_cleanup(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", data_disks=1)
    inspect = arm.add_vm("inspect-1", data_disks=1, location=DR)
    arm.region_copy_polls = 0
    replicas = copied(clients, take(clients))
    before = arm.resources()
    restore = restorer(clients)
    site = RestoreSite(network=SUBNET, inspect_on=inspect["id"])

    restored = restore.launch(request(replicas, label="inspect-1", site=site))

    assert restored.machine.machine_id == inspect["id"]
    assert arm.nics == {}  # no copy is launched
    luns = sorted(d["lun"] for d in inspect["properties"]["storageProfile"]["dataDisks"])
    assert luns == [0, 1, 2]  # its own disk at 0, the restored OS and data disks after it
    original = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/disks/db-1"
    assert restored.mounts == {
        f"{original}-os": "/dev/disk/azure/scsi1/lun1",
        f"{original}-data0": "/dev/disk/azure/scsi1/lun2",
    }
    restore.wait_ready(restored, timeout=60)
    assert verify(clients, restored) is HookStatus.SUCCEEDED

    result = restore.cleanup("inspect-1", [DR])

    assert result.left == []
    assert len(result.deleted) == 2
    assert arm.resources() == before
    assert [d["lun"] for d in inspect["properties"]["storageProfile"]["dataDisks"]] == [0]
    assert inspect["id"] in arm.resources()


def test_disk_snapshots_launch_with_the_original_vms_size_and_luns(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.snapshot_copy_polls = 0
    arm.region_copy_polls = 0
    arm.add_vm("db-1", data_disks=2, vm_size="Standard_D8s_v5")
    replicas = copied(clients, take(clients, "disk_snapshots"))
    restored = restorer(clients).launch(request(replicas, mode="disk_snapshots"))
    vm = next(v for v in arm.vms.values() if v["id"] == restored.machine.machine_id)
    assert vm["properties"]["hardwareProfile"]["vmSize"] == "Standard_D8s_v5"
    storage = vm["properties"]["storageProfile"]
    by_source = {
        next(
            d["properties"]["creationData"]["sourceResourceId"]
            for d in arm.disks.values()
            if d["id"] == entry["managedDisk"]["id"]
        ): entry.get("lun")
        for entry in [storage["osDisk"], *storage["dataDisks"]]
    }
    for replica in replicas:  # each snapshot's disk at its original's LUN (the OS disk: none)
        original = replica.volume.rsplit("-", 1)[-1]
        assert by_source[replica.id] == (None if original == "os" else int(original[-1]))


def test_disk_snapshots_of_a_vm_that_is_gone_say_why_they_cannot_be_launched(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.snapshot_copy_polls = 0
    arm.region_copy_polls = 0
    arm.add_vm("db-1", data_disks=1)
    replicas = copied(clients, take(clients, "disk_snapshots"))
    arm.vms.clear()
    with pytest.raises(ProviderError) as err:
        restorer(clients).launch(request(replicas, mode="disk_snapshots"))
    assert err.value.code == "NoMachineShape"
    assert "restore points" in str(err.value)
    assert arm.disks == {}


def test_a_restore_point_relaunches_a_vm_that_is_gone(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", data_disks=1, vm_size="Standard_B2s")
    arm.region_copy_polls = 0
    replicas = copied(clients, take(clients))
    del arm.vms[(SUB.lower(), RG.lower(), "db-1")]
    restored = restorer(clients).launch(request(replicas))
    vm = next(v for v in arm.vms.values() if v["id"] == restored.machine.machine_id)
    assert vm["properties"]["hardwareProfile"]["vmSize"] == "Standard_B2s"


@pytest.mark.parametrize(
    ("site", "field"),
    [
        (RestoreSite(network="subnet-0abc"), "restore.network"),
        (RestoreSite(network=SUBNET, security_groups=[NSG, NSG + "2"]), "restore.security_groups"),
        (RestoreSite(network=SUBNET, security_groups=["sg-1"]), "restore.security_groups"),
    ],
)
def test_a_site_azure_cannot_use_is_refused_before_anything_is_made(
    arm: FakeArm, clients: CredentialClients, site: RestoreSite, field: str
) -> None:
    arm.add_vm("db-1", data_disks=0)
    arm.region_copy_polls = 0
    replicas = copied(clients, take(clients))
    before = arm.resources()
    with pytest.raises(ProviderError) as err:
        restorer(clients).launch(request(replicas, site=site))
    assert err.value.code == "BadSite"
    assert field in str(err.value)
    assert arm.resources() == before


def test_a_restore_in_another_region_than_the_snapshots_is_refused(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", data_disks=0)
    sources = take(clients)  # in westeurope, not copied
    with pytest.raises(ProviderError) as err:
        restorer(clients).launch(request(sources))
    assert err.value.code == "WrongRegion"
    assert arm.disks == {}


def test_cleanup_touches_nothing_without_its_label(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1", data_disks=0)
    arm.add_vm("other-drill", tags={RESTORE_TAG: "drill-2"})
    arm.add_vm("untagged")
    arm.region_copy_polls = 0
    replicas = copied(clients, take(clients))
    restore = restorer(clients)
    restore.launch(request(replicas, label="drill-1"))
    before_other = arm.resources(RESTORE_TAG, "drill-2")

    result = restore.cleanup("drill-1", [DR])

    assert result.left == []
    assert arm.resources(RESTORE_TAG, "drill-1") == []
    assert arm.resources(RESTORE_TAG, "drill-2") == before_other
    names = {v["name"] for v in arm.vms.values()}
    assert names == {"db-1", "other-drill", "untagged"}
