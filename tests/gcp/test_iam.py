"""infra/gcp's custom role grants exactly what the GCP adapters declare."""

from __future__ import annotations

from tests.gcp.test_terraform import load_configuration, resources


def test_the_custom_role_has_exactly_the_declared_permissions() -> None:
    from quiesce_gcp.events import PubSubPublisher
    from quiesce_gcp.hooks import AgentHookRunner
    from quiesce_gcp.inventory import GceInventory
    from quiesce_gcp.permissions import role_permissions
    from quiesce_gcp.snapshots import GceSnapshotter

    role = resources("google_project_iam_custom_role")["adapters"]
    assert role["permissions"] == "${local.adapter_permissions}"
    granted = load_configuration()["locals"]["adapter_permissions"]
    assert granted == role_permissions(
        GceInventory, AgentHookRunner, GceSnapshotter, PubSubPublisher
    )


def test_the_functions_account_gets_the_role_the_catalog_and_the_events_topic_only() -> None:
    member = "${google_service_account.functions.member}"
    projects = resources("google_project_iam_member")
    assert projects["adapters"]["role"] == (
        "${google_project_iam_custom_role.adapters[each.key].name}"
    )
    assert projects["catalog"]["role"] == "roles/datastore.user"
    assert {b["member"] for b in projects.values()} == {member}
    topic = resources("google_pubsub_topic_iam_member")["events_publisher"]
    assert (topic["topic"], topic["role"], topic["member"]) == (
        "${google_pubsub_topic.events.id}",
        "roles/pubsub.publisher",
        member,
    )
