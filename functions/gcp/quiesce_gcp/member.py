"""The `gcp` provider's member model: what a policy says about Compute Engine instances."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from quiesce.policy.model import RemoteMember, Selection

#: A Google Cloud project id.
PROJECT_PATTERN = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"


def project_field(description: str) -> Any:
    """A member's `project` field: a Google Cloud project id."""
    return Field(pattern=PROJECT_PATTERN, description=description, examples=["orders-prod"])


class GcpSelect(Selection):
    """Which Compute Engine instances of the zone a member stands for: by name, or by labels."""

    CHOICES = ("instances", "labels")

    instances: list[Annotated[str, Field(pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")]] | None = (
        Field(default=None, min_length=1, description="Instance names.", examples=[["reports-1"]])
    )
    labels: dict[str, str] | None = Field(
        default=None,
        min_length=1,
        description="Every instance of the zone carrying all of these labels.",
        examples=[{"app": "orders"}],
    )


class GcpMember(RemoteMember):
    """Compute Engine instances: disk snapshots, hooks through the guest agent."""

    provider: Literal["gcp"] = Field(description="Google Compute Engine.", examples=["gcp"])
    project: str = project_field("The instances' project id.")
    zone: str = Field(
        pattern=r"^[a-z]+-[a-z]+[0-9]+-[a-z]$",
        description="The instances' zone.",
        examples=["europe-west1-b"],
    )
    select: GcpSelect = Field(
        description="The instances; a member may resolve to many.",
        examples=[{"instances": ["reports-1"]}],
    )
    hook_channel: Literal["agent", "guest_flush"] = Field(
        default="agent",
        description=(
            "`agent`: Quiesce's guest agent runs the hooks and holds the freeze across the "
            "group's machines. `guest_flush`: the snapshot asks the Google guest agent to run "
            "pre.sh/post.sh around itself (single-member groups and Windows VSS only)."
        ),
        examples=["agent"],
    )
    os: Literal["linux", "windows"] = Field(
        default="linux",
        description="`windows`: quiesced by VSS through guest flush.",
        examples=["linux"],
    )

    @model_validator(mode="after")
    def _check(self) -> GcpMember:
        if self.os == "windows" and self.hook_channel != "guest_flush":
            raise ValueError("windows members are quiesced by VSS: use hook_channel: guest_flush")
        return self

    def alone_reason(self) -> str | None:
        if self.hook_channel == "guest_flush":
            return (
                f"member {self.name!r} uses hook_channel: guest_flush, which holds one VM only "
                "while its own disks are snapshotted: put it in a group of its own, or use "
                "hook_channel: agent to freeze it with the group"
            )
        return None
