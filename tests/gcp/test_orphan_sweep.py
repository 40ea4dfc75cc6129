"""The orphan sweep (quiesce.engine.orphans, docs/engine.md) on GCP: persistent-disk snapshots
and their copies in another region (images, on the fake Compute API) and Filestore snapshots (on
the fake Filestore API) a run left behind are recognised by the core's tags with their exact
values and deleted; a listed point's snapshots, and a running run's, are never touched.

Run ids hold uppercase letters (`20261202T040000Z-abc123`), which GCP labels cannot: the sweep
finds a GCP orphan only because `find` gives back the exact values (kept in the snapshot's
description), not the lowercased labels."""

from __future__ import annotations

import os
import socket
from typing import Any

from quiesce.engine import recover_abandoned, run_group
from quiesce.engine.context import RunContext
from quiesce.engine.orphans import sweep_orphans
from quiesce.engine.phases import acquire_lock, quiesce, resolve, snapshot
from quiesce.policy.model import Policy
from quiesce.ports import Backends, Provider
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from quiesce.record import RunRecord, RunStatus
from quiesce.tags import COPY_OF_TAG, POINT_TAG, REGION_TAG, RUN_TAG
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.copies import GceSnapshotterWithCopies
from quiesce_gcp.hooks import AgentHookRunner
from quiesce_gcp.inventory import GceInventory
from quiesce_gcp.managed_provider import filestore_provider
from quiesce_gcp.retry import Backoff
from quiesce_gcp.signing import AgentKeys
from quiesce_gcp.snapshots import GceSnapshotter

from .conftest import MASTER_KEY, PROJECT, ZONE, Fleet
from .fake_compute import FakeCompute
from .fake_filestore import FakeFilestore

#: A process id no process has (above the kernel's pid_max): the killed orchestrator's.
DEAD_PID = 2**22 + 11


VM = {
    "name": "db",
    "provider": "gcp",
    "project": PROJECT,
    "zone": ZONE,
    "select": {"instances": ["db-vm"]},
}
SHARE = {
    "name": "share",
    "provider": "gcp-filestore",
    "project": PROJECT,
    "location": ZONE,
    "instance": "files",
}


def crash_policy(*members: dict[str, Any]) -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "orders": {
                    "consistency": "crash",
                    "max_freeze_seconds": 20,
                    "durability_timeout_seconds": 30,
                    "members": list(members or [VM]),
                }
            },
        }
    )


def backends(
    clients: GcpClients,
    state: MemoryStateStore,
    kind: type[GceSnapshotter] = GceSnapshotter,
    **snapshots: Any,
) -> Backends:
    """A process's backends over one catalog (a new process each: nothing carried over)."""
    provider = Provider(
        inventory=GceInventory(clients),
        hooks=AgentHookRunner(clients, keys=AgentKeys.from_hex(MASTER_KEY)),
        snapshots=kind(clients, projects={"orders": [PROJECT]}, poll_interval=0.0, **snapshots),
    )
    return Backends(providers={"gcp": provider}, state=state, bus=MemoryEventBus())


def killed_after_its_snapshots(
    policy: Policy, wired: Backends, run_id: str, *, pid: int = DEAD_PID
) -> RunRecord:
    """Drives a run through its snapshots and stops before its point is recorded, as a
    SIGKILLed orchestrator would: its record says `running`, its snapshots are in the cloud."""
    record = RunRecord.model_validate(
        {
            "run_id": run_id,
            "policy": policy.name,
            "group": "orders",
            "requested_consistency": "crash",
            "on_quiesce_failure": "fallback",
            "max_freeze_seconds": 20,
            "orchestrator": {"host": socket.gethostname(), "pid": pid},
        }
    )
    ctx = RunContext(policy=policy, group=policy.groups["orders"], backends=wired, record=record)
    acquire_lock(ctx)
    resolve(ctx)
    quiesce(ctx)
    snapshot(ctx, "crash")
    ctx.save()
    return record


def names(compute: FakeCompute) -> set[str]:
    with compute.lock:
        return {name for (_, name) in compute.snapshots}


def test_a_killed_runs_snapshots_are_deleted_by_the_next_runs_sweep_and_a_listed_points_kept(
    compute: FakeCompute, clients: GcpClients
) -> None:
    compute.add_instance(PROJECT, ZONE, "db-vm", data_disks=1)
    policy, state = crash_policy(), MemoryStateStore()
    listed = run_group(policy, "orders", backends(clients, state))
    assert listed.status is RunStatus.SUCCEEDED, listed.errors
    assert listed.recovery_point is not None
    kept = names(compute)
    assert len(kept) == 2

    killed = killed_after_its_snapshots(policy, backends(clients, state), "20261202T040000Z-abc123")
    left = names(compute) - kept
    assert len(left) == 2
    # Its closer could not delete them (every snapshots.delete refused past its retries): the
    # run is closed, its snapshots are left, and only the orphan sweep can take them now.
    compute.throttle("DELETE", r"/global/snapshots/", count=10_000)
    refused = backends(clients, state, backoff=Backoff(attempts=2, sleep=lambda _: None))
    (closed,) = recover_abandoned(policy, refused)
    assert closed.run_id == killed.run_id
    assert closed.status is RunStatus.FAILED
    assert any("could not delete snapshot" in w for w in closed.warnings), closed.warnings
    assert names(compute) == kept | left
    with compute.lock:
        compute.throttles.clear()

    nxt = run_group(policy, "orders", backends(clients, state))

    assert nxt.status is RunStatus.SUCCEEDED, nxt.errors
    assert nxt.recovery_point is not None
    now = names(compute)
    assert not now & left, "the killed run's snapshots are deleted"
    assert kept <= now, "the listed point's snapshots are kept"
    assert len(now) == 4  # the listed point's and the new run's
    assert state.get_point(listed.recovery_point) is not None


def test_the_sweep_deletes_exactly_the_orphans_of_finished_runs(
    compute: FakeCompute, clients: GcpClients
) -> None:
    compute.add_instance(PROJECT, ZONE, "db-vm", data_disks=1)
    policy, state = crash_policy(), MemoryStateStore()
    listed = run_group(policy, "orders", backends(clients, state))
    assert listed.recovery_point is not None
    kept = names(compute)
    dead = killed_after_its_snapshots(policy, backends(clients, state), "20261202T050000Z-DEAD01")
    dead.status = RunStatus.FAILED  # closed by a closer whose deletes did not go through
    state.save_run(dead)
    state.release_lock("shop/orders", dead.run_id)
    orphans = names(compute) - kept
    alive = killed_after_its_snapshots(
        policy, backends(clients, state), "20261202T060000Z-LIVE01", pid=os.getpid()
    )  # still running (its orchestrator is this process): never touched
    running = names(compute) - kept - orphans
    assert len(orphans) == len(running) == 2

    wired = backends(clients, state)
    found = {r.id: r for r in wired.providers["gcp"].snapshots.find("shop", "orders")}
    assert {found[n].tags[RUN_TAG] for n in orphans} == {dead.run_id}
    assert {found[n].tags[POINT_TAG] for n in orphans} == {f"rp-{dead.run_id}"}

    deleted, problems = sweep_orphans(policy, wired)

    assert problems == []
    assert set(deleted) == orphans
    assert names(compute) == kept | running
    assert state.get_run(alive.run_id).status is RunStatus.RUNNING  # type: ignore[union-attr]


def test_a_copy_that_went_on_after_its_run_failed_is_deleted_with_the_run_s_snapshots(
    compute: FakeCompute, clients: GcpClients
) -> None:
    compute.add_instance(PROJECT, ZONE, "db-vm", data_disks=1)
    policy, state = crash_policy(), MemoryStateStore()
    listed = run_group(policy, "orders", backends(clients, state, GceSnapshotterWithCopies))
    assert listed.status is RunStatus.SUCCEEDED, listed.errors
    kept = names(compute)
    wired = backends(clients, state, GceSnapshotterWithCopies)
    dead = killed_after_its_snapshots(policy, wired, "20261202T050000Z-DEAD01")
    dead.status = RunStatus.FAILED
    state.save_run(dead)
    state.release_lock("shop/orders", dead.run_id)
    snapshotter = wired.providers["gcp"].snapshots
    refs = snapshotter.wait_durable(snapshotter.find("shop", "orders", dead.run_id), timeout=30)
    # Its copies, started as the engine starts them, carry on after the run failed.
    copies = {
        snapshotter.copy_to_region(
            ref, "europe-west4", None, {**ref.tags, COPY_OF_TAG: ref.id, REGION_TAG: "europe-west4"}
        ).id
        for ref in refs
    }
    assert len(copies) == 2
    with compute.lock:
        assert {name for (_, name) in compute.images} == copies

    deleted, problems = sweep_orphans(policy, backends(clients, state, GceSnapshotterWithCopies))

    assert problems == []
    assert set(deleted) == copies | {ref.id for ref in refs}
    assert names(compute) == kept
    with compute.lock:
        assert compute.images == {}


def share_backends(filestore: FakeFilestore, policy: Policy, state: MemoryStateStore) -> Backends:
    provider = filestore_provider(policy, endpoint=filestore.url, poll_interval=0.0)
    return Backends(providers={"gcp-filestore": provider}, state=state, bus=MemoryEventBus())


def share_snapshots(filestore: FakeFilestore) -> set[str]:
    with filestore.lock:
        return set(filestore.snapshots)


def test_a_filestore_snapshot_left_by_a_finished_run_is_deleted_and_no_other(
    filestore: FakeFilestore,
) -> None:
    filestore.add_instance(PROJECT, ZONE, "files")
    policy, state = crash_policy(SHARE), MemoryStateStore()
    listed = run_group(policy, "orders", share_backends(filestore, policy, state))
    assert listed.status is RunStatus.SUCCEEDED, listed.errors
    kept = share_snapshots(filestore)
    dead = killed_after_its_snapshots(
        policy, share_backends(filestore, policy, state), "20261202T050000Z-DEAD01"
    )
    dead.status = RunStatus.FAILED  # closed by a closer whose deletes did not go through
    state.save_run(dead)
    state.release_lock("shop/orders", dead.run_id)
    orphans = share_snapshots(filestore) - kept
    alive = killed_after_its_snapshots(
        policy, share_backends(filestore, policy, state), "20261202T060000Z-LIVE01", pid=os.getpid()
    )
    running = share_snapshots(filestore) - kept - orphans
    theirs = filestore.add_snapshot(
        f"projects/{PROJECT}/locations/{ZONE}/instances/files", "nightly"
    )
    assert len(kept) == len(orphans) == len(running) == 1

    wired = share_backends(filestore, policy, state)
    found = {
        r.location: r for r in wired.providers["gcp-filestore"].snapshots.find("shop", "orders")
    }
    assert {found[n].tags[RUN_TAG] for n in orphans} == {dead.run_id}
    assert {found[n].tags[POINT_TAG] for n in orphans} == {f"rp-{dead.run_id}"}

    deleted, problems = sweep_orphans(policy, wired)

    assert problems == []
    assert deleted == [n.rsplit("/", 1)[1] for n in orphans]
    assert share_snapshots(filestore) == kept | running | {theirs}
    assert state.get_run(alive.run_id).status is RunStatus.RUNNING  # type: ignore[union-attr]


def test_a_listed_point_s_copies_are_found_under_their_recorded_ids_and_kept(
    fleet: Fleet, compute: FakeCompute, clients: GcpClients
) -> None:
    from .test_drill_end_to_end import backed_up as copied_group

    policy, wired, point_id = copied_group(fleet, compute, clients)
    point = wired.state.get_point(point_id)
    assert point is not None
    (copy,) = point.copies
    replicas = {s.id for m in copy.members for s in m.snapshots}
    assert len(replicas) == 4
    found = wired.providers["gcp"].snapshots.find("shop", "orders")
    assert replicas <= {r.id for r in found if r.tags.get(COPY_OF_TAG)}
    with compute.lock:
        images = set(compute.images)

    deleted, problems = sweep_orphans(policy, wired)

    assert (deleted, problems) == ([], [])
    with compute.lock:
        assert set(compute.images) == images
