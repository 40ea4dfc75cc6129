"""The catalog in Firestore (native mode): runs, recovery points, group locks, trigger claims,
cooldowns and the outbox.

Layout (collection names start with the store's prefix, `quiesce` by default):

    collection          document id         fields
    <p>-runs            <run id>            policy, grp, started_us, data | data_z
    <p>-points          <point id>          policy, grp, created_us, data | data_z
    <p>-locks           <key>               run_id, expires_us, expire_at
    <p>-triggers        <trigger id>        run_id, created_us, expire_at
    <p>-cooldowns       <key>               fired_us, expire_at
    <p>-outbox          <event id>          seq, data

Document ids are the keys percent-encoded (`/` is not allowed in an id). Everything that must
be atomic is one conditional write, which Firestore applies or refuses as a whole:

- a trigger is claimed by creating its document (`create`: refused when it exists; then the
  holder is read, and a claim by the same run is not a duplicate);
- a lock is taken by creating its document; when it exists, it is read, and one held by
  another run that has not expired names its holder; one that expired, or is ours, is
  rewritten with an update conditional on the update time read (`last_update_time`), so of
  several callers taking over an expired lock exactly one write goes through, and the others
  read again and see the winner;
- a lock is released by a delete conditional on the update time of the store's own write of
  it (remembered by the store that took it): unchanged since, it is still ours. A store that
  did not take it, or whose condition fails (taken over meanwhile), reads it and deletes it,
  again conditionally, only when it names the run.

- a cooldown fires with a create when it never fired; else with an update conditional on the
  version read, when its last firing is old enough. A caller whose write lost the race reads
  again and sees the winner's firing. (It was a transaction: under contention Firestore aborts
  transactions again and again, and eight racing callers could all run out of attempts.)

So a free trigger, a free lock, its release and a first firing are one request each (a
Commit). Times in comparisons are integers (microseconds since the epoch), so they are exact.

Listing runs and points uses equality filters only (policy, and group when given), which
Firestore serves from its automatic single-field indexes: no composite index to deploy. The
newest-first order is applied here. Queries are strongly consistent.

Records are JSON strings; one over 900 KB is stored zlib-compressed (`data_z`, bytes) so a
document stays under Firestore's 1 MiB limit. `expire_at` (a timestamp) is meant for a
Firestore TTL policy on the locks, triggers and cooldowns collections (docs/gcp-functions.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from google.api_core.exceptions import AlreadyExists, Conflict, FailedPrecondition, NotFound
from google.cloud import firestore

from quiesce.errors import ProviderError
from quiesce.ports import LockHolder
from quiesce.record import utcnow
from quiesce.state_base import (
    POINT,
    RUN,
    CatalogStateStore,
    Item,
    Kind,
    Queued,
    each,
    from_micros,
    micros,
    pack,
    unpack,
)

#: Above this, a record is stored compressed (a document may hold 1 MiB).
COMPRESS_ABOVE = 900_000
#: The most a compressed record may take (the document's other fields need the rest).
MAX_PACKED = 1_040_000
DAY = timedelta(days=1)
#: A conditional write that keeps losing races is retried this often before
#: giving up.
TRANSACTION_ATTEMPTS = 25
#: What a conditional write that lost a race raises: the condition failed, or the document is
#: gone. Either way, read it again.
LOST_RACE = (FailedPrecondition, NotFound)
#: Firestore's limit of writes in one batch.
BATCH_LIMIT = 500
#: Each kind's collection (after the prefix) and order field.
_COLLECTION: dict[Kind, str] = {RUN: "runs", POINT: "points"}
_ORDER: dict[Kind, str] = {RUN: "started_us", POINT: "created_us"}


def doc_id(key: str) -> str:
    """A valid document id for any key: percent-encoded, hashed when still unusable."""
    encoded = quote(key, safe="")
    if not encoded or encoded in (".", "..") or encoded.startswith("__"):
        return "k-" + hashlib.sha256(key.encode("utf-8")).hexdigest()
    if len(encoded.encode("utf-8")) > 1000:
        return "h-" + hashlib.sha256(key.encode("utf-8")).hexdigest()
    return encoded


def key_of(document_id: str) -> str:
    return unquote(document_id)


class FirestoreStateStore(CatalogStateStore):
    """The StateStore port over a handful of Firestore collections."""

    def __init__(
        self,
        client: firestore.Client,
        prefix: str = "quiesce",
        *,
        clock: Callable[[], datetime] = utcnow,
        trigger_ttl_days: float = 90,
    ) -> None:
        super().__init__()
        self.client = client
        self.prefix = prefix
        self.clock = clock
        self.trigger_ttl = timedelta(days=trigger_ttl_days)
        #: (lock key, run id) -> the update time of this store's write of that lock.
        self._lock_writes: dict[tuple[str, str], datetime] = {}
        self._remembered = threading.Lock()

    def _collection(self, name: str) -> firestore.CollectionReference:
        return self.client.collection(f"{self.prefix}-{name}")

    def _doc(self, collection: str, key: str) -> firestore.DocumentReference:
        return self._collection(collection).document(doc_id(key))

    # ------------------------------------------------------------------------------ items

    def put_items(self, items: Sequence[Item]) -> None:
        """One write, or one batch commit for several (atomic: a point and the run that names
        it are stored together or not at all)."""
        batch = self.client.batch() if len(items) > 1 else None
        for item in items:
            fields: dict[str, Any] = {
                "policy": item.policy,
                "grp": item.group,
                _ORDER[item.kind]: item.at_us,
                **_encode(item.data),
            }
            if item.status:
                fields["status"] = item.status
            ref = self._doc(_COLLECTION[item.kind], item.key)
            if batch is None:
                ref.set(fields)
            else:
                batch.set(ref, fields)
        if batch is not None:
            batch.commit()

    def get_item(self, kind: Kind, key: str) -> str | None:
        snapshot = self._doc(_COLLECTION[kind], key).get()
        data = snapshot.to_dict() if snapshot.exists else None
        return _decode(data) if data else None

    def query_items(self, kind: Kind, policy: str, group: str | None) -> list[str]:
        """Equality filters only: Firestore's automatic single-field indexes serve them."""
        query: Any = self._collection(_COLLECTION[kind]).where(
            filter=firestore.FieldFilter("policy", "==", policy)
        )
        if group is not None:
            query = query.where(filter=firestore.FieldFilter("grp", "==", group))
        return [_decode(snapshot.to_dict() or {}) for snapshot in query.stream()]

    def delete_item(self, kind: Kind, key: str) -> None:
        self._doc(_COLLECTION[kind], key).delete()

    # ------------------------------------------------------------------------------ locks

    def acquire_lock(self, key: str, run_id: str, expires_at: datetime) -> LockHolder | None:
        """One create when the lock is free; else a read, and a conditional update when it
        expired or is ours (see the module's docstring)."""
        ref = self._doc("locks", key)
        expires = micros(expires_at)
        fields = {
            "key": key,
            "run_id": run_id,
            "expires_us": expires,
            "expire_at": from_micros(expires) + DAY,
        }
        for _ in range(TRANSACTION_ATTEMPTS):
            try:
                written = ref.create(fields)
            except (AlreadyExists, Conflict):
                pass
            else:
                self._wrote_lock(key, run_id, written.update_time)
                return None
            snapshot = ref.get()
            held = snapshot.to_dict() if snapshot.exists else None
            if not held:
                continue  # released meanwhile: create it
            if held.get("run_id") != run_id and int(held["expires_us"]) >= micros(self.clock()):
                return LockHolder(
                    run_id=str(held["run_id"]), expires_at=from_micros(int(held["expires_us"]))
                )
            try:
                written = ref.update(fields, option=self._unchanged_since(snapshot.update_time))
            except LOST_RACE:
                continue  # another caller wrote it first: read it again
            self._wrote_lock(key, run_id, written.update_time)
            return None
        raise ProviderError(
            f"lock {key}: still contended after {TRANSACTION_ATTEMPTS} attempts",
            code="LockContended",
        )

    def release_lock(self, key: str, run_id: str) -> None:
        """One delete conditional on this store's own write of the lock; else (another store
        took it, or it changed since) read it and delete it conditionally if it names the run."""
        ref = self._doc("locks", key)
        with self._remembered:
            written = self._lock_writes.pop((key, run_id), None)
        if written is not None:
            try:
                ref.delete(option=self._unchanged_since(written))
                return
            except LOST_RACE:
                pass  # taken over, renewed elsewhere, or gone: read it
        for _ in range(TRANSACTION_ATTEMPTS):
            snapshot = ref.get()
            held = snapshot.to_dict() if snapshot.exists else None
            if not held or held.get("run_id") != run_id:
                return
            try:
                ref.delete(option=self._unchanged_since(snapshot.update_time))
                return
            except LOST_RACE:
                continue
        raise ProviderError(
            f"lock {key}: still contended after {TRANSACTION_ATTEMPTS} attempts",
            code="LockContended",
        )

    def _wrote_lock(self, key: str, run_id: str, update_time: datetime) -> None:
        with self._remembered:
            self._lock_writes[(key, run_id)] = update_time

    def _unchanged_since(self, update_time: datetime) -> Any:
        """The precondition of a write that goes through only on the version read (or written)."""
        return self.client.write_option(last_update_time=update_time)

    # ------------------------------------------------------------------------------ triggers

    def claim_trigger(self, trigger_id: str, run_id: str) -> str | None:
        """Claims `trigger_id` for `run_id`; returns the run that claimed it before, if another.

        One create; when the claim exists, one read of its holder. Claiming again for the same
        run is not a duplicate (a retried call): it returns None.
        """
        ref = self._doc("triggers", trigger_id)
        now = self.clock()
        fields = {
            "trigger_id": trigger_id,
            "run_id": run_id,
            "created_us": micros(now),
            "expire_at": now + self.trigger_ttl,
        }
        for _ in range(TRANSACTION_ATTEMPTS):
            try:
                ref.create(fields)
            except (AlreadyExists, Conflict):
                pass
            else:
                return None
            snapshot = ref.get()
            earlier = snapshot.to_dict() if snapshot.exists else None
            if earlier:
                earlier_run = str(earlier.get("run_id"))
                return None if earlier_run == run_id else earlier_run
            # gone meanwhile (its TTL): claim it again
        raise ProviderError(
            f"trigger {trigger_id}: still contended after {TRANSACTION_ATTEMPTS} attempts",
            code="TriggerContended",
        )

    def trigger_owner(self, trigger_id: str) -> str | None:
        snapshot = self._doc("triggers", trigger_id).get()
        data = snapshot.to_dict() if snapshot.exists else None
        return str(data["run_id"]) if data else None

    def claim_cooldown(self, key: str, now: datetime, cooldown_seconds: float) -> bool:
        """Fires `key` at `now` if it last fired at least `cooldown_seconds` earlier (or never).

        One create when it never fired; else a read, and an update conditional on the version
        read (as the lock is taken). Of racing callers exactly one write goes through; each
        loser reads again and sees the winner's firing. No transaction: under contention the
        emulator (and Firestore) abort transactions over and over, a conditional write never
        leaves every caller without an answer."""
        ref = self._doc("cooldowns", key)
        fired = micros(now)
        threshold = fired - round(cooldown_seconds * 1_000_000)
        fields = {
            "key": key,
            "fired_us": fired,
            "expire_at": from_micros(fired) + timedelta(seconds=cooldown_seconds) + DAY,
        }
        for _ in range(TRANSACTION_ATTEMPTS):
            try:
                ref.create(fields)
            except (AlreadyExists, Conflict):
                pass
            else:
                return True
            snapshot = ref.get()
            last = snapshot.to_dict() if snapshot.exists else None
            if not last:
                continue  # expired (TTL) meanwhile: create it
            last_fired = int(last["fired_us"])
            if last_fired == fired:
                return True  # our own write, through a retry
            if last_fired > threshold:
                return False
            try:
                ref.update(fields, option=self._unchanged_since(snapshot.update_time))
            except LOST_RACE:
                continue  # another caller fired it first: read it again
            return True
        raise ProviderError(
            f"cooldown {key}: still contended after {TRANSACTION_ATTEMPTS} attempts",
            code="CooldownContended",
        )

    def fired_at(self, key: str) -> datetime | None:
        snapshot = self._doc("cooldowns", key).get()
        data = snapshot.to_dict() if snapshot.exists else None
        return from_micros(int(data["fired_us"])) if data else None

    # ------------------------------------------------------------------------------ outbox

    def put_queued(self, batches: Sequence[Queued]) -> None:
        def put(batch: Queued) -> None:
            # AlreadyExists: that batch is in the outbox already.
            with contextlib.suppress(AlreadyExists, Conflict):
                self._doc("outbox", batch.key).create({"seq": batch.seq, "data": batch.data})

        each(put, batches)

    def scan_queued(self, limit: int) -> list[str]:
        query = self._collection("outbox").order_by("seq").limit(limit)
        return [str((snapshot.to_dict() or {})["data"]) for snapshot in query.stream()]

    def delete_queued(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), BATCH_LIMIT):
            batch = self.client.batch()
            for key in keys[start : start + BATCH_LIMIT]:
                batch.delete(self._doc("outbox", key))
            batch.commit()


def _encode(text: str) -> dict[str, Any]:
    data = text.encode("utf-8")
    if len(data) > COMPRESS_ABOVE:
        packed = pack(text)
        if len(packed) > MAX_PACKED:
            raise ProviderError(
                f"a record of {len(data)} bytes compresses to {len(packed)}: more than a "
                "Firestore document can hold",
                code="RecordTooLarge",
            )
        return {"data_z": packed}
    return {"data": text}


def _decode(data: dict[str, Any]) -> str:
    if "data_z" in data:
        return unpack(data["data_z"])
    return str(data["data"])
