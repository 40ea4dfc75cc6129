"""A two-VM GCP group backed up by the engine (real agents through fake metadata servers),
copied to a second region as images, refused there while the copy is pending, then restored
there as isolated copies whose real agents (booted from the restored disks: the originals'
allowlists and keys) run the verify hooks, measured, and cleaned up with nothing left behind;
a drill that passes, one whose verify fails, and a restore interrupted halfway that cleanup by
label finishes. Every assertion on "nothing left" lists the fake cloud's resources."""

from __future__ import annotations

from typing import Any

import pytest

from quiesce.drill import run_drill
from quiesce.engine import run_group
from quiesce.errors import NotFoundError, QuiesceError
from quiesce.group_restore import cleanup_restore, restore_group
from quiesce.policy.model import Policy
from quiesce.ports import Backends, Provider
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from quiesce.record import RunStatus, SnapshotState
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.copies import GceSnapshotterWithCopies
from quiesce_gcp.hooks import AgentHookRunner
from quiesce_gcp.inventory import GceInventory
from quiesce_gcp.restorer import GceRestorer
from quiesce_gcp.signing import AgentKeys

from .conftest import MASTER_KEY, PROJECT, ZONE, Fleet, write_script
from .fake_compute import FakeCompute
from .restore_fixtures import Booter, booter, everything, restore_resources

__all__ = ["booter"]

DR = "europe-west4"
DR_SUBNET = f"projects/{PROJECT}/regions/{DR}/subnetworks/isolated-dr"
KEY = f"projects/{PROJECT}/locations/{DR}/keyRings/quiesce/cryptoKeys/dr"


def hooks(fleet: Fleet, member: str, *, fail_verify: bool = False) -> dict[str, Any]:
    folder = fleet.root / "hooks"
    folder.mkdir(mode=0o755, exist_ok=True)
    body = f'echo "verify {member}" >> {fleet.journal}' + ("\nexit 1" if fail_verify else "")
    script = write_script(folder / f"{member}-verify.sh", body)
    return {**fleet.hooks(member), "verify": {"run": [str(script)], "timeout_seconds": 5}}


def policy_of(fleet: Fleet, *, fail_verify: bool = False) -> Policy:
    def vm(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "provider": "gcp",
            "project": PROJECT,
            "zone": ZONE,
            "select": {"instances": [f"{name}-vm"]},
            "hooks": hooks(fleet, name, fail_verify=fail_verify and name == "app"),
        }

    return Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "orders": {
                    "consistency": "application",
                    "max_freeze_seconds": 20,
                    "durability_timeout_seconds": 30,
                    "restore": {"network": "isolated", "security_groups": ["isolated"]},
                    "copies": [
                        {
                            "region": DR,
                            "key": KEY,
                            "keep_last": 3,
                            "restore": {"network": DR_SUBNET, "security_groups": ["isolated"]},
                        }
                    ],
                    "members": [vm("db"), vm("app")],
                }
            },
            "triggers": [
                {"name": "drill", "group": "orders", "schedule": "0 4 1 * *", "action": "drill",
                 "region": DR},
            ],
        }
    )  # fmt: skip


def backends(clients: GcpClients) -> Backends:
    runner = AgentHookRunner(clients, keys=AgentKeys.from_hex(MASTER_KEY), poll_interval=0.05)
    provider = Provider(
        inventory=GceInventory(clients),
        hooks=runner,
        snapshots=GceSnapshotterWithCopies(
            clients, projects={"orders": [PROJECT]}, poll_interval=0.01
        ),
        restorer=GceRestorer(clients, runner, projects=[PROJECT], poll_interval=0.02),
    )
    return Backends(providers={"gcp": provider}, state=MemoryStateStore(), bus=MemoryEventBus())


def backed_up(fleet: Fleet, compute: FakeCompute, clients: GcpClients, **kw: Any) -> Any:
    policy = policy_of(fleet, **kw)
    fleet.add("db-vm", policy, data_disks=1)
    fleet.add("app-vm", policy, data_disks=1, labels={"app": "shop"})
    compute.hold_images = True  # the copies stay pending until released
    b = backends(clients)
    record = run_group(policy, "orders", b)
    assert record.status is RunStatus.SUCCEEDED, record.errors
    assert record.recovery_point is not None
    return policy, b, record.recovery_point


def test_a_group_is_copied_refused_while_pending_restored_there_verified_and_cleaned_up(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients, booter: Booter
) -> None:
    policy, b, point_id = backed_up(fleet, compute, clients)

    point = b.state.get_point(point_id)
    assert point is not None
    (copy,) = point.copies
    assert (copy.region, copy.state) == (DR, SnapshotState.PENDING)
    images = compute.images
    assert len(images) == 4  # one per disk: 2 of db-vm, 2 of app-vm
    for image in images.values():
        assert image["storageLocations"] == [DR]
        assert image["imageEncryptionKey"] == {"kmsKeyName": KEY}
        assert image["labels"]["quiesce-region"] == DR
        assert image["labels"]["quiesce-machine-type"] == "e2-standard-2"
        assert image["name"].startswith("q-c-")

    # A copy still pending: the restore there is refused, and nothing is made.
    with pytest.raises(QuiesceError, match=f"in {DR} is pending; restore it there once"):
        restore_group(policy, b, point_id, region=DR, cleanup=True)
    with pytest.raises(NotFoundError, match=f"with a completed copy in {DR}"):
        run_drill(policy, "orders", b, region=DR)
    assert restore_resources(compute) == []
    assert len(compute.instances) == 2

    compute.release_images()
    before = everything(compute)
    result = restore_group(policy, b, point_id, region=DR, cleanup=True)

    assert result.errors == []
    assert result.verified is True
    assert result.rto_seconds is not None
    assert result.rto_seconds > 0
    assert set(result.phases) == {"restore", "ready", "verify", "cleanup"}
    assert sorted(m.member for m in result.machines) == ["app", "db"]
    for machine in result.machines:
        assert machine.machine.startswith("qr-")
        assert machine.verify is not None
        assert machine.verify.ok
        zones = {c.split("/")[3] for c in machine.created}
        assert zones == {f"{DR}-b"}  # the copy region's first zone
    assert sorted(booter.booted) == sorted(m.machine for m in result.machines)
    launched = [line for line in fleet.lines() if line.startswith("inserted instance")]
    assert len(launched) == 2
    assert sorted(line for line in fleet.lines() if line.startswith("verify ")) == [
        "verify app",
        "verify db",
    ]
    # Disks came from the copies (images in the region), not the source snapshots.
    assert len([line for line in fleet.lines() if line.startswith("inserted disk")]) == 4
    assert result.left == []
    assert sorted(result.deleted) == sorted(result.created)
    assert restore_resources(compute) == []
    assert everything(compute) == before


def test_a_drill_in_the_copy_region_passes_measures_and_leaves_nothing(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients, booter: Booter
) -> None:
    policy, b, point_id = backed_up(fleet, compute, clients)
    compute.release_images()
    before = everything(compute)

    drill = run_drill(policy, "orders", b, region=DR)

    assert drill.verdict == "passed", drill.errors
    assert drill.rto_seconds is not None
    assert drill.left == []
    assert len(drill.created) == 6  # 4 disks, 2 instances
    assert everything(compute) == before
    point = b.state.get_point(point_id)
    assert point is not None
    assert point.drills[-1].drill_id == drill.drill_id


def test_a_drill_whose_verify_fails_is_failed_and_still_leaves_nothing(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients, booter: Booter
) -> None:
    policy, b, _ = backed_up(fleet, compute, clients, fail_verify=True)
    compute.release_images()
    before = everything(compute)

    drill = run_drill(policy, "orders", b, region=DR)

    assert drill.verdict == "failed"
    assert drill.rto_seconds is None
    assert any("verify hook of app" in e for e in drill.errors), drill.errors
    assert drill.left == []
    assert everything(compute) == before


def test_a_restore_interrupted_halfway_is_cleaned_up_by_its_label(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients, booter: Booter
) -> None:
    policy, b, point_id = backed_up(fleet, compute, clients)
    compute.release_images()
    before = everything(compute)
    compute.refuse_instances = "ZONE_RESOURCE_POOL_EXHAUSTED: europe-west4-b"

    result = restore_group(policy, b, point_id, region=DR, label="restore-halfway")

    assert any("ZONE_RESOURCE_POOL_EXHAUSTED" in e for e in result.errors), result.errors
    left = restore_resources(compute, "restore-halfway")
    assert left
    assert all(r.startswith("disks/qr-") for r in left)

    deleted, problems = cleanup_restore(b, "restore-halfway", [DR])

    assert problems == []
    assert sorted(d.rsplit("/", 1)[1] for d in deleted) == sorted(r.split("/")[1] for r in left)
    assert everything(compute) == before


@pytest.mark.parametrize("region", [None])
def test_a_restore_in_the_groups_own_region_uses_the_snapshots(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients, booter: Booter, region: None
) -> None:
    policy, b, point_id = backed_up(fleet, compute, clients)
    before = everything(compute)
    result = restore_group(policy, b, point_id, region=region, cleanup=True)
    assert result.errors == []
    assert result.verified is True
    zones = {c.split("/")[3] for m in result.machines for c in m.created}
    assert zones == {ZONE}
    assert everything(compute) == before
