"""A group of two EC2 instances, one RDS database and one EFS file system backs up as ONE
recovery point with one restore time T, and restores as a whole in AWS: the engine's
`run_group` and `restore_in_cloud` with the backends the functions build (`aws_backends`),
on moto, with RDS's lagging LatestRestorableTime and AWS Backup's jobs on the wire
(managed_fakes)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from quiesce.cloud_restore import restore_in_cloud
from quiesce.engine import run_group
from quiesce.errors import QuiesceError
from quiesce.policy.model import Policy
from quiesce.record import Consistency, RunStatus, utcnow
from quiesce_aws.managed_clients import ManagedClients
from quiesce_aws.provider import aws_backends
from quiesce_aws.state import table_definition
from tests.aws.conftest import (
    ACCOUNT,
    REGION,
    FakeClock,
    Fleet,
    Sleeps,
    Wire,
    hooked_vm,
    quick_backoff,
    runner_answers,
)
from tests.aws.managed_fakes import BackupService, RdsService, throttle_once

TABLE = "quiesce-catalog"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/service-role/AWSBackupDefaultServiceRole"


def policy(file_system: str) -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "orders": {
                    "consistency": "application",
                    "max_freeze_seconds": 30,
                    "durability_timeout_seconds": 900,
                    "members": [
                        hooked_vm("web"),
                        hooked_vm("app"),
                        {
                            "name": "orders-db",
                            "provider": "aws-rds",
                            "region": REGION,
                            "instance": "orders-db",
                        },
                        {
                            "name": "shared",
                            "provider": "aws-efs",
                            "region": REGION,
                            "file_system": file_system,
                            "backup_role_arn": ROLE,
                        },
                    ],
                }
            },
        }
    )


@pytest.fixture
def world(aws: None, boto_session: Any, wire: Wire, clock: FakeClock) -> dict[str, Any]:
    # One client factory for everything, so the wire hooks sit on the adapters' own clients.
    clients = ManagedClients(boto_session)
    fleet = Fleet(clients.ec2(REGION))
    fleet.launch(1, tags={"role": "web"}, data_volumes=1)
    fleet.launch(1, tags={"role": "app"}, data_volumes=1)
    rds = clients.rds(REGION)
    rds.create_db_instance(
        DBInstanceIdentifier="orders-db",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="admin",
        MasterUserPassword="secret-pass-1",
        BackupRetentionPeriod=7,
    )
    file_system = clients.efs(REGION).create_file_system(CreationToken="shared")["FileSystemId"]
    clients.dynamodb(REGION).create_table(**table_definition(TABLE))
    clients.events(REGION).create_event_bus(Name="quiesce-bus")
    the_policy = policy(file_system)
    backends = aws_backends(
        the_policy,
        clients=clients,
        env={"QUIESCE_TABLE": TABLE, "QUIESCE_EVENT_BUS": "quiesce-bus", "QUIESCE_REGION": REGION},
    )
    sleeps = Sleeps(clock)
    for name in ("aws-rds", "aws-efs"):  # the fake clock, instead of minutes of real waiting
        snapshots: Any = backends.providers[name].snapshots
        snapshots.clock, snapshots.sleep, snapshots.backoff = clock, sleeps, quick_backoff(sleeps)
    ssm = clients.ssm(REGION)
    runner_answers(wire, ssm)
    sent: list[tuple[str, datetime]] = []

    def when_sent(parsed: dict[str, Any]) -> None:
        command = parsed.get("Command") or {}
        sent.append((command.get("Parameters", {}).get("Phase", ["?"])[0], utcnow()))

    wire.after(ssm, "SendCommand", when_sent)
    rds_service = RdsService(rds, clock, lag=300.0)
    throttled = throttle_once(rds, "DescribeDBInstances")
    return {
        "throttled": throttled,
        "policy": the_policy,
        "backends": backends,
        "clients": clients,
        "rds": rds_service,
        "backup": BackupService(clients.backup(REGION)),
        "sent": sent,
        "clock": clock,
        "file_system": file_system,
    }


def test_two_vms_a_database_and_a_file_share_are_one_point_with_one_t_restored_whole(
    world: dict[str, Any],
) -> None:
    started = world["clock"].now

    record = run_group(world["policy"], "orders", world["backends"])

    # The share's copy is no point in time: it is `none`, and so is the group's point as a
    # whole (degraded); every other member keeps its level.
    assert record.status is RunStatus.DEGRADED, record.errors
    assert world["throttled"] == [0], "RDS throttled a Describe once; the run went on"
    assert record.consistency is Consistency.NONE
    point = world["backends"].state.get_point(record.recovery_point or "")
    assert point is not None
    t = point.restore_time
    assert t is not None
    assert t == record.restore_time
    assert t.microsecond == 0, "RDS restores to whole seconds"

    # T lies inside the quiesced interval: after every pre hook, before any post hook.
    pre = [at for phase, at in world["sent"] if phase == "pre"]
    post = [at for phase, at in world["sent"] if phase == "post"]
    assert len(pre) == 2
    assert len(post) == 2
    assert max(pre) <= t < min(post)
    assert t - max(pre) < timedelta(seconds=2)

    members = {m.name: m for m in point.members}
    (db,) = members["orders-db"].snapshots
    assert (db.point, db.method, db.restore_time, db.fixed_at) == ("pitr", "rds-pitr", t, t)
    assert members["orders-db"].consistency is Consistency.APPLICATION
    (share,) = members["shared"].snapshots
    assert share.point == "copy"
    assert members["shared"].consistency is Consistency.NONE
    assert "not the file system at one point in time" in share.note
    for name in ("web", "app"):
        assert members[name].consistency is Consistency.APPLICATION
        assert {s.point for s in members[name].snapshots} == {"snapshot"}
        assert all(
            s.tags["quiesce:availability-zone"] == f"{REGION}a" for s in members[name].snapshots
        )
    # the run waited (on the fake clock) for the database's LatestRestorableTime to pass T
    assert world["clock"].now - started >= 300 - 15

    result = restore_in_cloud(world["policy"], world["backends"], point.id, execute=True)

    assert result.error is None
    assert result.restore_time == t
    actions = sorted(step.action for step in result.steps)
    assert actions == ["CreateVolume"] * 4 + ["RestoreDBInstanceToPointInTime", "StartRestoreJob"]
    ((action, params),) = world["rds"].restores
    assert action == "RestoreDBInstanceToPointInTime"
    assert params["RestoreTime"] == t
    assert params["SourceDBInstanceIdentifier"] == "orders-db"
    (restore_job,) = world["backup"].restores
    assert restore_job["RecoveryPointArn"] == share.id
    ec2 = world["clients"].ec2(REGION)
    volumes = ec2.describe_volumes(
        Filters=[{"Name": "tag:quiesce:restored-from", "Values": [point.id]}]
    )["Volumes"]
    assert len(volumes) == 4
    assert {v["AvailabilityZone"] for v in volumes} == {f"{REGION}a"}
    restored_from = {v["SnapshotId"] for v in volumes}
    assert restored_from == {s.id for n in ("web", "app") for s in members[n].snapshots}
    new = world["clients"].rds(REGION).describe_db_instances()["DBInstances"]
    assert len(new) == 2


def test_a_pitr_database_without_backups_stops_the_run_before_any_hook(
    world: dict[str, Any],
) -> None:
    world["clients"].rds(REGION).modify_db_instance(
        DBInstanceIdentifier="orders-db", BackupRetentionPeriod=0, ApplyImmediately=True
    )

    record = run_group(world["policy"], "orders", world["backends"])

    assert record.status is not RunStatus.SUCCEEDED
    assert record.recovery_point is None
    assert any("automated backups turned off" in e for e in record.errors), record.errors
    assert world["sent"] == [], "no instance was frozen for a run that could not succeed"


def test_a_point_with_a_snapshot_deleted_since_is_refused_before_anything_is_created(
    world: dict[str, Any],
) -> None:
    record = run_group(world["policy"], "orders", world["backends"])
    point = world["backends"].state.get_point(record.recovery_point or "")
    assert point is not None, record.errors  # degraded: the file share's copy is not atomic
    gone = next(m for m in point.members if m.name == "app").snapshots[0]
    ec2 = world["clients"].ec2(REGION)
    ec2.delete_snapshot(SnapshotId=gone.id)  # by someone else, after the point was recorded
    world["rds"].restores.clear()

    with pytest.raises(QuiesceError) as caught:
        restore_in_cloud(world["policy"], world["backends"], point.id, execute=True)

    assert f"{gone.id}: the EBS snapshot is gone in {REGION}" in str(caught.value)
    restored = ec2.describe_volumes(
        Filters=[{"Name": "tag:quiesce:restored-from", "Values": [point.id]}]
    )["Volumes"]
    assert restored == []  # no volume, database or file system was made
    assert world["rds"].restores == []
    assert world["backup"].restores == []


def test_a_point_whose_efs_recovery_point_was_deleted_is_refused_before_anything_is_created(
    world: dict[str, Any],
) -> None:
    record = run_group(world["policy"], "orders", world["backends"])
    point = world["backends"].state.get_point(record.recovery_point or "")
    assert point is not None, record.errors
    (share,) = next(m for m in point.members if m.name == "shared").snapshots
    del world["backup"].points[share.id]  # deleted in the vault since the point was recorded
    world["rds"].restores.clear()

    with pytest.raises(QuiesceError) as caught:
        restore_in_cloud(world["policy"], world["backends"], point.id, execute=True)

    assert f"{share.id}: the recovery point is gone" in str(caught.value)
    assert world["backup"].restores == []
    assert world["rds"].restores == []
    volumes = (
        world["clients"]
        .ec2(REGION)
        .describe_volumes(Filters=[{"Name": "tag:quiesce:restored-from", "Values": [point.id]}])[
            "Volumes"
        ]
    )
    assert volumes == []
