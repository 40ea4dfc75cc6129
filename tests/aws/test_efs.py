"""EFS file systems as members (`aws-efs`): moto's EFS, and AWS Backup's jobs on the wire
(managed_fakes.BackupService: moto has no StartBackupJob)."""

from __future__ import annotations

from typing import Any

import pytest

from quiesce.errors import ProviderError
from quiesce.ports import CloudRestore, SnapshotCall
from quiesce.record import Consistency, SnapshotRef, SnapshotState
from quiesce_aws.efs import EfsBackupSnapshotter, EfsInventory
from quiesce_aws.managed_clients import ManagedClients
from quiesce_aws.managed_member import AwsEfsMember
from tests.aws.conftest import ACCOUNT, REGION, FakeClock, Sleeps, quick_backoff
from tests.aws.managed_fakes import BackupService, intercept, throttle_once

RUN = "20261202T040000Z-abc123"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/service-role/AWSBackupDefaultServiceRole"


@pytest.fixture
def managed(aws: None, boto_session: Any) -> ManagedClients:
    return ManagedClients(boto_session)


@pytest.fixture
def file_system(managed: ManagedClients) -> str:
    fs: str = managed.efs(REGION).create_file_system(CreationToken="shared", Encrypted=True)[
        "FileSystemId"
    ]
    return fs


@pytest.fixture
def backup(managed: ManagedClients) -> BackupService:
    return BackupService(managed.backup(REGION))


def member(file_system: str) -> AwsEfsMember:
    return AwsEfsMember.model_validate(
        {
            "name": "shared",
            "provider": "aws-efs",
            "region": REGION,
            "file_system": file_system,
            "backup_role_arn": ROLE,
            "delete_after_days": 35,
        }
    )


def snapshotter(managed: ManagedClients, sleeps: Sleeps, clock: FakeClock) -> EfsBackupSnapshotter:
    return EfsBackupSnapshotter(
        managed,
        vaults={"orders": [(REGION, "Default")]},
        backoff=quick_backoff(sleeps),
        poll_interval=30.0,
        clock=clock,
        sleep=sleeps,
    )


def take(managed: ManagedClients, snaps: EfsBackupSnapshotter, spec: AwsEfsMember) -> SnapshotRef:
    (machine,) = EfsInventory(managed).resolve(spec)
    (ref,) = snaps.take(
        SnapshotCall(
            run_id=RUN,
            policy="shop",
            group="orders",
            member=spec.name,
            machine=machine,
            recovery_point=f"rp-{RUN}",
            consistency="application",
            spec=spec,
        )
    )
    return ref


def test_a_backup_job_is_a_copy_recorded_with_the_reason_and_awaited(
    managed: ManagedClients,
    file_system: str,
    backup: BackupService,
    sleeps: Sleeps,
    clock: FakeClock,
) -> None:
    snaps = snapshotter(managed, sleeps, clock)
    throttled = throttle_once(managed.backup(REGION), "StartBackupJob", "ThrottlingException")

    ref = take(managed, snaps, member(file_system))

    assert (ref.point, ref.method, ref.provider) == ("copy", "efs-backup", "aws-efs")
    assert "not the file system at one point in time" in ref.note
    assert ref.reported_consistency is Consistency.NONE
    assert snaps.point_method(member(file_system)).kind == "copy"
    assert throttled == [0], "throttled once"
    assert sleeps.waits, "retried after a backoff"
    (started,) = backup.started
    assert started["IdempotencyToken"] == f"{RUN}/shared"
    assert started["ResourceArn"].endswith(f":file-system/{file_system}")
    assert started["RecoveryPointTags"]["quiesce:managed"] == "true"
    assert started["Lifecycle"] == {"DeleteAfterDays": 35}

    (done,) = snaps.wait_durable([ref], timeout=600)

    assert done.state is SnapshotState.COMPLETED
    assert sleeps.waits.count(30.0) >= 1
    assert [r.id for r in snaps.find("shop", "orders")] == [ref.id]


def test_retention_deletes_its_own_recovery_points_and_never_a_backup_plans(
    managed: ManagedClients,
    file_system: str,
    backup: BackupService,
    sleeps: Sleeps,
    clock: FakeClock,
) -> None:
    snaps = snapshotter(managed, sleeps, clock)
    ref = take(managed, snaps, member(file_system))
    nightly = backup.plan_made(ref.tags["quiesce:efs-arn"])

    assert [r.id for r in snaps.find("shop", "orders")] == [ref.id]
    plan_ref = ref.model_copy(update={"id": nightly, "location": nightly})
    with pytest.raises(ProviderError, match="backup plan plan-nightly made it") as refused:
        snaps.delete(plan_ref)
    assert refused.value.code == "NotManaged"

    snaps.delete(ref)

    assert backup.deleted == [ref.id]
    assert nightly in backup.points
    snaps.delete(ref)  # gone already: no error


def test_a_recovery_point_aws_backup_refuses_to_delete_is_named_with_the_aws_code(
    managed: ManagedClients,
    file_system: str,
    backup: BackupService,
    sleeps: Sleeps,
    clock: FakeClock,
) -> None:
    snaps = snapshotter(managed, sleeps, clock)
    ref = take(managed, snaps, member(file_system))
    intercept(
        managed.backup(REGION),
        "DeleteRecoveryPoint",
        lambda _: ("AccessDeniedException", "not allowed"),
        first=True,
    )

    with pytest.raises(ProviderError) as refused:
        snaps.delete(ref)

    assert str(refused.value) == (
        f"could not delete recovery point {ref.id}: AccessDeniedException: not allowed"
    )
    assert refused.value.code == "AccessDeniedException"
    assert backup.deleted == []
    assert ref.id in backup.points


def test_a_missing_file_system_is_named(managed: ManagedClients) -> None:
    with pytest.raises(ProviderError, match="no EFS file system fs-0123456789abcdef0"):
        EfsInventory(managed).resolve(member("fs-0123456789abcdef0"))


def test_the_copy_restores_into_a_new_file_system(
    managed: ManagedClients,
    file_system: str,
    backup: BackupService,
    sleeps: Sleeps,
    clock: FakeClock,
) -> None:
    snaps = snapshotter(managed, sleeps, clock)
    (ref,) = snaps.wait_durable([take(managed, snaps, member(file_system))], timeout=600)
    request = CloudRestore(snapshot=ref, point=f"rp-{RUN}", member="shared", name="restore-shared")

    planned = snaps.plan_cloud_restore(request)

    assert backup.restores == []
    assert planned.action == "StartRestoreJob"
    assert planned.parameters["Metadata.newFileSystem"] == "true"
    assert planned.parameters["Metadata.file-system-id"] == file_system
    assert planned.command.startswith("aws backup start-restore-job")

    done = snaps.cloud_restore(request)

    (sent,) = backup.restores
    assert sent["RecoveryPointArn"] == ref.id
    assert sent["IamRoleArn"] == ROLE
    assert sent["Metadata"]["Encrypted"] == "true"
    assert done.created
    assert done.created[0].startswith("restore-job:")
