"""The functions' IAM role in infra/aws grants exactly what the AWS adapters declare they call
(their PERMISSIONS), scoped to the resources and with the conditions they declare, and nothing
else beyond what Lambda itself needs to run them.

The Terraform files are parsed (python-hcl2), not planned: interpolations of variables and
locals are resolved from their defaults, references to resources become the ARN shape of that
resource, and whatever is unknown before apply (account id, partition, variables without a
default) becomes `*`. A granted resource is within a declared one when the declared pattern
matches it with those `*` taken literally, i.e. the grant is never broader than the declaration.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from quiesce_aws.permissions import Permission, declared
from tests.terraform import read_module

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 parses the Terraform files")

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra" / "aws"
load_configuration = partial(read_module, INFRA)

#: Every adapter class the functions run with (quiesce_aws.provider.aws_backends).
ADAPTERS = (
    "quiesce_aws.inventory.Ec2Inventory",
    "quiesce_aws.hooks.SsmHookRunner",
    "quiesce_aws.snapshots.EbsSnapshotter",
    "quiesce_aws.rds.RdsInventory",
    "quiesce_aws.rds.RdsSnapshotter",
    "quiesce_aws.efs.EfsInventory",
    "quiesce_aws.efs.EfsBackupSnapshotter",
    "quiesce_aws.events.EventBridgePublisher",
    "quiesce_aws.state.DynamoDbStateStore",
)

#: What Lambda needs to run the functions, beyond the adapters' calls.
RUNTIME_ACTIONS = {
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "sqs:SendMessage",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}

#: The ARN of each kind of resource the policies refer to, from its `name` argument.
ARN_SHAPES = {
    "aws_dynamodb_table": "arn:*:dynamodb:*:*:table/{name}",
    "aws_cloudwatch_event_bus": "arn:*:events:*:*:event-bus/{name}",
    "aws_sqs_queue": "arn:*:sqs:*:*:{name}",
    "aws_cloudwatch_log_group": "arn:*:logs:*:*:log-group:{name}",
    "aws_kms_key": "arn:*:kms:*:*:key/*",
    "aws_lambda_function": "arn:*:lambda:*:*:function:{function_name}",
}

# ------------------------------------------------------------------------- reading the files


INTERPOLATION = re.compile(r"\$\{([^{}]+)\}")
#: A document merged into another (source_policy_documents, override_policy_documents).
DOCUMENT = re.compile(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}")


@dataclass
class Resolver:
    """Resolves `${...}` in strings as far as the configuration allows without a plan."""

    config: dict[str, Any]

    def value(self, expression: str) -> str:
        expression = expression.strip()
        parts = expression.split(".")
        if parts[0] == "var" and len(parts) >= 2:
            node: Any = self.config["variable"].get(parts[1], {}).get("default")
            for key in parts[2:]:
                node = node.get(key) if isinstance(node, dict) else None
            return node if isinstance(node, str) else "*"
        if parts[0] == "local" and len(parts) == 2:
            node = self.config["locals"].get(parts[1])
            return self.text(node) if isinstance(node, str) else "*"
        match = re.fullmatch(r"(aws_[a-z0-9_]+)\.([a-z0-9_]+)(?:\[\"?(\w+)\"?\])?\.arn", expression)
        if match:
            return self.arn(match.group(1), match.group(2))
        return "*"

    def arn(self, type_: str, name: str) -> str:
        if type_ not in ARN_SHAPES:
            raise AssertionError(f"add the ARN shape of {type_} to ARN_SHAPES")
        body = self.config["resource"][type_][name]
        fields = {
            key: self.text(body.get(key, "*"))
            for key in re.findall(r"\{(\w+)\}", ARN_SHAPES[type_])
        }
        return ARN_SHAPES[type_].format(**fields)

    def text(self, value: str) -> str:
        if value.startswith("${") and value.endswith("}") and value.count("${") == 1:
            return self.value(value[2:-1])
        return INTERPOLATION.sub(lambda m: self.value(m.group(1)), value)


@dataclass(frozen=True)
class Statement:
    sid: str
    effect: str
    actions: frozenset[str]
    resources: tuple[str, ...]
    #: (test, variable) -> values
    conditions: dict[tuple[str, str], tuple[str, ...]]
    keys: frozenset[str]


def statements(document: dict[str, Any], resolver: Resolver) -> Iterator[Statement]:
    """The statements of an aws_iam_policy_document, dynamic ones included."""
    bodies = list(document.get("statement", []))
    for dynamic in document.get("dynamic", []):
        if "statement" in dynamic:
            content = dynamic["statement"]["content"]
            bodies.extend(content if isinstance(content, list) else [content])
    for body in bodies:
        resources = body.get("resources", [])
        if isinstance(resources, str):  # a for expression
            resources = [resources]
        yield Statement(
            sid=body.get("sid", ""),
            effect=body.get("effect", "Allow"),
            actions=frozenset(body.get("actions", [])),
            resources=tuple(resolver.text(r) for r in resources),
            conditions={
                (c["test"], resolver.text(c["variable"])): tuple(
                    resolver.text(v) for v in c["values"]
                )
                for c in body.get("condition", [])
            },
            keys=frozenset(body),
        )


def policy(name: str) -> list[Statement]:
    """A document's statements as the provider merges them: those of its
    source_policy_documents, its own, then those of its override_policy_documents, a statement
    taking the place of an earlier one with its sid."""
    config = load_configuration()
    document = config["data"]["aws_iam_policy_document"][name]
    merged: dict[str, Statement] = {}

    def merge(items: Iterable[Statement]) -> None:
        for statement in items:
            merged[statement.sid or f"#{len(merged)}"] = statement

    def merged_document(reference: str) -> list[Statement]:
        match = DOCUMENT.fullmatch(reference)
        assert match, f"{name} merges {reference}, not a policy document of this module"
        return policy(match.group(1))

    for reference in document.get("source_policy_documents", []):
        merge(merged_document(reference))
    merge(statements(document, Resolver(config)))
    for reference in document.get("override_policy_documents", []):
        merge(merged_document(reference))
    return list(merged.values())


def adapter_classes() -> list[type]:
    classes = []
    for dotted in ADAPTERS:
        module, _, name = dotted.rpartition(".")
        classes.append(getattr(importlib.import_module(module), name))
    return classes


def declared_permissions() -> list[Permission]:
    return [p for perms in declared(*adapter_classes()).values() for p in perms]


def pattern(resource: str) -> str:
    """A declared resource, with any partition."""
    return re.sub(r"^arn:[^:]*:", "arn:*:", resource)


def covers(declared_resource: str, granted: str) -> bool:
    """Is the granted resource (its `*` taken literally) within the declared pattern?"""
    return fnmatchcase(granted, pattern(declared_resource))


def has_conditions(statement: Statement, conditions: dict[str, str]) -> bool:
    return all(
        any(
            variable == key and value in values and test in ("StringEquals", "StringLike")
            for (test, variable), values in statement.conditions.items()
        )
        for key, value in conditions.items()
    )


# ------------------------------------------------------------------------------------ tests


def test_every_adapter_class_declares_its_permissions() -> None:
    for cls in adapter_classes():
        assert declared(cls), f"{cls.__name__} declares no PERMISSIONS"


def test_the_role_is_granted_exactly_the_actions_the_adapters_declare() -> None:
    granted = {a for s in policy("adapters") for a in s.actions}
    wanted = {p.action for p in declared_permissions()}
    assert not wanted - granted, f"declared by the adapters but not granted: {wanted - granted}"
    assert not granted - wanted, f"granted but declared by no adapter: {granted - wanted}"


def test_every_grant_stays_within_the_resources_declared_for_its_action() -> None:
    permissions = declared_permissions()
    for statement in policy("adapters"):
        for action in statement.actions:
            for resource in statement.resources:
                allowed = [p.resource for p in permissions if p.action == action]
                assert any(covers(r, resource) for r in allowed), (
                    f"{statement.sid}: {action} on {resource} is broader than what the "
                    f"adapters declare ({', '.join(allowed)})"
                )


def test_every_declared_permission_is_granted_with_its_declared_conditions() -> None:
    adapter_policy = policy("adapters")
    for permission in declared_permissions():
        matching = [
            s
            for s in adapter_policy
            if permission.action in s.actions
            and any(covers(permission.resource, r) for r in s.resources)
            and has_conditions(s, permission.conditions)
        ]
        assert matching, f"no statement grants {permission.action} on {permission.resource}" + (
            f" with the conditions {permission.conditions}" if permission.conditions else ""
        )


def test_no_grant_leaves_out_the_conditions_its_resource_is_declared_with() -> None:
    """Where the adapters only ever call an action on a resource under conditions (SendCommand
    on instances, CreateSnapshots of snapshots, CreateTags, DeleteSnapshot), every statement
    granting it carries those conditions."""
    permissions = declared_permissions()
    for statement in policy("adapters"):
        for action in statement.actions:
            for resource in statement.resources:
                applicable = [
                    p for p in permissions if p.action == action and covers(p.resource, resource)
                ]
                if not applicable or any(not p.conditions for p in applicable):
                    continue  # undeclared grants fail the tests above
                assert any(has_conditions(statement, p.conditions) for p in applicable), (
                    f"{statement.sid}: {action} on {resource} lacks the declared conditions "
                    f"{[p.conditions for p in applicable]}"
                )


INSTANCES = "arn:*:ec2:*:*:instance/*"
SNAPSHOTS = "arn:*:ec2:*::snapshot/*"


@pytest.mark.parametrize(
    ("action", "resource", "condition", "value"),
    [
        ("ssm:SendCommand", INSTANCES, "ssm:resourceTag/quiesce:enabled", "true"),
        ("ec2:CreateSnapshots", INSTANCES, "aws:ResourceTag/quiesce:enabled", "true"),
        ("ec2:CreateSnapshots", SNAPSHOTS, "aws:RequestTag/quiesce:managed", "true"),
        # Tagging while taking snapshots, or while copying them to another region.
        ("ec2:CreateTags", SNAPSHOTS, "ec2:CreateAction", "CreateSnapshots|CopySnapshot"),
        ("ec2:DeleteSnapshot", SNAPSHOTS, "aws:ResourceTag/quiesce:managed", "true"),
    ],
)
def test_writes_to_instances_and_snapshots_are_scoped_by_quiesce_tags(
    action: str, resource: str, condition: str, value: str
) -> None:
    granting = [s for s in policy("adapters") if action in s.actions and resource in s.resources]
    assert granting, f"{action} on {resource} is not granted"
    for statement in granting:
        allowed = {(v,) for v in value.split("|")}
        assert statement.conditions.get(("StringEquals", condition)) in allowed, statement.sid


def test_hooks_can_be_sent_only_with_quiesce_documents() -> None:
    documents = {
        r
        for s in policy("adapters")
        if "ssm:SendCommand" in s.actions
        for r in s.resources
        if ":document/" in r
    }
    assert documents == {
        "arn:*:ssm:*:*:document/Quiesce-RunHook",
        "arn:*:ssm:*::document/AWSEC2-CreateVssSnapshot",
    }


def test_state_and_events_are_granted_on_the_deployments_own_table_and_bus_only() -> None:
    by_sid = {s.sid: s for s in policy("adapters")}
    assert by_sid["StateTableItems"].resources == ("arn:*:dynamodb:*:*:table/quiesce-*-state",)
    assert by_sid["StateTableIndexes"].resources == (
        "arn:*:dynamodb:*:*:table/quiesce-*-state/index/gsi1",
        "arn:*:dynamodb:*:*:table/quiesce-*-state/index/lsi1",
    )
    assert by_sid["PublishToTheQuiesceBus"].resources == ("arn:*:events:*:*:event-bus/*",)
    config = load_configuration()
    bus = config["resource"]["aws_cloudwatch_event_bus"]["quiesce"]
    assert bus["name"] == "${local.event_bus_name}"


def test_every_statement_allows_and_names_its_actions_and_resources() -> None:
    for name in ("adapters", "runtime"):
        for statement in policy(name):
            assert statement.effect == "Allow", statement.sid
            assert not statement.keys & {"not_actions", "not_resources", "not_principals"}
            assert statement.actions, statement.sid
            assert statement.resources, statement.sid
            assert statement.sid, "every statement has a sid that says why it exists"


def test_the_runtime_policy_grants_only_what_lambda_needs_to_run_the_functions() -> None:
    runtime = policy("runtime")
    granted = {a for s in runtime for a in s.actions}
    assert granted <= RUNTIME_ACTIONS, f"unexpected runtime grants: {granted - RUNTIME_ACTIONS}"
    for statement in runtime:
        if "*" in statement.resources:
            assert statement.actions <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
        if any(a.startswith("kms:") for a in statement.actions):
            (service,) = [v for (t, k), v in statement.conditions.items() if k == "kms:ViaService"]
            assert len(service) == 1
            assert service[0].split(".")[0] in {"dynamodb", "sqs"}


def test_the_function_role_has_no_other_policies() -> None:
    config = load_configuration()
    resources = config["resource"]
    role = resources["aws_iam_role"]["functions"]
    assert not {"managed_policy_arns", "inline_policy"} & set(role)
    attached = {
        name: body["policy"]
        for name, body in resources["aws_iam_role_policy"].items()
        if body["role"] == "${aws_iam_role.functions.id}"
    }
    assert attached == {
        "functions_adapters": "${data.aws_iam_policy_document.adapters.json}",
        "functions_runtime": "${data.aws_iam_policy_document.runtime.json}",
    }
    assert "aws_iam_role_policy_attachment" not in resources
    assert "aws_iam_policy" not in resources


def test_the_scheduler_role_may_only_invoke_the_schedule_function() -> None:
    (statement,) = policy("scheduler")
    assert statement.actions == {"lambda:InvokeFunction"}
    assert statement.resources == ("arn:*:lambda:*:*:function:*",)
    raw = load_configuration()["data"]["aws_iam_policy_document"]["scheduler"]
    assert raw["statement"][0]["resources"] == ['${aws_lambda_function.quiesce["schedule"].arn}']


def test_only_the_functions_role_is_assumable_by_lambda_and_both_trusts_name_the_account() -> None:
    config = load_configuration()
    for trust, service in (
        ("functions_trust", "lambda.amazonaws.com"),
        ("scheduler_trust", "scheduler.amazonaws.com"),
    ):
        (statement,) = config["data"]["aws_iam_policy_document"][trust]["statement"]
        assert statement["principals"][0]["identifiers"] == [service]
        variables = {c["variable"] for c in statement["condition"]}
        assert "aws:SourceAccount" in variables
