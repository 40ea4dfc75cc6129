"""A recovery point brought back as running machines in their cloud: every machine of the
group launched as a copy in an isolated network (the group's, or a copy region's, `restore:`
site), or its volumes attached to an inspection machine; then each member's verify hook run on
its copy through the same channel as backups; then, when asked, everything the restore made
deleted again, found by its label.

Every resource a restore makes carries the tag `quiesce:restore=<label>`. A restore that stops
part-way (an error, a signal, a dead process) leaves only tagged resources, which
`cleanup_restore(label)` (`quiesce restore-cleanup`) finds and deletes.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from quiesce.engine import copies as point_copies
from quiesce.errors import NotFoundError, QuiesceError
from quiesce.policy.managed import ManagedMember
from quiesce.policy.model import MemberBase, Policy
from quiesce.policy.recovery import RestoreSite
from quiesce.ports import Backends, HookCall, MachineRestore, RestoredMachine, Restorer
from quiesce.record import HookResult, HookStatus, RecoveryPoint, SnapshotRef, SnapshotState, utcnow
from quiesce.restore import check_complete

#: How long a launched copy may take to run and answer on its hook channel.
READY_TIMEOUT_SECONDS = 900.0


class LaunchedMachine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member: str
    source: str = Field(description="The original machine.")
    machine: str = Field(description="The copy (or the inspection machine).")
    created: list[str]
    mounts: dict[str, str] = {}
    ready: bool = False
    verify: HookResult | None = None


class GroupRestoreResult(BaseModel):
    """What `quiesce restore --in-cloud --launch --json` prints (a drill records it too)."""

    model_config = ConfigDict(extra="forbid")

    label: str
    recovery_point: str
    group: str
    region: str | None
    started_at: datetime
    finished_at: datetime | None = None
    machines: list[LaunchedMachine] = []
    skipped: list[str] = Field(
        default=[], description="Members a launch does not bring back (managed services)."
    )
    verified: bool | None = None
    rto_seconds: float | None = None
    phases: dict[str, float] = {}
    errors: list[str] = []
    deleted: list[str] = []
    left: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.errors and self.verified is not False and not self.left

    @property
    def created(self) -> list[str]:
        return [c for m in self.machines for c in m.created]


def new_label(point: RecoveryPoint, kind: str = "restore") -> str:
    """A restore's label: what its resources are tagged with and cleanup finds them by."""
    return f"{kind}-{point.run_id.split('-', 1)[0].lower()}-{secrets.token_hex(3)}"


def snapshots_in(
    point: RecoveryPoint, region: str | None, backends: Backends, now: Callable[[], datetime]
) -> tuple[RecoveryPoint, dict[str, list[SnapshotRef]]]:
    """The point's snapshots per member in `region` (its copy's replicas there; None: the
    point's own). Refuses a region without a complete copy, naming its state."""
    if region is None:
        return point, {m.name: list(m.snapshots) for m in point.members}
    point = point_copies.refresh(point, backends, now)
    copy = point_copies.copy_in(point, region)
    if copy is None:
        regions = ", ".join(c.region for c in point.copies) or "none"
        raise QuiesceError(
            f"recovery point {point.id} has no copy in {region} (its copies: {regions})"
        )
    if copy.state is not SnapshotState.COMPLETED:
        detail = f": {copy.error}" if copy.error else ""
        raise QuiesceError(
            f"the copy of recovery point {point.id} in {region} is {copy.state.value}{detail}; "
            "restore it there once it is completed (`quiesce points` shows copies), or restore "
            "in the group's own region"
        )
    return point, {m.name: list(m.snapshots) for m in copy.members}


def site_for(policy: Policy, group_name: str, region: str | None) -> RestoreSite:
    group = policy.group(group_name)
    if region is None:
        if group.restore is None:
            raise QuiesceError(
                f"group {group_name!r} has no `restore:` site: name the isolated network its "
                "copies are launched into (restore: {network: ..., security_groups: [...]})"
            )
        return group.restore
    site = next((c.restore for c in group.copies if c.region == region), None)
    if site is None:
        raise QuiesceError(
            f"group {group_name!r} has no copy in {region} with a `restore:` site "
            f"(copies: [{{region: {region}, restore: {{network: ...}}}}])"
        )
    return site


def restore_group(
    policy: Policy,
    backends: Backends,
    point_id: str,
    *,
    region: str | None = None,
    label: str | None = None,
    cleanup: bool = False,
    verify: bool = True,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
    now: Callable[[], datetime] = utcnow,
    clock: Callable[[], float] = time.monotonic,
) -> GroupRestoreResult:
    """Launches every machine of the point as a copy at the site (in `region`: from its copy
    there), waits until each answers, runs the verify hooks and, with `cleanup`, deletes what
    it made (whatever happened before). The recovery time (`rto_seconds`) runs from the start
    to the last verify hook's success (without verify hooks: to the last copy ready)."""
    point = backends.state.get_point(point_id)
    if point is None or point.policy != policy.name:
        raise NotFoundError(f"recovery point {point_id!r} is not in policy {policy.name!r}")
    site = site_for(policy, point.group, region)
    point, refs = snapshots_in(point, region, backends, now)
    check_complete(point, point.members if region is None else [], backends)
    group = policy.group(point.group)
    specs = {m.name: m for m in group.members}
    machine_providers = {
        r.provider
        for name, rs in refs.items()
        if not isinstance(specs.get(name), ManagedMember)
        for r in rs
    }
    missing = sorted(
        p
        for p in machine_providers
        if backends.providers.get(p) is None or backends.providers[p].restorer is None
    )
    if missing:
        raise QuiesceError(
            f"the {', '.join(missing)} provider(s) cannot launch copies of machines: no restorer"
        )
    result = GroupRestoreResult(
        label=label or new_label(point),
        recovery_point=point.id,
        group=point.group,
        region=region,
        started_at=now(),
    )
    start = clock()
    marks: dict[str, float] = {}
    restorers: dict[str, Restorer] = {}
    try:
        launched = _launch(point, refs, specs, site, region, result, backends, restorers)
        marks["restore"] = clock()
        _wait_ready(launched, result, backends, ready_timeout)
        marks["ready"] = clock()
        if verify:
            _verify(point, launched, result, specs, backends, policy, site)
        marks["verify"] = clock()
        if not result.errors and result.verified is not False:
            end = marks["verify"] if result.verified else marks["ready"]
            result.rto_seconds = round(end - start, 3)
    except QuiesceError as exc:
        result.errors.append(str(exc))
    finally:
        last = start
        for phase in ("restore", "ready", "verify"):
            if phase in marks:
                result.phases[phase] = round(marks[phase] - last, 3)
                last = marks[phase]
        if cleanup:
            began = clock()
            _cleanup(result, restorers, region)
            result.phases["cleanup"] = round(clock() - began, 3)
        result.finished_at = now()
    return result


def _launch(
    point: RecoveryPoint,
    refs: dict[str, list[SnapshotRef]],
    specs: dict[str, MemberBase],
    site: RestoreSite,
    region: str | None,
    result: GroupRestoreResult,
    backends: Backends,
    restorers: dict[str, Restorer],
) -> list[tuple[RestoredMachine, Restorer]]:
    launched: list[tuple[RestoredMachine, Restorer]] = []
    for name, member_refs in refs.items():
        spec = specs.get(name)
        if isinstance(spec, ManagedMember) or spec is None:
            result.skipped.append(name)
            continue
        by_machine: dict[str, list[SnapshotRef]] = defaultdict(list)
        for ref in member_refs:
            by_machine[ref.machine_id].append(ref)
        for machine_id, machine_refs in by_machine.items():
            provider = backends.providers[machine_refs[0].provider]
            assert provider.restorer is not None
            restorers[machine_refs[0].provider] = provider.restorer
            request = MachineRestore(
                point=point.id,
                member=name,
                machine_id=machine_id,
                snapshots=tuple(machine_refs),
                label=result.label,
                site=site,
                spec=spec,
                region=region,
            )
            restored = provider.restorer.launch(request)
            result.machines.append(
                LaunchedMachine(
                    member=name,
                    source=machine_id,
                    machine=restored.machine.machine_id,
                    created=list(restored.created),
                    mounts=dict(restored.mounts),
                )
            )
            launched.append((restored, provider.restorer))
    return launched


def _wait_ready(
    launched: list[tuple[RestoredMachine, Restorer]],
    result: GroupRestoreResult,
    backends: Backends,
    timeout: float,
) -> None:
    for (restored, restorer), shown in zip(launched, result.machines, strict=True):
        restorer.wait_ready(restored, timeout)
        shown.ready = True


def _verify(
    point: RecoveryPoint,
    launched: list[tuple[RestoredMachine, Restorer]],
    result: GroupRestoreResult,
    specs: dict[str, MemberBase],
    backends: Backends,
    policy: Policy,
    site: RestoreSite,
) -> None:
    """Runs each member's verify hook on its copy. On a launched copy the hook runs as on the
    original (no argument: the copy is the machine); on an inspection machine it gets the
    place of the machine's first restored volume (the guest protocol carries one restore path;
    the others are in the result's `mounts`)."""
    verdicts = []
    for (restored, _), shown in zip(launched, result.machines, strict=True):
        spec = specs[restored.member]
        hook = spec.hooks.verify
        if hook is None:
            continue
        call = HookCall(
            run_id=result.label,
            policy=policy.name,
            group=point.group,
            member=restored.member,
            machine=restored.machine,
            phase="verify",
            hook=hook,
            extra_args=_restore_path(restored, site),
            spec=spec,
        )
        hooks = backends.providers[restored.machine.provider].hooks
        try:
            shown.verify = hooks.run(call)
        except QuiesceError as exc:
            shown.verify = HookResult(
                status=HookStatus.FAILED, code="ChannelError", message=str(exc)
            )
        verdicts.append(shown.verify.ok)
        if not shown.verify.ok:
            result.errors.append(
                f"verify hook of {restored.member} on {restored.machine.machine_id}: "
                f"{shown.verify.status.value} ({shown.verify.code}): {shown.verify.message}"
            )
    result.verified = all(verdicts) if verdicts else None


def _restore_path(restored: RestoredMachine, site: RestoreSite) -> tuple[str, ...]:
    if site.inspect_on is None or not restored.mounts:
        return ()
    return (next(iter(restored.mounts.values())),)


def _cleanup(
    result: GroupRestoreResult, restorers: dict[str, Restorer], region: str | None
) -> None:
    for name, restorer in restorers.items():
        try:
            done = restorer.cleanup(result.label, [region])
        except QuiesceError as exc:
            result.left.append(f"{name}: the cleanup failed: {exc}")
            continue
        result.deleted += done.deleted
        result.left += done.left


def cleanup_restore(
    backends: Backends, label: str, regions: list[str | None]
) -> tuple[list[str], list[str]]:
    """Deletes everything a restore labelled `label` made, in every provider that can
    restore (`quiesce restore-cleanup`). Returns (deleted, left)."""
    deleted: list[str] = []
    left: list[str] = []
    for name, provider in backends.providers.items():
        if provider.restorer is None:
            continue
        try:
            done = provider.restorer.cleanup(label, regions or [None])
        except QuiesceError as exc:
            left.append(f"{name}: the cleanup failed: {exc}")
            continue
        deleted += done.deleted
        left += done.left
    return deleted, left
