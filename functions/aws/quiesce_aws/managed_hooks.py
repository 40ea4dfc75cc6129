"""The hook runner of managed members (a database or a file share the cloud runs): there is no
machine to run a hook on, so it refuses every call. The policy model refuses hooks on such a
member already (quiesce.policy.managed), so the engine never calls it; a call that still comes
is a bug, and it says so plainly instead of pretending a hook ran."""

from __future__ import annotations

from typing import ClassVar

from quiesce.errors import ProviderError
from quiesce.ports import HookCall, HookRunner
from quiesce.record import HookResult
from quiesce_aws.permissions import Permission


class ManagedHookRunner(HookRunner):
    """Refuses: a managed member's writers are held by the group's EC2 members' hooks."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {}

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def _refuse(self, call: HookCall) -> ProviderError:
        return ProviderError(
            f"member {call.member!r} ({self.provider}) is a managed service: it runs no hooks "
            f"(its {call.phase} hook must run on an EC2 member that holds its writers)",
            code="NoHooksOnManagedMembers",
        )

    def run(self, call: HookCall) -> HookResult:
        raise self._refuse(call)

    def check(self, call: HookCall) -> HookResult:
        raise self._refuse(call)
