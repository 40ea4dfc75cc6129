"""The Azure RBAC actions each Azure adapter operation needs, declared next to the code.

Every adapter class lists, per operation, the control-plane actions it calls and the kind of
scope they must be granted at, so the custom role in infra/azure can be checked against the code
instead of being kept by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from quiesce.permissions import declared as declared  # re-exported: the cloud's entry

#: Where an action is granted: the member's resource group, the subscription, or one resource
#: (the Event Grid topic).
Scope = Literal["resource_group", "subscription", "resource"]


@dataclass(frozen=True)
class Permission:
    """One RBAC action an operation calls, e.g. "Microsoft.Compute/snapshots/write".

    `scope` is the kind of scope the role assignment needs; `conditions` documents an ABAC
    condition or a rule the adapter enforces itself (for example that it only deletes what is
    tagged quiesce:managed=true).
    """

    action: str
    scope: Scope = "resource_group"
    conditions: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


def actions(permissions: Iterable[Permission]) -> set[str]:
    return {p.action for p in permissions}
