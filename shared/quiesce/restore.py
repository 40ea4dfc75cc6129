"""Restores a recovery point into folders and runs the members' verify hooks on the copies."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from quiesce.errors import NotFoundError, QuiesceError
from quiesce.policy.model import Hook, MemberBase, Policy
from quiesce.ports import Backends, HookCall, Machine
from quiesce.record import HookResult, PointMember, RecoveryPoint, SnapshotRef, SnapshotState

RESTORE_RUN_PREFIX = "restore"


class RestoredVolume(BaseModel):
    model_config = ConfigDict(extra="forbid")

    snapshot: str
    volume: str
    path: str


class RewrittenLink(BaseModel):
    """A symlink in a restored copy that pointed into another restored volume's source."""

    model_config = ConfigDict(extra="forbid")

    path: str
    was: str
    now: str


class RestoredMember(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str
    volumes: list[RestoredVolume]
    verify: HookResult | None = None


class RestoreResult(BaseModel):
    """What `quiesce restore --json` prints."""

    model_config = ConfigDict(extra="forbid")

    recovery_point: str
    group: str
    consistency: str
    target: str
    members: list[RestoredMember]
    verified: bool | None
    links: list[RewrittenLink] = []

    @property
    def ok(self) -> bool:
        return self.verified is not False


def _volume_dirs(point: RecoveryPoint, member: str) -> dict[str, str]:
    """Snapshot id → folder name under DIR/<member>: the volume's name, numbered on clashes."""
    snaps = next(m.snapshots for m in point.members if m.name == member)
    names = [Path(s.volume).name or "volume" for s in snaps]
    return {
        s.id: (name if names.count(name) == 1 else f"{i}-{name}")
        for i, (s, name) in enumerate(zip(snaps, names, strict=True))
    }


@runtime_checkable
class ChecksSnapshots(Protocol):
    """A snapshotter that can tell whether a snapshot can still be restored: locally, that its
    data is complete; in a cloud, that the snapshot (or the database's restore window at T) is
    still there. `check` raises a QuiesceError saying why not."""

    def check(self, snapshot: SnapshotRef) -> None: ...


def check_complete(point: RecoveryPoint, members: list[PointMember], backends: Backends) -> None:
    """Refuses, before anything is restored, a point whose snapshots are not all complete."""
    problems: list[str] = []
    for m in members:
        for snap in m.snapshots:
            provider = backends.providers.get(snap.provider)
            if provider is None:
                problems.append(f"no {snap.provider} provider is configured to restore {snap.id}")
            elif snap.state is not SnapshotState.COMPLETED:
                problems.append(f"snapshot {snap.id} is {snap.state.value}, not completed")
            elif isinstance(provider.snapshots, ChecksSnapshots):
                try:
                    provider.snapshots.check(snap)
                except QuiesceError as exc:
                    problems.append(str(exc))
    if problems:
        raise QuiesceError(
            f"recovery point {point.id} cannot be restored: its snapshots are not complete: "
            + "; ".join(problems)
        )


def _symlinks(folder: Path) -> list[Path]:
    """Every symlink under `folder`, without following any."""
    found: list[Path] = []
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    found.append(Path(entry.path))
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
    return found


def rewrite_links(restored: list[RestoredMember]) -> list[RewrittenLink]:
    """Points symlinks of the restored copies that lead into a volume of the same recovery
    point (a PostgreSQL `pg_wal` on another volume) at that volume's restored copy, so nothing
    started on the copy reaches the live data. Links elsewhere are left as they are."""
    sources = sorted(
        ((Path(v.volume), Path(v.path)) for m in restored for v in m.volumes),
        key=lambda pair: len(str(pair[0])),
        reverse=True,  # the deepest source first
    )
    rewritten: list[RewrittenLink] = []
    for link in (ln for m in restored for v in m.volumes for ln in _symlinks(Path(v.path))):
        target = os.readlink(link)
        if not os.path.isabs(target):
            continue
        for source, copy in sources:
            if target == str(source) or target.startswith(str(source) + os.sep):
                now = str(copy) + target[len(str(source)) :]
                link.unlink()
                link.symlink_to(now)
                rewritten.append(RewrittenLink(path=str(link), was=target, now=now))
                break
    return rewritten


def _verify(
    policy: Policy,
    backends: Backends,
    point: RecoveryPoint,
    restored: RestoredMember,
    spec: MemberBase,
    hook: Hook,
) -> HookResult:
    """Runs a member's verify hook on its restored copy, through the local hook runner."""
    runner = backends.providers["local"].hooks if "local" in backends.providers else None
    if runner is None:
        raise QuiesceError("verify hooks need the local provider to run on this machine")
    call = HookCall(
        run_id=f"{RESTORE_RUN_PREFIX}-{point.run_id}",
        policy=policy.name,
        group=point.group,
        member=restored.name,
        machine=Machine(provider="local", member=restored.name, machine_id="restore"),
        phase="verify",
        hook=hook,
        extra_args=(restored.path,),
        spec=spec,
    )
    return runner.run(call)


def restore_point(
    policy: Policy,
    backends: Backends,
    point_id: str,
    target: Path,
    *,
    member: str | None = None,
    verify: bool = True,
) -> RestoreResult:
    """Restores every member's volumes (or one member's) into `target/<member>/<volume>`; then,
    with all of them in place, runs each member's verify hook with `target/<member>` as its
    last argument (so a hook may also look at its siblings under `target`), and records the
    verdict on the recovery point."""
    point = backends.state.get_point(point_id)
    if point is None or point.policy != policy.name:
        raise NotFoundError(f"recovery point {point_id!r} is not in policy {policy.name!r}")
    members = [m for m in point.members if member in (None, m.name)]
    if not members:
        names = ", ".join(m.name for m in point.members)
        raise NotFoundError(f"member {member!r} is not in {point_id}; its members: {names}")
    target = Path(target).resolve()
    for m in members:
        folder = target / m.name
        if folder.exists() and any(folder.iterdir()):
            raise QuiesceError(f"{folder} exists and is not empty: restore needs an empty folder")
    check_complete(point, members, backends)
    group = policy.groups.get(point.group)
    specs = {m.name: m for m in group.members} if group is not None else {}

    restored: list[RestoredMember] = []
    for m in members:
        folder = target / m.name
        dirs = _volume_dirs(point, m.name)
        volumes = []
        for snap in m.snapshots:
            provider = backends.providers.get(snap.provider)
            if provider is None:
                raise QuiesceError(
                    f"no {snap.provider} provider is configured to restore {snap.id}"
                )
            path = provider.snapshots.restore(snap, folder / dirs[snap.id])
            volumes.append(RestoredVolume(snapshot=snap.id, volume=snap.volume, path=str(path)))
        restored.append(RestoredMember(name=m.name, path=str(folder), volumes=volumes))

    links = rewrite_links(restored)

    # Verify hooks run only once every member is restored, so a check that spans members (a
    # database whose WAL is another member's volume) sees the whole group's copy.
    for result in restored:
        spec = specs.get(result.name)
        verify_hook = spec.hooks.verify if spec is not None else None
        if verify and spec is not None and verify_hook is not None:
            result.verify = _verify(policy, backends, point, result, spec, verify_hook)

    verdicts = [r.verify.ok for r in restored if r.verify is not None]
    verified = all(verdicts) if verdicts else None
    if verified is not None and member is None:
        backends.state.save_point(point.model_copy(update={"verified": verified}))
    return RestoreResult(
        recovery_point=point.id,
        group=point.group,
        consistency=point.consistency.value,
        target=str(target),
        members=restored,
        verified=verified,
        links=links,
    )
