"""The port contracts (tests/contracts/) on GCP: persistent-disk snapshots, their copies in
another region (images) and the Compute Engine inventory through the real google-cloud-compute
clients against the fake Compute API, Filestore snapshots through the real
google-cloud-filestore client against the fake Filestore API, and Pub/Sub through the real
client against the Pub/Sub emulator."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from quiesce.events import CloudEvent
from quiesce.policy.model import MemberBase
from quiesce.ports import Machine, SnapshotCall, Snapshotter
from quiesce.record import SnapshotRef, utcnow
from quiesce.tags import COPY_OF_TAG, REGION_TAG
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.copies import GceSnapshotterWithCopies, is_copy
from quiesce_gcp.events import PubSubPublisher, from_message
from quiesce_gcp.filestore import FilestoreClients, FilestoreInventory, FilestoreSnapshotter
from quiesce_gcp.inventory import GceInventory
from quiesce_gcp.managed_spec import FilestoreMember
from quiesce_gcp.snapshots import GceSnapshotter
from tests.contracts.event_publisher import BusHarness, EventPublisherContract
from tests.contracts.inventory import InventoryContract, InventoryHarness, member
from tests.contracts.snapshotter import SnapshotHarness, SnapshotterContract

from .conftest import PROJECT, ZONE
from .fake_compute import FakeCompute
from .fake_filestore import FakeFilestore

SELF_LINK = "https://compute.googleapis.com/compute/v1"


def gcp_member(**select: Any) -> MemberBase:
    spec = {"name": "db", "provider": "gcp", "project": PROJECT, "zone": ZONE}
    return member({**spec, "select": select})


# ------------------------------------------------------------------------------ Snapshotter


class GceSnapshots(SnapshotHarness):
    def __init__(self, compute: FakeCompute, clients: GcpClients) -> None:
        self.compute = compute
        self.clients = clients
        self.inventory = GceInventory(clients)
        self.snapshotter = GceSnapshotter(
            clients, projects={"orders": [PROJECT]}, poll_interval=0.0
        )
        self.specs: dict[str, MemberBase] = {}

    def machine(self, name: str) -> Machine:
        self.compute.add_instance(PROJECT, ZONE, name, data_disks=1)
        spec = gcp_member(instances=[name])
        (found,) = self.inventory.resolve(spec)
        self.specs[found.machine_id] = spec
        return found

    def call(self, machine: Machine, run_id: str) -> SnapshotCall:
        spec = self.specs[machine.machine_id]
        return SnapshotCall(
            run_id, "shop", "orders", "db", machine, f"rp-{run_id}", "crash", spec=spec
        )

    def exists(self, snapshot: SnapshotRef) -> bool:
        return (PROJECT, snapshot.id) in self.compute.snapshots

    def foreign(self, machine: Machine) -> SnapshotRef:
        """An operator's own snapshot of the machine's disk, without Quiesce's labels."""
        disk = machine.volumes[0].rsplit("/", 1)[1]
        self.clients.disks().create_snapshot_unary(
            project=PROJECT,
            zone=ZONE,
            disk=disk,
            snapshot_resource=compute_v1.Snapshot(name="by-hand"),
        )
        return SnapshotRef(
            id="by-hand",
            provider="gcp",
            machine_id=machine.machine_id,
            volume=machine.volumes[0],
            method="gce-snapshot",
            started_at=utcnow(),
            fixed_at=utcnow(),
            location=f"{SELF_LINK}/projects/{PROJECT}/global/snapshots/by-hand",
        )


class TestGceSnapshotter(SnapshotterContract):
    @pytest.fixture
    def harness(self, compute: FakeCompute, clients: GcpClients) -> GceSnapshots:
        return GceSnapshots(compute, clients)


COPY_REGION = "europe-west4"


class CopyingSnapshotter(Snapshotter):
    """The provider's snapshotter as a group with `copies:` uses it: `take` makes the disk
    snapshots (READY before it returns), then each one's copy in COPY_REGION (an image) with the
    tags the engine hands `copy_to_region` (quiesce.engine.copies), and returns both; the rest
    is the provider's snapshotter's own, which takes snapshots and images alike."""

    def __init__(self, inner: GceSnapshotterWithCopies) -> None:
        self.inner = inner

    def _with_copies(self, refs: list[SnapshotRef]) -> list[SnapshotRef]:
        copies = [
            self.inner.copy_to_region(
                ref, COPY_REGION, None, {**ref.tags, COPY_OF_TAG: ref.id, REGION_TAG: COPY_REGION}
            )
            for ref in refs
        ]
        return refs + copies

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        return self._with_copies(self.inner.take(call))

    def take_many(self, calls: Sequence[SnapshotCall]) -> list[list[SnapshotRef] | BaseException]:
        return [
            outcome if isinstance(outcome, BaseException) else self._with_copies(outcome)
            for outcome in self.inner.take_many(calls)
        ]

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        return self.inner.wait_durable(snapshots, timeout)

    def delete(self, snapshot: SnapshotRef) -> None:
        self.inner.delete(snapshot)

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        return self.inner.find(policy, group, run_id)


class GceCopyImages(GceSnapshots):
    """Disk snapshots and their copies in another region: every contract case holds for the
    images (found, recognised by their exact tags, followed until READY, deleted) as for the
    snapshots they copy."""

    def __init__(self, compute: FakeCompute, clients: GcpClients) -> None:
        super().__init__(compute, clients)
        self.snapshotter = CopyingSnapshotter(
            GceSnapshotterWithCopies(
                clients, projects={"orders": [PROJECT]}, poll_interval=0.0, fixed_when={"READY"}
            )
        )

    def volumes(self, machine: Machine) -> list[str]:
        return sorted([*machine.volumes, *machine.volumes])  # a snapshot and its copy each

    def exists(self, snapshot: SnapshotRef) -> bool:
        kept = self.compute.images if is_copy(snapshot) else self.compute.snapshots
        return (PROJECT, snapshot.id) in kept

    def foreign(self, machine: Machine) -> SnapshotRef:
        """An operator's own image of the machine's disk, without Quiesce's labels."""
        disk = machine.volumes[0].rsplit("/", 1)[1]
        self.clients.disks().create_snapshot_unary(
            project=PROJECT,
            zone=ZONE,
            disk=disk,
            snapshot_resource=compute_v1.Snapshot(name="by-hand"),
        )
        while self.clients.snapshots().get(project=PROJECT, snapshot="by-hand").status != "READY":
            pass  # each read moves the fake's snapshot on
        self.clients.images().insert_unary(
            project=PROJECT,
            image_resource=compute_v1.Image(
                name="by-hand-image",
                source_snapshot=f"projects/{PROJECT}/global/snapshots/by-hand",
                storage_locations=[COPY_REGION],
            ),
        )
        return SnapshotRef(
            id="by-hand-image",
            provider="gcp",
            machine_id=machine.machine_id,
            volume=machine.volumes[0],
            method="gce-image-copy",
            started_at=utcnow(),
            fixed_at=utcnow(),
            location=f"projects/{PROJECT}/global/images/by-hand-image",
        )


class TestGceCopyImages(SnapshotterContract):
    @pytest.fixture
    def harness(self, compute: FakeCompute, clients: GcpClients) -> GceCopyImages:
        return GceCopyImages(compute, clients)

    def test_take_snapshots_every_volume_and_marks_them_quiesce_s_own(
        self, harness: SnapshotHarness
    ) -> None:
        pytest.skip(
            "a copy starts after its point in time (it keeps its source's fixed_at, as on AWS "
            "and Azure): the case's started_at <= fixed_at holds for the snapshots "
            "(TestGceSnapshotter), not for their copies"
        )


class FilestoreSnapshots(SnapshotHarness):
    """Each machine is a Filestore instance of its own (member `db`), snapshotted as one."""

    def __init__(self, filestore: FakeFilestore) -> None:
        self.filestore = filestore
        clients = FilestoreClients(AnonymousCredentials(), endpoint=filestore.url)  # type: ignore[no-untyped-call]
        self.inventory = FilestoreInventory(clients)
        self.snapshotter = FilestoreSnapshotter(clients, poll_interval=0.0)
        self.specs: dict[str, MemberBase] = {}

    def machine(self, name: str) -> Machine:
        self.filestore.add_instance(PROJECT, ZONE, name)
        spec = FilestoreMember.model_validate(
            {
                "name": "db",
                "provider": "gcp-filestore",
                "project": PROJECT,
                "location": ZONE,
                "instance": name,
            }
        )
        (found,) = self.inventory.resolve(spec)
        self.specs[found.machine_id] = spec
        self.snapshotter.instances["orders"] = sorted(self.specs)  # where `find` looks
        return found

    def call(self, machine: Machine, run_id: str) -> SnapshotCall:
        spec = self.specs[machine.machine_id]
        return SnapshotCall(
            run_id, "shop", "orders", "db", machine, f"rp-{run_id}", "crash", spec=spec
        )

    def exists(self, snapshot: SnapshotRef) -> bool:
        return snapshot.location in self.filestore.snapshots

    def foreign(self, machine: Machine) -> SnapshotRef:
        """An operator's own snapshot of the instance, without Quiesce's labels."""
        name = self.filestore.add_snapshot(machine.machine_id, "by-hand")
        return SnapshotRef(
            id="by-hand",
            provider="gcp-filestore",
            machine_id=machine.machine_id,
            volume=machine.volumes[0],
            method="filestore-snapshot",
            started_at=utcnow(),
            fixed_at=utcnow(),
            location=name,
        )


class TestFilestoreSnapshotter(SnapshotterContract):
    @pytest.fixture
    def harness(self, filestore: FakeFilestore) -> FilestoreSnapshots:
        return FilestoreSnapshots(filestore)


# ------------------------------------------------------------------------------ EventPublisher

_topics = itertools.count()


class PubSubTopic(BusHarness):
    cannot = {
        "order": "Pub/Sub keeps the order of messages only per ordering key, and the publisher "
        "sets none: a subscriber must order a run's events by their time",
    }

    def __init__(self) -> None:
        """Needs PUBSUB_EMULATOR_HOST set (the fixture sets it)."""
        from google.cloud import pubsub_v1

        self.admin = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        name = f"contract-{os.getpid()}-{next(_topics)}"
        self.topic = self.admin.topic_path(PROJECT, name)
        self.subscription = self.subscriber.subscription_path(PROJECT, name)
        self.admin.create_topic(name=self.topic)
        self.subscriber.create_subscription(name=self.subscription, topic=self.topic)
        self.publisher = self.bus = PubSubPublisher(self.topic, timeout=20)
        self.seen: dict[str, CloudEvent] = {}

    def received(self, count: int) -> list[CloudEvent]:
        for _ in range(20):
            answer = self.subscriber.pull(
                subscription=self.subscription, max_messages=50, timeout=5
            )
            for got in answer.received_messages:
                event = from_message(got.message.data, dict(got.message.attributes))
                assert event.id not in self.seen, f"{event.id} arrived twice"
                self.seen[event.id] = event
            if answer.received_messages:
                self.subscriber.acknowledge(
                    subscription=self.subscription,
                    ack_ids=[m.ack_id for m in answer.received_messages],
                )
            if len(self.seen) >= count:
                break
        return list(self.seen.values())

    def refuse(self, refusing: bool) -> None:
        """Publishing to a topic that does not exist: every message is refused."""
        self.bus.topic = f"{self.topic}-missing" if refusing else self.topic

    def close(self) -> None:
        self.subscriber.delete_subscription(subscription=self.subscription)
        self.admin.delete_topic(topic=self.topic)
        self.subscriber.close()


class TestPubSubPublisher(EventPublisherContract):
    @pytest.fixture
    def harness(
        self, pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[PubSubTopic]:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
        topic = PubSubTopic()
        yield topic
        topic.close()


# ------------------------------------------------------------------------------ Inventory


class GceMachines(InventoryHarness):
    def __init__(self, compute: FakeCompute, clients: GcpClients) -> None:
        self.compute = compute
        self.inventory = GceInventory(clients)

    def by_names(self) -> tuple[MemberBase, set[str]]:
        for name in ("db-1", "db-2", "db-3"):
            self.compute.add_instance(PROJECT, ZONE, name)
        return gcp_member(instances=["db-2", "db-1"]), {"db-1", "db-2"}

    def by_tags(self) -> tuple[MemberBase, set[str]]:
        self.compute.add_instance(PROJECT, ZONE, "a", labels={"tier": "db"})
        self.compute.add_instance(PROJECT, ZONE, "b", labels={"tier": "web"})
        self.compute.add_instance(PROJECT, ZONE, "c", labels={"tier": "db"})
        return gcp_member(labels={"tier": "db"}), {"a", "c"}

    def unknown(self) -> tuple[MemberBase, str]:
        self.compute.add_instance(PROJECT, ZONE, "db-1")
        return gcp_member(instances=["db-9"]), "db-9"


class TestGceInventory(InventoryContract):
    @pytest.fixture
    def harness(self, compute: FakeCompute, clients: GcpClients) -> GceMachines:
        return GceMachines(compute, clients)
