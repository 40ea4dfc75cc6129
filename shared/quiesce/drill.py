"""A drill: the group's latest recovery point restored into isolation on a schedule, verified,
measured and torn down, so the recovery time is known before a disaster asks for it.

`run_drill` picks the newest point (in a copy's region when the drill names one: its newest
completed copy there), restores it with `group_restore.restore_group` (launched copies at the
group's `restore:` site, verify hooks through the backup channel), deletes everything it made
whatever happened, records the verdict, the recovery time and the phase times on the point
(`RecoveryPoint.drills`, the last `KEEP_DRILLS`), and publishes `quiesce.drill.completed` or
`quiesce.drill.failed`. A drill freezes nothing and takes no group lock.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from quiesce.engine import copies as point_copies
from quiesce.engine.finish import flush_outbox
from quiesce.errors import DuplicateTriggerError, NotFoundError
from quiesce.events import DrillData, EventType, make_event
from quiesce.group_restore import GroupRestoreResult, restore_group, site_for
from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.record import Consistency, DrillRecord, RecoveryPoint, SnapshotState, utcnow

#: How many drills a point keeps (newest last).
KEEP_DRILLS = 10


def drill_candidate(
    points: list[RecoveryPoint],
    region: str | None,
    backends: Backends,
    now: Callable[[], datetime] = utcnow,
) -> RecoveryPoint:
    """The newest restorable point (in `region`: with a completed copy there)."""
    for point in sorted(points, key=lambda p: p.created_at, reverse=True):
        if point.consistency is Consistency.NONE:
            continue
        if any(s.state is not SnapshotState.COMPLETED for s in point.snapshots):
            continue
        if region is None:
            return point
        point = point_copies.refresh(point, backends, now)
        copy = point_copies.copy_in(point, region)
        if copy is not None and copy.state is SnapshotState.COMPLETED:
            return point
    where = f" with a completed copy in {region}" if region else ""
    raise NotFoundError(f"no restorable recovery point{where} to drill")


def run_drill(
    policy: Policy,
    group: str,
    backends: Backends,
    *,
    region: str | None = None,
    trigger_id: str | None = None,
    now: Callable[[], datetime] = utcnow,
) -> DrillRecord:
    """Drills the group's newest restorable point; returns the drill as recorded."""
    site_for(policy, group, region)  # a drill with nowhere to launch is refused first
    drill_id = f"drill-{now():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    if trigger_id is not None:
        earlier = backends.state.claim_trigger(trigger_id, drill_id)
        if earlier is not None:
            raise DuplicateTriggerError(trigger_id, earlier, None)
    point = drill_candidate(backends.state.list_points(policy.name, group), region, backends, now)
    result = restore_group(
        policy, backends, point.id, region=region, label=drill_id, cleanup=True, now=now
    )
    drill = _record(result, drill_id, region)
    fresh = backends.state.get_point(point.id) or point
    drills = [*fresh.drills, drill][-KEEP_DRILLS:]
    backends.state.save_point(fresh.model_copy(update={"drills": drills}))
    _publish(policy, point, drill, backends)
    return drill


def _record(result: GroupRestoreResult, drill_id: str, region: str | None) -> DrillRecord:
    errors = list(result.errors)
    passed = not result.errors and result.verified is not False and not result.left
    return DrillRecord(
        drill_id=drill_id,
        region=region,
        started_at=result.started_at,
        finished_at=result.finished_at,
        verdict="passed" if passed else "failed",
        rto_seconds=result.rto_seconds,
        phases=result.phases,
        created=result.created,
        left=result.left,
        errors=errors,
    )


def _publish(policy: Policy, point: RecoveryPoint, drill: DrillRecord, backends: Backends) -> None:
    data = DrillData(
        drill_id=drill.drill_id,
        policy=policy.name,
        group=point.group,
        recovery_point=point.id,
        region=drill.region,
        verdict=drill.verdict,
        rto_seconds=drill.rto_seconds,
        phases=drill.phases,
        created=drill.created,
        left=drill.left,
        errors=drill.errors,
    )
    type_ = EventType.DRILL_COMPLETED if drill.verdict == "passed" else EventType.DRILL_FAILED
    event = make_event(
        type_, data, policy=policy.name, group=point.group, run_id=None, subject=drill.drill_id
    )
    try:
        backends.state.outbox_add([event])
        flush_outbox(backends.state, backends.bus)
    except Exception:  # noqa: S110 - the event stays in the outbox; the next run publishes it
        pass
