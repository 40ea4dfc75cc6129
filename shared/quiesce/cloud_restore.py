"""Restores a whole recovery point in its clouds, as new resources: a disk or volume from each
machine's snapshot, and each managed member (a database, a file share) from its snapshot or
to the group's restore time `T` (point-in-time recovery).

Every step is planned first (`Snapshotter.plan_cloud_restore`, no side effects), so a point a
provider cannot restore is refused before anything is created; `--execute` then makes the
calls in order (`Snapshotter.cloud_restore`). A call that fails stops the restore and reports
what was created before it: the new resources carry the provider's tags, so they can be found
and deleted.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from quiesce.errors import NotFoundError, QuiesceError
from quiesce.policy.model import Policy
from quiesce.ports import Backends, CloudRestore, RestoreStep
from quiesce.restore import check_complete


class PlannedStep(BaseModel):
    """One cloud call of the restore, and what it created once executed."""

    model_config = ConfigDict(extra="forbid")

    member: str
    snapshot: str
    point: str
    action: str
    parameters: dict[str, str]
    command: str = ""
    created: list[str] = []


class CloudRestoreResult(BaseModel):
    """What `quiesce restore --in-cloud --json` prints."""

    model_config = ConfigDict(extra="forbid")

    recovery_point: str
    group: str
    consistency: str
    restore_time: datetime | None
    executed: bool
    steps: list[PlannedStep]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def resource_name(prefix: str, member: str, volume: str, count: int) -> str:
    """A new resource's name: lower-case letters, digits and dashes, starting with a letter
    (what every cloud accepts); providers shorten it to their service's limit."""
    parts = [prefix, member] + ([volume] if count > 1 else [])
    name = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return name if name[:1].isalpha() else f"q-{name}"


def restore_in_cloud(
    policy: Policy,
    backends: Backends,
    point_id: str,
    *,
    execute: bool = False,
    member: str | None = None,
    zone: str | None = None,
    prefix: str | None = None,
) -> CloudRestoreResult:
    """Plans (and with `execute`, starts) the restore of every member of a recovery point (or
    one member) in its cloud, each to the point: snapshots as new disks or resources, `pitr`
    members to the point's restore time."""
    point = backends.state.get_point(point_id)
    if point is None or point.policy != policy.name:
        raise NotFoundError(f"recovery point {point_id!r} is not in policy {policy.name!r}")
    members = [m for m in point.members if member in (None, m.name)]
    if not members:
        names = ", ".join(m.name for m in point.members)
        raise NotFoundError(f"member {member!r} is not in {point_id}; its members: {names}")
    check_complete(point, members, backends)
    label = prefix or f"restore-{point.run_id.split('-', 1)[0].lower()}"

    planned: list[tuple[CloudRestore, RestoreStep]] = []
    problems: list[str] = []
    for m in members:
        for ref in m.snapshots:
            request = CloudRestore(
                snapshot=ref,
                point=point.id,
                member=m.name,
                name=resource_name(label, m.name, ref.volume, len(m.snapshots)),
                restore_time=ref.restore_time,
                zone=zone,
            )
            snapshots = backends.providers[ref.provider].snapshots
            try:
                planned.append((request, snapshots.plan_cloud_restore(request)))
            except QuiesceError as exc:
                problems.append(f"{m.name}: {exc}")
    if problems:  # nothing is created when any step cannot be planned
        raise QuiesceError(
            f"recovery point {point.id} cannot be restored in its cloud: " + "; ".join(problems)
        )

    steps = [_step(request, step) for request, step in planned]
    error = None
    if execute:
        for i, (request, _) in enumerate(planned):
            snapshots = backends.providers[request.snapshot.provider].snapshots
            try:
                steps[i] = _step(request, snapshots.cloud_restore(request))
            except QuiesceError as exc:
                error = (
                    f"{request.member}: restoring {request.snapshot.id} failed: {exc}; the steps "
                    "before it were made (their resources are listed), the ones after were not"
                )
                break
    return CloudRestoreResult(
        recovery_point=point.id,
        group=point.group,
        consistency=point.consistency.value,
        restore_time=point.restore_time,
        executed=execute,
        steps=steps,
        error=error,
    )


def _step(request: CloudRestore, step: RestoreStep) -> PlannedStep:
    return PlannedStep(
        member=request.member,
        snapshot=request.snapshot.id,
        point=request.snapshot.point,
        action=step.action,
        parameters=dict(step.parameters),
        command=step.command,
        created=list(step.created),
    )
