"""The port contracts (tests/contracts/) on the engine's fakes (tests/fakes.py) and the
in-memory bus, so what the engine's tests assume of a provider is what every provider does."""

from __future__ import annotations

import pytest

from quiesce.events import CloudEvent
from quiesce.policy.model import MemberBase
from quiesce.ports import Machine, SnapshotCall
from quiesce.providers.memory import MemoryEventBus
from quiesce.record import SnapshotRef
from tests.contracts.event_publisher import BusHarness, EventPublisherContract
from tests.contracts.inventory import InventoryContract, InventoryHarness, member
from tests.contracts.snapshotter import SnapshotHarness, SnapshotterContract
from tests.fakes import FakeInventory, FakeSnapshotter, Log

DB = member({"name": "db", "provider": "local", "volumes": ["/data"]})


class FakeSnapshots(SnapshotHarness):
    cannot = {
        "foreign": "the fake keeps only the snapshots it took: no other snapshot can be named",
    }

    def __init__(self) -> None:
        self.snapshotter = self.fake = FakeSnapshotter(Log())

    def machine(self, name: str) -> Machine:
        return Machine(provider="local", member="db", machine_id=name, volumes=("vol",))

    def call(self, machine: Machine, run_id: str) -> SnapshotCall:
        return SnapshotCall(
            run_id, "shop", "orders", "db", machine, f"rp-{run_id}", "crash", spec=DB
        )

    def exists(self, snapshot: SnapshotRef) -> bool:
        return snapshot.id in self.fake.store


class TestFakeSnapshotter(SnapshotterContract):
    @pytest.fixture
    def harness(self) -> FakeSnapshots:
        return FakeSnapshots()


class MemoryBus(BusHarness):
    cannot = {
        "refuse": "the in-memory bus takes every event; refusals are the cloud buses' cases",
    }

    def __init__(self) -> None:
        self.publisher = self.bus = MemoryEventBus()

    def received(self, count: int) -> list[CloudEvent]:
        return list(self.bus.events)


class TestMemoryEventBus(EventPublisherContract):
    @pytest.fixture
    def harness(self) -> MemoryBus:
        return MemoryBus()


class FakeMachines(InventoryHarness):
    cannot = {
        "tags": "the fake resolves a member by its name only",
        "volumes": "the fake's machines have no volumes (its snapshotter needs none)",
    }

    def __init__(self) -> None:
        self.inventory = self.fake = FakeInventory({"db": 2})

    def by_names(self) -> tuple[MemberBase, set[str]]:
        return DB, {"db-0", "db-1"}

    def unknown(self) -> tuple[MemberBase, str]:
        self.fake.unresolvable.add("ghost")
        return member({"name": "ghost", "provider": "local", "volumes": ["/data"]}), "ghost"


class TestFakeInventory(InventoryContract):
    @pytest.fixture
    def harness(self) -> FakeMachines:
        return FakeMachines()
