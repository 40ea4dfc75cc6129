"""Every GCP adapter operation declares the IAM permissions it uses, and where they may apply."""

from __future__ import annotations

from quiesce_gcp.cloudsql import CloudSqlInventory, CloudSqlSnapshotter
from quiesce_gcp.disk_restore import GceDiskRestore
from quiesce_gcp.events import PubSubPublisher
from quiesce_gcp.filestore import FilestoreInventory, FilestoreSnapshotter
from quiesce_gcp.hooks import AgentHookRunner
from quiesce_gcp.inventory import GceInventory
from quiesce_gcp.permissions import (
    AGENT_INSTANCES,
    PROJECT,
    QUIESCE_SNAPSHOTS,
    RESTORE,
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


MANAGED = (
    CloudSqlInventory,
    CloudSqlSnapshotter,
    FilestoreInventory,
    FilestoreSnapshotter,
    GceDiskRestore,
)


def test_the_managed_services_declare_their_operations_and_one_scope_each() -> None:
    ops = declared(*MANAGED)
    assert set(ops) == {
        "CloudSqlInventory.resolve",
        "CloudSqlSnapshotter.take",
        "CloudSqlSnapshotter.wait_durable",
        "CloudSqlSnapshotter.check",
        "CloudSqlSnapshotter.cloud_restore",
        "FilestoreInventory.resolve",
        "FilestoreSnapshotter.take",
        "FilestoreSnapshotter.wait_durable",
        "FilestoreSnapshotter.delete",
        "FilestoreSnapshotter.find",
        "FilestoreSnapshotter.check",
        "FilestoreSnapshotter.cloud_restore",
        "GceDiskRestore.check",
        "GceDiskRestore.cloud_restore",
    }
    scopes = scopes_of(*MANAGED, *ADAPTERS)
    # One scope each, but for the reads a restore makes first (the functions read them too).
    reads = {p for p in scopes if p.endswith((".get", ".list"))}
    assert all(found <= set(SCOPES) for found in scopes.values()), scopes
    assert all(len(found) == 1 for p, found in scopes.items() if p not in reads), scopes
    assert all(found <= {PROJECT, RESTORE} for p, found in scopes.items() if len(found) > 1)
    # Restoring (clone, revert, a disk from a snapshot) is never a backup's permission.
    assert role_permissions(*MANAGED, scope=RESTORE) == [
        "cloudsql.instances.clone",
        "cloudsql.instances.get",
        "compute.disks.create",
        "compute.snapshots.get",
        "compute.snapshots.useReadOnly",
        "file.instances.revert",
        "file.snapshots.get",
    ]
