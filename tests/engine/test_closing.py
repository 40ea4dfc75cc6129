"""Closing an abandoned run is a conditional write only one closer wins; a point the catalog
lists keeps its snapshots whoever closes the run; retention unlists before it deletes."""

from __future__ import annotations

import threading

from quiesce.engine import recover_abandoned, run_group
from quiesce.engine.phases import recovery_point_id
from quiesce.record import Consistency, PointMember, RecoveryPoint, RunStatus
from tests.engine.conftest import group_policy
from tests.engine.test_recover import crash_mid_freeze
from tests.fakes import World


def test_concurrent_closers_close_an_abandoned_run_once(world: World) -> None:
    crash_mid_freeze(world, dead_pid=2**22 + 11)
    policy = group_policy(2)
    barrier = threading.Barrier(4)
    closed: list[list[str]] = []

    def closer() -> None:
        barrier.wait()
        closed.append([r.run_id for r in recover_abandoned(policy, world.backends)])

    threads = [threading.Thread(target=closer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(closed) == [[], [], [], ["dead-run"]]
    assert [e.type for e in world.bus.events].count("quiesce.run.failed") == 1
    thawed = [e for e in world.bus.events if e.type == "quiesce.member.thawed"]
    assert sorted(e.subject or "" for e in thawed) == ["m0", "m1"]


def test_a_closer_keeps_the_snapshots_of_a_point_the_catalog_lists(world: World) -> None:
    record = crash_mid_freeze(world, dead_pid=2**22 + 13)
    refs = list(world.snapshots.store.values())
    point = RecoveryPoint(
        id=recovery_point_id(record.run_id),
        policy="p",
        group="g",
        run_id=record.run_id,
        created_at=max(r.fixed_at for r in refs),
        consistency=Consistency.APPLICATION,
        freeze_window_ms=None,
        skew_ms=None,
        members=[
            PointMember(
                name="m0", provider="local", consistency=Consistency.APPLICATION, snapshots=refs
            )
        ],
    )
    world.state.save_point(point)  # listed; the record was never told

    (closed,) = recover_abandoned(group_policy(2), world.backends)

    assert closed.recovery_point == point.id
    assert closed.status is not RunStatus.FAILED
    assert sorted(world.snapshots.store) == sorted(r.id for r in refs)


def test_retention_unlists_a_point_before_deleting_its_snapshots(world: World) -> None:
    policy = group_policy(1, retention={"keep_last": 1})
    first = run_group(policy, "g", world.backends)
    seen: list[bool] = []
    original = world.snapshots.delete

    def delete(ref):  # type: ignore[no-untyped-def]
        seen.append(world.state.get_point(first.recovery_point or "") is None)
        original(ref)

    world.snapshots.delete = delete  # type: ignore[method-assign]
    run_group(policy, "g", world.backends)

    assert seen
    assert all(seen), "every snapshot was deleted after its point was unlisted"
