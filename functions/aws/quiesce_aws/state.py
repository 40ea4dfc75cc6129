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
    outbox      OUTBOX            EVENT#<id>    lsi1sk <added_us>#<n>, data (the event's JSON)

Everything that must be atomic is one conditional write: a lock is taken when it is absent,
expired or already ours (`attribute_not_exists(pk) OR expires_us < :now OR run_id = :me`); a
trigger is claimed when absent; a cooldown fires when its last firing is old enough; an outbox
event is added when its id is absent. Times in conditions are integers (microseconds since the
epoch), so comparisons are exact. Listing runs and points reads the index (eventually
consistent) for the ids, then the items themselves with strongly consistent reads, so a listed
record is never stale. Records over 350 KB are stored zlib-compressed (`data_z`).

Retries: throttling and DynamoDB's internal errors are retried with backoff. That is safe here
because every write is idempotent: the same key and value, and every condition also accepts a
repeat of the same write (the same run id, the same firing time, the same event id).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from botocore.exceptions import ClientError

from quiesce.events import CloudEvent
from quiesce.ports import LockHolder, StateStore, fan_out
from quiesce.record import RecoveryPoint, RunRecord, utcnow
from quiesce_aws.clients import ClientFactory, chunks
from quiesce_aws.permissions import Permission
from quiesce_aws.retry import DYNAMODB_THROTTLING, Backoff, error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

log = logging.getLogger(__name__)

M = TypeVar("M", RunRecord, RecoveryPoint)

GSI = "gsi1"
LSI = "lsi1"
OUTBOX_PK = "OUTBOX"
#: Above this, a record is stored compressed (items may hold 400 KB).
COMPRESS_ABOVE = 350_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = 86_400


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


def micros(value: datetime) -> int:
    """Microseconds since the epoch, exactly (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def sortable(value: datetime) -> str:
    """A UTC timestamp whose text order is its time order."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def S(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def N(value: int | float) -> AttributeValueTypeDef:
    return {"N": str(value)}


def _table_permissions(*actions: str) -> list[Permission]:
    return [Permission(f"dynamodb:{a}", "arn:aws:dynamodb:*:*:table/quiesce*") for a in actions]


def _index_permission(index: str) -> Permission:
    return Permission("dynamodb:Query", f"arn:aws:dynamodb:*:*:table/quiesce*/index/{index}")


class DynamoDbStateStore(StateStore):
    """The StateStore port over one DynamoDB table."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "save_run": _table_permissions("PutItem"),
        "get_run": _table_permissions("GetItem"),
        "list_runs": [_index_permission(GSI), *_table_permissions("BatchGetItem")],
        "acquire_lock": _table_permissions("PutItem", "GetItem"),
        "release_lock": _table_permissions("DeleteItem"),
        "claim_trigger": _table_permissions("PutItem", "GetItem"),
        "claim_cooldown": _table_permissions("UpdateItem"),
        "save_point": _table_permissions("PutItem"),
        "get_point": _table_permissions("GetItem"),
        "list_points": [_index_permission(GSI), *_table_permissions("BatchGetItem")],
        "delete_point": _table_permissions("DeleteItem"),
        "outbox_add": _table_permissions("PutItem"),
        "outbox_pending": [_index_permission(LSI)],
        "outbox_remove": _table_permissions("BatchWriteItem"),
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

    # ------------------------------------------------------------------------------ runs

    def save_run(self, record: RunRecord) -> None:
        item = {
            "pk": S(f"RUN#{record.run_id}"),
            "sk": S("RUN"),
            "gsi1pk": S(f"RUNS#{record.policy}"),
            "gsi1sk": S(f"{sortable(record.started_at)}#{record.run_id}"),
            "grp": S(record.group),
            "status": S(record.status.value),
            **_encode(record.model_dump_json()),
        }
        self._call("PutItem", lambda: self.client.put_item(TableName=self.table, Item=item))

    def get_run(self, run_id: str) -> RunRecord | None:
        item = self._get(f"RUN#{run_id}", "RUN")
        return RunRecord.model_validate_json(_decode(item)) if item else None

    def list_runs(self, policy: str, group: str | None = None) -> list[RunRecord]:
        return self._list(f"RUNS#{policy}", group, "RUN", RunRecord)

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

    # ------------------------------------------------------------------------------ points

    def save_point(self, point: RecoveryPoint) -> None:
        item = {
            "pk": S(f"POINT#{point.id}"),
            "sk": S("POINT"),
            "gsi1pk": S(f"POINTS#{point.policy}"),
            "gsi1sk": S(f"{sortable(point.created_at)}#{point.id}"),
            "grp": S(point.group),
            **_encode(point.model_dump_json()),
        }
        self._call("PutItem", lambda: self.client.put_item(TableName=self.table, Item=item))

    def get_point(self, point_id: str) -> RecoveryPoint | None:
        item = self._get(f"POINT#{point_id}", "POINT")
        return RecoveryPoint.model_validate_json(_decode(item)) if item else None

    def list_points(self, policy: str, group: str | None = None) -> list[RecoveryPoint]:
        return self._list(f"POINTS#{policy}", group, "POINT", RecoveryPoint)

    def delete_point(self, point_id: str) -> None:
        self._call(
            "DeleteItem",
            lambda: self.client.delete_item(
                TableName=self.table, Key={"pk": S(f"POINT#{point_id}"), "sk": S("POINT")}
            ),
        )

    # ------------------------------------------------------------------------------ outbox

    def outbox_add(self, events: Sequence[CloudEvent]) -> None:
        unique: dict[str, CloudEvent] = {}
        for event in events:
            unique.setdefault(event.id, event)
        if not unique:
            return
        base = time.time_ns() // 1000
        items = []
        for n, event in enumerate(unique.values()):
            items.append(
                {
                    "pk": S(OUTBOX_PK),
                    "sk": S(f"EVENT#{event.id}"),
                    "lsi1sk": S(f"{base:020d}#{n:06d}"),
                    **_encode(event.to_json()),
                }
            )

        def put(item: dict[str, AttributeValueTypeDef]) -> None:
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

        for outcome in fan_out(put, items):
            if isinstance(outcome, BaseException):
                raise outcome

    def outbox_pending(self, limit: int = 500) -> list[CloudEvent]:
        out: list[CloudEvent] = []
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
            out.extend(CloudEvent.model_validate_json(_decode(i)) for i in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return out[:limit]

    def outbox_remove(self, event_ids: Sequence[str]) -> None:
        keys = [{"pk": S(OUTBOX_PK), "sk": S(f"EVENT#{i}")} for i in dict.fromkeys(event_ids)]
        for batch in chunks(keys, 25):
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

    def _list(self, gsi_pk: str, group: str | None, sk: str, model: type[M]) -> list[M]:
        """Newest first: the index gives the keys in order, the table gives fresh items."""
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
        out = []
        for pk in keys:
            item = items.get(pk)
            if item is not None:
                record = model.model_validate_json(_decode(item))
                if group is None or getattr(record, "group", None) == group:
                    out.append(record)
        return out

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
        return {"data_z": {"B": zlib.compress(data, 6)}}
    return {"data": S(text)}


def _decode(item: dict[str, Any]) -> str:
    if "data_z" in item:
        raw = item["data_z"]["B"]
        return zlib.decompress(bytes(raw)).decode("utf-8")
    return str(item["data"]["S"])
