"""The state one run carries through its phases."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel

from quiesce.events import CloudEvent, make_event
from quiesce.policy.model import Group, Member, Policy
from quiesce.ports import Backends, Machine, Provider
from quiesce.record import (
    MachineRecord,
    MemberRecord,
    Phase,
    RunRecord,
    SnapshotRef,
    utcnow,
)


@dataclass
class RunContext:
    policy: Policy
    group: Group
    backends: Backends
    record: RunRecord
    now: Callable[[], datetime] = utcnow
    machines: dict[tuple[str, str], Machine] = field(default_factory=dict)
    late_snapshots: dict[tuple[str, str], Future[list[SnapshotRef]]] = field(default_factory=dict)
    _events: list[CloudEvent] = field(default_factory=list)

    def member(self, name: str) -> Member:
        return next(m for m in self.group.members if m.name == name)

    def provider(self, name: str) -> Provider:
        return self.backends.providers[name]

    def knows(self, member: str) -> bool:
        return any(m.name == member for m in self.group.members)

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

    def emit(self, type_: str, data: BaseModel, subject: str | None = None) -> None:
        """Buffers an event; it reaches the outbox with the next save (never inside the freeze)."""
        self._events.append(
            make_event(
                type_,
                data,
                policy=self.record.policy,
                group=self.record.group,
                run_id=self.record.run_id,
                subject=subject,
            )
        )

    def save(self, phase: Phase | None = None) -> None:
        """Persists the record (and buffered events) after a transition."""
        if phase is not None:
            self.record.phase = phase
        self.record.updated_at = self.now()
        if self._events:
            self.backends.state.outbox_add(self._events)
            self._events = []
        self.backends.state.save_run(self.record)
