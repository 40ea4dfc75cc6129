"""The `aws` provider's member model: what a policy says about EC2 instances."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from quiesce.policy.model import RemoteMember, Selection

#: An AWS region's name (commercial, GovCloud and ISO partitions).
REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$"


def region_field(description: str) -> Any:
    """A member's `region` field: an AWS region's name."""
    return Field(pattern=REGION_PATTERN, description=description, examples=["eu-central-1"])


class AwsSelect(Selection):
    """Which EC2 instances a member stands for: by id, or by tags (all must match)."""

    CHOICES = ("instance_ids", "tags")

    instance_ids: list[Annotated[str, Field(pattern=r"^i-[0-9a-f]{8,17}$")]] | None = Field(
        default=None, min_length=1, description="EC2 instance ids.", examples=[["i-0abc12345"]]
    )
    tags: dict[str, str] | None = Field(
        default=None,
        min_length=1,
        description="Every instance (running or stopped) carrying all of these tags.",
        examples=[{"app": "orders"}],
    )


class AwsMember(RemoteMember):
    """EC2 instances: hooks through SSM Run Command, snapshots of all EBS volumes at once."""

    provider: Literal["aws"] = Field(description="Amazon EC2.", examples=["aws"])
    region: str = region_field("The instances' region.")
    select: AwsSelect = Field(
        description="The instances; a member may resolve to many.",
        examples=[{"tags": {"app": "orders", "tier": "db"}}],
    )
    os: Literal["linux", "windows"] = Field(
        default="linux",
        description=(
            "`windows`: quiesced by VSS through the AWSEC2-CreateVssSnapshot document instead "
            "of hooks (VSS holds writes for at most 10 s)."
        ),
        examples=["linux"],
    )
    exclude_boot_volume: bool = Field(
        default=False,
        description="Leave the root volume out of the snapshots.",
        examples=[False],
    )
