"""The requests the Azure adapters make, counted exactly where they arrive: at the fake ARM
server (its request log) and at Azurite (an azure-core hook on the Table client's wire).

Each test pins a request that is no longer made (a second GET of a run command, a read of a
restore point collection or of a restore point that was already known, a read and two deletes
per outbox batch, a read before releasing a lock) and the path that still makes it when it is
needed (a collection deleted behind the snapshotter's back, a batch another process removed)."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from quiesce.record import HookStatus, SnapshotState, utcnow
from quiesce_azure.clients import CredentialClients
from quiesce_azure.state import TableStateStore
from tests.contracts.state_store import event

from .azurite import azurite
from .fake_arm import FakeArm
from .test_hooks import call as hook_call
from .test_hooks import runner
from .test_snapshots import call as snapshot_call
from .test_snapshots import machine, snapshotter

__all__ = ["azurite"]

RUN_COMMAND = r"/virtualMachines/db-1/runCommands/[^/]+$"
COLLECTION = r"/restorePointCollections/quiesce-db-1$"
RESTORE_POINT = r"/restorePoints/[^/]+$"
OPERATION = r"^/operations/"

# ------------------------------------------------------------------------------ run commands


def test_a_run_command_is_put_its_operation_followed_and_its_result_read_once(
    arm: FakeArm, clients: CredentialClients
) -> None:
    vm = arm.add_vm("db-1")

    result = runner(clients).run(hook_call(vm))

    assert result.status is HookStatus.SUCCEEDED, result
    assert arm.count("PUT", RUN_COMMAND) == 1
    assert arm.count("GET", OPERATION) == arm.lro_polls + 1  # InProgress, then Succeeded
    assert arm.count("GET", RUN_COMMAND) == 1  # the operation's final read …
    assert arm.count("GET", RUN_COMMAND, **{"$expand": "instanceView"}) == 1  # … with the view
    assert arm.count("DELETE", RUN_COMMAND) == 1
    assert len(arm.requests) == 1 + (arm.lro_polls + 1) + 1 + 1


def test_a_failed_run_command_operation_still_reads_the_instance_view_for_its_result(
    arm: FakeArm, clients: CredentialClients
) -> None:
    """When the operation fails, its final read is not made: the view is read on its own."""
    vm = arm.add_vm("db-1")
    arm.fail_run_command_operations.add("db-1")

    result = runner(clients).run(hook_call(vm))

    assert result.status is HookStatus.SUCCEEDED  # the view says the script succeeded
    assert arm.count("GET", RUN_COMMAND) == 1
    assert arm.count("GET", RUN_COMMAND, **{"$expand": "instanceView"}) == 1
    assert arm.count("DELETE", RUN_COMMAND) == 1


# ------------------------------------------------------------------------------ restore points


def test_a_vms_restore_point_collection_is_read_or_created_once_per_snapshotter(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1")
    snaps = snapshotter(clients, "restore_point")
    m = machine(clients, "restore_point")

    snaps.take(snapshot_call(m, "run-1"))
    snaps.take(snapshot_call(m, "run-2"))
    snaps.take(snapshot_call(m, "run-3"))

    assert arm.count("GET", COLLECTION) == 1  # missing at first …
    assert arm.count("PUT", COLLECTION) == 1  # … so created, once
    assert arm.count("PUT", RESTORE_POINT) == 3
    assert len(arm.points) == 3


def test_collections_the_orphan_sweep_listed_are_not_read_again_by_take(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1")
    m = machine(clients, "restore_point")
    snapshotter(clients, "restore_point").take(snapshot_call(m, "run-1"))
    later = snapshotter(clients, "restore_point")  # a new process: nothing remembered
    arm.request_log.clear()

    found = later.find("shop", "orders")
    assert [r.tags["quiesce:recovery-point"] for r in found] == ["rp-run-1"]
    later.take(snapshot_call(m, "run-2"))

    assert arm.count("GET", COLLECTION) == 1  # find's read, with the restore points
    assert arm.count("PUT", COLLECTION) == 0
    assert arm.count("PUT", RESTORE_POINT) == 1


def test_a_collection_deleted_since_it_was_remembered_is_created_again(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1")
    snaps = snapshotter(clients, "restore_point")
    m = machine(clients, "restore_point")
    snaps.take(snapshot_call(m, "run-1"))
    arm.collections.clear()
    arm.points.clear()
    arm.request_log.clear()

    (ref,) = snaps.take(snapshot_call(m, "run-2"))

    assert ref.tags["quiesce:recovery-point"] == "rp-run-2"
    assert arm.count("PUT", RESTORE_POINT) == 2  # refused (404), then again once recreated
    assert arm.count("GET", COLLECTION) == 1
    assert arm.count("PUT", COLLECTION) == 1
    (coll,) = arm.collections.values()
    assert coll["tags"]["quiesce:managed"] == "true"
    assert len(arm.points) == 1


def test_a_restore_point_is_durable_when_take_returns_so_waiting_reads_nothing(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1")
    snaps = snapshotter(clients, "restore_point")
    (ref,) = snaps.take(snapshot_call(machine(clients, "restore_point")))
    arm.request_log.clear()

    (durable,) = snaps.wait_durable([ref], timeout=30)

    assert ref.state is SnapshotState.COMPLETED
    assert durable.durable_at == ref.fixed_at
    assert arm.request_log == []


# ------------------------------------------------------------------------------ Table catalog

_names = itertools.count()


class TableWire:
    """Counts the requests of a Table client as they leave it (once per HTTP request)."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, request: Any) -> None:
        http = request.http_request
        path = http.url.split("?", 1)[0]
        if path.endswith("/$batch"):
            what = "transaction"
        elif re.search(r"\(PartitionKey='[^']*',RowKey='[^']*'\)$", path):
            what = f"{http.method} entity"
        elif http.method == "GET":
            what = "query"
        else:
            what = f"{http.method} insert"
        self.seen[what] += 1

    def clear(self) -> None:
        self.seen.clear()


@pytest.fixture
def wire() -> TableWire:
    return TableWire()


@pytest.fixture
def store(azurite: str, wire: TableWire) -> Iterator[TableStateStore]:
    with TableServiceClient.from_connection_string(azurite, raw_request_hook=wire) as service:
        state = TableStateStore(service, f"economy{next(_names)}")
        state.create_table()
        wire.clear()
        yield state


def test_a_flush_reads_the_outbox_once_and_removes_its_batches_in_one_transaction(
    store: TableStateStore, wire: TableWire
) -> None:
    for n in range(3):  # three saves: three batches
        store.outbox_add([event(3 * n + k) for k in range(3)])
    assert wire.seen == {"transaction": 3}
    wire.clear()

    pending = store.outbox_pending()
    store.outbox_remove([e.id for e in pending])

    assert len(pending) == 9
    assert wire.seen == {"query": 1, "transaction": 1}
    assert store.outbox_pending() == []
    assert store.scan_queued(100) == []


def test_removing_events_another_process_wrote_and_this_one_never_read_scans_once(
    azurite: str, store: TableStateStore, wire: TableWire
) -> None:
    with TableServiceClient.from_connection_string(azurite) as service:
        other = TableStateStore(service, store.table)
        other.outbox_add([event(1), event(2)])
        other.outbox_add([event(3)])

    store.outbox_remove(["e-1", "e-2", "e-3"])

    assert wire.seen == {"query": 1, "transaction": 1}
    assert store.outbox_pending() == []


def test_a_batch_another_process_removed_first_does_not_fail_the_removal(
    azurite: str, store: TableStateStore, wire: TableWire
) -> None:
    store.outbox_add([event(1)])
    store.outbox_add([event(2)])
    pending = store.outbox_pending()
    with TableServiceClient.from_connection_string(azurite) as service:
        other = TableStateStore(service, store.table)
        other.outbox_pending()
        other.outbox_remove(["e-1"])  # it published e-1 too
    wire.clear()

    store.outbox_remove([e.id for e in pending])

    assert wire.seen["transaction"] == 1  # refused: one of its entities was gone …
    assert wire.seen["GET entity"] == 2  # … so each batch the old way
    assert store.outbox_pending() == []


def test_releasing_a_lock_this_store_took_is_one_conditional_delete(
    store: TableStateStore, wire: TableWire
) -> None:
    until = utcnow() + timedelta(minutes=5)
    assert store.acquire_lock("shop/orders", "r-1", until) is None
    wire.clear()

    store.release_lock("shop/orders", "r-1")

    assert wire.seen == {"DELETE entity": 1}
    assert store.acquire_lock("shop/orders", "r-2", until) is None  # it is free


def test_a_lock_taken_over_since_is_read_before_anything_is_deleted(
    azurite: str, store: TableStateStore, wire: TableWire
) -> None:
    assert store.acquire_lock("shop/orders", "r-old", utcnow() - timedelta(seconds=1)) is None
    until = utcnow() + timedelta(minutes=5)
    with TableServiceClient.from_connection_string(azurite) as service:
        other = TableStateStore(service, store.table)
        assert other.acquire_lock("shop/orders", "r-new", until) is None
    wire.clear()

    store.release_lock("shop/orders", "r-old")

    assert wire.seen == {"DELETE entity": 1, "GET entity": 1}  # 412, then read: not ours
    holder = store.acquire_lock("shop/orders", "r-3", until)
    assert holder is not None
    assert holder.run_id == "r-new"
