"""Every failure a user meets: each keeps the promise that nothing stays frozen."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from quiesce.engine import run_group
from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.record import Consistency, HookStatus, RunStatus
from tests.engine.conftest import group_policy
from tests.fakes import World


def thawed_members(world: World) -> list[str]:
    return sorted(m for m, phase in world.hooks.executed if phase == "post")


@pytest.mark.parametrize("how", ["fail", "timeout", "refuse", "raise"])
def test_a_pre_hook_that_does_not_succeed_on_one_member_falls_back_to_crash_consistency(
    world: World, how: str
) -> None:
    world.hooks.behaviour[("m1", "pre")] = how
    record = run_group(group_policy(3), "g", world.backends)
    assert record.status is RunStatus.DEGRADED
    assert record.consistency is Consistency.CRASH
    assert record.recovery_point is not None
    assert thawed_members(world) == ["m0", "m1", "m2"]  # the failed one too
    assert record.members[1].error is not None
    assert "quiesce.member.quiesce_failed" in world.bus.types()


@pytest.mark.parametrize("how", ["fail", "timeout", "hang:0.2"])
def test_with_abort_a_failed_pre_hook_takes_no_snapshot_and_thaws_everyone(
    world: World, how: str
) -> None:
    if how.startswith("hang"):
        world.hooks.behaviour[("m2", "pre")] = "timeout"
    world.hooks.behaviour[("m0", "pre")] = how
    record = run_group(group_policy(3, on_quiesce_failure="abort"), "g", world.backends)
    assert record.status is RunStatus.FAILED
    assert record.consistency is Consistency.NONE
    assert record.recovery_point is None
    assert world.snapshots.store == {}
    assert "snapshot:start" not in world.log.kinds()
    assert thawed_members(world) == ["m0", "m1", "m2"]
    assert world.bus.types()[-1] == "quiesce.run.failed"


def test_a_refused_hook_is_never_executed(world: World) -> None:
    world.hooks.behaviour[("m0", "pre")] = "refuse"
    run_group(group_policy(2), "g", world.backends)
    assert ("m0", "pre") not in world.hooks.executed


def test_a_failed_snapshot_still_thaws_everyone_and_records_no_partial_point(world: World) -> None:
    world.snapshots.failing = {"m2"}
    record = run_group(group_policy(3), "g", world.backends)
    assert thawed_members(world) == ["m0", "m1", "m2"]
    assert record.status is RunStatus.FAILED
    assert record.recovery_point is None
    assert world.state.list_points("p") == []
    assert world.snapshots.store == {}, "the snapshots that were taken are discarded"
    assert any("m2" in e and "ConcurrentSnapshotLimitExceeded" in e for e in record.errors)
    assert "quiesce.member.snapshot_failed" in world.bus.types()


def test_a_snapshot_that_never_becomes_durable_fails_the_run_after_the_thaw(world: World) -> None:
    world.snapshots.not_durable = {"m1"}
    record = run_group(group_policy(2), "g", world.backends)
    assert record.status is RunStatus.FAILED
    assert thawed_members(world) == ["m0", "m1"]
    assert world.snapshots.store == {}


def test_a_failed_post_hook_is_reported_not_hidden(world: World) -> None:
    world.hooks.behaviour[("m1", "post")] = "fail"
    record = run_group(group_policy(2), "g", world.backends)
    assert record.status is RunStatus.DEGRADED
    assert record.consistency is Consistency.APPLICATION
    assert record.members[1].machines[0].post is not None
    assert record.members[1].machines[0].post.status is HookStatus.FAILED
    assert any("post hook failed" in e and "m1" in e for e in record.errors)
    assert "quiesce.member.thaw_failed" in world.bus.types()


def test_a_snapshot_slower_than_max_freeze_is_thawed_at_the_deadline_and_recorded_as_crash(
    world: World,
) -> None:
    world.snapshots.slow = {"m1": 1.5}
    record = run_group(group_policy(2, max_freeze_seconds=1.1), "g", world.backends)
    post_sent = min(world.log.times("post:sent"))
    late_fixed = next(t for t, k, m, _ in world.log.entries if k == "snapshot:fixed" and m == "m1")
    assert post_sent < late_fixed, "the thaw did not wait for the late snapshot"
    assert record.recovery_point is not None
    assert record.members[1].consistency is Consistency.CRASH
    assert record.members[0].consistency is Consistency.APPLICATION
    assert record.status is RunStatus.DEGRADED
    assert any("max_freeze_seconds" in w for w in record.warnings)


def test_a_member_the_watchdog_thawed_before_its_snapshot_is_crash_consistent(
    world: World,
) -> None:
    world.hooks.behaviour[("m0", "post")] = "watchdog"
    record = run_group(group_policy(2), "g", world.backends)
    assert record.members[0].consistency is Consistency.CRASH
    assert record.status is RunStatus.DEGRADED
    assert any("watchdog thawed" in w for w in record.warnings)


def test_an_unresolvable_member_fails_the_run_before_any_hook_runs(world: World) -> None:
    world.inventory.unresolvable = {"m1"}
    record = run_group(group_policy(2), "g", world.backends)
    assert record.status is RunStatus.FAILED
    assert world.hooks.executed == []
    assert any("m1" in e for e in record.errors)
    assert world.state.locks == {}, "the lock is released"


@pytest.fixture
def ctrl_c_delivered() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt here even when this process was started with SIGINT
    ignored (as background jobs of a non-interactive shell are)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_delivered")
def test_an_interrupt_during_the_snapshot_still_thaws_and_records_the_run(world: World) -> None:
    world.snapshots.interrupt = {"m0"}
    with pytest.raises(KeyboardInterrupt):
        run_group(group_policy(2), "g", world.backends)
    assert thawed_members(world) == ["m0", "m1"]
    (record,) = world.state.list_runs("p")
    assert record.status is RunStatus.FAILED
    assert world.state.locks == {}


def test_events_the_bus_refuses_stay_in_the_outbox_and_go_out_with_the_next_run(
    world: World,
) -> None:
    refused: list[str] = []

    def broken(events: object) -> list[str]:
        raise ConnectionError("bus down")

    world.bus.publish = broken  # type: ignore[method-assign]
    first = run_group(group_policy(1), "g", world.backends)
    refused = [e.id for e in world.state.outbox_pending()]
    assert refused, "events wait in the outbox"
    assert any("outbox" in w for w in first.warnings)
    del world.bus.publish
    run_group(group_policy(1), "g", world.backends)
    published = {e.id for e in world.bus.events}
    assert set(refused) <= published
    assert world.state.outbox == {}


def test_a_group_with_a_provider_the_backends_lack_is_refused_before_anything_starts() -> None:
    from quiesce.errors import QuiesceError
    from quiesce.providers.memory import MemoryEventBus, MemoryStateStore

    policy = Policy.model_validate(
        {
            "version": 1,
            "name": "p",
            "groups": {
                "g": {
                    "consistency": "crash",
                    "members": [{"name": "a", "provider": "local", "volumes": ["/srv/a"]}],
                }
            },
        }
    )
    state = MemoryStateStore()
    backends = Backends(providers={}, state=state, bus=MemoryEventBus())

    with pytest.raises(QuiesceError, match="provider\\(s\\) local, which this deployment"):
        run_group(policy, "g", backends, trigger_id="t-1")

    assert state.list_runs("p", "g") == []
    assert state.claim_trigger("t-1", "other") is None  # the trigger was not consumed
