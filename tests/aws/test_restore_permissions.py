"""The operators' restore policy (infra/aws output `restore_policy_json`) grants exactly what the
snapshotters declare a restore in the cloud needs (their RESTORE_PERMISSIONS), within the
declared resources and with the declared conditions; the functions' role never gets it."""

from __future__ import annotations

from quiesce_aws.efs import EfsBackupSnapshotter
from quiesce_aws.permissions import Permission
from quiesce_aws.rds import RdsSnapshotter
from quiesce_aws.snapshots import EbsSnapshotter
from tests.aws.test_permissions import covers, has_conditions, load_configuration, policy

SNAPSHOTTERS = (EbsSnapshotter, RdsSnapshotter, EfsBackupSnapshotter)


def declared_restore() -> list[Permission]:
    return [p for cls in SNAPSHOTTERS for ps in cls.RESTORE_PERMISSIONS.values() for p in ps]


def test_the_restore_policy_grants_exactly_the_declared_actions() -> None:
    granted = {a for s in policy("restore") for a in s.actions}
    wanted = {p.action for p in declared_restore()}
    assert granted == wanted


def test_every_restore_grant_is_within_its_declaration_and_carries_its_conditions() -> None:
    permissions = declared_restore()
    statements = policy("restore")
    for statement in statements:
        for action in statement.actions:
            for resource in statement.resources:
                allowed = [p for p in permissions if p.action == action]
                assert any(covers(p.resource, resource) for p in allowed), statement.sid
                applicable = [p for p in allowed if covers(p.resource, resource)]
                if all(p.conditions for p in applicable):
                    assert any(has_conditions(statement, p.conditions) for p in applicable), (
                        f"{statement.sid}: {action} on {resource} lacks its conditions"
                    )
    for permission in permissions:
        assert any(
            permission.action in s.actions
            and any(covers(permission.resource, r) for r in s.resources)
            and has_conditions(s, permission.conditions)
            for s in statements
        ), f"{permission.action} on {permission.resource} is not granted"


def test_the_restore_policy_is_an_output_and_no_role_of_the_deployment_has_it() -> None:
    config = load_configuration()
    assert config["output"]["restore_policy_json"]["value"] == (
        "${data.aws_iam_policy_document.restore.json}"
    )
    attached = [body["policy"] for body in config["resource"]["aws_iam_role_policy"].values()]
    assert "${data.aws_iam_policy_document.restore.json}" not in attached
    adapters = {a for s in policy("adapters") for a in s.actions}
    # Tagging and passing the backup role are the functions' too (under other conditions), and
    # so are reads (a restore first reads its sources, as the functions read their members).
    shared = {"iam:PassRole", "ec2:CreateTags", "rds:AddTagsToResource"}
    restore_only = {
        p.action
        for p in declared_restore()
        if not p.action.split(":", 1)[1].startswith(("Describe", "List", "Get"))
    } - shared
    assert "rds:RestoreDBInstanceToPointInTime" in restore_only
    assert not adapters & restore_only
