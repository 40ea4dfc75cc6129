"""SqliteEventBus: publishing is idempotent by event id; `quiesce events` reads in order."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from quiesce.events import CloudEvent
from quiesce.providers.local.bus import SqliteEventBus

from .support import T0


@pytest.fixture
def bus(state_dir: Path) -> SqliteEventBus:
    return SqliteEventBus(state_dir)


def event(n: int, type_: str = "quiesce.run.started") -> CloudEvent:
    return CloudEvent(
        id=f"e-{n}",
        source="/quiesce/policies/shop/groups/orders",
        type=type_,
        subject="db",
        data={"n": n},
        quiescerunid="r-1",
        quiescegroup="orders",
        time=T0,
    )


def test_published_events_are_stored_in_a_private_file_and_read_back_in_order(
    bus: SqliteEventBus, state_dir: Path
) -> None:
    assert bus.publish([event(1), event(2)]) == []
    assert bus.publish([event(3)]) == []
    assert bus.read() == [event(1), event(2), event(3)]
    assert stat.S_IMODE((state_dir / "events.sqlite3").stat().st_mode) == 0o600


def test_publishing_an_event_twice_stores_it_once(bus: SqliteEventBus) -> None:
    bus.publish([event(1), event(2)])
    assert bus.publish([event(2), event(1), event(3)]) == []
    assert [e.id for e in bus.read()] == ["e-1", "e-2", "e-3"]
    assert bus.publish([]) == []


def test_reading_after_a_sequence_number_returns_only_later_events(bus: SqliteEventBus) -> None:
    bus.publish([event(1), event(2), event(3)])
    entries = bus.read_entries()
    assert [seq for seq, _ in entries] == sorted(seq for seq, _ in entries)
    second_seq = entries[1][0]
    assert [e.id for e in bus.read(after_seq=second_seq)] == ["e-3"]
    assert bus.read(after_seq=bus.last_seq()) == []
    assert [e.id for _, e in bus.read_entries(limit=2)] == ["e-1", "e-2"]


def test_reading_can_be_limited_to_some_event_types(bus: SqliteEventBus) -> None:
    bus.publish(
        [
            event(1, "quiesce.run.started"),
            event(2, "quiesce.member.quiesced"),
            event(3, "quiesce.run.completed"),
        ]
    )
    wanted = {"quiesce.run.started", "quiesce.run.completed"}
    assert [e.id for e in bus.read(types=wanted)] == ["e-1", "e-3"]
    assert bus.read(types=set()) == []


def test_an_empty_bus_reads_nothing_and_its_last_sequence_is_zero(bus: SqliteEventBus) -> None:
    assert bus.read() == []
    assert bus.last_seq() == 0


def test_events_survive_reopening_the_bus(bus: SqliteEventBus, state_dir: Path) -> None:
    bus.publish([event(1)])
    assert SqliteEventBus(state_dir).read() == [event(1)]
    assert SqliteEventBus(state_dir).db.schema_version() == 1


def test_when_the_file_cannot_be_written_every_event_is_returned_as_not_accepted(
    bus: SqliteEventBus, state_dir: Path
) -> None:
    with sqlite3.connect(state_dir / "events.sqlite3") as conn:
        conn.execute("DROP TABLE events")
    assert bus.publish([event(1), event(2)]) == ["e-1", "e-2"]
