"""The orphan sweep and copies in other regions: a replica its point does not hold is deleted
once its run is over, and never one the point records or one of a running run; a copy that
fails midway records the replicas that started, so they are deleted with the point."""

from __future__ import annotations

from quiesce.engine import run_group
from quiesce.engine.orphans import sweep_orphans
from quiesce.errors import ProviderError
from quiesce.policy import Policy
from quiesce.record import RunRecord, RunStatus, SnapshotRef, SnapshotState
from quiesce.tags import COPY_OF_TAG, REGION_TAG
from tests.fakes import World, make_world

HOOKS = {"pre": {"run": ["/hooks/pre"], "timeout_seconds": 1}, "post": {"run": ["/hooks/post"]}}


def policy(retention: int | None = None) -> Policy:
    group: dict[str, object] = {
        "members": [
            {"name": "db", "provider": "local", "volumes": ["/d/db"], "hooks": HOOKS},
            {"name": "app", "provider": "local", "volumes": ["/d/app"], "hooks": HOOKS},
        ],
        "copies": [{"region": "dr-region", "keep_last": 5}],
    }
    if retention is not None:
        group["retention"] = {"keep_last": retention}
    return Policy.model_validate({"version": 1, "name": "shop", "groups": {"orders": group}})


def two_machine_db() -> World:
    """The db member resolves to two machines: two snapshots, two replicas per copy."""
    world = make_world()
    world.inventory.machines_per_member["db"] = 2
    return world


def backed_up(world: World, pol: Policy | None = None) -> RunRecord:
    record = run_group(pol or policy(), "orders", world.backends)
    assert record.status is RunStatus.SUCCEEDED, record.errors
    assert record.recovery_point is not None
    return record


def stray_replica(world: World, record: RunRecord) -> SnapshotRef:
    """A replica of one of the run's snapshots started as the engine starts one, but never
    recorded on the point (its run died between the copy call and the save)."""
    point = world.state.get_point(record.recovery_point or "")
    assert point is not None
    source = point.members[0].snapshots[0]
    tags = {**source.tags, COPY_OF_TAG: source.id, REGION_TAG: "other-region"}
    return world.snapshots.copy_to_region(source, "other-region", None, tags)


def stored(world: World) -> set[str]:
    return set(world.snapshots.store)


def test_a_point_s_recorded_replicas_are_never_orphans() -> None:
    world = make_world()
    backed_up(world)
    before = stored(world)
    assert any(s.endswith("@dr-region") for s in before)

    deleted, problems = sweep_orphans(policy(), world.backends)

    assert (deleted, problems) == ([], [])
    assert stored(world) == before


def test_a_replica_its_finished_run_did_not_record_is_deleted_and_nothing_else() -> None:
    world = make_world()
    record = backed_up(world)
    before = stored(world)
    stray = stray_replica(world, record)

    deleted, problems = sweep_orphans(policy(), world.backends)

    assert problems == []
    assert deleted == [stray.id]
    assert stored(world) == before


def test_a_running_run_s_unrecorded_replica_is_kept() -> None:
    world = make_world()
    record = backed_up(world)
    stray = stray_replica(world, record)
    record.status = RunStatus.RUNNING  # its run is still going: it may record it yet
    world.state.save_run(record)

    deleted, _ = sweep_orphans(policy(), world.backends)

    assert deleted == []
    assert stray.id in stored(world)


def test_replicas_of_a_point_no_longer_listed_are_deleted_with_its_snapshots() -> None:
    world = two_machine_db()
    first = backed_up(world)
    point = world.state.get_point(first.recovery_point or "")
    assert point is not None
    held = {s.id for m in point.members for s in m.snapshots}
    replicas = {s.id for c in point.copies for m in c.members for s in m.snapshots}
    assert len(replicas) == 3
    world.state.delete_point(point.id)  # unlisted, its deletes not done (a crash in between)

    deleted, problems = sweep_orphans(policy(), world.backends)

    assert problems == []
    assert set(deleted) == held | replicas


def test_a_copy_that_fails_midway_records_the_replicas_that_started() -> None:
    world = two_machine_db()
    world.snapshots.copy_budget = 1  # db's second machine's replica is refused
    record = run_group(policy(), "orders", world.backends)

    assert record.status is RunStatus.SUCCEEDED
    point = world.state.get_point(record.recovery_point or "")
    assert point is not None
    (copy,) = point.copies
    assert copy.state is SnapshotState.FAILED
    assert copy.error is not None
    assert "1 replica(s) started" in copy.error
    recorded = [s.id for m in copy.members for s in m.snapshots]
    assert len(recorded) == 1
    assert recorded[0] in stored(world)
    # Recorded, so the sweep leaves it to the point, whose deletion takes it.
    assert sweep_orphans(policy(), world.backends)[0] == []


def test_what_the_sweep_cannot_look_at_is_a_warning_of_the_run_not_a_failure() -> None:
    world = make_world()

    def cannot(policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        raise ProviderError("DescribeSnapshots in dr-region failed: AccessDenied")

    world.snapshots.find = cannot  # type: ignore[method-assign]
    record = run_group(policy(), "orders", world.backends)

    assert record.status is RunStatus.SUCCEEDED, record.errors
    assert [w for w in record.warnings if w.startswith("orphan sweep:")] == [
        "orphan sweep: could not look for orphaned local snapshots: "
        "DescribeSnapshots in dr-region failed: AccessDenied"
    ]


def test_an_orphan_that_cannot_be_deleted_is_named_in_the_next_runs_warnings() -> None:
    world = make_world()
    first = backed_up(world)
    stray = stray_replica(world, first)

    def refuse(snapshot: SnapshotRef) -> None:
        raise ProviderError(f"{snapshot.id} is in use")

    world.snapshots.delete = refuse  # type: ignore[method-assign]
    record = run_group(policy(), "orders", world.backends)

    assert record.status is RunStatus.SUCCEEDED, record.errors
    assert f"orphan sweep: could not delete orphaned snapshot {stray.id}: {stray.id} is in use" in (
        record.warnings
    )
