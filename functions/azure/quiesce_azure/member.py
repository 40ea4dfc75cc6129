"""The `azure` provider's member model: what a policy says about Azure VMs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from quiesce.policy.model import RemoteMember, Selection

SUBSCRIPTION = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
RESOURCE_GROUP = r"^[-\w._()]{1,90}$"


def subscription_field() -> Any:
    """A member's `subscription`: the subscription id (every Azure member has one)."""
    return Field(
        pattern=SUBSCRIPTION,
        description="The subscription id.",
        examples=["00000000-0000-0000-0000-000000000000"],
    )


def resource_group_field(description: str) -> Any:
    """A member's `resource_group`: a resource group's name."""
    return Field(pattern=RESOURCE_GROUP, description=description, examples=["rg-orders"])


class AzureSelect(Selection):
    """Which VMs of the resource group a member stands for: by name, or by tags."""

    CHOICES = ("vm_names", "tags")

    vm_names: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]] | None = (
        Field(default=None, min_length=1, description="VM names.", examples=[["api-1", "api-2"]])
    )
    tags: dict[str, str] | None = Field(
        default=None,
        min_length=1,
        description="Every VM of the resource group carrying all of these tags.",
        examples=[{"app": "orders"}],
    )


class AzureMember(RemoteMember):
    """Azure VMs: hooks through managed Run Command, restore points or incremental snapshots."""

    provider: Literal["azure"] = Field(description="Azure virtual machines.", examples=["azure"])
    subscription: str = subscription_field()
    resource_group: str = resource_group_field("The VMs' resource group.")
    select: AzureSelect = Field(
        description="The VMs; a member may resolve to many.", examples=[{"vm_names": ["api-1"]}]
    )
    os: Literal["linux", "windows"] = Field(
        default="linux",
        description=(
            "`windows`: an application-consistent restore point (VSS through the VM's backup "
            "extension) instead of hooks."
        ),
        examples=["linux"],
    )
    snapshot: Literal["restore_point", "disk_snapshots"] = Field(
        default="restore_point",
        description=(
            "`restore_point`: one VM restore point covering all managed disks. "
            "`disk_snapshots`: one incremental snapshot per managed disk."
        ),
        examples=["restore_point"],
    )

    @model_validator(mode="after")
    def _check(self) -> AzureMember:
        if self.os == "windows" and self.snapshot != "restore_point":
            raise ValueError("windows members need snapshot: restore_point (VSS)")
        return self
