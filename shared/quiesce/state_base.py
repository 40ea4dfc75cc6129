"""The StateStore written once, over a few storage primitives each backend implements.

A catalog backend (SQLite, memory, DynamoDB, Table Storage, Firestore) stores two things the
same way everywhere: *items* (runs and recovery points: a key, the columns a listing filters
and orders by, and the record's JSON) and *queued events* (the outbox: an event id, a place in
the order, the event's JSON). `CatalogStateStore` turns records into items and back (pydantic
JSON), orders listings newest first, de-duplicates and orders the outbox, and keeps the time
helpers; a backend implements only the primitives below, in the style of a persistence layer
with one abstract I/O method per operation.

What must be atomic stays each backend's own, because each says it in its own words (a
conditional write, an ETag, a transaction): `acquire_lock`, `release_lock`, `claim_trigger`
and `claim_cooldown`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import zlib
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

from quiesce.events import CloudEvent
from quiesce.ports import StateStore, fan_out
from quiesce.record import RecoveryPoint, RunRecord

T = TypeVar("T")
M = TypeVar("M", RunRecord, RecoveryPoint)

Kind = Literal["run", "point"]
RUN: Kind = "run"
POINT: Kind = "point"

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------ time


def utc(value: datetime) -> datetime:
    """`value` in UTC (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def micros(value: datetime) -> int:
    """Microseconds since the epoch, exactly (naive values are taken as UTC)."""
    return (utc(value) - EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def sortable(value: datetime) -> str:
    """A UTC timestamp whose text order is its time order (naive values are taken as UTC)."""
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_sortable(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


# ------------------------------------------------------------------------------ encoding


def pack(text: str) -> bytes:
    """A large record's JSON, compressed (records of runs compress roughly tenfold)."""
    return zlib.compress(text.encode("utf-8"), 6)


def unpack(data: bytes) -> str:
    return zlib.decompress(bytes(data)).decode("utf-8")


@dataclass(frozen=True)
class Item:
    """One run or recovery point as a backend stores it."""

    kind: Kind
    key: str
    policy: str
    group: str
    #: The listing's order: a run's start, a point's creation.
    at: datetime
    #: A run's status ("" for a point): a column for operators' queries.
    status: str
    #: The record's JSON.
    data: str

    @property
    def at_us(self) -> int:
        return micros(self.at)


@dataclass(frozen=True)
class Queued:
    """One outbox batch as a backend stores it: the events one `outbox_add` wrote (up to
    `OUTBOX_BATCH_BYTES` of them), so a run writes a few items, not one per event."""

    #: The batch's key: derived from its events' ids, so writing the same batch again is a
    #: no-op. (A catalog written by an older version holds one event per item, keyed by its id.)
    key: str
    #: Sortable text: the outbox is read in this order, oldest first.
    seq: str
    #: `{"batch": key, "events": [...]}`, or one event's JSON in an older catalog.
    data: str


def run_item(record: RunRecord) -> Item:
    return Item(
        RUN,
        record.run_id,
        record.policy,
        record.group,
        record.started_at,
        record.status.value,
        record.model_dump_json(),
    )


def point_item(point: RecoveryPoint) -> Item:
    return Item(
        POINT, point.id, point.policy, point.group, point.created_at, "", point.model_dump_json()
    )


#: How many outbox batches `outbox_remove` looks through for the events it removes.
OUTBOX_SCAN_LIMIT = 10_000


@dataclass(frozen=True)
class _Batch:
    key: str
    seq: str
    events: list[CloudEvent]


def _batch(events: Sequence[tuple[str, str]], seq: str) -> Queued:
    """One outbox item for the events, given as (id, JSON) pairs."""
    key = "b-" + hashlib.sha256("\n".join(i for i, _ in events).encode()).hexdigest()[:40]
    body = ",".join(text for _, text in events)
    data = f'{{"batch":{json.dumps(key)},"seq":{json.dumps(seq)},"events":[{body}]}}'
    return Queued(key, seq, data)


def _read_batch(data: str) -> _Batch:
    raw = json.loads(data)
    if "events" not in raw:  # one event per item, as an older catalog stored it
        event = CloudEvent.model_validate(raw)
        return _Batch(event.id, "", [event])
    return _Batch(
        str(raw["batch"]),
        str(raw.get("seq", "")),
        [CloudEvent.model_validate(e) for e in raw["events"]],
    )


def _chunks(events: list[tuple[str, str]], limit: int) -> list[list[tuple[str, str]]]:
    """The (id, JSON) pairs in order, cut into runs of at most `limit` characters of JSON (one
    event, however large, is a run of its own)."""
    out: list[list[tuple[str, str]]] = [[]]
    size = 0
    for pair in events:
        if out[-1] and size + len(pair[1]) > limit:
            out.append([])
            size = 0
        out[-1].append(pair)
        size += len(pair[1])
    return out


def each(fn: Callable[[T], object], items: Sequence[T]) -> None:
    """Calls fn on every item at once; raises the first error once all have ended."""
    for outcome in fan_out(fn, items):
        if isinstance(outcome, BaseException):
            raise outcome


class CatalogStateStore(StateStore):
    """Runs, points and the outbox, written once over the storage primitives below."""

    #: The most event JSON one outbox item holds (before a backend compresses it).
    OUTBOX_BATCH_BYTES = 256 * 1024

    def __init__(self) -> None:
        self._seq_lock = threading.Lock()
        self._last_seq = 0
        #: The batches the last `outbox_pending` read, by key (a key names its events).
        self._read_batches: dict[str, _Batch] = {}

    # ------------------------------------------------------------------------------ primitives

    @abstractmethod
    def put_items(self, items: Sequence[Item]) -> None:
        """Writes each item, replacing one with the same kind and key, in the order given.

        Stores that can write several in one transaction do (`record_point` relies on the
        order only: the point is written before the run that names it)."""

    @abstractmethod
    def get_item(self, kind: Kind, key: str) -> str | None:
        """The JSON of one item, or None."""

    @abstractmethod
    def query_items(self, kind: Kind, policy: str, group: str | None) -> Iterable[str]:
        """The JSON of the kind's items of `policy` (and `group`, when given), fresh, in any
        order (the base orders them; it also drops any of another group)."""

    @abstractmethod
    def delete_item(self, kind: Kind, key: str) -> None:
        """Deletes one item; deleting one that is gone is not an error."""

    @abstractmethod
    def put_queued(self, batches: Sequence[Queued]) -> None:
        """Stores each batch whose key is not stored yet (keys are unique in `batches`); a key
        stored already, even by a racing caller, keeps its first copy."""

    @abstractmethod
    def scan_queued(self, limit: int) -> list[str]:
        """The data of up to `limit` stored batches, in `seq` order."""

    @abstractmethod
    def delete_queued(self, keys: Sequence[str]) -> None:
        """Deletes the batches (keys are unique); absent ones are not an error."""

    # ------------------------------------------------------------------------------ runs

    def save_run(self, record: RunRecord) -> None:
        self.put_items([run_item(record)])

    def get_run(self, run_id: str) -> RunRecord | None:
        data = self.get_item(RUN, run_id)
        return RunRecord.model_validate_json(data) if data is not None else None

    def list_runs(self, policy: str, group: str | None = None) -> list[RunRecord]:
        runs = self._listed(RUN, policy, group, RunRecord)
        return sorted(runs, key=lambda r: (utc(r.started_at), r.run_id), reverse=True)

    # ------------------------------------------------------------------------------ points

    def save_point(self, point: RecoveryPoint) -> None:
        self.put_items([point_item(point)])

    def record_point(self, point: RecoveryPoint, record: RunRecord) -> None:
        """The point first, then the run's record that names it (one transaction where the
        store has them; see StateStore.record_point for why this order is safe without)."""
        self.put_items([point_item(point), run_item(record)])

    def get_point(self, point_id: str) -> RecoveryPoint | None:
        data = self.get_item(POINT, point_id)
        return RecoveryPoint.model_validate_json(data) if data is not None else None

    def list_points(self, policy: str, group: str | None = None) -> list[RecoveryPoint]:
        points = self._listed(POINT, policy, group, RecoveryPoint)
        return sorted(points, key=lambda p: (utc(p.created_at), p.id), reverse=True)

    def delete_point(self, point_id: str) -> None:
        self.delete_item(POINT, point_id)

    def _listed(self, kind: Kind, policy: str, group: str | None, model: type[M]) -> list[M]:
        records = [
            model.model_validate_json(data) for data in self.query_items(kind, policy, group)
        ]
        return [r for r in records if r.policy == policy and group in (None, r.group)]

    # ------------------------------------------------------------------------------ outbox

    def next_seq(self) -> int:
        """Microseconds now, strictly increasing within this store."""
        with self._seq_lock:
            self._last_seq = max(time.time_ns() // 1000, self._last_seq + 1)
            return self._last_seq

    def outbox_add(self, events: Sequence[CloudEvent]) -> None:
        """Writes the events in as few items as their size allows (one per call, usually)."""
        unique: dict[str, CloudEvent] = {}
        for event in events:
            unique.setdefault(event.id, event)
        if not unique:
            return
        base = self.next_seq()
        pairs = [(event.id, event.to_json()) for event in unique.values()]
        self.put_queued(
            [
                _batch(chunk, f"{base:020d}-{n:06d}")
                for n, chunk in enumerate(_chunks(pairs, self.OUTBOX_BATCH_BYTES))
            ]
        )

    def outbox_pending(self, limit: int = 500) -> list[CloudEvent]:
        out: dict[str, CloudEvent] = {}
        batches = self._scan_batches(limit)
        with self._seq_lock:
            self._read_batches = {batch.key: batch for batch in batches}
        for batch in batches:
            for event in batch.events:
                out.setdefault(event.id, event)
        return list(out.values())[:limit]

    def outbox_remove(self, event_ids: Sequence[str]) -> None:
        """Deletes every batch all of whose events are removed; a batch some of whose events
        stay is written again with those (the new batch first, so a crash in between leaves
        an event twice, read once, rather than not at all).

        The batches come from the last `outbox_pending` when they hold every event removed
        (what a flush publishes, it has just read), else from a new scan. A batch's key names
        its events, so a batch read before is never wrong about what it holds; one written
        since by another process with some of the same events keeps them, to be published
        again (the outbox delivers at least once)."""
        gone = set(event_ids)
        if not gone:
            return
        with self._seq_lock:
            read = self._read_batches
        if gone <= {event.id for batch in read.values() for event in batch.events}:
            batches = list(read.values())
        else:
            batches = self._scan_batches(OUTBOX_SCAN_LIMIT)
        emptied: list[str] = []
        kept: list[Queued] = []
        for batch in batches:
            if not gone.intersection(e.id for e in batch.events):
                continue
            emptied.append(batch.key)
            left = [e for e in batch.events if e.id not in gone]
            if left:
                kept.append(_batch([(e.id, e.to_json()) for e in left], batch.seq))
        if kept:
            self.put_queued(kept)
        if emptied:
            self.delete_queued(emptied)
        removed = set(emptied)
        with self._seq_lock:
            self._read_batches = {k: b for k, b in self._read_batches.items() if k not in removed}

    def _scan_batches(self, limit: int) -> list[_Batch]:
        return [_read_batch(data) for data in self.scan_queued(limit)]
