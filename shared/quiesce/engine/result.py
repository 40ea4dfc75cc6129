"""The run result (`quiesce run --json`, and the data of run.completed / run.failed)."""

from __future__ import annotations

from typing import Any

from quiesce.engine.outcome import output_tail
from quiesce.events import MemberResult, RunResult
from quiesce.record import HookResult, HookStatus, MemberRecord, RunRecord

_SEVERITY = [
    HookStatus.SUCCEEDED,
    HookStatus.NOT_RUN,
    HookStatus.REFUSED,
    HookStatus.TIMED_OUT,
    HookStatus.FAILED,
]


def _worst(results: list[HookResult | None]) -> str | None:
    statuses = [r.status for r in results if r is not None]
    return max(statuses, key=_SEVERITY.index).value if statuses else None


def _hook_view(result: HookResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    view = result.model_dump(
        mode="json", include={"status", "code", "message", "by", "duration_ms"}
    )
    if not result.ok and result.output.strip():
        view["output"] = output_tail(result.output)  # the why, in the result itself
    if result.facts:
        view["facts"] = result.facts  # what it did (e.g. WAL positions), for the restore
    return view


def member_result(member: MemberRecord) -> MemberResult:
    return MemberResult(
        name=member.name,
        consistency=member.consistency,
        snapshots=[s.id for s in member.snapshots],
        methods=sorted({s.point for s in member.snapshots}),
        pre=_worst([mc.pre for mc in member.machines]),
        post=_worst([mc.post for mc in member.machines]),
        error=member.error,
        machines=[
            {
                "machine_id": mc.machine_id,
                "consistency": mc.consistency.value,
                "pre": _hook_view(mc.pre),
                "post": _hook_view(mc.post),
                "snapshots": [s.id for s in mc.snapshots],
                "snapshot_error": mc.snapshot_error,
            }
            for mc in member.machines
        ],
    )


def run_result(record: RunRecord) -> RunResult:
    return RunResult(
        run_id=record.run_id,
        policy=record.policy,
        group=record.group,
        trigger_id=record.trigger_id,
        status=record.status.value,
        consistency=record.consistency,
        recovery_point=record.recovery_point,
        freeze_window_ms=record.freeze_window_ms,
        skew_ms=record.skew_ms,
        restore_time=record.restore_time,
        started_at=record.started_at,
        finished_at=record.finished_at,
        abandoned=record.abandoned,
        errors=record.errors,
        warnings=record.warnings,
        members=[member_result(m) for m in record.members],
    )
