"""The catalog in one Azure Table: runs, recovery points, group locks, trigger claims,
cooldowns and the outbox.

Table design (one table; infra creates it, `create_table()` does it for tests and scripts):

    entity      PartitionKey  RowKey                      other properties
    run         run           <run id>                    policy, grp, started, status, data
    point       point         <point id>                  policy, grp, created, data
    lock        lock          <key>                       run_id, expires_us
    trigger     trigger       <trigger id>                run_id, created
    cooldown    cooldown      <key>                       fired_us
    outbox      outbox        s-<added µs>-<n>-<event id> data           (the ordered copy)
    outbox      outbox        i-<event id>                seq (the RowKey of the ordered copy)

Keys are percent-encoded (Azure resource ids hold `/`, which a RowKey may not), and hashed when
the encoded key would be longer than a RowKey may be. Times in comparisons are integers
(microseconds since the epoch, as decimal text), so comparisons are exact.

Atomicity, with ETags instead of DynamoDB's conditions:
  * a lock is taken by `create_entity` (fails when it exists) or, when the holder's lease has
    expired or is ours, by replacing the entity with `If-Match: <etag we read>`; losing either
    race re-reads and reports the winner.
  * a trigger is claimed by `create_entity`; the loser reads the winner's run id.
  * a cooldown fires by `create_entity` or by an `If-Match` replace of an old enough firing.
  * an outbox event is added by one entity-group transaction that creates both its id marker
    and its ordered copy, so adding an id twice keeps one, and the order is the RowKey order.

Requests saved where nothing is lost by it: the store remembers the ETag of each lock it took,
so releasing it is one conditional DELETE (a lock taken over since answers 412 and is read
again, as before); and the ordered copy of each outbox batch it wrote or read, so removing
published batches is one transaction per 50 of them (both entities each) instead of a read
and two deletes per batch (a batch it does not know, or a transaction that fails because
another process removed one of them first, is removed the old way, one by one).

Large records: a string property holds at most 64 KiB (32K UTF-16 characters), an entity 1 MiB.
A record's JSON up to 30,000 characters is stored as text (`data`); a larger one is
zlib-compressed and split over binary properties `z0`..`zN` (60,000 bytes each, `zn` = N+1) of
the same entity, so saving a record stays one atomic write. Records whose compressed JSON
exceeds 14 chunks (840,000 bytes) are refused with a ProviderError: the JSON of a run compresses
roughly tenfold, so that is a run of several thousand machines.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import (
    TableClient,
    TableEntity,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)

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

#: Records up to this many characters are stored as plain text.
TEXT_LIMIT = 30_000
#: Bytes per binary chunk property (a property may hold 64 KiB).
CHUNK_BYTES = 60_000
#: Chunks per entity (an entity may hold 1 MiB in all).
MAX_CHUNKS = 14
#: A RowKey may hold 1 KiB.
KEY_LIMIT = 512
#: Attempts at a compare-and-swap before giving up (each loss means someone else progressed).
CAS_ATTEMPTS = 5
#: Operations per entity-group transaction (the service's limit).
TRANSACTION_OPS = 100
#: The batch key at the start of an outbox batch's JSON (quiesce.state_base).
_BATCH_KEY = re.compile(r'^\{"batch":"([^"\\]+)"')

LOCK, TRIGGER, COOLDOWN, OUTBOX = ("lock", "trigger", "cooldown", "outbox")
#: Each kind's order property (its PartitionKey is the kind's name).
_ORDER: dict[Kind, str] = {RUN: "started", POINT: "created"}


def row_key(text: str) -> str:
    """A RowKey for any text: percent-encoded (no `/ \\ # ?` or control characters), hashed
    when too long."""
    encoded = quote(text, safe="-_.~:@!$&'()*+,;=")
    if len(encoded) > KEY_LIMIT:
        return "sha256-" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    return encoded


def encode(text: str) -> dict[str, Any]:
    """The properties that hold a record's JSON (see the module's notes on large records)."""
    if len(text) <= TEXT_LIMIT:
        return {"data": text}
    packed = pack(text)
    parts = [packed[i : i + CHUNK_BYTES] for i in range(0, len(packed), CHUNK_BYTES)]
    if len(parts) > MAX_CHUNKS:
        raise ProviderError(
            f"a catalog record of {len(text)} characters compresses to {len(packed)} bytes, "
            f"more than an Azure Table entity can hold ({MAX_CHUNKS * CHUNK_BYTES} bytes)",
            code="RecordTooLarge",
        )
    properties: dict[str, Any] = {f"z{i}": part for i, part in enumerate(parts)}
    properties["zn"] = len(parts)
    return properties


def decode(entity: TableEntity) -> str:
    if "data" in entity:
        return str(entity["data"])
    count = int(entity["zn"])
    packed = b"".join(bytes(entity[f"z{i}"]) for i in range(count))
    return unpack(packed)


def _etag(entity: TableEntity) -> str:
    return str(entity.metadata["etag"])


class TableStateStore(CatalogStateStore):
    """The StateStore port over one Azure Table (azure-data-tables)."""

    def __init__(
        self,
        service: TableServiceClient,
        table: str,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__()
        self.service = service
        self.table = table
        self.clock = clock
        self.client: TableClient = service.get_table_client(table)
        self._remembered = threading.Lock()
        #: (lock RowKey, run id) -> the ETag of the lock entity this store wrote.
        self._lock_etags: dict[tuple[str, str], str] = {}
        #: An outbox batch's key -> the RowKey of its ordered copy, for batches written or read.
        self._ordered: dict[str, str] = {}

    def create_table(self) -> None:
        """Creates the table if it is missing (infra normally does this)."""
        self.service.create_table_if_not_exists(self.table)

    # ------------------------------------------------------------------------------ helpers

    def _get(self, partition: str, key: str) -> TableEntity | None:
        try:
            return self.client.get_entity(partition, key)
        except ResourceNotFoundError:
            return None

    def _create(self, entity: dict[str, Any]) -> str | None:
        """Creates the entity; its ETag, or None when one with its keys exists already."""
        try:
            written = self.client.create_entity(entity)
        except ResourceExistsError:
            return None
        return str(written.get("etag") or "*")

    def _replace_if(self, entity: dict[str, Any], etag: str) -> str | None:
        """Replaces the entity if it is unchanged since it was read with `etag`; its new ETag,
        or None when it changed."""
        try:
            written = self.client.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return str(written.get("etag") or "*")

    def _query(self, text: str, parameters: dict[str, Any]) -> Iterable[TableEntity]:
        return self.client.query_entities(text, parameters=parameters)

    # ------------------------------------------------------------------------------ items

    def put_items(self, items: Sequence[Item]) -> None:
        for item in items:  # in order: a point before the run that names it
            entity = {
                "PartitionKey": item.kind,
                "RowKey": row_key(item.key),
                "policy": item.policy,
                "grp": item.group,
                _ORDER[item.kind]: str(item.at_us),
                **encode(item.data),
            }
            if item.status:
                entity["status"] = item.status
            self.client.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def get_item(self, kind: Kind, key: str) -> str | None:
        entity = self._get(kind, row_key(key))
        return decode(entity) if entity is not None else None

    def query_items(self, kind: Kind, policy: str, group: str | None) -> list[str]:
        query = "PartitionKey eq @pk and policy eq @policy"
        parameters: dict[str, Any] = {"pk": kind, "policy": policy}
        if group is not None:
            query += " and grp eq @grp"
            parameters["grp"] = group
        return [decode(e) for e in self._query(query, parameters)]

    def delete_item(self, kind: Kind, key: str) -> None:
        self.client.delete_entity(kind, row_key(key))  # absent: no error

    # ------------------------------------------------------------------------------ locks

    def acquire_lock(self, key: str, run_id: str, expires_at: datetime) -> LockHolder | None:
        entity = {
            "PartitionKey": LOCK,
            "RowKey": row_key(key),
            "run_id": run_id,
            "expires_us": str(micros(expires_at)),
        }
        for _ in range(CAS_ATTEMPTS):
            written = self._create(entity)
            if written is not None:
                self._took_lock(entity["RowKey"], run_id, written)
                return None
            held = self._get(LOCK, entity["RowKey"])
            if held is None:
                continue  # released between our create and our read
            holder = LockHolder(
                run_id=str(held["run_id"]), expires_at=from_micros(int(held["expires_us"]))
            )
            free = holder.run_id == run_id or int(held["expires_us"]) < micros(self.clock())
            if not free:
                return holder
            written = self._replace_if(entity, _etag(held))
            if written is not None:
                self._took_lock(entity["RowKey"], run_id, written)
                return None
        raise ProviderError(
            f"the lock {key!r} changed hands {CAS_ATTEMPTS} times while it was taken",
            code="LockContention",
        )

    def _took_lock(self, key: str, run_id: str, etag: str) -> None:
        if etag != "*":
            with self._remembered:
                self._lock_etags[(key, run_id)] = etag

    def release_lock(self, key: str, run_id: str) -> None:
        rk = row_key(key)
        with self._remembered:
            etag = self._lock_etags.pop((rk, run_id), None)
        if etag is not None:
            # Unchanged since we wrote it: still ours; one DELETE. Changed: read it (below).
            with contextlib.suppress(ResourceModifiedError):
                self._delete_if(LOCK, rk, etag)
                return
        held = self._get(LOCK, rk)
        if held is None or str(held["run_id"]) != run_id:
            return
        # Modified: someone took it over after it expired; not ours to delete any more.
        with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
            self._delete_if(LOCK, rk, _etag(held))

    def _delete_if(self, partition: str, key: str, etag: str) -> None:
        """Deletes the entity if it is unchanged since `etag` (ResourceModifiedError if not;
        gone already is no error)."""
        with contextlib.suppress(ResourceNotFoundError):
            self.client.delete_entity(
                partition, key, etag=etag, match_condition=MatchConditions.IfNotModified
            )

    # ------------------------------------------------------------------------------ triggers

    def claim_trigger(self, trigger_id: str, run_id: str) -> str | None:
        """Claims `trigger_id` for `run_id`; returns the run that claimed it before, if another.

        Claiming again for the same run is not a duplicate (a retried call): it returns None.
        """
        entity = {
            "PartitionKey": TRIGGER,
            "RowKey": row_key(trigger_id),
            "run_id": run_id,
            "trigger_id": trigger_id,
            "created": str(micros(self.clock())),
        }
        if self._create(entity):
            return None
        earlier = self._get(TRIGGER, entity["RowKey"])
        earlier_run = str(earlier["run_id"]) if earlier is not None else None
        return None if earlier_run in (None, run_id) else earlier_run

    def trigger_owner(self, trigger_id: str) -> str | None:
        entity = self._get(TRIGGER, row_key(trigger_id))
        return None if entity is None else str(entity["run_id"])

    def claim_cooldown(self, key: str, now: datetime, cooldown_seconds: float) -> bool:
        """Fires `key` at `now` if it last fired at least `cooldown_seconds` earlier (or never)."""
        fired = micros(now)
        threshold = fired - round(cooldown_seconds * 1_000_000)
        entity = {"PartitionKey": COOLDOWN, "RowKey": row_key(key), "fired_us": str(fired)}
        for _ in range(CAS_ATTEMPTS):
            if self._create(entity):
                return True
            last = self._get(COOLDOWN, entity["RowKey"])
            if last is None:
                continue
            last_fired = int(last["fired_us"])
            if last_fired == fired:
                return True  # a retry of our own write that went through
            if last_fired > threshold:
                return False
            if self._replace_if(entity, _etag(last)):
                return True
        return False  # others kept firing it: it has just fired

    def fired_at(self, key: str) -> datetime | None:
        entity = self._get(COOLDOWN, row_key(key))
        return None if entity is None else from_micros(int(entity["fired_us"]))

    # ------------------------------------------------------------------------------ outbox

    def put_queued(self, batches: Sequence[Queued]) -> None:
        def add(batch: Queued) -> None:
            key = row_key(batch.key)
            ordered = f"s-{batch.seq}-{key}"
            operations: list[Any] = [
                ("create", {"PartitionKey": OUTBOX, "RowKey": f"i-{key}", "seq": ordered}),
                ("create", {"PartitionKey": OUTBOX, "RowKey": ordered, **encode(batch.data)}),
            ]
            try:
                self.client.submit_transaction(operations)
            except TableTransactionError as exc:
                if str(getattr(exc, "error_code", "")) != "EntityAlreadyExists":
                    raise  # else: that batch is in the outbox already (its copy, not ours)
            else:
                self._remember_ordered(batch.key, ordered)

        each(add, batches)

    def _remember_ordered(self, batch_key: str, ordered: str) -> None:
        with self._remembered:
            self._ordered[batch_key] = ordered

    def scan_queued(self, limit: int) -> list[str]:
        out: list[str] = []
        entities = self.client.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": OUTBOX, "lo": "s-", "hi": "s."},
            results_per_page=min(limit, 1000),
        )
        for entity in entities:
            data = decode(entity)
            out.append(data)
            found = _BATCH_KEY.match(data)
            ordered = str(entity["RowKey"])
            if found and ordered.endswith(f"-{row_key(found[1])}"):
                self._remember_ordered(found[1], ordered)
            if len(out) >= limit:
                break
        return out

    def delete_queued(self, keys: Sequence[str]) -> None:
        """Both entities of every batch whose ordered copy is known, in transactions; the
        others (and those of a transaction that failed) one by one."""
        with self._remembered:
            known = [(k, self._ordered.pop(k)) for k in keys if k in self._ordered]
        taken = {k for k, _ in known}
        unknown = [k for k in keys if k not in taken]
        per_transaction = TRANSACTION_OPS // 2
        for start in range(0, len(known), per_transaction):
            part = known[start : start + per_transaction]
            operations: list[Any] = []
            for batch_key, ordered in part:
                operations.append(("delete", {"PartitionKey": OUTBOX, "RowKey": ordered}))
                operations.append(
                    ("delete", {"PartitionKey": OUTBOX, "RowKey": f"i-{row_key(batch_key)}"})
                )
            try:
                self.client.submit_transaction(operations)
            except TableTransactionError:
                unknown.extend(batch_key for batch_key, _ in part)  # one gone already, say
        self._delete_one_by_one(unknown)

    def _delete_one_by_one(self, keys: Sequence[str]) -> None:
        def remove(batch_key: str) -> None:
            key = f"i-{row_key(batch_key)}"
            marker = self._get(OUTBOX, key)
            if marker is None:
                return
            # The copy first: a marker without a copy only blocks re-adding the same id.
            self.client.delete_entity(OUTBOX, str(marker["seq"]))
            self.client.delete_entity(OUTBOX, key)

        each(remove, keys)
