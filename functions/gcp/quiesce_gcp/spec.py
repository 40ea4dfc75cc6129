"""The `gcp` provider's spec (the `quiesce.providers` entry point). It imports no SDK: the
adapters are imported when the factory is first called, so validating a policy stays cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quiesce.providers.registry import ProviderSpec
from quiesce_gcp.member import GcpMember

if TYPE_CHECKING:
    from quiesce.policy.model import Policy
    from quiesce.ports import Provider


def make_provider(policy: Policy, *, scratch: bool = False) -> Provider:
    from quiesce_gcp.provider import make_provider as build

    return build(policy)


SPEC = ProviderSpec(
    name="gcp",
    member=GcpMember,
    factory=make_provider,
    description="Google Compute Engine: hooks through Quiesce's guest agent, disk snapshots.",
    extra="gcp",
)
