"""A trigger starts at most one run; a group runs at most once at a time."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from quiesce.engine import run_group
from quiesce.errors import DuplicateTriggerError, GroupBusyError
from quiesce.record import RunStatus, utcnow
from tests.engine.conftest import group_policy
from tests.fakes import World


def test_the_same_trigger_id_never_starts_two_runs(world: World) -> None:
    first = run_group(group_policy(1), "g", world.backends, trigger_id="evt-1")
    with pytest.raises(DuplicateTriggerError) as caught:
        run_group(group_policy(1), "g", world.backends, trigger_id="evt-1")
    assert caught.value.run_id == first.run_id
    assert caught.value.record == first
    assert len(world.state.list_runs("p")) == 1
    assert len(world.snapshots.store) == 1


def test_a_second_concurrent_run_of_a_group_is_refused_with_a_clear_message(world: World) -> None:
    world.hooks.behaviour[("m0", "pre")] = "hang:0.5"
    policy = group_policy(1)
    first: list[object] = []
    runner = threading.Thread(target=lambda: first.append(run_group(policy, "g", world.backends)))
    runner.start()
    while not world.state.locks:
        pass
    with pytest.raises(GroupBusyError) as caught:
        run_group(policy, "g", world.backends)
    runner.join()
    assert "group 'g' is busy" in str(caught.value)
    assert "quiesce recover" in str(caught.value)
    statuses = sorted(r.status.value for r in world.state.list_runs("p"))
    assert statuses == ["failed", "succeeded"]


def test_an_expired_lock_does_not_block_the_group_forever(world: World) -> None:
    world.state.acquire_lock("p/g", "old-run", utcnow() - timedelta(seconds=1))
    record = run_group(group_policy(1), "g", world.backends)
    assert record.status is RunStatus.SUCCEEDED
