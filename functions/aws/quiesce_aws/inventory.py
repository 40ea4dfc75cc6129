"""EC2 inventory: the instances an AWS member stands for, with their EBS volumes.

A member selects instances by id or by tags (every tag must match). Terminated (and terminating)
instances are left out; stopped ones are kept, because their volumes can still be snapshotted.
Each instance becomes one Machine whose volumes are its attached EBS volumes, in device order,
without the root volume when the member excludes the boot volume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from botocore.exceptions import ClientError

from quiesce.errors import ProviderError
from quiesce.policy.model import MemberBase
from quiesce.ports import Inventory, Machine
from quiesce.providers.registry import expect_member
from quiesce_aws.clients import ClientFactory
from quiesce_aws.member import AwsMember
from quiesce_aws.permissions import Permission
from quiesce_aws.retry import EC2_THROTTLING, Backoff, error_message
from quiesce_aws.shape import instance_attributes

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceTypeDef

PROVIDER = "aws"

#: Instance states whose volumes can be snapshotted (everything but terminated/terminating).
LIVE_STATES = ["pending", "running", "stopping", "stopped"]


def describe_filters(member: AwsMember) -> list[FilterTypeDef]:
    """The DescribeInstances filters of a member's selector."""
    filters: list[FilterTypeDef] = [{"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
    for key, value in sorted((member.select.tags or {}).items()):
        filters.append({"Name": f"tag:{key}", "Values": [value]})
    return filters


def selector_text(member: AwsMember) -> str:
    if member.select.instance_ids:
        return "instance ids " + ", ".join(member.select.instance_ids)
    tags = member.select.tags or {}
    return "tags " + ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def instance_volumes(instance: InstanceTypeDef, exclude_boot_volume: bool) -> tuple[str, ...]:
    """The instance's attached EBS volume ids, by device name; the root left out if asked."""
    root = instance.get("RootDeviceName")
    volumes: list[tuple[str, str]] = []
    for mapping in instance.get("BlockDeviceMappings", []):
        ebs = mapping.get("Ebs")
        device = mapping.get("DeviceName", "")
        if not ebs or not ebs.get("VolumeId"):
            continue
        if exclude_boot_volume and device == root:
            continue
        volumes.append((device, ebs["VolumeId"]))
    return tuple(volume for _, volume in sorted(volumes))


def instance_platform(instance: InstanceTypeDef) -> str:
    """ "windows" or "linux" (EC2 only reports a platform for Windows)."""
    platform = str(instance.get("Platform") or "").lower()
    details = str(instance.get("PlatformDetails") or "").lower()
    return "windows" if "windows" in (platform, details.split(" ")[0]) else "linux"


class Ec2Inventory(Inventory):
    """Resolves AWS members with DescribeInstances (by ids or tag filters, paginated)."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        # DescribeInstances supports no resource-level permissions.
        "resolve": [Permission("ec2:DescribeInstances", "*")],
    }

    def __init__(
        self, clients: ClientFactory, *, backoff: Backoff | None = None, page_size: int = 1000
    ) -> None:
        self.clients = clients
        self.backoff = backoff or Backoff()
        self.page_size = page_size

    def resolve(self, spec: MemberBase) -> list[Machine]:
        member = expect_member(spec, AwsMember)
        instances = self._describe(member)
        machines = [self._machine(member, i) for i in instances]
        if not machines:
            raise ProviderError(
                f"member {member.name!r}: no EC2 instance in {member.region} matches "
                f"{selector_text(member)} (terminated instances are ignored)",
                code="NoInstances",
            )
        return machines

    # ------------------------------------------------------------------------------ helpers

    def _describe(self, member: AwsMember) -> list[InstanceTypeDef]:
        client = self.clients.ec2(member.region)
        kwargs: dict[str, Any] = {"Filters": describe_filters(member)}
        if member.select.instance_ids:
            kwargs["InstanceIds"] = list(member.select.instance_ids)
        found: list[InstanceTypeDef] = []
        token: str | None = None
        while True:
            page_args = dict(kwargs)
            if token:
                page_args["NextToken"] = token
            if "InstanceIds" not in page_args:
                page_args["MaxResults"] = self.page_size
            try:
                page = self.backoff.call(
                    lambda args=page_args: client.describe_instances(**args),  # type: ignore[misc]
                    retry_on=EC2_THROTTLING,
                    what=f"DescribeInstances for member {member.name!r}",
                )
            except ClientError as exc:
                raise ProviderError(
                    f"member {member.name!r}: DescribeInstances in {member.region} for "
                    f"{selector_text(member)} failed: {error_message(exc)}",
                    code=str(exc.response.get("Error", {}).get("Code") or "DescribeFailed"),
                ) from exc
            for reservation in page.get("Reservations", []):
                found.extend(reservation.get("Instances", []))
            token = page.get("NextToken")
            if not token:
                break
        return sorted(found, key=lambda i: i.get("InstanceId", ""))

    def _machine(self, member: AwsMember, instance: InstanceTypeDef) -> Machine:
        instance_id = instance.get("InstanceId", "")
        return Machine(
            provider=PROVIDER,
            member=member.name,
            machine_id=instance_id,
            volumes=instance_volumes(instance, member.exclude_boot_volume),
            attributes={
                # The shape a restore launches a copy with (quiesce_aws.shape).
                **instance_attributes(instance),
                "region": member.region,
                "os": instance_platform(instance),
                "state": str(instance.get("State", {}).get("Name", "")),
                "availability_zone": str(instance.get("Placement", {}).get("AvailabilityZone", "")),
                "root_device": str(instance.get("RootDeviceName", "")),
                "exclude_boot_volume": "true" if member.exclude_boot_volume else "false",
            },
        )
