"""The EventPublisher contract: what every bus (the local events file, EventBridge, Event Grid,
Pub/Sub) and the engine's in-memory bus must do, written once.

A provider's test module subclasses EventPublisherContract and provides a `harness` fixture: a
BusHarness that reads back what the bus delivered and can make it refuse. Where a backend
cannot express a case, its harness says so (`cannot`), and the case is skipped with that reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import pytest

from quiesce.engine.finish import flush_outbox
from quiesce.events import CloudEvent
from quiesce.ports import EventPublisher
from quiesce.providers.memory import MemoryStateStore
from quiesce.record import utcnow


def event(run: str, n: int) -> CloudEvent:
    return CloudEvent(
        id=f"{run}-e{n}",
        source="quiesce/shop/orders",
        type="quiesce.run.started",
        subject=run,
        data={"n": n},
        time=utcnow(),
        quiescerunid=run,
        quiescegroup="orders",
    )


class BusHarness(ABC):
    """One provider's bus, and what a test needs around it."""

    publisher: EventPublisher
    #: The cases this backend cannot express, each with the reason: "order", "refuse".
    cannot: dict[str, str] = {}

    @abstractmethod
    def received(self, count: int) -> list[CloudEvent]:
        """What the bus delivered so far, in the order it arrived (waiting, where delivery
        takes time, until `count` have arrived or it is clear no more will)."""

    def refuse(self, refusing: bool) -> None:
        """Makes the bus refuse every publication from now on (True) or accept again (False)."""
        raise NotImplementedError


def _skip_unless(harness: BusHarness, case: str) -> None:
    if case in harness.cannot:
        pytest.skip(harness.cannot[case])


class EventPublisherContract:
    """Subclass it (as Test...) next to a `harness` fixture."""

    def test_a_batch_is_published_and_every_event_arrives_once_whole(
        self, harness: BusHarness
    ) -> None:
        sent = [event("r-1", n) for n in range(3)]

        assert harness.publisher.publish(sent) == []

        received = harness.received(len(sent))
        assert sorted(e.id for e in received) == sorted(e.id for e in sent)
        by_id = {e.id: e for e in received}
        for e in sent:
            got = by_id[e.id]
            assert (got.type, got.source, got.subject, got.data) == (
                e.type,
                e.source,
                e.subject,
                e.data,
            )

    def test_a_large_batch_arrives_exactly_once_in_order_per_run(self, harness: BusHarness) -> None:
        _skip_unless(harness, "order")
        sent = [event(run, n) for n in range(15) for run in ("r-1", "r-2")]

        assert harness.publisher.publish(sent[:20]) == []
        assert harness.publisher.publish(sent[20:]) == []

        received = harness.received(len(sent))
        assert sorted(e.id for e in received) == sorted(e.id for e in sent)
        for run in ("r-1", "r-2"):
            assert [e.id for e in received if e.subject == run] == [
                e.id for e in sent if e.subject == run
            ]

    def test_events_a_refusing_bus_did_not_take_stay_in_the_outbox_until_it_takes_them(
        self, harness: BusHarness
    ) -> None:
        _skip_unless(harness, "refuse")
        outbox = MemoryStateStore()
        sent = [event("r-1", n) for n in range(3)]
        outbox.outbox_add(sent)

        harness.refuse(True)
        assert flush_outbox(outbox, harness.publisher) == (0, 3)
        assert [e.id for e in outbox.outbox_pending()] == [e.id for e in sent]

        harness.refuse(False)
        assert flush_outbox(outbox, harness.publisher) == (3, 0)
        assert outbox.outbox_pending() == []
        assert sorted(e.id for e in harness.received(len(sent))) == sorted(e.id for e in sent)
