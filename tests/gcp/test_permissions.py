"""Every GCP adapter operation declares the IAM permissions it uses, and where they may apply."""

from __future__ import annotations

from quiesce_gcp.events import PubSubPublisher
from quiesce_gcp.hooks import AgentHookRunner
from quiesce_gcp.inventory import GceInventory
from quiesce_gcp.permissions import (
    AGENT_INSTANCES,
    PROJECT,
    QUIESCE_SNAPSHOTS,
    SCOPES,
    declared,
    role_permissions,
    scopes_of,
)
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


def test_each_permission_has_exactly_one_known_scope() -> None:
    scopes = scopes_of(*ADAPTERS)
    assert all(len(found) == 1 and found <= set(SCOPES) for found in scopes.values()), scopes


def test_the_roles_are_least_privilege_and_root_granting_rights_are_scoped() -> None:
    assert role_permissions(*ADAPTERS, scope=PROJECT) == [
        "compute.disks.createSnapshot",
        "compute.instances.get",
        "compute.instances.getGuestAttributes",
        "compute.instances.list",
        "compute.snapshots.create",
        "compute.snapshots.get",
        "compute.snapshots.list",
        "compute.zoneOperations.get",
        "pubsub.topics.publish",
    ]
    # setMetadata is root on the instance: never project-wide.
    assert role_permissions(*ADAPTERS, scope=AGENT_INSTANCES) == ["compute.instances.setMetadata"]
    assert role_permissions(*ADAPTERS, scope=QUIESCE_SNAPSHOTS) == [
        "compute.snapshots.delete",
        "compute.snapshots.setLabels",
    ]
    every = [p for s in SCOPES for p in role_permissions(*ADAPTERS, scope=s)]
    assert sorted(every) == role_permissions(*ADAPTERS)
