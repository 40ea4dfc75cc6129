"""The StateStore contract: what every catalog (SQLite, memory, DynamoDB, Table Storage,
Firestore) must do, written once. A store's test module subclasses StateStoreContract and
provides a `store` fixture; pytest runs every test below against it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from quiesce.events import CloudEvent
from quiesce.ports import LockHolder, StateStore
from quiesce.record import (
    Consistency,
    Orchestrator,
    PointMember,
    RecoveryPoint,
    RunRecord,
    RunStatus,
    utcnow,
)
from quiesce.state_base import CatalogStateStore, Queued

T = TypeVar("T")
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def run_record(run_id: str, *, group: str = "orders", minutes: int = 0, **extra: Any) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        policy="shop",
        group=group,
        requested_consistency="application",
        on_quiesce_failure="fallback",
        max_freeze_seconds=30,
        orchestrator=Orchestrator(host="lambda", pid=1),
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
                name="db", provider="local", consistency=Consistency.APPLICATION, snapshots=[]
            )
        ],
    )


def event(n: int) -> CloudEvent:
    return CloudEvent(
        id=f"e-{n}", source="/quiesce/test", type="quiesce.run.started", data={"n": n}, time=T0
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


class StateStoreContract:
    """Subclass it (as Test...) next to a `store` fixture."""

    #: How many threads race in the race tests.
    RACERS = 8

    def test_a_saved_run_reads_back_equal_and_saving_again_replaces_it(
        self, store: StateStore
    ) -> None:
        record = run_record("r-1")
        store.save_run(record)
        assert store.get_run("r-1") == record

        record.status = RunStatus.SUCCEEDED
        record.errors.append("a note")
        store.save_run(record)

        assert store.get_run("r-1") == record
        assert store.get_run("r-unknown") is None

    def test_runs_are_listed_newest_first_by_policy_and_by_group(self, store: StateStore) -> None:
        store.save_run(run_record("r-1", minutes=1))
        store.save_run(run_record("r-3", minutes=3))
        store.save_run(run_record("r-2", minutes=2, group="billing"))

        assert [r.run_id for r in store.list_runs("shop")] == ["r-3", "r-2", "r-1"]
        assert [r.run_id for r in store.list_runs("shop", "orders")] == ["r-3", "r-1"]
        assert store.list_runs("other") == []

    def test_a_listed_run_is_the_latest_version_of_its_record(self, store: StateStore) -> None:
        record = run_record("r-1")
        store.save_run(record)
        record.status = RunStatus.FAILED
        store.save_run(record)

        (listed,) = store.list_runs("shop", "orders")

        assert listed.status is RunStatus.FAILED

    def test_a_free_lock_is_taken_and_a_held_one_names_its_holder(self, store: StateStore) -> None:
        until = utcnow() + timedelta(minutes=10)

        assert store.acquire_lock("shop/orders", "r-1", until) is None
        holder = store.acquire_lock("shop/orders", "r-2", until + timedelta(minutes=5))

        assert holder == LockHolder(run_id="r-1", expires_at=until)

    def test_the_holder_renews_its_own_lock(self, store: StateStore) -> None:
        store.acquire_lock("k", "r-1", utcnow() + timedelta(minutes=1))
        later = utcnow() + timedelta(minutes=30)

        assert store.acquire_lock("k", "r-1", later) is None
        assert store.acquire_lock("k", "r-2", later) == LockHolder("r-1", later)

    def test_an_expired_lock_is_taken_over(self, store: StateStore) -> None:
        store.acquire_lock("k", "r-dead", utcnow() - timedelta(seconds=1))

        assert store.acquire_lock("k", "r-2", utcnow() + timedelta(minutes=5)) is None
        assert store.acquire_lock("k", "r-3", utcnow() + timedelta(minutes=5)).run_id == "r-2"  # type: ignore[union-attr]

    def test_only_the_holder_releases_a_lock(self, store: StateStore) -> None:
        until = utcnow() + timedelta(minutes=5)
        store.acquire_lock("k", "r-1", until)

        store.release_lock("k", "r-2")
        assert store.acquire_lock("k", "r-2", until) == LockHolder("r-1", until)

        store.release_lock("k", "r-1")
        assert store.acquire_lock("k", "r-2", until) is None
        store.release_lock("k", "r-never")  # releasing what one does not hold is quiet

    def test_two_threads_racing_for_a_lock_exactly_one_wins(self, store: StateStore) -> None:
        until = utcnow() + timedelta(minutes=5)

        outcomes = race(self.RACERS, lambda i: store.acquire_lock("shop/orders", f"r-{i}", until))

        winners = [i for i, o in enumerate(outcomes) if o is None]
        assert len(winners) == 1
        holders = {o.run_id for o in outcomes if o is not None}
        assert holders == {f"r-{winners[0]}"}

    def test_a_trigger_is_claimed_once_and_names_its_run_afterwards(
        self, store: StateStore
    ) -> None:
        assert store.claim_trigger("evt-1", "r-1") is None
        assert store.claim_trigger("evt-1", "r-2") == "r-1"
        assert store.claim_trigger("evt-1", "r-1") is None  # a retry by the same run
        assert store.claim_trigger("evt-2", "r-2") is None

    def test_trigger_owner_reads_who_claimed_a_trigger_and_claims_nothing(
        self, store: StateStore
    ) -> None:
        assert store.trigger_owner("evt-9") is None
        assert store.trigger_owner("evt-9") is None  # reading claims nothing
        assert store.claim_trigger("evt-9", "r-1") is None
        assert store.trigger_owner("evt-9") == "r-1"
        assert store.claim_trigger("evt-9", "r-2") == "r-1"
        assert store.trigger_owner("evt-9") == "r-1"

    def test_two_threads_racing_for_a_trigger_exactly_one_wins(self, store: StateStore) -> None:
        outcomes = race(self.RACERS, lambda i: store.claim_trigger("evt-1", f"r-{i}"))

        winners = [i for i, o in enumerate(outcomes) if o is None]
        assert len(winners) == 1
        assert {o for o in outcomes if o is not None} == {f"r-{winners[0]}"}

    def test_a_cooldown_fires_then_holds_until_it_has_passed(self, store: StateStore) -> None:
        assert store.claim_cooldown("alarm", T0, 60) is True
        assert store.claim_cooldown("alarm", T0 + timedelta(seconds=59.999), 60) is False
        assert store.claim_cooldown("alarm", T0 + timedelta(seconds=60), 60) is True
        assert store.claim_cooldown("alarm", T0 + timedelta(seconds=61), 60) is False
        assert store.claim_cooldown("other", T0 + timedelta(seconds=61), 60) is True

    def test_fired_at_reads_when_a_cooldown_last_fired_and_records_nothing(
        self, store: StateStore
    ) -> None:
        assert store.fired_at("alarm") is None
        assert store.fired_at("alarm") is None  # reading claims nothing
        assert store.claim_cooldown("alarm", T0, 60) is True
        assert store.fired_at("alarm") == T0
        assert store.claim_cooldown("alarm", T0 + timedelta(seconds=30), 60) is False
        assert store.fired_at("alarm") == T0  # a refused claim changes nothing
        assert store.claim_cooldown("alarm", T0 + timedelta(seconds=90), 60) is True
        assert store.fired_at("alarm") == T0 + timedelta(seconds=90)
        assert store.fired_at("other") is None

    def test_two_threads_racing_for_a_cooldown_exactly_one_fires(self, store: StateStore) -> None:
        outcomes = race(
            8, lambda i: store.claim_cooldown("alarm", T0 + timedelta(milliseconds=i), 60)
        )

        assert outcomes.count(True) == 1

    def test_points_are_saved_listed_newest_first_and_deleted(self, store: StateStore) -> None:
        store.save_point(point("p-1", minutes=1))
        store.save_point(point("p-2", minutes=2, group="billing"))
        store.save_point(point("p-3", minutes=3))

        assert store.get_point("p-1") == point("p-1", minutes=1)
        assert [p.id for p in store.list_points("shop")] == ["p-3", "p-2", "p-1"]
        assert [p.id for p in store.list_points("shop", "orders")] == ["p-3", "p-1"]

        store.delete_point("p-3")
        store.delete_point("p-unknown")

        assert store.get_point("p-3") is None
        assert [p.id for p in store.list_points("shop", "orders")] == ["p-1"]

    def test_the_outbox_keeps_events_in_the_order_they_came_and_each_id_once(
        self, store: StateStore
    ) -> None:
        store.outbox_add([event(3), event(1), event(10)])
        store.outbox_add([event(2), event(1)])

        pending = store.outbox_pending()

        assert [e.id for e in pending] == ["e-3", "e-1", "e-10", "e-2"]
        assert pending[0] == event(3)

    def test_outbox_pending_honours_its_limit_and_remove_removes(self, store: StateStore) -> None:
        store.outbox_add([event(n) for n in range(30)])

        assert [e.id for e in store.outbox_pending(limit=5)] == [f"e-{n}" for n in range(5)]

        store.outbox_remove([f"e-{n}" for n in range(27)] + ["e-unknown"])

        assert [e.id for e in store.outbox_pending()] == ["e-27", "e-28", "e-29"]
        store.outbox_add([])
        store.outbox_remove([])

    def test_one_outbox_add_is_one_item_and_a_partial_remove_keeps_the_rest_in_one(
        self, store: StateStore
    ) -> None:
        assert isinstance(store, CatalogStateStore)
        store.outbox_add([event(n) for n in range(30)])
        assert len(store.scan_queued(100)) == 1

        store.outbox_remove([f"e-{n}" for n in range(10)])

        assert len(store.scan_queued(100)) == 1
        assert [e.id for e in store.outbox_pending()] == [f"e-{n}" for n in range(10, 30)]
        store.outbox_remove([f"e-{n}" for n in range(10, 30)])
        assert store.scan_queued(100) == []

    def test_events_larger_than_one_item_are_cut_into_several_in_order(
        self, store: StateStore
    ) -> None:
        assert isinstance(store, CatalogStateStore)
        store.OUTBOX_BATCH_BYTES = 2_000  # type: ignore[misc]
        events = [event(n) for n in range(12)]
        size = len(events[0].to_json())

        store.outbox_add(events)

        assert len(store.scan_queued(100)) == -(-12 // max(1, 2_000 // size))
        assert [e.id for e in store.outbox_pending()] == [e.id for e in events]
        store.outbox_remove([e.id for e in events])
        assert store.outbox_pending() == []

    def test_an_outbox_item_of_an_older_catalog_one_event_is_read_and_removed(
        self, store: StateStore
    ) -> None:
        assert isinstance(store, CatalogStateStore)
        old = event(7)
        store.put_queued([Queued(old.id, f"{1:020d}-000000", old.to_json())])
        store.outbox_add([event(8)])

        assert [e.id for e in store.outbox_pending()] == ["e-7", "e-8"]
        store.outbox_remove(["e-7"])
        assert [e.id for e in store.outbox_pending()] == ["e-8"]
        assert len(store.scan_queued(100)) == 1

    def test_a_lock_taken_over_after_expiry_cannot_be_released_by_the_old_holder(
        self, store: StateStore
    ) -> None:
        store.acquire_lock("k", "r-old", utcnow() - timedelta(seconds=1))
        until = utcnow() + timedelta(minutes=5)
        assert store.acquire_lock("k", "r-new", until) is None
        store.release_lock("k", "r-old")
        assert store.acquire_lock("k", "r-3", until) == LockHolder("r-new", until)

    def test_racing_for_an_expired_lock_exactly_one_takes_it_over(self, store: StateStore) -> None:
        store.acquire_lock("k", "r-dead", utcnow() - timedelta(seconds=1))
        until = utcnow() + timedelta(minutes=5)

        outcomes = race(self.RACERS, lambda i: store.acquire_lock("k", f"r-{i}", until))

        winners = [i for i, o in enumerate(outcomes) if o is None]
        assert len(winners) == 1
        assert {o.run_id for o in outcomes if o is not None} == {f"r-{winners[0]}"}

    def test_racing_for_an_expired_cooldown_exactly_one_fires(self, store: StateStore) -> None:
        assert store.claim_cooldown("alarm", T0, 60)
        later = T0 + timedelta(minutes=5)

        outcomes = race(
            8, lambda i: store.claim_cooldown("alarm", later + timedelta(microseconds=i), 60)
        )

        assert outcomes.count(True) == 1

    def test_racing_to_add_the_same_event_keeps_it_once(self, store: StateStore) -> None:
        race(self.RACERS, lambda i: store.outbox_add([event(1)]))

        assert [e.id for e in store.outbox_pending()] == ["e-1"]

    def test_record_point_lists_the_point_and_saves_the_record_naming_it(
        self, store: StateStore
    ) -> None:
        record = run_record("r-1", recovery_point="p-1")

        store.record_point(point("p-1"), record)

        assert store.get_point("p-1") == point("p-1")
        saved = store.get_run("r-1")
        assert saved is not None
        assert saved.recovery_point == "p-1"

    def test_closing_a_run_is_claimed_once_per_attempt(self, store: StateStore) -> None:
        outcomes = race(self.RACERS, lambda i: store.claim_close("r-1", 0, f"closer-{i}"))

        assert outcomes.count(True) == 1
        assert store.claim_close("r-1", 1, "closer-0") is True  # the next attempt is free
        assert store.claim_close("r-2", 0, "closer-0") is True

    def test_records_of_the_same_instant_are_listed_by_id_newest_first(
        self, store: StateStore
    ) -> None:
        for run_id in ("r-a", "r-c", "r-b"):
            store.save_run(run_record(run_id, minutes=5))
        for point_id in ("p-a", "p-c", "p-b"):
            store.save_point(point(point_id, minutes=5))

        assert [r.run_id for r in store.list_runs("shop")] == ["r-c", "r-b", "r-a"]
        assert [p.id for p in store.list_points("shop", "orders")] == ["p-c", "p-b", "p-a"]
