"""infra/gcp grants exactly what the GCP adapters declare, each permission only where its scope
allows: project-wide reads, setMetadata on the agent member instances only, snapshot deletion
and labelling on Quiesce's snapshots only; the functions read the agent master key and nothing
else from Secret Manager."""

from __future__ import annotations

import re

from quiesce_gcp.cloudsql import CloudSqlInventory, CloudSqlSnapshotter
from quiesce_gcp.copies import GceCopies
from quiesce_gcp.disk_restore import GceDiskRestore
from quiesce_gcp.events import PubSubPublisher
from quiesce_gcp.filestore import FilestoreInventory, FilestoreSnapshotter
from quiesce_gcp.hooks import AgentHookRunner
from quiesce_gcp.inventory import GceInventory
from quiesce_gcp.permissions import (
    AGENT_INSTANCES,
    PROJECT,
    QUIESCE_IMAGES,
    QUIESCE_SNAPSHOTS,
    RESTORE,
    role_permissions,
)
from quiesce_gcp.snapshots import SNAPSHOT_PREFIX, GceSnapshotter
from tests.gcp.test_terraform import load_configuration, resources
from tests.terraform import only

ADAPTERS = (GceInventory, AgentHookRunner, GceSnapshotter, GceCopies, PubSubPublisher)
RESTORERS = (GceDiskRestore, CloudSqlSnapshotter, FilestoreSnapshotter)
MEMBER = "${google_service_account.functions.member}"


def test_each_custom_role_has_exactly_the_declared_permissions_of_its_scope() -> None:
    roles = resources("google_project_iam_custom_role")
    local = load_configuration()["locals"]
    for role, variable, scope in (
        ("adapters", "adapter_permissions", PROJECT),
        ("agent_instances", "agent_instance_permissions", AGENT_INSTANCES),
        ("snapshots", "snapshot_permissions", QUIESCE_SNAPSHOTS),
        ("images", "image_permissions", QUIESCE_IMAGES),
    ):
        assert roles[role]["permissions"] == "${local." + variable + "}"
        assert local[variable] == role_permissions(*ADAPTERS, scope=scope), role
    assert set(roles) == {
        "adapters", "agent_instances", "snapshots", "images", "cloudsql", "filestore",
        "restore", "drill", "restored", "inspection",
    }  # fmt: skip


def test_the_managed_services_roles_have_exactly_their_adapters_permissions() -> None:
    roles = resources("google_project_iam_custom_role")
    local = load_configuration()["locals"]
    for role, variable, adapters in (
        ("cloudsql", "sql_permissions", (CloudSqlInventory, CloudSqlSnapshotter)),
        ("filestore", "filestore_permissions", (FilestoreInventory, FilestoreSnapshotter)),
    ):
        assert roles[role]["permissions"] == "${local." + variable + "}"
        assert local[variable] == role_permissions(*adapters, scope=PROJECT), role
    assert roles["cloudsql"]["for_each"] == "${local.sql_projects}"
    assert roles["filestore"]["for_each"] == "${local.filestore_projects}"
    assert 'm.provider == "gcp-sql"' in local["sql_members"]
    assert 'm.provider == "gcp-filestore"' in local["filestore_members"]


def test_the_restore_role_has_the_restore_scope_and_is_granted_to_nobody() -> None:
    roles = resources("google_project_iam_custom_role")
    local = load_configuration()["locals"]
    assert roles["restore"]["permissions"] == "${local.restore_permissions}"
    assert local["restore_permissions"] == role_permissions(*RESTORERS, scope=RESTORE)
    assert local["restore_permissions"] == [
        "cloudsql.instances.clone",
        "cloudsql.instances.get",
        "compute.disks.create",
        "compute.snapshots.get",
        "compute.snapshots.useReadOnly",
        "file.instances.revert",
        "file.snapshots.get",
    ]
    granted = [b["role"] for b in resources("google_project_iam_member").values()]
    assert not [r for r in granted if "custom_role.restore[" in r]
    # ...and no restore permission is in a role the functions get, but for the reads a restore
    # makes first (the functions read their members too).
    writes = {p for p in local["restore_permissions"] if not p.endswith((".get", ".list"))}
    assert "cloudsql.instances.clone" in writes
    for variable in ("adapter_permissions", "sql_permissions", "filestore_permissions"):
        assert not set(local[variable]) & writes, variable


def test_only_the_project_scope_is_granted_without_a_condition() -> None:
    bindings = resources("google_project_iam_member")
    assert "condition" not in bindings["adapters"]
    assert "condition" not in bindings["catalog"]
    for name in ("agent_instances", "snapshots", "images"):
        assert bindings[name]["role"] == (
            "${google_project_iam_custom_role." + name + "[each.key].name}"
        )
        assert only(bindings[name]["condition"])["expression"]


def test_set_metadata_is_bound_to_the_agent_member_instances_by_name() -> None:
    binding = resources("google_project_iam_member")["agent_instances"]
    assert binding["for_each"] == "${local.agent_instance_names}"
    expression = only(binding["condition"])["expression"]
    assert "resource.name ==" in expression
    assert "each.value" in expression
    names = load_configuration()["locals"]["agent_instance_names"]
    # The names come from the policy's agent members: by name, or listed in var.agent_instances.
    assert "local.agent_members" in names
    assert "m.select.instances" in names
    assert "var.agent_instances" in names
    assert "/zones/${m.zone}/instances/${i}" in names
    members = load_configuration()["locals"]["agent_members"]
    assert 'try(m.hook_channel, "agent") == "agent"' in members
    precondition = only(only(binding["lifecycle"])["precondition"])
    assert "agent_members_unnamed" in precondition["condition"]


def test_copies_are_bound_to_quiesces_image_names() -> None:
    from quiesce_gcp.copies import COPY_PREFIX

    binding = resources("google_project_iam_member")["images"]
    expression = only(binding["condition"])["expression"]
    assert 'resource.type == \\"compute.googleapis.com/Image\\"' in expression
    assert "/global/images/${local.snapshot_name_prefix}" in expression
    assert COPY_PREFIX.startswith(SNAPSHOT_PREFIX)


def test_snapshot_deletion_and_labels_are_bound_to_quiesces_snapshot_names() -> None:
    binding = resources("google_project_iam_member")["snapshots"]
    expression = only(binding["condition"])["expression"]
    assert 'resource.type == \\"compute.googleapis.com/Snapshot\\"' in expression
    assert re.search(
        r"resource\.name\.startsWith\(\\\"projects/\$\{each\.key\}/global/snapshots/"
        r"\$\{local\.snapshot_name_prefix\}\\\"\)",
        expression,
    ), expression
    assert load_configuration()["locals"]["snapshot_name_prefix"] == SNAPSHOT_PREFIX


def test_the_functions_account_gets_the_roles_the_catalog_the_topic_and_its_secret_only() -> None:
    projects = resources("google_project_iam_member")
    assert projects["adapters"]["role"] == (
        "${google_project_iam_custom_role.adapters[each.key].name}"
    )
    assert projects["catalog"]["role"] == "roles/datastore.user"
    # The drill account's bindings are its own (tests/gcp/test_drill_infra.py).
    drill = "${google_service_account.drill.member}"
    assert {b["member"] for b in projects.values()} == {MEMBER, drill}
    assert {n for n, b in projects.items() if b["member"] == drill} == {
        "drill", "restored", "inspection", "drill_catalog"
    }  # fmt: skip
    topic = resources("google_pubsub_topic_iam_member")["events_publisher"]
    assert resources("google_pubsub_topic_iam_member")["drill_events_publisher"]["member"] == (
        drill
    )
    assert (topic["topic"], topic["role"], topic["member"]) == (
        "${google_pubsub_topic.events.id}",
        "roles/pubsub.publisher",
        MEMBER,
    )
    secrets = resources("google_secret_manager_secret_iam_member")
    secrets.pop("drill_read_master_key")
    assert {(s["secret_id"], s["role"], s["member"]) for s in secrets.values()} == {
        (
            "${google_secret_manager_secret.agent_master_key.id}",
            "roles/secretmanager.secretAccessor",
            MEMBER,
        ),
        (  # only with create_monitoring_webhook
            "${google_secret_manager_secret.webhook_token[each.key].id}",
            "roles/secretmanager.secretAccessor",
            MEMBER,
        ),
    }
