"""The DynamoDB calls of the outbox, counted exactly on the store's own client (moto).

A run queues its events with each save (one item per save) and publishes them at its end: one
Query to read them, PutEvents, one BatchWriteItem per 25 published items to delete them. The
removal reuses what the flush has just read instead of reading the outbox again; these tests
pin that, and the paths that still read (ids the last read does not hold) or that publish an
event twice rather than lose it (a batch another process rewrote in between)."""

from __future__ import annotations

from typing import Any

import pytest

from quiesce_aws.clients import SessionClients
from quiesce_aws.state import DynamoDbStateStore, table_definition
from tests.contracts.state_store import event

from .conftest import REGION, Sleeps, Wire, quick_backoff

TABLE = "quiesce-economy"
OPERATIONS = ("PutItem", "Query", "BatchWriteItem", "DeleteItem", "GetItem")


@pytest.fixture
def store(clients: SessionClients, sleeps: Sleeps) -> DynamoDbStateStore:
    clients.dynamodb(REGION).create_table(**table_definition(TABLE))
    return DynamoDbStateStore(clients, TABLE, REGION, backoff=quick_backoff(sleeps))


@pytest.fixture
def calls(clients: SessionClients, wire: Wire) -> dict[str, list[dict[str, Any]]]:
    """The parameters of every call of each operation, by operation."""
    return {op: wire.sent(clients.dynamodb(REGION), op) for op in OPERATIONS}


def counts(calls: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    return {op: len(sent) for op, sent in calls.items() if sent}


def reset(calls: dict[str, list[dict[str, Any]]]) -> None:
    for sent in calls.values():
        sent.clear()


def test_each_save_queues_one_item_and_a_flush_reads_once_and_deletes_in_one_write(
    store: DynamoDbStateStore, calls: dict[str, list[dict[str, Any]]]
) -> None:
    for n in range(3):
        store.outbox_add([event(3 * n + k) for k in range(3)])
    assert counts(calls) == {"PutItem": 3}
    reset(calls)

    pending = store.outbox_pending()
    store.outbox_remove([e.id for e in pending])

    assert len(pending) == 9
    assert counts(calls) == {"Query": 1, "BatchWriteItem": 1}
    (deletes,) = calls["BatchWriteItem"]
    assert len(deletes["RequestItems"][TABLE]) == 3
    assert store.outbox_pending() == []


def test_a_partly_published_batch_is_rewritten_from_what_was_read(
    store: DynamoDbStateStore, calls: dict[str, list[dict[str, Any]]]
) -> None:
    store.outbox_add([event(n) for n in range(10)])
    pending = store.outbox_pending()
    reset(calls)

    store.outbox_remove([e.id for e in pending[:4]])  # the bus refused the other six

    assert counts(calls) == {"PutItem": 1, "BatchWriteItem": 1}  # the rest, then the old one
    assert [e.id for e in store.outbox_pending()] == [f"e-{n}" for n in range(4, 10)]


def test_removing_ids_the_last_read_does_not_hold_reads_the_outbox(
    store: DynamoDbStateStore, calls: dict[str, list[dict[str, Any]]]
) -> None:
    store.outbox_add([event(1), event(2)])
    store.outbox_pending()
    store.outbox_add([event(3)])  # after the read
    reset(calls)

    store.outbox_remove(["e-1", "e-2", "e-3"])

    assert counts(calls) == {"Query": 1, "BatchWriteItem": 1}
    assert store.outbox_pending() == []


def test_an_event_another_process_requeued_after_the_read_is_published_again_not_lost(
    clients: SessionClients, store: DynamoDbStateStore, sleeps: Sleeps
) -> None:
    other = DynamoDbStateStore(clients, TABLE, REGION, backoff=quick_backoff(sleeps))
    store.outbox_add([event(1), event(2), event(3)])
    mine = store.outbox_pending()
    other.outbox_pending()
    other.outbox_remove(["e-1", "e-2"])  # its bus refused e-3: requeued in a new batch

    store.outbox_remove([e.id for e in mine])  # this one published all three

    assert [e.id for e in store.outbox_pending()] == ["e-3"]  # once more, never lost
