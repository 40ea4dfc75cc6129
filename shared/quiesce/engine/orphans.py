"""Finds and deletes orphans: snapshots that no listed recovery point holds, left behind by
runs that are over (a copy that went on after its run discarded it, a take killed before its
first manifest was complete, snapshots of a point retention unlisted but could not delete).

A snapshot is an orphan only when the catalog says so: its run's record exists, belongs to the
policy and group, is finished, and its recovery point is not listed. A snapshot of a running
run, or of a run the catalog does not know, is never touched.

A copy in another region (a replica, tagged `quiesce:copy-of`) is also an orphan when its point
is listed but does not record it, once its run is over: only a point's own run starts its
copies, and it records every replica it started, so a replica its finished run did not record
was started by a run that died before it could (or whose save failed). Providers whose copies
live elsewhere than their snapshots list those places in `find` too (on AWS, the copy regions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from quiesce.engine.phases import recovery_point_id
from quiesce.policy.model import Policy
from quiesce.ports import Backends, StateStore
from quiesce.record import RecoveryPoint, RunStatus, SnapshotRef
from quiesce.tags import COPY_OF_TAG, POINT_TAG, RUN_TAG


@runtime_checkable
class KeepsPartials(Protocol):
    """A snapshotter that can list snapshots too incomplete to carry their tags (local)."""

    def partial(self) -> list[SnapshotRef]: ...


def run_of_point(point_id: str) -> str | None:
    prefix = recovery_point_id("")
    return point_id[len(prefix) :] if point_id.startswith(prefix) else None


def _run_over(run_id: str, policy: str, groups: set[str], state: StateStore) -> bool:
    """The run's record exists, is the policy's and one of the groups', and is finished."""
    record = state.get_run(run_id)
    return (
        record is not None
        and record.status is not RunStatus.RUNNING
        and record.policy == policy
        and record.group in groups
    )


def _replica_ids(point: RecoveryPoint) -> set[str]:
    return {s.id for c in point.copies for m in c.members for s in m.snapshots}


def _orphans(
    candidates: list[SnapshotRef], policy: str, groups: set[str], state: StateStore
) -> list[SnapshotRef]:
    """The orphans among `candidates`, asking the catalog once per recovery point (and once
    per run, only when a point is missing or does not record a replica)."""
    points: dict[str, RecoveryPoint | None] = {}
    over: dict[str, bool] = {}
    out = []
    for ref in candidates:
        point_id = ref.tags.get(POINT_TAG)
        if not point_id:
            continue
        run_id = ref.tags.get(RUN_TAG) or run_of_point(point_id)
        if not run_id or run_id != run_of_point(point_id):
            continue
        if point_id not in points:
            points[point_id] = state.get_point(point_id)
        point = points[point_id]
        if point is not None and (COPY_OF_TAG not in ref.tags or ref.id in _replica_ids(point)):
            continue  # the point holds it
        if run_id not in over:
            over[run_id] = _run_over(run_id, policy, groups, state)
        if over[run_id]:
            out.append(ref)
    return out


@dataclass
class Swept:
    """What a sweep did: the orphans it deleted, and what it could not look at or delete (each
    a sentence naming the provider or the snapshot)."""

    deleted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def sweep_orphans(
    policy: Policy, backends: Backends, group: str | None = None
) -> tuple[list[str], list[str]]:
    """Deletes the orphans of the policy's groups (or one group).

    Returns (deleted snapshot ids, problems)."""
    groups = {group} if group is not None else set(policy.groups)
    providers = {m.provider for g in groups if g in policy.groups for m in policy.groups[g].members}
    deleted: list[str] = []
    problems: list[str] = []
    for name in sorted(providers):
        provider = backends.providers.get(name)
        if provider is None:
            continue
        snapshots = provider.snapshots
        try:
            candidates = [ref for g in sorted(groups) for ref in snapshots.find(policy.name, g)]
            if isinstance(snapshots, KeepsPartials):
                candidates += snapshots.partial()
            orphans = _orphans(candidates, policy.name, groups, backends.state)
        except Exception as exc:
            problems.append(f"could not look for orphaned {name} snapshots: {exc}")
            continue
        for ref in orphans:
            try:
                snapshots.delete(ref)
                deleted.append(ref.id)
            except Exception as exc:
                problems.append(f"could not delete orphaned snapshot {ref.id}: {exc}")
    return deleted, problems
