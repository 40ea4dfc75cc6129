"""The catalog in one DynamoDB table: runs, recovery points, group locks, trigger claims,
cooldowns and the outbox.

Table design (single table; Terraform creates it, docs/aws.md has the definition):

    key: pk (S, hash), sk (S, range)
    gsi1: gsi1pk (S, hash), gsi1sk (S, range), projection INCLUDE [grp] -- runs and points by
          policy, newest first
    lsi1: pk (hash), lsi1sk (S, range), projection ALL -- the outbox in the order events came
    TTL attribute: ttl (N, epoch seconds)

    item        pk                sk            other attributes
    run         RUN#<run id>      RUN           gsi1pk RUNS#<policy>, gsi1sk <started>#<run id>,
                                                grp, status, data (the record's JSON)
    point       POINT#<id>        POINT         gsi1pk POINTS#<policy>, gsi1sk <created>#<id>,
                                                grp, data
    lock        LOCK#<key>        LOCK          run_id, expires_us (N), ttl
    trigger     TRIGGER#<id>      TRIGGER       run_id, created_at, ttl
    cooldown    COOLDOWN#<key>    COOLDOWN      fired_us (N), ttl
    outbox      OUTBOX            EVENT#<key>   lsi1sk <added_us>-<n>, data (a batch of events)

Everything that must be atomic is one conditional write: a lock is taken when it is absent,
expired or already ours (`attribute_not_exists(pk) OR expires_us < :now OR run_id = :me`); a
trigger is claimed when absent; a cooldown fires when its last firing is old enough; an outbox
batch (the events one save queued; its key derived from their ids) is added when its key is
absent, and published batches are deleted with BatchWriteItem, 25 per call. Times in conditions
are integers (microseconds since the epoch), so comparisons are exact. Listing runs and points
reads the index (eventually consistent) for the ids, then the items themselves with strongly
consistent reads, so a listed record is never stale. Records over 350 KB are stored
zlib-compressed (`data_z`).

Retries: throttling and DynamoDB's internal errors are retried with backoff. That is safe here
because every write is idempotent: the same key and value, and every condition also accepts a
repeat of the same write (the same run id, the same firing time, the same batch key).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast

from botocore.exceptions import ClientError

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
    sortable,
    unpack,
)
from quiesce_aws.clients import ClientFactory, chunks
from quiesce_aws.permissions import Permission
from quiesce_aws.retry import DYNAMODB_THROTTLING, Backoff, error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

GSI = "gsi1"
LSI = "lsi1"
OUTBOX_PK = "OUTBOX"
#: Above this, a record is stored compressed (items may hold 400 KB).
COMPRESS_ABOVE = 350_000
DAY = 86_400
#: Each kind's key prefix and sort key (its index partition is the prefix and `S#<policy>`).
_KEYS: dict[Kind, tuple[str, str]] = {RUN: ("RUN", "RUN"), POINT: ("POINT", "POINT")}


def table_definition(name: str) -> dict[str, Any]:
    """The table's CreateTable arguments (what Terraform must create; tests use it too)."""
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": attribute, "AttributeType": "S"}
            for attribute in ("pk", "sk", "gsi1pk", "gsi1sk", "lsi1sk")
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": GSI,
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["grp"]},
            }
        ],
        "LocalSecondaryIndexes": [
            {
                "IndexName": LSI,
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "lsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }


def S(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def N(value: int | float) -> AttributeValueTypeDef:
    return {"N": str(value)}


def _table_permissions(*actions: str) -> list[Permission]:
    return [Permission(f"dynamodb:{a}", "arn:aws:dynamodb:*:*:table/quiesce*") for a in actions]


def _index_permission(index: str) -> Permission:
    return Permission("dynamodb:Query", f"arn:aws:dynamodb:*:*:table/quiesce*/index/{index}")


class DynamoDbStateStore(CatalogStateStore):
    """The StateStore port over one DynamoDB table."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "save_run": _table_permissions("PutItem"),
        "get_run": _table_permissions("GetItem"),
        "list_runs": [_index_permission(GSI), *_table_permissions("BatchGetItem")],
        "acquire_lock": _table_permissions("PutItem", "GetItem"),
        "release_lock": _table_permissions("DeleteItem"),
        "claim_trigger": _table_permissions("PutItem", "GetItem"),
        "claim_cooldown": _table_permissions("UpdateItem"),
        "fired_at": _table_permissions("GetItem"),
        "trigger_owner": _table_permissions("GetItem"),
        "save_point": _table_permissions("PutItem"),
        "get_point": _table_permissions("GetItem"),
        "list_points": [_index_permission(GSI), *_table_permissions("BatchGetItem")],
        "delete_point": _table_permissions("DeleteItem"),
        "outbox_add": _table_permissions("PutItem"),
        "outbox_pending": [_index_permission(LSI)],
        "outbox_remove": [_index_permission(LSI), *_table_permissions("PutItem", "BatchWriteItem")],
    }

    def __init__(
        self,
        clients: ClientFactory,
        table: str,
        region: str,
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], datetime] = utcnow,
        trigger_ttl_days: float = 90,
    ) -> None:
        super().__init__()
        self.clients = clients
        self.table = table
        self.region = region
        self.backoff = backoff or Backoff(attempts=8, base=0.05, cap=2.0)
        self.clock = clock
        self.trigger_ttl_days = trigger_ttl_days

    @property
    def client(self) -> DynamoDBClient:
        return self.clients.dynamodb(self.region)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        return self.backoff.call(fn, retry_on=DYNAMODB_THROTTLING, what=f"DynamoDB {what}")

    # ------------------------------------------------------------------------------ items

    def put_items(self, items: Sequence[Item]) -> None:
        for item in items:  # in order: a point before the run that names it
            self._put(item)

    def _put(self, item: Item) -> None:
        prefix, sk = _KEYS[item.kind]
        put: dict[str, AttributeValueTypeDef] = {
            "pk": S(f"{prefix}#{item.key}"),
            "sk": S(sk),
            "gsi1pk": S(f"{prefix}S#{item.policy}"),
            "gsi1sk": S(f"{sortable(item.at)}#{item.key}"),
            "grp": S(item.group),
            **_encode(item.data),
        }
        if item.status:
            put["status"] = S(item.status)
        self._call("PutItem", lambda: self.client.put_item(TableName=self.table, Item=put))

    def get_item(self, kind: Kind, key: str) -> str | None:
        prefix, sk = _KEYS[kind]
        item = self._get(f"{prefix}#{key}", sk)
        return _decode(item) if item else None

    def query_items(self, kind: Kind, policy: str, group: str | None) -> list[str]:
        prefix, sk = _KEYS[kind]
        return self._list(f"{prefix}S#{policy}", group, sk)

    def delete_item(self, kind: Kind, key: str) -> None:
        prefix, sk = _KEYS[kind]
        self._call(
            "DeleteItem",
            lambda: self.client.delete_item(
                TableName=self.table, Key={"pk": S(f"{prefix}#{key}"), "sk": S(sk)}
            ),
        )

    # ------------------------------------------------------------------------------ locks

    def acquire_lock(self, key: str, run_id: str, expires_at: datetime) -> LockHolder | None:
        expires = micros(expires_at)
        item = {
            "pk": S(f"LOCK#{key}"),
            "sk": S("LOCK"),
            "run_id": S(run_id),
            "expires_us": N(expires),
            "ttl": N(expires // 1_000_000 + DAY),
        }
        for _ in range(3):
            now = micros(self.clock())
            try:
                self._call(
                    "PutItem",
                    lambda now=now: self.client.put_item(  # type: ignore[misc]
                        TableName=self.table,
                        Item=item,
                        ConditionExpression=(
                            "attribute_not_exists(pk) OR expires_us < :now OR run_id = :me"
                        ),
                        ExpressionAttributeValues={":now": N(now), ":me": S(run_id)},
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    ),
                )
                return None
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                held = _old_item(exc) or self._get(f"LOCK#{key}", "LOCK")
            if held:
                return LockHolder(
                    run_id=held["run_id"]["S"],
                    expires_at=from_micros(int(held["expires_us"]["N"])),
                )
            # Released between our write and our read: try again.
        raise RuntimeError(f"the lock {key!r} changed hands three times while it was taken")

    def release_lock(self, key: str, run_id: str) -> None:
        try:
            self._call(
                "DeleteItem",
                lambda: self.client.delete_item(
                    TableName=self.table,
                    Key={"pk": S(f"LOCK#{key}"), "sk": S("LOCK")},
                    ConditionExpression="run_id = :me",
                    ExpressionAttributeValues={":me": S(run_id)},
                ),
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    # ------------------------------------------------------------------------------ triggers

    def claim_trigger(self, trigger_id: str, run_id: str) -> str | None:
        """Claims `trigger_id` for `run_id`; returns the run that claimed it before, if another.

        Claiming again for the same run is not a duplicate (a retried call): it returns None.
        """
        now = self.clock()
        item = {
            "pk": S(f"TRIGGER#{trigger_id}"),
            "sk": S("TRIGGER"),
            "run_id": S(run_id),
            "created_at": S(sortable(now)),
            "ttl": N(micros(now) // 1_000_000 + int(self.trigger_ttl_days * DAY)),
        }
        try:
            self._call(
                "PutItem",
                lambda: self.client.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk)",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ),
            )
            return None
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            earlier = _old_item(exc) or self._get(f"TRIGGER#{trigger_id}", "TRIGGER")
        earlier_run = str(earlier["run_id"]["S"]) if earlier else None
        return None if earlier_run in (None, run_id) else earlier_run

    def trigger_owner(self, trigger_id: str) -> str | None:
        item = self._get(f"TRIGGER#{trigger_id}", "TRIGGER")
        return None if item is None else str(item["run_id"]["S"])

    def claim_cooldown(self, key: str, now: datetime, cooldown_seconds: float) -> bool:
        """Fires `key` at `now` if it last fired at least `cooldown_seconds` earlier (or never)."""
        fired = micros(now)
        threshold = fired - round(cooldown_seconds * 1_000_000)
        try:
            self._call(
                "UpdateItem",
                lambda: self.client.update_item(
                    TableName=self.table,
                    Key={"pk": S(f"COOLDOWN#{key}"), "sk": S("COOLDOWN")},
                    UpdateExpression="SET fired_us = :fired, #ttl = :ttl",
                    # `fired_us = :fired`: a retry of our own write that went through.
                    ConditionExpression=(
                        "attribute_not_exists(pk) OR fired_us <= :threshold OR fired_us = :fired"
                    ),
                    ExpressionAttributeNames={"#ttl": "ttl"},
                    ExpressionAttributeValues={
                        ":fired": N(fired),
                        ":threshold": N(threshold),
                        ":ttl": N(fired // 1_000_000 + int(cooldown_seconds) + DAY),
                    },
                ),
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def fired_at(self, key: str) -> datetime | None:
        item = self._get(f"COOLDOWN#{key}", "COOLDOWN")
        return None if item is None else from_micros(int(item["fired_us"]["N"]))

    # ------------------------------------------------------------------------------ outbox

    def put_queued(self, batches: Sequence[Queued]) -> None:
        def put(batch: Queued) -> None:
            item = {
                "pk": S(OUTBOX_PK),
                "sk": S(f"EVENT#{batch.key}"),
                "lsi1sk": S(batch.seq),
                **_encode(batch.data),
            }
            try:
                self._call(
                    "PutItem",
                    lambda: self.client.put_item(
                        TableName=self.table,
                        Item=item,
                        ConditionExpression="attribute_not_exists(pk)",
                    ),
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise  # else: that event id is in the outbox already

        each(put, batches)

    def scan_queued(self, limit: int) -> list[str]:
        out: list[str] = []
        start: dict[str, Any] | None = None
        while len(out) < limit:
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": LSI,
                "KeyConditionExpression": "pk = :o",
                "ExpressionAttributeValues": {":o": S(OUTBOX_PK)},
                "ScanIndexForward": True,
                "ConsistentRead": True,
                "Limit": limit - len(out),
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self._query(kwargs)
            out.extend(_decode(i) for i in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return out[:limit]

    def delete_queued(self, keys: Sequence[str]) -> None:
        items = [{"pk": S(OUTBOX_PK), "sk": S(f"EVENT#{k}")} for k in keys]
        for batch in chunks(items, 25):
            requests: list[Any] = [{"DeleteRequest": {"Key": key}} for key in batch]
            for attempt in range(self.backoff.attempts):
                response = self._batch_write(requests)
                requests = response.get("UnprocessedItems", {}).get(self.table, [])
                if not requests:
                    break
                self.backoff.sleep(self.backoff.delay(attempt))
            else:
                raise RuntimeError(f"{len(requests)} outbox deletions were never processed")

    # ------------------------------------------------------------------------------ helpers

    def _query(self, kwargs: dict[str, Any]) -> Any:
        return self._call("Query", lambda: self.client.query(**kwargs))

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self._call(
            "GetItem",
            lambda: self.client.get_item(
                TableName=self.table, Key={"pk": S(pk), "sk": S(sk)}, ConsistentRead=True
            ),
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _list(self, gsi_pk: str, group: str | None, sk: str) -> list[str]:
        """The index gives the keys (eventually consistent), the table gives fresh items."""
        keys: list[str] = []
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": GSI,
                "KeyConditionExpression": "gsi1pk = :p",
                "ExpressionAttributeValues": {":p": S(gsi_pk)},
                "ScanIndexForward": False,
            }
            if group is not None:
                kwargs["FilterExpression"] = "grp = :g"
                kwargs["ExpressionAttributeValues"][":g"] = S(group)
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self._query(kwargs)
            keys.extend(str(i["pk"]["S"]) for i in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        items = self._batch_get(list(dict.fromkeys(keys)), sk)
        return [_decode(items[pk]) for pk in keys if pk in items]

    def _batch_write(self, requests: list[Any]) -> Any:
        return self._call(
            "BatchWriteItem",
            lambda: self.client.batch_write_item(RequestItems={self.table: requests}),
        )

    def _batch_get_once(self, request: dict[str, Any]) -> Any:
        return self._call("BatchGetItem", lambda: self.client.batch_get_item(RequestItems=request))

    def _batch_get(self, pks: list[str], sk: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for batch in chunks(pks, 100):
            request: dict[str, Any] = {
                self.table: {
                    "Keys": [{"pk": S(pk), "sk": S(sk)} for pk in batch],
                    "ConsistentRead": True,
                }
            }
            for attempt in range(self.backoff.attempts):
                response = self._batch_get_once(request)
                for item in response.get("Responses", {}).get(self.table, []):
                    found[str(item["pk"]["S"])] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                self.backoff.sleep(self.backoff.delay(attempt))
            else:
                raise RuntimeError("DynamoDB left keys unprocessed after every retry")
        return found


def _old_item(exc: ClientError) -> dict[str, Any] | None:
    """The item a failed conditional write found (ReturnValuesOnConditionCheckFailure)."""
    return cast("dict[str, Any] | None", exc.response.get("Item"))


def _encode(text: str) -> dict[str, AttributeValueTypeDef]:
    data = text.encode("utf-8")
    if len(data) > COMPRESS_ABOVE:
        return {"data_z": {"B": pack(text)}}
    return {"data": S(text)}


def _decode(item: dict[str, Any]) -> str:
    if "data_z" in item:
        return unpack(item["data_z"]["B"])
    return str(item["data"]["S"])
