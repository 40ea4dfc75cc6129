"""The serializable run record and the recovery point: the engine's whole state.

The engine's phases are small functions over a RunRecord; it is persisted after every transition,
so a crashed run leaves enough behind for `quiesce recover` to thaw, clean up and report.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def utcnow() -> datetime:
    return datetime.now(UTC)


def ms_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000, 3)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class Consistency(StrEnum):
    APPLICATION = "application"
    CRASH = "crash"
    NONE = "none"

    @staticmethod
    def weakest(levels: list[Consistency]) -> Consistency:
        order = [Consistency.NONE, Consistency.CRASH, Consistency.APPLICATION]
        return min(levels, key=order.index) if levels else Consistency.NONE


class HookStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    REFUSED = "refused"  # a security check failed: the script was never executed
    NOT_RUN = "not_run"  # e.g. post for a member whose pre never started


#: How a hook reports facts a restore needs (WAL/binlog positions, frozen filesystems): one
#: output line `quiesce-info {"kind": ..., ...}` (the hook library prints them).
FACTS_PREFIX = "quiesce-info "


def hook_facts(output: str) -> dict[str, Any]:
    """The facts a hook's output reports (later lines win); malformed lines are ignored."""
    facts: dict[str, Any] = {}
    for line in output.splitlines():
        if not line.startswith(FACTS_PREFIX):
            continue
        try:
            value = json.loads(line[len(FACTS_PREFIX) :])
        except ValueError:
            continue
        if isinstance(value, dict):
            facts.update(value)
    return facts


class HookResult(Record):
    """What one hook invocation on one machine came to (the guest runner's JSON, verbatim)."""

    status: HookStatus
    code: str = Field(
        description="Machine-readable reason: Succeeded, ScriptNotFound, InsufficientPermission, "
        "HashMismatch, Timeout, ExecutionFailed, AlreadyThawed, Undeliverable, …"
    )
    message: str = ""
    exit_code: int | None = None
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: float | None = None
    output: str = Field(default="", description="The last 4 KB of the hook's output.")
    by: Literal["orchestrator", "watchdog"] = "orchestrator"
    declared: str | None = Field(
        default=None,
        description="`check` only: the SHA-256 of the machine's declaration of the hook "
        "(docs/guest-protocol.md); `quiesce plan` compares it with the policy's.",
    )
    thaw_declared: str | None = Field(
        default=None,
        description="`check` of a pre hook only: the same digest for its thaw (post) hook.",
    )
    signed: bool | None = Field(
        default=None,
        description="Whether the machine's answer carried a valid signature, for channels that "
        "sign answers (the GCP agent); null where the channel itself is authenticated.",
    )
    facts: dict[str, Any] = Field(
        default_factory=dict,
        description="What the hook reported doing (its `quiesce-info` output line), e.g. "
        "the checkpoint and WAL positions of the PostgreSQL library hook.",
    )

    @model_validator(mode="after")
    def _facts_from_output(self) -> HookResult:
        if not self.facts and FACTS_PREFIX in self.output:
            self.facts = hook_facts(self.output)
        return self

    @property
    def ok(self) -> bool:
        return self.status is HookStatus.SUCCEEDED


class SnapshotState(StrEnum):
    PENDING = "pending"  # point in time fixed, data still being made durable
    COMPLETED = "completed"
    FAILED = "failed"
    DELETED = "deleted"


class SnapshotRef(Record):
    """One snapshot of one volume. `fixed_at` is when its point in time was fixed."""

    id: str
    provider: str
    machine_id: str
    volume: str
    method: str = Field(description="How it was taken: reflink, copy, ebs, restore_point, …")
    state: SnapshotState = SnapshotState.PENDING
    started_at: datetime
    fixed_at: datetime
    durable_at: datetime | None = None
    size_bytes: int | None = None
    location: str = Field(default="", description="Where the provider keeps it (path, ARN, URI).")
    tags: dict[str, str] = Field(default_factory=dict)
    file_count: int | None = Field(
        default=None,
        description="Regular files in the snapshot, when the provider counts them (local).",
    )
    digest: str | None = Field(
        default=None,
        description="A digest of the snapshot's file list (path, type, size), when the provider "
        "keeps one (local): restore checks the data against it before restoring.",
    )
    reported_consistency: Consistency | None = Field(
        default=None,
        description=(
            "The level the platform itself reports for this snapshot (Windows VSS through AWS "
            "or Azure); None when it reports none. The machine is never judged above it."
        ),
    )
    point: Literal["snapshot", "pitr", "copy"] = Field(
        default="snapshot",
        description=(
            "How its point in time is fixed: `snapshot` (when the call is accepted), `pitr` (a "
            "restore time `restore_time` of a service with continuous backup) or `copy` (data "
            "copied over an interval: one point in time only while the application is held)."
        ),
    )
    restore_time: datetime | None = Field(
        default=None,
        description="`pitr`: the instant the service restores to (the group's `T`).",
    )
    note: str = Field(
        default="",
        description="Why the provider reported the level it did, when it reported one.",
    )


class MachineRecord(Record):
    """One machine (instance, VM, or this host) of a member."""

    machine_id: str
    volumes: list[str] = Field(default_factory=list)
    pre: HookResult | None = None
    post: HookResult | None = None
    pre_started: bool = Field(
        default=False, description="Set before the pre hook is sent: a thaw is owed from then on."
    )
    snapshots: list[SnapshotRef] = Field(default_factory=list)
    snapshot_error: str | None = None
    consistency: Consistency = Consistency.NONE


class MemberRecord(Record):
    name: str
    provider: str
    has_hooks: bool = False
    machines: list[MachineRecord] = Field(default_factory=list)
    consistency: Consistency = Consistency.NONE
    error: str | None = None

    @property
    def snapshots(self) -> list[SnapshotRef]:
        return [s for m in self.machines for s in m.snapshots]


class Phase(StrEnum):
    STARTED = "started"
    RESOLVED = "resolved"
    LOCKED = "locked"
    QUIESCING = "quiescing"
    QUIESCED = "quiesced"
    SNAPSHOTTING = "snapshotting"
    THAWING = "thawing"
    THAWED = "thawed"
    AWAITING_DURABILITY = "awaiting_durability"
    RECORDED = "recorded"
    RETAINED = "retained"
    FINISHED = "finished"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEGRADED = "degraded"
    FAILED = "failed"


class Orchestrator(Record):
    host: str
    pid: int


class RunRecord(Record):
    run_id: str
    policy: str
    group: str
    trigger_id: str | None = None
    requested_consistency: Literal["application", "crash"]
    on_quiesce_failure: Literal["fallback", "abort"]
    max_freeze_seconds: float
    phase: Phase = Phase.STARTED
    status: RunStatus = RunStatus.RUNNING
    consistency: Consistency = Consistency.NONE
    orchestrator: Orchestrator
    started_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    lock_expires_at: datetime | None = None
    members: list[MemberRecord] = Field(default_factory=list)
    recovery_point: str | None = None
    freeze_window_ms: float | None = Field(
        default=None,
        description="From the first member held (pre hook done) to the last thaw started.",
    )
    skew_ms: float | None = Field(
        default=None, description="Spread of the times at which the snapshots' points were fixed."
    )
    quiesce_started_at: datetime | None = None
    restore_time: datetime | None = Field(
        default=None,
        description="The group's `T` for members with point-in-time recovery: the first "
        "instant at their restore API's resolution after every member was held.",
    )
    freeze_deadline: datetime | None = None
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    abandoned: bool = Field(
        default=False, description="The orchestrator died; `quiesce recover` closed the run."
    )
    replaces: str | None = Field(
        default=None,
        description="The earlier run of the same trigger that stopped before its quiesce (a "
        "transient failure): this run took the trigger over when the event was delivered again.",
    )
    closers: list[Orchestrator] = Field(
        default_factory=list,
        description="Who took the abandoned run over to close it, in order (one wins each "
        "attempt; a closer that died lets the next one take over).",
    )

    def machines(self) -> list[tuple[MemberRecord, MachineRecord]]:
        return [(m, mc) for m in self.members for mc in m.machines]

    @property
    def finished(self) -> bool:
        return self.status is not RunStatus.RUNNING

    @property
    def began_quiesce(self) -> bool:
        """Whether the run went as far as its quiesce (a pre hook was sent) or, without hooks,
        its snapshots. A run that stopped before that did nothing to the members."""
        return self.quiesce_started_at is not None or any(
            mc.pre_started or mc.snapshots or mc.snapshot_error for _, mc in self.machines()
        )


class PointMember(Record):
    name: str
    provider: str
    consistency: Consistency
    snapshots: list[SnapshotRef]
    facts: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per machine, what its pre and post hooks reported doing "
        '(`{"<machine>": {"pre": {...}, "post": {...}}}`), e.g. WAL positions.',
    )


class PointCopy(Record):
    """The point's copy in another region: a replica of each of its snapshots."""

    region: str
    state: SnapshotState = Field(
        description="pending until every replica is durable; failed when one failed."
    )
    started_at: datetime
    completed_at: datetime | None = None
    members: list[PointMember] = Field(
        description="Per member, its snapshots' replicas in the region."
    )
    error: str | None = None


class DrillRecord(Record):
    """One drill of the point: restored into isolation, verified, measured, torn down."""

    drill_id: str
    region: str | None = Field(default=None, description="None: the group's own region.")
    started_at: datetime
    finished_at: datetime | None = None
    verdict: Literal["passed", "failed"]
    rto_seconds: float | None = Field(
        default=None,
        description="The recovery time: from the restore's start to the last verify hook's "
        "success (None when it did not succeed).",
    )
    phases: dict[str, float] = Field(
        default_factory=dict, description="Seconds per phase: restore, ready, verify, cleanup."
    )
    created: list[str] = Field(
        default_factory=list, description="Everything the drill created (all deleted after)."
    )
    left: list[str] = Field(
        default_factory=list, description="What the cleanup could not delete (should be empty)."
    )
    errors: list[str] = Field(default_factory=list)


class RecoveryPoint(Record):
    """One group-wide point in time, restorable as a whole."""

    id: str
    policy: str
    group: str
    run_id: str
    created_at: datetime = Field(description="When the last member's point in time was fixed.")
    consistency: Consistency
    freeze_window_ms: float | None
    skew_ms: float | None
    restore_time: datetime | None = Field(
        default=None,
        description="The group's `T`: the instant inside the quiesced interval that members "
        "with point-in-time recovery (`pitr`) restore to.",
    )
    size_bytes: int | None = None
    members: list[PointMember]
    verified: bool | None = Field(
        default=None, description="Set by `quiesce restore` when verified."
    )
    copies: list[PointCopy] = Field(
        default_factory=list, description="Its copies in other regions (`copies:`)."
    )
    drills: list[DrillRecord] = Field(
        default_factory=list, description="Its drills, newest last (the last few are kept)."
    )

    @property
    def snapshots(self) -> list[SnapshotRef]:
        return [s for m in self.members for s in m.snapshots]
