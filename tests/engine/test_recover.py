"""A run whose orchestrator died is thawed, cleaned up and announced by recover."""

from __future__ import annotations

from quiesce.engine import find_abandoned, recover_abandoned, run_group
from quiesce.engine.context import RunContext
from quiesce.engine.phases import acquire_lock, quiesce, resolve, snapshot
from quiesce.events import RunResult
from quiesce.record import RunRecord, RunStatus
from tests.engine.conftest import group_policy
from tests.fakes import World


def crash_mid_freeze(world: World, dead_pid: int) -> RunRecord:
    """Drives a run up to the snapshots and stops, as a SIGKILLed orchestrator would."""
    policy = group_policy(2)
    record = RunRecord.model_validate(
        {
            "run_id": "dead-run",
            "policy": "p",
            "group": "g",
            "requested_consistency": "application",
            "on_quiesce_failure": "fallback",
            "max_freeze_seconds": 30,
            "orchestrator": {"host": __import__("socket").gethostname(), "pid": dead_pid},
        }
    )
    ctx = RunContext(
        policy=policy, group=policy.groups["g"], backends=world.backends, record=record
    )
    acquire_lock(ctx)
    resolve(ctx)
    quiesce(ctx)
    snapshot(ctx, "application")
    world.bus.events.clear()
    return record


def test_recover_thaws_cleans_up_and_publishes_an_abandoned_run(world: World) -> None:
    crash_mid_freeze(world, dead_pid=2**22 + 7)
    policy = group_policy(2)
    assert [r.run_id for r in find_abandoned(policy, world.backends)] == ["dead-run"]
    (recovered,) = recover_abandoned(policy, world.backends)
    assert sorted(m for m, ph in world.hooks.executed if ph == "post") == ["m0", "m1"]
    assert recovered.status is RunStatus.FAILED
    assert recovered.abandoned
    assert world.snapshots.store == {}, "orphaned snapshots are deleted"
    assert world.state.locks == {}
    assert "quiescing" in recovered.errors[0]
    failed = [e for e in world.bus.events if e.type == "quiesce.run.failed"]
    assert RunResult.model_validate(failed[0].data).abandoned
    assert find_abandoned(policy, world.backends) == []


def test_a_run_whose_orchestrator_is_alive_is_not_abandoned(world: World) -> None:
    import os

    crash_mid_freeze(world, dead_pid=os.getppid())
    assert find_abandoned(group_policy(2), world.backends) == []


def test_the_next_run_of_the_group_recovers_an_abandoned_one_first(world: World) -> None:
    crash_mid_freeze(world, dead_pid=2**22 + 9)
    record = run_group(group_policy(2), "g", world.backends)
    assert record.status is RunStatus.SUCCEEDED, record.errors
    old = world.state.get_run("dead-run")
    assert old is not None
    assert old.abandoned
    assert old.status is RunStatus.FAILED
