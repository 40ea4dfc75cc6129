"""Requests of one Azure group run, counted on the project's wire fakes, against the floor.

The Azure backends the functions run with (`quiesce_azure.provider.azure_provider`, the Table
catalog, the Event Grid publisher) back up a group of N VMs (one member selected by tag, a data
disk each, restore points) through `run_group` with a trigger id, as an entry point does. The
group is backed up once first (not counted: it creates each VM's restore point collection),
then again with new backends (a new process: no cache carried over), and that second run is
counted: the steady state of a group backed up on a schedule.

ARM and Event Grid are the tests' fake ARM server (tests/azure/fake_arm.py: the real
azure-mgmt-compute and azure-eventgrid clients over HTTP, every request recorded at the
server). The catalog is a real Azurite Table service, every request counted by an azure-core
hook on the wire (once per HTTP request: a retried request counts again, an entity-group
transaction once). Azurite is installed on first use (Node.js and npm are needed; see
tests/azure/azurite.py). The fake answers every long-running operation `InProgress` once, then
`Succeeded`, and the guest answers at once; those status reads are the service's choice, not
the client's, so the floor counts them too.

Floor of one run of N VMs, one member in one resource group (an LRO = its PUT, the 2 status
reads the fake asks for, 1 read of its result):

    per VM      run command, pre and post: the LRO, its result read once with the instance
                view, and 1 DELETE of the resource = 5 each
                restore point: the LRO = 4 (the VM's collection exists since its first backup)
                the orphan sweep: 1 GET of the VM's collection with its restore points
    per member  1 GET of the resource group's VMs (the selection)
    per run     ARM: the orphan sweep's list of snapshots and of restore point collections
                Event Grid: 1 POST per 500 events (3 per VM + 2 per run)
                Table: claim 1 and lock 1 (inserts), unlock 1 (DELETE), 1 write per run-record
                save the engine makes (each a phase docs/engine.md's fault matrix recovers
                from), 2 for the recovery point and its run, 1 transaction per save that
                carries events (per 256 KiB of them) and 1 per 50 published outbox items (its
                two entities each), 1 query per outbox flush (at the start and at the finish)
                + 1 for abandoned runs, 1 GET to settle the recovery point + 1 per earlier
                point the orphan sweep finds

Usage (through bench/api_calls.py, or alone): python bench/calls_azure.py [--sizes 1,10,100]
"""

from __future__ import annotations

import atexit
import itertools
import math
import re
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "bench"):  # the wire fakes live in tests/azure
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from calls_common import HOOKS, calls_row, group_policy  # noqa: E402
from catalog_work import bound_inputs, count_catalog_work  # noqa: E402

_azurite: list[str] = []
_tables = itertools.count()
_lock = threading.Lock()


def _azurite_connection() -> str:
    """One Azurite for the process (stopped at exit), started on first use."""
    with _lock:
        if not _azurite:
            import pytest

            from tests.azure.azurite import run_azurite

            running = run_azurite()
            try:
                _azurite.append(next(running))
            except pytest.skip.Exception as exc:  # no Node.js or npm on this machine
                raise RuntimeError(f"Azurite cannot run here: {exc}") from None
            atexit.register(running.close)
        return _azurite[0]


#: ARM request paths, as the operation names the table shows.
_ARM = [
    (r"/operations/[^/]+$", "LRO status"),
    (r"/virtualMachines$", "VMs (list)"),
    (r"/virtualMachines/[^/]+$", "VM"),
    (r"/virtualMachines/[^/]+/runCommands/[^/]+$", "run command"),
    (r"/restorePointCollections$", "restore point collections (list)"),
    (r"/restorePointCollections/[^/]+$", "restore point collection"),
    (r"/restorePointCollections/[^/]+/restorePoints/[^/]+$", "restore point"),
    (r"/snapshots$", "snapshots (list)"),
    (r"/snapshots/[^/]+$", "snapshot"),
    (r"/api/events$", "Event Grid events"),
]


def arm_operation(method: str, path: str) -> str:
    for pattern, name in _ARM:
        if re.search(pattern, path, re.IGNORECASE):
            return f"{'EventGrid' if 'Event Grid' in name else 'ARM'} {method} {name}"
    return f"ARM {method} {path}"


def table_operation(method: str, url: str) -> str:
    """A Table request as the operation it is (entity, query, transaction)."""
    path = url.split("?", 1)[0]
    query = url.split("?", 1)[1] if "?" in url else ""
    if path.endswith("/$batch"):
        return "Table POST transaction"
    if re.search(r"\(PartitionKey='[^']*',RowKey='[^']*'\)$", path):
        return f"Table {method} entity"
    if method == "GET":
        return "Table GET query" if "$filter" in query or path.endswith(")") else "Table GET"
    if method == "POST" and path.rstrip("/").endswith("Tables"):
        return "Table POST create table"
    return f"Table {method} insert" if method == "POST" else f"Table {method}"


def _policy(size: int) -> Any:
    from tests.azure.fake_arm import RG, SUB

    return group_policy(
        {
            "name": "app",
            "provider": "azure",
            "subscription": SUB,
            "resource_group": RG,
            "select": {"tags": {"role": "app"}},
            "snapshot": "restore_point",
            "hooks": HOOKS,
        }
    )


def floor(
    size: int,
    *,
    events: int,
    saves: int,
    points: int,
    outbox_items: int,
    flushes: int,
    earlier_points: int,
) -> dict[str, int]:
    """The floor by operation (see the module docstring), from what the run had to do."""
    members = 1
    lro = {"PUT": 1, "status": 2, "result": 1}
    return {
        "ARM GET VMs (list)": members,
        "ARM PUT run command": 2 * size * lro["PUT"],
        "ARM GET run command": 2 * size * lro["result"],
        "ARM DELETE run command": 2 * size,
        "ARM PUT restore point": size * lro["PUT"],
        "ARM GET restore point": size * lro["result"],
        "ARM GET LRO status": 3 * size * lro["status"],
        "ARM GET snapshots (list)": 1,
        "ARM GET restore point collections (list)": 1,
        "ARM GET restore point collection": size,  # the sweep reads each one's points
        "EventGrid POST Event Grid events": math.ceil(events / 500),
        "Table POST insert": 1 + 1,  # claim, lock
        "Table PUT entity": saves + 2 * points,
        "Table DELETE entity": 1,  # unlock
        "Table GET entity": 1 + earlier_points,  # settle the point; the sweep's check
        "Table GET query": 1 + flushes,
        "Table POST transaction": outbox_items + math.ceil(outbox_items / 50),
    }


FLOOR_NOTE = (
    "per VM: run command pre and post 5 each (PUT, 2 LRO status reads the fake asks for, 1 read "
    "of the result with its instance view, DELETE), restore point 4 (PUT, 2 status reads, 1 "
    "read of the result; the collection exists since the VM's first backup), 1 GET of its "
    "collection for the orphan sweep; per member: 1 list of the resource group's VMs; per run: "
    "the sweep's 2 lists; Table: claim, lock + unlock, 1 write per run-record save, 2 for the "
    "point, 1 transaction per save carrying events and 1 per 50 published items, 1 query per "
    "outbox flush + 1 for abandoned runs, 1 GET to settle the point + 1 per earlier point; "
    "Event Grid: 1 POST per 500 events"
)


def measure(size: int) -> dict[str, Any]:
    """Backs up a group of `size` VMs once on the fakes; requests by operation and the floor."""
    from azure.core.credentials import AzureKeyCredential
    from azure.data.tables import TableServiceClient

    from quiesce.engine import run_group
    from quiesce.record import RunStatus
    from quiesce_azure.events import EventGridPublisher
    from quiesce_azure.provider import azure_backends, azure_provider
    from quiesce_azure.state import TableStateStore
    from tests.azure.fake_arm import FakeArm, FakeCredential

    connection = _azurite_connection()
    table = f"bench{size}x{next(_tables)}"
    with TableServiceClient.from_connection_string(connection) as setup:
        TableStateStore(setup, table).create_table()
    tables: Counter[str] = Counter()
    count_lock = threading.Lock()

    def count(request: Any) -> None:
        http = request.http_request
        with count_lock:
            tables[table_operation(http.method, http.url)] += 1

    arm = FakeArm()
    arm.start()
    try:
        for n in range(size):
            arm.add_vm(f"app-{n:03d}", tags={"role": "app"}, data_disks=1)
        policy = _policy(size)
        credential = FakeCredential()

        def run(trigger: str, **service_options: Any) -> Any:
            """One run with backends of its own (a new process's: no cache carried over)."""
            service = TableServiceClient.from_connection_string(connection, **service_options)
            backends = azure_backends(
                policy,
                credential=credential,  # type: ignore[arg-type]
                env={"QUIESCE_TABLE": table},
                table_service=service,
                provider=azure_provider(
                    policy,
                    credential,  # type: ignore[arg-type]
                    base_url=arm.base_url,
                    polling_interval=0,
                ),
                bus=EventGridPublisher(arm.events_endpoint, AzureKeyCredential(arm.event_key)),
            )
            did = count_catalog_work(backends.state)
            with service:
                record = run_group(policy, "orders", backends, trigger_id=trigger)
            if record.status is not RunStatus.SUCCEEDED:
                raise RuntimeError(f"the bench run did not succeed: {record.errors}")
            return did

        run(f"bench-{size}-first")  # the group's first backup, not counted
        with arm.lock:
            first = len(arm.requests)
        did = run(f"bench-{size}", raw_request_hook=count)
        with arm.lock:
            requests = Counter(arm_operation(m, p) for m, p in arm.requests[first:])
    finally:
        arm.stop()
    calls = dict(sorted((requests + tables).items()))
    bound = floor(size, **bound_inputs(did), earlier_points=1)
    return calls_row("azure", size, calls, bound, FLOOR_NOTE)


if __name__ == "__main__":
    from api_calls import main

    raise SystemExit(main(["--clouds", "azure", *sys.argv[1:]]))
