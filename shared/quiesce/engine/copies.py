"""Copies of recovery points in other regions (a group's `copies:`).

When a run has recorded its point, every snapshot of it is copied to each region the group
names (`Snapshotter.copy_to_region`), and the point records one `PointCopy` per region, pending
until every replica is durable. A cross-region copy takes minutes to hours, so runs do not wait
for it: each run refreshes the pending copies of its group (one look each, no waiting), and a
restore or drill in a region refreshes the copy it needs and refuses one that is not complete.

Each region keeps its copies by its own rule (`keep_last`: the copies of the newest N points
there); a point deleted by the group's retention takes its copies with it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from quiesce.policy.model import Group
from quiesce.policy.recovery import Copy
from quiesce.ports import Backends
from quiesce.record import (
    PointCopy,
    PointMember,
    RecoveryPoint,
    SnapshotRef,
    SnapshotState,
    utcnow,
)
from quiesce.tags import COPY_OF_TAG, REGION_TAG


def start_copy(
    point: RecoveryPoint, copy: Copy, backends: Backends, now: Callable[[], datetime] = utcnow
) -> PointCopy:
    """Starts the copy of every snapshot of the point to `copy.region` (returns at once)."""
    started = now()
    members: list[PointMember] = []
    try:
        for member in point.members:
            replicas: list[SnapshotRef] = []
            try:
                for ref in member.snapshots:
                    snapshots = backends.providers[ref.provider].snapshots
                    tags = {**ref.tags, COPY_OF_TAG: ref.id, REGION_TAG: copy.region}
                    replicas.append(snapshots.copy_to_region(ref, copy.region, copy.key, tags))
            except Exception:
                # The member's replicas that started are recorded too: retention and keep_last
                # delete what the point records.
                if replicas:
                    members.append(member.model_copy(update={"snapshots": replicas}))
                raise
            members.append(member.model_copy(update={"snapshots": replicas}))
    except Exception as exc:
        done = [s for m in members for s in m.snapshots]
        return PointCopy(
            region=copy.region,
            state=SnapshotState.FAILED,
            started_at=started,
            members=members,
            error=f"the copy to {copy.region} could not start: {exc}"
            + (f" ({len(done)} replica(s) started; retention deletes them)" if done else ""),
        )
    return PointCopy(
        region=copy.region, state=SnapshotState.PENDING, started_at=started, members=members
    )


def start_copies(
    point: RecoveryPoint, group: Group, backends: Backends, now: Callable[[], datetime] = utcnow
) -> RecoveryPoint:
    """Starts the point's copy to every region of `group.copies` it has none in yet, and
    saves the point."""
    have = {c.region for c in point.copies}
    started = [start_copy(point, c, backends, now) for c in group.copies if c.region not in have]
    if not started:
        return point
    updated = point.model_copy(update={"copies": [*point.copies, *started]})
    backends.state.save_point(updated)
    return updated


def refresh(
    point: RecoveryPoint, backends: Backends, now: Callable[[], datetime] = utcnow
) -> RecoveryPoint:
    """Looks once at every pending copy of the point (no waiting) and saves what changed."""
    changed = False
    copies: list[PointCopy] = []
    for copy in point.copies:
        if copy.state is not SnapshotState.PENDING:
            copies.append(copy)
            continue
        members = []
        for member in copy.members:
            refs = list(member.snapshots)
            if refs:
                provider = backends.providers.get(refs[0].provider)
                if provider is not None:
                    try:
                        refs = provider.snapshots.wait_durable(refs, 0)
                    except Exception:  # a look that fails: the copy stays pending
                        refs = list(member.snapshots)
            members.append(member.model_copy(update={"snapshots": refs}))
        states = {s.state for m in members for s in m.snapshots}
        state = (
            SnapshotState.FAILED
            if SnapshotState.FAILED in states
            else SnapshotState.COMPLETED
            if states <= {SnapshotState.COMPLETED}
            else SnapshotState.PENDING
        )
        update: dict[str, object] = {"members": members, "state": state}
        if state is SnapshotState.COMPLETED:
            update["completed_at"] = now()
        if state is SnapshotState.FAILED:
            update["error"] = "a replica failed: " + ", ".join(
                s.id for m in members for s in m.snapshots if s.state is SnapshotState.FAILED
            )
        changed = changed or state is not SnapshotState.PENDING or members != copy.members
        copies.append(copy.model_copy(update=update))
    if not changed:
        return point
    updated = point.model_copy(update={"copies": copies})
    backends.state.save_point(updated)
    return updated


def copy_in(point: RecoveryPoint, region: str) -> PointCopy | None:
    return next((c for c in point.copies if c.region == region), None)


def expired_copies(points: list[RecoveryPoint], copy: Copy) -> list[RecoveryPoint]:
    """The points whose copy in `copy.region` its `keep_last` no longer keeps (newest first
    kept; a point without a copy there does not count)."""
    if copy.keep_last is None:
        return []
    having = sorted(
        (p for p in points if copy_in(p, copy.region) is not None),
        key=lambda p: p.created_at,
        reverse=True,
    )
    return having[copy.keep_last :]


def delete_copy(
    point: RecoveryPoint, region: str, backends: Backends
) -> tuple[RecoveryPoint, list[str]]:
    """Deletes the point's replicas in `region` and forgets the copy; returns the point and
    the replicas that could not be deleted (with the reason)."""
    copy = copy_in(point, region)
    if copy is None:
        return point, []
    problems = []
    for member in copy.members:
        for ref in member.snapshots:
            provider = backends.providers.get(ref.provider)
            try:
                if provider is None:
                    raise RuntimeError(f"no {ref.provider} provider is configured")
                provider.snapshots.delete(ref)
            except Exception as exc:
                problems.append(f"{ref.id}: {exc}")
    if problems:
        return point, problems
    updated = point.model_copy(update={"copies": [c for c in point.copies if c.region != region]})
    backends.state.save_point(updated)
    return updated, []


def after_run(
    point_id: str, group: Group, backends: Backends, now: Callable[[], datetime] = utcnow
) -> list[str]:
    """What a run does about copies once its point is recorded: starts the point's copies,
    looks once at the group's pending ones, and applies each region's `keep_last`. Returns
    warnings (a copy never fails the run: the point is recorded already)."""
    if not group.copies:
        return []
    state = backends.state
    warnings: list[str] = []
    point = state.get_point(point_id)
    if point is None:
        return warnings
    point = start_copies(point, group, backends, now)
    warnings += [c.error for c in point.copies if c.error and c.state is SnapshotState.FAILED]
    points = [
        refresh(p, backends, now) if any(c.state is SnapshotState.PENDING for c in p.copies) else p
        for p in state.list_points(point.policy, point.group)
    ]
    for copy in group.copies:
        for old in expired_copies(points, copy):
            _, problems = delete_copy(old, copy.region, backends)
            warnings += [
                f"the copy of {old.id} in {copy.region} (keep_last={copy.keep_last}) could not "
                f"be deleted: {p}"
                for p in problems
            ]
    return warnings
