"""EFS file systems as members of a group's recovery point, through AWS Backup.

EFS has no snapshot. The only backup AWS offers is an AWS Backup job, which copies the file
system file by file over minutes (hours for large ones) while it keeps changing: its content
is not the file system at any one instant. So the reference is recorded with `point="copy"`,
reported `none` (files from different instants: neither application- nor crash-consistent,
whatever the hooks held), with a note that says why; a group with an EFS member therefore
records its point `none` as a whole (status degraded), while its other members keep their own
level. Taken inside the freeze like the other members, the job at least
starts while the application is held.

`take` calls StartBackupJob on the file system's ARN (with an idempotency token, so a retried
call starts one job) and tags the recovery point as Quiesce's own (RecoveryPointTags);
`wait_durable` polls DescribeBackupJob until the job is COMPLETED; `delete` deletes only a
recovery point that carries quiesce:managed=true and that no backup plan made (an automated
backup is never touched); the restore is StartRestoreJob into a new file system.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from quiesce.durability import PollsDurability
from quiesce.errors import ProviderError
from quiesce.policy.model import MemberBase
from quiesce.ports import (
    CloudRestore,
    Inventory,
    Machine,
    PointMethod,
    RestoreStep,
    SnapshotCall,
    Snapshotter,
)
from quiesce.providers.registry import expect_member
from quiesce.record import Consistency, SnapshotRef, SnapshotState, utcnow
from quiesce.tags import MANAGED_TAG, snapshot_tags
from quiesce_aws.answers import arn_region, aware
from quiesce_aws.managed_clients import BACKUP_THROTTLING, ManagedClients
from quiesce_aws.managed_member import AwsEfsMember
from quiesce_aws.permissions import Permission
from quiesce_aws.retry import Backoff, call_failed, error_code
from quiesce_aws.tagging import own_tags

PROVIDER = "aws-efs"
METHOD = "efs-backup"
#: Tags on a reference (not on AWS) with what `wait_durable`, `delete` and a restore need.
META = "quiesce:efs-"
RESTORED_FROM_TAG = "quiesce:restored-from"
COPY_NOTE = (
    "AWS Backup copies an EFS file system file by file over minutes while it may change: the "
    "copy is not the file system at one point in time, so it is never recorded application- "
    "or crash-consistent"
)

JOB_STATES = {
    "COMPLETED": SnapshotState.COMPLETED,
    "FAILED": SnapshotState.FAILED,
    "ABORTED": SnapshotState.FAILED,
    "EXPIRED": SnapshotState.FAILED,
    "PARTIAL": SnapshotState.FAILED,
}
NOT_FOUND = frozenset({"ResourceNotFoundException", "FileSystemNotFound"})


class EfsInventory(Inventory):
    """Resolves an `aws-efs` member to its file system (one Machine)."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "resolve": [
            Permission(
                "elasticfilesystem:DescribeFileSystems",
                "arn:aws:elasticfilesystem:*:*:file-system/*",
            )
        ],
    }

    def __init__(self, clients: ManagedClients, *, backoff: Backoff | None = None) -> None:
        self.clients = clients
        self.backoff = backoff or Backoff()

    def resolve(self, member: MemberBase) -> list[Machine]:
        spec = expect_member(member, AwsEfsMember)
        efs = self.clients.efs(spec.region)
        try:
            page = self.backoff.call(
                lambda: efs.describe_file_systems(FileSystemId=spec.file_system),
                retry_on=BACKUP_THROTTLING,
                what=f"DescribeFileSystems {spec.file_system}",
            )
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND:
                raise ProviderError(
                    f"member {spec.name!r}: no EFS file system {spec.file_system} in {spec.region}",
                    code="FileSystemNotFound",
                ) from exc
            raise call_failed(
                f"member {spec.name!r}: DescribeFileSystems {spec.file_system} in {spec.region} "
                "failed",
                exc,
                "DescribeFailed",
            ) from exc
        (found,) = page.get("FileSystems", [])
        state = str(found.get("LifeCycleState", ""))
        if state != "available":
            raise ProviderError(
                f"member {spec.name!r}: EFS file system {spec.file_system} is {state}, not "
                "available",
                code="FileSystemNotAvailable",
            )
        arn = str(found.get("FileSystemArn", ""))
        attributes = {
            "region": spec.region,
            "file_system": spec.file_system,
            "arn": arn,
            "performance_mode": str(found.get("PerformanceMode", "")),
            "encrypted": "true" if found.get("Encrypted") else "false",
            "kms_key": str(found.get("KmsKeyId", "")),
            "availability_zone": str(found.get("AvailabilityZoneName", "")),
            "size_bytes": str((found.get("SizeInBytes") or {}).get("Value", "")),
        }
        return [
            Machine(
                provider=PROVIDER,
                member=spec.name,
                machine_id=arn or spec.file_system,
                volumes=(spec.file_system,),
                attributes={k: v for k, v in attributes.items() if v},
            )
        ]


class EfsBackupSnapshotter(PollsDurability, Snapshotter):
    """The Snapshotter port over AWS Backup for EFS: a copy, recorded as such."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "take": [
            Permission(
                "backup:StartBackupJob",
                "arn:aws:backup:*:*:backup-vault:*",
            ),
            # AWS Backup reads the file system with the member's backup role.
            Permission(
                "iam:PassRole",
                "arn:aws:iam::*:role/*",
                {"iam:PassedToService": "backup.amazonaws.com"},
            ),
        ],
        "wait_durable": [Permission("backup:DescribeBackupJob", "*")],
        "delete": [
            Permission("backup:DescribeRecoveryPoint", "arn:aws:backup:*:*:recovery-point:*"),
            Permission("backup:ListTags", "arn:aws:backup:*:*:recovery-point:*"),
            Permission(
                "backup:DeleteRecoveryPoint",
                "arn:aws:backup:*:*:recovery-point:*",
                {f"aws:ResourceTag/{MANAGED_TAG}": "true"},
            ),
        ],
        "find": [
            Permission(
                "backup:ListRecoveryPointsByBackupVault", "arn:aws:backup:*:*:backup-vault:*"
            ),
            Permission("backup:ListTags", "arn:aws:backup:*:*:recovery-point:*"),
        ],
    }

    #: What whoever runs `quiesce restore --in-cloud --execute` needs (not the functions).
    RESTORE_PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        # Before anything is created: is the recovery point still there, completed?
        "check": [
            Permission("backup:DescribeRecoveryPoint", "arn:aws:backup:*:*:recovery-point:*")
        ],
        "cloud_restore": [
            Permission("backup:StartRestoreJob", "arn:aws:backup:*:*:recovery-point:*"),
            Permission(
                "iam:PassRole",
                "arn:aws:iam::*:role/*",
                {"iam:PassedToService": "backup.amazonaws.com"},
            ),
        ],
    }

    def __init__(
        self,
        clients: ManagedClients,
        *,
        vaults: Mapping[str, Sequence[tuple[str, str]]] | None = None,
        backoff: Backoff | None = None,
        poll_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients = clients
        self.vaults = dict(vaults or {})  # by group: (region, vault) pairs `find` lists
        self.backoff = backoff or Backoff(attempts=6, base=0.25, cap=4.0, sleep=sleep)
        self.poll_interval = poll_interval
        self.clock = clock
        self.sleep = sleep

    # ------------------------------------------------------------------------------ the port

    def point_method(self, spec: MemberBase) -> PointMethod:
        return PointMethod("copy", 0.0, "an AWS Backup job copies the files over minutes")

    def describe(self, machine: Machine) -> dict[str, str]:
        return {v: f"{METHOD} (a copy over minutes: never application)" for v in machine.volumes}

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        member = expect_member(call.spec, AwsEfsMember)
        backup = self.clients.backup(member.region)
        arn = call.machine.attributes.get("arn") or call.machine.machine_id
        tags = snapshot_tags(call)
        kwargs: dict[str, Any] = {
            "BackupVaultName": member.backup_vault,
            "ResourceArn": arn,
            "IamRoleArn": member.backup_role_arn,
            # The same token starts one job, whatever the retries.
            "IdempotencyToken": f"{call.run_id}/{call.member}"[:64],
            "RecoveryPointTags": tags,
        }
        if member.delete_after_days is not None:
            kwargs["Lifecycle"] = {"DeleteAfterDays": member.delete_after_days}
        started = utcnow()
        answer = self.backoff.call_or_raise(
            lambda: backup.start_backup_job(**kwargs),
            retry_on=BACKUP_THROTTLING,
            what=f"StartBackupJob of {member.file_system}",
            failed=(
                f"member {call.member!r}: StartBackupJob of {member.file_system} in "
                f"{member.region} (vault {member.backup_vault}) failed"
            ),
            code="BackupFailed",
        )
        point_arn = str(answer.get("RecoveryPointArn", ""))
        size = call.machine.attributes.get("size_bytes")
        meta = {
            f"{META}region": member.region,
            f"{META}vault": member.backup_vault,
            f"{META}job": str(answer.get("BackupJobId", "")),
            f"{META}role": member.backup_role_arn,
            **{f"{META}{k}": v for k, v in call.machine.attributes.items()},
        }
        return [
            SnapshotRef(
                id=point_arn,
                provider=PROVIDER,
                machine_id=call.machine.machine_id,
                volume=member.file_system,
                method=METHOD,
                state=SnapshotState.PENDING,
                started_at=started,
                fixed_at=utcnow(),
                size_bytes=int(size) if size else None,
                location=point_arn,
                tags={**tags, **meta},
                point="copy",
                reported_consistency=Consistency.NONE,
                note=COPY_NOTE,
            )
        ]

    def states(self, pending: Sequence[SnapshotRef]) -> dict[str, SnapshotState]:
        out: dict[str, SnapshotState] = {}
        for ref in pending:
            job = ref.tags.get(f"{META}job")
            if not job:
                out[ref.id] = SnapshotState.FAILED
                continue
            backup = self.clients.backup(self._region(ref))
            try:
                answer = self.backoff.call(
                    lambda job=job, backup=backup: backup.describe_backup_job(BackupJobId=job),  # type: ignore[misc]
                    retry_on=BACKUP_THROTTLING,
                    what=f"DescribeBackupJob {job}",
                )
            except ClientError as exc:
                if error_code(exc) in NOT_FOUND:
                    out[ref.id] = SnapshotState.FAILED
                    continue
                raise
            state = JOB_STATES.get(str(answer.get("State", "")))
            if state is not None:
                out[ref.id] = state
        return out

    def check(self, snapshot: SnapshotRef) -> None:
        """Raises unless the recovery point is still there and COMPLETED: before a restore
        creates anything (quiesce.restore.check_complete)."""
        vault = snapshot.tags.get(f"{META}vault") or _vault_of(snapshot.id)
        live = self._on_point(
            self.clients.backup(self._region(snapshot)).describe_recovery_point,
            "DescribeRecoveryPoint",
            vault,
            snapshot.id,
            verb="read",
            code="CheckFailed",
        )
        status = str((live or {}).get("Status") or "")
        if live is None or status != "COMPLETED":
            raise ProviderError(
                f"{snapshot.id}: the recovery point is "
                f"{'gone' if live is None else status or 'in an unknown state'} in vault {vault}",
                code="NotRestorable",
            )

    def delete(self, snapshot: SnapshotRef) -> None:
        region = self._region(snapshot)
        vault = snapshot.tags.get(f"{META}vault") or _vault_of(snapshot.id)
        backup = self.clients.backup(region)
        live = self._on_point(
            backup.describe_recovery_point,
            "DescribeRecoveryPoint",
            vault,
            snapshot.id,
            verb="read",
            code="DescribeFailed",
        )
        if live is None:
            return
        tags = self._tags(region, snapshot.id)
        plan = (live.get("CreatedBy") or {}).get("BackupPlanId")
        if plan or tags.get(MANAGED_TAG) != "true":
            why = f"backup plan {plan} made it" if plan else f"it is not tagged {MANAGED_TAG}=true"
            raise ProviderError(
                f"refusing to delete recovery point {snapshot.id}: {why}, so Quiesce did not",
                code="NotManaged",
            )
        self._on_point(
            backup.delete_recovery_point,
            "DeleteRecoveryPoint",
            vault,
            snapshot.id,
            verb="delete",
            code="DeleteFailed",
        )

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        wanted = own_tags(policy, group, run_id)
        found: list[SnapshotRef] = []
        for region, vault in self.vaults.get(group, []):
            backup = self.clients.backup(region)
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"BackupVaultName": vault, "ByResourceType": "EFS"}
                if token:
                    kwargs["NextToken"] = token
                page = self.backoff.call(
                    lambda kwargs=kwargs, backup=backup: (
                        backup.list_recovery_points_by_backup_vault(**kwargs)
                    ),  # type: ignore[misc]
                    retry_on=BACKUP_THROTTLING,
                    what=f"ListRecoveryPointsByBackupVault {vault}",
                )
                for item in page.get("RecoveryPoints", []):
                    if (item.get("CreatedBy") or {}).get("BackupPlanId"):
                        continue  # a backup plan's: never Quiesce's
                    arn = str(item.get("RecoveryPointArn", ""))
                    tags = self._tags(region, arn)
                    if all(tags.get(k) == v for k, v in wanted.items()):
                        found.append(self._ref(region, vault, item, tags))
                token = page.get("NextToken")
                if not token:
                    break
        return sorted(found, key=lambda r: (r.started_at, r.id))

    # ------------------------------------------------------------------------------ restore

    def plan_cloud_restore(self, request: CloudRestore) -> RestoreStep:
        region, params = self._restore_params(request)
        metadata = params["Metadata"]
        flat = {
            "region": region,
            "RecoveryPointArn": params["RecoveryPointArn"],
            "IamRoleArn": params["IamRoleArn"],
            "ResourceType": "EFS",
            **{f"Metadata.{k}": v for k, v in metadata.items()},
        }
        command = shlex.join(
            [
                "aws",
                "backup",
                "start-restore-job",
                "--region",
                region,
                "--recovery-point-arn",
                params["RecoveryPointArn"],
                "--iam-role-arn",
                params["IamRoleArn"],
                "--resource-type",
                "EFS",
                "--metadata",
                ",".join(f"{k}={v}" for k, v in metadata.items()),
            ]
        )
        return RestoreStep(
            member=request.member,
            snapshot=request.snapshot.id,
            action="StartRestoreJob",
            parameters=flat,
            command=command,
        )

    def cloud_restore(self, request: CloudRestore) -> RestoreStep:
        step = self.plan_cloud_restore(request)
        region, params = self._restore_params(request)
        backup = self.clients.backup(region)
        answer = self.backoff.call_or_raise(
            lambda: backup.start_restore_job(**params),
            retry_on=BACKUP_THROTTLING,
            what=f"StartRestoreJob of {request.snapshot.id}",
            failed=f"StartRestoreJob of {request.snapshot.id} in {region} failed",
            code="RestoreFailed",
        )
        step.created.append(f"restore-job:{answer.get('RestoreJobId', '')}")
        return step

    # ------------------------------------------------------------------------------ helpers

    def _restore_params(self, request: CloudRestore) -> tuple[str, dict[str, Any]]:
        ref = request.snapshot
        meta = {k.removeprefix(META): v for k, v in ref.tags.items() if k.startswith(META)}
        region = self._region(ref)
        role = meta.get("role")
        if not role:
            raise ProviderError(
                f"{ref.id}: the backup role was not recorded with it; restore it from the AWS "
                "Backup console or with aws backup start-restore-job",
                code="RestoreUnsupported",
            )
        metadata = {
            "file-system-id": meta.get("file_system") or ref.volume,
            "newFileSystem": "true",
            "CreationToken": request.name[:64],
            "Encrypted": meta.get("encrypted", "true"),
            "PerformanceMode": meta.get("performance_mode") or "generalPurpose",
        }
        if meta.get("kms_key"):
            metadata["KmsKeyId"] = meta["kms_key"]
        return region, {
            "RecoveryPointArn": ref.id,
            "IamRoleArn": role,
            "ResourceType": "EFS",
            "Metadata": metadata,
        }

    def _on_point(
        self,
        operation: Callable[..., Any],
        action: str,
        vault: str,
        arn: str,
        *,
        verb: str,
        code: str,
    ) -> dict[str, Any] | None:
        """`operation`, AWS Backup's `action`, on one recovery point: its answer, or None
        when the recovery point is gone; a failure says it `could not {verb}` it."""
        try:
            answer: dict[str, Any] = self.backoff.call(
                lambda: operation(BackupVaultName=vault, RecoveryPointArn=arn),
                retry_on=BACKUP_THROTTLING,
                what=f"{action} {arn}",
            )
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND:
                return None
            raise call_failed(f"could not {verb} recovery point {arn}", exc, code) from exc
        return answer

    def _region(self, ref: SnapshotRef) -> str:
        region = ref.tags.get(f"{META}region") or arn_region(ref.id)
        if not region:
            raise ProviderError(f"{ref.id}: its region is unknown", code="UnknownRegion")
        return region

    def _tags(self, region: str, arn: str) -> dict[str, str]:
        backup = self.clients.backup(region)
        answer = self.backoff.call(
            lambda: backup.list_tags(ResourceArn=arn),
            retry_on=BACKUP_THROTTLING,
            what=f"ListTags {arn}",
        )
        return {str(k): str(v) for k, v in (answer.get("Tags") or {}).items()}

    def _ref(
        self, region: str, vault: str, item: Mapping[str, Any], tags: dict[str, str]
    ) -> SnapshotRef:
        arn = str(item.get("RecoveryPointArn", ""))
        start = aware(item.get("CreationDate")) or utcnow()
        status = str(item.get("Status", ""))
        state = (
            SnapshotState.COMPLETED
            if status == "COMPLETED"
            else SnapshotState.FAILED
            if status in ("EXPIRED", "DELETING", "PARTIAL")
            else SnapshotState.PENDING
        )
        resource = str(item.get("ResourceArn", ""))
        return SnapshotRef(
            id=arn,
            provider=PROVIDER,
            machine_id=tags.get("quiesce:machine", resource),
            volume=resource.rsplit("/", 1)[-1],
            method=METHOD,
            state=state,
            started_at=start,
            fixed_at=start,
            size_bytes=item.get("BackupSizeInBytes"),
            location=arn,
            tags={f"{META}region": region, f"{META}vault": vault, **tags},
            point="copy",
            reported_consistency=Consistency.NONE,
            note=COPY_NOTE,
        )


def _vault_of(arn: str) -> str:
    raise ProviderError(
        f"{arn}: the backup vault of this recovery point was not recorded with it",
        code="UnknownVault",
    )
