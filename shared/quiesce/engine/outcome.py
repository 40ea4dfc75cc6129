"""Judges what a run achieved: consistency per machine, member and group, the measured freeze
window and skew, and the run's status. Pure functions over the record."""

from __future__ import annotations

from datetime import datetime

from quiesce.record import (
    Consistency,
    HookStatus,
    MachineRecord,
    RunRecord,
    RunStatus,
    ms_between,
)


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
            reported = [s.reported_consistency for s in machine.snapshots if s.reported_consistency]
            if reported:
                machine.consistency = Consistency.weakest([machine.consistency, *reported])
        member.consistency = Consistency.weakest([mc.consistency for mc in member.machines])
        errors = [mc.snapshot_error for mc in member.machines if mc.snapshot_error]
        errors += [
            f"pre hook {mc.pre.status.value} ({mc.pre.code}): {mc.pre.message}"
            for mc in member.machines
            if mc.pre is not None and not mc.pre.ok
        ]
        errors += [
            f"post hook {mc.post.status.value} ({mc.post.code}): {mc.post.message}"
            for mc in member.machines
            if mc.post is not None and not mc.post.ok
        ]
        member.error = "; ".join(errors) or None

    record.consistency = Consistency.weakest([m.consistency for m in record.members])
    pre_done = [mc.pre.ended_at for mc in hooked if mc.pre is not None and mc.pre.ended_at]
    if pre_done and thaws:
        record.freeze_window_ms = ms_between(min(pre_done), max(thaws))
    fixed = [s.fixed_at for mc in machines for s in mc.snapshots]
    if fixed:
        record.skew_ms = ms_between(min(fixed), max(fixed))


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


EXIT_CODES = {RunStatus.SUCCEEDED: 0, RunStatus.DEGRADED: 3, RunStatus.FAILED: 1}
