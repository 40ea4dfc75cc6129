"""A group of two Compute Engine VMs (Quiesce's agent, real hook scripts), one Cloud SQL
database and one Filestore share backs up as ONE recovery point with one restore time T, and
the whole group is restored to it in the cloud.

The VMs run on the fake Compute API with the real guest agent and runner; the database and the
share on the Cloud SQL and Filestore fakes through the real google-cloud-sql and
google-cloud-filestore clients. Cloud SQL's latest recovery time trails by four minutes on a
fake clock the snapshotter's sleep moves on, so the wait for it takes no real time."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from quiesce.cloud_restore import restore_in_cloud
from quiesce.engine import run_group
from quiesce.errors import QuiesceError
from quiesce.policy.model import Policy
from quiesce.ports import Backends, CloudRestore, Provider, RestoreStep
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from quiesce.record import Consistency, Phase, RecoveryPoint, RunRecord, RunStatus
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.cloudsql import CloudSqlSnapshotter
from quiesce_gcp.hooks import AgentHookRunner
from quiesce_gcp.inventory import GceInventory
from quiesce_gcp.managed_provider import filestore_provider, sql_provider
from quiesce_gcp.signing import AgentKeys
from quiesce_gcp.snapshots import GceSnapshotter

from .conftest import MASTER_KEY, PROJECT, ZONE, Fleet, write_script
from .fake_compute import BASE, FakeCompute
from .fake_filestore import FakeFilestore
from .fake_sql import FakeCloudSql

FILES = f"projects/{PROJECT}/locations/{ZONE}/instances/files"
DB_INSTANCE = f"projects/{PROJECT}/instances/orders-db"


class RestoringCompute(FakeCompute):
    """The fake Compute API with disks.insert (a disk from a snapshot), kept in `inserted`."""

    def __init__(self) -> None:
        self.inserted: list[dict[str, Any]] = []
        super().__init__()

    def _handler(self) -> Any:
        base = super()._handler()
        fake = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def _route(
                self, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any]
            ) -> None:
                match parts:
                    case ["projects", p, "zones", z, "disks"] if method == "POST":
                        source = body.get("sourceSnapshot", "")
                        name = source.rsplit("/", 1)[-1]
                        if (p, name) not in fake.snapshots:
                            self._error(404, f"The resource '{source}' was not found")
                            return
                        if (p, z, body["name"]) in fake.disks:
                            self._error(409, f"The resource '{body['name']}' already exists")
                            return
                        url = f"{BASE}/projects/{p}/zones/{z}/disks/{body['name']}"
                        fake.disks[(p, z, body["name"])] = {"name": body["name"], "selfLink": url}
                        fake.inserted.append({"project": p, "zone": z, **body})
                        self._send(200, fake._new_op(p, z, "insert", url, done=False))
                    case _:
                        super()._route(method, parts, query, body)

        return Handler


@pytest.fixture
def compute() -> Iterator[RestoringCompute]:
    fake = RestoringCompute().start()
    yield fake
    fake.stop()


@pytest.fixture
def sql() -> Iterator[FakeCloudSql]:
    fake = FakeCloudSql(lag_seconds=240).start()
    fake.add(PROJECT, "orders-db")
    yield fake
    fake.stop()


@pytest.fixture
def filestore() -> Iterator[FakeFilestore]:
    fake = FakeFilestore().start()
    fake.add_instance(PROJECT, ZONE, "files")
    yield fake
    fake.stop()


def timed_hooks(fleet: Fleet, member: str) -> dict[str, Any]:
    """Hooks that append "<phase> <member> <epoch seconds>" to the journal."""
    folder = fleet.root / "hooks"
    folder.mkdir(mode=0o755, exist_ok=True)
    hooks = {}
    for phase in ("pre", "post"):
        line = f'echo "{phase} $1 $(date +%s.%N)" >> {fleet.journal}'
        script = write_script(folder / f"{member}-{phase}.sh", line)
        hooks[phase] = {"run": [str(script), member], "timeout_seconds": 5}
    return hooks


def group_policy(fleet: Fleet, **share: Any) -> Policy:
    def vm(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "provider": "gcp",
            "project": PROJECT,
            "zone": ZONE,
            "select": {"instances": [f"{name}-vm"]},
            "hooks": timed_hooks(fleet, name),
        }

    return Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "orders": {
                    "consistency": "application",
                    "max_freeze_seconds": 20,
                    "durability_timeout_seconds": 900,
                    "members": [
                        vm("app"),
                        vm("worker"),
                        {
                            "name": "db",
                            "provider": "gcp-sql",
                            "project": PROJECT,
                            "instance": "orders-db",
                        },
                        {
                            "name": "share",
                            "provider": "gcp-filestore",
                            "project": PROJECT,
                            "location": ZONE,
                            "instance": "files",
                            **share,
                        },
                    ],
                }
            },
        }
    )


class Clock:
    def __init__(self, sql: FakeCloudSql) -> None:
        self.sql, self.t, self.slept = sql, 0.0, 0.0

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.slept += seconds
        self.sql.advance(seconds)


def backends(
    policy: Policy,
    clients: GcpClients,
    sql: FakeCloudSql,
    filestore: FakeFilestore,
    clock: Clock,
) -> Backends:
    database = sql_provider(endpoint=sql.url, poll_interval=10.0)
    assert isinstance(database.snapshots, CloudSqlSnapshotter)
    database.snapshots.sleep = clock.sleep
    database.snapshots.clock = clock.monotonic
    vms = Provider(
        inventory=GceInventory(clients),
        hooks=AgentHookRunner(clients, keys=AgentKeys.from_hex(MASTER_KEY), poll_interval=0.05),
        snapshots=GceSnapshotter(clients, projects={"orders": [PROJECT]}, poll_interval=0.01),
    )
    return Backends(
        providers={
            "gcp": vms,
            "gcp-sql": database,
            "gcp-filestore": filestore_provider(policy, endpoint=filestore.url, poll_interval=0.0),
        },
        state=MemoryStateStore(),
        bus=MemoryEventBus(),
    )


def hook_times(fleet: Fleet, phase: str) -> list[datetime]:
    out = []
    for line in fleet.lines():
        match = re.fullmatch(rf"{phase} \S+ ([0-9.]+)", line)
        if match:
            out.append(datetime.fromtimestamp(float(match[1]), tz=UTC))
    return out


def start(fleet: Fleet, policy: Policy) -> None:
    fleet.add("app-vm", policy, data_disks=1)
    fleet.add("worker-vm", policy, data_disks=0)


def restore_group(point: RecoveryPoint, backends: Backends, *, execute: bool) -> list[RestoreStep]:
    """What `quiesce restore --execute` does for the whole group in its cloud."""
    steps = []
    for member in point.members:
        snapshots = backends.providers[member.provider].snapshots
        for ref in member.snapshots:
            request = CloudRestore(
                snapshot=ref,
                point=point.id,
                member=member.name,
                name=f"{ref.volume.rsplit('/', 1)[-1]}-{point.id}",
                restore_time=point.restore_time,
            )
            plan = snapshots.plan_cloud_restore(request)
            steps.append(snapshots.cloud_restore(request) if execute else plan)
    return steps


def test_two_vms_a_database_and_a_share_make_one_point_with_one_t_and_restore_to_it(
    fleet: Fleet,
    compute: RestoringCompute,
    clients: GcpClients,
    sql: FakeCloudSql,
    filestore: FakeFilestore,
) -> None:
    policy = group_policy(fleet, allow_revert=True)
    start(fleet, policy)
    clock = Clock(sql)
    wired = backends(policy, clients, sql, filestore, clock)

    record = run_group(policy, "orders", wired)

    assert record.status is RunStatus.SUCCEEDED, (record.errors, record.warnings)
    assert record.consistency is Consistency.APPLICATION
    point = wired.state.get_point(record.recovery_point or "")
    assert point is not None
    moment = point.restore_time
    assert moment is not None
    assert moment == record.restore_time
    assert moment.microsecond == 0
    # T lies inside the quiesced interval: after every pre hook, before any post hook.
    assert max(hook_times(fleet, "pre")) < moment < min(hook_times(fleet, "post"))
    members = {m.name: m for m in point.members}
    assert {n: m.consistency for n, m in members.items()} == dict.fromkeys(
        ("app", "worker", "db", "share"), Consistency.APPLICATION
    )
    (db,) = members["db"].snapshots
    assert (db.point, db.method, db.restore_time, db.fixed_at) == (
        "pitr",
        "cloudsql-pitr",
        moment,
        moment,
    )
    # The run waited, outside the freeze, for the latest recovery time to pass T.
    assert db.durable_at is not None
    assert db.durable_at > moment
    assert clock.slept >= 230
    assert sql.latest() >= moment
    (share,) = members["share"].snapshots
    assert share.point == "snapshot"
    assert max(hook_times(fleet, "pre")) < share.fixed_at < min(hook_times(fleet, "post"))
    assert len(members["app"].snapshots) == 2
    assert len(members["worker"].snapshots) == 1

    planned = restore_group(point, wired, execute=False)
    assert sql.clones == []
    assert filestore.reverts == []
    assert compute.inserted == []
    actions = sorted(step.action for step in planned)
    assert actions == ["disks.insert"] * 3 + ["instances.clone", "instances.revert"]

    steps = restore_group(point, wired, execute=True)

    (clone,) = sql.clones
    assert clone["instance"] == "orders-db"
    assert clone["point_in_time"] == (int(moment.timestamp()), 0)
    assert filestore.reverts == [{"name": FILES, "targetSnapshotId": share.id}]
    disks = {(d["zone"], d["sourceSnapshot"].rsplit("/", 1)[-1]) for d in compute.inserted}
    vm_snapshots = [s for m in ("app", "worker") for s in members[m].snapshots]
    assert disks == {(ZONE, s.id) for s in vm_snapshots}
    assert all(d["labels"]["quiesce-point"] == point.id.lower() for d in compute.inserted)
    assert all(step.created for step in steps)


def backed_up_point(
    fleet: Fleet, clients: GcpClients, sql: FakeCloudSql, filestore: FakeFilestore
) -> tuple[Policy, Backends, RecoveryPoint]:
    """The group (two VMs, a database, a share) backed up once: its policy, backends, point."""
    policy = group_policy(fleet, allow_revert=True)
    start(fleet, policy)
    wired = backends(policy, clients, sql, filestore, Clock(sql))
    record = run_group(policy, "orders", wired)
    assert record.status is RunStatus.SUCCEEDED, (record.errors, record.warnings)
    point = wired.state.get_point(record.recovery_point or "")
    assert point is not None
    return policy, wired, point


def refused_before_any_restore(
    restored: tuple[Policy, Backends, RecoveryPoint],
    compute: RestoringCompute,
    sql: FakeCloudSql,
    filestore: FakeFilestore,
) -> str:
    """Why `quiesce restore --in-cloud --execute` refuses the point; nothing was made."""
    policy, wired, point = restored
    with pytest.raises(QuiesceError) as caught:
        restore_in_cloud(policy, wired, point.id, execute=True)
    assert sql.clones == []  # no clone, no revert, no disk
    assert filestore.reverts == []
    assert compute.inserted == []
    return str(caught.value)


def test_a_point_whose_t_left_the_log_retention_is_refused_before_any_restore(
    fleet: Fleet,
    compute: RestoringCompute,
    clients: GcpClients,
    sql: FakeCloudSql,
    filestore: FakeFilestore,
) -> None:
    restored = policy, wired, point = backed_up_point(fleet, clients, sql, filestore)
    assert restore_in_cloud(policy, wired, point.id).steps  # plannable now
    for instance in sql.instances.values():
        instance.retention_days = 7  # the instance keeps seven days of logs
    sql.advance(8 * 86400)  # and eight days have passed

    message = refused_before_any_restore(restored, compute, sql, filestore)

    assert "is before the earliest recovery time" in message
    assert "it has left the instance's log retention" in message


def test_a_point_with_a_disk_snapshot_deleted_since_is_refused_before_any_restore(
    fleet: Fleet,
    compute: RestoringCompute,
    clients: GcpClients,
    sql: FakeCloudSql,
    filestore: FakeFilestore,
) -> None:
    restored = backed_up_point(fleet, clients, sql, filestore)
    gone = next(m for m in restored[2].members if m.name == "app").snapshots[0]
    with compute.lock:  # deleted by someone else since the point was recorded
        del compute.snapshots[(PROJECT, gone.id)]

    message = refused_before_any_restore(restored, compute, sql, filestore)

    assert f"{gone.id}: the snapshot is gone in {PROJECT}" in message


def test_a_point_whose_filestore_snapshot_was_deleted_is_refused_before_any_restore(
    fleet: Fleet,
    compute: RestoringCompute,
    clients: GcpClients,
    sql: FakeCloudSql,
    filestore: FakeFilestore,
) -> None:
    restored = backed_up_point(fleet, clients, sql, filestore)
    (share,) = next(m for m in restored[2].members if m.name == "share").snapshots
    with filestore.lock:
        del filestore.snapshots[share.location]

    message = refused_before_any_restore(restored, compute, sql, filestore)

    assert f"{share.id}: the Filestore snapshot is gone" in message


def test_a_database_that_cannot_reach_t_inside_the_freeze_is_recorded_crash_with_the_reason(
    fleet: Fleet,
    compute: RestoringCompute,
    clients: GcpClients,
    sql: FakeCloudSql,
    filestore: FakeFilestore,
) -> None:
    policy = group_policy(fleet)
    start(fleet, policy)
    wired = backends(policy, clients, sql, filestore, Clock(sql))

    def deadline_now(record: RunRecord) -> None:
        # The freeze deadline passes as the members are held, and T lies well after the thaw
        # (the engine keeps a T already chosen): the thaw cannot wait for it. (Left to the
        # engine, T is the next whole second, which a slow snapshot phase may pass anyway.)
        if record.phase is Phase.QUIESCING and record.quiesce_started_at is not None:
            record.freeze_deadline = record.quiesce_started_at
            later = record.quiesce_started_at.replace(microsecond=0) + timedelta(seconds=30)
            record.restore_time = later

    record = run_group(policy, "orders", wired, progress=deadline_now)

    db = next(m for m in record.members if m.name == "db")
    (ref,) = db.machines[0].snapshots
    assert ref.reported_consistency is Consistency.CRASH
    assert "before the restore time" in ref.note
    assert db.consistency is not Consistency.APPLICATION


def test_a_database_without_point_in_time_recovery_fails_the_run_with_the_reason(
    fleet: Fleet,
    compute: RestoringCompute,
    clients: GcpClients,
    sql: FakeCloudSql,
    filestore: FakeFilestore,
) -> None:
    sql.instances[(PROJECT, "orders-db")].pitr = False
    policy = group_policy(fleet)
    start(fleet, policy)

    record = run_group(policy, "orders", backends(policy, clients, sql, filestore, Clock(sql)))

    assert record.status is not RunStatus.SUCCEEDED
    text = " ".join(record.errors + [m.error or "" for m in record.members])
    assert "point-in-time recovery is disabled" in text, record
    assert sql.clones == []


def test_the_functions_backends_include_the_managed_providers_the_policy_names(
    fleet: Fleet, sql: FakeCloudSql, filestore: FakeFilestore
) -> None:
    from quiesce_gcp.provider import gcp_backends

    policy = group_policy(fleet)
    env = {
        "QUIESCE_PROJECT": PROJECT,
        "QUIESCE_SQL_ENDPOINT": sql.url,
        "QUIESCE_FILESTORE_ENDPOINT": filestore.url,
    }
    wired = gcp_backends(
        policy, env=env, firestore_client=object(), bus=MemoryEventBus(), provider=None
    )  # type: ignore[arg-type]
    assert set(wired.providers) == {"gcp", "gcp-sql", "gcp-filestore"}
    (machine,) = wired.providers["gcp-sql"].inventory.resolve(policy.groups["orders"].members[2])
    assert machine.machine_id == DB_INSTANCE
