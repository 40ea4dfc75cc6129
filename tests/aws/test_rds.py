"""RDS DB instances and Aurora clusters as members (`aws-rds`), through the adapters' real boto3
clients on moto, with RDS's point-in-time behaviour moto lacks added on the wire
(managed_fakes.RdsService: LatestRestorableTime lags and advances with a fake clock)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from moto.rds.models import rds_backends

from quiesce.errors import ProviderError
from quiesce.plan import plan_policy
from quiesce.policy.model import Policy
from quiesce.ports import CloudRestore, Machine, Provider, SnapshotCall
from quiesce.providers.managed import NoHooks
from quiesce.record import Consistency, SnapshotRef, SnapshotState, utcnow
from quiesce_aws.managed_clients import ManagedClients
from quiesce_aws.managed_member import AwsRdsMember
from quiesce_aws.rds import RdsInventory, RdsSnapshotter, rds_name
from tests.aws.conftest import ACCOUNT, REGION, FakeClock, Sleeps, Wire, quick_backoff
from tests.aws.managed_fakes import RdsService, throttle_once

RUN = "20261202T040000Z-abc123"


@pytest.fixture
def managed(aws: None, boto_session: Any) -> ManagedClients:
    return ManagedClients(boto_session)


@pytest.fixture
def rds(managed: ManagedClients) -> Any:
    return managed.rds(REGION)


@pytest.fixture
def service(rds: Any, clock: FakeClock) -> RdsService:
    return RdsService(rds, clock, lag=300.0)


def create_instance(rds: Any, name: str = "orders-db", retention: int = 7) -> None:
    rds.create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="admin",
        MasterUserPassword="secret-pass-1",
        BackupRetentionPeriod=retention,
        VpcSecurityGroupIds=["sg-0123456789abcdef0"],
    )


def create_cluster(rds: Any, name: str = "orders-aurora") -> None:
    rds.create_db_cluster(
        DBClusterIdentifier=name,
        Engine="aurora-postgresql",
        MasterUsername="admin",
        MasterUserPassword="secret-pass-1",
        BackupRetentionPeriod=3,
    )
    rds.create_db_instance(
        DBInstanceIdentifier=f"{name}-1",
        DBClusterIdentifier=name,
        Engine="aurora-postgresql",
        DBInstanceClass="db.r6g.large",
    )


def member(**fields: Any) -> AwsRdsMember:
    values = {"name": "orders-db", "provider": "aws-rds", "region": REGION, **fields}
    if "instance" not in values and "cluster" not in values:
        values["instance"] = "orders-db"
    return AwsRdsMember.model_validate(values)


def snapshotter(managed: ManagedClients, sleeps: Sleeps, clock: FakeClock) -> RdsSnapshotter:
    """The snapshotter, with the fake clock (the databases are created by now)."""
    return RdsSnapshotter(
        managed,
        regions={"orders": [REGION]},
        backoff=quick_backoff(sleeps),
        poll_interval=15.0,
        clock=clock,
        sleep=sleeps,
    )


def call_for(spec: AwsRdsMember, machine: Machine) -> SnapshotCall:
    return SnapshotCall(
        run_id=RUN,
        policy="shop",
        group="orders",
        member=spec.name,
        machine=machine,
        recovery_point=f"rp-{RUN}",
        consistency="application",
        spec=spec,
    )


def take(managed: ManagedClients, snaps: RdsSnapshotter, spec: AwsRdsMember) -> SnapshotRef:
    (machine,) = RdsInventory(managed).resolve(spec)
    (ref,) = snaps.take(call_for(spec, machine))
    return ref


def at_t(ref: SnapshotRef, seconds_ago: float = 0.0) -> SnapshotRef:
    """The reference as the engine stamps it: T, a whole second."""
    moment = (utcnow() - timedelta(seconds=seconds_ago)).replace(microsecond=0)
    return ref.model_copy(update={"restore_time": moment, "fixed_at": moment})


# ------------------------------------------------------------------------------ plan and take


def test_a_pitr_database_without_automated_backups_is_refused_at_plan_and_at_take(
    managed: ManagedClients, rds: Any, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds, retention=0)
    spec = member()
    group = {"consistency": "crash", "members": [spec.model_dump()]}
    policy = Policy.model_validate({"version": 1, "name": "shop", "groups": {"orders": group}})
    provider = Provider(RdsInventory(managed), NoHooks("aws-rds"), RdsSnapshotter(managed))

    planned = plan_policy(policy, {"aws-rds": provider})

    assert planned["ok"] is False
    (entry,) = planned["groups"][0]["members"]
    assert "automated backups turned off" in entry["error"]
    assert "method: snapshot" in entry["error"]
    assert "--backup-retention-period 7" in entry["error"]
    assert entry["point"]["kind"] == "pitr"
    assert "rds:DescribeDBInstances" in entry["permissions"]

    machine = Machine("aws-rds", "orders-db", "arn", ("orders-db",), {"region": REGION})
    with pytest.raises(ProviderError, match="automated backups turned off") as refused:
        snapshotter(managed, sleeps, clock).take(call_for(spec, machine))
    assert refused.value.code == "PitrDisabled"


def test_the_same_database_with_method_snapshot_is_accepted(
    managed: ManagedClients, rds: Any
) -> None:
    create_instance(rds, retention=0)
    (machine,) = RdsInventory(managed).resolve(member(method="snapshot"))
    assert machine.volumes == ("orders-db",)
    assert machine.machine_id.startswith("arn:aws:rds:")


def test_a_missing_database_is_named(managed: ManagedClients) -> None:
    with pytest.raises(ProviderError, match="no DB instance 'orders-db' in eu-central-1"):
        RdsInventory(managed).resolve(member())


def test_a_database_rds_refuses_to_describe_is_named_with_the_aws_code(
    managed: ManagedClients, rds: Any, wire: Wire
) -> None:
    create_instance(rds)
    wire.fail(rds, "DescribeDBInstances", "AccessDenied", status=403)

    with pytest.raises(ProviderError) as refused:
        RdsInventory(managed).resolve(member())

    assert str(refused.value) == (
        "describing DB instance 'orders-db' in eu-central-1 failed: AccessDenied: injected"
    )
    assert refused.value.code == "AccessDenied"


def test_pitr_take_checks_the_database_and_leaves_the_restore_time_to_the_engine(
    managed: ManagedClients, rds: Any, service: RdsService, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds)
    snaps = snapshotter(managed, sleeps, clock)
    spec = member()
    (machine,) = RdsInventory(managed).resolve(spec)
    throttle_once(rds, "DescribeDBInstances")

    (ref,) = snaps.take(call_for(spec, machine))

    assert sleeps.waits, "the throttled Describe was retried after a backoff"
    assert (ref.point, ref.method, ref.state) == ("pitr", "rds-pitr", SnapshotState.PENDING)
    assert ref.restore_time is None
    assert ref.provider == "aws-rds"
    assert ref.tags["quiesce:managed"] == "true"
    assert ref.tags["quiesce:rds-security_groups"] == "sg-0123456789abcdef0"
    assert snaps.point_method(spec).resolution_seconds == 1.0
    assert not rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]


# ------------------------------------------------------------------------------ durability


def test_wait_durable_waits_until_the_latest_restorable_time_passes_t(
    managed: ManagedClients, rds: Any, service: RdsService, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds)
    snaps = snapshotter(managed, sleeps, clock)
    ref = at_t(take(managed, snaps, member()))
    before = clock.now
    sleeps.waits.clear()

    (done,) = snaps.wait_durable([ref], timeout=900)

    assert done.state is SnapshotState.COMPLETED, done.note
    assert done.restore_time == ref.restore_time
    waited = clock.now - before
    assert 300 - 15 <= waited <= 300 + 15, "about the lag, polled every 15 s"
    assert set(sleeps.waits) == {15.0}


def test_a_restore_time_the_service_does_not_reach_in_time_is_failed_with_the_reason(
    managed: ManagedClients, rds: Any, service: RdsService, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds)
    snaps = snapshotter(managed, sleeps, clock)
    ref = at_t(take(managed, snaps, member()))

    (done,) = snaps.wait_durable([ref], timeout=60)

    assert done.state is SnapshotState.FAILED
    assert "had not passed the restore time" in done.note
    assert "after 60s" in done.note


def test_a_stopped_database_cannot_reach_t_and_is_recorded_crash_with_the_reason(
    managed: ManagedClients, rds: Any, service: RdsService, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds)
    snaps = snapshotter(managed, sleeps, clock)
    ref = at_t(take(managed, snaps, member()))
    rds.stop_db_instance(DBInstanceIdentifier="orders-db")
    service.stop("orders-db")

    (done,) = snaps.wait_durable([ref], timeout=900)

    assert done.state is SnapshotState.COMPLETED
    assert done.reported_consistency is Consistency.CRASH
    assert "stopped" in done.note
    assert "before the restore time" in done.note
    assert done.restore_time is not None
    assert ref.restore_time is not None
    assert done.restore_time < ref.restore_time
    assert done.restore_time.microsecond == 0


def test_backups_turned_off_during_the_wait_fail_the_reference_with_the_reason(
    managed: ManagedClients, rds: Any, service: RdsService, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds)
    snaps = snapshotter(managed, sleeps, clock)
    ref = at_t(take(managed, snaps, member()))
    rds.modify_db_instance(
        DBInstanceIdentifier="orders-db", BackupRetentionPeriod=0, ApplyImmediately=True
    )

    (done,) = snaps.wait_durable([ref], timeout=900)

    assert done.state is SnapshotState.FAILED
    assert "automated backups" in done.note
    assert "turned off" in done.note


# ------------------------------------------------------------------- snapshots, retention


def test_snapshot_method_takes_a_tagged_db_snapshot_that_retention_deletes(
    managed: ManagedClients, rds: Any, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds)
    snaps = snapshotter(managed, sleeps, clock)
    throttle_once(rds, "CreateDBSnapshot")

    ref = take(managed, snaps, member(method="snapshot"))

    assert (ref.point, ref.method) == ("snapshot", "rds-snapshot")
    (live,) = rds.describe_db_snapshots(DBSnapshotIdentifier=ref.id)["DBSnapshots"]
    tags = {
        t["Key"]: t["Value"]
        for t in rds.list_tags_for_resource(ResourceName=live["DBSnapshotArn"])["TagList"]
    }
    assert tags["quiesce:managed"] == "true"
    assert tags["quiesce:run-id"] == RUN
    (done,) = snaps.wait_durable([ref], timeout=60)
    assert done.state is SnapshotState.COMPLETED
    assert [r.id for r in snaps.find("shop", "orders")] == [ref.id]
    assert [r.id for r in snaps.find("shop", "orders", run_id="other")] == []

    snaps.delete(done)

    assert not rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
    snaps.delete(done)  # gone already: no error


def test_retention_never_deletes_automated_backups_nor_untagged_snapshots(
    managed: ManagedClients, rds: Any, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds)
    snaps = snapshotter(managed, sleeps, clock)
    backend = rds_backends[ACCOUNT][REGION]
    automated = backend.create_auto_snapshot("orders-db", "rds:orders-db-2026-12-01-03-00")
    automated.tags = [{"Key": "quiesce:managed", "Value": "true"}]  # even when tagged
    rds.create_db_snapshot(DBSnapshotIdentifier="by-hand", DBInstanceIdentifier="orders-db")

    for name in ("rds:orders-db-2026-12-01-03-00", "by-hand"):
        ref = SnapshotRef(
            id=name,
            provider="aws-rds",
            machine_id="orders-db",
            volume="orders-db",
            method="rds-snapshot",
            started_at=utcnow(),
            fixed_at=utcnow(),
            tags={"quiesce:rds-region": REGION},
        )
        with pytest.raises(ProviderError, match="refusing to delete") as refused:
            snaps.delete(ref)
        assert refused.value.code == "NotManaged"
    names = {s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots()["DBSnapshots"]}
    assert {"rds:orders-db-2026-12-01-03-00", "by-hand"} <= names
    assert snaps.find("shop", "orders") == []


def test_a_snapshot_rds_refuses_to_describe_is_not_deleted_and_is_named(
    managed: ManagedClients, rds: Any, sleeps: Sleeps, clock: FakeClock, wire: Wire
) -> None:
    create_instance(rds)
    snaps = snapshotter(managed, sleeps, clock)
    ref = take(managed, snaps, member(method="snapshot"))
    wire.fail(rds, "DescribeDBSnapshots", "AccessDenied", status=403)

    with pytest.raises(ProviderError) as refused:
        snaps.delete(ref)

    assert str(refused.value) == (
        f"describing RDS snapshot {ref.id} in eu-central-1 failed: AccessDenied: injected"
    )
    assert refused.value.code == "AccessDenied"
    manual = rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
    assert [s["DBSnapshotIdentifier"] for s in manual] == [ref.id]


def test_a_pitr_reference_deletes_nothing(
    managed: ManagedClients, rds: Any, service: RdsService, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds)
    snaps = snapshotter(managed, sleeps, clock)
    before = rds.describe_db_snapshots()["DBSnapshots"]
    ref = at_t(take(managed, snaps, member()))

    snaps.delete(ref)

    assert rds.describe_db_snapshots()["DBSnapshots"] == before
    assert rds.describe_db_instances()["DBInstances"][0]["BackupRetentionPeriod"] == 7


# ------------------------------------------------------------------------------ restore


def restore_request(
    ref: SnapshotRef, name: str = "restore-20261202t040000z-orders-db"
) -> CloudRestore:
    return CloudRestore(
        snapshot=ref,
        point=f"rp-{RUN}",
        member="orders-db",
        name=name,
        restore_time=ref.restore_time,
    )


def test_an_instance_restores_to_t_planned_first_then_executed(
    managed: ManagedClients, rds: Any, service: RdsService, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds)
    service.restores.clear()  # the setup's CreateDBInstance
    snaps = snapshotter(managed, sleeps, clock)
    ref = at_t(take(managed, snaps, member()))
    (ref,) = snaps.wait_durable([ref], timeout=900)
    assert ref.restore_time is not None
    t = ref.restore_time.strftime("%Y-%m-%dT%H:%M:%SZ")

    planned = snaps.plan_cloud_restore(restore_request(ref))

    assert service.restores == [], "planning calls nothing"
    assert planned.action == "RestoreDBInstanceToPointInTime"
    assert planned.parameters["RestoreTime"] == t
    assert planned.parameters["SourceDBInstanceIdentifier"] == "orders-db"
    assert planned.parameters["VpcSecurityGroupIds"] == "sg-0123456789abcdef0"
    assert f"--restore-time {t}" in planned.command
    assert planned.command.startswith("aws rds restore-db-instance-to-point-in-time")

    done = snaps.cloud_restore(restore_request(ref))

    ((action, params),) = service.restores
    assert action == "RestoreDBInstanceToPointInTime"
    assert params["RestoreTime"] == ref.restore_time
    assert params["TargetDBInstanceIdentifier"] == "restore-20261202t040000z-orders-db"
    (new,) = rds.describe_db_instances(DBInstanceIdentifier="restore-20261202t040000z-orders-db")[
        "DBInstances"
    ]
    assert done.created == [new["DBInstanceArn"]]
    tags = {t["Key"]: t["Value"] for t in new["TagList"]}
    assert tags["quiesce:restored-from"] == f"rp-{RUN}"
    assert "quiesce:managed" not in tags, "a restored database is the user's, not retention's"


def test_a_restorable_instance_and_cluster_pass_the_check_before_a_restore(
    managed: ManagedClients, rds: Any, service: RdsService, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds)
    create_cluster(rds)
    snaps = snapshotter(managed, sleeps, clock)
    for spec in (member(), member(name="aurora", cluster="orders-aurora")):
        (ref,) = snaps.wait_durable([at_t(take(managed, snaps, spec))], timeout=900)
        assert ref.state is SnapshotState.COMPLETED

        snaps.check(ref)  # no error: RDS can restore it to T


@pytest.mark.parametrize(
    ("spec", "days"),
    [({}, 7), ({"name": "aurora", "cluster": "orders-aurora"}, 3)],
    ids=["instance", "cluster"],
)
def test_a_t_that_left_the_backup_retention_is_refused_with_the_window(
    managed: ManagedClients,
    rds: Any,
    service: RdsService,
    sleeps: Sleeps,
    clock: FakeClock,
    spec: dict[str, Any],
    days: int,
) -> None:
    create_instance(rds)
    create_cluster(rds)
    snaps = snapshotter(managed, sleeps, clock)
    (ref,) = snaps.wait_durable([at_t(take(managed, snaps, member(**spec)))], timeout=900)
    clock.now += (days + 1) * 86400  # a day past the backup retention

    with pytest.raises(ProviderError) as caught:
        snaps.check(ref)

    assert caught.value.code == "NotRestorable"
    assert "is before the earliest restorable time" in str(caught.value)
    assert f"{days}-day backup retention" in str(caught.value)


def test_a_deleted_database_or_snapshot_is_refused_before_a_restore(
    managed: ManagedClients, rds: Any, service: RdsService, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds)
    snaps = snapshotter(managed, sleeps, clock)
    (pitr,) = snaps.wait_durable([at_t(take(managed, snaps, member()))], timeout=900)
    (snap,) = snaps.wait_durable([take(managed, snaps, member(method="snapshot"))], timeout=900)
    assert snap.state is SnapshotState.COMPLETED
    snaps.check(snap)
    rds.delete_db_snapshot(DBSnapshotIdentifier=snap.id)
    rds.delete_db_instance(DBInstanceIdentifier="orders-db", SkipFinalSnapshot=True)

    with pytest.raises(ProviderError, match=r"DB instance orders-db is gone from"):
        snaps.check(pitr)
    with pytest.raises(ProviderError, match=r"the RDS snapshot is gone"):
        snaps.check(snap)


def test_a_restore_time_that_is_not_a_whole_second_is_refused_before_any_call(
    managed: ManagedClients, rds: Any, service: RdsService, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_instance(rds)
    service.restores.clear()  # the setup's CreateDBInstance
    snaps = snapshotter(managed, sleeps, clock)
    ref = take(managed, snaps, member())
    ref = ref.model_copy(update={"restore_time": utcnow().replace(microsecond=250_000)})

    with pytest.raises(ProviderError, match="whole seconds"):
        snaps.plan_cloud_restore(restore_request(ref))
    assert service.restores == []


def test_an_aurora_cluster_restores_to_t_with_its_writer(
    managed: ManagedClients, rds: Any, service: RdsService, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_cluster(rds)
    service.restores.clear()  # the setup's CreateDBInstance
    snaps = snapshotter(managed, sleeps, clock)
    spec = member(name="aurora", cluster="orders-aurora", instance=None)
    ref = at_t(take(managed, snaps, spec))
    assert ref.method == "rds-cluster-pitr"
    (ref,) = snaps.wait_durable([ref], timeout=900)
    assert ref.state is SnapshotState.COMPLETED

    done = snaps.cloud_restore(restore_request(ref, "restore-x-aurora"))

    assert [a for a, _ in service.restores] == [
        "RestoreDBClusterToPointInTime",
        "CreateDBInstance",
    ]
    cluster_call, writer_call = (p for _, p in service.restores)
    assert cluster_call["RestoreToTime"] == ref.restore_time
    assert cluster_call["SourceDBClusterIdentifier"] == "orders-aurora"
    assert writer_call["DBClusterIdentifier"] == "restore-x-aurora"
    assert writer_call["DBInstanceClass"] == "db.r6g.large"
    assert done.action == "RestoreDBClusterToPointInTime + CreateDBInstance"
    assert len(done.created) == 2
    assert " && aws rds create-db-instance " in done.command
    (new,) = rds.describe_db_clusters(DBClusterIdentifier="restore-x-aurora")["DBClusters"]
    assert new["Engine"] == "aurora-postgresql"


def test_an_aurora_cluster_snapshot_restores_as_a_new_cluster(
    managed: ManagedClients, rds: Any, service: RdsService, sleeps: Sleeps, clock: FakeClock
) -> None:
    create_cluster(rds)
    service.restores.clear()  # the setup's CreateDBInstance
    snaps = snapshotter(managed, sleeps, clock)
    spec = member(name="aurora", cluster="orders-aurora", instance=None, method="snapshot")
    ref = take(managed, snaps, spec)
    assert ref.method == "rds-cluster-snapshot"
    (ref,) = snaps.wait_durable([ref], timeout=60)
    assert ref.state is SnapshotState.COMPLETED

    snaps.cloud_restore(restore_request(ref, "restore-y-aurora"))

    assert [a for a, _ in service.restores] == ["RestoreDBClusterFromSnapshot", "CreateDBInstance"]
    assert service.restores[0][1]["SnapshotIdentifier"] == ref.id
    assert rds.describe_db_clusters(DBClusterIdentifier="restore-y-aurora")["DBClusters"]


def test_a_writer_rds_refuses_names_the_cluster_already_restored(
    managed: ManagedClients,
    rds: Any,
    service: RdsService,
    sleeps: Sleeps,
    clock: FakeClock,
    wire: Wire,
) -> None:
    create_cluster(rds)
    snaps = snapshotter(managed, sleeps, clock)
    spec = member(name="aurora", cluster="orders-aurora", instance=None, method="snapshot")
    (ref,) = snaps.wait_durable([take(managed, snaps, spec)], timeout=60)
    wire.fail(rds, "CreateDBInstance", "InstanceQuotaExceeded")

    with pytest.raises(ProviderError) as refused:
        snaps.cloud_restore(restore_request(ref, "restore-z-aurora"))

    (cluster,) = rds.describe_db_clusters(DBClusterIdentifier="restore-z-aurora")["DBClusters"]
    assert str(refused.value) == (
        f"CreateDBInstance of {ref.id} in eu-central-1 failed: InstanceQuotaExceeded: injected "
        f"(created so far: {cluster['DBClusterArn']})"
    )
    assert refused.value.code == "InstanceQuotaExceeded"


def test_restored_names_follow_rds_identifier_rules() -> None:
    assert rds_name("restore-20261202T040000Z--Orders_DB-") == "restore-20261202t040000z-orders-db"
    assert rds_name("1st") == "q-1st"
    assert len(rds_name("x" * 100)) == 63
