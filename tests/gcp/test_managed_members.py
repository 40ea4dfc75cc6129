"""Cloud SQL and Filestore members through the real google-cloud-sql (gRPC) and
google-cloud-filestore (REST) clients against the wire-level fakes: plan refuses an instance
without point-in-time recovery, the wait for the latest recovery time (minutes behind, on a
fake clock), throttling, the cases that cannot reach T, retention that never deletes what is
not Quiesce's, and the restores with their documented calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.auth.credentials import AnonymousCredentials

from quiesce.errors import ProviderError
from quiesce.plan import plan_policy
from quiesce.policy.model import Policy
from quiesce.ports import CloudRestore, HookCall, Machine, Provider, SnapshotCall
from quiesce.providers.registry import get
from quiesce.record import Consistency, SnapshotRef, SnapshotState, utcnow
from quiesce.tags import POINT_TAG, RUN_TAG
from quiesce_gcp.cloudsql import CloudSqlSnapshotter, SqlClients
from quiesce_gcp.filestore import FilestoreClients, FilestoreSnapshotter, snapshot_id
from quiesce_gcp.managed_provider import (
    filestore_provider,
    make_filestore_provider,
    make_sql_provider,
    sql_provider,
)
from quiesce_gcp.managed_spec import CloudSqlMember, FilestoreMember
from quiesce_gcp.retry import Backoff

from .fake_filestore import FakeFilestore
from .fake_sql import FakeCloudSql

PROJECT = "quiesce-test"
ZONE = "europe-west1-b"
FILES = f"projects/{PROJECT}/locations/{ZONE}/instances/files"


class Clock:
    """The snapshotters' clock and sleep: sleeping moves the fake Cloud SQL clock on, so a
    wait of minutes takes no time."""

    def __init__(self, sql: FakeCloudSql) -> None:
        self.sql = sql
        self.t = 0.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.slept += seconds
        self.sql.advance(seconds)


@pytest.fixture
def sql() -> Iterator[FakeCloudSql]:
    fake = FakeCloudSql(lag_seconds=240).start()
    yield fake
    fake.stop()


@pytest.fixture
def filestore() -> Iterator[FakeFilestore]:
    fake = FakeFilestore().start()
    yield fake
    fake.stop()


def no_wait_backoff() -> Backoff:
    return Backoff(sleep=lambda _: None, random=lambda: 0.0)


def sql_snapshotter(sql: FakeCloudSql, clock: Clock) -> CloudSqlSnapshotter:
    return CloudSqlSnapshotter(
        SqlClients(endpoint=sql.url),
        poll_interval=10.0,
        backoff=no_wait_backoff(),
        sleep=clock.sleep,
        clock=clock.monotonic,
    )


def policy(*members: dict[str, Any]) -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {"orders": {"consistency": "crash", "members": list(members)}},
        }
    )


DB = {"name": "db", "provider": "gcp-sql", "project": PROJECT, "instance": "orders-db"}
SHARE = {
    "name": "share",
    "provider": "gcp-filestore",
    "project": PROJECT,
    "location": ZONE,
    "instance": "files",
}


def call(member: Any, machine: Machine, run_id: str = "run-1") -> SnapshotCall:
    return SnapshotCall(
        run_id=run_id,
        policy="shop",
        group="orders",
        member=member.name,
        machine=machine,
        recovery_point=f"rp-{run_id}",
        consistency="crash",
        spec=member,
    )


def stamped(ref: SnapshotRef, moment: datetime) -> SnapshotRef:
    """What the engine does to a pitr reference: its restore time is the group's T."""
    return ref.model_copy(update={"restore_time": moment, "fixed_at": moment})


# ------------------------------------------------------------------------------ the models


def test_a_cloud_sql_member_refuses_a_snapshot_method_with_the_reason() -> None:
    with pytest.raises(ValueError, match="point-in-time recovery only"):
        CloudSqlMember.model_validate({**DB, "method": "snapshot"})
    assert CloudSqlMember.model_validate(DB).method == "pitr"
    with pytest.raises(ValueError, match="backups copy the share over an interval"):
        FilestoreMember.model_validate({**SHARE, "method": "backup"})


def test_a_managed_member_with_hooks_is_refused() -> None:
    with pytest.raises(ValueError, match="runs no hooks of its own"):
        policy({**DB, "hooks": {"pre": {"run": ["/x"]}, "post": {"run": ["/y"]}}})


# ------------------------------------------------------------------------------ plan


def test_plan_refuses_a_database_without_point_in_time_recovery(
    sql: FakeCloudSql, filestore: FakeFilestore
) -> None:
    sql.add(PROJECT, "orders-db", version="MYSQL_8_0", pitr=False)
    filestore.add_instance(PROJECT, ZONE, "files")
    pol = policy(DB, SHARE)
    providers = {
        "gcp-sql": make_sql_provider(pol, env={"QUIESCE_SQL_ENDPOINT": sql.url}),
        "gcp-filestore": make_filestore_provider(
            pol, env={"QUIESCE_FILESTORE_ENDPOINT": filestore.url}
        ),
    }

    plan = plan_policy(pol, providers)

    assert plan["ok"] is False
    db, share = plan["groups"][0]["members"]
    assert "cannot be restored to a point in time" in db["error"]
    assert "binary logging (point-in-time recovery) is disabled" in db["error"]
    assert "--enable-bin-log" in db["error"]
    assert share["error"] is None
    assert share["volumes"][0]["method"].startswith("snapshot")


def test_plan_names_the_member_whose_instance_is_not_there(
    sql: FakeCloudSql, filestore: FakeFilestore
) -> None:
    pol = policy(DB, SHARE)
    providers = {
        "gcp-sql": sql_provider(endpoint=sql.url),
        "gcp-filestore": filestore_provider(pol, endpoint=filestore.url),
    }

    plan = plan_policy(pol, providers)

    assert plan["ok"] is False
    db, share = plan["groups"][0]["members"]
    assert f"member 'db': Cloud SQL instance {PROJECT}/orders-db not found" in db["error"]
    assert f"member 'share': Filestore instance {FILES} not found" in share["error"]


def test_plan_shows_the_pitr_method_of_a_database_that_has_it(sql: FakeCloudSql) -> None:
    sql.add(PROJECT, "orders-db")
    pol = policy(DB)
    plan = plan_policy(pol, {"gcp-sql": sql_provider(endpoint=sql.url)})
    assert plan["ok"] is True
    (db,) = plan["groups"][0]["members"]
    assert db["machines"] == [f"projects/{PROJECT}/instances/orders-db"]
    assert "instances.clone at the group's T (whole seconds)" in db["volumes"][0]["method"]


def test_the_registered_spec_builds_the_provider_from_the_environment(
    sql: FakeCloudSql, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql.add(PROJECT, "orders-db")
    monkeypatch.setenv("QUIESCE_SQL_ENDPOINT", sql.url)
    pol = policy(DB)
    provider = get("gcp-sql").build(pol, scratch=True)
    (machine,) = provider.inventory.resolve(pol.groups["orders"].members[0])
    assert machine.volumes == ("orders-db",)


def test_a_managed_member_gets_no_hook_calls(sql: FakeCloudSql) -> None:
    provider = sql_provider(endpoint=sql.url)
    member = CloudSqlMember.model_validate(DB)
    machine = Machine("gcp-sql", "db", member.resource, ("orders-db",))
    from quiesce.policy.model import Hook

    hook_call = HookCall(
        run_id="r",
        policy="shop",
        group="orders",
        member="db",
        machine=machine,
        phase="pre",
        hook=Hook(run=["/x"]),
        spec=member,
    )
    with pytest.raises(ProviderError, match="runs no hooks"):
        provider.hooks.run(hook_call)


# ------------------------------------------------------------------------------ Cloud SQL


def test_take_refuses_at_run_time_with_the_same_message(sql: FakeCloudSql) -> None:
    sql.add(PROJECT, "orders-db", pitr=False)
    snapshotter = sql_snapshotter(sql, Clock(sql))
    member = CloudSqlMember.model_validate(DB)
    machine = Machine("gcp-sql", "db", member.resource, ("orders-db",))
    with pytest.raises(ProviderError, match="point-in-time recovery is disabled") as caught:
        snapshotter.take(call(member, machine))
    assert caught.value.code == "PointInTimeRecoveryDisabled"


def _pitr_ref(sql: FakeCloudSql, clock: Clock) -> tuple[CloudSqlSnapshotter, SnapshotRef]:
    snapshotter = sql_snapshotter(sql, clock)
    member = CloudSqlMember.model_validate(DB)
    machine = Machine("gcp-sql", "db", member.resource, ("orders-db",))
    (ref,) = snapshotter.take(call(member, machine))
    assert (ref.point, ref.state, ref.restore_time) == ("pitr", SnapshotState.PENDING, None)
    return snapshotter, ref


def test_wait_durable_waits_until_the_latest_recovery_time_passes_t(sql: FakeCloudSql) -> None:
    sql.add(PROJECT, "orders-db")
    clock = Clock(sql)
    snapshotter, ref = _pitr_ref(sql, clock)
    moment = utcnow().replace(microsecond=0) + timedelta(seconds=1)

    (done,) = snapshotter.wait_durable([stamped(ref, moment)], timeout=900)

    assert done.state is SnapshotState.COMPLETED
    assert done.reported_consistency is None
    # The latest recovery time trails by four minutes: the wait lasted about that long.
    assert 230 <= clock.slept <= 260
    assert sql.latest() >= moment


def test_throttled_reads_are_retried(sql: FakeCloudSql) -> None:
    sql.add(PROJECT, "orders-db")
    sql.lag_seconds = 0
    clock = Clock(sql)
    sql.throttle("Get", grpc.StatusCode.RESOURCE_EXHAUSTED)
    snapshotter, ref = _pitr_ref(sql, clock)
    sql.throttle("GetLatestRecoveryTime", grpc.StatusCode.UNAVAILABLE)
    moment = utcnow() - timedelta(seconds=5)
    (done,) = snapshotter.wait_durable([stamped(ref, moment)], timeout=60)
    assert done.state is SnapshotState.COMPLETED
    assert sql.calls.count("Get") == 2
    assert sql.calls.count("GetLatestRecoveryTime") == 2


def test_a_restore_time_never_reached_in_time_fails_with_the_latest_time_seen(
    sql: FakeCloudSql,
) -> None:
    sql.add(PROJECT, "orders-db")
    clock = Clock(sql)
    snapshotter, ref = _pitr_ref(sql, clock)
    moment = utcnow().replace(microsecond=0) + timedelta(seconds=1)
    (done,) = snapshotter.wait_durable([stamped(ref, moment)], timeout=60)
    assert done.state is SnapshotState.FAILED
    assert "had not reached the restore time" in done.note
    assert "after 60s" in done.note


def test_point_in_time_recovery_turned_off_meanwhile_fails_with_the_reason(
    sql: FakeCloudSql,
) -> None:
    instance = sql.add(PROJECT, "orders-db")
    clock = Clock(sql)
    snapshotter, ref = _pitr_ref(sql, clock)
    instance.pitr = False
    moment = utcnow().replace(microsecond=0)
    (done,) = snapshotter.wait_durable([stamped(ref, moment)], timeout=600)
    assert done.state is SnapshotState.FAILED
    assert "point-in-time recovery is disabled" in done.note


def test_a_restore_time_that_is_not_a_whole_second_is_reported_crash(sql: FakeCloudSql) -> None:
    sql.add(PROJECT, "orders-db")
    clock = Clock(sql)
    snapshotter, ref = _pitr_ref(sql, clock)
    moment = utcnow().replace(microsecond=250_000)
    (done,) = snapshotter.wait_durable([stamped(ref, moment)], timeout=900)
    assert done.state is SnapshotState.COMPLETED
    assert done.reported_consistency is Consistency.CRASH
    assert "not a whole second" in done.note


def test_retention_of_a_pitr_reference_touches_nothing(sql: FakeCloudSql) -> None:
    sql.add(PROJECT, "orders-db")
    snapshotter, ref = _pitr_ref(sql, Clock(sql))
    before = list(sql.calls)
    snapshotter.delete(ref)
    assert snapshotter.find("shop", "orders") == []
    assert sql.calls == before  # no call at all: automated backups are the service's


def test_a_clone_at_t_is_planned_and_made_with_t_in_whole_seconds(sql: FakeCloudSql) -> None:
    sql.add(PROJECT, "orders-db")
    clock = Clock(sql)
    snapshotter, ref = _pitr_ref(sql, clock)
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    request = CloudRestore(
        snapshot=stamped(ref, moment),
        point="rp-run-1",
        member="db",
        name="db_restored@rp-run-1",
        restore_time=moment,
    )
    step = snapshotter.plan_cloud_restore(request)
    assert step.action == "instances.clone"
    assert step.parameters["pointInTime"] == "2026-01-02T03:04:05Z"
    assert step.parameters["destinationInstanceName"] == "db-restored-rp-run-1"
    assert "--point-in-time=2026-01-02T03:04:05Z" in step.command
    assert sql.clones == []  # planning calls nothing

    sql.throttle("Clone", grpc.StatusCode.UNAVAILABLE)
    done = snapshotter.cloud_restore(request)
    assert done.created == [f"projects/{PROJECT}/instances/db-restored-rp-run-1"]
    (clone,) = sql.clones
    assert clone["point_in_time"] == (int(moment.timestamp()), 0)
    assert clone["instance"] == "orders-db"


def test_a_clone_after_the_latest_recovery_time_is_refused_by_the_service(
    sql: FakeCloudSql,
) -> None:
    sql.add(PROJECT, "orders-db")
    snapshotter, ref = _pitr_ref(sql, Clock(sql))
    moment = utcnow().replace(microsecond=0)  # four minutes after the latest recovery time
    request = CloudRestore(
        snapshot=stamped(ref, moment), point="p", member="db", name="db-x", restore_time=moment
    )
    with pytest.raises(ProviderError, match="after the latest recovery time"):
        snapshotter.cloud_restore(request)


# ------------------------------------------------------------------------------ Filestore


def fs_snapshotter(filestore: FakeFilestore, **kwargs: Any) -> FilestoreSnapshotter:
    return FilestoreSnapshotter(
        FilestoreClients(AnonymousCredentials(), endpoint=filestore.url),  # type: ignore[no-untyped-call]
        instances={"orders": [FILES]},
        poll_interval=0.0,
        backoff=no_wait_backoff(),
        **kwargs,
    )


def _take_share(filestore: FakeFilestore, snapshotter: FilestoreSnapshotter) -> SnapshotRef:
    member = FilestoreMember.model_validate(SHARE)
    machine = Machine("gcp-filestore", "share", member.resource, ("files",))
    (ref,) = snapshotter.take(call(member, machine))
    return ref


def test_a_filestore_snapshot_is_ready_when_take_returns_and_throttling_is_retried(
    filestore: FakeFilestore,
) -> None:
    filestore.add_instance(PROJECT, ZONE, "files")
    filestore.throttle("POST", r"/snapshots$", 429)
    filestore.throttle("GET", r"/snapshots/q-", 503)
    snapshotter = fs_snapshotter(filestore)

    ref = _take_share(filestore, snapshotter)

    assert ref.point == "snapshot"
    assert ref.state is SnapshotState.COMPLETED
    assert ref.location == f"{FILES}/snapshots/{snapshot_id('run-1', FILES)}"
    assert filestore.snapshots[ref.location]["state"] == "READY"
    assert filestore.snapshots[ref.location]["labels"]["quiesce-managed"] == "true"
    posts = [p for m, p in filestore.requests if m == "POST"]
    assert len(posts) == 2  # the 429, then the create
    (done,) = snapshotter.wait_durable([ref], timeout=10)
    assert done.state is SnapshotState.COMPLETED


def test_a_tier_without_snapshots_is_refused_at_plan(filestore: FakeFilestore) -> None:
    filestore.add_instance(PROJECT, ZONE, "files", tier="BASIC_HDD")
    pol = policy(SHARE)
    plan = plan_policy(pol, {"gcp-filestore": filestore_provider(pol, endpoint=filestore.url)})
    assert plan["ok"] is False
    assert "has no snapshots" in plan["groups"][0]["members"][0]["error"]


def test_retention_deletes_only_quiesces_labelled_snapshots(filestore: FakeFilestore) -> None:
    filestore.add_instance(PROJECT, ZONE, "files")
    theirs = filestore.add_snapshot(FILES, "nightly")
    disguised = filestore.add_snapshot(FILES, "q-fake", {"quiesce-policy": "shop"})
    snapshotter = fs_snapshotter(filestore)
    ref = _take_share(filestore, snapshotter)

    found = snapshotter.find("shop", "orders")
    assert [r.location for r in found] == [ref.location]
    snapshotter.delete(found[0])
    assert ref.location not in filestore.snapshots
    for name in (theirs, disguised):
        other = ref.model_copy(update={"location": name})
        with pytest.raises(ProviderError) as caught:
            snapshotter.delete(other)
        assert caught.value.code == "NotManaged"
        assert name in filestore.snapshots


def test_find_gives_a_filestore_snapshot_s_exact_tags_only_where_its_labels_agree(
    filestore: FakeFilestore,
) -> None:
    filestore.add_instance(PROJECT, ZONE, "files")
    snapshotter = fs_snapshotter(filestore)
    member = FilestoreMember.model_validate(SHARE)
    machine = Machine("gcp-filestore", "share", member.resource, ("files",))
    (ref,) = snapshotter.take(call(member, machine, "20261202T040000Z-ABC123"))
    held = filestore.snapshots[ref.location]
    assert json.loads(held["description"])[RUN_TAG] == "20261202T040000Z-ABC123"
    assert held["labels"]["quiesce-run"] == "20261202t040000z-abc123"

    (found,) = snapshotter.find("shop", "orders")
    assert found.tags[RUN_TAG] == "20261202T040000Z-ABC123"
    assert found.tags[POINT_TAG] == "rp-20261202T040000Z-ABC123"
    assert found.tags["quiesce:machine"] == FILES
    # A run whose id differs only in case is another run.
    assert snapshotter.find("shop", "orders", "20261202t040000z-abc123") == []

    held["labels"]["quiesce-run"] = "another-run"  # relabelled by hand
    (relabelled,) = snapshotter.find("shop", "orders")
    assert RUN_TAG not in relabelled.tags
    assert relabelled.tags[POINT_TAG] == "rp-20261202T040000Z-ABC123"
    held["description"] = "Nightly, by hand"
    (plain,) = snapshotter.find("shop", "orders")
    assert not any(k.startswith("quiesce:") for k in plain.tags)


def test_restore_reverts_only_a_member_that_allows_it(filestore: FakeFilestore) -> None:
    filestore.add_instance(PROJECT, ZONE, "files")
    snapshotter = fs_snapshotter(filestore)
    ref = _take_share(filestore, snapshotter)
    request = CloudRestore(snapshot=ref, point="rp-run-1", member="share", name="share")

    step = snapshotter.plan_cloud_restore(request)
    assert "not run" in step.command
    assert f".snapshot/{ref.id}/" in step.command
    with pytest.raises(ProviderError) as caught:
        snapshotter.cloud_restore(request)
    assert caught.value.code == "RevertNotAllowed"
    assert filestore.reverts == []

    allowed = fs_snapshotter(filestore, revertible={FILES})
    done = allowed.cloud_restore(request)
    assert done.action == "instances.revert"
    assert filestore.reverts == [{"name": FILES, "targetSnapshotId": ref.id}]


def test_the_factory_reads_allow_revert_from_the_policy(filestore: FakeFilestore) -> None:
    pol = policy({**SHARE, "allow_revert": True})
    provider: Provider = filestore_provider(pol, endpoint=filestore.url)
    assert isinstance(provider.snapshots, FilestoreSnapshotter)
    assert provider.snapshots.revertible == {FILES}
    assert provider.snapshots.instances == {"orders": [FILES]}
