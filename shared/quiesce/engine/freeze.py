"""The freeze's three waves (pre hooks, snapshots, post hooks), each started by the lane that
ends the previous one (see quiesce.engine.lanes).

Everything the waves need is built before the first member is held. When the last pre hook
ends and every pre hook succeeded, the snapshot calls start from that lane; inside `held()`,
when the last snapshot call ends, the post hooks start from that one. The main thread records
the results meanwhile, off the critical path. The engine's promises hold as before: no
snapshot starts before every pre hook ended; no thaw starts before every snapshot call ended
or the freeze deadline passed (then the main thread starts it: `start_thaw` runs once,
whoever comes first); no snapshot starts once the thaw has started (a signal during the
quiesce).

A provider whose `run_many`/`take_many` is the port's default gets one lane per call (its
`run`/`take`); one that overrides it (a batch API) gets one lane per batch call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from quiesce.engine import pitr
from quiesce.engine.context import RunContext, SnapshotCalls
from quiesce.engine.lanes import Batch, Call, Unit, Wave
from quiesce.ports import HookCall, HookRunner, SnapshotCall, Snapshotter
from quiesce.record import HookResult, HookStatus, MachineRecord, MemberRecord, SnapshotRef

Pair = tuple[MemberRecord, MachineRecord]
Plan = list[tuple[Snapshotter, SnapshotCall]]
Snapshots = list[SnapshotRef]


def hook_units(
    ctx: RunContext, pairs: Sequence[Pair], calls: Sequence[HookCall]
) -> list[Unit[HookResult]]:
    """One unit per call, or per provider for a runner with its own `run_many` (first)."""
    units: list[Unit[HookResult]] = []
    batched: dict[int, tuple[HookRunner, list[int]]] = {}
    for i, ((member, _), call) in enumerate(zip(pairs, calls, strict=True)):
        runner = ctx.provider(member.provider).hooks
        if type(runner).run_many is HookRunner.run_many:
            units.append(Call(runner.run, call, i))
        else:
            batched.setdefault(id(runner), (runner, []))[1].append(i)
    batches: list[Unit[HookResult]] = [
        Batch(runner.run_many, [calls[i] for i in indexes], tuple(indexes))
        for runner, indexes in batched.values()
    ]
    return batches + units


def snapshot_units(plan: Plan) -> list[Unit[Snapshots]]:
    """One unit per call, or per provider for a snapshotter with its own `take_many` (first)."""
    units: list[Unit[Snapshots]] = []
    batched: dict[int, tuple[Snapshotter, list[int]]] = {}
    for i, (snapshotter, call) in enumerate(plan):
        if type(snapshotter).take_many is Snapshotter.take_many:
            units.append(Call(snapshotter.take, call, i))
        else:
            batched.setdefault(id(snapshotter), (snapshotter, []))[1].append(i)
    batches: list[Unit[Snapshots]] = [
        Batch(snapshotter.take_many, [plan[i][1] for i in indexes], tuple(indexes))
        for snapshotter, indexes in batched.values()
    ]
    return batches + units


def hook_result(result: HookResult | BaseException | None) -> HookResult | None:
    """A hook's result; a channel failure (an exception) is a failed result; None: unknown."""
    if result is None or isinstance(result, HookResult):
        return result
    return HookResult(
        status=HookStatus.FAILED,
        code=str(getattr(result, "code", "ChannelError")),
        message=str(result) or type(result).__name__,
    )


class Freeze:
    """One run's freeze: its pre-hook, snapshot and post-hook waves.

    `thaw_pairs` are the machines the thaw is for (every machine whose pre hook starts), with
    their post calls, built before the first member is held."""

    def __init__(
        self, ctx: RunContext, thaw_pairs: Sequence[Pair], thaw_calls: Sequence[HookCall]
    ) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()
        self._machines = ctx.record.machines()  # the snapshot calls' order (see plan_snapshots)
        self.thaw_index = {id(mc): i for i, (_, mc) in enumerate(thaw_pairs)}
        self._thaw_units = hook_units(ctx, thaw_pairs, thaw_calls)
        self._ready: tuple[str, Plan, list[Unit[Snapshots]]] | None = None
        self.snapshots: Wave[Snapshots] | None = None
        self.thaw: Wave[HookResult] | None = None
        #: When the thaw wave started (a `pitr` member's `T` must lie before it).
        self.thaw_started_at: datetime | None = None

    def quiesce(
        self, pairs: Sequence[Pair], calls: Sequence[HookCall], plan: Plan, consistency: str
    ) -> Wave[HookResult]:
        """Starts the pre hooks; when every one succeeded, the snapshot calls of `plan` start
        from the lane that ended the last one."""
        self._ready = (consistency, plan, snapshot_units(plan))
        return Wave(len(calls), hook_units(self._ctx, pairs, calls), self._after_quiesce).start()

    def _after_quiesce(self, wave: Wave[HookResult]) -> Wave[Any] | None:
        if not all(isinstance(r, HookResult) and r.ok for r in wave.results):
            return None  # the main thread decides: fall back to crash, or abort
        assert self._ready is not None
        return self.start_snapshots(self._ready[0], self._ready[1])

    def start_snapshots(self, consistency: str, plan: Plan) -> Wave[Snapshots] | None:
        """Starts every machine's snapshot call, once; returns the calls' wave (the one already
        started, if any), or None when the thaw has started."""
        with self._lock:
            if self.snapshots is not None:
                return self.snapshots
            if self.thaw is not None:
                return None
            if self._ready is not None and self._ready[1] is plan:
                units = self._ready[2]
            else:
                units = snapshot_units(plan)
            rec = self._ctx.record
            if self._ctx.restore_step is not None and rec.restore_time is None:
                # Every member is held from now on: the group's T is the next instant at the
                # restore APIs' resolution (the thaw waits for it, see start_thaw).
                rec.restore_time = pitr.restore_time(self._ctx.now(), self._ctx.restore_step)
            wave = Wave(len(plan), units, self._after_snapshots)
            self.snapshots = wave
            self._ctx.snapshot_calls = SnapshotCalls(pairs=self._machines, wave=wave)
        try:
            return wave.start()
        except BaseException:
            with self._lock:
                self.snapshots = None
                self._ctx.snapshot_calls = None
            raise

    def _after_snapshots(self, _: Wave[Snapshots]) -> Wave[Any] | None:
        # Only inside held(), whose finally owes the thaw anyway: phases driven by hand (a
        # test standing in for an orchestrator that died mid-freeze) thaw when told to.
        return self.start_thaw() if self._ctx.thaw_guarded else None

    def start_thaw(self) -> Wave[HookResult]:
        """Starts every post hook, once; returns their wave (the one already started, if any).

        With a `pitr` member, not before the group's restore time has passed (but never past
        the freeze deadline)."""
        ctx = self._ctx
        moment = ctx.record.restore_time
        if moment is not None and self.thaw is None:
            pitr.hold_until(moment, ctx.record.freeze_deadline, ctx.now)
        with self._lock:
            if self.thaw is not None:
                return self.thaw
            wave = Wave(len(self.thaw_index), self._thaw_units)
            self.thaw = wave
            self.thaw_started_at = ctx.now()
        try:
            return wave.start()
        except BaseException:
            with self._lock:
                self.thaw = None
            raise
