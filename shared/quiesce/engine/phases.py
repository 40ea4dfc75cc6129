"""The run's phases, each a small function over the RunContext.

Order: resolve → lock → quiesce → snapshot → thaw → collect late snapshots → durability →
record → retention → publish. `held()` wraps quiesce and snapshot so the thaw always runs.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import TypeVar

from quiesce.engine import pitr
from quiesce.engine.context import RunContext
from quiesce.engine.freeze import Freeze, hook_result, hook_units
from quiesce.engine.lanes import Wave, prewarm_lanes
from quiesce.engine.outcome import hook_error
from quiesce.errors import GroupBusyError, ProviderError
from quiesce.events import (
    EventType,
    MemberHookData,
    MemberSnapshotData,
    MemberSnapshotFailedData,
)
from quiesce.ports import HookCall, SnapshotCall, Snapshotter, fan_out, prewarm
from quiesce.record import (
    HookResult,
    MachineRecord,
    MemberRecord,
    Phase,
    SnapshotRef,
    SnapshotState,
)

T = TypeVar("T")
Pair = tuple[MemberRecord, MachineRecord]

LOCK_MARGIN_SECONDS = 600


def lock_key(policy: str, group: str) -> str:
    return f"{policy}/{group}"


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# ------------------------------------------------------------------------------------ resolve


def resolve(ctx: RunContext) -> None:
    """Finds every member's machines. A member that cannot be resolved fails the run."""
    members = ctx.group.members

    def one(member_index: int) -> MemberRecord:
        member = members[member_index]
        record = MemberRecord(
            name=member.name, provider=member.provider, has_hooks=member.hooks.pre is not None
        )
        for machine in ctx.provider(member.provider).inventory.resolve(member):
            ctx.machines[(member.name, machine.machine_id)] = machine
            record.machines.append(
                MachineRecord(machine_id=machine.machine_id, volumes=list(machine.volumes))
            )
        if not record.machines:
            raise ProviderError(f"member {member.name!r} resolved to no machine")
        return record

    results = fan_out(one, list(range(len(members))))
    problems = [
        f"member {m.name!r}: {_error_text(r)}"
        for m, r in zip(members, results, strict=True)
        if isinstance(r, BaseException)
    ]
    if problems:
        raise ProviderError("; ".join(problems), code="ResolveFailed")
    ctx.record.members = [r for r in results if isinstance(r, MemberRecord)]
    prewarm(len(ctx.machines) + 1)
    prewarm_lanes(len(ctx.machines) + 1)  # the freeze's calls start on these (engine.lanes)
    ctx.save(Phase.RESOLVED)


# --------------------------------------------------------------------------------------- lock


def acquire_lock(ctx: RunContext) -> None:
    rec = ctx.record
    budget = ctx.group.max_freeze_seconds + ctx.group.durability_timeout_seconds
    rec.lock_expires_at = ctx.now() + timedelta(seconds=budget + LOCK_MARGIN_SECONDS)
    holder = ctx.backends.state.acquire_lock(
        lock_key(rec.policy, rec.group), rec.run_id, rec.lock_expires_at
    )
    if holder is not None:
        raise GroupBusyError(rec.group, holder.run_id, holder.expires_at.isoformat())
    ctx.save(Phase.LOCKED)


def release_lock(ctx: RunContext) -> None:
    rec = ctx.record
    ctx.backends.state.release_lock(lock_key(rec.policy, rec.group), rec.run_id)


# ---------------------------------------------------------------------------------- fan-out


def _by_provider(
    ctx: RunContext, pairs: Sequence[Pair], work: Callable[[str, list[Pair]], list[T]]
) -> dict[int, T | BaseException]:
    """Runs `work` once per provider with that provider's pairs, all providers at once.

    Returns each pair's result by its index in `pairs`.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (member, _) in enumerate(pairs):
        groups[member.provider].append(i)
    names = list(groups)

    def one(name: str) -> list[T]:
        return work(name, [pairs[i] for i in groups[name]])

    out: dict[int, T | BaseException] = {}
    for name, results in zip(names, fan_out(one, names), strict=True):
        for j, i in enumerate(groups[name]):
            out[i] = results if isinstance(results, BaseException) else results[j]
    return out


def hook_call(
    ctx: RunContext, member: MemberRecord, machine: MachineRecord, phase: str
) -> HookCall:
    rec = ctx.record
    spec = ctx.member(member.name)
    hooks = spec.hooks
    hook = hooks.pre if phase == "pre" else hooks.post
    assert hook is not None
    return HookCall(
        run_id=rec.run_id,
        policy=rec.policy,
        group=rec.group,
        member=member.name,
        machine=ctx.machine(member, machine),
        phase="pre" if phase == "pre" else "post",
        hook=hook,
        thaw=hooks.post if phase == "pre" else None,
        max_freeze_seconds=ctx.group.max_freeze_seconds if phase == "pre" else None,
        spec=spec,
    )


# ------------------------------------------------------------------------------------ quiesce


def _hooked_pairs(ctx: RunContext) -> list[Pair]:
    return [(m, mc) for m, mc in ctx.record.machines() if m.has_hooks]


def quiesce(ctx: RunContext) -> bool:
    """Runs every pre hook at once. Returns whether every one succeeded.

    When every one succeeded, the snapshot calls have started by then (engine.freeze): the lane
    that ended the last pre hook started them. Its events are announced after the thaw: nothing
    but hooks and snapshots runs in the freeze.
    """
    rec = ctx.record
    pairs = _hooked_pairs(ctx)
    rec.quiesce_started_at = ctx.now()
    rec.freeze_deadline = rec.quiesce_started_at + timedelta(seconds=ctx.group.max_freeze_seconds)
    for _, machine in pairs:
        machine.pre_started = True  # from here on a thaw is owed, whatever happens
    ctx.save(Phase.QUIESCING)
    calls = [hook_call(ctx, m, mc, "pre") for m, mc in pairs]
    # Everything the freeze needs is built before the first member is held.
    plan = plan_snapshots(ctx, "application")
    ctx.thaw_calls = {id(mc): hook_call(ctx, m, mc, "post") for m, mc in pairs}
    ctx.freeze = Freeze(ctx, pairs, [ctx.thaw_calls[id(mc)] for _, mc in pairs])
    wave = ctx.freeze.quiesce(pairs, calls, plan, "application")
    wave.wait()
    ok = True
    for (_, machine), outcome in zip(pairs, wave.results, strict=True):
        result = hook_result(outcome)
        assert result is not None  # the wave ended
        machine.pre = result
        ok = ok and result.ok
    ctx.enter(Phase.QUIESCED)  # saved with the thaw: no catalog write inside the freeze
    return ok


# ----------------------------------------------------------------------------------- snapshot


def recovery_point_id(run_id: str) -> str:
    return f"rp-{run_id}"


def plan_snapshots(
    ctx: RunContext, expected_consistency: str
) -> list[tuple[Snapshotter, SnapshotCall]]:
    """Builds every machine's snapshot call (in the order of `record.machines()`), so the
    snapshot phase only has to start them."""
    rec = ctx.record
    plan = ctx.snapshot_plan = [
        (
            ctx.provider(member.provider).snapshots,
            SnapshotCall(
                run_id=rec.run_id,
                policy=rec.policy,
                group=rec.group,
                member=member.name,
                machine=ctx.machine(member, machine),
                recovery_point=recovery_point_id(rec.run_id),
                consistency=expected_consistency,
                spec=ctx.member(member.name),
            ),
        )
        for member, machine in rec.machines()
    ]
    ctx.restore_step = pitr.resolution([s.point_method(call.spec) for s, call in plan])
    return plan


def snapshot(ctx: RunContext, expected_consistency: str) -> None:
    """Starts every machine's snapshot call at once and waits for their points in time, but
    never past the freeze deadline: calls still running then are collected after the thaw.

    The calls were planned before the quiesce (see plan_snapshots); after a quiesce in which
    every pre hook succeeded they have started already (engine.freeze). When the last one ends,
    the thaw starts from its lane."""
    rec = ctx.record
    ctx.enter(Phase.SNAPSHOTTING)
    plan = ctx.snapshot_plan
    if plan is None or plan[0][1].consistency != expected_consistency:
        plan = plan_snapshots(ctx, expected_consistency)
    if ctx.freeze is None:  # a crash-consistent group: no hook ran, none is owed
        ctx.freeze = Freeze(ctx, [], [])
    wave = ctx.freeze.start_snapshots(expected_consistency, plan)
    if wave is None:  # the thaw has started (a signal): no snapshot may start any more
        return
    timeout = None
    if rec.freeze_deadline is not None:
        timeout = max(0.0, (rec.freeze_deadline - ctx.now()).total_seconds())
    wave.wait(timeout)
    not_done = wave.pending()
    if not_done:
        rec.warnings.append(
            f"{not_done} snapshot call(s) had not fixed their point in time by "
            f"max_freeze_seconds ({ctx.group.max_freeze_seconds:g}s): thawed first; those "
            "snapshots are crash-consistent"
        )


def _settle_snapshots(ctx: RunContext, wait_for_late: bool) -> None:
    """Records (and announces) the snapshot calls that have ended and are not recorded yet."""
    calls = ctx.snapshot_calls
    if calls is None:
        return
    wave = calls.wave
    if wait_for_late:
        wave.wait(timeout=ctx.group.durability_timeout_seconds)
    rec = ctx.record
    for i, (member, machine) in enumerate(calls.pairs):
        if i in calls.settled or not wave.ended[i]:
            continue
        calls.settled.add(i)
        outcome = wave.results[i]
        if isinstance(outcome, BaseException) or outcome is None:
            machine.snapshot_error = _error_text(outcome or RuntimeError("no result"))
            ctx.emit(
                EventType.MEMBER_SNAPSHOT_FAILED,
                MemberSnapshotFailedData(
                    run_id=rec.run_id,
                    group=rec.group,
                    member=member.name,
                    machine_id=machine.machine_id,
                    error=machine.snapshot_error,
                ),
                subject=member.name,
            )
        else:
            thawed = ctx.freeze.thaw_started_at if ctx.freeze is not None else None
            outcome = [pitr.stamp(ref, rec.restore_time, thawed) for ref in outcome]
            machine.snapshots = outcome
            ctx.emit(
                EventType.MEMBER_SNAPSHOT_TAKEN,
                MemberSnapshotData(
                    run_id=rec.run_id,
                    group=rec.group,
                    member=member.name,
                    machine_id=machine.machine_id,
                    snapshots=outcome,
                ),
                subject=member.name,
                time=max((s.fixed_at for s in outcome), default=None),
            )
    if wait_for_late:
        for i, (_, machine) in enumerate(calls.pairs):
            if i not in calls.settled:
                machine.snapshot_error = "the snapshot call did not return in time"
        ctx.snapshot_calls = None


def collect_late_snapshots(ctx: RunContext) -> None:
    """Waits (outside the freeze) for snapshot calls that missed the freeze deadline."""
    _settle_snapshots(ctx, wait_for_late=True)


# -------------------------------------------------------------------------------------- thaw


def _announce_hook(
    ctx: RunContext, member: MemberRecord, machine: MachineRecord, phase: str
) -> None:
    rec = ctx.record
    result = machine.pre if phase == "pre" else machine.post
    if result is None:
        return
    if phase == "pre":
        type_ = EventType.MEMBER_QUIESCED if result.ok else EventType.MEMBER_QUIESCE_FAILED
    else:
        type_ = EventType.MEMBER_THAWED if result.ok else EventType.MEMBER_THAW_FAILED
    ctx.emit(
        type_,
        MemberHookData(
            run_id=rec.run_id,
            group=rec.group,
            member=member.name,
            machine_id=machine.machine_id,
            result=result,
        ),
        subject=member.name,
        time=result.ended_at,
    )


def thaw(ctx: RunContext, *, announce_freeze: bool = True) -> None:
    """Runs the post hook on every machine whose pre hook started and that is not thawed yet,
    then announces what happened during the freeze and the thaw."""
    rec = ctx.record
    owed = [(m, mc) for m, mc in _hooked_pairs(ctx) if mc.pre_started and mc.post is None]
    pairs = [(m, mc) for m, mc in owed if ctx.knows(m.name)]
    interrupted = False
    if pairs:
        ctx.enter(Phase.THAWING)
        results, interrupted = _run_posts(ctx, pairs)
        for (member, machine), result in zip(pairs, results, strict=True):
            if interrupted and (result is None or not result.ok):
                if result is not None:
                    rec.warnings.append(
                        f"member {member.name!r} on {machine.machine_id}: the post hook was "
                        f"interrupted ({result.status.value}, {result.code}: {result.message}); "
                        "its thaw is still owed"
                    )
                continue  # post stays None: the thaw is owed until one is proven
            machine.post = result
    if announce_freeze:
        for member, machine in _hooked_pairs(ctx):
            _announce_hook(ctx, member, machine, "pre")
            if machine.pre is not None and not machine.pre.ok:
                rec.warnings.append(
                    f"member {member.name!r} on {machine.machine_id}: "
                    + hook_error("pre", machine.pre)
                )
        _settle_snapshots(ctx, wait_for_late=False)
    for member, machine in pairs:
        post = machine.post
        if post is None:
            continue
        _announce_hook(ctx, member, machine, "post")
        if post.by == "watchdog":
            rec.warnings.append(
                f"member {member.name!r} on {machine.machine_id}: the watchdog thawed it "
                "before the orchestrator did"
            )
        if not post.ok:
            rec.errors.append(
                f"member {member.name!r} on {machine.machine_id}: {hook_error('post', post)} — "
                "the application may still be held; check the machine"
            )
    for member, machine in owed:
        if not ctx.knows(member.name):
            rec.errors.append(
                f"member {member.name!r} on {machine.machine_id} is owed a thaw, but the policy "
                "no longer names it, so its post hook is unknown; its watchdog thaws it"
            )
    if interrupted:
        ctx.interrupted = True
        ctx.save()
        raise KeyboardInterrupt
    ctx.save(Phase.THAWED)


#: How long past the post hooks' own time limits an interrupted thaw still waits for them.
POST_GRACE_SECONDS = 5.0


def _run_posts(ctx: RunContext, pairs: Sequence[Pair]) -> tuple[list[HookResult | None], bool]:
    """Runs the post hooks: the freeze's thaw wave (started already when the last snapshot call
    ended, else now) and, for any machine it does not cover, one more. A signal does not abandon
    them: they are waited for (within their time limits) and recorded. Returns the results
    (None: unknown) and whether a signal came."""
    freeze = ctx.freeze
    index = freeze.thaw_index if freeze is not None else {}
    slots: list[tuple[Wave[HookResult], int]] = []
    rest = [(m, mc) for m, mc in pairs if id(mc) not in index]
    extra: Wave[HookResult] | None = None
    if rest:
        calls = [ctx.thaw_calls.get(id(mc)) or hook_call(ctx, m, mc, "post") for m, mc in rest]
        extra = Wave(len(rest), hook_units(ctx, rest, calls))
    thawing = freeze.start_thaw() if freeze is not None and len(rest) < len(pairs) else None
    if extra is not None:
        extra.start()
    k = 0
    for _, mc in pairs:
        if id(mc) in index:
            assert thawing is not None
            slots.append((thawing, index[id(mc)]))
        else:
            assert extra is not None
            slots.append((extra, k))
            k += 1
    waves = [w for w in (thawing, extra) if w is not None]
    interrupted = False
    try:
        for wave in waves:
            wave.wait()
    except KeyboardInterrupt:
        interrupted = True
        owed = [ctx.thaw_calls.get(id(mc)) for _, mc in pairs]
        budget = max(c.hook.budget_seconds for c in owed if c is not None) + POST_GRACE_SECONDS
        until = time.monotonic() + budget
        try:
            for wave in waves:
                wave.wait(max(0.0, until - time.monotonic()))
        except KeyboardInterrupt:
            pass
    results = [hook_result(w.results[i]) if w.ended[i] else None for w, i in slots]
    return results, interrupted


@contextlib.contextmanager
def held(ctx: RunContext) -> Iterator[None]:
    """Whatever happens inside, every machine whose pre hook started is thawed on the way out
    (and, since that is promised, the freeze may start the thaw as soon as the last snapshot
    call ends)."""
    ctx.thaw_guarded = True
    try:
        yield
    finally:
        try:
            thaw(ctx)
        finally:
            ctx.thaw_guarded = False


# -------------------------------------------------------------------------------- durability


def await_durability(ctx: RunContext) -> None:
    rec = ctx.record
    pairs = [(m, mc) for m, mc in rec.machines() if mc.snapshots]
    if not pairs:
        return
    ctx.save(Phase.AWAITING_DURABILITY)
    timeout = ctx.group.durability_timeout_seconds

    def work(provider: str, pairs: list[Pair]) -> list[list[SnapshotRef]]:
        refs = [s for _, mc in pairs for s in mc.snapshots]
        done = {s.id: s for s in ctx.provider(provider).snapshots.wait_durable(refs, timeout)}
        return [[done.get(s.id, s) for s in mc.snapshots] for _, mc in pairs]

    results = _by_provider(ctx, pairs, work)
    for i, (_member, machine) in enumerate(pairs):
        result = results[i]
        if isinstance(result, BaseException):
            machine.snapshot_error = f"snapshot did not become durable: {_error_text(result)}"
            continue
        machine.snapshots = result
        failed = [s.id for s in result if s.state is not SnapshotState.COMPLETED]
        if failed:
            machine.snapshot_error = f"snapshot(s) not completed: {', '.join(failed)}"


#: The longest a discard waits for snapshot calls still running (their copies stop when their
#: snapshots are deleted; what a call leaves after that is an orphan for the next run).
DISCARD_WAIT_SECONDS = 30.0


def discard_snapshots(ctx: RunContext) -> None:
    """Deletes the snapshots of a run that records no recovery point (and any orphans).

    Snapshot calls still running (a signal came during the snapshot phase) are told to stop by
    the deletion of what they wrote so far, waited for, and what they wrote meanwhile is deleted
    too."""
    rec = ctx.record
    _delete_run_snapshots(ctx)
    calls = ctx.snapshot_calls
    running = calls.wave.pending() if calls is not None else 0
    if calls is not None and running:
        timeout = min(DISCARD_WAIT_SECONDS, ctx.group.durability_timeout_seconds)
        calls.wave.wait(timeout)
        still = calls.wave.pending()
        if still:
            rec.warnings.append(
                f"{still} snapshot call(s) were still running after {timeout:g}s; what "
                "they leave is deleted by the next run or `quiesce recover`"
            )
        _delete_run_snapshots(ctx)
    for _, machine in rec.machines():
        for ref in machine.snapshots:
            ref.state = SnapshotState.DELETED


def _delete_run_snapshots(ctx: RunContext) -> None:
    rec = ctx.record
    known = {s.id: s for _, mc in rec.machines() for s in mc.snapshots}
    for name in {m.provider for m in rec.members}:
        try:
            for ref in ctx.provider(name).snapshots.find(rec.policy, rec.group, rec.run_id):
                known.setdefault(ref.id, ref)
        except Exception as exc:
            rec.warnings.append(f"could not list {name} snapshots of this run: {_error_text(exc)}")
    for ref in known.values():
        try:
            ctx.provider(ref.provider).snapshots.delete(ref)
        except Exception as exc:
            rec.warnings.append(f"could not delete snapshot {ref.id}: {_error_text(exc)}")
