"""The `aws` provider's spec (the `quiesce.providers` entry point). It imports no SDK: the
factory (provider.make_provider) is imported when first called, so validating a policy stays
cheap."""

from __future__ import annotations

from quiesce.providers.registry import ProviderSpec
from quiesce_aws.member import AwsMember

SPEC = ProviderSpec(
    name="aws",
    member=AwsMember,
    factory="quiesce_aws.provider:make_provider",
    description="Amazon EC2: hooks through SSM Run Command, snapshots of all EBS volumes at once.",
    extra="aws",
)
