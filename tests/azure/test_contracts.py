"""The port contracts (tests/contracts/) on Azure, through the real SDK clients against the
wire-level fake ARM server: disk snapshots and restore points, Event Grid and the VM inventory."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential

from quiesce.events import CloudEvent
from quiesce.policy.model import MemberBase
from quiesce.ports import Machine, SnapshotCall
from quiesce.record import SnapshotRef, utcnow
from quiesce_azure.clients import CredentialClients
from quiesce_azure.events import EventGridPublisher
from quiesce_azure.inventory import AzureInventory
from quiesce_azure.snapshots import ALL_DISKS, AzureSnapshotter
from tests.contracts.event_publisher import BusHarness, EventPublisherContract
from tests.contracts.inventory import InventoryContract, InventoryHarness, member
from tests.contracts.snapshotter import SnapshotHarness, SnapshotterContract

from .fake_arm import RG, SUB, FakeArm, FakeCredential


def azure_member(select: dict[str, Any], **fields: Any) -> MemberBase:
    spec = {"name": "db", "provider": "azure", "subscription": SUB, "resource_group": RG}
    return member({**spec, "select": select, **fields})


# ------------------------------------------------------------------------------ Snapshotter


class AzureSnapshots(SnapshotHarness):
    def __init__(self, arm: FakeArm, clients: CredentialClients, mode: str) -> None:
        self.arm = arm
        self.mode = mode
        if mode == "restore_point":
            self.unkept_tags = {
                "quiesce:consistency": "a restore point carries no tags, and its collection's "
                "are the VM's: the level a run recorded is kept only in its record"
            }
        self.inventory = AzureInventory(clients)
        self.spec = azure_member({"vm_names": ["db-1"]}, snapshot=mode)
        self.snapshotter = AzureSnapshotter(
            clients, scopes={"orders": [(SUB, RG)]}, poll_interval=0
        )

    def machine(self, name: str) -> Machine:
        self.arm.add_vm(name, data_disks=1)
        (found,) = self.inventory.resolve(azure_member({"vm_names": [name]}, snapshot=self.mode))
        return found

    def call(self, machine: Machine, run_id: str) -> SnapshotCall:
        return SnapshotCall(
            run_id, "shop", "orders", "db", machine, f"rp-{run_id}", "crash", spec=self.spec
        )

    def volumes(self, machine: Machine) -> list[str]:
        if self.mode == "restore_point":
            return [ALL_DISKS]  # a restore point holds every disk of the VM
        return sorted(machine.volumes)

    def exists(self, snapshot: SnapshotRef) -> bool:
        held = [*self.arm.snapshots.values(), *self.arm.points.values()]
        return any(str(s["id"]).lower() == snapshot.id.lower() for s in held)

    def foreign(self, machine: Machine) -> SnapshotRef:
        """An operator's own snapshot of the VM's disk, made through ARM without tags."""
        disk = machine.volumes[0]
        token = FakeCredential().get_token("https://management.azure.com/.default").token
        url = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/snapshots"
        body = {
            "location": "westeurope",
            "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk}},
        }
        request = urllib.request.Request(
            f"{self.arm.base_url}{url}/by-hand?api-version=2024-03-02",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request) as answer:
            made = json.loads(answer.read())
        return SnapshotRef(
            id=made["id"],
            provider="azure",
            machine_id=machine.machine_id,
            volume=disk,
            method="azure-snapshot",
            started_at=utcnow(),
            fixed_at=utcnow(),
            location=made["id"],
        )


class TestAzureSnapshotter(SnapshotterContract):
    @pytest.fixture(params=["disk_snapshots", "restore_point"])
    def harness(
        self, request: pytest.FixtureRequest, arm: FakeArm, clients: CredentialClients
    ) -> AzureSnapshots:
        return AzureSnapshots(arm, clients, request.param)


# ------------------------------------------------------------------------------ EventPublisher


class EventGridTopic(BusHarness):
    def __init__(self, arm: FakeArm) -> None:
        self.arm = arm
        self.publisher = EventGridPublisher(arm.events_endpoint, AzureKeyCredential(arm.event_key))

    def received(self, count: int) -> list[CloudEvent]:
        return [CloudEvent.model_validate(e) for batch in self.arm.event_batches for e in batch]

    def refuse(self, refusing: bool) -> None:
        self.arm.fail_event_batches = 10**6 if refusing else 0


class TestEventGridPublisher(EventPublisherContract):
    @pytest.fixture
    def harness(self, arm: FakeArm) -> EventGridTopic:
        return EventGridTopic(arm)


# ------------------------------------------------------------------------------ Inventory


class AzureMachines(InventoryHarness):
    def __init__(self, arm: FakeArm, clients: CredentialClients) -> None:
        self.arm = arm
        self.inventory = AzureInventory(clients)

    def by_names(self) -> tuple[MemberBase, set[str]]:
        first, second, _ = (self.arm.add_vm(f"db-{n}") for n in range(3))
        return azure_member({"vm_names": ["db-1", "db-0"]}), {first["id"], second["id"]}

    def by_tags(self) -> tuple[MemberBase, set[str]]:
        wanted = [self.arm.add_vm(f"api-{n}", tags={"tier": "api"}) for n in range(2)]
        self.arm.add_vm("web-1", tags={"tier": "web"})
        return azure_member({"tags": {"tier": "api"}}), {vm["id"] for vm in wanted}

    def unknown(self) -> tuple[MemberBase, str]:
        self.arm.add_vm("db-1")
        return azure_member({"vm_names": ["db-9"]}), "db-9"


class TestAzureInventory(InventoryContract):
    @pytest.fixture
    def harness(self, arm: FakeArm, clients: CredentialClients) -> AzureMachines:
        return AzureMachines(arm, clients)
