"""Every GCP adapter operation declares the IAM permissions it uses."""

from __future__ import annotations

from quiesce_gcp.events import PubSubPublisher
from quiesce_gcp.hooks import AgentHookRunner
from quiesce_gcp.inventory import GceInventory
from quiesce_gcp.permissions import declared, role_permissions
from quiesce_gcp.snapshots import GceSnapshotter

ADAPTERS = (GceInventory, AgentHookRunner, GceSnapshotter, PubSubPublisher)


def test_every_port_operation_declares_its_permissions() -> None:
    ops = declared(*ADAPTERS)
    assert set(ops) == {
        "GceInventory.resolve",
        "AgentHookRunner.run",
        "AgentHookRunner.check",
        "GceSnapshotter.take",
        "GceSnapshotter.wait_durable",
        "GceSnapshotter.delete",
        "GceSnapshotter.find",
        "PubSubPublisher.publish",
    }
    assert all(ops.values())


def test_the_role_is_least_privilege() -> None:
    assert role_permissions(*ADAPTERS) == [
        "compute.disks.createSnapshot",
        "compute.instances.get",
        "compute.instances.getGuestAttributes",
        "compute.instances.list",
        "compute.instances.setMetadata",
        "compute.snapshots.create",
        "compute.snapshots.delete",
        "compute.snapshots.get",
        "compute.snapshots.list",
        "compute.snapshots.setLabels",
        "compute.zoneOperations.get",
        "pubsub.topics.publish",
    ]
