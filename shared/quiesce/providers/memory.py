"""In-memory state store and event bus: for tests, benchmarks and dry runs. Thread-safe."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from quiesce.events import CloudEvent
from quiesce.ports import EventPublisher, LockHolder, StateStore
from quiesce.record import RecoveryPoint, RunRecord


class MemoryStateStore(StateStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs: dict[str, str] = {}
        self.points: dict[str, str] = {}
        self.locks: dict[str, LockHolder] = {}
        self.triggers: dict[str, str] = {}
        self.outbox: dict[str, str] = {}
        self.cooldowns: dict[str, datetime] = {}

    def save_run(self, record: RunRecord) -> None:
        with self._lock:
            self.runs[record.run_id] = record.model_dump_json()

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            raw = self.runs.get(run_id)
        return RunRecord.model_validate_json(raw) if raw is not None else None

    def list_runs(self, policy: str, group: str | None = None) -> list[RunRecord]:
        with self._lock:
            records = [RunRecord.model_validate_json(raw) for raw in self.runs.values()]
        records = [r for r in records if r.policy == policy and group in (None, r.group)]
        return sorted(records, key=lambda r: r.started_at, reverse=True)

    def acquire_lock(self, key: str, run_id: str, expires_at: datetime) -> LockHolder | None:
        with self._lock:
            holder = self.locks.get(key)
            if holder is not None and holder.run_id != run_id:
                now = datetime.now(expires_at.tzinfo)
                if holder.expires_at > now:
                    return holder
            self.locks[key] = LockHolder(run_id=run_id, expires_at=expires_at)
            return None

    def release_lock(self, key: str, run_id: str) -> None:
        with self._lock:
            holder = self.locks.get(key)
            if holder is not None and holder.run_id == run_id:
                del self.locks[key]

    def claim_trigger(self, trigger_id: str, run_id: str) -> str | None:
        with self._lock:
            earlier = self.triggers.setdefault(trigger_id, run_id)
            return None if earlier == run_id else earlier

    def claim_cooldown(self, key: str, now: datetime, cooldown_seconds: float) -> bool:
        with self._lock:
            last = self.cooldowns.get(key)
            if last is not None and (now - last).total_seconds() < cooldown_seconds:
                return False
            self.cooldowns[key] = now
            return True

    def save_point(self, point: RecoveryPoint) -> None:
        with self._lock:
            self.points[point.id] = point.model_dump_json()

    def record_point(self, point: RecoveryPoint, record: RunRecord) -> None:
        with self._lock:
            self.points[point.id] = point.model_dump_json()
            self.runs[record.run_id] = record.model_dump_json()

    def get_point(self, point_id: str) -> RecoveryPoint | None:
        with self._lock:
            raw = self.points.get(point_id)
        return RecoveryPoint.model_validate_json(raw) if raw is not None else None

    def list_points(self, policy: str, group: str | None = None) -> list[RecoveryPoint]:
        with self._lock:
            points = [RecoveryPoint.model_validate_json(raw) for raw in self.points.values()]
        points = [p for p in points if p.policy == policy and group in (None, p.group)]
        return sorted(points, key=lambda p: p.created_at, reverse=True)

    def delete_point(self, point_id: str) -> None:
        with self._lock:
            self.points.pop(point_id, None)

    def outbox_add(self, events: Sequence[CloudEvent]) -> None:
        with self._lock:
            for event in events:
                self.outbox.setdefault(event.id, event.model_dump_json())

    def outbox_pending(self, limit: int = 500) -> list[CloudEvent]:
        with self._lock:
            raws = list(self.outbox.values())[:limit]
        return [CloudEvent.model_validate_json(raw) for raw in raws]

    def outbox_remove(self, event_ids: Sequence[str]) -> None:
        with self._lock:
            for event_id in event_ids:
                self.outbox.pop(event_id, None)


class MemoryEventBus(EventPublisher):
    """Keeps what it is given, once per event id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[CloudEvent] = []
        self._ids: set[str] = set()

    def publish(self, events: Sequence[CloudEvent]) -> list[str]:
        with self._lock:
            for event in events:
                if event.id not in self._ids:
                    self._ids.add(event.id)
                    self.events.append(event)
        return []

    def types(self) -> list[str]:
        return [e.type for e in self.events]
