"""Managed members on Azure: a group of two VMs, a PostgreSQL flexible server and an Azure Files
share backs up as one recovery point with one restore time T, and the whole group is restored
to it, through the real management SDK clients against the wire fakes (fake_data.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from quiesce.cloud_restore import restore_in_cloud
from quiesce.engine import run_group
from quiesce.errors import ProviderError, QuiesceError
from quiesce.plan import plan_policy
from quiesce.policy.model import Policy
from quiesce.ports import Backends, CloudRestore, Provider, SnapshotCall
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from quiesce.record import Consistency, RecoveryPoint, RunStatus, SnapshotRef, SnapshotState
from quiesce_azure.provider import azure_provider, managed_provider
from quiesce_azure.retry import Backoff

from .fake_arm import RG, SUB, FakeCredential
from .fake_data import FakeData, FakeFiles, _parse
from .policies import shop, vm_member

PROVIDERS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers"
PG_ID = f"{PROVIDERS}/Microsoft.DBforPostgreSQL/flexibleServers/orders-db"


@pytest.fixture
def data() -> Iterator[FakeData]:
    fake = FakeData()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def files(tmp_path: Path) -> Iterator[FakeFiles]:
    fake = FakeFiles(tree={"docs": None, "docs/a.txt": b"abc", "top.txt": b"x"})
    fake.start(tmp_path)
    yield fake
    fake.stop()


def policy(
    *, lag: float = 900, durability: float = 3600, db: dict[str, Any] | None = None
) -> Policy:
    database = db or {
        "name": "orders-db",
        "provider": "azure-postgres",
        "subscription": SUB,
        "resource_group": RG,
        "server": "orders-db",
        "restorable_lag_seconds": lag,
    }
    share = {
        "name": "uploads",
        "provider": "azure-files",
        "subscription": SUB,
        "resource_group": RG,
        "storage_account": "ordersfiles",
        "share": "uploads",
    }
    members = [vm_member("app"), vm_member("web"), database, share]
    return Policy.model_validate(shop(members, durability_timeout_seconds=durability))


def providers(data: FakeData, pol: Policy, ca: str | None = None) -> dict[str, Provider]:
    backoff = Backoff(sleep=lambda s: None, random=lambda: 0.5)
    common: dict[str, Any] = {
        "base_url": data.base_url,
        "polling_interval": 0,
        "backoff": backoff,
        "now": data.clock.now,
        "sleep": data.clock.sleep,
        "file_client_kwargs": {"connection_verify": ca} if ca else None,
    }
    out = {
        kind: managed_provider(kind, pol, FakeCredential(), **common)
        for kind in ("azure-postgres", "azure-mysql", "azure-sql", "azure-files")
    }
    out["azure"] = azure_provider(
        pol, FakeCredential(), base_url=data.base_url, polling_interval=0, backoff=backoff
    )
    return out


def backends(data: FakeData, pol: Policy, ca: str | None = None) -> Backends:
    return Backends(
        providers=providers(data, pol, ca), state=MemoryStateStore(), bus=MemoryEventBus()
    )


@pytest.fixture
def group(data: FakeData, files: FakeFiles) -> FakeData:
    data.add_vm("app-1", data_disks=1)
    data.add_vm("web-1", data_disks=0)
    data.add_flexible_server("postgres", "orders-db", lag=900)
    data.add_share("ordersfiles", "uploads")
    data.files_endpoint = files.url
    return data


def test_two_vms_a_database_and_a_share_are_one_recovery_point_with_one_t(
    group: FakeData,
) -> None:
    pol = policy(lag=900)
    be = backends(group, pol)

    record = run_group(pol, "orders", be)

    assert record.status is RunStatus.SUCCEEDED, record.errors
    assert record.consistency is Consistency.APPLICATION
    moment = record.restore_time
    assert moment is not None
    assert moment.microsecond == 0
    # T inside the quiesced interval: after every pre hook ended, before any post hook began.
    pres = [mc.pre for m in record.members for mc in m.machines if mc.pre is not None]
    posts = [mc.post for m in record.members for mc in m.machines if mc.post is not None]
    assert len(pres) == len(posts) == 2
    assert max(p.ended_at for p in pres if p.ended_at) <= moment
    assert moment < min(p.started_at for p in posts if p.started_at)

    point = be.state.get_point(record.recovery_point or "")
    assert point is not None
    assert point.restore_time == moment
    by_member = {m.name: m for m in point.members}
    (db,) = by_member["orders-db"].snapshots
    assert (db.point, db.method, db.restore_time) == ("pitr", "azure-postgres-pitr", moment)
    assert db.state is SnapshotState.COMPLETED
    # The wait for restorability: T plus the log's delay had passed on the service's clock.
    assert db.durable_at is not None
    assert db.durable_at >= moment + timedelta(seconds=900)
    assert sum(group.clock.slept) >= 899
    (share,) = by_member["uploads"].snapshots
    assert share.point == "snapshot"
    assert share.method == "share_snapshot"
    assert by_member["uploads"].consistency is Consistency.APPLICATION
    assert by_member["orders-db"].consistency is Consistency.APPLICATION
    (snap,) = group.share_snapshots.values()
    assert snap["properties"]["metadata"]["quiesce_managed"] == "true"
    assert snap["properties"]["metadata"]["quiesce_run_id"] == record.run_id
    # The share snapshot was taken inside the freeze, between the VMs' pre and post hooks.
    order = sorted(
        [(c.at, c.params["QUIESCE_PHASE"]) for c in group.hook_calls]
        + [(at, kind) for at, kind, _ in group.created]
    )
    kinds = [k for _, k in order]
    assert kinds.index("share_snapshot") > max(i for i, k in enumerate(kinds) if k == "pre")
    assert kinds.index("share_snapshot") < min(i for i, k in enumerate(kinds) if k == "post")
    assert group.restores == []  # nothing restored by a backup


def test_the_whole_group_is_restored_to_the_point_in_its_cloud(
    group: FakeData, files: FakeFiles
) -> None:
    pol = policy(lag=900)
    be = backends(group, pol, files.ca)
    record = run_group(pol, "orders", be)
    assert record.status is RunStatus.SUCCEEDED, record.errors
    moment = record.restore_time
    assert moment is not None
    when = moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    planned = restore_in_cloud(pol, be, record.recovery_point or "")
    assert not planned.executed
    assert group.restores == []
    assert group.disks == {}
    by_member = {s.member: s for s in planned.steps}
    assert by_member["orders-db"].parameters["pointInTimeUTC"] == when
    assert f"--restore-time {when}" in by_member["orders-db"].command
    assert "azcopy copy" in by_member["uploads"].command
    assert "az disk create" in by_member["app"].command

    done = restore_in_cloud(pol, be, record.recovery_point or "", execute=True)

    assert done.error is None, done.error
    (restore,) = group.restores
    props = restore.body["properties"]
    assert props["createMode"] == "PointInTimeRestore"
    assert props["pointInTimeUTC"] == when
    assert props["sourceServerResourceId"] == PG_ID
    assert restore.path.endswith(
        f"/flexibleServers/restore-{record.run_id.split('-', 1)[0].lower()}-orders-db"
    )
    # VMs: one managed disk per disk restore point (app-1: os + 1 data disk; web-1: os).
    assert len(group.disks) == 3
    assert all(
        d["properties"]["creationData"]["createOption"] == "Restore" for d in group.disks.values()
    )
    # The share: a new share, and every file of the snapshot copied server-side.
    (snap_key,) = group.share_snapshots
    stamp = snap_key[-1]
    new_shares = [s for s in group.shares.values() if s["name"] != "uploads"]
    assert len(new_shares) == 1
    assert set(files.snapshots_listed) == {stamp}
    copies = sorted(p for kind, p, _ in files.made if kind == "copy")
    assert copies == [f"{new_shares[0]['name']}/docs/a.txt", f"{new_shares[0]['name']}/top.txt"]
    assert all("sharesnapshot=" in src for kind, _, src in files.made if kind == "copy")
    step = next(s for s in done.steps if s.member == "orders-db")
    assert step.created
    assert step.created[0].endswith(restore.path.rsplit("/", 1)[-1])


def backed_up_point(group: FakeData, files: FakeFiles) -> tuple[Policy, Backends, RecoveryPoint]:
    """The group (two VMs, a database, a share) backed up once: its policy, backends, point."""
    pol = policy(lag=900)
    be = backends(group, pol, files.ca)
    record = run_group(pol, "orders", be)
    assert record.status is RunStatus.SUCCEEDED, record.errors
    point = be.state.get_point(record.recovery_point or "")
    assert point is not None
    return pol, be, point


def refused_before_any_restore(
    restored: tuple[Policy, Backends, RecoveryPoint], group: FakeData
) -> str:
    """Why `quiesce restore --in-cloud --execute` refuses the point; nothing was made."""
    pol, be, point = restored
    with pytest.raises(QuiesceError) as caught:
        restore_in_cloud(pol, be, point.id, execute=True)
    assert group.restores == []  # no server, disk or share was made
    assert group.disks == {}
    assert [s for s in group.shares.values() if s["name"] != "uploads"] == []
    return str(caught.value)


def test_a_point_whose_t_left_the_database_s_retention_window_is_refused_before_any_restore(
    group: FakeData, files: FakeFiles
) -> None:
    restored = backed_up_point(group, files)
    moment = restored[2].restore_time
    assert moment is not None
    with group.lock:  # days later: the server's backups now start after T
        (server,) = [v for v in group.servers.values() if v["id"] == PG_ID]
        later = (moment + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        server["properties"]["backup"]["earliestRestoreDate"] = later

    message = refused_before_any_restore(restored, group)

    assert "cannot be restored" in message
    assert f"its retention window now starts at {later[:19]}" in message
    assert "after T" in message


def test_a_point_whose_database_was_deleted_is_refused_before_any_restore(
    group: FakeData, files: FakeFiles
) -> None:
    restored = backed_up_point(group, files)
    with group.lock:
        for key in [k for k, v in group.servers.items() if v["id"] == PG_ID]:
            del group.servers[key]

    message = refused_before_any_restore(restored, group)

    assert "is gone: it cannot be restored to T" in message


def test_a_point_with_a_restore_point_deleted_since_is_refused_before_any_restore(
    group: FakeData, files: FakeFiles
) -> None:
    restored = backed_up_point(group, files)
    gone = next(m for m in restored[2].members if m.name == "app").snapshots[0]
    with group.lock:  # deleted by someone else since the point was recorded
        (key,) = [k for k, v in group.points.items() if v["id"].lower() == gone.id.lower()]
        del group.points[key]

    message = refused_before_any_restore(restored, group)

    assert f"{gone.id}: it is gone or failed" in message


def test_a_point_whose_share_snapshot_was_deleted_is_refused_before_any_restore(
    group: FakeData, files: FakeFiles
) -> None:
    restored = backed_up_point(group, files)
    (share,) = next(m for m in restored[2].members if m.name == "uploads").snapshots
    with group.lock:  # deleted by someone else since the point was recorded
        (key,) = list(group.share_snapshots)
        del group.share_snapshots[key]

    message = refused_before_any_restore(restored, group)

    assert f"{share.id}: the share snapshot is gone" in message


def test_a_read_replica_is_refused_at_plan_and_at_run_time(data: FakeData) -> None:
    data.add_vm("app-1", data_disks=0)
    data.add_vm("web-1", data_disks=0)
    data.add_flexible_server("postgres", "orders-db", role="AsyncReplica")
    data.add_share("ordersfiles", "uploads")
    pol = policy()
    be = backends(data, pol)

    planned = plan_policy(pol, be.providers)

    assert planned["ok"] is False
    (db,) = [m for m in planned["groups"][0]["members"] if m["name"] == "orders-db"]
    assert "read replica" in db["error"]
    assert "point-in-time restore" in db["error"]
    assert db["point"]["kind"] == "pitr"
    assert db["point"]["resolution_seconds"] == 1.0
    assert db["permissions"] == ["Microsoft.DBforPostgreSQL/flexibleServers/read"]

    record = run_group(pol, "orders", be)
    assert record.status is not RunStatus.SUCCEEDED
    assert any("read replica" in e for e in record.errors), record.errors

    # take itself refuses with the same message (a server that became a replica since).
    snapshots = be.providers["azure-postgres"].snapshots
    member = pol.groups["orders"].members[2]
    machine = be.providers["azure-postgres"].inventory.resolve  # resolve refuses too
    with pytest.raises(ProviderError, match="read replica"):
        machine(member)
    call = SnapshotCall(
        run_id="r",
        policy="shop",
        group="orders",
        member="orders-db",
        machine=_machine(PG_ID),
        recovery_point="rp",
        consistency="application",
        spec=member,
    )
    with pytest.raises(ProviderError, match="read replica") as caught:
        snapshots.take(call)
    assert caught.value.code == "PitrUnavailable"


def _machine(rid: str) -> Any:
    from quiesce.ports import Machine

    return Machine(
        provider="azure-postgres", member="orders-db", machine_id=rid, volumes=("orders-db",)
    )


def test_throttled_reads_and_snapshots_are_retried(group: FakeData) -> None:
    group.throttle("GET", r"/flexibleServers/orders-db$", count=1, retry_after="0")
    group.throttle("PUT", r"/shares/uploads$", count=1, retry_after="0")
    pol = policy(lag=60)

    record = run_group(pol, "orders", backends(group, pol))

    assert record.status is RunStatus.SUCCEEDED, record.errors
    assert group.count("GET", r"/flexibleServers/orders-db$") >= 3  # resolve (2: 429) + take
    assert len(group.share_snapshots) == 1


def test_a_t_the_wait_cannot_reach_within_the_timeout_fails_with_the_reason(
    group: FakeData,
) -> None:
    pol = policy(lag=900, durability=120)

    record = run_group(pol, "orders", backends(group, pol))

    db = next(m for m in record.members if m.name == "orders-db")
    (ref,) = db.machines[0].snapshots
    # Failed by the wait (then deleted with the run's other snapshots: no point was recorded).
    assert ref.state in (SnapshotState.FAILED, SnapshotState.DELETED)
    assert "durability timeout" in ref.note
    assert "900 s later" in ref.note
    assert record.status is not RunStatus.SUCCEEDED
    assert group.clock.slept == []  # no pointless wait


def test_a_t_the_thaw_did_not_wait_for_is_recorded_crash_with_the_reason(
    group: FakeData,
) -> None:
    from quiesce.record import Phase, RunRecord

    pol = policy(lag=60)

    def deadline_now(record: RunRecord) -> None:
        if record.phase is Phase.QUIESCING and record.quiesce_started_at is not None:
            record.freeze_deadline = record.quiesce_started_at
            # ...and T lies well after the thaw (the engine keeps a T already chosen; left to
            # it, T is the next whole second, which a slow snapshot phase may pass anyway).
            later = record.quiesce_started_at.replace(microsecond=0) + timedelta(seconds=30)
            record.restore_time = later

    record = run_group(pol, "orders", backends(group, pol), progress=deadline_now)

    db = next(m for m in record.members if m.name == "orders-db")
    (ref,) = db.machines[0].snapshots
    assert ref.reported_consistency is Consistency.CRASH
    assert "before the restore time" in ref.note
    assert db.consistency is not Consistency.APPLICATION


def test_a_server_that_became_a_replica_before_t_was_restorable_fails_with_the_reason(
    data: FakeData,
) -> None:
    server = data.add_flexible_server("postgres", "orders-db", lag=60)
    pol = policy(lag=60)
    snapshots = providers(data, pol)["azure-postgres"].snapshots
    moment = data.clock.now().replace(microsecond=0)
    ref = _pitr_ref(moment)
    server["properties"]["replicationRole"] = "AsyncReplica"

    (out,) = snapshots.wait_durable([ref], 3600)

    assert out.state is SnapshotState.FAILED
    assert "no longer be restored" in out.note
    assert "read replica" in out.note
    assert data.clock.now() >= moment + timedelta(seconds=60)


def _pitr_ref(moment: Any) -> SnapshotRef:
    return SnapshotRef(
        id=f"{PG_ID}#pitr:rp",
        provider="azure-postgres",
        machine_id=PG_ID,
        volume="orders-db",
        method="azure-postgres-pitr",
        started_at=moment,
        fixed_at=moment,
        point="pitr",
        restore_time=moment,
        location=PG_ID,
        tags={"azure:resource": PG_ID, "azure:restorable-lag-seconds": "60"},
    )


def test_retention_deletes_only_quiesce_share_snapshots_and_never_a_backup(
    group: FakeData,
) -> None:
    pol = policy(lag=60)
    be = backends(group, pol)
    record = run_group(pol, "orders", be)
    assert record.status is RunStatus.SUCCEEDED, record.errors
    share_snaps = be.providers["azure-files"].snapshots
    db_snaps = be.providers["azure-postgres"].snapshots
    # Someone else's snapshot of the same share (no Quiesce metadata).
    key = ("00000000-0000-0000-0000-000000000001", "rg-orders", "ordersfiles", "uploads")
    foreign = {
        "id": "x",
        "name": "uploads",
        "properties": {"snapshotTime": "2026-01-01T00:00:00.0000000Z", "metadata": {}},
    }
    group.share_snapshots[(*key, "2026-01-01T00:00:00.0000000Z")] = foreign

    found = share_snaps.find("shop", "orders")
    assert [r.tags["quiesce:run-id"] for r in found] == [record.run_id]
    assert db_snaps.find("shop", "orders") == []

    before = len(group.request_log)
    point = be.state.get_point(record.recovery_point or "")
    assert point is not None
    (db_ref,) = next(m for m in point.members if m.name == "orders-db").snapshots
    db_snaps.delete(db_ref)
    assert len(group.request_log) == before  # a pitr reference deletes nothing, calls nothing

    with pytest.raises(ProviderError, match="Quiesce did not make it"):
        share_snaps.delete(
            found[0].model_copy(
                update={"id": f"{found[0].id.split('@')[0]}@2026-01-01T00:00:00.0000000Z"}
            )
        )
    with pytest.raises(ProviderError, match="never deletes a share"):
        share_snaps.delete(found[0].model_copy(update={"id": found[0].id.split("@")[0]}))
    share_snaps.delete(found[0])
    assert len(group.share_snapshots) == 1  # only the foreign one is left
    assert group.deleted_shares == []


def test_sql_and_mysql_restore_steps_carry_t_in_whole_seconds(data: FakeData) -> None:
    data.add_sql_database("orders-sql", "orders", lag=600)
    data.add_flexible_server("mysql", "orders-my", lag=300)
    pol = policy()
    provs = providers(data, pol)
    moment = (data.clock.now() - timedelta(hours=1)).replace(microsecond=0)
    when = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    sql_id = f"{PROVIDERS}/Microsoft.Sql/servers/orders-sql/databases/orders"
    my_id = f"{PROVIDERS}/Microsoft.DBforMySQL/flexibleServers/orders-my"

    def request(rid: str, provider: str, name: str) -> CloudRestore:
        ref = _pitr_ref(moment).model_copy(
            update={"id": f"{rid}#pitr:rp", "provider": provider, "tags": {"azure:resource": rid}}
        )
        return CloudRestore(snapshot=ref, point="rp", member="db", name=name, restore_time=moment)

    sql = provs["azure-sql"].snapshots.cloud_restore(
        request(sql_id, "azure-sql", "Orders_Restored")
    )
    assert sql.created == [sql_id.rsplit("/", 1)[0] + "/orders-restored"]
    assert f"--time {when}" in sql.command
    mysql = provs["azure-mysql"].snapshots.cloud_restore(request(my_id, "azure-mysql", "my-copy"))
    assert mysql.parameters["restorePointInTime"] == when
    bodies = [r.body["properties"] for r in data.restores]
    assert bodies[0] == {
        "createMode": "PointInTimeRestore",
        "sourceDatabaseId": sql_id,
        "restorePointInTime": when,
    }
    # The MySQL SDK writes the time with milliseconds (.000Z): still the whole second T.
    assert _parse(bodies[1]["restorePointInTime"]) == moment
    assert bodies[1]["sourceServerResourceId"] == my_id

    # A T after what the service can restore yet is refused by the service, and said so.
    late = data.clock.now().replace(microsecond=0)
    with pytest.raises(ProviderError, match="InvalidRestorePointInTime"):
        provs["azure-mysql"].snapshots.cloud_restore(
            CloudRestore(
                snapshot=request(my_id, "azure-mysql", "x").snapshot,
                point="rp",
                member="db",
                name="late",
                restore_time=late,
            )
        )


def test_a_managed_member_runs_no_hooks() -> None:
    with pytest.raises(ValueError, match="runs no hooks"):
        Policy.model_validate(
            {
                "version": 1,
                "name": "shop",
                "groups": {
                    "g": {
                        "members": [
                            {
                                "name": "db",
                                "provider": "azure-mysql",
                                "subscription": SUB,
                                "resource_group": RG,
                                "server": "orders-my",
                                "hooks": {"pre": {"run": ["/x"]}, "post": {"run": ["/y"]}},
                            }
                        ]
                    }
                },
            }
        )


def test_the_functions_backends_include_the_managed_providers_the_policy_names() -> None:
    from azure.data.tables import TableServiceClient

    from quiesce_azure.provider import azure_backends

    table = TableServiceClient.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "TableEndpoint=http://127.0.0.1:1/devstoreaccount1"
    )
    pol = policy()
    be = azure_backends(
        pol,
        credential=FakeCredential(),
        table_service=table,
        provider=azure_provider(pol, FakeCredential(), base_url="http://127.0.0.1:1"),
        bus=MemoryEventBus(),
    )

    assert set(be.providers) == {"azure", "azure-postgres", "azure-files"}


def test_the_specs_and_the_function_apps_provider_module_import_no_data_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys, quiesce_azure.provider, quiesce_azure.managed_spec\n"
        "mods = [m for m in sys.modules if m.startswith(('azure.mgmt.sql', 'azure.mgmt.storage',"
        " 'azure.mgmt.postgresql', 'azure.mgmt.mysql', 'azure.storage.fileshare'))]\n"
        "print(mods)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_an_incremental_snapshot_restores_as_a_disk_in_the_zone_asked(data: FakeData) -> None:
    data.snapshot_copy_polls = 0
    data.add_vm("app-1", data_disks=1)
    pol = policy()
    snapshots = providers(data, pol)["azure"].snapshots
    disk = f"{PROVIDERS}/Microsoft.Compute/disks/app-1-data0"
    snap_id = f"{PROVIDERS}/Microsoft.Compute/snapshots/app-1-data0-rp"
    data.snapshots[(SUB.lower(), RG.lower(), "app-1-data0-rp")] = {
        "id": snap_id,
        "name": "app-1-data0-rp",
        "location": "westeurope",
        "tags": {"quiesce:managed": "true"},
        "properties": {
            "creationData": {"sourceResourceId": disk},
            "provisioningState": "Succeeded",
        },
        "_copy_polls": 0,
    }
    moment = data.clock.now()
    ref = SnapshotRef(
        id=snap_id,
        provider="azure",
        machine_id="vm",
        volume=disk,
        method="incremental_snapshot",
        started_at=moment,
        fixed_at=moment,
    )
    request = CloudRestore(snapshot=ref, point="rp", member="app", name="restore-app", zone="2")

    planned = snapshots.plan_cloud_restore(request)
    assert data.disks == {}
    assert planned.command == (
        f"az disk create --resource-group {RG} --name restore-app --source {snap_id} --zone 2"
    )
    done = snapshots.cloud_restore(request)

    (made,) = data.disks.values()
    assert made["zones"] == ["2"]
    assert made["location"] == "westeurope"
    assert made["properties"]["creationData"] == {
        "createOption": "Copy",
        "sourceResourceId": snap_id,
    }
    assert done.created == [f"{PROVIDERS}/Microsoft.Compute/disks/restore-app"]
