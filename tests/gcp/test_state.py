"""FirestoreStateStore: every StateStore operation against the real Firestore emulator, races
included (the emulator runs transactions like the service: a loser is retried and sees the
winner's write)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from quiesce.errors import ProviderError
from quiesce.ports import LockHolder
from quiesce.record import (
    MachineRecord,
    MemberRecord,
    utcnow,
)
from quiesce_gcp.state import FirestoreStateStore, _decode, _encode, doc_id, key_of
from tests.contracts.state_store import StateStoreContract, run_record

from .emulators import PROJECT, FirestoreEmulator, firestore_emulator, unique_prefix

__all__ = ["firestore_emulator"]


@pytest.fixture(scope="module")
def client(firestore_emulator: FirestoreEmulator) -> firestore.Client:
    return firestore_emulator.client()


@pytest.fixture
def store(client: firestore.Client) -> FirestoreStateStore:
    return FirestoreStateStore(client, unique_prefix())


def test_the_emulator_started(firestore_emulator: FirestoreEmulator) -> None:
    print(f"Firestore emulator answered after {firestore_emulator.started_in:.1f}s")
    assert firestore_emulator.started_in > 0


# ------------------------------------------------------------------------------ runs


def test_a_record_too_large_for_one_document_is_stored_compressed(
    store: FirestoreStateStore,
) -> None:
    machines = [
        MachineRecord(machine_id=f"vm-{n:017x}", volumes=[f"disk-{n:017x}-{k}" for k in range(40)])
        for n in range(900)
    ]
    record = run_record(
        "r-big", members=[MemberRecord(name="db", provider="gcp", machines=machines)]
    )
    assert len(record.model_dump_json()) > 1_048_576

    store.save_run(record)

    assert store.get_run("r-big") == record
    assert store.list_runs("shop")[0] == record


def test_an_incompressible_record_over_the_limit_is_refused() -> None:
    text = "".join(f"{n:08x}" for n in range(200_000))
    assert _decode(_encode(text)) == text
    with pytest.raises(ProviderError, match="more than a Firestore document can hold"):
        _encode(os.urandom(1_100_000).hex())


# ------------------------------------------------------------------------------ locks


class RemoveAfterRefusedCreate(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """On the wire: once, when a Commit is refused ALREADY_EXISTS, the document is deleted (by
    another client) before the refusal reaches the store, as a release or a TTL deletion
    landing between the store's create and its read would."""

    def __init__(self, remove: Callable[[], None]) -> None:
        self.remove = remove
        self.armed = True

    def intercept_unary_unary(self, go: Callable[..., Any], details: Any, request: Any) -> Any:
        outcome = go(details, request)
        if self.armed and outcome.code() == grpc.StatusCode.ALREADY_EXISTS:
            self.armed = False
            self.remove()
        return outcome


def removing_client(interceptor: RemoveAfterRefusedCreate) -> firestore.Client:
    class Client(firestore.Client):
        def _emulator_channel(self, transport: Any) -> Any:
            channel = super()._emulator_channel(transport)  # type: ignore[no-untyped-call]
            return grpc.intercept_channel(channel, interceptor)

    return Client(project=PROJECT, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]


def test_a_lock_released_between_the_refused_create_and_the_read_is_taken(
    client: firestore.Client,
) -> None:
    prefix = unique_prefix()
    other = FirestoreStateStore(client, prefix)
    until = utcnow() + timedelta(minutes=10)
    other.acquire_lock("k", "r-1", until)
    fault = RemoveAfterRefusedCreate(lambda: other.release_lock("k", "r-1"))
    store = FirestoreStateStore(removing_client(fault), prefix)

    assert store.acquire_lock("k", "r-2", until) is None

    assert not fault.armed, "the lock was released after the create was refused"
    assert other.acquire_lock("k", "r-3", until) == LockHolder("r-2", until)


def test_the_same_run_renewing_its_lock_from_another_store_is_still_released(
    client: firestore.Client,
) -> None:
    """The first store's remembered write is stale (the renewal changed the lock's update
    time): its conditional delete is refused, it reads the lock, sees the run, deletes it."""
    prefix = unique_prefix()
    first, second = FirestoreStateStore(client, prefix), FirestoreStateStore(client, prefix)
    until = utcnow() + timedelta(minutes=10)
    assert first.acquire_lock("k", "r-1", until) is None
    assert second.acquire_lock("k", "r-1", until + timedelta(minutes=5)) is None

    first.release_lock("k", "r-1")

    assert second.acquire_lock("k", "r-2", until) is None


# ------------------------------------------------------------------------------ triggers


def test_a_claim_gone_between_the_refused_create_and_the_read_is_claimed_again(
    client: firestore.Client,
) -> None:
    """A claim past its TTL is deleted by Firestore at any moment, also between our create
    (refused: it was there) and our read of its holder (gone): the trigger is free again."""
    prefix = unique_prefix()
    other = FirestoreStateStore(client, prefix)
    assert other.claim_trigger("evt-1", "r-1") is None
    fault = RemoveAfterRefusedCreate(
        lambda: client.collection(f"{prefix}-triggers").document("evt-1").delete()
    )
    store = FirestoreStateStore(removing_client(fault), prefix)

    assert store.claim_trigger("evt-1", "r-2") is None

    assert not fault.armed
    assert other.trigger_owner("evt-1") == "r-2"


# ------------------------------------------------------------------------------ cooldowns


# ------------------------------------------------------------------------------ points


# ------------------------------------------------------------------------------ outbox


# ------------------------------------------------------------------------------ keys


@pytest.mark.parametrize("key", ["shop/orders", ".", "..", "__x__", "a b%c", "ü/ß", "x" * 1200])
def test_any_key_makes_a_valid_document_id(key: str) -> None:
    document_id = doc_id(key)
    assert "/" not in document_id
    assert document_id not in (".", "..")
    assert not document_id.startswith("__")
    assert len(document_id.encode()) <= 1000
    if document_id.startswith(("k-", "h-")):
        return
    assert key_of(document_id) == key


def test_keys_with_characters_a_document_id_forbids_work(store: FirestoreStateStore) -> None:
    until = utcnow() + timedelta(minutes=10)
    assert store.acquire_lock("shop/a/b", "r-1", until) is None
    assert store.acquire_lock("shop/a/b", "r-2", until) == LockHolder("r-1", until)
    assert store.claim_trigger("src/with/slashes:id:..", "r-1") is None
    assert store.claim_trigger("src/with/slashes:id:..", "r-2") == "r-1"
    record = run_record("run/with/slash")
    store.save_run(record)
    assert store.get_run("run/with/slash") == record


class TestFirestoreStateStore(StateStoreContract):
    """The StateStore contract (tests/contracts/state_store.py) on FirestoreStateStore.

    The emulator resolves contended transactions slowly: four racers instead of eight."""

    RACERS = 4
