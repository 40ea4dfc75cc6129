"""The outbox flush: every pending event published, oldest first, with as few reads as the
outbox's contents need (a read that returns less than a batch has seen everything)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from quiesce.engine.finish import flush_outbox
from quiesce.events import CloudEvent
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from tests.contracts.event_publisher import event


class CountingStore(MemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int] = []  # how many events each read returned

    def outbox_pending(self, limit: int = 500) -> list[CloudEvent]:
        found = super().outbox_pending(limit)
        self.reads.append(len(found))
        return found


class RefusingBus(MemoryEventBus):
    def __init__(self, refuse: set[str] | None = None, fail: bool = False) -> None:
        super().__init__()
        self.refuse = refuse or set()
        self.fail = fail

    def publish(self, events: Sequence[CloudEvent]) -> list[str]:
        if self.fail:
            raise ConnectionError("the bus is down")
        super().publish([e for e in events if e.id not in self.refuse])
        return [e.id for e in events if e.id in self.refuse]


def queued(store: CountingStore, count: int) -> list[str]:
    events = [event("r", n) for n in range(count)]
    store.outbox_add(events)
    return [e.id for e in events]


def test_an_outbox_smaller_than_a_batch_is_read_once() -> None:
    store, bus = CountingStore(), RefusingBus()
    ids = queued(store, 3)

    assert flush_outbox(store, bus) == (3, 0)

    assert store.reads == [3]
    assert [e.id for e in bus.events] == ids
    assert store.outbox_pending() == []


@pytest.mark.parametrize(("count", "reads"), [(5, [2, 2, 1]), (4, [2, 2, 0]), (0, [0])])
def test_full_batches_are_read_again_until_a_read_comes_back_short(
    count: int, reads: list[int]
) -> None:
    store, bus = CountingStore(), RefusingBus()
    ids = queued(store, count)

    assert flush_outbox(store, bus, batch=2) == (count, 0)

    assert store.reads == reads
    assert [e.id for e in bus.events] == ids  # oldest first
    assert store.outbox_pending() == []


def test_refused_events_stay_queued_and_are_counted_as_left() -> None:
    store, bus = CountingStore(), RefusingBus(refuse={"r-e1"})
    queued(store, 3)

    assert flush_outbox(store, bus) == (2, 1)

    assert store.reads == [3]
    assert [e.id for e in store.outbox_pending()] == ["r-e1"]


def test_a_bus_that_fails_leaves_every_event_queued() -> None:
    store, bus = CountingStore(), RefusingBus(fail=True)
    ids = queued(store, 3)

    assert flush_outbox(store, bus) == (0, 3)

    assert sorted(e.id for e in store.outbox_pending()) == sorted(ids)


def test_refused_events_in_a_full_batch_do_not_stop_the_rest_from_going_out() -> None:
    store, bus = CountingStore(), RefusingBus(refuse={"r-e0"})
    queued(store, 4)

    assert flush_outbox(store, bus, batch=2) == (3, 1)

    assert [e.id for e in bus.events] == ["r-e1", "r-e2", "r-e3"]
    assert [e.id for e in store.outbox_pending()] == ["r-e0"]
