"""How the freeze starts its calls: providers' batch methods, the waves that start one another,
and what the engine promises whichever way the calls go out."""

from __future__ import annotations

import gc
import signal
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from quiesce.engine import run_group
from quiesce.engine.lanes import Batch, Call, Wave, idle_lanes, prewarm_lanes
from quiesce.errors import ProviderError
from quiesce.ports import HookCall, SnapshotCall
from quiesce.record import Consistency, HookResult, RunStatus, SnapshotRef
from tests.engine.conftest import group_policy
from tests.fakes import FakeHookRunner, FakeSnapshotter, Log, World, make_world


class BatchSnapshotter(FakeSnapshotter):
    """A snapshotter with a batch API: the engine must hand it every call at once."""

    def __init__(self, log: Log) -> None:
        super().__init__(log)
        self.batches: list[list[str]] = []
        self.answer: str = "ok"  # ok, raise, short

    def take_many(self, calls: Sequence[SnapshotCall]) -> list[list[SnapshotRef] | BaseException]:
        self.batches.append([c.member for c in calls])
        self.log.add("take_many:start", "*", "*")
        if self.answer == "raise":
            raise ProviderError("the batch API is down", code="Unavailable")
        out: list[list[SnapshotRef] | BaseException] = []
        for call in calls:
            try:
                out.append(self.take(call))
            except ProviderError as exc:
                out.append(exc)
        return out[:-1] if self.answer == "short" else out


class BatchHookRunner(FakeHookRunner):
    """A hook runner with a batch API (as SSM's): one call per phase."""

    def __init__(self, log: Log) -> None:
        super().__init__(log)
        self.batches: list[tuple[str, list[str]]] = []

    def run_many(self, calls: Sequence[HookCall]) -> list[HookResult | BaseException]:
        self.batches.append((calls[0].phase, sorted(c.member for c in calls)))
        return [self.run(c) for c in calls]


@pytest.fixture
def batch_world() -> World:
    world = make_world()
    world.snapshots = BatchSnapshotter(world.log)
    world.hooks = BatchHookRunner(world.log)
    provider = world.backends.providers["local"]
    world.backends.providers["local"] = type(provider)(
        provider.inventory, world.hooks, world.snapshots
    )
    return world


def test_a_provider_with_batch_methods_gets_each_phase_s_calls_in_one_batch(
    batch_world: World,
) -> None:
    record = run_group(group_policy(4), "g", batch_world.backends)
    assert record.status is RunStatus.SUCCEEDED
    assert record.consistency is Consistency.APPLICATION
    hooks, snapshots = batch_world.hooks, batch_world.snapshots
    assert isinstance(hooks, BatchHookRunner)
    assert isinstance(snapshots, BatchSnapshotter)
    members = ["m0", "m1", "m2", "m3"]
    assert hooks.batches == [("pre", members), ("post", members)]
    assert [sorted(b) for b in snapshots.batches] == [members]
    assert all(len(m.machines[0].snapshots) == 1 for m in record.members)


def test_the_ordering_promises_hold_for_batches(batch_world: World) -> None:
    run_group(group_policy(3), "g", batch_world.backends)
    log = batch_world.log
    assert max(log.times("pre:done")) <= min(log.times("take_many:start"))
    assert max(log.times("snapshot:fixed")) <= min(log.times("post:sent"))


@pytest.mark.parametrize(
    ("answer", "error"),
    [("raise", "the batch API is down"), ("short", "returned 2 result(s)")],
)
def test_a_batch_that_fails_or_answers_short_fails_every_call_in_it_and_still_thaws(
    batch_world: World, answer: str, error: str
) -> None:
    snapshots = batch_world.snapshots
    assert isinstance(snapshots, BatchSnapshotter)
    snapshots.answer = answer
    record = run_group(group_policy(3), "g", batch_world.backends)
    assert record.status is RunStatus.FAILED
    assert record.recovery_point is None
    assert all(error in (m.machines[0].snapshot_error or "") for m in record.members)
    assert sorted(m for m, ph in batch_world.hooks.executed if ph == "post") == ["m0", "m1", "m2"]


def test_a_failed_snapshot_among_many_is_that_machine_s_error_only(world: World) -> None:
    world.snapshots.failing = {"m2"}
    record = run_group(group_policy(5), "g", world.backends)
    errors = {m.name: m.machines[0].snapshot_error for m in record.members}
    assert "ConcurrentSnapshotLimitExceeded" in (errors["m2"] or "")
    assert [n for n, e in errors.items() if e] == ["m2"]
    assert len(world.log.times("post:sent")) == 5


@pytest.fixture
def ctrl_c_delivered() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class InterruptingHooks(FakeHookRunner):
    """Ctrl-C reaches the orchestrator (its main thread, waiting for the pre hooks by then)
    while m0's pre hook runs; m1's succeeds afterwards."""

    def run(self, call: HookCall) -> HookResult:
        if call.phase == "pre" and call.member == "m0":
            time.sleep(0.05)  # a signal just before the wait blocks would wait with it
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        if call.phase == "pre" and call.member == "m1":
            time.sleep(0.3)
        return super().run(call)


@pytest.mark.usefixtures("ctrl_c_delivered")
def test_no_snapshot_starts_once_an_interrupt_started_the_thaw_even_if_every_pre_succeeds() -> None:
    world = make_world()
    hooks = InterruptingHooks(world.log)
    provider = world.backends.providers["local"]
    world.backends.providers["local"] = type(provider)(provider.inventory, hooks, world.snapshots)
    with pytest.raises(KeyboardInterrupt):
        run_group(group_policy(2), "g", world.backends)
    time.sleep(0.5)  # m1's pre hook has ended by now, every pre hook succeeded
    assert len(world.log.times("pre:done")) == 2
    assert "snapshot:start" not in world.log.kinds()
    assert sorted(m for m, ph in hooks.executed if ph == "post") == ["m0", "m1"]


class GcWatchingHooks(FakeHookRunner):
    def __init__(self, log: Log) -> None:
        super().__init__(log)
        self.gc_enabled: list[bool] = []

    def run(self, call: HookCall) -> HookResult:
        self.gc_enabled.append(gc.isenabled())
        return super().run(call)


@pytest.mark.parametrize("enabled_before", [True, False])
def test_the_garbage_collector_is_paused_while_the_group_is_held_and_restored_after(
    enabled_before: bool,
) -> None:
    world = make_world()
    hooks = GcWatchingHooks(world.log)
    provider = world.backends.providers["local"]
    world.backends.providers["local"] = type(provider)(provider.inventory, hooks, world.snapshots)
    was = gc.isenabled()
    (gc.enable if enabled_before else gc.disable)()
    try:
        record = run_group(group_policy(2), "g", world.backends)
        after = gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert record.status is RunStatus.SUCCEEDED
    assert hooks.gc_enabled == [False] * 4
    assert after is enabled_before


# ------------------------------------------------------------------------------------- waves


def test_a_wave_keeps_each_call_s_result_or_exception_in_its_slot() -> None:
    def half(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x // 2

    wave = Wave(5, [Call(half, x, i) for i, x in enumerate([8, 6, 3, 2, 0])]).start()
    assert wave.wait(10)
    assert wave.results[:2] == [4, 3]
    assert isinstance(wave.results[2], ValueError)
    assert wave.results[3:] == [1, 0]
    assert wave.pending() == 0


def test_a_batch_answering_the_wrong_number_of_results_is_an_error_for_each_of_its_calls() -> None:
    wave = Wave(3, [Batch(lambda xs: [x * 2 for x in xs][:1], [1, 2], (0, 2))]).start()
    assert wave.wait(10)
    assert wave.ended == [True, False, True]
    assert all(isinstance(wave.results[i], RuntimeError) for i in (0, 2))
    assert "returned 1 result(s)" in str(wave.results[0])


def test_the_lane_that_ends_a_wave_starts_the_next_and_the_first_finishes_once_it_is_out() -> None:
    seen: list[str] = []
    gate = threading.Event()
    second: list[Wave[str]] = []

    def then(_: Wave[str]) -> Wave[str]:
        second.append(Wave(1, [Call(lambda _: gate.wait(10) and "late", None, 0)]).start())
        return second[0]

    first = Wave(2, [Call(seen.append, "a", 0), Call(seen.append, "b", 1)], then).start()
    assert first.wait(10)
    assert sorted(seen) == ["a", "b"]
    assert not second[0].finished  # launched, still running
    gate.set()
    assert second[0].wait(10)
    assert second[0].results == ["late"]


def test_a_then_that_raises_is_kept_and_the_wave_still_finishes() -> None:
    def then(_: Wave[int]) -> None:
        raise RuntimeError("cannot start the next wave")

    wave = Wave(1, [Call(abs, -1, 0)], then).start()
    assert wave.wait(10)
    assert isinstance(wave.then_error, RuntimeError)


def test_more_calls_than_lanes_queue_on_them_and_all_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import quiesce.engine.lanes as lanes

    monkeypatch.setattr(lanes, "MAX_LANES", 2)
    wave = Wave(7, [Call(lambda x: x + 1, i, i) for i in range(7)]).start()
    assert wave.wait(10)
    assert wave.results == [1, 2, 3, 4, 5, 6, 7]


def test_an_empty_wave_finishes_at_once() -> None:
    assert Wave(0, []).start().wait(0)


def test_prewarm_leaves_that_many_idle_lanes() -> None:
    prewarm_lanes(12)
    assert idle_lanes() >= 12
