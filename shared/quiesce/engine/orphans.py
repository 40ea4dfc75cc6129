"""Finds and deletes orphans: snapshots that no listed recovery point holds, left behind by
runs that are over (a copy that went on after its run discarded it, a take killed before its
first manifest was complete, snapshots of a point retention unlisted but could not delete).

A snapshot is an orphan only when the catalog says so: its run's record exists, belongs to the
policy and group, is finished, and its recovery point is not listed. A snapshot of a running
run, or of a run the catalog does not know, is never touched.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from quiesce.engine.phases import recovery_point_id
from quiesce.policy.model import Policy
from quiesce.ports import Backends, StateStore
from quiesce.record import RunStatus, SnapshotRef
from quiesce.tags import POINT_TAG, RUN_TAG


@runtime_checkable
class KeepsPartials(Protocol):
    """A snapshotter that can list snapshots too incomplete to carry their tags (local)."""

    def partial(self) -> list[SnapshotRef]: ...


def run_of_point(point_id: str) -> str | None:
    prefix = recovery_point_id("")
    return point_id[len(prefix) :] if point_id.startswith(prefix) else None


def is_orphan(ref: SnapshotRef, policy: str, groups: set[str], state: StateStore) -> bool:
    point = ref.tags.get(POINT_TAG)
    if not point:
        return False
    run_id = ref.tags.get(RUN_TAG) or run_of_point(point)
    if not run_id or run_id != run_of_point(point):
        return False
    if state.get_point(point) is not None:
        return False
    record = state.get_run(run_id)
    return (
        record is not None
        and record.status is not RunStatus.RUNNING
        and record.policy == policy
        and record.group in groups
    )


def _orphans(
    candidates: list[SnapshotRef], policy: str, groups: set[str], state: StateStore
) -> list[SnapshotRef]:
    """The orphans among `candidates`, asking the catalog once per recovery point."""
    verdicts: dict[str, bool] = {}
    out = []
    for ref in candidates:
        key = ref.tags.get(POINT_TAG, "")
        if key not in verdicts:
            verdicts[key] = is_orphan(ref, policy, groups, state)
        if verdicts[key]:
            out.append(ref)
    return out


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
