"""The end of every run, normal or recovered: judge, record, announce, unlock, publish."""

from __future__ import annotations

from quiesce.engine.context import RunContext
from quiesce.engine.outcome import judge, status_of
from quiesce.engine.phases import discard_snapshots, lock_key
from quiesce.engine.result import run_result
from quiesce.events import EventType
from quiesce.ports import EventPublisher, StateStore
from quiesce.record import Phase, RunStatus


def flush_outbox(state: StateStore, bus: EventPublisher, batch: int = 500) -> tuple[int, int]:
    """Publishes every pending event, oldest first. Returns (published, left in the outbox).

    An event the bus refuses stays in the outbox for the next run or `quiesce recover`.
    """
    published = 0
    seen: set[str] = set()
    while True:
        pending = [e for e in state.outbox_pending(batch) if e.id not in seen]
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


def finish(ctx: RunContext, *, reached_snapshots: bool) -> None:
    rec = ctx.record
    judge(rec)
    if rec.recovery_point is None and reached_snapshots:
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
