"""SqliteStateStore: the catalog of runs, recovery points, locks, trigger ids and the outbox."""

from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from quiesce.errors import QuiesceError
from quiesce.events import CloudEvent
from quiesce.ports import LockHolder
from quiesce.providers.local.state import CATALOG_MIGRATIONS, SqliteFile, SqliteStateStore
from quiesce.record import Phase, RunStatus, utcnow
from tests.contracts.state_store import StateStoreContract

from .support import T0, recovery_point, run_record

T = TypeVar("T")


@pytest.fixture
def store(state_dir: Path) -> SqliteStateStore:
    return SqliteStateStore(state_dir)


def event(n: int) -> CloudEvent:
    return CloudEvent(
        id=f"e-{n}", source="/quiesce/test", type="quiesce.run.started", data={"n": n}, time=T0
    )


def race(n: int, fn: Callable[[int], T]) -> list[T]:
    """Runs fn(0..n-1) in n threads released at the same instant."""
    barrier = threading.Barrier(n)
    results: list[T | None] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results  # type: ignore[return-value]


# ------------------------------------------------------------------------------ the file


def test_the_catalog_is_a_private_wal_sqlite_file_in_the_state_folder(
    store: SqliteStateStore, state_dir: Path
) -> None:
    path = state_dir / "catalog.sqlite3"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_schema_is_versioned_and_reopening_keeps_the_data(
    store: SqliteStateStore, state_dir: Path
) -> None:
    latest = len(CATALOG_MIGRATIONS)
    assert store.db.schema_version() == latest
    store.save_run(run_record("r-1"))
    again = SqliteStateStore(state_dir)
    assert again.db.schema_version() == latest
    assert again.get_run("r-1") == run_record("r-1")


def test_a_catalog_of_an_older_version_is_migrated_in_place(state_dir: Path) -> None:
    SqliteFile(state_dir / "catalog.sqlite3", CATALOG_MIGRATIONS[:1])  # as version 1 left it
    store = SqliteStateStore(state_dir)
    assert store.db.schema_version() == len(CATALOG_MIGRATIONS)
    assert store.claim_cooldown("k", T0, 60) is True


def test_a_catalog_from_a_newer_quiesce_is_refused(
    store: SqliteStateStore, state_dir: Path
) -> None:
    with sqlite3.connect(state_dir / "catalog.sqlite3") as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(QuiesceError, match="schema version 99, newer"):
        SqliteStateStore(state_dir)


# ------------------------------------------------------------------------------ runs


def test_a_saved_run_reads_back_equal_and_saving_again_replaces_it(
    store: SqliteStateStore,
) -> None:
    record = run_record("r-1")
    store.save_run(record)
    assert store.get_run("r-1") == record
    finished = record.model_copy(
        update={"phase": Phase.FINISHED, "status": RunStatus.SUCCEEDED, "errors": ["x"]}
    )
    store.save_run(finished)
    assert store.get_run("r-1") == finished
    assert store.list_runs("shop") == [finished]


def test_an_unknown_run_is_none(store: SqliteStateStore) -> None:
    assert store.get_run("nope") is None


def test_runs_are_listed_newest_first_and_by_group_when_asked(store: SqliteStateStore) -> None:
    store.save_run(run_record("r-old", minutes=0))
    store.save_run(run_record("r-new", minutes=10))
    store.save_run(run_record("r-mid", minutes=5, group="billing"))
    store.save_run(run_record("r-other", minutes=7, policy="other"))
    assert [r.run_id for r in store.list_runs("shop")] == ["r-new", "r-mid", "r-old"]
    assert [r.run_id for r in store.list_runs("shop", "orders")] == ["r-new", "r-old"]
    assert [r.run_id for r in store.list_runs("shop", "billing")] == ["r-mid"]
    assert store.list_runs("none") == []


def test_runs_started_in_other_time_zones_are_ordered_by_instant(store: SqliteStateStore) -> None:
    from datetime import timezone

    plus_two = timezone(timedelta(hours=2))
    # 11:30+02:00 is 09:30 UTC: older than 10:00 UTC although its local hour is later.
    early = run_record("r-early").model_copy(
        update={"started_at": T0.astimezone(plus_two) + timedelta(minutes=-30)}
    )
    store.save_run(early)
    store.save_run(run_record("r-late"))
    assert [r.run_id for r in store.list_runs("shop")] == ["r-late", "r-early"]


# ------------------------------------------------------------------------------ locks


def test_a_free_lock_is_taken_and_the_same_run_may_renew_it(store: SqliteStateStore) -> None:
    soon = utcnow() + timedelta(minutes=5)
    later = soon + timedelta(minutes=5)
    assert store.acquire_lock("shop/orders", "r-1", soon) is None
    assert store.acquire_lock("shop/orders", "r-1", later) is None
    assert store.lock_holder("shop/orders") == LockHolder("r-1", later)


def test_a_lock_held_by_another_run_is_refused_until_it_expires(store: SqliteStateStore) -> None:
    expires = utcnow() + timedelta(minutes=5)
    assert store.acquire_lock("shop/orders", "r-1", expires) is None
    holder = store.acquire_lock("shop/orders", "r-2", utcnow() + timedelta(minutes=5))
    assert holder == LockHolder(run_id="r-1", expires_at=expires)
    assert store.acquire_lock("shop/billing", "r-2", expires) is None  # other keys are free


def test_an_expired_lock_is_free_for_another_run(store: SqliteStateStore) -> None:
    assert store.acquire_lock("k", "r-dead", utcnow() - timedelta(seconds=1)) is None
    assert store.lock_holder("k") is None
    assert store.acquire_lock("k", "r-2", utcnow() + timedelta(minutes=1)) is None
    assert store.lock_holder("k") is not None
    assert store.lock_holder("k").run_id == "r-2"  # type: ignore[union-attr]


def test_releasing_frees_the_lock_only_for_the_run_that_holds_it(
    store: SqliteStateStore,
) -> None:
    expires = utcnow() + timedelta(minutes=5)
    store.acquire_lock("k", "r-1", expires)
    store.release_lock("k", "r-2")
    assert store.acquire_lock("k", "r-2", expires) == LockHolder("r-1", expires)
    store.release_lock("k", "r-1")
    assert store.acquire_lock("k", "r-2", expires) is None


def test_a_naive_expiry_is_taken_as_utc(store: SqliteStateStore) -> None:
    naive = (utcnow() + timedelta(minutes=5)).replace(tzinfo=None)
    store.acquire_lock("k", "r-1", naive)
    holder = store.acquire_lock("k", "r-2", naive)
    assert holder is not None
    assert holder.expires_at == naive.replace(tzinfo=holder.expires_at.tzinfo)


def test_of_runs_racing_for_one_lock_exactly_one_wins(store: SqliteStateStore) -> None:
    expires = utcnow() + timedelta(minutes=5)
    results = race(16, lambda i: store.acquire_lock("shop/orders", f"r-{i}", expires))
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    assert all(r == LockHolder(f"r-{winners[0]}", expires) for r in results if r is not None)


def test_of_two_stores_on_one_file_racing_for_a_lock_exactly_one_wins(state_dir: Path) -> None:
    stores = [SqliteStateStore(state_dir) for _ in range(8)]
    expires = utcnow() + timedelta(minutes=5)
    results = race(8, lambda i: stores[i].acquire_lock("k", f"r-{i}", expires))
    assert sum(r is None for r in results) == 1


# ------------------------------------------------------------------------------ triggers


def test_a_trigger_is_claimed_once_and_a_second_claim_names_the_first_run(
    store: SqliteStateStore,
) -> None:
    assert store.claim_trigger("evt-42", "r-1") is None
    assert store.claim_trigger("evt-42", "r-2") == "r-1"
    assert store.claim_trigger("evt-43", "r-2") is None


def test_the_same_run_claiming_its_trigger_again_is_not_a_duplicate(
    store: SqliteStateStore,
) -> None:
    assert store.claim_trigger("evt-42", "r-1") is None
    assert store.claim_trigger("evt-42", "r-1") is None


def test_of_runs_racing_to_claim_one_trigger_exactly_one_wins(store: SqliteStateStore) -> None:
    results = race(16, lambda i: store.claim_trigger("evt-42", f"r-{i}"))
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    assert {r for r in results if r is not None} == {f"r-{winners[0]}"}


# ------------------------------------------------------------------------------ cooldowns


def test_a_cooldown_lets_the_first_firing_through_and_holds_the_next_until_it_passes(
    store: SqliteStateStore,
) -> None:
    assert store.claim_cooldown("disk-alarm", T0, 3600) is True
    assert store.claim_cooldown("disk-alarm", T0 + timedelta(minutes=59), 3600) is False
    assert store.claim_cooldown("other", T0 + timedelta(minutes=1), 3600) is True
    assert store.claim_cooldown("disk-alarm", T0 + timedelta(minutes=60), 3600) is True
    assert store.claim_cooldown("disk-alarm", T0 + timedelta(minutes=61), 3600) is False


def test_of_alerts_racing_through_one_cooldown_exactly_one_fires(store: SqliteStateStore) -> None:
    results = race(16, lambda i: store.claim_cooldown("disk-alarm", T0, 600))
    assert results.count(True) == 1


# ------------------------------------------------------------------------------ recovery points


def test_recovery_points_are_saved_read_listed_newest_first_and_deleted(
    store: SqliteStateStore,
) -> None:
    store.save_point(recovery_point("p-1", minutes=1))
    store.save_point(recovery_point("p-3", minutes=3))
    store.save_point(recovery_point("p-2", minutes=2, group="billing"))
    assert store.get_point("p-1") == recovery_point("p-1", minutes=1)
    assert [p.id for p in store.list_points("shop")] == ["p-3", "p-2", "p-1"]
    assert [p.id for p in store.list_points("shop", "orders")] == ["p-3", "p-1"]
    store.delete_point("p-3")
    store.delete_point("p-3")  # deleting what is gone is fine
    assert store.get_point("p-3") is None
    assert [p.id for p in store.list_points("shop")] == ["p-2", "p-1"]


def test_saving_a_point_again_replaces_it(store: SqliteStateStore) -> None:
    store.save_point(recovery_point("p-1"))
    verified = recovery_point("p-1").model_copy(update={"verified": True})
    store.save_point(verified)
    assert store.list_points("shop") == [verified]


# ------------------------------------------------------------------------------ outbox


def test_the_outbox_keeps_one_copy_of_each_event_and_hands_them_out_oldest_first(
    store: SqliteStateStore,
) -> None:
    store.outbox_add([event(1), event(2)])
    store.outbox_add([event(2), event(3)])
    store.outbox_add([])
    assert [e.id for e in store.outbox_pending()] == ["e-1", "e-2", "e-3"]
    assert [e.id for e in store.outbox_pending(limit=2)] == ["e-1", "e-2"]
    assert store.outbox_pending()[0] == event(1)


def test_removed_events_leave_the_outbox_and_unknown_ids_are_ignored(
    store: SqliteStateStore,
) -> None:
    store.outbox_add([event(1), event(2), event(3)])
    store.outbox_remove(["e-1", "e-3", "e-unknown"])
    store.outbox_remove([])
    assert [e.id for e in store.outbox_pending()] == ["e-2"]


def test_writers_in_many_threads_do_not_lose_each_others_writes(store: SqliteStateStore) -> None:
    race(20, lambda i: store.save_run(run_record(f"r-{i:02d}", minutes=i)))
    race(20, lambda i: store.outbox_add([event(i)]))
    assert len(store.list_runs("shop")) == 20
    assert len(store.outbox_pending()) == 20


class TestSqliteStateStore(StateStoreContract):
    """The StateStore contract (tests/contracts/state_store.py) on the SQLite catalog."""


def test_record_point_writes_the_point_and_the_record_in_one_transaction(
    store: SqliteStateStore, state_dir: Path
) -> None:
    """A record write that fails (here a trigger refuses it) takes the point's write with it."""
    with sqlite3.connect(state_dir / "catalog.sqlite3") as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    record = run_record("r-1")
    record.recovery_point = "p-1"
    with pytest.raises(sqlite3.Error, match="refused"):
        store.record_point(recovery_point("p-1"), record)

    assert store.get_point("p-1") is None
    assert store.get_run("r-1") is None


def test_a_missing_catalog_beside_existing_snapshots_is_an_error_naming_it(
    state_dir: Path,
) -> None:
    manifest = state_dir / "snapshots" / "rp-1" / "db" / "0-db" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")

    with pytest.raises(QuiesceError, match=str(state_dir / "catalog.sqlite3")):
        SqliteStateStore(state_dir)
    assert not (state_dir / "catalog.sqlite3").exists()
