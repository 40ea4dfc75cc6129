"""A member restored by point-in-time recovery (a managed database) gets the group's `T`: the
first whole second after every member was held, before the thaw began."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from quiesce.engine import run_group
from quiesce.engine.pitr import hold_until, resolution, restore_time, stamp
from quiesce.ports import PointMethod
from quiesce.record import Consistency, Phase, RunRecord, SnapshotRef
from tests.engine.conftest import group_policy
from tests.fakes import World


def log_time(world: World, kind: str, member: str) -> datetime:
    return world.log.when(kind, member)


def test_a_pitr_member_restores_to_the_first_whole_second_inside_the_freeze(
    world: World,
) -> None:
    world.snapshots.pitr["m2"] = 1.0
    policy = group_policy(3, hooked=2)

    record = run_group(policy, "g", world.backends)

    assert record.status.value == "succeeded"
    point = world.state.get_point(record.recovery_point or "")
    assert point is not None
    moment = point.restore_time
    assert moment is not None
    assert moment == record.restore_time
    assert moment.microsecond == 0, "a whole second: the restore APIs take whole seconds"
    held = max(log_time(world, "pre:done", m) for m in ("m0", "m1"))
    thawed = min(log_time(world, "post:sent", m) for m in ("m0", "m1"))
    assert held <= moment < thawed
    assert moment - held < timedelta(seconds=1)
    (ref,) = next(m for m in point.members if m.name == "m2").snapshots
    assert ref.point == "pitr"
    assert ref.restore_time == moment
    assert ref.fixed_at == moment
    db = next(m for m in point.members if m.name == "m2")
    assert db.consistency is Consistency.APPLICATION  # held by the others' hooks
    (completed,) = [e for e in world.bus.events if e.type == "quiesce.run.completed"]
    assert completed.data["restore_time"] == moment.isoformat().replace("+00:00", "Z")
    methods = {m["name"]: m["methods"] for m in completed.data["members"]}
    assert methods == {"m0": ["snapshot"], "m1": ["snapshot"], "m2": ["pitr"]}


def test_a_group_without_pitr_members_has_no_restore_time(world: World) -> None:
    record = run_group(group_policy(2), "g", world.backends)

    assert record.restore_time is None
    point = world.state.get_point(record.recovery_point or "")
    assert point is not None
    assert point.restore_time is None


def test_a_restore_time_the_freeze_deadline_cut_off_is_recorded_crash_with_the_reason(
    world: World,
) -> None:
    world.snapshots.pitr["m2"] = 1.0
    policy = group_policy(3, hooked=2)

    def deadline_now(record: RunRecord) -> None:
        # The freeze deadline has passed by the time the members are held: the thaw may not
        # wait for the next whole second.
        if record.phase is Phase.QUIESCING and record.quiesce_started_at is not None:
            record.freeze_deadline = record.quiesce_started_at
            # ...and T lies well after the thaw (the engine keeps a T already chosen; left to
            # it, T is the next whole second, which a slow snapshot phase may pass anyway).
            later = record.quiesce_started_at.replace(microsecond=0) + timedelta(seconds=30)
            record.restore_time = later

    record = run_group(policy, "g", world.backends, progress=deadline_now)

    db = next(m for m in record.members if m.name == "m2")
    (ref,) = db.machines[0].snapshots
    assert ref.reported_consistency is Consistency.CRASH
    assert "before the restore time" in ref.note
    assert db.consistency is not Consistency.APPLICATION


def test_the_restore_time_is_the_next_instant_at_the_resolution() -> None:
    at = datetime(2026, 12, 2, 4, 0, 7, 250_000, tzinfo=UTC)
    assert restore_time(at, 1.0) == datetime(2026, 12, 2, 4, 0, 8, tzinfo=UTC)
    whole = datetime(2026, 12, 2, 4, 0, 7, tzinfo=UTC)
    assert restore_time(whole, 1.0) == whole
    assert restore_time(at, 0.1) == datetime(2026, 12, 2, 4, 0, 7, 300_000, tzinfo=UTC)
    assert restore_time(at, 60.0) == datetime(2026, 12, 2, 4, 1, tzinfo=UTC)


def test_the_coarsest_resolution_of_the_pitr_members_wins() -> None:
    assert resolution([PointMethod(), PointMethod("copy")]) is None
    assert resolution([PointMethod("pitr", 1.0), PointMethod("pitr", 0.0)]) == 1.0
    assert resolution([PointMethod("pitr", 0.0)]) == pytest.approx(1e-6)


def test_hold_until_waits_for_the_moment_but_never_past_the_deadline() -> None:
    clock = [datetime(2026, 12, 2, tzinfo=UTC)]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    moment = clock[0] + timedelta(milliseconds=400)
    assert hold_until(moment, None, lambda: clock[0], sleep) is True
    assert clock[0] > moment
    assert sum(slept) < 0.41

    clock[0] = datetime(2026, 12, 2, tzinfo=UTC)
    deadline = clock[0] + timedelta(milliseconds=100)
    assert hold_until(moment, deadline, lambda: clock[0], sleep) is False
    assert clock[0] < moment


def test_stamp_leaves_snapshots_alone_and_flags_a_thaw_before_t() -> None:
    t = datetime(2026, 12, 2, 4, 0, 8, tzinfo=UTC)
    ref = SnapshotRef(
        id="db@T",
        provider="aws",
        machine_id="db",
        volume="db",
        method="rds-pitr",
        started_at=t - timedelta(milliseconds=700),
        fixed_at=t - timedelta(milliseconds=700),
        point="pitr",
    )
    disk = ref.model_copy(update={"point": "snapshot"})
    assert stamp(disk, t, None) is disk
    ok = stamp(ref, t, t + timedelta(milliseconds=1))
    assert (ok.restore_time, ok.fixed_at, ok.reported_consistency) == (t, t, None)
    late = stamp(ref, t, t)
    assert late.reported_consistency is Consistency.CRASH
    assert "before the restore time" in late.note
