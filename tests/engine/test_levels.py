"""Honest levels: a file-by-file copy is one point in time only while the application is held;
skew counts a copy from its start. judge() is pure: records are built by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from quiesce.engine.outcome import judge, output_tail
from quiesce.record import (
    Consistency,
    HookResult,
    HookStatus,
    MachineRecord,
    MemberRecord,
    RunRecord,
    SnapshotRef,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def snap(method: str, start_ms: float, fixed_ms: float) -> SnapshotRef:
    return SnapshotRef(
        id=f"s-{method}-{start_ms}",
        provider="local",
        machine_id="vm",
        volume="/data",
        method=method,
        started_at=at(start_ms),
        fixed_at=at(fixed_ms),
    )


def hook(start_ms: float, end_ms: float, ok: bool = True) -> HookResult:
    return HookResult(
        status=HookStatus.SUCCEEDED if ok else HookStatus.FAILED,
        code="Succeeded" if ok else "ExecutionFailed",
        started_at=at(start_ms),
        ended_at=at(end_ms),
    )


def record(requested: str, machine: MachineRecord, hooked: bool) -> RunRecord:
    return RunRecord.model_validate(
        {
            "run_id": "r",
            "policy": "p",
            "group": "g",
            "requested_consistency": requested,
            "on_quiesce_failure": "fallback",
            "max_freeze_seconds": 30,
            "orchestrator": {"host": "h", "pid": 1},
            "members": [
                MemberRecord(name="m", provider="local", has_hooks=hooked, machines=[machine])
            ],
        }
    )


@pytest.mark.parametrize("method", ["copy", "reflink"])
def test_a_file_by_file_copy_without_a_hold_is_an_inconsistent_copy(method: str) -> None:
    rec = record("crash", MachineRecord(machine_id="vm", snapshots=[snap(method, 0, 1500)]), False)

    judge(rec)

    assert rec.consistency is Consistency.NONE
    assert rec.skew_ms == 1500.0, "the copy's whole span"


def test_a_point_in_time_snapshot_without_a_hold_is_crash_consistent() -> None:
    rec = record("crash", MachineRecord(machine_id="vm", snapshots=[snap("ebs", 0, 1500)]), False)

    judge(rec)

    assert rec.consistency is Consistency.CRASH
    assert rec.skew_ms == 0.0


def test_a_copy_made_while_the_application_is_held_is_application_consistent() -> None:
    machine = MachineRecord(
        machine_id="vm",
        pre=hook(0, 10),
        post=hook(2000, 2010),
        pre_started=True,
        snapshots=[snap("copy", 20, 1500)],
    )
    rec = record("application", machine, True)

    judge(rec)

    assert rec.consistency is Consistency.APPLICATION


def test_a_copy_after_a_failed_pre_hook_is_an_inconsistent_copy_not_crash() -> None:
    machine = MachineRecord(
        machine_id="vm",
        pre=hook(0, 10, ok=False),
        post=hook(2000, 2010),
        pre_started=True,
        snapshots=[snap("copy", 20, 1500)],
    )
    rec = record("application", machine, True)

    judge(rec)

    assert rec.consistency is Consistency.NONE


def test_a_failed_hook_s_error_line_ends_with_its_output() -> None:
    failed = hook(0, 10, ok=False).model_copy(update={"output": "x" * 1000 + "\ndisk full\n"})
    machine = MachineRecord(
        machine_id="vm", pre=failed, pre_started=True, snapshots=[snap("ebs", 20, 30)]
    )
    rec = record("application", machine, True)

    judge(rec)

    assert rec.members[0].error is not None
    assert rec.members[0].error.endswith("disk full")
    assert len(output_tail(failed.output)) <= 401
