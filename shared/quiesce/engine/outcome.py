"""Judges what a run achieved: consistency per machine, member and group, the measured freeze
window and skew, and the run's status. Pure functions over the record."""

from __future__ import annotations

from datetime import datetime

from quiesce.record import (
    Consistency,
    HookResult,
    HookStatus,
    MachineRecord,
    MemberRecord,
    RunRecord,
    RunStatus,
    SnapshotRef,
    ms_between,
)

#: Methods that copy (or clone) a volume's files one by one: the copy spans an interval, so it
#: is one point in time only while the application is held (application level); otherwise it
#: is an inconsistent copy (`none`), never `crash`.
FILE_BY_FILE_METHODS = frozenset({"copy", "reflink"})

#: How much of a failed hook's output the run result and its error lines carry.
OUTPUT_TAIL_CHARS = 400


def point_in_time(snapshot: SnapshotRef) -> bool:
    return snapshot.method not in FILE_BY_FILE_METHODS and snapshot.point != "copy"


def output_tail(output: str, limit: int = OUTPUT_TAIL_CHARS) -> str:
    text = output.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def hook_error(phase: str, result: HookResult) -> str:
    line = f"{phase} hook {result.status.value} ({result.code}): {result.message}"
    tail = output_tail(result.output)
    return f"{line}; its output ends: {tail}" if tail else line


def inconsistent_copies(record: RunRecord) -> list[tuple[MemberRecord, MachineRecord]]:
    """Machines recorded `none` although they have their snapshots: copied file by file while
    the application was not held."""
    return [
        (m, mc)
        for m, mc in record.machines()
        if mc.snapshots and not mc.snapshot_error and mc.consistency is Consistency.NONE
    ]


def _capture_start(snapshot: SnapshotRef) -> datetime:
    """When the snapshot began to capture data: a file-by-file copy from its start."""
    return snapshot.fixed_at if point_in_time(snapshot) else snapshot.started_at


def _thaw_start(machine: MachineRecord) -> datetime | None:
    if machine.post is None:
        return None
    return machine.post.started_at or machine.post.ended_at


def _fixed_before(machine: MachineRecord, moment: datetime | None) -> bool:
    """Were all of the machine's snapshots fixed before `moment` (None: never thawed)?"""
    return moment is None or all(s.fixed_at <= moment for s in machine.snapshots)


def judge(record: RunRecord) -> None:
    """Sets consistency on every machine and member and on the run, and the measurements.

    A hooked machine is application-consistent when its pre hook succeeded and every snapshot's
    point in time was fixed before its thaw started. A machine without hooks relies on the other
    members' hooks: it is application-consistent when they all succeeded and its snapshots were
    fixed before the first thaw in the group. A machine is never judged above the level its
    platform reports for a snapshot (Windows VSS). The group is as weak as its weakest member,
    and `none` when any machine has no snapshot.
    """
    machines = [mc for _, mc in record.machines()]
    hooked = [mc for m, mc in record.machines() if m.has_hooks]
    all_quiesced = record.requested_consistency == "application" and all(
        mc.pre is not None and mc.pre.ok for mc in hooked
    )
    thaws = [t for t in (_thaw_start(mc) for mc in hooked) if t is not None]
    first_thaw = min(thaws) if thaws else None

    for member in record.members:
        for machine in member.machines:
            if not machine.snapshots or machine.snapshot_error:
                machine.consistency = Consistency.NONE
            elif record.requested_consistency == "crash":
                machine.consistency = Consistency.CRASH
            elif member.has_hooks:
                ok = machine.pre is not None and machine.pre.ok and all_quiesced
                ok = ok and _fixed_before(machine, _thaw_start(machine))
                machine.consistency = Consistency.APPLICATION if ok else Consistency.CRASH
            else:
                ok = all_quiesced and _fixed_before(machine, first_thaw)
                machine.consistency = Consistency.APPLICATION if ok else Consistency.CRASH
            if machine.consistency is Consistency.CRASH and not all(
                point_in_time(s) for s in machine.snapshots
            ):
                machine.consistency = Consistency.NONE  # an inconsistent copy, not crash
            reported = [s.reported_consistency for s in machine.snapshots if s.reported_consistency]
            if reported:
                machine.consistency = Consistency.weakest([machine.consistency, *reported])
        member.consistency = Consistency.weakest([mc.consistency for mc in member.machines])
        errors = [mc.snapshot_error for mc in member.machines if mc.snapshot_error]
        errors += [hook_error("pre", mc.pre) for mc in member.machines if mc.pre and not mc.pre.ok]
        errors += [
            hook_error("post", mc.post) for mc in member.machines if mc.post and not mc.post.ok
        ]
        member.error = "; ".join(errors) or None

    record.consistency = Consistency.weakest([m.consistency for m in record.members])
    pre_done = [mc.pre.ended_at for mc in hooked if mc.pre is not None and mc.pre.ended_at]
    if pre_done and thaws:
        record.freeze_window_ms = ms_between(min(pre_done), max(thaws))
    snapshots = [s for mc in machines for s in mc.snapshots]
    if snapshots:
        # From the first byte captured to the last point fixed: a copy counts from its start.
        record.skew_ms = ms_between(
            min(_capture_start(s) for s in snapshots), max(s.fixed_at for s in snapshots)
        )


def status_of(record: RunRecord) -> RunStatus:
    """failed: no recovery point. degraded: a point, but below the requested level or with a
    thaw that failed. succeeded: the requested level, every thaw done."""
    if record.recovery_point is None:
        return RunStatus.FAILED
    thaw_failed = any(
        mc.post is not None and mc.post.status is not HookStatus.SUCCEEDED
        for _, mc in record.machines()
    )
    if record.consistency.value != record.requested_consistency or thaw_failed:
        return RunStatus.DEGRADED
    return RunStatus.SUCCEEDED


#: `quiesce run`'s exit code per status; RUNNING: a duplicate trigger id whose run is still on.
EXIT_CODES = {
    RunStatus.SUCCEEDED: 0,
    RunStatus.DEGRADED: 3,
    RunStatus.FAILED: 1,
    RunStatus.RUNNING: 4,
}
