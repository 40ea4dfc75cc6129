"""The port contracts (tests/contracts/) on GCP: persistent-disk snapshots and the Compute Engine
inventory through the real google-cloud-compute clients against the fake Compute API, and
Pub/Sub through the real client against the Pub/Sub emulator."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import compute_v1

from quiesce.events import CloudEvent
from quiesce.policy.model import MemberBase
from quiesce.ports import Machine, SnapshotCall
from quiesce.record import SnapshotRef, utcnow
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.events import PubSubPublisher, from_message
from quiesce_gcp.inventory import GceInventory
from quiesce_gcp.snapshots import GceSnapshotter
from tests.contracts.event_publisher import BusHarness, EventPublisherContract
from tests.contracts.inventory import InventoryContract, InventoryHarness, member
from tests.contracts.snapshotter import SnapshotHarness, SnapshotterContract

from .conftest import PROJECT, ZONE
from .fake_compute import FakeCompute

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
