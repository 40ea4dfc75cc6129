"""The `gcp` provider's spec (the `quiesce.providers` entry point). It imports no SDK: the
factory (provider.make_provider) is imported when first called, so validating a policy stays
cheap."""

from __future__ import annotations

from quiesce.providers.registry import ProviderSpec
from quiesce_gcp.member import GcpMember

SPEC = ProviderSpec(
    name="gcp",
    member=GcpMember,
    factory="quiesce_gcp.provider:make_provider",
    description="Google Compute Engine: hooks through Quiesce's guest agent, disk snapshots.",
    extra="gcp",
)
