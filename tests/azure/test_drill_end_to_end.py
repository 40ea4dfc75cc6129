"""A two-VM group on Azure backed up, copied to a second region, drilled there (launched as new
VMs in an isolated subnet, verified through Run Command, measured) and cleaned up with nothing
left behind: through `run_group`, `run_drill`, `restore_group` and `cleanup_restore` with the
provider from `azure_provider` (real Compute clients against the fake ARM server)."""

from __future__ import annotations

import pytest

from quiesce.drill import run_drill
from quiesce.engine import run_group
from quiesce.errors import NotFoundError, QuiesceError
from quiesce.group_restore import cleanup_restore, restore_group
from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from quiesce.record import RecoveryPoint, RunStatus, SnapshotState
from quiesce_azure.provider import azure_provider
from quiesce_azure.restorer import RESTORE_TAG

from .fake_arm import RG, SUB, FakeArm, FakeCredential, default_guest
from .policies import shop, vm_member

DR = "northeurope"
NET = f"/subscriptions/{SUB}/resourceGroups/rg-dr/providers/Microsoft.Network"
SITE = {
    "network": f"{NET}/virtualNetworks/vnet-dr/subnets/isolated",
    "security_groups": [f"{NET}/networkSecurityGroups/nsg-isolated"],
}


def policy() -> Policy:
    return Policy.model_validate(
        shop(
            [vm_member("db", verify=True), vm_member("app", verify=True)],
            copies=[{"region": DR, "keep_last": 3, "restore": SITE}],
            triggers=[
                {
                    "name": "monthly-drill",
                    "group": "orders",
                    "schedule": "0 3 1 * *",
                    "action": "drill",
                    "region": DR,
                },
            ],
        )
    )


def backends(arm: FakeArm, pol: Policy) -> Backends:
    provider = azure_provider(pol, FakeCredential(), base_url=arm.base_url, polling_interval=0)
    assert provider.restorer is not None
    provider.restorer.poll_interval = 0  # type: ignore[attr-defined]
    return Backends(providers={"azure": provider}, state=MemoryStateStore(), bus=MemoryEventBus())


@pytest.fixture
def group(arm: FakeArm) -> tuple[Policy, Backends]:
    arm.add_vm("db-1", data_disks=1, vm_size="Standard_E4s_v5")
    arm.add_vm("app-1", data_disks=2)
    arm.agent_polls = 2
    pol = policy()
    return pol, backends(arm, pol)


def backed_up(arm: FakeArm, pol: Policy, be: Backends) -> RecoveryPoint:
    arm.region_copy_polls = 1000  # the copies stay pending until the test lets them finish
    record = run_group(pol, "orders", be)
    assert record.status is RunStatus.SUCCEEDED, record.errors
    (point,) = be.state.list_points("shop", "orders")
    (copy,) = point.copies
    assert copy.region == DR
    assert copy.state is SnapshotState.PENDING
    return point


def copies_finish(arm: FakeArm) -> None:
    for point in arm.points.values():
        point["_replication_polls"] = 0


def original_vms(arm: FakeArm) -> set[str]:
    return {v["name"] for v in arm.vms.values() if RESTORE_TAG not in (v.get("tags") or {})}


def test_a_group_copied_to_another_region_is_drilled_there_and_nothing_is_left(
    arm: FakeArm, group: tuple[Policy, Backends]
) -> None:
    pol, be = group
    point = backed_up(arm, pol, be)
    copies_finish(arm)
    before = arm.resources()

    drill = run_drill(pol, "orders", be, region=DR)

    assert drill.verdict == "passed", drill.errors
    assert drill.region == DR
    assert drill.rto_seconds is not None
    assert drill.rto_seconds >= 0
    assert set(drill.phases) == {"restore", "ready", "verify", "cleanup"}
    assert drill.left == []
    # two VMs, two NICs and five disks (db: os + 1, app: os + 2) were made in the copy region
    made = [c for c in drill.created if "/virtualMachines/" in c]
    assert len(made) == 2
    assert len([c for c in drill.created if "/networkInterfaces/" in c]) == 2
    assert len([c for c in drill.created if "/disks/" in c]) == 5
    launched = {c.rsplit("/", 1)[-1] for c in made}
    assert not launched & {"db-1", "app-1"}
    # the verify hooks ran on the launched copies, through Run Command
    verified = {c.vm for c in arm.hook_calls_of("verify")}
    assert verified == launched
    # nothing the drill made is left; everything else is as it was
    assert arm.resources(RESTORE_TAG) == []
    assert arm.resources() == before
    assert original_vms(arm) == {"db-1", "app-1"}
    # the point records the drill, and the bus carries quiesce.drill.completed
    (saved,) = be.state.list_points("shop", "orders")
    assert saved.id == point.id
    assert [d.drill_id for d in saved.drills] == [drill.drill_id]
    types = [e.type for e in be.bus.events]  # type: ignore[attr-defined]
    assert "quiesce.drill.completed" in types


def test_a_copy_still_pending_is_not_restored_or_drilled_in_its_region(
    arm: FakeArm, group: tuple[Policy, Backends]
) -> None:
    pol, be = group
    point = backed_up(arm, pol, be)
    before = arm.resources()

    with pytest.raises(
        QuiesceError, match=f"the copy of recovery point {point.id} in {DR} is pending"
    ):
        restore_group(pol, be, point.id, region=DR, cleanup=True)
    with pytest.raises(NotFoundError, match=f"completed copy in {DR}"):
        run_drill(pol, "orders", be, region=DR)

    assert arm.resources() == before  # nothing was launched
    assert arm.vms.keys() == {(SUB.lower(), RG.lower(), n) for n in ("db-1", "app-1")}


def test_a_failed_verify_fails_the_drill_and_still_removes_everything(
    arm: FakeArm, group: tuple[Policy, Backends]
) -> None:
    pol, be = group
    backed_up(arm, pol, be)
    copies_finish(arm)
    before = arm.resources()

    def guest(vm: str, params: dict[str, str]) -> tuple[str, int, str, str]:
        if params.get("QUIESCE_PHASE") == "verify" and vm.startswith("app-1-"):
            return "Failed", 3, "", "orders table is empty"
        return default_guest(vm, params)

    arm.guest = guest

    drill = run_drill(pol, "orders", be, region=DR)

    assert drill.verdict == "failed"
    assert drill.rto_seconds is None
    assert any("verify hook of app" in e for e in drill.errors), drill.errors
    assert arm.resources(RESTORE_TAG) == []
    assert arm.resources() == before
    types = [e.type for e in be.bus.events]  # type: ignore[attr-defined]
    assert "quiesce.drill.failed" in types


def test_a_restore_interrupted_halfway_is_cleaned_up_by_its_label(
    arm: FakeArm, group: tuple[Policy, Backends]
) -> None:
    pol, be = group
    point = backed_up(arm, pol, be)
    copies_finish(arm)
    before = arm.resources()
    # the first VM is launched, the second one's VM is never accepted
    arm.throttle("PUT", r"/virtualMachines/app-1-", count=1000, retry_after="0")

    result = restore_group(pol, be, point.id, region=DR, label="restore-cut")

    assert result.errors
    left = arm.resources(RESTORE_TAG, "restore-cut")
    assert any("/virtualMachines/db-1-" in r for r in left)  # the first machine was launched
    assert any("/disks/app-1-" in r for r in left)  # the second machine's disks were made
    arm.throttles.clear()

    deleted, still = cleanup_restore(be, "restore-cut", [DR])

    assert still == []
    assert sorted(deleted) == left
    assert arm.resources() == before
