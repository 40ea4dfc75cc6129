"""In-memory state store and event bus: for tests, benchmarks and dry runs. Thread-safe."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from quiesce.events import CloudEvent
from quiesce.ports import EventPublisher, LockHolder
from quiesce.state_base import POINT, RUN, CatalogStateStore, Item, Kind, Queued


class MemoryStateStore(CatalogStateStore):
    """The catalog in dictionaries, behind one lock."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.items: dict[tuple[Kind, str], Item] = {}
        self.locks: dict[str, LockHolder] = {}
        self.triggers: dict[str, str] = {}
        self.outbox: dict[str, Queued] = {}
        self.cooldowns: dict[str, datetime] = {}

    @property
    def runs(self) -> dict[str, str]:
        """Each run's JSON by run id (for tests that look inside)."""
        return self._of(RUN)

    @property
    def points(self) -> dict[str, str]:
        """Each point's JSON by point id."""
        return self._of(POINT)

    def _of(self, kind: Kind) -> dict[str, str]:
        with self._lock:
            return {key: item.data for (k, key), item in self.items.items() if k == kind}

    # storage primitives

    def put_items(self, items: Sequence[Item]) -> None:
        with self._lock:
            for item in items:
                self.items[(item.kind, item.key)] = item

    def get_item(self, kind: Kind, key: str) -> str | None:
        with self._lock:
            item = self.items.get((kind, key))
        return item.data if item is not None else None

    def query_items(self, kind: Kind, policy: str, group: str | None) -> list[str]:
        with self._lock:
            return [
                i.data
                for i in self.items.values()
                if i.kind == kind and i.policy == policy and group in (None, i.group)
            ]

    def delete_item(self, kind: Kind, key: str) -> None:
        with self._lock:
            self.items.pop((kind, key), None)

    def put_queued(self, batches: Sequence[Queued]) -> None:
        with self._lock:
            for batch in batches:
                self.outbox.setdefault(batch.key, batch)

    def scan_queued(self, limit: int) -> list[str]:
        with self._lock:
            queued = sorted(self.outbox.values(), key=lambda q: q.seq)
        return [q.data for q in queued[:limit]]

    def delete_queued(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self.outbox.pop(key, None)

    # atomic claims

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

    def trigger_owner(self, trigger_id: str) -> str | None:
        with self._lock:
            return self.triggers.get(trigger_id)

    def claim_cooldown(self, key: str, now: datetime, cooldown_seconds: float) -> bool:
        with self._lock:
            last = self.cooldowns.get(key)
            if last is not None and (now - last).total_seconds() < cooldown_seconds:
                return False
            self.cooldowns[key] = now
            return True

    def fired_at(self, key: str) -> datetime | None:
        with self._lock:
            return self.cooldowns.get(key)


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
