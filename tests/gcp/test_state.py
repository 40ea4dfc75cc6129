"""FirestoreStateStore: every StateStore operation against the real Firestore emulator, races
included (the emulator runs transactions like the service: a loser is retried and sees the
winner's write)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from google.cloud import firestore

from quiesce.errors import ProviderError
from quiesce.events import CloudEvent
from quiesce.ports import LockHolder
from quiesce.record import (
    Consistency,
    MachineRecord,
    MemberRecord,
    Orchestrator,
    PointMember,
    RecoveryPoint,
    RunRecord,
    utcnow,
)
from quiesce_gcp.state import FirestoreStateStore, _decode, _encode, doc_id, key_of

from .emulators import FirestoreEmulator, firestore_emulator, unique_prefix

__all__ = ["firestore_emulator"]

T = TypeVar("T")
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(firestore_emulator: FirestoreEmulator) -> firestore.Client:
    return firestore_emulator.client()


@pytest.fixture
def store(client: firestore.Client) -> FirestoreStateStore:
    return FirestoreStateStore(client, unique_prefix())


def run_record(run_id: str, *, group: str = "orders", minutes: int = 0, **extra: Any) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        policy="shop",
        group=group,
        requested_consistency="application",
        on_quiesce_failure="fallback",
        max_freeze_seconds=30,
        orchestrator=Orchestrator(host="cloud-function", pid=1),
        started_at=T0 + timedelta(minutes=minutes),
        **extra,
    )


def point(point_id: str, *, group: str = "orders", minutes: int = 0) -> RecoveryPoint:
    return RecoveryPoint(
        id=point_id,
        policy="shop",
        group=group,
        run_id=f"run-{point_id}",
        created_at=T0 + timedelta(minutes=minutes),
        consistency=Consistency.APPLICATION,
        freeze_window_ms=120.0,
        skew_ms=3.5,
        members=[
            PointMember(
                name="db", provider="gcp", consistency=Consistency.APPLICATION, snapshots=[]
            )
        ],
    )


def event(event_id: str) -> CloudEvent:
    return CloudEvent(
        id=event_id,
        source="quiesce/shop",
        type="quiesce.run.succeeded",
        time=T0,
        data={"n": event_id},
    )


def race(n: int, fn: Callable[[int], T]) -> list[T]:
    """Runs fn(0..n-1) in n threads released at the same instant."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_the_emulator_started(firestore_emulator: FirestoreEmulator) -> None:
    print(f"Firestore emulator answered after {firestore_emulator.started_in:.1f}s")
    assert firestore_emulator.started_in > 0


# ------------------------------------------------------------------------------ runs


def test_a_saved_run_reads_back_equal_and_saving_again_replaces_it(
    store: FirestoreStateStore,
) -> None:
    record = run_record("r-1")
    store.save_run(record)
    assert store.get_run("r-1") == record
    changed = record.model_copy(update={"error": "boom"})
    store.save_run(changed)
    assert store.get_run("r-1") == changed
    assert store.get_run("r-404") is None


def test_runs_are_listed_newest_first_by_policy_and_by_group(store: FirestoreStateStore) -> None:
    store.save_run(run_record("r-1", minutes=1))
    store.save_run(run_record("r-3", minutes=3))
    store.save_run(run_record("r-2", minutes=2, group="billing"))
    store.save_run(run_record("r-x").model_copy(update={"policy": "other"}))

    assert [r.run_id for r in store.list_runs("shop")] == ["r-3", "r-2", "r-1"]
    assert [r.run_id for r in store.list_runs("shop", "orders")] == ["r-3", "r-1"]
    assert store.list_runs("none") == []


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


def test_a_free_lock_is_taken_and_a_held_one_names_its_holder(store: FirestoreStateStore) -> None:
    until = utcnow() + timedelta(minutes=10)

    assert store.acquire_lock("shop/orders", "r-1", until) is None
    holder = store.acquire_lock("shop/orders", "r-2", until + timedelta(minutes=5))

    assert holder == LockHolder(run_id="r-1", expires_at=until)


def test_the_holder_renews_its_own_lock(store: FirestoreStateStore) -> None:
    until = utcnow() + timedelta(minutes=10)
    store.acquire_lock("shop/orders", "r-1", until)
    assert store.acquire_lock("shop/orders", "r-1", until + timedelta(minutes=10)) is None
    holder = store.acquire_lock("shop/orders", "r-2", until)
    assert holder == LockHolder(run_id="r-1", expires_at=until + timedelta(minutes=10))


def test_an_expired_lock_is_taken_over(store: FirestoreStateStore) -> None:
    store.acquire_lock("shop/orders", "r-1", utcnow() - timedelta(seconds=1))
    assert store.acquire_lock("shop/orders", "r-2", utcnow() + timedelta(minutes=5)) is None


def test_only_the_holder_releases_a_lock(store: FirestoreStateStore) -> None:
    until = utcnow() + timedelta(minutes=10)
    store.acquire_lock("shop/orders", "r-1", until)

    store.release_lock("shop/orders", "r-2")
    assert store.acquire_lock("shop/orders", "r-3", until) == LockHolder("r-1", until)

    store.release_lock("shop/orders", "r-1")
    assert store.acquire_lock("shop/orders", "r-3", until) is None
    store.release_lock("shop/unknown", "r-1")  # releasing a free lock is fine


def test_two_threads_racing_for_a_lock_exactly_one_wins(store: FirestoreStateStore) -> None:
    until = utcnow() + timedelta(minutes=10)
    for round_ in range(3):
        key = f"shop/race-{round_}"
        results = race(2, lambda i, key=key: store.acquire_lock(key, f"r-{i}", until))  # type: ignore[misc]
        winners = [i for i, holder in enumerate(results) if holder is None]
        assert len(winners) == 1
        (loser,) = [holder for holder in results if holder is not None]
        assert loser.run_id == f"r-{winners[0]}"


def test_racing_for_an_expired_lock_exactly_one_takes_it_over(store: FirestoreStateStore) -> None:
    store.acquire_lock("shop/orders", "old", utcnow() - timedelta(seconds=1))
    until = utcnow() + timedelta(minutes=10)
    results = race(4, lambda i: store.acquire_lock("shop/orders", f"r-{i}", until))
    assert sum(holder is None for holder in results) == 1


# ------------------------------------------------------------------------------ triggers


def test_a_trigger_is_claimed_once_and_names_its_run_afterwards(
    store: FirestoreStateStore,
) -> None:
    assert store.claim_trigger("gcp.pubsub:123:nightly", "r-1") is None
    assert store.claim_trigger("gcp.pubsub:123:nightly", "r-2") == "r-1"
    assert store.claim_trigger("gcp.pubsub:123:nightly", "r-1") is None  # a retried call


def test_two_threads_racing_for_a_trigger_exactly_one_wins(store: FirestoreStateStore) -> None:
    for round_ in range(3):
        trigger = f"msg-{round_}"
        results = race(2, lambda i, t=trigger: store.claim_trigger(t, f"r-{i}"))  # type: ignore[misc]
        assert sorted(results, key=str) == sorted([None, results[0] or results[1]], key=str)
        assert results.count(None) == 1


# ------------------------------------------------------------------------------ cooldowns


def test_a_cooldown_fires_then_holds_until_it_has_passed(store: FirestoreStateStore) -> None:
    key = "cooldown:shop:disk-alarm"
    assert store.claim_cooldown(key, T0, 3600) is True
    assert store.claim_cooldown(key, T0 + timedelta(minutes=59), 3600) is False
    assert store.claim_cooldown(key, T0 + timedelta(minutes=60), 3600) is True
    assert store.claim_cooldown(key, T0 + timedelta(minutes=61), 3600) is False


def test_two_threads_racing_for_a_cooldown_exactly_one_fires(store: FirestoreStateStore) -> None:
    for round_ in range(3):
        key = f"cooldown:shop:race-{round_}"
        results = race(
            2,
            lambda i, key=key: store.claim_cooldown(key, T0 + timedelta(seconds=i), 600),  # type: ignore[misc]
        )
        assert results.count(True) == 1


def test_racing_for_an_expired_cooldown_exactly_one_fires(store: FirestoreStateStore) -> None:
    store.claim_cooldown("c", T0, 60)
    later = T0 + timedelta(minutes=5)
    results = race(4, lambda i: store.claim_cooldown("c", later + timedelta(seconds=i), 60))
    assert results.count(True) == 1


# ------------------------------------------------------------------------------ points


def test_points_are_saved_listed_newest_first_and_deleted(store: FirestoreStateStore) -> None:
    store.save_point(point("p-1", minutes=1))
    store.save_point(point("p-2", minutes=2, group="billing"))
    store.save_point(point("p-3", minutes=3))

    assert store.get_point("p-1") == point("p-1", minutes=1)
    assert [p.id for p in store.list_points("shop")] == ["p-3", "p-2", "p-1"]
    assert [p.id for p in store.list_points("shop", "orders")] == ["p-3", "p-1"]

    store.delete_point("p-3")
    store.delete_point("p-404")
    assert store.get_point("p-3") is None
    assert [p.id for p in store.list_points("shop")] == ["p-2", "p-1"]


# ------------------------------------------------------------------------------ outbox


def test_the_outbox_keeps_events_in_the_order_they_came_and_each_id_once(
    store: FirestoreStateStore,
) -> None:
    store.outbox_add([event("e-3"), event("e-1"), event("e-3")])
    store.outbox_add([event("e-2"), event("e-1")])
    assert [e.id for e in store.outbox_pending()] == ["e-3", "e-1", "e-2"]
    assert store.outbox_pending()[0] == event("e-3")


def test_outbox_pending_honours_its_limit_and_remove_removes(store: FirestoreStateStore) -> None:
    store.outbox_add([event(f"e-{n:02d}") for n in range(12)])
    assert [e.id for e in store.outbox_pending(limit=3)] == ["e-00", "e-01", "e-02"]
    store.outbox_remove(["e-00", "e-01", "e-01", "e-99"])
    assert [e.id for e in store.outbox_pending(limit=2)] == ["e-02", "e-03"]
    store.outbox_remove([])
    assert len(store.outbox_pending()) == 10


def test_racing_to_add_the_same_event_keeps_it_once(store: FirestoreStateStore) -> None:
    race(4, lambda i: store.outbox_add([event("same")]))
    assert [e.id for e in store.outbox_pending()] == ["same"]


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


def test_a_lock_taken_over_after_expiry_cannot_be_released_by_the_old_holder(
    store: FirestoreStateStore,
) -> None:
    store.acquire_lock("k", "old", utcnow() - timedelta(seconds=1))
    until = utcnow() + timedelta(minutes=5)
    assert store.acquire_lock("k", "new", until) is None
    store.release_lock("k", "old")
    assert store.acquire_lock("k", "third", until) == LockHolder("new", until)
