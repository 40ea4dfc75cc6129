"""The base of every managed-service member: a database or a file share run by the cloud.

A managed service has no machine Quiesce can run a hook on. Its writers are the application's,
held by the VM members' pre hooks (or by a database hook from the library, run on a VM that
can reach the database), so a managed member declares no hooks of its own, and its level
follows the rule for members without hooks: application-consistent when every member with
hooks was held at its point in time, crash-consistent otherwise.

How its point in time is fixed is its snapshotter's to say (`Snapshotter.point_method`):
`snapshot` (fixed when the call is accepted), `pitr` (the service restores to the group's `T`)
or `copy` (copied over an interval: recorded `none` unless the application was held
throughout).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from quiesce.policy.model import MemberBase

#: How a managed member's point in time is fixed, when the service offers a choice.
Method = Literal["snapshot", "pitr"]


class ManagedMember(MemberBase):
    """A database or file share the cloud runs: no hooks of its own."""

    @model_validator(mode="after")
    def _no_hooks(self) -> ManagedMember:
        hooks = self.hooks
        if any(h is not None for h in (hooks.pre, hooks.post, hooks.verify, hooks.use)):
            raise ValueError(
                "a managed service runs no hooks of its own: its writers are the application's, "
                "held by the pre hooks of the group's VM members (or a database hook from the "
                "library on a VM that reaches it); remove its hooks (verify a restored "
                "database from a VM member's verify hook)"
            )
        return self


def method_field(default: Method, detail: str) -> Method:
    """The `method` field of a service that offers both snapshots and point-in-time restore."""
    return Field(
        default=default,
        description=(
            "How its point in time is fixed: `snapshot` (a snapshot taken inside the freeze) "
            f"or `pitr` (its continuous backup restored to the group's `T`). {detail}"
        ),
        examples=[default],
    )
