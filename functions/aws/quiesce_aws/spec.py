"""The `aws` provider's spec (the `quiesce.providers` entry point). It imports no SDK: the
adapters are imported when the factory is first called, so validating a policy stays cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quiesce.providers.registry import ProviderSpec
from quiesce_aws.member import AwsMember

if TYPE_CHECKING:
    from quiesce.policy.model import Policy
    from quiesce.ports import Provider


def make_provider(policy: Policy, *, scratch: bool = False) -> Provider:
    from quiesce_aws.provider import make_provider as build

    return build(policy)


SPEC = ProviderSpec(
    name="aws",
    member=AwsMember,
    factory=make_provider,
    description="Amazon EC2: hooks through SSM Run Command, snapshots of all EBS volumes at once.",
    extra="aws",
)
