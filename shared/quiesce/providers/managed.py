"""What every managed-service provider shares (a database or a file share the cloud runs).

A managed service has no machine to run a hook on, so its providers' hook runner refuses every
call. The policy model refuses hooks on such a member already (quiesce.policy.managed), so the
engine never calls it; a call that still comes is a bug, and it says so plainly instead of
pretending a hook ran.
"""

from __future__ import annotations

from typing import Any, ClassVar

from quiesce.errors import ProviderError
from quiesce.ports import HookCall, HookRunner
from quiesce.record import HookResult


class NoHooks(HookRunner):
    """The hook runner of a managed-service provider: refuses every call."""

    #: It makes no cloud call, so it needs no permission.
    PERMISSIONS: ClassVar[dict[str, list[Any]]] = {}

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def _refuse(self, call: HookCall) -> ProviderError:
        return ProviderError(
            f"member {call.member!r} ({self.provider}) is a managed service: it runs no hooks "
            f"(the {call.phase} hook asked for {call.machine.machine_id} must run on a VM member "
            "that holds its writers)",
            code="NoHooksOnManagedMembers",
        )

    def run(self, call: HookCall) -> HookResult:
        raise self._refuse(call)

    def check(self, call: HookCall) -> HookResult:
        raise self._refuse(call)
