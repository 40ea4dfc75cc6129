"""The IAM permissions each GCP adapter operation needs, declared next to the code.

Every adapter class lists, per operation, the Compute Engine / Pub/Sub IAM permissions it calls,
so a custom role for the function's service account can be derived from (and checked against)
the code instead of being kept by hand. `declared(GceInventory, AgentHookRunner, ...)` collects
them; `role_permissions(...)` is the sorted set a custom role must grant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from quiesce.permissions import declared as declared  # re-exported: the cloud's entry


@dataclass(frozen=True)
class Permission:
    """One IAM permission an operation uses.

    `resource` names the kind of resource it is checked on (a resource-name pattern such as
    "projects/*/zones/*/instances/*"); `conditions` documents IAM conditions a deployment should
    scope the grant with (for example {"resource.labels.quiesce-managed": "true"}).
    """

    permission: str
    resource: str = "*"
    conditions: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


INSTANCE = "projects/*/zones/*/instances/*"
DISK = "projects/*/zones/*/disks/*"
SNAPSHOT = "projects/*/global/snapshots/*"
ZONE_OPERATION = "projects/*/zones/*/operations/*"
TOPIC = "projects/*/topics/*"


def permissions(items: Iterable[Permission]) -> set[str]:
    return {p.permission for p in items}


def role_permissions(*classes: type) -> list[str]:
    """The sorted permissions a custom role needs for these adapter classes."""
    out: set[str] = set()
    for perms in declared(*classes).values():
        out |= permissions(perms)
    return sorted(out)
