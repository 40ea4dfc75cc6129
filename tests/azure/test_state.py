"""TableStateStore: every StateStore operation against a real Azurite Table service, races
included (Azurite serializes each entity's writes and checks ETags like the service)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import timedelta

import pytest
from azure.data.tables import TableServiceClient

from quiesce.errors import ProviderError
from quiesce.ports import LockHolder
from quiesce.record import (
    MachineRecord,
    MemberRecord,
    utcnow,
)
from quiesce_azure.state import TableStateStore, decode, encode, row_key
from tests.contracts.state_store import StateStoreContract, run_record

from .azurite import azurite

__all__ = ["azurite"]

_names = itertools.count()


@pytest.fixture
def service(azurite: str) -> Iterator[TableServiceClient]:
    with TableServiceClient.from_connection_string(azurite) as client:
        yield client


@pytest.fixture
def store(service: TableServiceClient) -> TableStateStore:
    state = TableStateStore(service, f"quiesce{next(_names)}")
    state.create_table()
    return state


# ------------------------------------------------------------------------------ runs


def test_a_record_too_large_for_one_item_is_stored_compressed(store: TableStateStore) -> None:
    machines = [
        MachineRecord(machine_id=f"i-{n:017x}", volumes=[f"vol-{n:017x}-{k}" for k in range(20)])
        for n in range(600)
    ]
    record = run_record(
        "r-big", members=[MemberRecord(name="db", provider="azure", machines=machines)]
    )
    assert len(record.model_dump_json()) > 400_000

    store.save_run(record)

    assert store.get_run("r-big") == record
    assert store.list_runs("shop")[0] == record


# ------------------------------------------------------------------------------ locks


# ------------------------------------------------------------------------------ triggers


# ------------------------------------------------------------------------------ cooldowns


# ------------------------------------------------------------------------------ points


# ------------------------------------------------------------------------------ outbox


# ------------------------------------------------------------------------------ Azure specifics


def test_keys_with_characters_a_row_key_forbids_work(store: TableStateStore) -> None:
    alert = "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/a?b#c\\d"
    assert store.claim_trigger(f"azure-monitor:{alert}:disk", "r-1") is None
    assert store.claim_trigger(f"azure-monitor:{alert}:disk", "r-2") == "r-1"
    assert "/" not in row_key(alert)
    assert row_key("x" * 2000).startswith("sha256-")
    until = utcnow() + timedelta(minutes=5)
    assert store.acquire_lock("x" * 2000, "r-1", until) is None
    assert store.acquire_lock("x" * 2000, "r-2", until) == LockHolder("r-1", until)


def test_large_records_are_compressed_into_chunks_and_oversized_ones_refused() -> None:
    text = "".join(f"{n:08x}" for n in range(200_000))  # 1.6 MB that compresses well
    properties = encode(text)
    assert "data" not in properties
    assert properties["zn"] >= 1
    assert decode(properties) == text  # type: ignore[arg-type]
    incompressible = os.urandom(1_000_000)
    with pytest.raises(ProviderError, match="more than an Azure Table entity can hold"):
        encode(incompressible.hex())


class TestTableStateStore(StateStoreContract):
    """The StateStore contract (tests/contracts/state_store.py) on TableStateStore."""
