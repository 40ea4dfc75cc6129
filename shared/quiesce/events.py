"""CloudEvents 1.0 (structured JSON) that Quiesce publishes, and the schema of each type's data."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from quiesce.record import Consistency, HookResult, SnapshotRef, utcnow


class CloudEvent(BaseModel):
    """A CloudEvent in structured JSON mode, with two Quiesce extension attributes."""

    model_config = ConfigDict(extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str = Field(pattern=r"^quiesce\.[a-z_]+(\.[a-z_]+)*$")
    subject: str | None = None
    time: datetime = Field(default_factory=utcnow)
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    data: dict[str, Any]
    quiescerunid: str | None = Field(default=None, description="Extension: the run id.")
    quiescegroup: str | None = Field(default=None, description="Extension: the group.")

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


# ---------------------------------------------------------------------------- event data schemas


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunStartedData(_Data):
    run_id: str
    policy: str
    group: str
    trigger_id: str | None
    requested_consistency: Literal["application", "crash"]
    members: list[str]


class MemberHookData(_Data):
    run_id: str
    group: str
    member: str
    machine_id: str
    result: HookResult


class MemberSnapshotData(_Data):
    run_id: str
    group: str
    member: str
    machine_id: str
    snapshots: list[SnapshotRef]


class MemberSnapshotFailedData(_Data):
    run_id: str
    group: str
    member: str
    machine_id: str
    error: str


class MemberResult(_Data):
    name: str
    consistency: Consistency
    snapshots: list[str] = Field(description="Snapshot ids.")
    methods: list[str] = Field(
        default_factory=list,
        description="How its points in time were fixed: snapshot, pitr (restored to the run's "
        "restore_time) or copy.",
    )
    pre: str | None = Field(description="Worst pre-hook status over the member's machines.")
    post: str | None = Field(description="Worst post-hook status over the member's machines.")
    error: str | None
    machines: list[dict[str, Any]] = Field(description="Per machine: id, pre, post, snapshots.")


class RunResult(_Data):
    """The result of a run: `quiesce run --json` prints it, run.completed/run.failed carry it."""

    run_id: str
    policy: str
    group: str
    trigger_id: str | None = None
    status: Literal["succeeded", "degraded", "failed", "running"] = Field(
        description="running only in `quiesce run` output: the run is still on (a duplicate "
        "trigger id), or was stopped while a thaw is owed and `quiesce recover` closes it."
    )
    consistency: Consistency
    recovery_point: str | None
    freeze_window_ms: float | None
    skew_ms: float | None
    restore_time: datetime | None = Field(
        default=None,
        description="The group's T, which members with point-in-time recovery restore to.",
    )
    started_at: datetime
    finished_at: datetime | None
    abandoned: bool = False
    errors: list[str]
    warnings: list[str]
    members: list[MemberResult]


class PointDeletedData(_Data):
    recovery_point: str
    policy: str
    group: str
    reason: str
    snapshots: list[str]


class DrillData(_Data):
    """What a drill of a group's recovery point came to."""

    drill_id: str
    policy: str
    group: str
    recovery_point: str
    region: str | None
    verdict: Literal["passed", "failed"]
    rto_seconds: float | None = Field(
        description="From the restore's start to the last verify hook's success."
    )
    phases: dict[str, float] = Field(description="Seconds per phase.")
    created: list[str]
    left: list[str] = Field(description="What the cleanup could not delete (should be empty).")
    errors: list[str]


class EventType:
    RUN_STARTED = "quiesce.run.started"
    MEMBER_QUIESCED = "quiesce.member.quiesced"
    MEMBER_QUIESCE_FAILED = "quiesce.member.quiesce_failed"
    MEMBER_SNAPSHOT_TAKEN = "quiesce.member.snapshot_taken"
    MEMBER_SNAPSHOT_FAILED = "quiesce.member.snapshot_failed"
    MEMBER_THAWED = "quiesce.member.thawed"
    MEMBER_THAW_FAILED = "quiesce.member.thaw_failed"
    RUN_COMPLETED = "quiesce.run.completed"
    RUN_FAILED = "quiesce.run.failed"
    POINT_DELETED = "quiesce.point.deleted"
    DRILL_COMPLETED = "quiesce.drill.completed"
    DRILL_FAILED = "quiesce.drill.failed"


#: Every event type, what it means, and the model of its data.
EVENT_TYPES: dict[str, tuple[str, type[BaseModel]]] = {
    EventType.RUN_STARTED: ("A run took the group's lock and is about to quiesce.", RunStartedData),
    EventType.MEMBER_QUIESCED: ("A machine's pre hook succeeded: it is held.", MemberHookData),
    EventType.MEMBER_QUIESCE_FAILED: (
        "A machine's pre hook failed, timed out or was refused.",
        MemberHookData,
    ),
    EventType.MEMBER_SNAPSHOT_TAKEN: (
        "A machine's snapshots have their point in time fixed.",
        MemberSnapshotData,
    ),
    EventType.MEMBER_SNAPSHOT_FAILED: (
        "A machine could not be snapshotted.",
        MemberSnapshotFailedData,
    ),
    EventType.MEMBER_THAWED: ("A machine's post hook succeeded.", MemberHookData),
    EventType.MEMBER_THAW_FAILED: (
        "A machine's post hook failed: the application may still be held.",
        MemberHookData,
    ),
    EventType.RUN_COMPLETED: (
        "A recovery point was recorded (status succeeded or degraded).",
        RunResult,
    ),
    EventType.RUN_FAILED: ("No recovery point was recorded.", RunResult),
    EventType.POINT_DELETED: ("Retention deleted a recovery point.", PointDeletedData),
    EventType.DRILL_COMPLETED: (
        "A drill restored a recovery point into isolation, verified it and tore it down.",
        DrillData,
    ),
    EventType.DRILL_FAILED: (
        "A drill could not restore, verify or tear down a recovery point (errors say which).",
        DrillData,
    ),
}


def source_for(policy: str, group: str) -> str:
    return f"/quiesce/policies/{policy}/groups/{group}"


def make_event(
    type_: str,
    data: BaseModel,
    *,
    policy: str,
    group: str,
    run_id: str | None,
    subject: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    expected = EVENT_TYPES[type_][1]
    if not isinstance(data, expected):
        raise TypeError(f"{type_} carries {expected.__name__}, not {type(data).__name__}")
    return CloudEvent(
        source=source_for(policy, group),
        type=type_,
        subject=subject,
        data=data.model_dump(mode="json"),
        quiescerunid=run_id,
        quiescegroup=group,
        time=time or utcnow(),
    )


def event_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of the data of every event type."""
    out: dict[str, dict[str, Any]] = {}
    for type_, (description, model) in EVENT_TYPES.items():
        schema = model.model_json_schema()
        schema["title"] = type_
        schema["description"] = description
        out[type_] = schema
    return out
