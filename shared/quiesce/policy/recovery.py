"""A group's copies in other regions and where its restores and drills go (`copies:`,
`restore:`), as the policy says them."""

from __future__ import annotations

from pydantic import Field

from quiesce.policy.base import StrictModel


class RestoreSite(StrictModel):
    """Where a group's machines are restored as copies: an isolated network the user names.

    Each provider reads the fields in its own terms: AWS a subnet id and security group ids,
    Azure a subnet resource id and network security group ids, GCP a subnetwork and network
    tags."""

    network: str = Field(
        min_length=1,
        max_length=512,
        description="The isolated subnet (AWS subnet id, Azure subnet resource id, GCP "
        "subnetwork) the restored copies are launched into.",
        examples=["subnet-0abc1234"],
    )
    security_groups: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Firewall for the copies: AWS security group ids, Azure NSG ids, GCP "
        "network tags. Name ones that isolate them.",
        examples=[["sg-0isolated"]],
    )
    zone: str | None = Field(
        default=None,
        max_length=64,
        description="The zone to restore into; default: the original machine's zone (in the "
        "copy's region: its first zone).",
        examples=["eu-west-1a"],
    )
    inspect_on: str | None = Field(
        default=None,
        max_length=512,
        description="Attach the restored volumes to this existing machine (an inspection "
        "instance) instead of launching copies.",
        examples=["i-0inspect"],
    )


class Copy(StrictModel):
    """Every recovery point of the group is copied to this region, and kept by its own rule."""

    region: str = Field(
        min_length=1,
        max_length=64,
        description="The region the copies go to.",
        examples=["eu-west-1"],
    )
    keep_last: int | None = Field(
        default=None,
        ge=1,
        description="Keep the copies of the newest N points in this region; none: keep all.",
        examples=[7],
    )
    key: str | None = Field(
        default=None,
        max_length=512,
        description="The encryption key in that region (AWS KMS key, Azure disk encryption "
        "set, GCP KMS key); default: the region's default key.",
        examples=["arn:aws:kms:eu-west-1:111122223333:key/…"],
    )
    restore: RestoreSite | None = Field(
        default=None,
        description="Where restores and drills in this region launch the copies.",
        examples=[{"network": "subnet-0dr5678", "security_groups": ["sg-0isolated"]}],
    )


def check_copies(copies: list[Copy]) -> list[Copy]:
    regions = [c.region for c in copies]
    dupes = sorted({r for r in regions if regions.count(r) > 1})
    if dupes:
        raise ValueError(f"copies: each region once; repeated: {', '.join(dupes)}")
    return copies
