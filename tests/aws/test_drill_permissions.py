"""The drill function's role in infra/aws (drill.tf) grants exactly what a drill's adapters
declare (Ec2Restorer, the state store, the bus, DescribeSnapshots for the copies' states), with
their conditions; the backup functions' role gets none of the restore actions, and the drill
role none of the backup's writes; the drill schedules start the drill function only; and
scripts/aws_triggers.py sends drill triggers there, with the restore sites' networks."""

from __future__ import annotations

import re
from typing import Any

import pytest

from quiesce.policy import parse_policy
from quiesce_aws.events import EventBridgePublisher
from quiesce_aws.permissions import Permission, declared
from quiesce_aws.restorer import Ec2Restorer
from quiesce_aws.snapshots import EbsSnapshotter
from quiesce_aws.state import DynamoDbStateStore
from tests.aws.test_permissions import Statement, covers, load_configuration, policy

pytest.importorskip("hcl2", reason="python-hcl2 parses the Terraform files")

#: A resource list written as a for expression over a variable: (variable, ARN shape).
FOR_EXPRESSION = re.compile(r'^\$\{\[for \w+ in var\.(\w+) : "([^"]+)"\]\}$')

RESTORE_ONLY = {
    "ec2:RunInstances",
    "ec2:RegisterImage",
    "ec2:DeregisterImage",
    "ec2:TerminateInstances",
    "ec2:CreateVolume",
    "ec2:AttachVolume",
    "ec2:DetachVolume",
    "ec2:DeleteVolume",
    "ec2:DeleteNetworkInterface",
    "ssm:DescribeInstanceInformation",
}


def drill_declared() -> list[Permission]:
    perms = declared(Ec2Restorer, DynamoDbStateStore, EventBridgePublisher)
    return [
        *(p for ps in perms.values() for p in ps),
        *EbsSnapshotter.PERMISSIONS["wait_durable"],
    ]


def resources_of(statement: Statement) -> list[str]:
    out = []
    for resource in statement.resources:
        match = FOR_EXPRESSION.match(resource)
        out.append(match.group(2) if match else resource)
    return out


def granted_with(statement: Statement, conditions: dict[str, str]) -> bool:
    """Every declared condition is in the statement (Bool for the boolean keys)."""
    return all(
        any(
            variable == key and value in values and test in ("StringEquals", "StringLike", "Bool")
            for (test, variable), values in statement.conditions.items()
        )
        for key, value in conditions.items()
    )


def test_the_drill_role_is_granted_exactly_the_actions_a_drill_declares() -> None:
    granted = {a for s in policy("drill") for a in s.actions}
    wanted = {p.action for p in drill_declared()}
    assert granted == wanted


def test_every_drill_grant_is_within_its_declaration_and_carries_its_conditions() -> None:
    permissions = drill_declared()
    statements = policy("drill")
    for statement in statements:
        for action in statement.actions:
            for resource in resources_of(statement):
                allowed = [p for p in permissions if p.action == action]
                applicable = [p for p in allowed if covers(p.resource, resource)]
                assert applicable, f"{statement.sid}: {action} on {resource} is not declared"
                if all(p.conditions for p in applicable):
                    assert any(granted_with(statement, p.conditions) for p in applicable), (
                        f"{statement.sid}: {action} on {resource} lacks its conditions"
                    )
    for permission in permissions:
        assert any(
            permission.action in s.actions
            and any(covers(permission.resource, r) for r in resources_of(s))
            and granted_with(s, permission.conditions)
            for s in statements
        ), f"{permission.action} on {permission.resource} {permission.conditions} is not granted"


def test_copies_launch_only_into_the_restore_sites_networks() -> None:
    by_sid = {s.sid: s for s in policy("drill")}
    subnets = FOR_EXPRESSION.match(by_sid["LaunchIntoTheRestoreSubnets"].resources[0])
    groups = FOR_EXPRESSION.match(by_sid["LaunchWithTheRestoreSecurityGroups"].resources[0])
    assert subnets is not None
    assert groups is not None
    assert subnets.group(1) == "restore_subnets"
    assert groups.group(1) == "restore_security_groups"
    assert not any(
        "ec2:RunInstances" in s.actions and any(":subnet/" in r for r in s.resources)
        for sid, s in by_sid.items()
        if sid != "LaunchIntoTheRestoreSubnets"
    )


def test_the_backup_functions_get_no_restore_action_and_the_drill_role_no_backup_write() -> None:
    backup = {a for s in policy("adapters") for a in s.actions}
    assert not backup & RESTORE_ONLY
    drill = policy("drill")
    granted = {a for s in drill for a in s.actions}
    assert not granted & {"ec2:CreateSnapshots", "ec2:CopySnapshot", "rds:DeleteDBSnapshot"}
    for statement in drill:
        if "ec2:DeleteSnapshot" in statement.actions:
            assert statement.conditions == {
                ("StringLike", "aws:ResourceTag/quiesce:restore"): ("*",)
            }
        if "ssm:SendCommand" in statement.actions and any(
            ":instance/" in r for r in statement.resources
        ):
            (variable,) = [v for _, v in statement.conditions]
            assert variable in {
                "ssm:resourceTag/quiesce:restore",
                "ssm:resourceTag/quiesce:inspection",
            }  # never the production instances' quiesce:enabled


def test_the_drill_function_runs_with_its_own_role_and_the_schedule_front_door() -> None:
    config = load_configuration()
    resources = config["resource"]
    fn = resources["aws_lambda_function"]["drill"]
    assert fn["role"] == "${aws_iam_role.drill.arn}"
    assert fn["handler"] == "quiesce_aws.handler.schedule_handler"
    assert fn["timeout"] == "${var.drill_timeout}"
    attached = {
        body["policy"]
        for body in resources["aws_iam_role_policy"].values()
        if body["role"] == "${aws_iam_role.drill.id}"
    }
    assert attached == {
        "${data.aws_iam_policy_document.drill.json}",
        "${data.aws_iam_policy_document.drill_runtime.json}",
    }
    # The backup functions keep their role.
    assert resources["aws_lambda_function"]["quiesce"]["role"] == "${aws_iam_role.functions.arn}"
    retry = resources["aws_lambda_function_event_invoke_config"]["drill"]
    assert retry["maximum_retry_attempts"] == 0


def test_drill_schedules_start_the_drill_function_through_a_role_that_can_do_nothing_else() -> None:
    config = load_configuration()
    (target,) = config["resource"]["aws_scheduler_schedule"]["drill"]["target"]
    assert target["arn"] == "${aws_lambda_function.drill.arn}"
    assert target["role_arn"] == "${aws_iam_role.drill_scheduler.arn}"
    (statement,) = config["data"]["aws_iam_policy_document"]["drill_scheduler"]["statement"]
    assert statement["actions"] == ["lambda:InvokeFunction"]
    assert statement["resources"] == ["${aws_lambda_function.drill.arn}"]
    (backup,) = config["resource"]["aws_scheduler_schedule"]["trigger"]["target"]
    assert backup["arn"] == '${aws_lambda_function.quiesce["schedule"].arn}'


POLICY = """
version: 1
name: shop
groups:
  orders:
    consistency: crash
    restore: {network: subnet-0home, security_groups: [sg-0home]}
    copies:
      - region: eu-west-1
        restore: {network: subnet-0dr, security_groups: [sg-0dr, sg-0dr2]}
    members:
      - name: db
        provider: aws
        region: eu-central-1
        select: {tags: {app: orders}}
triggers:
  - {name: nightly, group: orders, schedule: "0 2 * * *"}
  - {name: monthly-drill, group: orders, schedule: "0 3 1 * *", action: drill, region: eu-west-1}
  - {name: home-drill, group: orders, schedule: "0 4 1 * *", action: drill}
"""


def tfvars() -> dict[str, Any]:
    from scripts.aws_triggers import tfvars as make

    return make(parse_policy(POLICY, path="shop.yaml"), POLICY.encode(), "shop.yaml")


def test_drill_triggers_become_drill_schedules_and_backups_stay_schedules() -> None:
    data = tfvars()

    assert set(data["schedules"]) == {"nightly"}
    assert data["drill_schedules"] == {
        "home-drill": {
            "group": "orders",
            "region": "",
            "expression": "cron(0 4 1 * ? *)",
            "timezone": "UTC",
            "description": "Quiesce shop: trigger home-drill drills group orders",
        },
        "monthly-drill": {
            "group": "orders",
            "region": "eu-west-1",
            "expression": "cron(0 3 1 * ? *)",
            "timezone": "UTC",
            "description": "Quiesce shop: trigger monthly-drill drills group orders in eu-west-1",
        },
    }
    assert data["drill_regions"] == ["eu-central-1", "eu-west-1"]
    assert data["restore_subnets"] == ["subnet-0dr", "subnet-0home"]
    assert data["restore_security_groups"] == ["sg-0dr", "sg-0dr2", "sg-0home"]


def test_the_drill_role_passes_only_the_named_roles_to_ec2_when_they_are_named() -> None:
    """With restore_instance_roles, PassRole is limited to those roles; only without them does
    the account-wide grant (still to EC2 only) stand, and never both."""
    config = load_configuration()
    document = config["data"]["aws_iam_policy_document"]["drill"]
    passing = {
        body["sid"]: d["statement"]["for_each"]
        for d in document.get("dynamic", [])
        if "statement" in d
        for body in d["statement"]["content"]
        if "iam:PassRole" in body["actions"]
    }
    assert passing == {
        "PassTheCopiesRolesToEc2": "${length(var.restore_instance_roles) > 0 ? [1] : []}",
        "PassInstanceProfileRolesToEc2": "${length(var.restore_instance_roles) > 0 ? [] : [1]}",
    }
    by_sid = {s.sid: s for s in policy("drill")}
    named = FOR_EXPRESSION.match(by_sid["PassTheCopiesRolesToEc2"].resources[0])
    assert named is not None
    assert named.group(1) == "restore_instance_roles"
    assert named.group(2) == "arn:*:iam::*:role/*"  # one ARN per named role (${role}: *)
    for sid in passing:
        assert by_sid[sid].conditions == {
            ("StringEquals", "iam:PassedToService"): ("ec2.amazonaws.com",)
        }
    assert not [
        s.sid for s in policy("drill") if "iam:PassRole" in s.actions and s.sid not in passing
    ]
