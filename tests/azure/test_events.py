"""EventGridPublisher with the real EventGridPublisherClient against the fake topic."""

from __future__ import annotations

from azure.core.credentials import AzureKeyCredential

from quiesce.events import CloudEvent
from quiesce_azure import events as events_module
from quiesce_azure.events import EventGridPublisher, batches

from .fake_arm import FakeArm


def event(i: int, size: int = 10) -> CloudEvent:
    return CloudEvent(
        source="quiesce/shop/orders",
        type="quiesce.run.started",
        subject=f"run-{i}",
        data={"i": i, "pad": "x" * size},
        quiescerunid=f"run-{i}",
        quiescegroup="orders",
    )


def test_events_arrive_as_cloudevents_1_0(arm: FakeArm) -> None:
    publisher = EventGridPublisher(arm.events_endpoint, AzureKeyCredential(arm.event_key))
    sent = [event(i) for i in range(3)]
    assert publisher.publish(sent) == []
    (batch,) = arm.event_batches
    assert [e["id"] for e in batch] == [e.id for e in sent]
    first = batch[0]
    assert first["specversion"] == "1.0"
    assert first["type"] == "quiesce.run.started"
    assert first["source"] == "quiesce/shop/orders"
    assert first["data"] == {"i": 0, "pad": "x" * 10}
    assert first["quiescerunid"] == "run-0"
    assert first["quiescegroup"] == "orders"


def test_batches_stay_under_one_megabyte(arm: FakeArm) -> None:
    big = [event(i, size=300_000) for i in range(7)]
    assert [len(b) for b in batches(big)] == [3, 3, 1]
    publisher = EventGridPublisher(arm.events_endpoint, AzureKeyCredential(arm.event_key))
    assert publisher.publish(big) == []
    assert [len(b) for b in arm.event_batches] == [3, 3, 1]


def test_a_failed_batch_returns_its_ids_and_keeps_them(arm: FakeArm, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(events_module, "MAX_BATCH_EVENTS", 2)
    arm.fail_event_batches = 1
    publisher = EventGridPublisher(arm.events_endpoint, AzureKeyCredential(arm.event_key))
    sent = [event(i) for i in range(5)]
    failed = publisher.publish(sent)
    assert failed == [sent[0].id, sent[1].id]
    assert publisher.failed == failed
    assert [len(b) for b in arm.event_batches] == [2, 1]


def test_a_wrong_key_fails_everything(arm: FakeArm) -> None:
    publisher = EventGridPublisher(arm.events_endpoint, AzureKeyCredential("wrong"))
    sent = [event(i) for i in range(2)]
    assert publisher.publish(sent) == [e.id for e in sent]


def test_an_oversized_event_is_refused_alone(arm: FakeArm) -> None:
    publisher = EventGridPublisher(arm.events_endpoint, AzureKeyCredential(arm.event_key))
    huge, small = event(1, size=1_100_000), event(2)
    assert publisher.publish([huge, small]) == [huge.id]
    assert [e["id"] for b in arm.event_batches for e in b] == [small.id]
