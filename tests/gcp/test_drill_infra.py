"""Drills on GCP are deployed apart from backups: their own account with exactly what the
restorer declares (creating, commanding and deleting only `qr-` resources), an HTTP function
with a timeout a drill fits in, called by Cloud Scheduler for drill triggers only; the backup
functions never get the rights to launch or delete machines."""

from __future__ import annotations

import base64
import json

import pytest

from quiesce.policy.model import Policy
from quiesce.triggers.convert import UnsupportedEvent
from quiesce.triggers.front_door import DRILL_SECONDS
from quiesce_gcp.copies import GceCopies
from quiesce_gcp.drill_http import JOB_HEADER, TIME_HEADER, drill_converter
from quiesce_gcp.hooks import AgentHookRunner
from quiesce_gcp.permissions import (
    INSPECTION,
    QUIESCE_IMAGES,
    RESTORE_DRILL,
    RESTORED,
    role_permissions,
    scopes_of,
)
from quiesce_gcp.restorer import RESTORED_PREFIX, GceRestorer
from quiesce_gcp.snapshots import GceSnapshotter
from tests.gcp.test_terraform import load_configuration, resources
from tests.terraform import only

LAUNCH_OR_DELETE = {
    "compute.instances.create",
    "compute.instances.delete",
    "compute.disks.create",
    "compute.disks.delete",
    "compute.instances.attachDisk",
}


def test_the_drill_roles_have_exactly_the_restorers_permissions_of_their_scope() -> None:
    local = load_configuration()["locals"]
    roles = resources("google_project_iam_custom_role")
    for role, variable, scope in (
        ("drill", "drill_permissions", RESTORE_DRILL),
        ("restored", "restored_permissions", RESTORED),
        ("inspection", "inspection_permissions", INSPECTION),
    ):
        assert roles[role]["permissions"] == "${local." + variable + "}"
        assert local[variable] == role_permissions(GceRestorer, scope=scope), role
    every = {p for s in (RESTORE_DRILL, RESTORED, INSPECTION) for p in local[f"{s}_permissions"]}
    assert every == set(role_permissions(GceRestorer))


def test_creating_commanding_and_deleting_are_never_project_wide_for_the_drill() -> None:
    scopes = scopes_of(GceRestorer)
    for permission in (*LAUNCH_OR_DELETE, "compute.instances.setMetadata"):
        assert RESTORE_DRILL not in scopes[permission], permission
    binding = resources("google_project_iam_member")["restored"]
    assert binding["member"] == "${google_service_account.drill.member}"
    expression = only(binding["condition"])["expression"]
    assert 'resource.name.extract(\\"/instances/{name}\\")' in expression
    assert 'resource.name.extract(\\"/disks/{name}\\")' in expression
    assert expression.count('.startsWith(\\"${local.restored_name_prefix}\\")') == 2
    assert load_configuration()["locals"]["restored_name_prefix"] == RESTORED_PREFIX
    inspection = resources("google_project_iam_member")["inspection"]
    assert "var.inspection_instances" in only(inspection["condition"])["expression"]


def test_the_backup_functions_cannot_launch_or_delete_machines() -> None:
    local = load_configuration()["locals"]
    functions = {
        p
        for variable in (
            "adapter_permissions",
            "agent_instance_permissions",
            "snapshot_permissions",
            "image_permissions",
        )
        for p in local[variable]
    }
    assert not functions & LAUNCH_OR_DELETE
    backup = role_permissions(AgentHookRunner, GceSnapshotter, GceCopies)
    assert not set(backup) & LAUNCH_OR_DELETE
    assert local["image_permissions"] == role_permissions(GceCopies, scope=QUIESCE_IMAGES)
    member = "${google_service_account.functions.member}"
    granted = {
        name for name, b in resources("google_project_iam_member").items() if b["member"] == member
    }
    assert not granted & {"drill", "restored", "inspection"}


def test_the_drill_function_is_http_with_a_timeout_a_drill_fits_in() -> None:
    function = resources("google_cloudfunctions2_function")["drill"]
    assert only(function["build_config"])["entry_point"] == "on_drill"
    assert "event_trigger" not in function
    config = only(function["service_config"])
    assert config["service_account_email"] == "${google_service_account.drill.email}"
    assert config["timeout_seconds"] == "${var.drill_timeout_seconds}"
    assert config["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert (
        "QUIESCE_FUNCTION_TIMEOUT_SECONDS = var.drill_timeout_seconds"
        in (config["environment_variables"])
    )
    variable = load_configuration()["variable"]["drill_timeout_seconds"]
    assert DRILL_SECONDS <= variable["default"] <= 3600
    condition = only(variable["validation"])["condition"]
    assert f">= {DRILL_SECONDS}" in condition
    assert "<= 3600" in condition


def test_drill_schedules_call_the_drill_function_and_backups_keep_their_topic() -> None:
    local = load_configuration()["locals"]
    assert 'try(t.action, "backup") == "drill"' in local["drill_triggers"]
    assert 'try(t.action, "backup") == "backup"' in local["schedule_triggers"]
    job = resources("google_cloud_scheduler_job")["drill"]
    assert job["for_each"] == "${local.drill_triggers}"
    target = only(job["http_target"])
    assert target["uri"] == '${google_cloudfunctions2_function.drill["drill"].url}'
    assert target["body"].replace(" ", "") == "${base64encode(jsonencode({trigger=each.key}))}"
    oidc = only(target["oidc_token"])
    assert oidc["service_account_email"] == "${google_service_account.invoker.email}"
    assert only(job["retry_config"])["retry_count"] == 0
    invoker = resources("google_cloud_run_service_iam_member")["drill_invoker"]
    assert invoker["member"] == "${google_service_account.invoker.member}"


POLICY = Policy.model_validate(
    {
        "version": 1,
        "name": "shop",
        "groups": {
            "orders": {
                "consistency": "crash",
                "restore": {"network": "isolated"},
                "members": [
                    {"name": "db", "provider": "gcp", "project": "quiesce-test",
                     "zone": "europe-west1-b", "select": {"instances": ["db-vm"]}}
                ],
            }
        },
        "triggers": [
            {"name": "nightly", "group": "orders", "schedule": "0 2 * * *"},
            {"name": "monthly-drill", "group": "orders", "schedule": "0 4 1 * *",
             "action": "drill"},
        ],
    }
)  # fmt: skip


def test_the_drill_request_names_a_drill_trigger_once_per_scheduled_time() -> None:
    headers = {JOB_HEADER: "quiesce-monthly-drill", TIME_HEADER: "2026-12-01T04:00:00Z"}
    body = json.dumps({"trigger": "monthly-drill"}).encode()
    (event,) = drill_converter(POLICY, headers)(body)
    assert (event.kind, event.trigger) == ("schedule", "monthly-drill")
    assert event.time.isoformat() == "2026-12-01T04:00:00+00:00"
    (again,) = drill_converter(POLICY, headers)(body)
    assert again.id == event.id
    later = {**headers, TIME_HEADER: "2027-01-01T04:00:00Z"}
    assert drill_converter(POLICY, later)(body)[0].id != event.id


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (json.dumps({"trigger": "nightly"}), "not a drill trigger"),
        (json.dumps({"trigger": "nope"}), "not a drill trigger"),
        ("{", "not JSON"),
        (json.dumps({"name": "monthly-drill"}), "expected"),
        (base64.b64encode(b"x").decode(), "not JSON"),
    ],
)
def test_the_drill_function_refuses_anything_but_a_drill(body: str, message: str) -> None:
    with pytest.raises(UnsupportedEvent, match=message):
        drill_converter(POLICY, {})(body)
