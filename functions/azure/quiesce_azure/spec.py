"""The `azure` provider's spec (the `quiesce.providers` entry point). It imports no SDK: the
adapters are imported when the factory is first called, so validating a policy stays cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quiesce.providers.registry import ProviderSpec
from quiesce_azure.member import AzureMember

if TYPE_CHECKING:
    from quiesce.policy.model import Policy
    from quiesce.ports import Provider


def make_provider(policy: Policy, *, scratch: bool = False) -> Provider:
    from quiesce_azure.provider import make_provider as build

    return build(policy)


SPEC = ProviderSpec(
    name="azure",
    member=AzureMember,
    factory=make_provider,
    description=(
        "Azure virtual machines: hooks through managed Run Command, restore points or "
        "incremental disk snapshots."
    ),
    extra="azure",
)
