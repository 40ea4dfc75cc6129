"""Group restores and drills on EC2: copies of instances launched from their EBS snapshots in an
isolated subnet (or the snapshots' volumes attached to an inspection instance), and everything
a restore made deleted again, found by its tag.

Launching a copy (the Restorer port's `launch`):

1. The snapshots must be in the target region (the point's own, or its copy's replicas there)
   and completed: a copy still pending is refused, naming it.
2. The instance's shape (quiesce_aws.shape) comes from the snapshots' tags, recorded at take
   time; for snapshots taken before that, from the original instance (DescribeInstances) if it
   still exists.
3. RegisterImage on the snapshots: the root snapshot as the root device, the others at their
   original device names, each volume deleted with the instance. The image refers to the
   point's own snapshots (it makes none), so deregistering it leaves them as they were; while
   it exists, EC2 refuses to delete them.
4. RunInstances of that image: the original's instance type, one network interface in the
   site's subnet with its security groups and NO public IP (whatever the subnet's default),
   deleted with the instance; the original's instance profile (its SSM agent registers with
   it), or the restorer's `instance_profile`. The same mapping is repeated in the call, so the
   copy's volumes come from the same snapshots with the same settings. A client token makes a
   repeated call launch one copy.

Every resource is tagged when it is created (TagSpecifications): quiesce:restore=<label>,
quiesce:restore-of=<original instance>, quiesce:restored-from=<point>, quiesce:member. The
copy carries none of the original's tags: not the member's selector (the next backup would take
the copy for the original) and not quiesce:enabled.

With the site's `inspect_on` (an instance tagged quiesce:inspection=true), a volume is created
from each snapshot in the inspection instance's zone (CreateVolume, tagged the same way) and
attached to it at the next free device (/dev/sdf onwards); `mounts` records each original
volume's device there. A launched copy records no mounts: it boots with the original's volumes
at their original devices, and its own fstab mounts them where they were.

`wait_ready`: the instance runs (DescribeInstances) and its SSM agent is online
(DescribeInstanceInformation, PingStatus Online): verify hooks go through SSM Run Command like
backups' (quiesce_aws.hooks), addressed by the copy's instance id and region.

`cleanup`: in each region, everything tagged quiesce:restore=<label>, in dependency order:
instances terminated (and waited for), images deregistered, volumes detached (from an
inspection instance) and deleted, network interfaces and snapshots deleted. Nothing without the
tag is touched; what cannot be deleted is reported with the reason.

Windows instances are not launched: EC2 registers an image on a Windows root snapshot but an
instance launched from it does not start (the Windows license is not kept); restore them with
`inspect_on`. The same holds for Linux distributions whose updates depend on the AMI's billing
code (RHEL, SLES): their copies start, without access to the vendor's repositories.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError

from quiesce.errors import ProviderError
from quiesce.ports import Cleanup, Machine, MachineRestore, RestoredMachine, Restorer
from quiesce.providers.registry import expect_member
from quiesce.record import SnapshotRef
from quiesce.tags import MANAGED_TAG
from quiesce_aws.clients import ClientFactory, chunks
from quiesce_aws.hooks import RUN_HOOK_DOCUMENT
from quiesce_aws.inventory import instance_platform
from quiesce_aws.member import AwsMember
from quiesce_aws.permissions import Permission
from quiesce_aws.retry import (
    EC2_THROTTLING,
    SSM_THROTTLING,
    Backoff,
    call_failed,
    error_code,
    error_message,
)
from quiesce_aws.shape import Shape, instance_attributes
from quiesce_aws.snapshots import RESTORED_FROM_TAG, RESTORED_VOLUME_TYPE, region_of
from quiesce_aws.tagging import tag_dict, tag_list

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceTypeDef

log = logging.getLogger(__name__)

PROVIDER = "aws"
#: Every resource a restore makes carries this tag, with the restore's label.
RESTORE_TAG = "quiesce:restore"
#: ... and the original instance it is a copy of.
RESTORE_OF_TAG = "quiesce:restore-of"
#: The tag an inspection instance (`inspect_on`) must carry: the drill role attaches volumes to,
#: and sends verify hooks to, only instances that carry it (or a restore's own copies).
INSPECTION_TAG = "quiesce:inspection"
#: Where an inspection instance gets the restored volumes: /dev/sdf to /dev/sdp.
ATTACH_DEVICES = tuple(f"/dev/sd{c}" for c in "fghijklmnop")
#: Instance states from which a copy never comes up.
DEAD_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})
#: How long a cleanup waits for its instances to terminate (their volumes go with them).
TERMINATE_TIMEOUT_SECONDS = 600.0
#: How long a launch waits for its image, and an inspection volume, to become available.
AVAILABLE_TIMEOUT_SECONDS = 300.0


def _restore_tag_request(resource: str) -> Permission:
    return Permission("ec2:RunInstances", resource, {f"aws:RequestTag/{RESTORE_TAG}": "*"})


def _own(action: str, resource: str) -> Permission:
    """`action` only on resources a restore made (tagged quiesce:restore)."""
    return Permission(action, resource, {f"aws:ResourceTag/{RESTORE_TAG}": "*"})


DESCRIBE = [
    Permission("ec2:DescribeInstances", "*"),
    Permission("ec2:DescribeSnapshots", "*"),
    Permission("ec2:DescribeImages", "*"),
    Permission("ec2:DescribeVolumes", "*"),
]


class Ec2Restorer(Restorer):
    """The Restorer port over EC2 (RegisterImage + RunInstances, or CreateVolume +
    AttachVolume) and SSM (the copy's agent online)."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "launch": [
            *DESCRIBE,
            # An image only from Quiesce's snapshots, only tagged as a restore's.
            Permission(
                "ec2:RegisterImage",
                "arn:aws:ec2:*::snapshot/*",
                {f"aws:ResourceTag/{MANAGED_TAG}": "true"},
            ),
            Permission(
                "ec2:RegisterImage",
                "arn:aws:ec2:*::image/*",
                {f"aws:RequestTag/{RESTORE_TAG}": "*"},
            ),
            # Instances only from a restore's images, only tagged as a restore's, and with no
            # public IP on their network interface.
            Permission(
                "ec2:RunInstances",
                "arn:aws:ec2:*::image/*",
                {f"aws:ResourceTag/{RESTORE_TAG}": "*"},
            ),
            Permission(
                "ec2:RunInstances",
                "arn:aws:ec2:*::snapshot/*",
                {f"aws:ResourceTag/{MANAGED_TAG}": "true"},
            ),
            _restore_tag_request("arn:aws:ec2:*:*:instance/*"),
            _restore_tag_request("arn:aws:ec2:*:*:volume/*"),
            Permission(
                "ec2:RunInstances",
                "arn:aws:ec2:*:*:network-interface/*",
                {f"aws:RequestTag/{RESTORE_TAG}": "*", "ec2:AssociatePublicIpAddress": "false"},
            ),
            # The restore sites' subnets and security groups (Terraform lists them).
            Permission("ec2:RunInstances", "arn:aws:ec2:*:*:subnet/*"),
            Permission("ec2:RunInstances", "arn:aws:ec2:*:*:security-group/*"),
            # The original's instance profile, to EC2 only.
            Permission(
                "iam:PassRole",
                "arn:aws:iam::*:role/*",
                {"iam:PassedToService": "ec2.amazonaws.com"},
            ),
            *(
                Permission("ec2:CreateTags", resource, {"ec2:CreateAction": action})
                for action, resource in (
                    ("RegisterImage", "arn:aws:ec2:*::image/*"),
                    ("RunInstances", "arn:aws:ec2:*:*:instance/*"),
                    ("RunInstances", "arn:aws:ec2:*:*:volume/*"),
                    ("RunInstances", "arn:aws:ec2:*:*:network-interface/*"),
                    ("CreateVolume", "arn:aws:ec2:*:*:volume/*"),
                )
            ),
            # inspect_on: volumes from Quiesce's snapshots, tagged, attached to the named
            # instance.
            Permission(
                "ec2:CreateVolume",
                "arn:aws:ec2:*::snapshot/*",
                {f"aws:ResourceTag/{MANAGED_TAG}": "true"},
            ),
            Permission(
                "ec2:CreateVolume",
                "arn:aws:ec2:*:*:volume/*",
                {f"aws:RequestTag/{RESTORE_TAG}": "*"},
            ),
            _own("ec2:AttachVolume", "arn:aws:ec2:*:*:volume/*"),
            Permission(
                "ec2:AttachVolume",
                "arn:aws:ec2:*:*:instance/*",
                {f"aws:ResourceTag/{INSPECTION_TAG}": "true"},
            ),
        ],
        "wait_ready": [
            Permission("ec2:DescribeInstances", "*"),
            Permission("ssm:DescribeInstanceInformation", "*"),
        ],
        "cleanup": [
            Permission("ec2:DescribeInstances", "*"),
            Permission("ec2:DescribeImages", "*"),
            Permission("ec2:DescribeVolumes", "*"),
            Permission("ec2:DescribeNetworkInterfaces", "*"),
            Permission("ec2:DescribeSnapshots", "*"),
            _own("ec2:TerminateInstances", "arn:aws:ec2:*:*:instance/*"),
            _own("ec2:DeregisterImage", "arn:aws:ec2:*::image/*"),
            _own("ec2:DetachVolume", "arn:aws:ec2:*:*:volume/*"),
            Permission(
                "ec2:DetachVolume",
                "arn:aws:ec2:*:*:instance/*",
                {f"aws:ResourceTag/{INSPECTION_TAG}": "true"},
            ),
            _own("ec2:DeleteVolume", "arn:aws:ec2:*:*:volume/*"),
            _own("ec2:DeleteNetworkInterface", "arn:aws:ec2:*:*:network-interface/*"),
            _own("ec2:DeleteSnapshot", "arn:aws:ec2:*::snapshot/*"),
        ],
        # Verify hooks go to the copies (and an inspection instance) with the run-hook document.
        "verify": [
            Permission("ssm:SendCommand", f"arn:aws:ssm:*:*:document/{RUN_HOOK_DOCUMENT}"),
            Permission(
                "ssm:SendCommand",
                "arn:aws:ec2:*:*:instance/*",
                {f"ssm:resourceTag/{RESTORE_TAG}": "*"},
            ),
            Permission(
                "ssm:SendCommand",
                "arn:aws:ec2:*:*:instance/*",
                {f"ssm:resourceTag/{INSPECTION_TAG}": "true"},
            ),
            Permission("ssm:ListCommandInvocations", "*"),
            Permission("ssm:GetCommandInvocation", "*"),
        ],
    }

    def __init__(
        self,
        clients: ClientFactory,
        *,
        default_region: str | None = None,
        instance_profile: str | None = None,
        backoff: Backoff | None = None,
        poll_interval: float = 5.0,
        terminate_timeout: float = TERMINATE_TIMEOUT_SECONDS,
        available_timeout: float = AVAILABLE_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients = clients
        self.default_region = default_region
        #: The instance profile of every copy (an ARN); None: the original's.
        self.instance_profile = instance_profile
        self.backoff = backoff or Backoff(attempts=6, base=0.25, cap=4.0, sleep=sleep)
        self.poll_interval = poll_interval
        self.terminate_timeout = terminate_timeout
        self.available_timeout = available_timeout
        self.clock = clock
        self.sleep = sleep

    # ------------------------------------------------------------------------------ launch

    def launch(self, request: MachineRestore) -> RestoredMachine:
        member = expect_member(request.spec, AwsMember)
        region = request.region or member.region
        if not request.snapshots:
            raise ProviderError(
                f"member {request.member!r}: no snapshot of {request.machine_id} to restore",
                code="NoSnapshots",
            )
        live = self._live_snapshots(region, request)
        if request.site.inspect_on:
            return self._attach(region, request, live)
        if member.os == "windows":
            raise ProviderError(
                f"member {request.member!r}: {request.machine_id} is a Windows instance; EC2 "
                "cannot start an instance from an image registered on a Windows snapshot. "
                "Restore it with `inspect_on` (its volumes attached to an inspection instance)",
                code="RestoreUnsupported",
            )
        shape = self._shape(member, request, live)
        return self._launch_copy(region, request, live, shape)

    def _live_snapshots(
        self, region: str, request: MachineRestore
    ) -> dict[str, tuple[SnapshotRef, dict[str, Any]]]:
        """Each snapshot as EC2 describes it now: all in `region` and completed, or an error."""
        for ref in request.snapshots:
            where = region_of(ref) or region
            if where != region:
                raise ProviderError(
                    f"snapshot {ref.id} of {request.machine_id} is in {where}, not {region}: a "
                    f"restore in {region} launches from the point's copy there",
                    code="WrongRegion",
                )
        described = self._describe_snapshots(region, [r.id for r in request.snapshots])
        out: dict[str, tuple[SnapshotRef, dict[str, Any]]] = {}
        for ref in request.snapshots:
            item = described.get(ref.id)
            if item is None:
                raise ProviderError(
                    f"snapshot {ref.id} of {request.machine_id} is not in {region} (deleted?)",
                    code="SnapshotNotFound",
                )
            state = str(item.get("State"))
            if state != "completed":
                copy_of = ref.tags.get("quiesce:copy-of")
                what = f"the copy of {copy_of}" if copy_of else "the snapshot"
                progress = item.get("Progress") or "?"
                raise ProviderError(
                    f"snapshot {ref.id} in {region} ({what}) is {state} ({progress}): it can be "
                    "restored once it is completed",
                    code="SnapshotPending",
                )
            out[ref.id] = (ref, item)
        return out

    def _shape(
        self,
        member: AwsMember,
        request: MachineRestore,
        live: dict[str, tuple[SnapshotRef, dict[str, Any]]],
    ) -> Shape:
        """The shape recorded on the snapshots, else the original's (if it still exists)."""
        tags: dict[str, str] = {}
        for ref, item in live.values():
            tags.update(ref.tags)
            tags.update(tag_dict(item.get("Tags")))
        shape = Shape.from_values(tags, "tags")
        volumes = {ref.volume for ref, _ in live.values()}
        if shape is None or not volumes <= set(shape.devices):
            try:
                original = self._describe_instance(member.region, request.machine_id)
            except ProviderError as exc:
                log.warning("could not read %s's shape: %s", request.machine_id, exc)
                original = None
            if original is not None and original.get("State", {}).get("Name") == "terminated":
                original = None  # its volumes are gone with it
            found = (
                None
                if original is None
                else Shape.from_values(instance_attributes(original), "instance")
            )
            if shape is None:
                shape = found
            elif found is not None:
                shape = replace(
                    shape, devices={**found.devices, **shape.devices}, source="tags+instance"
                )
        if shape is None:
            raise ProviderError(
                f"member {request.member!r}: the snapshots of {request.machine_id} do not say "
                "its instance type and root device (taken before Quiesce recorded them), and "
                f"the instance is gone from {member.region}: it cannot be launched; restore it "
                "with `inspect_on`",
                code="UnknownShape",
            )
        missing = sorted(volumes - set(shape.devices))
        if missing:
            raise ProviderError(
                f"member {request.member!r}: the device names of {', '.join(missing)} (volumes "
                f"of {request.machine_id}) are unknown: it cannot be launched; restore it with "
                "`inspect_on`",
                code="UnknownShape",
            )
        return shape

    def _launch_copy(
        self,
        region: str,
        request: MachineRestore,
        live: dict[str, tuple[SnapshotRef, dict[str, Any]]],
        shape: Shape,
    ) -> RestoredMachine:
        ec2 = self.clients.ec2(region)
        mapping = sorted((shape.devices[ref.volume], ref) for ref, _ in live.values())
        if shape.root_device not in {device for device, _ in mapping}:
            raise ProviderError(
                f"member {request.member!r}: the point has no snapshot of the root volume of "
                f"{request.machine_id} ({shape.root_device}; the member excludes the boot "
                "volume?): a copy cannot boot; restore it with `inspect_on`",
                code="NoRootSnapshot",
            )
        devices = [
            {
                "DeviceName": device,
                "Ebs": {
                    "SnapshotId": ref.id,
                    "DeleteOnTermination": True,
                    "VolumeType": RESTORED_VOLUME_TYPE,
                },
            }
            for device, ref in mapping
        ]
        tags = self._tags(request)
        restored = RestoredMachine(
            member=request.member,
            source=request.machine_id,
            machine=Machine(provider=PROVIDER, member=request.member, machine_id=""),
        )
        image: dict[str, Any] = {
            "Name": _image_name(request.label, request.machine_id),
            "Description": (
                f"Quiesce restore {request.label} of {request.machine_id} from {request.point}"
            )[:255],
            "Architecture": shape.architecture,
            "RootDeviceName": shape.root_device,
            "VirtualizationType": "hvm",
            "EnaSupport": shape.ena,
            "BlockDeviceMappings": devices,
            "TagSpecifications": [{"ResourceType": "image", "Tags": tag_list(tags)}],
        }
        if shape.boot_mode:
            image["BootMode"] = shape.boot_mode
        image_id = self._register_image(ec2, region, image, request)
        restored.created.append(image_id)
        self._wait_image(ec2, region, image_id)
        nic: dict[str, Any] = {
            "DeviceIndex": 0,
            "SubnetId": request.site.network,
            "AssociatePublicIpAddress": False,
            "DeleteOnTermination": True,
        }
        if request.site.security_groups:
            nic["Groups"] = list(request.site.security_groups)
        params: dict[str, Any] = {
            "ImageId": image_id,
            "InstanceType": shape.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": f"{request.label}/{request.machine_id}"[:64],
            "NetworkInterfaces": [nic],
            "BlockDeviceMappings": devices,
            "TagSpecifications": [
                {"ResourceType": kind, "Tags": tag_list(tags)}
                for kind in ("instance", "volume", "network-interface")
            ],
        }
        if request.site.zone:
            params["Placement"] = {"AvailabilityZone": request.site.zone}
        profile = self.instance_profile or shape.instance_profile
        passing = ""
        if profile:
            params["IamInstanceProfile"] = (
                {"Arn": profile} if profile.startswith("arn:") else {"Name": profile}
            )
            passing = (
                f"; the copy gets instance profile {profile}, whose role the caller must be "
                "allowed to pass to EC2 (iam:PassRole; infra/aws: restore_instance_roles)"
            )
        answer = self.backoff.call_or_raise(
            lambda: ec2.run_instances(**params),
            retry_on=EC2_THROTTLING,
            what=f"RunInstances of a copy of {request.machine_id}",
            failed=(
                f"member {request.member!r}: RunInstances of a copy of {request.machine_id} "
                f"({shape.instance_type}, subnet {request.site.network}) in {region} failed"
            ),
            code="LaunchFailed",
            hint=f" (image {image_id} is left for the cleanup of {request.label}{passing})",
        )
        (instance,) = answer.get("Instances", [])
        instance_id = str(instance.get("InstanceId"))
        restored.created.append(instance_id)
        restored.created += [
            str(n["NetworkInterfaceId"])
            for n in instance.get("NetworkInterfaces", [])
            if n.get("NetworkInterfaceId")
        ]
        restored.created += _volumes_of(instance)
        restored.machine = Machine(
            provider=PROVIDER,
            member=request.member,
            machine_id=instance_id,
            volumes=tuple(_volumes_of(instance)),
            attributes={
                "region": region,
                "os": "linux",
                "availability_zone": str(instance.get("Placement", {}).get("AvailabilityZone", "")),
                "restore_of": request.machine_id,
                "restore": request.label,
            },
        )
        # No mounts: the copy boots with the original's volumes at their original devices, and
        # its own fstab mounts them where they were; the verify hook checks the application.
        return restored

    def _attach(
        self,
        region: str,
        request: MachineRestore,
        live: dict[str, tuple[SnapshotRef, dict[str, Any]]],
    ) -> RestoredMachine:
        target = str(request.site.inspect_on)
        ec2 = self.clients.ec2(region)
        instance = self._describe_instance(region, target)
        if instance is None or instance.get("State", {}).get("Name") in DEAD_STATES - {"stopped"}:
            raise ProviderError(
                f"the inspection instance {target} is not in {region} (or is terminated)",
                code="InspectionNotFound",
            )
        zone = request.site.zone or str(instance.get("Placement", {}).get("AvailabilityZone"))
        used = {m.get("DeviceName") for m in instance.get("BlockDeviceMappings", [])}
        free = [d for d in ATTACH_DEVICES if d not in used]
        if len(free) < len(live):
            raise ProviderError(
                f"the inspection instance {target} has {len(free)} free device(s) of "
                f"{ATTACH_DEVICES[0]}-{ATTACH_DEVICES[-1]}, {len(live)} volume(s) to attach",
                code="NoFreeDevice",
            )
        tags = self._tags(request)
        restored = RestoredMachine(
            member=request.member,
            source=request.machine_id,
            machine=Machine(
                provider=PROVIDER,
                member=request.member,
                machine_id=target,
                attributes={
                    "region": region,
                    "os": instance_platform(instance),
                    "availability_zone": zone,
                    "restore": request.label,
                },
            ),
        )
        refs = sorted((ref for ref, _ in live.values()), key=lambda r: r.volume)
        for ref, device in zip(refs, free, strict=False):
            try:
                volume = self.backoff.call(
                    lambda ref=ref: ec2.create_volume(  # type: ignore[misc]
                        SnapshotId=ref.id,
                        AvailabilityZone=zone,
                        VolumeType="gp3",
                        ClientToken=f"{request.label}/{ref.id}"[:64],
                        TagSpecifications=[{"ResourceType": "volume", "Tags": tag_list(tags)}],
                    ),
                    retry_on=EC2_THROTTLING,
                    what=f"CreateVolume from {ref.id}",
                )
                volume_id = str(volume["VolumeId"])
                restored.created.append(volume_id)
                self._wait_volume(ec2, region, volume_id)
                self.backoff.call(
                    lambda volume_id=volume_id, device=device: ec2.attach_volume(  # type: ignore[misc]
                        VolumeId=volume_id, InstanceId=target, Device=device
                    ),
                    retry_on=EC2_THROTTLING,
                    what=f"AttachVolume {volume_id}",
                )
            except (ClientError, BotoCoreError) as exc:
                hint = ""
                if error_code(exc) in ("UnauthorizedOperation", "AccessDenied"):
                    hint = f"; the inspection instance must carry {INSPECTION_TAG}=true"
                raise call_failed(
                    f"member {request.member!r}: restoring {ref.id} onto {target} failed",
                    exc,
                    "AttachFailed",
                    f"{hint} (what was made is left for the cleanup of "
                    f"{request.label}: {', '.join(restored.created) or 'nothing'})",
                ) from exc
            restored.mounts[ref.volume] = device
        return restored

    # ------------------------------------------------------------------------------ wait_ready

    def wait_ready(self, restored: RestoredMachine, timeout: float) -> None:
        machine = restored.machine
        region = machine.attributes.get("region") or self._default()
        instance_id = machine.machine_id
        deadline = self.clock() + timeout
        state, ping = "unknown", "not registered"
        while True:
            instance = self._describe_instance(region, instance_id)
            state = str((instance or {}).get("State", {}).get("Name", "gone"))
            if instance is None or state in DEAD_STATES:
                raise ProviderError(
                    f"{instance_id} (the restore of {restored.source}) in {region} is {state}: "
                    "it will not come up by itself",
                    code="NotReady",
                )
            if state == "running" and self._attached(region, restored):
                if "restore_of" in machine.attributes:  # a copy: its volumes, now known
                    restored.created += [
                        v for v in _volumes_of(instance) if v not in restored.created
                    ]
                ping = self._ping(region, instance_id)
                if ping == "Online":
                    return
            if self.clock() >= deadline:
                raise ProviderError(
                    f"{instance_id} (the restore of {restored.source}) in {region} is not ready "
                    f"after {timeout:g}s: instance {state}, SSM agent {ping}. The agent needs "
                    "an instance profile that allows SSM (the original's, recorded with the "
                    "point) and a way to the SSM endpoints from the isolated subnet (VPC "
                    "endpoints for ssm, ssmmessages and ec2messages)",
                    code="NotReady",
                )
            self.sleep(self.poll_interval)

    def _attached(self, region: str, restored: RestoredMachine) -> bool:
        """A copy: always; an inspection instance: once every restored volume is attached."""
        if "restore_of" in restored.machine.attributes or not restored.created:
            return True
        found = self._paged(
            self.clients.ec2(region).describe_volumes,
            "Volumes",
            Filters=[{"Name": "volume-id", "Values": list(restored.created)}],
        )
        attached = {
            str(v["VolumeId"])
            for v in found
            if any(a.get("State") == "attached" for a in v.get("Attachments", []))
        }
        return set(restored.created) <= attached

    def _ping(self, region: str, instance_id: str) -> str:
        ssm = self.clients.ssm(region)
        page = self.backoff.call_or_raise(
            lambda: ssm.describe_instance_information(
                Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
            ),
            retry_on=SSM_THROTTLING,
            what="DescribeInstanceInformation",
            failed=f"DescribeInstanceInformation of {instance_id} in {region} failed",
            code="DescribeFailed",
        )
        for item in page.get("InstanceInformationList", []):
            if item.get("InstanceId") == instance_id:
                return str(item.get("PingStatus") or "unknown")
        return "not registered"

    # ------------------------------------------------------------------------------ cleanup

    def cleanup(self, label: str, regions: Sequence[str | None]) -> Cleanup:
        done = Cleanup()
        seen: set[str] = set()
        for wanted in regions or [None]:
            region = wanted or self._default()
            if region in seen:
                continue
            seen.add(region)
            self._cleanup_region(label, region, done)
        return done

    def _cleanup_region(self, label: str, region: str, done: Cleanup) -> None:
        ec2 = self.clients.ec2(region)
        tag: list[FilterTypeDef] = [{"Name": f"tag:{RESTORE_TAG}", "Values": [label]}]
        # 1. Instances (their volumes and network interfaces go with them).
        instances = [
            i
            for r in self._paged(ec2.describe_instances, "Reservations", Filters=tag)
            for i in _labelled(r.get("Instances", []), label)
            if i.get("State", {}).get("Name") != "terminated"
        ]
        ids = sorted(str(i["InstanceId"]) for i in instances)
        for batch in chunks(ids, 100):
            if not self._act(
                done, batch, partial(ec2.terminate_instances, InstanceIds=batch), "terminate"
            ):
                ids = [i for i in ids if i not in batch]
        if ids:
            still = self._wait_terminated(ec2, region, ids)
            for instance_id in ids:
                if instance_id in still:
                    done.left.append(
                        f"{instance_id} ({region}): still {still[instance_id]} after "
                        f"{self.terminate_timeout:g}s; run the cleanup of {label} again"
                    )
                else:
                    done.deleted.append(instance_id)
        # 2. Images (never their snapshots: those are the point's).
        images = _labelled(
            self._paged(ec2.describe_images, "Images", Owners=["self"], Filters=tag), label
        )
        self._remove_each(
            done, [str(i["ImageId"]) for i in images], ec2.deregister_image, "ImageId", "deregister"
        )
        # 3. Volumes: detached from an inspection instance, then deleted.
        volumes = _labelled(self._paged(ec2.describe_volumes, "Volumes", Filters=tag), label)
        detached = []
        for volume in volumes:
            volume_id = str(volume["VolumeId"])
            if volume.get("State") == "deleting":
                done.deleted.append(volume_id)
                continue
            if volume.get("State") == "in-use" and self._act(
                done,
                [volume_id],
                partial(ec2.detach_volume, VolumeId=volume_id, **_attachment(volume)),  # type: ignore[arg-type]
                "detach",
            ):
                detached.append(volume_id)
            elif volume.get("State") == "in-use":
                continue
        if detached:
            self._wait_volumes_available(ec2, region, detached)
        deletable = [
            str(v["VolumeId"])
            for v in volumes
            if v.get("State") != "deleting"
            and (v.get("State") != "in-use" or str(v["VolumeId"]) in detached)
        ]
        self._remove_each(done, deletable, ec2.delete_volume, "VolumeId", "delete")
        # 4. Network interfaces left over (a launch that failed after creating one).
        nics = _labelled(
            self._paged(ec2.describe_network_interfaces, "NetworkInterfaces", Filters=tag),
            label,
            tags_key="TagSet",
        )
        self._remove_each(
            done,
            [str(n["NetworkInterfaceId"]) for n in nics],
            ec2.delete_network_interface,
            "NetworkInterfaceId",
            "delete",
        )
        listed = {str(v["VolumeId"]) for v in volumes}
        listed |= {str(n["NetworkInterfaceId"]) for n in nics}
        # Those deleted with their instance (DeleteOnTermination) are listed no more.
        terminated = set(done.deleted)
        done.deleted += sorted(
            {p for i in instances if str(i["InstanceId"]) in terminated for p in _parts(i)} - listed
        )
        # 5. Snapshots a restore made (none of the point's: they carry no restore tag).
        snapshots = _labelled(
            self._paged(ec2.describe_snapshots, "Snapshots", OwnerIds=["self"], Filters=tag), label
        )
        self._remove_each(
            done,
            [str(s["SnapshotId"]) for s in snapshots],
            ec2.delete_snapshot,
            "SnapshotId",
            "delete",
        )

    def _remove_each(
        self,
        done: Cleanup,
        ids: list[str],
        operation: Callable[..., Any],
        parameter: str,
        verb: str,
    ) -> None:
        """`operation` on each resource of `ids` (named by `parameter`), one call each:
        what is done goes to `deleted`, what fails to `left`."""
        for resource_id in ids:
            if self._act(done, [resource_id], partial(operation, **{parameter: resource_id}), verb):
                done.deleted.append(resource_id)

    def _act(self, done: Cleanup, ids: list[str], call: Callable[[], Any], verb: str) -> bool:
        """One cleanup call; a failure goes to `left` with its reason. True: it was done (or
        the resource is gone already)."""
        try:
            self.backoff.call(call, retry_on=EC2_THROTTLING, what=f"{verb} {', '.join(ids)}")
        except (ClientError, BotoCoreError) as exc:
            if re.search(r"NotFound|\.Unavailable$", error_code(exc) or ""):
                return True
            done.left.extend(f"{i}: could not {verb} it: {error_message(exc)}" for i in ids)
            return False
        return True

    # ------------------------------------------------------------------------------ helpers

    def _tags(self, request: MachineRestore) -> dict[str, str]:
        return {
            RESTORE_TAG: request.label,
            RESTORE_OF_TAG: request.machine_id,
            RESTORED_FROM_TAG: request.point,
            "quiesce:member": request.member,
            "Name": f"quiesce {request.label} {request.machine_id}"[:255],
        }

    def _default(self) -> str:
        if not self.default_region:
            raise ProviderError(
                "no region to restore in: set QUIESCE_REGION (or AWS_REGION)",
                code="UnknownRegion",
            )
        return self.default_region

    def _register_image(
        self, ec2: EC2Client, region: str, image: dict[str, Any], request: MachineRestore
    ) -> str:
        try:
            answer = self.backoff.call(
                lambda: ec2.register_image(**image),
                retry_on=EC2_THROTTLING,
                what=f"RegisterImage for {request.machine_id}",
            )
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "InvalidAMIName.Duplicate":
                # Registered by an earlier attempt of this restore: the same image.
                found = self._paged(
                    ec2.describe_images,
                    "Images",
                    Owners=["self"],
                    Filters=[{"Name": "name", "Values": [image["Name"]]}],
                )
                if found:
                    return str(found[0]["ImageId"])
            raise call_failed(
                f"member {request.member!r}: RegisterImage on the snapshots of "
                f"{request.machine_id} in {region} failed",
                exc,
                "RegisterFailed",
            ) from exc
        return str(answer["ImageId"])

    def _wait_image(self, ec2: EC2Client, region: str, image_id: str) -> None:
        deadline = self.clock() + self.available_timeout
        while True:
            images = self._paged(ec2.describe_images, "Images", ImageIds=[image_id])
            state = str(images[0].get("State")) if images else "gone"
            if state == "available":
                return
            if state in ("failed", "invalid", "deregistered", "gone", "error"):
                raise ProviderError(
                    f"the image {image_id} registered in {region} is {state}",
                    code="ImageFailed",
                )
            if self.clock() >= deadline:
                raise ProviderError(
                    f"the image {image_id} in {region} is still {state} after "
                    f"{self.available_timeout:g}s",
                    code="ImageFailed",
                )
            self.sleep(self.poll_interval)

    def _wait_volume(self, ec2: EC2Client, region: str, volume_id: str) -> None:
        self._wait_volumes_available(ec2, region, [volume_id], strict=True)

    def _wait_volumes_available(
        self, ec2: EC2Client, region: str, volume_ids: list[str], *, strict: bool = False
    ) -> None:
        deadline = self.clock() + self.available_timeout
        while True:
            found = self._paged(
                ec2.describe_volumes,
                "Volumes",
                Filters=[{"Name": "volume-id", "Values": volume_ids}],
            )
            states = {str(v["VolumeId"]): str(v.get("State")) for v in found}
            waiting = [v for v in volume_ids if states.get(v) not in ("available", None)]
            if "error" in states.values() and strict:
                raise ProviderError(
                    f"volume {volume_ids[0]} in {region} failed", code="VolumeFailed"
                )
            if not waiting:
                return
            if self.clock() >= deadline:
                if strict:
                    raise ProviderError(
                        f"volume {', '.join(waiting)} in {region} is not available after "
                        f"{self.available_timeout:g}s",
                        code="VolumeFailed",
                    )
                return  # deleting them reports why
            self.sleep(self.poll_interval)

    def _wait_terminated(self, ec2: EC2Client, region: str, ids: list[str]) -> dict[str, str]:
        """Waits until the instances are terminated; returns those that are not, with state."""
        deadline = self.clock() + self.terminate_timeout
        while True:
            states = {
                str(i["InstanceId"]): str(i.get("State", {}).get("Name"))
                for r in self._paged(ec2.describe_instances, "Reservations", InstanceIds=ids)
                for i in r.get("Instances", [])
            }
            left = {i: s for i, s in states.items() if s != "terminated"}
            if not left or self.clock() >= deadline:
                return left
            self.sleep(self.poll_interval)

    def _describe_instance(self, region: str, instance_id: str) -> InstanceTypeDef | None:
        ec2 = self.clients.ec2(region)
        reservations = self._paged(
            ec2.describe_instances,
            "Reservations",
            Filters=[{"Name": "instance-id", "Values": [instance_id]}],
        )
        for reservation in reservations:
            for instance in reservation.get("Instances", []):
                if instance.get("InstanceId") == instance_id:
                    found: InstanceTypeDef = instance
                    return found
        return None

    def _describe_snapshots(self, region: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        ec2 = self.clients.ec2(region)
        out: dict[str, dict[str, Any]] = {}
        for batch in chunks(ids, 100):
            for item in self._paged(
                ec2.describe_snapshots,
                "Snapshots",
                OwnerIds=["self"],
                Filters=[{"Name": "snapshot-id", "Values": batch}],
            ):
                out[str(item["SnapshotId"])] = dict(item)
        return out

    def _paged(self, operation: Callable[..., Any], key: str, **kwargs: Any) -> list[Any]:
        """Every item of a describe call's pages (a failure is a ProviderError)."""
        name = getattr(operation, "__name__", "describe")
        return self.backoff.pages(
            operation,
            kwargs,
            key,
            retry_on=EC2_THROTTLING,
            what=name,
            failed=f"{name} failed",
            code="DescribeFailed",
        )


def _labelled(items: list[Any], label: str, *, tags_key: str = "Tags") -> list[Any]:
    """The described resources that carry quiesce:restore=`label` (whatever the filter let
    through)."""
    return [i for i in items if tag_dict(i.get(tags_key)).get(RESTORE_TAG) == label]


def _attachment(volume: Any) -> dict[str, str]:
    """The instance and device a volume is attached to (DetachVolume names them)."""
    for attachment in volume.get("Attachments", []):
        if attachment.get("InstanceId"):
            return {
                "InstanceId": str(attachment["InstanceId"]),
                "Device": str(attachment["Device"]),
            }
    return {}


def _parts(instance: Any) -> set[str]:
    """The volumes and network interfaces of a described instance."""
    nics = {str(n.get("NetworkInterfaceId")) for n in instance.get("NetworkInterfaces", [])}
    return set(_volumes_of(instance)) | nics


def _volumes_of(instance: Any) -> list[str]:
    return [
        str(m["Ebs"]["VolumeId"])
        for m in instance.get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("VolumeId")
    ]


def _image_name(label: str, machine_id: str) -> str:
    """An AMI name (3-128 of letters, digits, ()[] ./-'@_), one per restore and instance."""
    return re.sub(r"[^A-Za-z0-9()\[\] ./'@_-]", "-", f"quiesce-{label}-{machine_id}")[:128]
