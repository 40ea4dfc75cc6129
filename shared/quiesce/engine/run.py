"""One run of a consistency group, from trigger to published result."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any

from quiesce.engine import copies
from quiesce.engine.claims import Cooldown, claim
from quiesce.engine.context import RunContext
from quiesce.engine.finish import finish
from quiesce.engine.gil import dispatch_priority
from quiesce.engine.orphans import Swept
from quiesce.engine.outcome import inconsistent_copies, judge
from quiesce.engine.phases import (
    acquire_lock,
    await_durability,
    collect_late_snapshots,
    held,
    quiesce,
    recovery_point_id,
    resolve,
    snapshot,
)
from quiesce.engine.recover import recover_abandoned
from quiesce.engine.retention import apply_retention
from quiesce.errors import CooldownError, GroupBusyError, QuiesceError
from quiesce.events import EventType, RunStartedData
from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.record import (
    MemberRecord,
    Orchestrator,
    Phase,
    PointMember,
    RecoveryPoint,
    RunRecord,
    ms_between,
    utcnow,
)


class RunInterrupted(KeyboardInterrupt):
    """A signal stopped the run; raised once the run is recorded (closed, or left open while a
    thaw is owed), carrying its record."""

    def __init__(self, record: RunRecord) -> None:
        super().__init__(f"run {record.run_id} was interrupted")
        self.record = record


def member_facts(member: MemberRecord) -> dict[str, dict[str, Any]]:
    """What each machine's pre and post hooks reported doing, for the recovery point."""
    out: dict[str, dict[str, Any]] = {}
    for mc in member.machines:
        phases = {
            phase: result.facts
            for phase, result in (("pre", mc.pre), ("post", mc.post))
            if result is not None and result.facts
        }
        if phases:
            out[mc.machine_id] = phases
    return out


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run_group(
    policy: Policy,
    group_name: str,
    backends: Backends,
    *,
    trigger_id: str | None = None,
    cooldown: Cooldown | None = None,
    now: Callable[[], datetime] = utcnow,
    progress: Callable[[RunRecord], None] | None = None,
) -> RunRecord:
    """Runs one group and returns its finished record.

    `trigger_id` makes the run the event's one run (see engine.claims): raises
    DuplicateTriggerError when another run owns it (carrying that run's record), and
    TriggerPendingError when its owner may still be starting. `cooldown` is claimed when the
    run begins its quiesce; CooldownError when another run claimed it first (nothing frozen).
    GroupBusyError when another run holds the group (a failed record is kept). Any other error
    before the run did anything is recorded as a failed run and raised, so the platform
    delivers the event again and the redelivery takes the trigger over.
    """
    group = policy.group(group_name)
    missing = sorted({m.provider for m in group.members} - set(backends.providers))
    if missing:  # before anything is claimed, locked or frozen
        raise QuiesceError(
            f"group {group_name!r} has members of provider(s) {', '.join(missing)}, which this "
            f"deployment does not configure (configured: {', '.join(sorted(backends.providers))})"
        )
    started = now()
    record = RunRecord(
        run_id=new_run_id(started),
        policy=policy.name,
        group=group_name,
        trigger_id=trigger_id,
        requested_consistency=group.consistency,
        on_quiesce_failure=group.on_quiesce_failure,
        max_freeze_seconds=group.max_freeze_seconds,
        orchestrator=Orchestrator(host=socket.gethostname(), pid=os.getpid()),
        started_at=started,
    )
    claim(backends.state, record, started)
    ctx = RunContext(
        policy=policy, group=group, backends=backends, record=record, now=now, progress=progress
    )
    _start(ctx)
    reached_snapshots = False
    cooled = False
    try:
        resolve(ctx)
        ctx.emit(
            EventType.RUN_STARTED,
            RunStartedData(
                run_id=record.run_id,
                policy=record.policy,
                group=record.group,
                trigger_id=trigger_id,
                requested_consistency=group.consistency,
                members=[m.name for m in group.members],
            ),
            subject=record.run_id,
        )
        cooled = not _claim_cooldown(ctx, cooldown)
        if not cooled:
            reached_snapshots = True
            _freeze_to_point(ctx)
    except Exception as exc:  # a provider or catalog failure outside the hooks' own results
        record.errors.append(f"run stopped during {record.phase.value}: {exc}")
    except KeyboardInterrupt:  # SIGINT, or SIGTERM through the CLI: finish, then stop
        ctx.interrupted = True
        record.errors.append(f"interrupted by a signal during {record.phase.value}")
    finally:
        finish(ctx, reached_snapshots=reached_snapshots)
    if ctx.interrupted:
        raise RunInterrupted(record)
    if cooled:
        assert cooldown is not None
        raise CooldownError(cooldown.key, record)
    return record


def _start(ctx: RunContext) -> None:
    """Closes what earlier runs abandoned and takes the group's lock (the run's first save).

    GroupBusyError is recorded and raised. Any other failure here happens before the run did
    anything: it is recorded as a failed run (so a redelivery of the event takes its trigger
    over) and raised (so the platform delivers it again)."""
    record = ctx.record
    swept = Swept()
    try:
        recover_abandoned(ctx.policy, ctx.backends, group=record.group, now=ctx.now, swept=swept)
        record.warnings += [f"orphan sweep: {problem}" for problem in swept.problems]
        acquire_lock(ctx)
    except GroupBusyError as exc:
        record.errors.append(str(exc))
        finish(ctx, reached_snapshots=False)
        raise
    except Exception as exc:
        record.errors.append(f"the run could not start: {exc}")
        with contextlib.suppress(Exception):  # the catalog may be what failed
            finish(ctx, reached_snapshots=False)
        raise


def _claim_cooldown(ctx: RunContext, cooldown: Cooldown | None) -> bool:
    """Claims the trigger's cooldown as the run begins its quiesce: only a run that goes on to
    freeze (or snapshot) consumes it. False: another run claimed it first."""
    if cooldown is None:
        return True
    if ctx.backends.state.claim_cooldown(cooldown.key, ctx.now(), cooldown.seconds):
        return True
    ctx.record.errors.append(
        f"stopped before the quiesce: another run claimed the cooldown {cooldown.key!r} "
        f"({cooldown.seconds / 60:g} minutes) first; nothing was frozen"
    )
    return False


def _freeze_to_point(ctx: RunContext) -> None:
    """Freeze, snapshot, thaw; then durability, the recovery point and retention."""
    if not _freeze_snapshot_thaw(ctx):
        return
    await_durability(ctx)
    if not _all_snapshotted(ctx):
        return
    _record_point(ctx)
    apply_retention(ctx)
    if ctx.record.recovery_point is not None:
        try:
            ctx.record.warnings += copies.after_run(
                ctx.record.recovery_point, ctx.group, ctx.backends, ctx.now
            )
        except Exception as exc:  # the point is recorded: a copy never fails the run
            ctx.record.warnings.append(f"the point's copies could not be started: {exc}")


def _freeze_snapshot_thaw(ctx: RunContext) -> bool:
    """Quiesce every member, snapshot every machine, thaw — the thaw whatever happens.

    Returns whether every machine has its snapshots (so the run may go on)."""
    group = ctx.group
    application = group.consistency == "application"
    with dispatch_priority(), held(ctx):
        quiesced = quiesce(ctx) if application else False
        if application and not quiesced and group.on_quiesce_failure == "abort":
            ctx.record.errors.append(
                "a pre hook did not succeed and on_quiesce_failure is abort: no snapshot taken"
            )
            return False
        snapshot(ctx, "application" if quiesced else "crash")
    collect_late_snapshots(ctx)
    return _all_snapshotted(ctx)


def _all_snapshotted(ctx: RunContext) -> bool:
    missing = [
        f"{m.name} on {mc.machine_id}: {mc.snapshot_error}"
        for m, mc in ctx.record.machines()
        if mc.snapshot_error
    ]
    if missing:
        ctx.record.errors.append(
            "no recovery point: not every machine was snapshotted (" + "; ".join(missing) + ")"
        )
    return not missing


def _record_point(ctx: RunContext) -> None:
    rec = ctx.record
    judge(rec)
    if any(not mc.snapshots for _, mc in rec.machines()):
        rec.errors.append("no recovery point: some machine has no snapshot")
        return
    for member, machine in inconsistent_copies(rec):
        span = ms_between(
            min(s.started_at for s in machine.snapshots), max(s.fixed_at for s in machine.snapshots)
        )
        methods = ", ".join(sorted({s.method for s in machine.snapshots}))
        rec.warnings.append(
            f"member {member.name!r} on {machine.machine_id}: its volumes were copied file by "
            f"file ({methods}) over {span or 0:g} ms while the application was not held, so the "
            "copy is not one point in time: recorded as `none` (an inconsistent copy), not "
            "`crash`. Hold the application with hooks (application consistency) for a consistent"
            " copy"
        )
    snapshots = [s for _, mc in rec.machines() for s in mc.snapshots]
    sizes = [s.size_bytes for s in snapshots]
    point = RecoveryPoint(
        id=recovery_point_id(rec.run_id),
        policy=rec.policy,
        group=rec.group,
        run_id=rec.run_id,
        created_at=max(s.fixed_at for s in snapshots),
        consistency=rec.consistency,
        freeze_window_ms=rec.freeze_window_ms,
        skew_ms=rec.skew_ms,
        restore_time=rec.restore_time,
        size_bytes=sum(s for s in sizes if s is not None) if None not in sizes else None,
        members=[
            PointMember(
                name=m.name,
                provider=m.provider,
                consistency=m.consistency,
                snapshots=m.snapshots,
                facts=member_facts(m),
            )
            for m in rec.members
        ],
    )
    # The point and the record naming it are written together (see StateStore.record_point).
    rec.recovery_point = point.id
    ctx.enter(Phase.RECORDED)
    ctx.save_with_point(point)
