"""The `azure` provider's spec (the `quiesce.providers` entry point). It imports no SDK: the
factory (provider.make_provider) is imported when first called, so validating a policy stays
cheap."""

from __future__ import annotations

from quiesce.providers.registry import ProviderSpec
from quiesce_azure.member import AzureMember

SPEC = ProviderSpec(
    name="azure",
    member=AzureMember,
    factory="quiesce_azure.provider:make_provider",
    description=(
        "Azure virtual machines: hooks through managed Run Command, restore points or "
        "incremental disk snapshots."
    ),
    extra="azure",
)
