"""Which recovery points retention deletes (a pure choice) and the deletion itself."""

from __future__ import annotations

from datetime import datetime, timedelta

from quiesce.engine.context import RunContext
from quiesce.events import EventType, PointDeletedData
from quiesce.policy.model import Retention
from quiesce.record import Phase, RecoveryPoint


def expired(
    points: list[RecoveryPoint], retention: Retention, now: datetime, keep: str | None = None
) -> list[tuple[RecoveryPoint, str]]:
    """Points to delete, with the rule that chose each. `keep` (the newest point) is never
    chosen, nor is the newest point of the list."""
    ordered = sorted(points, key=lambda p: p.created_at, reverse=True)
    out: list[tuple[RecoveryPoint, str]] = []
    for rank, point in enumerate(ordered):
        if rank == 0 or point.id == keep:
            continue
        if retention.keep_last is not None and rank >= retention.keep_last:
            out.append((point, f"keep_last={retention.keep_last}"))
        elif retention.max_age_days is not None and point.created_at < now - timedelta(
            days=retention.max_age_days
        ):
            out.append((point, f"max_age_days={retention.max_age_days:g}"))
    return out


def apply_retention(ctx: RunContext) -> None:
    rec = ctx.record
    retention = ctx.group.retention
    if retention is None or rec.recovery_point is None:
        return
    state = ctx.backends.state
    points = state.list_points(rec.policy, rec.group)
    for point, reason in expired(points, retention, ctx.now(), keep=rec.recovery_point):
        providers = {s.provider for s in point.snapshots}
        missing = sorted(p for p in providers if p not in ctx.backends.providers)
        if missing:
            rec.warnings.append(
                f"retention kept recovery point {point.id}: no {', '.join(missing)} provider "
                "configured to delete its snapshots"
            )
            continue
        # Unlisted first: from here on nobody restores it, whatever happens to its snapshots.
        state.delete_point(point.id)
        ctx.emit(
            EventType.POINT_DELETED,
            PointDeletedData(
                recovery_point=point.id,
                policy=point.policy,
                group=point.group,
                reason=reason,
                snapshots=[s.id for s in point.snapshots],
            ),
            subject=point.id,
        )
        replicas = [s for c in point.copies for m in c.members for s in m.snapshots]
        for snap in [*point.snapshots, *replicas]:
            try:
                ctx.provider(snap.provider).snapshots.delete(snap)
            except Exception as exc:
                rec.warnings.append(
                    f"recovery point {point.id} is unlisted but its snapshot {snap.id} could not "
                    f"be deleted ({exc}); the next run or `quiesce recover` deletes it"
                )
    ctx.save(Phase.RETAINED)
