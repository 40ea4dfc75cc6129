"""The end of every run, normal or recovered: judge, record, announce, unlock, publish."""

from __future__ import annotations

from quiesce.engine.context import RunContext
from quiesce.engine.outcome import judge, status_of
from quiesce.engine.phases import discard_snapshots, lock_key, recovery_point_id
from quiesce.engine.result import run_result
from quiesce.events import EventType
from quiesce.ports import EventPublisher, StateStore
from quiesce.record import MachineRecord, MemberRecord, Phase, RunRecord, RunStatus


def flush_outbox(state: StateStore, bus: EventPublisher, batch: int = 500) -> tuple[int, int]:
    """Publishes every pending event, oldest first. Returns (published, left in the outbox).

    An event the bus refuses stays in the outbox for the next run or `quiesce recover`.

    A read that returns fewer than `batch` events has seen the whole outbox: once those are
    published the flush ends, without a read that would only find it empty. (Events another
    process queues meanwhile are its own flush's, or the next run's; so is whatever a read
    left out because an event it counted once sat in two stored batches after a crash.)
    """
    published = 0
    seen: set[str] = set()
    while True:
        read = state.outbox_pending(batch)
        pending = [e for e in read if e.id not in seen]
        if not pending:
            return published, len(seen)
        try:
            refused = set(bus.publish(pending))
        except Exception:
            refused = {e.id for e in pending}
        accepted = [e.id for e in pending if e.id not in refused]
        state.outbox_remove(accepted)
        published += len(accepted)
        seen |= refused
        if len(read) < batch:
            return published, len(seen)


def thaw_owed(record: RunRecord) -> list[tuple[MemberRecord, MachineRecord]]:
    """Machines whose pre hook started and whose thaw is not proven (no post result yet)."""
    return [(m, mc) for m, mc in record.machines() if mc.pre_started and mc.post is None]


def settle_point(ctx: RunContext) -> bool:
    """Makes the record name the run's recovery point exactly when the catalog lists it.

    The catalog is the truth: a point listed by a run that stopped before its record said so
    is kept (its snapshots were complete when it was listed), and a point the record names but
    the catalog does not list (its write was rolled back) is not. Returns False when the
    catalog cannot be read: then nothing may be deleted."""
    rec = ctx.record
    try:
        listed = ctx.backends.state.get_point(recovery_point_id(rec.run_id))
    except Exception as exc:
        rec.warnings.append(
            f"could not read the catalog to settle the recovery point: {exc}; "
            "the run's snapshots are kept"
        )
        return False
    rec.recovery_point = listed.id if listed is not None else None
    return True


def leave_open(ctx: RunContext) -> None:
    """An interrupted run that still owes a thaw stays `running` in the catalog (its lock
    held), with what is known of its post hooks, so `quiesce recover` or the next run finds it,
    thaws what is owed and closes it."""
    rec = ctx.record
    owed = thaw_owed(rec)
    rec.errors.append(
        f"interrupted during {rec.phase.value} with {len(owed)} machine(s) still owed a thaw "
        f"({', '.join(f'{m.name} on {mc.machine_id}' for m, mc in owed)}); the run stays open "
        "so `quiesce recover` (or the next run) thaws them and closes it"
    )
    ctx.save()
    flush_outbox(ctx.backends.state, ctx.backends.bus)


def finish(ctx: RunContext, *, reached_snapshots: bool) -> None:
    rec = ctx.record
    if ctx.interrupted and thaw_owed(rec):
        leave_open(ctx)
        return
    may_delete = settle_point(ctx)
    judge(rec)
    if rec.recovery_point is None and reached_snapshots and may_delete:
        discard_snapshots(ctx)
        judge(rec)
    rec.status = status_of(rec)
    rec.finished_at = ctx.now()
    ctx.emit(
        EventType.RUN_FAILED if rec.status is RunStatus.FAILED else EventType.RUN_COMPLETED,
        run_result(rec),
        subject=rec.run_id,
    )
    ctx.save(Phase.FINISHED)
    ctx.backends.state.release_lock(lock_key(rec.policy, rec.group), rec.run_id)
    _, left = flush_outbox(ctx.backends.state, ctx.backends.bus)
    if left:
        rec.warnings.append(f"{left} event(s) could not be published; they stay in the outbox")
        ctx.save()
