"""The port contracts (tests/contracts/) on the local provider: folders on this host, its
snapshots in the state folder and its events file."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from quiesce.events import CloudEvent
from quiesce.policy.model import MemberBase
from quiesce.ports import Machine, SnapshotCall
from quiesce.providers.local.bus import SqliteEventBus
from quiesce.providers.local.inventory import LocalInventory
from quiesce.providers.local.snapshots import LocalSnapshotter
from quiesce.record import SnapshotRef, utcnow
from tests.contracts.event_publisher import BusHarness, EventPublisherContract
from tests.contracts.inventory import InventoryContract, InventoryHarness, member
from tests.contracts.snapshotter import SnapshotHarness, SnapshotterContract

from .support import fill_volume, snapshot_call

# ------------------------------------------------------------------------------ Snapshotter


class LocalSnapshots(SnapshotHarness):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.snapshotter = LocalSnapshotter(root / "state")

    def machine(self, name: str) -> Machine:
        volumes = (fill_volume(self.root / name / "db"), fill_volume(self.root / name / "logs"))
        return snapshot_call(*volumes).machine

    def call(self, machine: Machine, run_id: str) -> SnapshotCall:
        volumes = (Path(v) for v in machine.volumes)
        return snapshot_call(*volumes, run_id=run_id, recovery_point=f"rp-{run_id}")

    def exists(self, snapshot: SnapshotRef) -> bool:
        return Path(snapshot.location).exists()

    def foreign(self, machine: Machine) -> SnapshotRef:
        """A copy of a volume kept beside the snapshots, handed over as if it were one."""
        folder = fill_volume(self.root / "state" / "my-own-backup")
        return SnapshotRef(
            id="../my-own-backup",
            provider="local",
            machine_id=machine.machine_id,
            volume=machine.volumes[0],
            method="copy",
            started_at=utcnow(),
            fixed_at=utcnow(),
            location=str(folder),
        )


class TestLocalSnapshotter(SnapshotterContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> LocalSnapshots:
        return LocalSnapshots(tmp_path)


# ------------------------------------------------------------------------------ EventPublisher


class LocalBus(BusHarness):
    def __init__(self, state_dir: Path) -> None:
        self.publisher = self.bus = SqliteEventBus(state_dir)
        self.file = state_dir / "events.sqlite3"

    def received(self, count: int) -> list[CloudEvent]:
        return self.bus.read()

    def refuse(self, refusing: bool) -> None:
        """The events table moved away: every write fails, as on a damaged file."""
        names = ("events", "events_away") if refusing else ("events_away", "events")
        with sqlite3.connect(self.file) as conn:
            conn.execute(f"ALTER TABLE {names[0]} RENAME TO {names[1]}")


class TestSqliteEventBus(EventPublisherContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> LocalBus:
        return LocalBus(tmp_path / "state")


# ------------------------------------------------------------------------------ Inventory


class LocalMachines(InventoryHarness):
    cannot = {"tags": "a local member is this host, named by its folders: it has no tags"}

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inventory = LocalInventory()

    def by_names(self) -> tuple[MemberBase, set[str]]:
        volumes = [str(fill_volume(self.root / "db")), str(fill_volume(self.root / "logs"))]
        spec = {"name": "db", "provider": "local", "volumes": volumes}
        return member(spec), {socket.gethostname()}

    def unknown(self) -> tuple[MemberBase, str]:
        missing = str(self.root / "no-such-volume")
        return member({"name": "db", "provider": "local", "volumes": [missing]}), missing


class TestLocalInventory(InventoryContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> LocalMachines:
        return LocalMachines(tmp_path)
