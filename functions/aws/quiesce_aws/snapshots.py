"""EBS snapshots: every volume of an instance at one point in time, tagged as Quiesce's own.

Linux members: one CreateSnapshots call per instance (InstanceSpecification: all its EBS volumes,
crash-consistent across them, the root left out if the member says so). The point in time is
fixed when the call returns, so `take` returns then, with every snapshot `pending`; EBS copies
the data afterwards while the instance keeps running, and `wait_durable` polls DescribeSnapshots
until they are `completed`.

Windows members: `take` runs the AWS-owned AWSEC2-CreateVssSnapshot document through SSM, which
freezes the volumes with VSS (writers hold for at most 10 s), calls CreateSnapshots on the
instance, thaws and tags the snapshots; it tags each with `AppConsistent` (true when VSS
succeeded), which becomes the snapshot's consistency.

Every snapshot carries quiesce:managed=true and its policy, group, run, recovery point, member,
machine and expected consistency. `find` lists by these tags (own snapshots only); `delete`
re-reads the tags from EC2 and refuses any snapshot not tagged quiesce:managed=true. Each also
carries quiesce:availability-zone, the instance's zone: a restore in the cloud
(`plan_cloud_restore` / `cloud_restore`) creates a volume from each snapshot there (CreateVolume),
next to where the instance ran, tagged quiesce:restored-from with the recovery point.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError

from quiesce.durability import PollsDurability
from quiesce.errors import ProviderError
from quiesce.ports import CloudRestore, Machine, RestoreStep, SnapshotCall, Snapshotter
from quiesce.providers.registry import expect_member
from quiesce.record import Consistency, SnapshotRef, SnapshotState, utcnow
from quiesce.tags import MANAGED_TAG, snapshot_tags
from quiesce_aws.answers import arn_region, aware
from quiesce_aws.clients import ClientFactory, chunks
from quiesce_aws.copies import COPY_PERMISSIONS, copy_snapshot
from quiesce_aws.member import AwsMember
from quiesce_aws.permissions import Permission
from quiesce_aws.retry import (
    EC2_THROTTLING,
    SNAPSHOT_LIMITS,
    SSM_THROTTLING,
    Backoff,
    call_failed,
    error_code,
)
from quiesce_aws.shape import shape_tags
from quiesce_aws.tagging import own_tags, tag_dict, tag_list

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, SnapshotTypeDef

log = logging.getLogger(__name__)

PROVIDER = "aws"
GIB = 1024**3
#: The tag of the instances Quiesce may snapshot and send hooks to (infra/aws instance_tag).
INSTANCE_TAG = "quiesce:enabled"
VSS_DOCUMENT = "AWSEC2-CreateVssSnapshot"
#: The tag AWSEC2-CreateVssSnapshot sets: true when VSS froze the writers for the snapshot.
APP_CONSISTENT_TAG = "AppConsistent"
#: How long a VSS snapshot command may take (it may first install AwsVssComponents).
VSS_TIMEOUT_SECONDS = 900.0
DESCRIBE_BATCH = 100
#: The instance's Availability Zone, on each of its snapshots (a restore creates volumes there).
AZ_TAG = "quiesce:availability-zone"
RESTORED_FROM_TAG = "quiesce:restored-from"
#: The type of a restored volume (a snapshot does not keep its volume's; change it afterwards
#: with ModifyVolume if the original was another).
RESTORED_VOLUME_TYPE = "gp3"

STATES = {
    "pending": SnapshotState.PENDING,
    "completed": SnapshotState.COMPLETED,
    "error": SnapshotState.FAILED,
    "recoverable": SnapshotState.FAILED,
    "recovering": SnapshotState.PENDING,
}

DESCRIBE = Permission("ec2:DescribeSnapshots", "*")  # no resource-level permissions


def snapshot_arn(region: str, snapshot_id: str) -> str:
    return f"arn:aws:ec2:{region}::snapshot/{snapshot_id}"


def region_of(ref: SnapshotRef) -> str | None:
    """The region in a snapshot's ARN (its `location`)."""
    return arn_region(ref.location, "ec2")


class EbsSnapshotter(PollsDurability, Snapshotter):
    """The Snapshotter port over EBS: CreateSnapshots, or AWSEC2-CreateVssSnapshot on Windows."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "take": [
            # Only instances that carry the Quiesce instance tag (the call always names one);
            # volumes cannot be tied to their instance in a policy.
            Permission(
                "ec2:CreateSnapshots",
                "arn:aws:ec2:*:*:instance/*",
                {f"aws:ResourceTag/{INSTANCE_TAG}": "true"},
            ),
            Permission("ec2:CreateSnapshots", "arn:aws:ec2:*:*:volume/*"),
            Permission(
                "ec2:CreateSnapshots",
                "arn:aws:ec2:*::snapshot/*",
                {f"aws:RequestTag/{MANAGED_TAG}": "true"},
            ),
            Permission(
                "ec2:CreateTags",
                "arn:aws:ec2:*::snapshot/*",
                {"ec2:CreateAction": "CreateSnapshots"},
            ),
            # Windows members: the VSS document (it snapshots with the instance's own role).
            Permission("ssm:SendCommand", f"arn:aws:ssm:*::document/{VSS_DOCUMENT}"),
            Permission(
                "ssm:SendCommand",
                "arn:aws:ec2:*:*:instance/*",
                {f"ssm:resourceTag/{INSTANCE_TAG}": "true"},
            ),
            Permission("ssm:ListCommandInvocations", "*"),
            Permission("ssm:GetCommandInvocation", "*"),
            DESCRIBE,
        ],
        "wait_durable": [DESCRIBE],
        "delete": [
            DESCRIBE,
            Permission(
                "ec2:DeleteSnapshot",
                "arn:aws:ec2:*::snapshot/*",
                {f"aws:ResourceTag/{MANAGED_TAG}": "true"},
            ),
        ],
        "find": [DESCRIBE],
        "copy_to_region": COPY_PERMISSIONS,
    }

    #: What whoever runs `quiesce restore --in-cloud --execute` needs (not the functions: they
    #: never restore): volumes only from Quiesce's snapshots, tagged as restored ones.
    RESTORE_PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "check": [DESCRIBE],
        "cloud_restore": [
            Permission(
                "ec2:CreateVolume",
                "arn:aws:ec2:*::snapshot/*",
                {f"aws:ResourceTag/{MANAGED_TAG}": "true"},
            ),
            Permission(
                "ec2:CreateVolume",
                "arn:aws:ec2:*:*:volume/*",
                {f"aws:RequestTag/{RESTORED_FROM_TAG}": "*"},
            ),
            Permission(
                "ec2:CreateTags",
                "arn:aws:ec2:*:*:volume/*",
                {"ec2:CreateAction": "CreateVolume"},
            ),
        ],
    }

    def __init__(
        self,
        clients: ClientFactory,
        *,
        regions: Mapping[str, Sequence[str]] | None = None,
        default_region: str | None = None,
        backoff: Backoff | None = None,
        poll_interval: float = 5.0,
        vss_poll_interval: float = 2.0,
        vss_timeout: float = VSS_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients = clients
        self.regions = dict(regions or {})  # by group: where `find` looks
        self.default_region = default_region
        self.backoff = backoff or Backoff(attempts=6, base=0.25, cap=4.0, sleep=sleep)
        self.poll_interval = poll_interval
        self.vss_poll_interval = vss_poll_interval
        self.vss_timeout = vss_timeout
        self.clock = clock
        self.sleep = sleep

    # ------------------------------------------------------------------------------ the port

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        region = call.machine.attributes.get("region") or _member(call).region
        tags = snapshot_tags(call)
        zone = call.machine.attributes.get("availability_zone")
        if zone:
            tags[AZ_TAG] = zone
        # The instance's shape, so a restore can launch a copy without the original.
        tags.update(shape_tags(call.machine.attributes))
        if self._is_windows(call):
            return self._take_vss(call, region, tags)
        ec2 = self.clients.ec2(region)
        instance_id = call.machine.machine_id
        spec: dict[str, Any] = {
            "InstanceId": instance_id,
            "ExcludeBootVolume": self._exclude_boot(call),
        }
        started = utcnow()
        try:
            response = self.backoff.call(
                lambda: ec2.create_snapshots(
                    InstanceSpecification=spec,  # type: ignore[arg-type]
                    Description=self._description(call),
                    TagSpecifications=[
                        {
                            "ResourceType": "snapshot",
                            "Tags": tag_list(tags),
                        }
                    ],
                ),
                retry_on=EC2_THROTTLING | SNAPSHOT_LIMITS,
                what=f"CreateSnapshots of {instance_id}",
            )
        except (ClientError, BotoCoreError) as exc:
            code = error_code(exc) or "CreateSnapshotsFailed"
            hint = ""
            if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
                hint = (
                    f"; the role may snapshot only instances tagged {INSTANCE_TAG}=true "
                    "(infra/aws instance_tag): tag every instance of the member"
                )
            raise call_failed(
                f"member {call.member!r}: CreateSnapshots of {instance_id} in {region} failed",
                exc,
                code,
                hint,
            ) from exc
        fixed = utcnow()
        snapshots = response.get("Snapshots", [])
        if not snapshots:
            raise ProviderError(
                f"member {call.member!r}: CreateSnapshots of {instance_id} returned no snapshot "
                "(no EBS volume attached, or only the excluded boot volume)",
                code="NoVolumes",
            )
        refs = [
            SnapshotRef(
                id=str(s.get("SnapshotId")),
                provider=PROVIDER,
                machine_id=instance_id,
                volume=str(s.get("VolumeId", "")),
                method="ebs",
                state=SnapshotState.PENDING,
                started_at=started,
                fixed_at=fixed,
                size_bytes=int(s["VolumeSize"]) * GIB if s.get("VolumeSize") is not None else None,
                location=snapshot_arn(region, str(s.get("SnapshotId"))),
                tags=dict(tags),
            )
            for s in snapshots
        ]
        missing = set(call.machine.volumes) - {r.volume for r in refs}
        if missing:
            log.warning(
                "%s: CreateSnapshots did not snapshot %s (detached since the run resolved it?)",
                instance_id,
                ", ".join(sorted(missing)),
            )
        return sorted(refs, key=lambda r: r.volume)

    def states(self, pending: Sequence[SnapshotRef]) -> dict[str, SnapshotState]:
        """One DescribeSnapshots per region (batched): a snapshot that is gone has failed."""
        states: dict[str, SnapshotState] = {}
        for region, refs in self._by_region(pending).items():
            seen = self._describe_ids(region, [r.id for r in refs])
            for ref in refs:
                found = seen.get(ref.id)
                states[ref.id] = (
                    SnapshotState.FAILED
                    if found is None
                    else STATES.get(str(found.get("State")), SnapshotState.PENDING)
                )
        return states

    def delete(self, snapshot: SnapshotRef) -> None:
        region = self._region(snapshot)
        live = self._describe_ids(region, [snapshot.id]).get(snapshot.id)
        if live is None:
            return  # gone already
        tags = tag_dict(live.get("Tags"))
        if tags.get(MANAGED_TAG) != "true":
            raise ProviderError(
                f"refusing to delete snapshot {snapshot.id} in {region}: it is not tagged "
                f"{MANAGED_TAG}=true, so Quiesce did not make it",
                code="NotManaged",
            )
        ec2 = self.clients.ec2(region)
        try:
            self.backoff.call(
                lambda: ec2.delete_snapshot(SnapshotId=snapshot.id),
                retry_on=EC2_THROTTLING,
                what=f"DeleteSnapshot {snapshot.id}",
            )
        except ClientError as exc:
            if error_code(exc) == "InvalidSnapshot.NotFound":
                return
            raise call_failed(
                f"could not delete snapshot {snapshot.id} in {region}",
                exc,
                "DeleteFailed",
            ) from exc

    def check(self, snapshot: SnapshotRef) -> None:
        """Raises unless the snapshot is still there and completed: before a restore creates
        anything (quiesce.restore.check_complete), so one deleted since is refused by name."""
        region = self._region(snapshot)
        live = self._describe_ids(region, [snapshot.id]).get(snapshot.id)
        state = str((live or {}).get("State") or "")
        if live is None or state != "completed":
            raise ProviderError(
                f"{snapshot.id}: the EBS snapshot is "
                f"{'gone' if live is None else state or 'in an unknown state'} in {region}",
                code="NotRestorable",
            )

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        wanted = own_tags(policy, group, run_id)
        filters: list[FilterTypeDef] = [
            {"Name": f"tag:{k}", "Values": [v]} for k, v in wanted.items()
        ]
        found: list[SnapshotRef] = []
        regions = self.regions.get(group) or ([self.default_region] if self.default_region else [])
        for region in regions:
            for item in self._describe(region, filters):
                found.append(self._ref(region, item))
        return sorted(found, key=lambda r: (r.started_at, r.id))

    def describe(self, machine: Machine) -> dict[str, str]:
        method = "ebs-vss" if machine.attributes.get("os") == "windows" else "ebs"
        return {volume: method for volume in machine.volumes}

    # ------------------------------------------------------------------------------ copies

    def copy_to_region(
        self, snapshot: SnapshotRef, region: str, key: str | None, tags: dict[str, str]
    ) -> SnapshotRef:
        """CopySnapshot in `region` from the snapshot's own region (quiesce_aws.copies)."""
        return copy_snapshot(
            self.clients.ec2(region),
            snapshot,
            source_region=self._region(snapshot),
            region=region,
            key=key,
            tags=tags,
            backoff=self.backoff,
            arn=lambda replica: snapshot_arn(region, replica),
        )

    # ------------------------------------------------------------------------------ restore

    def plan_cloud_restore(self, request: CloudRestore) -> RestoreStep:
        """CreateVolume from the snapshot in the instance's Availability Zone (or `zone`)."""
        region, params = self._volume_params(request)
        tags = ",".join(
            f"{{Key={t['Key']},Value={t['Value']}}}" for t in params["TagSpecifications"][0]["Tags"]
        )
        command = shlex.join(
            [
                "aws",
                "ec2",
                "create-volume",
                "--region",
                region,
                "--snapshot-id",
                params["SnapshotId"],
                "--availability-zone",
                params["AvailabilityZone"],
                "--volume-type",
                params["VolumeType"],
                "--tag-specifications",
                f"ResourceType=volume,Tags=[{tags}]",
            ]
        )
        return RestoreStep(
            member=request.member,
            snapshot=request.snapshot.id,
            action="CreateVolume",
            parameters={
                "region": region,
                "SnapshotId": params["SnapshotId"],
                "AvailabilityZone": params["AvailabilityZone"],
                "VolumeType": params["VolumeType"],
            },
            command=command,
        )

    def cloud_restore(self, request: CloudRestore) -> RestoreStep:
        step = self.plan_cloud_restore(request)
        region, params = self._volume_params(request)
        ec2 = self.clients.ec2(region)
        # The client token makes a repeated call create one volume.
        volume = self.backoff.call_or_raise(
            lambda: ec2.create_volume(**params),
            retry_on=EC2_THROTTLING,
            what=f"CreateVolume from {request.snapshot.id}",
            failed=(
                f"CreateVolume from snapshot {request.snapshot.id} in "
                f"{params['AvailabilityZone']} failed"
            ),
            code="RestoreFailed",
        )
        step.created.append(str(volume.get("VolumeId", "")))
        return step

    def _volume_params(self, request: CloudRestore) -> tuple[str, dict[str, Any]]:
        ref = request.snapshot
        region = self._region(ref)
        zone = request.zone or ref.tags.get(AZ_TAG)
        if not zone:
            raise ProviderError(
                f"snapshot {ref.id}: the Availability Zone of its instance was not recorded "
                "with it; name the zone to restore it in",
                code="UnknownZone",
            )
        if not zone.startswith(region):
            raise ProviderError(
                f"snapshot {ref.id} is in {region}: {zone!r} is not one of its Availability "
                "Zones (copy the snapshot to another region first)",
                code="RestoreUnsupported",
            )
        tags = {
            RESTORED_FROM_TAG: request.point,
            "quiesce:member": request.member,
            "quiesce:volume": ref.volume,
            "Name": request.name,
        }
        return region, {
            "SnapshotId": ref.id,
            "AvailabilityZone": zone,
            "VolumeType": RESTORED_VOLUME_TYPE,
            "ClientToken": f"{request.point}/{ref.id}"[:64],
            "TagSpecifications": [
                {
                    "ResourceType": "volume",
                    "Tags": tag_list(tags),
                }
            ],
        }

    # ------------------------------------------------------------------------------ Windows

    def _take_vss(self, call: SnapshotCall, region: str, tags: dict[str, str]) -> list[SnapshotRef]:
        """AWSEC2-CreateVssSnapshot on the instance, then its snapshots, found by their tags."""
        instance_id = call.machine.machine_id
        bad = [f"{k}={v}" for k, v in tags.items() if any(c in v for c in ",;=")]
        if bad:
            raise ProviderError(
                f"member {call.member!r}: cannot pass tags {bad} to {VSS_DOCUMENT} (its tags "
                "parameter separates with ',', ';' and '=')",
                code="BadTag",
            )
        ssm = self.clients.ssm(region)
        exclude = self._exclude_boot(call)
        parameters = {
            "ExcludeBootVolume": ["True" if exclude else "False"],
            "CreateAmi": ["False"],
            "CopyOnly": ["False"],
            "NoWriters": ["False"],
            "description": [self._description(call)],
            "tags": [";".join(f"Key={k},Value={v}" for k, v in tags.items())],
        }
        started = utcnow()
        response = self.backoff.call_or_raise(
            lambda: ssm.send_command(
                DocumentName=VSS_DOCUMENT,
                InstanceIds=[instance_id],
                Parameters=parameters,
                TimeoutSeconds=30,
                Comment=f"quiesce vss {call.run_id} {call.member}"[:100],
            ),
            retry_on=SSM_THROTTLING,
            what=f"SendCommand of {VSS_DOCUMENT}",
            failed=f"member {call.member!r}: could not send {VSS_DOCUMENT} to {instance_id}",
            code="VssFailed",
        )
        command_id = str(response["Command"]["CommandId"])
        status, output = self._wait_command(ssm, command_id, instance_id)
        if status != "Success":
            raise ProviderError(
                f"member {call.member!r}: {VSS_DOCUMENT} on {instance_id} ended {status} "
                f"(command {command_id}): {output.strip()[-1500:]}",
                code="VssFailed",
            )
        filters: list[FilterTypeDef] = [
            {"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]},
            {"Name": "tag:quiesce:run-id", "Values": [call.run_id]},
            {"Name": "tag:quiesce:machine", "Values": [instance_id]},
        ]
        # Reported pending like any new snapshot: wait_durable confirms completion.
        refs = [
            self._ref(region, item, method="ebs-vss").model_copy(
                update={"started_at": started, "state": SnapshotState.PENDING, "durable_at": None}
            )
            for item in self._describe(region, filters)
        ]
        if not refs:
            raise ProviderError(
                f"member {call.member!r}: {VSS_DOCUMENT} succeeded on {instance_id} but no "
                f"snapshot tagged quiesce:run-id={call.run_id} was found",
                code="VssFailed",
            )
        return sorted(refs, key=lambda r: r.volume)

    def _wait_command(self, ssm: Any, command_id: str, instance_id: str) -> tuple[str, str]:
        """Polls the VSS command until it ends: (status, its output)."""
        deadline = self.clock() + self.vss_timeout
        use_list = True
        while True:
            status, output = "Pending", ""
            if use_list:
                try:
                    page = self.backoff.call(
                        lambda: ssm.list_command_invocations(
                            CommandId=command_id, InstanceId=instance_id, Details=True
                        ),
                        retry_on=SSM_THROTTLING,
                        what="ListCommandInvocations",
                    )
                    items = page.get("CommandInvocations", [])
                    if items:
                        status = str(items[0].get("Status", "Pending"))
                        output = "\n".join(
                            str(p.get("Output") or "") for p in items[0].get("CommandPlugins", [])
                        )
                except (NotImplementedError, ClientError) as exc:
                    log.info("ListCommandInvocations unavailable (%s): using Get", exc)
                    use_list = False
            if not use_list:
                try:
                    item = self.backoff.call(
                        lambda: ssm.get_command_invocation(
                            CommandId=command_id, InstanceId=instance_id
                        ),
                        retry_on=SSM_THROTTLING,
                        what="GetCommandInvocation",
                    )
                    status = str(item.get("Status", "Pending"))
                    output = str(item.get("StandardOutputContent") or "") + str(
                        item.get("StandardErrorContent") or ""
                    )
                except ClientError as exc:
                    if error_code(exc) != "InvocationDoesNotExist":
                        raise
            if status not in ("Pending", "InProgress", "Delayed", "Cancelling"):
                return status, output
            if self.clock() >= deadline:
                return "TimedOut", f"no result within {self.vss_timeout:g}s"
            self.sleep(self.vss_poll_interval)

    # ------------------------------------------------------------------------------ helpers

    @staticmethod
    def _is_windows(call: SnapshotCall) -> bool:
        return "windows" in (call.machine.attributes.get("os"), _member(call).os)

    @staticmethod
    def _exclude_boot(call: SnapshotCall) -> bool:
        flag = call.machine.attributes.get("exclude_boot_volume")
        if flag is not None:
            return flag == "true"
        return _member(call).exclude_boot_volume

    @staticmethod
    def _description(call: SnapshotCall) -> str:
        return (
            f"Quiesce {call.policy}/{call.group} run {call.run_id} member {call.member} "
            f"({call.machine.machine_id})"
        )[:255]

    def _region(self, ref: SnapshotRef) -> str:
        region = region_of(ref) or self.default_region
        if not region:
            raise ProviderError(
                f"snapshot {ref.id}: its region is unknown (no ARN in its location)",
                code="UnknownRegion",
            )
        return region

    def _by_region(self, refs: Sequence[SnapshotRef]) -> dict[str, list[SnapshotRef]]:
        out: dict[str, list[SnapshotRef]] = defaultdict(list)
        for ref in refs:
            out[self._region(ref)].append(ref)
        return out

    def _describe_ids(self, region: str, ids: Sequence[str]) -> dict[str, SnapshotTypeDef]:
        """The snapshots of `ids` that exist (a filter, so a missing id is no error)."""
        found: dict[str, SnapshotTypeDef] = {}
        for batch in chunks(ids, DESCRIBE_BATCH):
            for item in self._describe(region, [{"Name": "snapshot-id", "Values": batch}]):
                found[str(item.get("SnapshotId"))] = item
        return found

    def _describe(self, region: str, filters: list[FilterTypeDef]) -> list[SnapshotTypeDef]:
        ec2: EC2Client = self.clients.ec2(region)
        found: list[SnapshotTypeDef] = self.backoff.pages(
            ec2.describe_snapshots,
            {"OwnerIds": ["self"], "Filters": filters, "MaxResults": 1000},
            "Snapshots",
            retry_on=EC2_THROTTLING,
            what="DescribeSnapshots",
            failed=f"DescribeSnapshots in {region} failed",
            code="DescribeFailed",
        )
        return found

    def _ref(
        self,
        region: str,
        item: SnapshotTypeDef,
        *,
        method: str = "ebs",
    ) -> SnapshotRef:
        """A SnapshotRef of a described snapshot (its StartTime is its point in time)."""
        tags = tag_dict(item.get("Tags"))
        reported: Consistency | None = None
        if APP_CONSISTENT_TAG in tags:
            consistent = tags[APP_CONSISTENT_TAG].lower() == "true"
            reported = Consistency.APPLICATION if consistent else Consistency.CRASH
            tags["quiesce:consistency"] = reported.value
            method = "ebs-vss"
        start = aware(item.get("StartTime")) or utcnow()
        state = STATES.get(str(item.get("State")), SnapshotState.PENDING)
        size = item.get("VolumeSize")
        return SnapshotRef(
            id=str(item.get("SnapshotId")),
            provider=PROVIDER,
            machine_id=tags.get("quiesce:machine", ""),
            volume=str(item.get("VolumeId", "")),
            method=method,
            state=state,
            started_at=start,
            fixed_at=start,
            size_bytes=int(size) * GIB if size is not None else None,
            location=snapshot_arn(region, str(item.get("SnapshotId"))),
            tags=tags,
            reported_consistency=reported,
        )


def _member(call: SnapshotCall) -> AwsMember:
    return expect_member(call.spec, AwsMember)
