"""A healthy group run: the ordering promises and what gets recorded."""

from __future__ import annotations

from quiesce.engine import run_group
from quiesce.events import EVENT_TYPES, RunResult
from quiesce.record import Consistency, RunStatus
from tests.engine.conftest import group_policy
from tests.fakes import World, make_world


def test_every_pre_hook_completes_before_any_snapshot_starts(world: World) -> None:
    run_group(group_policy(4), "g", world.backends)
    last_pre = max(world.log.times("pre:done"))
    first_snapshot = min(world.log.times("snapshot:start"))
    assert len(world.log.times("pre:done")) == 4
    assert last_pre <= first_snapshot


def test_every_thaw_is_sent_after_every_point_in_time_is_fixed(world: World) -> None:
    run_group(group_policy(4), "g", world.backends)
    assert len(world.log.times("post:sent")) == 4
    assert max(world.log.times("snapshot:fixed")) <= min(world.log.times("post:sent"))


def test_a_successful_run_records_one_application_consistent_recovery_point(world: World) -> None:
    record = run_group(group_policy(3), "g", world.backends)
    assert record.status is RunStatus.SUCCEEDED
    assert record.consistency is Consistency.APPLICATION
    points = world.state.list_points("p", "g")
    assert [p.id for p in points] == [record.recovery_point]
    assert {m.name for m in points[0].members} == {"m0", "m1", "m2"}
    assert all(m.consistency is Consistency.APPLICATION for m in points[0].members)
    assert points[0].size_bytes == 300
    assert world.state.get_run(record.run_id) == record


def test_freeze_window_and_skew_are_measured(world: World) -> None:
    world.snapshots.latency = 0.05
    record = run_group(group_policy(3), "g", world.backends)
    assert record.freeze_window_ms is not None
    assert record.freeze_window_ms >= 50
    assert record.skew_ms is not None
    assert 0 <= record.skew_ms < record.freeze_window_ms


def test_members_are_worked_on_concurrently_so_the_freeze_does_not_grow_with_the_group() -> None:
    world = make_world(latency=0.2)
    record = run_group(group_policy(20), "g", world.backends)
    assert record.status is RunStatus.SUCCEEDED
    # 20 sequential snapshots would hold the group for 4 s
    assert record.freeze_window_ms is not None
    assert record.freeze_window_ms < 2000


def test_a_member_without_hooks_is_application_consistent_when_the_others_quiesced(
    world: World,
) -> None:
    record = run_group(group_policy(2, hooked=1), "g", world.backends)
    assert [m.consistency for m in record.members] == [Consistency.APPLICATION] * 2
    assert world.log.kinds("m1") == ["snapshot:start", "snapshot:fixed"]


def test_a_crash_consistent_group_runs_no_hooks(world: World) -> None:
    record = run_group(group_policy(2, consistency="crash"), "g", world.backends)
    assert record.status is RunStatus.SUCCEEDED
    assert record.consistency is Consistency.CRASH
    assert world.hooks.executed == []


def test_a_member_may_resolve_to_several_machines_each_frozen_and_thawed(world: World) -> None:
    world.inventory.machines_per_member = {"m0": 3}
    record = run_group(group_policy(1), "g", world.backends)
    assert record.status is RunStatus.SUCCEEDED
    assert len(record.members[0].machines) == 3
    assert len(world.log.times("post:done")) == 3
    assert len(world.snapshots.store) == 3


def test_the_run_publishes_its_story_as_cloudevents_in_order(world: World) -> None:
    record = run_group(group_policy(2), "g", world.backends)
    types = world.bus.types()
    assert types[0] == "quiesce.run.started"
    assert types.count("quiesce.member.quiesced") == 2
    assert types.count("quiesce.member.snapshot_taken") == 2
    assert types.count("quiesce.member.thawed") == 2
    assert types[-1] == "quiesce.run.completed"
    for event in world.bus.events:
        EVENT_TYPES[event.type][1].model_validate(event.data)
        assert event.source == "/quiesce/policies/p/groups/g"
        assert event.quiescerunid == record.run_id
    result = RunResult.model_validate(world.bus.events[-1].data)
    assert result.recovery_point == record.recovery_point
    assert world.state.outbox == {}


def test_a_machine_is_never_judged_above_the_level_its_platform_reports(world: World) -> None:
    world.snapshots.reported = {"m1": Consistency.CRASH}  # e.g. VSS did not make it
    record = run_group(group_policy(2, hooked=1), "g", world.backends)
    assert [m.consistency for m in record.members] == [Consistency.APPLICATION, Consistency.CRASH]
    assert record.consistency is Consistency.CRASH
    assert record.status is RunStatus.DEGRADED


def test_a_platform_that_reports_application_consistency_keeps_it(world: World) -> None:
    world.snapshots.reported = {"m1": Consistency.APPLICATION}
    record = run_group(group_policy(2, hooked=1), "g", world.backends)
    assert record.consistency is Consistency.APPLICATION
