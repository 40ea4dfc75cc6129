"""The IAM permissions each AWS adapter operation needs, declared next to the code.

Every adapter class lists, per operation, the IAM actions it calls (and on what), so the
least-privilege policy in infra/aws can be checked against the code instead of being kept by
hand: tests/aws/test_permissions.py fails when the Terraform grants differ from what the
adapters declare.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from quiesce.permissions import declared as declared  # re-exported: the cloud's entry


@dataclass(frozen=True)
class Permission:
    """One IAM action an operation calls.

    `resource` names the kind of resource (an ARN pattern such as
    "arn:aws:ec2:*:*:instance/*", or "*" where the action supports no resource-level
    permissions); `conditions` documents the condition keys the Terraform policy must scope it
    with (for example {"aws:ResourceTag/quiesce:managed": "true"}).
    """

    action: str
    resource: str = "*"
    conditions: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


def actions(permissions: Iterable[Permission]) -> set[str]:
    return {p.action for p in permissions}
