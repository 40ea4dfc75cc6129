"""The state one run carries through its phases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel

from quiesce.events import CloudEvent, make_event
from quiesce.policy.model import Group, Member, Policy
from quiesce.ports import Backends, HookCall, Machine, Provider, SnapshotCall, Snapshotter
from quiesce.record import (
    MachineRecord,
    MemberRecord,
    Phase,
    RecoveryPoint,
    RunRecord,
    SnapshotRef,
    utcnow,
)

if TYPE_CHECKING:
    from quiesce.engine.freeze import Freeze
    from quiesce.engine.lanes import Wave


@dataclass
class SnapshotCalls:
    """The snapshot calls of a run: some may still be running after the freeze deadline."""

    pairs: list[tuple[MemberRecord, MachineRecord]]
    wave: Wave[list[SnapshotRef]]
    settled: set[int] = field(default_factory=set)


@dataclass
class RunContext:
    policy: Policy
    group: Group
    backends: Backends
    record: RunRecord
    now: Callable[[], datetime] = utcnow
    progress: Callable[[RunRecord], None] | None = None
    machines: dict[tuple[str, str], Machine] = field(default_factory=dict)
    snapshot_calls: SnapshotCalls | None = None
    snapshot_plan: list[tuple[Snapshotter, SnapshotCall]] | None = None
    #: The coarsest restore resolution of the group's `pitr` members (None: it has none).
    restore_step: float | None = None
    thaw_calls: dict[int, HookCall] = field(default_factory=dict)
    freeze: Freeze | None = None  # the freeze's waves, once the quiesce or snapshot began
    #: Inside `held()`: the thaw is owed by a finally, so the freeze may start it the moment
    #: the last snapshot call ends (engine.freeze).
    thaw_guarded: bool = False
    interrupted: bool = False  # a signal (SIGTERM, SIGINT) stopped the run
    _members: dict[str, Member] = field(default_factory=dict)
    _events: list[CloudEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._members = {m.name: m for m in self.group.members}

    def member(self, name: str) -> Member:
        return self._members[name]

    def provider(self, name: str) -> Provider:
        return self.backends.providers[name]

    def knows(self, member: str) -> bool:
        return member in self._members

    def machine(self, member: MemberRecord, machine: MachineRecord) -> Machine:
        """The resolved machine, or (when recovering another process's run) one rebuilt from
        the record."""
        key = (member.name, machine.machine_id)
        if key not in self.machines:
            self.machines[key] = Machine(
                provider=member.provider,
                member=member.name,
                machine_id=machine.machine_id,
                volumes=tuple(machine.volumes),
            )
        return self.machines[key]

    def emit(
        self,
        type_: str,
        data: BaseModel,
        subject: str | None = None,
        time: datetime | None = None,
    ) -> None:
        """Buffers an event; it reaches the outbox with the next save (never inside the freeze).

        `time` is when it happened (default: now)."""
        self._events.append(
            make_event(
                type_,
                data,
                policy=self.record.policy,
                group=self.record.group,
                run_id=self.record.run_id,
                subject=subject,
                time=time or self.now(),
            )
        )

    def enter(self, phase: Phase) -> None:
        """Moves to a phase without a catalog write (inside the freeze window)."""
        self.record.phase = phase
        if self.progress is not None:
            self.progress(self.record)

    def save_with_point(self, point: RecoveryPoint) -> None:
        """Lists the recovery point and persists the record naming it, together."""
        self.record.updated_at = self.now()
        if self._events:
            self.backends.state.outbox_add(self._events)
            self._events = []
        self.backends.state.record_point(point, self.record)

    def save(self, phase: Phase | None = None) -> None:
        """Persists the record (and buffered events) after a transition."""
        if phase is not None:
            self.enter(phase)
        self.record.updated_at = self.now()
        if self._events:
            self.backends.state.outbox_add(self._events)
            self._events = []
        self.backends.state.save_run(self.record)
