"""DynamoDbStateStore: every StateStore operation against a moto table, races included."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from quiesce.record import (
    MachineRecord,
    MemberRecord,
    utcnow,
)
from quiesce_aws.clients import SessionClients
from quiesce_aws.state import DynamoDbStateStore, table_definition
from tests.contracts.state_store import StateStoreContract, run_record

from .conftest import REGION, Sleeps, Wire, quick_backoff

TABLE = "quiesce-test"


def one_request_at_a_time(client: Any) -> None:
    """DynamoDB applies each write to an item atomically (a conditional write sees every write
    before it); moto applies concurrent in-process requests without any isolation. So the races
    below let moto answer one request at a time, as the service would order them, and test
    that the store's conditions let exactly one racer win."""
    gate = threading.Lock()

    def enter(**_: Any) -> None:
        gate.acquire()

    def leave(**_: Any) -> None:
        gate.release()

    client.meta.events.register("before-call.dynamodb.*", enter)
    client.meta.events.register("after-call.dynamodb.*", leave)


@pytest.fixture
def store(clients: SessionClients, sleeps: Sleeps) -> DynamoDbStateStore:
    clients.dynamodb(REGION).create_table(**table_definition(TABLE))
    one_request_at_a_time(clients.dynamodb(REGION))
    return DynamoDbStateStore(clients, TABLE, REGION, backoff=quick_backoff(sleeps))


# ------------------------------------------------------------------------------ runs


def test_a_record_too_large_for_one_item_is_stored_compressed(store: DynamoDbStateStore) -> None:
    machines = [
        MachineRecord(machine_id=f"i-{n:017x}", volumes=[f"vol-{n:017x}-{k}" for k in range(20)])
        for n in range(600)
    ]
    record = run_record(
        "r-big", members=[MemberRecord(name="db", provider="aws", machines=machines)]
    )
    assert len(record.model_dump_json()) > 400_000

    store.save_run(record)

    assert store.get_run("r-big") == record
    assert store.list_runs("shop")[0] == record


# ------------------------------------------------------------------------------ locks


def test_a_throttled_lock_write_is_retried(
    store: DynamoDbStateStore, clients: SessionClients, wire: Wire, sleeps: Sleeps
) -> None:
    wire.fail(
        clients.dynamodb(REGION), "PutItem", "ProvisionedThroughputExceededException", times=2
    )

    assert store.acquire_lock("k", "r-1", utcnow() + timedelta(minutes=5)) is None
    assert sleeps.waits == [0.05, 0.1]


# ------------------------------------------------------------------------------ triggers


# ------------------------------------------------------------------------------ cooldowns


# ------------------------------------------------------------------------------ points


# ------------------------------------------------------------------------------ outbox


class TestDynamoDbStateStore(StateStoreContract):
    """The StateStore contract (tests/contracts/state_store.py) on DynamoDbStateStore."""
